#!/bin/bash
# netns-hosts.sh [--keep] -- COMMAND ARGS...
#
# Runs COMMAND with two network namespaces standing in for two more hosts, so
# that Open MPI's multi-host paths (rsh launch, TCP out-of-band and BTL) can
# be tested on one machine without ssh. All names are unique to this run:
#
#   root namespace:  bridge mpg-PID-br, 10.213.X.1/24 (mpirun and rank 0)
#   mpg-PID-a:       eth0 10.213.X.2/24, a veth to the bridge
#   mpg-PID-b:       eth0 10.213.X.3/24, a veth to the bridge
#
# COMMAND gets MPG_NETNS_MPIRUN_ARGS, MPG_NETNS_MCA_ENV, MPG_NETNS_HOSTFILE,
# MPG_NETNS_HOSTS, MPG_NETNS_NAMES, MPG_NETNS_LOCAL and MPG_NETNS_MAP (see
# tests/mpi/README.md). Exits with COMMAND's status, or with 77 (meson's
# "skipped") when network namespaces cannot be created.
set -euo pipefail

keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--keep] -- COMMAND ARGS..." >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
rsh=$here/netns-rsh.sh
# MPG_NETNS_MPIRUN_ARGS is split on blanks by its users.
case $rsh in
  *[[:space:]]*) echo "netns-hosts: $rsh: blanks in the path" >&2; exit 2 ;;
esac

ns=("mpg-$$-a" "mpg-$$-b")
bridge=mpg-$$-br             # at most 14 characters: IFNAMSIZ is 16
created=()                   # namespaces and links to delete, in that order
tmp=

skip () {
  echo "SKIP: cannot create network namespaces: $*" >&2
  exit 77
}

# The processes COMMAND started, wherever they run: all inherit MPG_NETNS_MAP
# (Open MPI passes the environment on), whatever their process group.
# shellcheck disable=SC2317 # run from the EXIT trap
ours () {
  [ -n "$tmp" ] || return 0
  grep -lszFx "MPG_NETNS_MAP=$tmp/map" /proc/[0-9]*/environ | cut -d/ -f3
}

# shellcheck disable=SC2317
teardown () {
  local n pids
  set +e
  # Or grep and cut in ours () would find themselves.
  unset MPG_NETNS_MAP
  if [ "$keep" = 1 ]; then
    echo "netns-hosts: --keep: left ${created[*]} $tmp" >&2
    return
  fi
  # After an INT or TERM, COMMAND may still run; after it returned, it may
  # have left processes behind. A TERM and a few seconds let mpirun shut its
  # job down in order; a KILL ends the rest.
  pids=$(ours)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $pids 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      pids=$(ours)
      [ -n "$pids" ] || break
      sleep 0.5
    done
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
  fi
  for n in "${created[@]}"; do
    if ip netns pids "$n" >/dev/null 2>&1; then
      # Anything else in our namespaces came through us too, and would keep
      # the namespace alive.
      # shellcheck disable=SC2046
      kill -KILL $(ip netns pids "$n") 2>/dev/null
      # The veth first: it would go with the namespace, but only later,
      # as the kernel dismantles namespaces asynchronously.
      ip link delete "$n" 2>/dev/null
      ip netns delete "$n"
    else
      ip link delete "$n"
    fi
  done
  [ -n "$tmp" ] && rm -rf "$tmp"
}
trap teardown EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

command -v ip >/dev/null || skip "no ip command"
command -v nsenter >/dev/null || skip "no nsenter command (util-linux)"
# Trying is the one test that covers root, the capabilities (ip netns also
# mounts) and a writable /run/netns at once.
for n in "${ns[@]}"; do
  err=$(ip netns add "$n" 2>&1) || skip "ip netns add $n: $err"
  created+=("$n")
  # netns-rsh.sh enters them so.
  err=$(nsenter --net="/run/netns/$n" -- true 2>&1) || skip "nsenter --net: $err"
done
err=$(ip link add name "$bridge" type bridge 2>&1) || skip "bridge: $err"
created+=("$bridge")

# A /24 of 10.213.0.0/16 that no route covers or splits, starting at one
# derived from our pid so that concurrent runs seldom try the same one.
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

# The bridge's address is where the orted daemons in the namespaces call
# mpirun back, and mpirun takes it for its own node in the hostfile.
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up
hosts=()
for i in 0 1; do
  n=${ns[$i]}
  err=$(ip link add "$n" type veth peer name eth0 netns "$n" 2>&1) || skip "veth: $err"
  ip link set "$n" master "$bridge" up
  nsenter --net="/run/netns/$n" -- ip link set lo up
  nsenter --net="/run/netns/$n" -- ip addr add "$subnet.$((i + 2))/24" dev eth0
  nsenter --net="/run/netns/$n" -- ip link set eth0 up
  hosts+=("$subnet.$((i + 2))")
done

tmp=$(mktemp -d /tmp/mpg-netns.XXXXXX)
# netns-rsh.sh runs commands only in the namespaces listed here, each with a
# TMPDIR of its own: Open MPI names its session directory after the host
# name, which the namespaces share, and two orted daemons in one session
# directory crash (hwloc.sm, hwloc's shared topology) or fail in PMIx.
for i in 0 1; do
  mkdir "$tmp/${ns[$i]}"
  echo "${hosts[$i]} ${ns[$i]} $tmp/${ns[$i]}"
done >"$tmp/map"
# The local address first, with one slot: rank 0 stays in the root namespace
# (started by mpirun itself), further ranks go to the namespaces.
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
# --map-by node spreads ranks 1, 2, ... over the namespaces; a later --map-by
# on the command line wins (a repeated --mca is an error, though). No tree
# spawn: daemons need not launch daemons from inside a namespace. The
# interface and BTL restrictions keep all traffic on the bridge.
export MPG_NETNS_MPIRUN_ARGS="--hostfile $tmp/hostfile --map-by node --mca plm_rsh_agent $rsh --mca plm_rsh_no_tree_spawn 1 --mca oob_tcp_if_include $subnet.0/24 --mca btl_tcp_if_include $subnet.0/24 --mca btl tcp,self"
# The same for a program started without mpirun, whose MPI_Comm_spawn
# launches the daemons: env $MPG_NETNS_MCA_ENV ./program
export MPG_NETNS_MCA_ENV="OMPI_MCA_orte_default_hostfile=$tmp/hostfile OMPI_MCA_plm_rsh_agent=$rsh OMPI_MCA_plm_rsh_no_tree_spawn=1 OMPI_MCA_oob_tcp_if_include=$subnet.0/24 OMPI_MCA_btl_tcp_if_include=$subnet.0/24 OMPI_MCA_btl=tcp,self"

# In the background, so that a signal to this script is handled at once
# rather than after COMMAND returns. The explicit <&0 keeps stdin, which bash
# would point at /dev/null.
"$@" <&0 &
status=0
wait $! || status=$?
exit "$status"
