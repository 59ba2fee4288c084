#!/usr/bin/python3
# pool.py: map a function over a list with a pool of worker processes
#
# The first example of Python's multiprocessing documentation, with libmpg
# and a pool of 2 processes: only the import line differs. Values cross as
# GVariants, converted by the PyGObject override; Mpg.Pool.new(),
# add_function() and GLib.Variant give the GLib layer underneath.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository.Mpg import Pool


def f(x):
    return x*x


if __name__ == '__main__':
    with Pool(2) as p:
        print(p.map(f, [1, 2, 3]))    # prints "[1, 4, 9]"
