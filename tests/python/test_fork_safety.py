# test_fork_safety.py: Python tasks in children, with another Python thread
# holding the GIL (the session's spinner fixture) throughout
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The positive control first: a Python callable in a child forked by C's
# fork() (not os.fork()) can deadlock on the GIL that the spinner held at
# fork time (PLATFORM.md: 4 of 10 here). The test must see such hangs, or
# it could not see any. Then the ways libmpg actually starts Python
# children — os.fork() through the override, and spawn — must never hang.

import os
import sys

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


@pytest.fixture
def c_fork():
    Mpg.set_fork_func(None)
    yield
    Mpg.set_fork_func(sys.modules['gi.overrides.Mpg']._fork)


def test_positive_control_c_fork_hangs(spinner, c_fork):
    # Up to 40 children, until one hangs: with p ≈ 0.4 per child, missing
    # every time is beyond unlikely; a run that never hangs means the
    # detector is broken.
    assert count_hangs(40, stop_at_first=True) == 1


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
