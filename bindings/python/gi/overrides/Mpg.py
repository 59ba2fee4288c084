# Mpg.py: PyGObject override for libmpg
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import sys

from ..module import get_introspection_module

Mpg = get_introspection_module('Mpg')

__all__ = []


def _fork():
    # A Python callable must never run in a child that C's fork() created:
    # the interpreter would not know it forked. os.fork() runs Python's
    # at-fork handlers and leaves the child a consistent interpreter.
    try:
        pid = os.fork()
    except OSError:
        return -1
    if pid == 0:
        # The child leaves with _exit(): make sure what it prints is not
        # lost in a buffer.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
    return pid


Mpg.set_fork_func(_fork)
