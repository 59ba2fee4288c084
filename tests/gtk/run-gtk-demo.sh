#!/bin/sh
# Runs the GTK demo's self-test in an X server of its own.
#
#   run-gtk-demo.sh PROGRAM DIR
#
# PROGRAM --self-test DIR drives the window through its actions, prints
# one line per check (TAP) and saves DIR/gtk-demo.png. Exits with its
# status, or 77 (skipped) when xvfb-run is not installed.

set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 PROGRAM DIR" >&2
  exit 2
fi

if ! command -v xvfb-run >/dev/null 2>&1; then
  echo "1..0 # SKIP xvfb-run not found (Debian: apt-get install xvfb xauth)"
  exit 77
fi

# The cairo renderer draws the same pixels wherever it runs; no session
# bus or accessibility bus is needed, and none is started; GSettings stays
# in memory.
exec env GDK_BACKEND=x11 GSK_RENDERER=cairo GTK_A11Y=none GSETTINGS_BACKEND=memory \
  NO_AT_BRIDGE=1 DBUS_SESSION_BUS_ADDRESS=disabled: \
  xvfb-run -a -s "-screen 0 1024x768x24 -nolisten tcp" "$1" --self-test "$2"
