#!/usr/bin/python3
# shared.py: share state between processes in shared memory
#
# The Value and Array example of Python's multiprocessing documentation,
# with libmpg: only the import line differs. The child writes straight into
# the shared memory, which the parent reads.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import gi
gi.require_version('Mpg', '1.0')
from gi.repository.Mpg import Process, Value, Array


def f(n, a):
    n.value = 3.1415927
    for i in range(len(a)):
        a[i] = -a[i]


if __name__ == '__main__':
    num = Value('d', 0.0)
    arr = Array('i', range(10))

    p = Process(target=f, args=(num, arr))
    p.start()
    p.join()

    print(num.value)
    print(arr[:])
