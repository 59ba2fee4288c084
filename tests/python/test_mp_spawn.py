# test_mp_spawn.py: the spawn and forkserver start methods in the
# multiprocessing layer
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A spawned child is a new interpreter that imports this module by name
# (pytest puts the tests directory on sys.path) and finds the tasks below
# by module:qualname.

import os

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import Mpg  # noqa: E402

import pytest  # noqa: E402

T = 30


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail(x):
    raise KeyError('no %s' % x)


def identity():
    return os.getpid(), Mpg.current_process().name


def put_seed(q):
    q.put([42, None, 'hello'])


def exit_with(code):
    raise SystemExit(code)


@pytest.fixture(params=['spawn', 'forkserver'])
def ctx(request):
    return Mpg.get_context(request.param)


def test_pool_map(ctx):
    with ctx.Pool(2) as pool:
        assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.apply(square, (12,)) == 144
        assert sorted(pool.imap_unordered(square, range(5))) == [0, 1, 4, 9, 16]
        assert pool.map_async(square, [5]).get(T) == [25]


def test_pool_workers_are_new_programs(ctx):
    with ctx.Pool(2) as pool:
        pid, name = pool.apply(identity)
        assert pid != os.getpid()
        assert name.startswith({'spawn': 'SpawnPoolWorker-',
                                'forkserver': 'ForkServerPoolWorker-'}[ctx.get_start_method()])


def test_pool_task_exception(ctx):
    with ctx.Pool(1) as pool:
        with pytest.raises(KeyError, match='no 3'):
            pool.apply(fail, (3,))
        # The pool goes on.
        assert pool.apply(square, (3,)) == 9


def test_pool_refuses_lambdas(ctx):
    with ctx.Pool(1) as pool:
        with pytest.raises(ValueError, match='top level of a module'):
            pool.map(lambda x: x, [1])

        def nested(x):
            return x

        with pytest.raises(ValueError, match='lambdas, closures and nested functions'):
            pool.map(nested, [1])


def test_process(ctx):
    p = ctx.Process(target=square, args=(3,))
    p.start()
    p.join(T)
    assert p.exitcode == 0


def test_process_exit_code(ctx):
    p = ctx.Process(target=exit_with, args=(7,))
    p.start()
    p.join(T)
    assert p.exitcode == 7
    p = ctx.Process(target=fail, args=('x',))
    p.start()
    p.join(T)
    assert p.exitcode == 1


def test_process_with_a_queue(ctx):
    # The seed's Queue example, with spawn: the queue travels as a handle
    # and its fds.
    q = ctx.Queue()
    p = ctx.Process(target=put_seed, args=(q,))
    p.start()
    assert q.get(timeout=T) == [42, None, 'hello']
    p.join(T)
    assert p.exitcode == 0


def test_process_refuses_lambdas(ctx):
    p = ctx.Process(target=lambda: None)
    with pytest.raises(ValueError, match='top level of a module'):
        p.start()


@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_set_start_method(method):
    Mpg.set_start_method(method, force=True)
    try:
        assert Mpg.get_start_method() == method
        with Mpg.Pool(1) as pool:
            assert pool.props.start_method.value_nick == method
            assert pool.map(square, [4]) == [16]
        # fork is still there, by context.
        with Mpg.get_context('fork').Pool(1) as pool:
            assert pool.map(lambda x: -x, [4]) == [-4]
    finally:
        Mpg.set_start_method('fork', force=True)


_worker_queue = None


def init_with_queue(q, tag):
    global _worker_queue
    _worker_queue = (q, tag)


def put_tagged(x):
    q, tag = _worker_queue
    q.put((tag, x))
    return x


def test_pool_initializer_with_a_queue(ctx):
    # multiprocessing's way to give pool workers a queue: the initializer.
    q = ctx.Queue()
    with ctx.Pool(2, initializer=init_with_queue, initargs=(q, 'w')) as pool:
        assert pool.map(put_tagged, [1, 2, 3]) == [1, 2, 3]
        got = sorted(q.get(timeout=T) for _ in range(3))
    assert got == [('w', 1), ('w', 2), ('w', 3)]
