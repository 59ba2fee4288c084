#!/usr/bin/python3
# mpi_pool.py: the Python Pool with workers on MPI ranks (TAP output)
#
# Run as `mpirun -n 3 python3 mpi_pool.py` (ranks 1 and 2 relay when they
# import Mpg, and never run the rest), or with MPG_POOL_BACKEND=mpi-spawn
# and no launcher. Each task reports where it ran: results computed by
# local processes fail the test.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import sys

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import Mpg  # noqa: E402  (ranks other than 0 stay here)


def where(x):
    return (x * x, int(os.environ.get('MPG_MPI_RANK', '-1')),
            os.readlink('/proc/self/ns/net'), Mpg.current_process().name)


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail(x):
    if x == 7:
        raise ValueError('no luck with %d' % x)
    return x


def crash(x):
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


_tests = []


def test(func):
    _tests.append(func)
    return func


def check_remote(results, n_workers):
    assert [r[0] for r in results] == [i * i for i in range(len(results))], results
    ranks = {r[1] for r in results}
    assert all(rank >= 1 for rank in ranks), 'computed locally: %r' % (ranks,)
    assert all(r[3].startswith('MpiPoolWorker-') for r in results), results
    assert len(ranks) == n_workers, 'ranks used: %r' % (ranks,)


@test
def backend_and_processes():
    with Mpg.Pool() as p:
        expected = (Mpg.PoolBackend.MPI_SPAWN if os.environ.get('MPG_POOL_BACKEND') == 'mpi-spawn'
                    else Mpg.PoolBackend.MPI)
        assert p.props.backend == expected, p.props.backend
        if expected == Mpg.PoolBackend.MPI:
            # One worker per rank other than 0.
            assert p.props.processes == 2, p.props.processes


@test
def map_where():
    with Mpg.Pool(2) as p:
        check_remote(p.map(where, range(24), chunksize=1), 2)


@test
def same_as_local():
    with Mpg.Pool(2) as p:
        remote = p.map(square, range(500))
    with Mpg.Pool(2, backend='local') as p:
        assert p.props.backend == Mpg.PoolBackend.LOCAL
        local = p.map(square, range(500))
    assert remote == local


@test
def async_apis():
    with Mpg.Pool(2) as p:
        r = p.map_async(where, range(12), chunksize=1)
        check_remote(r.get(timeout=60), 2)
        assert p.apply_async(add, (2, 3)).get(timeout=60) == 5
        assert list(p.imap(square, range(10))) == [i * i for i in range(10)]
        assert sorted(p.imap_unordered(square, range(10))) == [i * i for i in range(10)]
        assert p.starmap(add, [(1, 2), (3, 4)]) == [3, 7]


@test
def exception():
    with Mpg.Pool(2) as p:
        try:
            p.map(fail, range(10))
        except ValueError as e:
            assert 'no luck with 7' in str(e), str(e)
        else:
            raise AssertionError('no exception')


@test
def crash_costs_a_worker():
    with Mpg.Pool(2) as p:
        try:
            p.map(crash, range(6), chunksize=1)
        except Exception as e:  # noqa: B902
            assert 'died' in str(e) or 'Worker' in str(e), repr(e)
        else:
            raise AssertionError('no error')
        check_remote(p.map(where, range(24), chunksize=1), 2)


def main():
    signal.alarm(240)
    print('1..%d' % len(_tests), flush=True)
    failed = 0
    for i, func in enumerate(_tests, 1):
        try:
            func()
        except Exception as e:  # noqa: B902
            failed += 1
            print('not ok %d - %s: %s: %s' % (i, func.__name__, type(e).__name__, e), flush=True)
        else:
            print('ok %d - %s' % (i, func.__name__), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
