#!/usr/bin/python3
# hello.py: run a function in a child process
#
# The first example of Python's multiprocessing documentation, with libmpg:
# only the import line differs.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository.Mpg import Process


def f(name):
    print('hello', name)


if __name__ == '__main__':
    p = Process(target=f, args=('bob',))
    p.start()
    p.join()
