# netns-hosts.sh - simulated hosts for MPI runs, sourced by tests/test_hosts.sh and
# bench/bench_hosts.sh (bash). hosts_up RATE makes three network namespaces with their
# own addresses (10.231.0.1-3) joined by a bridge in a fourth, each link limited to
# RATE (tc's token bucket, e.g. 1gbit); nothing is added to the machine's own network.
# The bucket holds 32 KB, so that every message but the smallest goes at RATE.
# hosts_mpirun P ARGS... runs mpirun in the first host over the first P, starting the
# others' ranks through netns-rsh (next to this file), TCP only, with Open MPI's
# keepalive shortened and waiting ranks yielding their core (the simulated hosts
# share this machine's cores). hosts_down removes everything, killing the processes in those
# namespaces (and only them). Needs root, ip (iproute2), tc and unshare.

hosts_id=$$
hosts_sw="cnh${hosts_id}s"
hosts_ns=("cnh${hosts_id}a" "cnh${hosts_id}b" "cnh${hosts_id}c")
hosts_addr=(10.231.0.1 10.231.0.2 10.231.0.3)
hosts_names=(host1 host2 host3)
hosts_agent="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/netns-rsh"

# why these hosts cannot be made here, or nothing
hosts_missing() {
  [ "$(id -u)" -eq 0 ] || { echo "needs root for network namespaces"; return; }
  command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1 || { echo "no ip netns"; return; }
  command -v tc >/dev/null 2>&1 || { echo "no tc (iproute2)"; return; }
  command -v unshare >/dev/null 2>&1 || echo "no unshare (util-linux)"
}

hosts_up() {
  local rate=$1 i v
  ip netns add "$hosts_sw" || return 1
  ip -n "$hosts_sw" link add br0 type bridge && ip -n "$hosts_sw" link set br0 up || return 1
  for i in 0 1 2; do
    v="cnh${hosts_id}v$i"
    ip netns add "${hosts_ns[$i]}" &&
      ip -n "${hosts_ns[$i]}" link set lo up &&
      ip link add "$v" netns "${hosts_ns[$i]}" type veth peer name "p$i" netns "$hosts_sw" &&
      ip -n "$hosts_sw" link set "p$i" master br0 up &&
      ip -n "${hosts_ns[$i]}" link set "$v" up &&
      ip -n "${hosts_ns[$i]}" addr add "${hosts_addr[$i]}/24" dev "$v" &&
      tc -n "${hosts_ns[$i]}" qdisc add dev "$v" root tbf rate "$rate" burst 32kb \
        latency 50ms || return 1
  done
  export CNN_NETNS_HOSTS="${hosts_addr[0]}=${hosts_ns[0]}=${hosts_names[0]} ${hosts_addr[1]}=${hosts_ns[1]}=${hosts_names[1]} ${hosts_addr[2]}=${hosts_ns[2]}=${hosts_names[2]}"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
}

# host K's link (from 0) down or up
hosts_link() { ip -n "$hosts_sw" link set "p$1" "$2"; }

hosts_down() {
  local n p
  for n in "${hosts_ns[@]}" "$hosts_sw"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  for n in "${hosts_ns[@]}" "$hosts_sw"; do ip netns del "$n" 2>/dev/null; done
}

# hosts_mpirun MPIRUN P HOSTFILE ARGS...: mpirun in host1 over the first P hosts
hosts_mpirun() {
  local mpirun=$1 P=$2 hostfile=$3
  shift 3
  printf '%s slots=1\n' "${hosts_addr[@]:0:$P}" >"$hostfile"
  ip netns exec "${hosts_ns[0]}" unshare --uts sh -c 'hostname host1 && exec "$@"' sh \
    "$mpirun" --hostfile "$hostfile" -np "$P" --map-by node --bind-to none \
    --mca plm_rsh_agent "$hosts_agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include 10.231.0.0/24 \
    --mca oob_tcp_if_include 10.231.0.0/24 \
    --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 \
    --mca oob_tcp_keepalive_probes 3 --mca mpi_yield_when_idle 1 --mca orte_base_help_aggregate 0 \
    -x OMP_WAIT_POLICY=passive -x CNN_KEEP_BLAS_CORE=1 "$@"
}
