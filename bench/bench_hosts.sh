#!/usr/bin/env bash
# bench_hosts.sh - data-parallel training across simulated hosts: bench_mpi on 1, 2
# and 3 hosts (tests/netns-hosts.sh: network namespaces on a bridge, each link limited
# by a token bucket, TCP only, one rank per host with 1 thread), for each link rate,
# network and reduction; one JSON line per run (bench_mpi's, with the rate), and the
# table README quotes. As root; everything it makes is removed at the end.
#
# usage: bench/bench_hosts.sh [--build DIR] [--rates 10gbit,1gbit] [--batch 512]
#                             [--steps-post 300] [--steps-recipe 40] [--json FILE]
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build rates=10gbit,1gbit batch=512 steps_post=300 steps_recipe=40 json=/dev/null
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2 ;;
    --rates) rates=$2 ;;
    --batch) batch=$2 ;;
    --steps-post) steps_post=$2 ;;
    --steps-recipe) steps_recipe=$2 ;;
    --json) json=$2 ;;
    *) echo "bench_hosts.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
. "$root/tests/netns-hosts.sh"
why=$(hosts_missing)
[ -z "$why" ] || { echo "bench_hosts.sh: $why" >&2; exit 1; }
mpirun=$(command -v mpirun) || { echo "bench_hosts.sh: no mpirun" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'hosts_down; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
: >"$json"

post=conv8,pool,softmax10
recipe=conv16b,relu,pool,conv32b,relu,pool,dense128,relu,softmax10
printf '| link | network | hosts | reduce | images/s | step | exchange |\n|---|---|---|---|---|---|---|\n'
for rate in ${rates//,/ }; do
  hosts_up "$rate" || exit 1
  for net in post recipe; do
    arch=${!net}
    steps_var=steps_$net
    for P in 1 2 3; do
      for reduce in exact allreduce; do
        [ "$P" -eq 1 ] && [ "$reduce" = allreduce ] && continue
        line=$(hosts_mpirun "$mpirun" "$P" "$tmp/hostfile" "$build/bench/bench_mpi" \
                 --data "$root/data/mnist" --arch "$arch" --batch "$batch" --threads 1 \
                 --steps "${!steps_var}" --reduce "$reduce" 2>"$tmp/err" | grep '^{')
        [ -n "$line" ] || { echo "bench_hosts.sh: $rate $net $P $reduce failed: $(tail -n 2 "$tmp/err")" >&2; continue; }
        echo "${line%\}}, \"link\": \"$rate\"}" >>"$json"
        ips=$(grep -o '"images_per_s": [0-9.]*' <<<"$line" | cut -d' ' -f2)
        step=$(grep -o '"step_ms": [0-9.]*' <<<"$line" | cut -d' ' -f2)
        ex=$(grep -o '"exchange_ms": [0-9.]*' <<<"$line" | cut -d' ' -f2)
        printf '| %s | %s | %d | %s | %s | %s ms | %s ms |\n' "$rate" "$net" "$P" \
          "$([ "$P" -eq 1 ] && echo - || echo "$reduce")" "$ips" "$step" "$ex"
      done
    done
  done
  hosts_down
done
