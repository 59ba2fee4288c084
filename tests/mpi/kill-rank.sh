#!/bin/bash
# kill-rank.sh MPIRUN TEST-MPI-POOL: what a killed rank does to a pool.
#
# A task kills its rank (the relay that runs the worker) in the middle of
# a map on 3 ranks. Two cases, each bounded:
#  1. plain mpirun: Open MPI ends the whole job, rank 0 included, within
#     seconds. The test checks that it ended (no hang), failed, and left
#     no process behind.
#  2. mpirun --enable-recovery: the job survives, and rank 0's pool must
#     fail the map with MPG_ERROR_WORKER_DIED (the relays' heartbeat finds
#     the lost rank: Open MPI itself reports nothing), then exit cleanly.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

set -uo pipefail

mpirun=$1
program=$2
name=$(basename "$program")
status=0

# Processes of this test's jobs: those whose command starts with the
# program (not this script, whose arguments name it).
leftovers() {
  pgrep -f -- "^[^ ]*$name( |\$)" || true
}

start=$(date +%s)
out=$(timeout 120 "$mpirun" -n 3 "$program" --kill-rank 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "# plain mpirun: exit $rc after ${elapsed} s"
echo "$out" | grep -E "kill-rank:|noticed|exited on signal" | sed 's/^/#   /'
if [ "$rc" -eq 124 ]; then
  echo "not ok 1 - plain mpirun: the job hung"
  status=1
elif [ "$rc" -eq 0 ]; then
  echo "not ok 1 - plain mpirun: the job went on as if nothing happened"
  status=1
else
  echo "ok 1 - plain mpirun ends the whole job (exit $rc, ${elapsed} s)"
fi

sleep 1
if [ -n "$(leftovers)" ]; then
  echo "not ok 2 - processes left behind: $(leftovers | tr '\n' ' ')"
  status=1
  pkill -9 -f -- "^[^ ]*$name( |\$)"
else
  echo "ok 2 - nothing left behind"
fi

start=$(date +%s)
out=$(timeout 120 "$mpirun" --enable-recovery -n 3 "$program" --kill-rank 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "# mpirun --enable-recovery: exit $rc after ${elapsed} s"
echo "$out" | grep -E "kill-rank:|lost" | sed 's/^/#   /'
if [ "$rc" -eq 0 ] && echo "$out" | grep -q "kill-rank: after"; then
  echo "ok 3 - with --enable-recovery, the map fails with WORKER_DIED and the job ends"
else
  echo "not ok 3 - with --enable-recovery: exit $rc"
  echo "$out" | sed 's/^/#   /'
  status=1
fi

sleep 1
if [ -n "$(leftovers)" ]; then
  echo "not ok 4 - processes left behind: $(leftovers | tr '\n' ' ')"
  status=1
  pkill -9 -f -- "^[^ ]*$name( |\$)"
else
  echo "ok 4 - nothing left behind"
fi
echo "1..4"
exit $status
