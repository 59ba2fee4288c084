# conftest.py: fixtures shared by the Python tests
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gc
import sys
import threading

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GObject, Mpg  # noqa: E402

import pytest  # noqa: E402

from mpgtest import TIMEOUT_MS, Gate  # noqa: E402


class Spinner:
    """Pure-Python busy loop in a thread: it holds the GIL most of the time."""

    def __init__(self):
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name='spinner', daemon=True)

    def _run(self):
        while not self._stop:
            self.count += 1

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop = True
        self._thread.join(10)
        return not self._thread.is_alive()


@pytest.fixture(scope='session', autouse=True)
def spinner():
    # Each call into the library releases the GIL and must win it back from
    # the spinner, which keeps it for a whole switch interval (5 ms by
    # default): thousands of calls would make a test take minutes. A shorter
    # interval keeps the contention and bounds the run time.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    spinner = Spinner()
    spinner.start()
    yield spinner
    assert spinner.stop(), 'the spinning thread did not stop'
    sys.setswitchinterval(interval)


@pytest.fixture(autouse=True)
def no_leftover_children():
    yield
    # A failed test may leave a child running: do not let it outlive the
    # test, nor make the interpreter's exit wait for it.
    leftovers = Mpg.active_children()
    for child in leftovers:
        child.kill()
        child.join(TIMEOUT_MS)
    assert leftovers == [], 'a test left children running: %r' % [
        c.props.name for c in leftovers]


@pytest.fixture
def no_glib_criticals(recwarn):
    # PyGObject turns GLib's warnings and criticals (a failed precondition,
    # a reference count going below zero) into Python warnings: in these
    # tests each one is a bug. Collect first, so that a wrong reference
    # dropped by a wrapper's finalizer shows up in the test that made it.
    yield
    gc.collect()
    criticals = [str(w.message) for w in recwarn if issubclass(w.category, GObject.Warning)]
    assert criticals == [], 'GLib warned: %r' % criticals


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.close()
