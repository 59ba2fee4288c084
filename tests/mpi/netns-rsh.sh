#!/bin/bash
# netns-rsh.sh [OPTIONS...] HOST COMMAND...
#
# Stands in for ssh as Open MPI's remote launcher (--mca plm_rsh_agent) under
# netns-hosts.sh: HOST is one of the namespace addresses in $MPG_NETNS_MAP and
# COMMAND (an orted command line) runs in that namespace.
set -euo pipefail

# Exit status 255 for our own errors, as ssh does.
[ -n "${MPG_NETNS_MAP:-}" ] ||
  { echo "netns-rsh.sh: MPG_NETNS_MAP is not set (run under netns-hosts.sh)" >&2; exit 255; }

# Open MPI 4.1 passes "HOST orted ..." to an agent not named ssh, but puts
# any plm_rsh_args before the host: skip such (value-less) options.
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
  shift
done
[ $# -ge 2 ] || { echo "usage: $0 [OPTIONS...] HOST COMMAND..." >&2; exit 255; }
host=$1
shift

# Only namespaces netns-hosts.sh created and recorded: a stray hostname must
# not end up running anything on the real machine or in a foreign namespace.
read -r ns tmpdir < <(awk -v h="$host" '$1 == h { print $2, $3; exit }' "$MPG_NETNS_MAP") ||
  { echo "netns-rsh.sh: $host is not a netns-hosts.sh host" >&2; exit 255; }

# A TMPDIR per namespace, as each host would have its own /tmp: Open MPI's
# session directories must not be shared between daemons (see netns-hosts.sh).
# Like ssh, join the words into one shell command line. nsenter joins the
# network namespace only: `ip netns exec` also remounts /sys in a mount
# namespace of its own, which fails in a chroot ("mount --make-rslave /").
TMPDIR=$tmpdir exec nsenter --net="/run/netns/$ns" -- sh -c "$*"
