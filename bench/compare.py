#!/usr/bin/python3
"""compare.py - side-by-side comparison of the C benchmark and the PyTorch peer.

    bench/compare.py OURS.json PEER.json
    bench/compare.py --run BUILD_DIR OURS.json PEER.json [--ours-args STR] [--peer-args STR] [-- ARGS...]

OURS.json is written by BUILD_DIR/bench/bench_train --json (entries with engine
"blas" and/or "reference"), PEER.json by bench/peers/torch_cnn.py --json (engine
"pytorch"); both follow the same schema (see bench/peers/README.md). The tables pair
training entries by (batch, threads) and inference entries by threads; a ratio above
1 means the C program is faster.

With --run BUILD_DIR both benchmarks are run first, one after the other, writing the
two files: ARGS after "--" go to both programs, --ours-args / --peer-args (one
shell-quoted string each) to one of them only. Only the standard library is needed.
"""

import json
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEER_SCRIPT = os.path.join(HERE, "peers", "torch_cnn.py")
USAGE = ("usage: compare.py [--run BUILD_DIR] [--ours-args STR] [--peer-args STR] "
         "OURS.json PEER.json [-- ARGS...]")


class Fail(Exception):
    pass


def usage_error(msg):
    print(f"compare.py: {msg}\n{USAGE}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    else:
        extra = []
    opts = {"run": None, "ours_args": [], "peer_args": []}
    files = []
    it = iter(argv)
    for a in it:
        if a in ("-h", "--help"):
            print(__doc__.strip())
            sys.exit(0)
        elif a in ("--run", "--ours-args", "--peer-args"):
            v = next(it, None)
            if v is None:
                usage_error(f"{a} needs a value")
            if a == "--run":
                opts["run"] = v
            else:
                try:
                    opts[a[2:].replace("-", "_")] = shlex.split(v)
                except ValueError as e:
                    usage_error(f"{a}: {e}")
        elif a.startswith("-") and a != "-":
            usage_error(f"unknown option {a}")
        else:
            files.append(a)
    if len(files) != 2:
        usage_error("need exactly two JSON files, OURS and PEER")
    if extra and not opts["run"]:
        usage_error("arguments after -- are only used with --run")
    return opts, files[0], files[1], extra


def run(cmd):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    try:
        rc = subprocess.run(cmd).returncode
    except OSError as e:
        raise Fail(f"cannot run {cmd[0]}: {e.strerror}")
    if rc != 0:
        prog = cmd[1] if len(cmd) > 1 and cmd[1].endswith(".py") else cmd[0]
        raise Fail(f"{os.path.basename(prog)} exited with status {rc}")
    print()


def run_benchmarks(build, ours, peer, extra, ours_args, peer_args):
    exe = os.path.join(build, "bench", "bench_train")
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise Fail(f"{exe}: no such program (build it with meson compile -C {build})")
    run([exe, "--json", ours] + extra + ours_args)
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    run([py, PEER_SCRIPT, "--json", peer] + extra + peer_args)


def load(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        raise Fail(f"{path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise Fail(f"{path}: not valid JSON: {e}")
    if not isinstance(d, dict):
        raise Fail(f"{path}: expected a JSON object")
    for key in ("train", "inference", "time_to_97"):
        v = d.get(key, [])
        if not isinstance(v, list) or not all(isinstance(e, dict) and "engine" in e for e in v):
            raise Fail(f"{path}: \"{key}\" must be a list of objects with an \"engine\"")
        d[key] = v
    for e in d["train"]:
        if not all(isinstance(e.get(k), (int, float)) for k in ("batch", "threads", "images_per_s")):
            raise Fail(f"{path}: train entry without numeric batch, threads, images_per_s: {e}")
    for e in d["inference"]:
        if not all(isinstance(e.get(k), (int, float)) for k in ("threads", "images_per_s")):
            raise Fail(f"{path}: inference entry without numeric threads, images_per_s: {e}")
    return d


def engines(doc):
    seen = []
    for key in ("train", "inference", "time_to_97"):
        for e in doc[key]:
            if e["engine"] not in seen:
                seen.append(e["engine"])
    order = {"blas": 0, "reference": 1}
    return sorted(seen, key=lambda n: order.get(n, 2))


def label(engine):
    return {"blas": "cnn blas", "reference": "cnn ref"}.get(engine, engine)


def describe(tag, path, d):
    m = d.get("machine", {}) if isinstance(d.get("machine"), dict) else {}
    lib = m.get("blas") or (f"torch {m['torch']}" if "torch" in m else "")
    print(f"{tag}: {path}: {d.get('tool', '?')}, data {d.get('data', '?')}; "
          f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores" + (f"; {lib}" if lib else ""))
    if m.get("torch_config"):
        print(f"      {m['torch_config']}")


def fmt_rate(e):
    if e is None:
        return "-"
    s = f"{e['images_per_s']:.0f}"
    if isinstance(e.get("spread"), (int, float)):
        s += f" ±{e['spread'] * 100:.0f}%"
    return s


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def ratio(a, b):
    if a is None or b is None or not b["images_per_s"]:
        return "-"
    return f"{a['images_per_s'] / b['images_per_s']:.2f}x"


def compare(ours, peer):
    oe, pe = engines(ours), engines(peer)
    ours_main = oe[0] if oe else None
    peer_main = pe[0] if pe else None
    for e in ours["train"] + ours["inference"]:
        if e["engine"] == "pytorch":
            print("warning: OURS contains pytorch entries: are the files swapped?", file=sys.stderr)
            break
    if ours.get("data") != peer.get("data"):
        print(f"warning: different data: ours {ours.get('data')}, peer {peer.get('data')}")
    om, pm = ours.get("machine") or {}, peer.get("machine") or {}
    if om.get("cpu") != pm.get("cpu") or om.get("cores") != pm.get("cores"):
        print("warning: the two files come from different machines")

    # training
    keys = sorted({(e["batch"], e["threads"]) for d in (ours, peer) for e in d["train"]})
    tr = {(e["engine"], e["batch"], e["threads"]): e for d in (ours, peer) for e in d["train"]}
    if keys:
        print(f"\ntraining images/s (median ±spread); ratio = {label(ours_main)} / {label(peer_main)}")
        header = ["batch", "threads"] + [label(n) for n in oe] + [label(n) for n in pe] + ["ratio", "epoch s (cnn / peer)"]
        rows = []
        for b, t in keys:
            a, p = tr.get((ours_main, b, t)), tr.get((peer_main, b, t))
            ep = "-"
            if a is not None and p is not None:
                ep = f"{60000 / a['images_per_s']:.2f} / {60000 / p['images_per_s']:.2f}"
            rows.append([b, t] + [fmt_rate(tr.get((n, b, t))) for n in oe]
                        + [fmt_rate(tr.get((n, b, t))) for n in pe] + [ratio(a, p), ep])
        table(header, rows)

    # inference
    keys = sorted({e["threads"] for d in (ours, peer) for e in d["inference"]})
    inf = {(e["engine"], e["threads"]): e for d in (ours, peer) for e in d["inference"]}
    if keys:
        print(f"\ninference images/s (test set); ratio = {label(ours_main)} / {label(peer_main)}")
        header = ["threads"] + [label(n) for n in oe] + [label(n) for n in pe] + ["ratio"]
        rows = [[t] + [fmt_rate(inf.get((n, t))) for n in oe] + [fmt_rate(inf.get((n, t))) for n in pe]
                + [ratio(inf.get((ours_main, t)), inf.get((peer_main, t)))] for t in keys]
        table(header, rows)

    # time to 97%
    tta = ours["time_to_97"] + peer["time_to_97"]
    if tta:
        print("\ntime to 97% test accuracy (training time only)")
        rows = []
        for e in tta:
            s = e.get("seconds")
            acc = e.get("accuracy")
            rows.append([label(e["engine"]), e.get("batch", "-"), e.get("threads", "-"), e.get("lr", "-"),
                         "never" if s is None else f"{s:.2f}", e.get("epochs", "-"),
                         "-" if acc is None else f"{acc:.4f}"])
        table(["engine", "batch", "threads", "lr", "seconds", "epochs", "accuracy"], rows)
        # Pair runs with the same batch, threads and (when both record it) learning rate.
        for a in ours["time_to_97"]:
            for p in peer["time_to_97"]:
                same = (a.get("batch"), a.get("threads")) == (p.get("batch"), p.get("threads"))
                if "lr" in a and "lr" in p:
                    same = same and abs(a["lr"] - p["lr"]) <= 1e-9 * max(abs(a["lr"]), 1)
                if same and a.get("seconds") and p.get("seconds"):
                    lr = f", lr {a['lr']}" if "lr" in a else ""
                    print(f"batch {a['batch']}, {a['threads']} threads{lr}: {label(a['engine'])} reaches 97% "
                          f"{p['seconds'] / a['seconds']:.1f}x sooner than {label(p['engine'])}")


def main(argv):
    opts, ours_path, peer_path, extra = parse_args(argv)
    try:
        if opts["run"]:
            run_benchmarks(opts["run"], ours_path, peer_path, extra, opts["ours_args"], opts["peer_args"])
        ours, peer = load(ours_path), load(peer_path)
        describe("ours", ours_path, ours)
        describe("peer", peer_path, peer)
        compare(ours, peer)
    except Fail as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
