#!/usr/bin/python3
# lock.py: synchronize processes with a lock
#
# The Lock example of Python's multiprocessing documentation, with libmpg:
# only the import line differs. Ten processes print "hello world N" one at
# a time, in any order.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository.Mpg import Process, Lock


def f(l, i):
    l.acquire()
    try:
        print('hello world', i)
    finally:
        l.release()


if __name__ == '__main__':
    lock = Lock()

    for num in range(10):
        Process(target=f, args=(lock, num)).start()
