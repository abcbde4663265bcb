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
# usage: test_hosts.sh MPIRUN CNN SCRATCH-DIR NETNS-RSH
set -u
mpirun=$1 cnn=$2 scratch_parent=$3 agent=$4

skip() {
  echo "1..0 # SKIP $*"
  exit 0
}
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1 || skip "no ip netns"
command -v unshare >/dev/null 2>&1 || skip "no unshare (util-linux)"
[ -x "$mpirun" ] || command -v "$mpirun" >/dev/null 2>&1 || skip "no mpirun"

id=$$
sw="cnh${id}s"                 # the switch: a bridge in its own namespace
ns=("cnh${id}a" "cnh${id}b" "cnh${id}c")
addr=(10.231.0.1 10.231.0.2 10.231.0.3)
names=(host1 host2 host3)
scratch=$(mktemp -d "$scratch_parent/hosts-XXXXXX")
mpid=

cleanup() {
  [ -n "$mpid" ] && kill -9 "$mpid" 2>/dev/null
  for n in "${ns[@]}" "$sw"; do # the processes in this test's own namespaces
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  for n in "${ns[@]}" "$sw"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

count=0 failed=0
ok() { # ok COND-STATUS DESCRIPTION
  count=$((count + 1))
  if [ "$1" -eq 0 ]; then echo "ok $count - $2"; else echo "not ok $count - $2"; failed=1; fi
}

# --- the hosts
set -e
ip netns add "$sw"
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
for i in 0 1 2; do
  ip netns add "${ns[$i]}"
  ip -n "${ns[$i]}" link set lo up
  ip link add "cnh${id}v$i" netns "${ns[$i]}" type veth peer name "p$i" netns "$sw"
  ip -n "$sw" link set "p$i" master br0 up
  ip -n "${ns[$i]}" link set "cnh${id}v$i" up
  ip -n "${ns[$i]}" addr add "${addr[$i]}/24" dev "cnh${id}v$i"
  tc -n "${ns[$i]}" qdisc add dev "cnh${id}v$i" root tbf rate 1gbit burst 128kb latency 50ms
done
set +e
export CNN_NETNS_HOSTS="${addr[0]}=${ns[0]}=${names[0]} ${addr[1]}=${ns[1]}=${names[1]} ${addr[2]}=${ns[2]}=${names[2]}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# mpirun in host1 over P hosts: mpi_run P OUT ERR CNN-ARGS... (backgrounded: mpid)
mpi_start() {
  local P=$1 out=$2 err=$3
  shift 3
  printf '%s slots=1\n' "${addr[@]:0:$P}" >"$scratch/hostfile"
  ip netns exec "${ns[0]}" unshare --uts sh -c 'hostname host1 && exec "$@"' sh \
    "$mpirun" --hostfile "$scratch/hostfile" -np "$P" --map-by node --bind-to none \
    --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include 10.231.0.0/24 \
    --mca oob_tcp_if_include 10.231.0.0/24 \
    --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 \
    --mca oob_tcp_keepalive_probes 3 \
    -x OMP_WAIT_POLICY=passive -x CNN_KEEP_BLAS_CORE=1 \
    "$cnn" "$@" >"$out" 2>"$err" &
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
    cmp -s "$scratch/$what-1.cnn" "$scratch/$what-$P.cnn"
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
for p in $(ip netns pids "${ns[1]}"); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
done
t0=$SECONDS
[ -n "$victim" ] && kill -9 "$victim"
wait_mpirun 30
rc=$?
named=1
grep -q "${addr[1]}\|host2" "$scratch/err" && named=0
[ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $named -eq 0 ]
ok $? "rank 1 killed on host2: the job ends in $((SECONDS - t0)) s (at most 30), naming the host (exit $rc: $(grep -m1 -o 'process rank 1 .* on node [^ ]*' "$scratch/err"))"

# --- host2 cut off: the job ends within 60 s, saying why
mpi_start 2 "$scratch/out" "$scratch/err" "${long[@]}" --mpi-timeout 10
wait_for "$scratch/out" "--- Epoch 2 ---"
t0=$SECONDS
ip -n "$sw" link set p1 down
wait_mpirun 60
rc=$?
why=$(grep -m1 -o 'has not completed in [^;]*; it waits for rank[^:]*\|lost communication[^"]*' "$scratch/err")
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ -n "$why" ]
ok $? "host2 cut off mid-run: the job ends in $((SECONDS - t0)) s (at most 60; exit $rc): $why"
ip -n "$sw" link set p1 up

echo "1..$count"
exit $failed
