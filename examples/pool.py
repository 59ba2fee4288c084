#!/usr/bin/python3
# pool.py: map a function over a list with a pool of worker processes
#
# The first example of Python's multiprocessing documentation,
# `with Pool(5) as p: print(p.map(f, [1, 2, 3]))`, with libmpg's
# introspected API and a pool of 2 processes. The list and the results are
# GVariants ('ai'); unpack() makes a Python list of the result.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg


def f(x):
    return GLib.Variant('i', x.unpack() * x.unpack())


if __name__ == '__main__':
    p = Mpg.Pool.new(2)
    try:
        f_id = p.add_function(f)
        print(p.map(f_id, GLib.Variant('ai', [1, 2, 3]), 0).unpack())    # prints "[1, 4, 9]"
    finally:
        # What leaving Python's `with Pool(…)` block does.
        p.terminate()
        p.join(-1)
