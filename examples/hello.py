#!/usr/bin/python3
# hello.py: run a function in a child process
#
# The first example of Python's multiprocessing documentation, with libmpg.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg


def f(args):
    name, = args.unpack()
    print('hello', name)


if __name__ == '__main__':
    p = Mpg.Process.new(GLib.Variant('(s)', ('bob',)), f)
    p.start()
    p.join(-1)
