#!/bin/sh
# shellcheck disable=SC2086,SC2016
# (CC and the pkg-config flags are word lists, split on purpose.)
#
# test-install.sh: install the build into a temporary directory and use it as
# a user would: build a C program with pkg-config and run it, check what got
# installed, and load the typelib and the Python override.
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: test-install.sh BUILD_ROOT PREFIX LIBDIR INCLUDEDIR DATADIR PACKAGE
#                        VERSION HAVE_GIR HAVE_VAPI HAVE_DOCS SANITIZE CONSUMER_C
# LIBDIR, INCLUDEDIR and DATADIR are absolute. The environment gives CC,
# MESON and PKG_CONFIG. Output is TAP.

set -u


if [ $# -ne 12 ]; then
  echo "usage: $0 BUILD_ROOT PREFIX LIBDIR INCLUDEDIR DATADIR PACKAGE VERSION HAVE_GIR HAVE_VAPI HAVE_DOCS SANITIZE CONSUMER_C" >&2
  exit 2
fi

build_root=$1 prefix=$2 libdir=$3 includedir=$4 datadir=$5 package=$6
version=$7 have_gir=$8 have_vapi=$9 have_docs=${10} sanitize=${11} consumer_c=${12}

CC=${CC:-cc}
MESON=${MESON:-meson}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

skip_all () {
  echo "1..0 # SKIP $1"
  exit 0
}

# A sanitized library needs its runtime loaded first in every program that
# uses it: out of scope for a test of what users install.
[ "$sanitize" = none ] || skip_all "sanitized build (b_sanitize=$sanitize)"
command -v ${CC%% *} >/dev/null 2>&1 || skip_all "no C compiler ($CC)"
command -v "$PKG_CONFIG" >/dev/null 2>&1 || skip_all "no pkg-config"
command -v "$MESON" >/dev/null 2>&1 || skip_all "meson not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/libmpg-install-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
dest=$tmp/destdir
work=$tmp/work
mkdir -p "$work"

n=0
failed=0

ok () {
  n=$((n + 1))
  echo "ok $n - $1"
}

not_ok () {
  n=$((n + 1))
  failed=$((failed + 1))
  echo "not ok $n - $1"
  # The log of the step that failed, as TAP diagnostics.
  if [ -s "$work/log" ]; then
    sed 's/^/# /' "$work/log"
  fi
}

skip () {
  n=$((n + 1))
  echo "ok $n - $1 # SKIP $2"
}

# Runs "$@" with its output in $work/log; reports DESCRIPTION.
check () {
  description=$1
  shift
  if "$@" >"$work/log" 2>&1; then
    ok "$description"
  else
    not_ok "$description"
  fi
}

# 1. Install.
check "meson install into a DESTDIR" \
  "$MESON" install -C "$build_root" --destdir "$dest" --no-rebuild --quiet
if [ ! -d "$dest$prefix" ]; then
  echo "Bail out! nothing was installed under $dest$prefix"
  exit 1
fi

# 2. What must be there, and what must not.
pcfile=$dest$libdir/pkgconfig/$package.pc
check "pkg-config file installed" test -f "$pcfile"
check "umbrella header installed" test -f "$dest$includedir/$package/libmpg.h"
check "generated headers installed" \
  test -f "$dest$includedir/$package/mpg-version.h" -a -f "$dest$includedir/$package/mpg-enums.h"
check "shared library installed" sh -c 'ls "$1"/libmpg-1.so.* >/dev/null' sh "$dest$libdir"

private_headers () {
  found=$(find "$dest" -name '*-private.h')
  if [ -n "$found" ]; then
    echo "installed private headers:"
    echo "$found"
    return 1
  fi
}
check "no private header installed" private_headers

if [ "$have_gir" = yes ]; then
  check "GIR installed" test -f "$dest$datadir/gir-1.0/Mpg-1.0.gir"
  check "typelib installed" test -f "$dest$libdir/girepository-1.0/Mpg-1.0.typelib"
else
  skip "GIR installed" "introspection disabled"
  skip "typelib installed" "introspection disabled"
fi
if [ "$have_vapi" = yes ]; then
  check "VAPI and its .deps installed" \
    test -f "$dest$datadir/vala/vapi/$package.vapi" -a -f "$dest$datadir/vala/vapi/$package.deps"
else
  skip "VAPI and its .deps installed" "VAPI disabled"
fi
if [ "$have_docs" = yes ]; then
  check "API reference installed" test -f "$dest$datadir/doc/$package/index.html"
else
  skip "API reference installed" "docs disabled"
fi

# 3. pkg-config. The sysroot relocates libmpg's own flags into the DESTDIR
# but also those of the packages it requires: add those packages' flags
# from the system after it.
export PKG_CONFIG_PATH="$dest$libdir/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$dest"

modversion () {
  v=$($PKG_CONFIG --modversion "$package") || return 1
  echo "pkg-config --modversion: $v, expected $version"
  [ "$v" = "$version" ]
}
check "pkg-config finds $package $version" modversion

mpg_flags=$($PKG_CONFIG --cflags --libs "$package" 2>/dev/null)
requires=$($PKG_CONFIG --print-requires --print-requires-private "$package" 2>/dev/null | cut -d' ' -f1 | tr '\n' ' ')
system_flags=$(env -u PKG_CONFIG_SYSROOT_DIR -u PKG_CONFIG_PATH $PKG_CONFIG --cflags --libs $requires 2>/dev/null)

# 4. A program that includes <libmpg.h>, compiled with warnings as errors,
# linked against the installed library, and run.
check "compile consumer.c against the installed library" \
  $CC -o "$work/consumer" "$consumer_c" $mpg_flags $system_flags \
      -Wall -Wextra -Wno-unused-parameter -Werror

consumer_links_installed () {
  LD_LIBRARY_PATH="$dest$libdir" ldd "$work/consumer" | tee /dev/stderr | grep -q "libmpg-1.so.* => $dest$libdir/"
}
run_consumer () {
  LD_LIBRARY_PATH="$dest$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/consumer"
}
if [ -x "$work/consumer" ]; then
  check "consumer loads the installed libmpg" consumer_links_installed
  check "consumer runs a process and gets its result" run_consumer
else
  skip "consumer loads the installed libmpg" "consumer not built"
  skip "consumer runs a process and gets its result" "consumer not built"
fi

# 5. Only the umbrella header can be included: each public header refuses,
# itself (not through a header it includes), to be included alone.
single_include () {
  header=$1
  printf '#include <%s>\nint main (void) { return 0; }\n' "$header" >"$work/single.c"
  if $CC -c -o "$work/single.o" "$work/single.c" $mpg_flags $system_flags 2>"$work/single.err"; then
    echo "including <$header> alone compiled"
    return 1
  fi
  cat "$work/single.err"
  grep -q "/$header:[0-9]*:[0-9]*: \(fatal \)\{0,1\}error: .*Only <libmpg.h> can be included directly" "$work/single.err"
}
check "including <mpg-process.h> alone fails with the single-include error" \
  single_include mpg-process.h
for path in "$dest$includedir/$package"/*.h; do
  header=${path##*/}
  case $header in
    libmpg.h|mpg-process.h) ;;
    *) check "including <$header> alone fails with the single-include error" \
         single_include "$header" ;;
  esac
