#!/usr/bin/python3
# queue.py: exchange objects between processes through a queue
#
# The Queue example of Python's multiprocessing documentation, with
# libmpg's introspected API. Values cross as GVariants: the list of mixed
# values is an array of variants ('av'), None an empty maybe ('mv').
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg


def f(args, q):
    q.put(GLib.Variant('av', [GLib.Variant('i', 42),
                              GLib.Variant('mv', None),
                              GLib.Variant('s', 'hello')]),
          True, -1, None)


if __name__ == '__main__':
    q = Mpg.Queue.new(0)
    p = Mpg.Process.new(None, f, q)
    p.start()
    print(q.get(True, -1, None).unpack())    # prints "[42, None, 'hello']"
    p.join(-1)
