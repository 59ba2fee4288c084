#!/bin/bash
# netns-hosts.sh [--keep] -- COMMAND ARGS...
#
# Runs COMMAND with two network namespaces standing in for two more "hosts",
# so Open MPI's multi-host paths (rsh launch, TCP out-of-band and BTL) can be
# tested on one machine without ssh. Layout, all names unique to this run:
#
#   root namespace:  bridge mpg-PID-br, 10.213.X.1/24  (where mpirun runs)
#   mpg-PID-a:       eth0 10.213.X.2/24, veth to the bridge
#   mpg-PID-b:       eth0 10.213.X.3/24, veth to the bridge
#
# COMMAND sees MPG_NETNS_HOSTFILE, MPG_NETNS_HOSTS, MPG_NETNS_NAMES,
# MPG_NETNS_LOCAL (the bridge address), MPG_NETNS_MAP and
# MPG_NETNS_MPIRUN_ARGS; see tests/mpi/README.md. Exits with COMMAND's
# status, or 77 (meson's "skipped") when namespaces cannot be created.
set -euo pipefail

keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--keep] -- COMMAND ARGS..." >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--keep] -- COMMAND ARGS..." >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
rsh=$here/netns-rsh.sh
prefix=mpg-$$
ns=("$prefix-a" "$prefix-b")
bridge=$prefix-br            # at most 14 characters: IFNAMSIZ is 16
tmp=
child=

skip () {
  echo "SKIP: cannot create network namespaces: $*" >&2
  exit 77
}

# shellcheck disable=SC2317 # called from the EXIT trap
teardown () {
  local n pids i
  set +e
  if [ "$keep" = 1 ]; then
    echo "netns-hosts: --keep: left ${ns[*]}, $bridge and $tmp" >&2
    return
  fi
  # COMMAND runs in the background (see below), so an INT or TERM lands here
  # while it may still be running: pass the signal on and give it a moment.
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null
    for i in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$child" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$child" 2>/dev/null
  fi
  for n in "${ns[@]}"; do
    # Anything still inside our namespaces was started through us (orted,
    # ranks); a namespace stays alive as long as a process lives in it.
    pids=$(ip netns pids "$n" 2>/dev/null)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086 # one pid per word
      kill -TERM $pids 2>/dev/null
      sleep 0.5
      # shellcheck disable=SC2046
      kill -KILL $(ip netns pids "$n" 2>/dev/null) 2>/dev/null
    fi
    ip netns delete "$n" 2>/dev/null
    # Normally gone with its peer in the namespace; not if setup stopped halfway.
    ip link delete "$n" 2>/dev/null
  done
  ip link delete "$bridge" 2>/dev/null
  [ -n "$tmp" ] && rm -rf "$tmp"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v ip >/dev/null || skip "no ip(8) command"
# A failing "ip netns add" is the reliable test for root, CAP_NET_ADMIN and a
# writable /run/netns all at once.
for n in "${ns[@]}"; do
  err=$(ip netns add "$n" 2>&1) || skip "ip netns add $n: $err"
done
err=$(ip link add name "$bridge" type bridge 2>&1) || skip "bridge: $err"

# A /24 in 10.213.0.0/16 that no route covers or splits, starting from one
# derived from our pid so that concurrent runs rarely even try the same one.
routes_near () {
  ip -4 route show match "$1" | grep -v '^default'
  ip -4 route show root "$1"
}
subnet=
for i in $(seq 0 253); do
  x=$(( ($$ + i) % 254 + 1 ))
  if [ -z "$(routes_near "10.213.$x.0/24")" ]; then
    subnet=10.213.$x
    break
  fi
done
[ -n "$subnet" ] || { echo "netns-hosts: no free /24 in 10.213.0.0/16" >&2; exit 1; }

# The bridge's address is what mpirun (in the root namespace) advertises to
# the orted daemons in the namespaces: they must be able to call it back.
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up
hosts=()
for i in 0 1; do
  n=${ns[$i]}
  ip=$subnet.$((i + 2))
  err=$(ip link add "$n" type veth peer name eth0 netns "$n" 2>&1) || skip "veth: $err"
  ip link set "$n" master "$bridge" up
  ip -n "$n" link set lo up
  ip -n "$n" addr add "$ip/24" dev eth0
  ip -n "$n" link set eth0 up
  hosts+=("$ip")
done

tmp=$(mktemp -d /tmp/mpg-netns.XXXXXX)
# netns-rsh.sh only runs commands in namespaces listed here, each with a TMPDIR
# of its own: Open MPI names its session directory after the host name, which
# all namespaces share, and two orted daemons in one session directory crash
# (hwloc's shared-memory topology file) or fail in PMIx (dstore files).
for i in 0 1; do
  mkdir "$tmp/${ns[$i]}"
  echo "${hosts[$i]} ${ns[$i]} $tmp/${ns[$i]}"
done >"$tmp/map"
# The local address first, with one slot: rank 0 (the user's program) runs
# in the root namespace. mpirun recognises it as its own node and starts
# that rank itself, without netns-rsh.sh.
{
  echo "$subnet.1 slots=1"
  printf '%s slots=2\n' "${hosts[@]}"
} >"$tmp/hostfile"

export MPG_NETNS_MAP=$tmp/map
export MPG_NETNS_HOSTFILE=$tmp/hostfile
export MPG_NETNS_LOCAL=$subnet.1
MPG_NETNS_HOSTS=$(IFS=,; echo "${hosts[*]}")
MPG_NETNS_NAMES=$(IFS=,; echo "${ns[*]}")
export MPG_NETNS_HOSTS MPG_NETNS_NAMES
# Word-split by its users, so the paths in it must not contain blanks.
# --map-by node puts ranks 1 and 2 in different namespaces; a later --map-by
# overrides it (a repeated --mca is an error, though).
# No tree spawn: the daemons would otherwise launch each other through
# netns-rsh.sh from inside a namespace.
export MPG_NETNS_MPIRUN_ARGS="--hostfile $tmp/hostfile --map-by node --mca plm_rsh_agent $rsh --mca plm_rsh_no_tree_spawn 1 --mca oob_tcp_if_include $subnet.0/24 --mca btl_tcp_if_include $subnet.0/24 --mca btl tcp,self"

# In the background so that a TERM sent to this script alone is handled at
# once instead of after COMMAND returns; an explicit <&0 keeps its stdin,
# which bash would otherwise point at /dev/null.
"$@" <&0 &
child=$!
status=0
wait "$child" || status=$?
child=
exit "$status"
