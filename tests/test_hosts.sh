#!/usr/bin/env bash
# test_hosts.sh - data-parallel training across simulated hosts (TAP): three network
# namespaces with their own addresses and host names, joined by a bridge in a fourth
# (nothing is added to the machine's own network), each link limited to 1 Gbit/s by a
# token bucket; mpirun runs in the first and starts the ranks of the others through
# an rsh agent that enters their namespace (tests/netns-rsh), over TCP only. Checks:
#   - 2 and 3 hosts give the model of one process, byte for byte (the post's network
#     and a stacked one with bn); --reduce allreduce runs and its ranks agree;
#   - a rank killed on the second host ends the job within 30 s, naming the host;
#   - the second host cut off (its link down) ends the job within 60 s with a line
#     saying so (the ranks' watchdog, --mpi-timeout 10, and Open MPI's keepalive).
# Everything it makes (namespaces, their processes, files) is removed on exit, also
# when interrupted. Skipped (not failed) without root, `ip netns` or unshare.
#
# usage: test_hosts.sh MPIRUN CNN SCRATCH-DIR (the hosts: tests/netns-hosts.sh)
set -u
mpirun=$1 cnn=$2 scratch_parent=$3
. "$(dirname "$0")/netns-hosts.sh"

why=$(hosts_missing)
if [ -n "$why" ]; then
  echo "1..0 # SKIP $why"
  exit 0
fi
[ -x "$mpirun" ] || command -v "$mpirun" >/dev/null 2>&1 || { echo "1..0 # SKIP no mpirun"; exit 0; }
scratch=$(mktemp -d "$scratch_parent/hosts-XXXXXX")
mpid=

cleanup() {
  [ -n "$mpid" ] && kill -9 "$mpid" 2>/dev/null
  hosts_down
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

count=0 failed=0
ok() { # ok COND-STATUS DESCRIPTION
  count=$((count + 1))
  if [ "$1" -eq 0 ]; then echo "ok $count - $2"; else echo "not ok $count - $2"; failed=1; fi
}

hosts_up 1gbit || { echo "not ok 1 - the simulated hosts could not be made"; echo "1..1"; exit 1; }

# mpirun over P hosts in the background (mpid): mpi_start P OUT ERR CNN-ARGS...
mpi_start() {
  local P=$1 out=$2 err=$3
  shift 3
  hosts_mpirun "$mpirun" "$P" "$scratch/hostfile" "$cnn" "$@" >"$out" 2>"$err" &
  mpid=$!
}
mpi_run() {
  mpi_start "$@"
  wait "$mpid"
  local rc=$?
  mpid=
  return $rc
}
# wait until FILE holds TEXT (at most 120 s)
wait_for() {
  for _ in $(seq 1200); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# wait for the backgrounded mpirun, at most LIMIT s: its status, or 124
wait_mpirun() {
  local limit=$1 t0=$SECONDS
  while kill -0 "$mpid" 2>/dev/null && [ $((SECONDS - t0)) -lt "$limit" ]; do sleep 0.2; done
  if kill -0 "$mpid" 2>/dev/null; then
    kill -9 "$mpid" 2>/dev/null
    wait "$mpid" 2>/dev/null
    mpid=
    return 124
  fi
  wait "$mpid"
  local rc=$?
  mpid=
  return $rc
}

# --- the same model as one process, byte for byte
post=(train --synthetic 3000 --test-limit 200 --epochs 1 --batch 64 --threads 1 --seed 5)
stacked=(train --synthetic 3000 --test-limit 200 --epochs 1 --batch 48 --threads 1 --seed 5
         --arch conv6bp1,bn,relu,pool,dense24,bn,relu,softmax10 --optimizer adamw --lr 0.003)
for what in post stacked; do
  declare -n args=$what
  "$cnn" "${args[@]}" --save "$scratch/$what-1.cnn" >/dev/null 2>&1
  for P in 2 3; do
    mpi_run "$P" "$scratch/out" "$scratch/err" "${args[@]}" --save "$scratch/$what-$P.cnn"
    rc=$?
    [ $rc -eq 0 ] && cmp -s "$scratch/$what-1.cnn" "$scratch/$what-$P.cnn"
    ok $? "$what: $P hosts give the model of one process, byte for byte (mpirun exit $rc$(
      [ $rc -ne 0 ] && printf '; %s' "$(tail -n 2 "$scratch/err" | tr '\n' ' ')"))"
  done
done
mpi_run 3 "$scratch/out" "$scratch/err" "${post[@]}" --reduce allreduce
ok $? "--reduce allreduce over 3 hosts: the ranks agree (the program compares their weights)"

# --- a rank killed on host2: the job ends, naming the host
long=(train --synthetic 20000 --epochs 50 --batch 16 --threads 1)
mpi_start 2 "$scratch/out" "$scratch/err" "${long[@]}"
wait_for "$scratch/out" "--- Epoch 2 ---"
victim=
for p in $(ip netns pids "${hosts_ns[1]}"); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
done
t0=$SECONDS
[ -n "$victim" ] && kill -9 "$victim"
wait_mpirun 30
rc=$?
named=1
grep -q "${hosts_addr[1]}\|host2" "$scratch/err" && named=0
[ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ]
ok $? "rank 1 killed on host2: the job ends in $((SECONDS - t0)) s (at most 30; exit $rc)"
if [ $named -ne 0 ] && [ $rc -eq 139 ] && grep -q pmix_server_log "$scratch/err"; then
  # Debian 12's Open MPI 4.1.4: mpirun itself sometimes crashes in PMIx's log handler
  # as it reports the dead rank; the job has ended, but nothing named the host
  count=$((count + 1))
  echo "not ok $count - the host is named # TODO mpirun crashed in PMIx's log handler (Open MPI 4.1.4) before naming it"
else
  [ $named -eq 0 ] || sed 's/^/# /' "$scratch/err" | tail -n 12
  ok $named "the host is named: $(grep -m1 -o 'process rank 1 .* on node [^ ]*' "$scratch/err")"
fi

# --- host2 cut off: the job ends within 60 s, saying why
mpi_start 2 "$scratch/out" "$scratch/err" "${long[@]}" --mpi-timeout 10
wait_for "$scratch/out" "--- Epoch 2 ---"
t0=$SECONDS
hosts_link 1 down
wait_mpirun 60
rc=$?
why=$(grep -m1 -o 'has not completed in [^;]*; it waits for rank[^:]*\|lost communication[^"]*' "$scratch/err")
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ -n "$why" ]
ok $? "host2 cut off mid-run: the job ends in $((SECONDS - t0)) s (at most 60; exit $rc): $why"
hosts_link 1 up

echo "1..$count"
exit $failed
