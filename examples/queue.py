#!/usr/bin/python3
# queue.py: exchange objects between processes through a queue
#
# The Queue example of Python's multiprocessing documentation, with libmpg:
# only the import line differs. The list crosses as a GVariant ('av' of
# 'x', 'mv' and 's'), converted both ways by the PyGObject override.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository.Mpg import Process, Queue


def f(q):
    q.put([42, None, 'hello'])


if __name__ == '__main__':
    q = Queue()
    p = Process(target=f, args=(q,))
    p.start()
    print(q.get())    # prints "[42, None, 'hello']"
    p.join()
