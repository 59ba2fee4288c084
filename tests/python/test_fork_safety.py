# test_fork_safety.py: Python tasks in children, with another Python thread
# holding the GIL (the session's spinner fixture) throughout
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The ways libmpg starts Python children — os.fork() through the override,
# and spawn — must never hang. (The positive control, a child that must
# hang and is seen to, is in tests/fork-safety.c: a lock held by another
# thread at fork time. PLATFORM.md's GIL hazard — a Python callable in a
# child forked by C's fork() while another thread holds the GIL — hung 0 of
# 40 children with CPython 3.11 here, so it cannot serve as a control.)

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg  # noqa: E402

import pytest  # noqa: E402

HANG_MS = 3000


def python_task(arg, *data):
    # Needs the GIL, and allocates: a child that inherited a held GIL
    # never gets here.
    return GLib.Variant('s', ''.join(str(i) for i in range(100)))


def count_hangs(n, stop_at_first=False):
    hangs = 0
    for _ in range(n):
        p = Mpg.Process.new(None, python_task)
        p.start()
        try:
            p.join(HANG_MS)
        except GLib.Error:
            hangs += 1
            p.kill()
            p.join(-1)
            if stop_at_first:
                break
            continue
        assert p.props.exitcode == 0
    return hangs


def test_os_fork_never_hangs(spinner):
    assert count_hangs(40) == 0


def square(x):
    return x * x


def test_spawn_never_hangs(spinner):
    ctx = Mpg.get_context('spawn')
    for i in range(5):
        with ctx.Pool(1) as pool:
            result = pool.map_async(square, [i, i + 1])
            assert result.get(HANG_MS / 1000 * 3) == [i * i, (i + 1) * (i + 1)]