done

# 6. The introspection data and the Python override, as PyGObject loads them.
python=/usr/bin/python3
override=$(find "$dest" -path '*/gi/overrides/Mpg.py' | head -n 1)
if [ "$have_gir" != yes ]; then
  skip "Python loads the installed typelib and override" "introspection disabled"
elif ! [ -x "$python" ] || ! "$python" -c 'import gi' >/dev/null 2>&1; then
  skip "Python loads the installed typelib and override" "no PyGObject"
elif [ -z "$override" ]; then
  check "Python override installed" false
else
  python_check () {
    GI_TYPELIB_PATH="$dest$libdir/girepository-1.0" \
    LD_LIBRARY_PATH="$dest$libdir" \
    PYTHONPATH="${override%/gi/overrides/Mpg.py}" \
    "$python" - "$dest" <<'EOF'
import importlib
import operator
import sys

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg

dest = sys.argv[1]
override = importlib.import_module('gi.overrides.Mpg')
assert override.__file__.startswith(dest), override.__file__

p = Mpg.Process.new(GLib.Variant('i', 7), lambda arg, *data: GLib.Variant('i', arg.unpack() ** 2))
p.start()
p.join(60000)
assert p.props.exitcode == 0, p.props.exitcode
assert p.dup_result().unpack() == 49

# The multiprocessing layer: the seed's Pool, forked and spawned (a spawned
# worker is a new interpreter that must find the installed override too).
with Mpg.Pool(2) as pool:
    assert pool.map(abs, [-1, -4, -9]) == [1, 4, 9]
with Mpg.get_context('spawn').Pool(2) as pool:
    assert pool.map(operator.neg, [-1, -4, -9]) == [1, 4, 9]
EOF
  }
  check "Python loads the installed typelib and override" python_check
