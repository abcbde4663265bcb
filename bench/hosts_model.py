#!/usr/bin/env python3
"""hosts_model.py - the scaling model of README's "Several machines" against
bench_hosts.sh's measurements: reads its JSON lines, prints one markdown table.

A step exchanges once (src/cli/dist.c). With P ranks, a gradient of S floats, a
batch of n samples in C chunks (16 samples at most each), a link's effective
bandwidth BW and a latency L per round of messages:
  exact      MPI_Allgatherv of every chunk's slot (S + 34 floats, rounded up to 64
             bytes): each rank receives (P-1)/P of C slots, in P-1 rounds;
  allreduce  MPI_Allreduce of S + 2n + C + P floats: a ring moves 2(P-1)/P of it
             per rank, in 2(P-1) rounds.
BW and L are not assumed: they come from the bare MPI_Allreduce bench_mpi times
beside each run (the recipe network's gradient for BW, the post's for L) at P = 2.
The predicted images/s add the exchange to one rank's compute for its share of the
step (a P = 1 step over P ranks, times P/2 when the P ranks share this machine's
two cores).

usage: bench/hosts_model.py RESULTS.json
"""
import json
import sys

CHUNK, TAIL = 16, 34


def slot_floats(S):
    return ((S + TAIL) * 4 + 63) // 64 * 64 // 4


def chunks(n):
    return max((n + CHUNK - 1) // CHUNK, min(n, 4))


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]

    def get(link, net, P, red=None):
        for r in rows:
            if (r["link"] == link and r["network"].startswith(net) and r["ranks"] == P
                    and (P == 1 or r["reduce"] == red)):
                return r
        return None

    print("| link | network | hosts | reduce | exchange: model | measured | images/s: model "
          "| measured |\n|---|---|---|---|---|---|---|---|")
    for link in dict.fromkeys(r["link"] for r in rows):
        rec, post = get(link, "conv16b", 2, "allreduce"), get(link, "conv8", 2, "allreduce")
        bw = rec["gradient_floats"] * 4 / rec["allreduce_ms"]  # bytes per ms
        lat = max(0.0, (post["allreduce_ms"] - post["gradient_floats"] * 4 / bw) / 2)
        print(f"| {link}: BW {bw * 8 / 1e6:.2f} Gbit/s, L {lat * 1e3:.0f} us | | | | | | | |")
        for net, name in (("conv8", "post"), ("conv16b", "recipe")):
            one = get(link, net, 1)
            for P in (2, 3):
                for red in ("exact", "allreduce"):
                    r = get(link, net, P, red)
                    if not r or not one:
                        continue
                    S, n = r["gradient_floats"], r["batch"]
                    C = chunks(n)
                    if red == "exact":
                        t = (P - 1) / P * C * slot_floats(S) * 4 / bw + (P - 1) * lat
                    else:
                        t = 2 * (P - 1) / P * (S + 2 * n + C + P) * 4 / bw + 2 * (P - 1) * lat
                    ips = n / (one["step_ms"] * max(1.0, P / 2) / P + t) * 1000
                    print(f"| {link} | {name} | {P} | {red} | {t:.2f} ms | "
                          f"{r['exchange_ms']:.2f} ms | {ips:,.0f} | {r['images_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
