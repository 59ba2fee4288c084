#!/usr/bin/python3
# info.py: show the processes involved
#
# The second example of Python's multiprocessing documentation, with libmpg:
# only the import line differs.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os

import gi
gi.require_version('Mpg', '1.0')
from gi.repository.Mpg import Process


def info(title):
    print(title)
    print('module name:', __name__)
    print('parent process:', os.getppid())
    print('process id:', os.getpid())


def f(name):
    info('function f')
    print('hello', name)


if __name__ == '__main__':
    info('main line')
    p = Process(target=f, args=('bob',))
    p.start()
    p.join()