fi

# 7. Vala, with the installed VAPI and its .deps (which pull in GIO).
if [ "$have_vapi" != yes ]; then
  skip "Vala program builds with the installed VAPI" "VAPI disabled"
elif ! command -v valac >/dev/null 2>&1; then
  skip "Vala program builds with the installed VAPI" "no valac"
else
  vala_check () {
    cat >"$work/consumer_vala.vala" <<'EOF'
int main () {
    var p = new Mpg.Process (new Variant.int32 (7), (arg) => {
        return new Variant.int32 (arg.get_int32 () * arg.get_int32 ());
    });
    try {
        p.start ();
        p.join (60000);
        return p.dup_result ().get_int32 () == 49 ? 0 : 1;
    } catch (Error e) {
        printerr ("%s\n", e.message);
        return 1;
    }
}
EOF
    (cd "$work" && valac -C --vapidir="$dest$datadir/vala/vapi" --pkg "$package" consumer_vala.vala) &&
      $CC -o "$work/consumer-vala" "$work/consumer_vala.c" $mpg_flags $system_flags -w &&
      LD_LIBRARY_PATH="$dest$libdir" "$work/consumer-vala"
  }
  check "Vala program builds with the installed VAPI and runs" vala_check
fi

# 8. GJS, with the installed ES module (imported by its file:// URL) and
# its spawned worker program.
gjs_module="$dest$datadir/$package/gjs/mpg.js"
if [ "$have_gir" != yes ]; then
  skip "GJS runs a pool and a process with the installed mpg.js" "introspection disabled"
elif ! command -v gjs >/dev/null 2>&1; then
  skip "GJS runs a pool and a process with the installed mpg.js" "no gjs"
elif ! [ -f "$gjs_module" ] || ! [ -f "${gjs_module%/mpg.js}/mpg-worker.js" ]; then
  check "GJS module installed" false
else
  gjs_check () {
    cat >"$work/consumer.js" <<EOF
import * as mpg from 'file://$gjs_module';
const pool = new mpg.Pool(2);
const squares = await pool.map(x => x * x, [1, 2, 3]);
pool.terminate();
const q = new mpg.Queue();
const p = new mpg.Process(q => q.put([42, null, 'hello']), [q]);
p.start();
const got = await q.getAsync();
await p.join();
print(JSON.stringify([squares, got, p.exitcode]));
EOF
    out=$(GI_TYPELIB_PATH="$dest$libdir/girepository-1.0" LD_LIBRARY_PATH="$dest$libdir" \
      gjs -m "$work/consumer.js") &&
      [ "$out" = '[[1,4,9],[42,null,"hello"],0]' ]
  }
  check "GJS runs a pool and a process with the installed mpg.js" gjs_check
fi

echo "1..$n"
[ "$failed" -eq 0 ]
