#!/usr/bin/python3
"""The Python side of bench/mpi: one configuration, one JSON line.

    bench_mpi.py mp N          multiprocessing.Pool(2), fork
    bench_mpi.py mpg N         libmpg's Python Pool(2) (backend from the
                               environment, MPI under mpirun)
    bench_mpi.py mpi4py N      mpi4py.futures.MPIPoolExecutor(2): spawned
                               ranks, or the job's ranks under
                               `mpirun -n 3 python3 -m mpi4py.futures`

Same measure as bench-mpi.c: the time from the pool's creation to its
first result, then the time per task of a map of N trivial tasks with
chunksize 1.
"""

import json
import sys
import time


def square(x):
    return x * x


def measure(make, run, n):
    t0 = time.monotonic()
    pool = make()
    run(pool, 2)
    t1 = time.monotonic()
    t2 = time.monotonic()
    results = run(pool, n)
    t3 = time.monotonic()
    assert results == [i * i for i in range(n)]
    return pool, {'start_s': round(t1 - t0, 4), 'task_us': round((t3 - t2) / n * 1e6, 2), 'n': n}


def main():
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind == 'mp':
        import multiprocessing
        multiprocessing.set_start_method('fork')
        pool, out = measure(lambda: multiprocessing.Pool(2),
                            lambda p, k: p.map(square, range(k), chunksize=1), n)
        pool.terminate()
        out['backend'] = 'multiprocessing'
    elif kind == 'mpg':
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository import Mpg
        pool, out = measure(lambda: Mpg.Pool(2),
                            lambda p, k: p.map(square, range(k), chunksize=1), n)
        out['backend'] = 'mpg-py ' + pool.props.backend.value_nick
        pool.terminate()
        pool.join()
    elif kind == 'mpi4py':
        from mpi4py.futures import MPIPoolExecutor
        pool, out = measure(lambda: MPIPoolExecutor(max_workers=2),
                            lambda p, k: list(p.map(square, range(k), chunksize=1)), n)
        pool.shutdown()
        out['backend'] = 'mpi4py.futures'
    else:
        sys.exit('unknown kind %r' % kind)
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
