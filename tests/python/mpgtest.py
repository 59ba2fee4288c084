# mpgtest.py: helpers shared by the Python tests
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import select

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg  # noqa: E402

# Every wait in this module is bounded: a broken channel fails a test, it
# does not hang the run.
TIMEOUT_MS = 30000
CHILD_TIMEOUT_S = 60


def assert_error(excinfo, domain, code):
    error = excinfo.value
    assert error.matches(domain, code), \
        'expected %s %d, got %r' % (GLib.quark_to_string(domain), int(code), error)


def run_loop(loop, what):
    timed_out = []

    def on_timeout():
        timed_out.append(True)
        loop.quit()
        return GLib.SOURCE_REMOVE

    guard = GLib.timeout_add(TIMEOUT_MS, on_timeout)
    loop.run()
    if not timed_out:
        GLib.source_remove(guard)
    assert not timed_out, '%s did not complete in time' % what


def start(target, *user_data, args=None):
    p = Mpg.Process.new(args, target, *user_data)
    p.start()
    return p


def join_ok(p):
    assert p.join(TIMEOUT_MS)
    assert p.props.exitcode == 0, 'child exit code %d' % p.props.exitcode
    return p.dup_result()


class Gate:
    """A pipe that a child waits on (bounded), or signals readiness with."""

    def __init__(self):
        self.r, self.w = os.pipe()

    def wait(self, timeout=CHILD_TIMEOUT_S):
        ready, _, _ = select.select([self.r], [], [], timeout)
        return bool(ready)

    def open(self):
        os.write(self.w, b'x')

    def close(self):
        os.close(self.r)
        os.close(self.w)
