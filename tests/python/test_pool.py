# test_pool.py: Mpg.Pool from Python, through GObject introspection
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the semantics of Python's multiprocessing.Pool on the introspected
# API, with workers running Python (forked through the override's os.fork)
# and task functions that are lambdas and closures added at any time.
# Another Python thread spins, holding the GIL, during the whole module: the
# blocking calls must release it, and the workers must not deadlock on it.
#
# Every wait is bounded: blocking calls without a timeout of their own get
# a cancellable that a timer cancels (deadline()), main loops a timeout
# guard (run_loop()), threads a join timeout.

import collections
import contextlib
import gc
import os
import signal
import threading
import time

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import Gio, GLib, Mpg  # noqa: E402

import pytest  # noqa: E402

from mpgtest import CHILD_TIMEOUT_S, TIMEOUT_MS, assert_error, run_loop  # noqa: E402

# Any GLib warning or critical during a test fails it.
pytestmark = pytest.mark.usefixtures('no_glib_criticals')

PYTHON_ERROR_DOMAIN = 'mpg-python-error-quark'


# Helpers.

@contextlib.contextmanager
def deadline(seconds=TIMEOUT_MS / 1000):
    """A cancellable that a timer cancels: bounds a call without a timeout."""
    cancellable = Gio.Cancellable()
    timer = threading.Timer(seconds, cancellable.cancel)
    timer.daemon = True
    timer.start()
    try:
        yield cancellable
    finally:
        timer.cancel()
        timer.join()
    assert not cancellable.is_cancelled(), 'the call did not complete in %g s' % seconds


def pool_map(pool, function, items, chunksize=0):
    with deadline() as cancellable:
        return pool.map(function, items, chunksize, cancellable)


def pool_apply(pool, function, arg=None):
    with deadline() as cancellable:
        return pool.apply(function, arg, cancellable)


def ints(values):
    return GLib.Variant('ai', list(values))


def children():
    """The pids of this process's children, zombies included."""
    pids = set()
    for tid in os.listdir('/proc/self/task'):
        try:
            with open('/proc/self/task/%s/children' % tid) as f:
                pids.update(int(pid) for pid in f.read().split())
        except FileNotFoundError:
            pass
    return pids


def assert_gone(pids, within=0):
    """None of pids is a child of this process any more (not even a zombie)."""
    end = time.monotonic() + within
    while True:
        left = set(pids) & children()
        if not left or time.monotonic() >= end:
            break
        time.sleep(0.02)
    assert not left, 'workers %r are still children of the parent' % sorted(left)


def iterate(it):
    """All the results of an iterator, as Python values."""
    values = []
    for _ in range(it.get_length() + 1):
        ok, value = it.next(TIMEOUT_MS, None)
        assert ok
        if value is None:
            return values
        values.append(value.unpack())
    raise AssertionError('the iterator did not end after its %d items' % it.get_length())


def in_thread(func, *args):
    """Runs func(*args) in a thread; returns a function that joins it
    (bounded) and returns its result or raises its exception."""
    outcome = []

    def run():
        try:
            outcome.append((True, func(*args)))
        except BaseException as e:  # noqa: B902
            outcome.append((False, e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join():
        thread.join(TIMEOUT_MS / 1000)
        assert not thread.is_alive(), '%s did not return' % func
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    return join


def getpid_task(arg, *data):
    return GLib.Variant('i', os.getpid())


def sleep_task(arg, *data):
    time.sleep(arg.unpack())
    return arg


def new_pool_full(processes, initializer=None, initargs=None, maxtasksperchild=0):
    return Mpg.Pool.new_full(processes, initializer, initargs, maxtasksperchild)


@pytest.fixture
def make_pool():
    """Pools that are terminated and joined at the end of the test."""
    pools = []

    def make(processes=2, **kwargs):
        pool = new_pool_full(processes, **kwargs) if kwargs else Mpg.Pool.new(processes)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pids = pool.dup_worker_pids()
        pool.terminate()
        assert pool.join(TIMEOUT_MS)
        assert_gone(pids)


@pytest.fixture
def pool(make_pool):
    return make_pool(2)


# The seed: the Pool example of multiprocessing's documentation.

def test_seed_example(pool):
    f = pool.add_function(lambda arg, *data: GLib.Variant('i', arg.unpack() ** 2))
    result = pool_map(pool, f, ints([1, 2, 3]))
    assert result.get_type_string() == 'ai'
    assert result.unpack() == [1, 4, 9]


def test_function_ids(pool):
    a = pool.add_function(getpid_task)
    b = pool.add_function(getpid_task)
    assert a >= 1 and b >= 1 and a != b


def test_callback_signature(pool):
    # What PyGObject passes to a function: the item, then the user data
    # given to add_function(), one argument each.
    seen = lambda arg, *data: GLib.Variant('(vs)', (arg, repr(data)))  # noqa: E731
    f = pool.add_function(seen)
    assert pool_apply(pool, f, GLib.Variant('i', 5)).unpack() == (5, '()')
    g = pool.add_function(seen, 'extra', 42)
    assert pool_apply(pool, g, GLib.Variant('s', 'x')).unpack() == ('x', "('extra', 42)")


def test_map_with_a_lambda_created_just_before_the_call(pool):
    f = pool.add_function(getpid_task)
    first_pids = set(pool_map(pool, f, ints(range(8)), 1).unpack())
    # A closure over a local variable, added after the workers were forked:
    # they do not have it, and are replaced.
    offset = int(time.monotonic()) % 1000 + 1000
    g = pool.add_function(lambda arg, *data: GLib.Variant('(ii)', (arg.unpack() + offset, os.getpid())))
    results = pool_map(pool, g, ints(range(8)), 1).unpack()
    assert [r[0] for r in results] == [i + offset for i in range(8)]
    assert not (set(r[1] for r in results) & first_pids)
    assert os.getpid() not in set(r[1] for r in results)


def test_calls_of_one_function_reuse_warm_workers(make_pool):
    pool = make_pool(1)
    f = pool.add_function(getpid_task)
    pids = [pool_apply(pool, f).unpack() for _ in range(3)]
    assert len(set(pids)) == 1
    assert pids[0] != os.getpid()
    assert pool.dup_worker_pids() == [pids[0]]


def test_never_more_workers_than_processes(pool):
    f = pool.add_function(lambda arg, *data: (time.sleep(0.01), GLib.Variant('i', os.getpid()))[1])
    pids = set(pool_map(pool, f, ints(range(20)), 1).unpack())
    assert 1 <= len(pids) <= 2
    assert len(pool.dup_worker_pids()) <= 2


def test_processes(make_pool):
    assert make_pool(3).props.processes == 3
    assert make_pool(3).get_processes() == 3
    assert make_pool(0).props.processes == Mpg.cpu_count()


def test_properties(pool):
    assert pool.props.maxtasksperchild == 0
    assert pool.props.task_timeout == 0
    assert pool.props.retries == 0
    pool.props.task_timeout = 1500
    pool.props.retries = 2
    assert pool.get_task_timeout() == 1500
    assert pool.get_retries() == 2
    assert pool.props.tasks_submitted == 0
    assert pool.props.tasks_completed == 0
    assert pool.props.workers_replaced == 0
    f = pool.add_function(lambda arg, *data: arg)
    pool_map(pool, f, ints(range(10)), 3)
    pool_apply(pool, f, GLib.Variant('i', 1))
    # Counted in items.
    assert pool.props.tasks_submitted == 11
    assert pool.props.tasks_completed == 11


def test_workers_are_forked_lazily(pool):
    assert pool.dup_worker_pids() == []
    pool.add_function(getpid_task)
    assert pool.dup_worker_pids() == []


# Values in and out.

def test_map_of_strings(pool):
    f = pool.add_function(lambda arg, *data: GLib.Variant('s', arg.unpack().upper()))
    result = pool_map(pool, f, GLib.Variant('as', ['a', 'bc', 'def']))
    assert result.get_type_string() == 'as'
    assert result.unpack() == ['A', 'BC', 'DEF']


def test_map_of_tuples(pool):
    f = pool.add_function(lambda arg, *data: GLib.Variant('i', arg[0] * arg[1]))
    result = pool_map(pool, f, GLib.Variant('a(ii)', [(2, 3), (4, 5)]))
    assert result.unpack() == [6, 20]


def test_map_unboxes_variants(pool):
    f = pool.add_function(lambda arg, *data: GLib.Variant('s', arg.get_type_string()))
    items = GLib.Variant('av', [GLib.Variant('i', 1), GLib.Variant('s', 'x'), GLib.Variant('ai', [])])
    assert pool_map(pool, f, items).unpack() == ['i', 's', 'ai']


def test_map_of_results_of_different_types(pool):
    def f(arg, *data):
        x = arg.unpack()
        return GLib.Variant('i', x) if x % 2 else GLib.Variant('s', str(x))

    result = pool_map(pool, pool.add_function(f), ints(range(4)))
    assert result.get_type_string() == 'av'
    assert result.unpack() == ['0', 1, '2', 3]


def test_map_of_nothing(pool):
    f = pool.add_function(getpid_task)
    result = pool_map(pool, f, GLib.Variant('ai', []))
    assert result.get_type_string() == 'av'
    assert result.unpack() == []


def test_map_of_a_non_array(pool):
    f = pool.add_function(getpid_task)
    with pytest.raises(GLib.Error) as excinfo:
        pool_map(pool, f, GLib.Variant('i', 3))
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_ARGUMENT)


def test_starmap_passes_each_tuple(pool):
    # Through the introspected API the function receives each tuple whole
    # (as a C function does); multiprocessing's spelling, which unpacks it
    # into arguments, is the Python-level Pool of the override.
    f = pool.add_function(lambda t, *data: GLib.Variant('i', t.unpack()[0] * t.unpack()[1]))
    with deadline() as cancellable:
        result = pool.starmap(f, GLib.Variant('a(ii)', [(2, 3), (4, 5), (6, 7)]), 0, cancellable)
    assert result.unpack() == [6, 20, 42]


def test_starmap_of_non_tuples(pool):
    f = pool.add_function(lambda *args: None)
    with pytest.raises(GLib.Error) as excinfo:
        with deadline() as cancellable:
            pool.starmap(f, ints([1, 2]), 0, cancellable)
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_ARGUMENT)

@pytest.mark.parametrize('chunksize', [0, 1, 3, 7, 100])
def test_map_keeps_the_order(pool, chunksize):
    # Items that take longer the earlier they come, so that they finish
    # out of order.
    f = pool.add_function(lambda arg, *data: (time.sleep((20 - arg.unpack()) / 2000),
                                              GLib.Variant('i', -arg.unpack()))[1])
    assert pool_map(pool, f, ints(range(20)), chunksize).unpack() == [-i for i in range(20)]


def test_apply(pool):
    f = pool.add_function(lambda arg, *data: GLib.Variant('(si)', ('got', arg.unpack())))
    assert pool_apply(pool, f, GLib.Variant('i', 7)).unpack() == ('got', 7)


def test_apply_without_an_argument_and_without_a_result(pool):
    f = pool.add_function(lambda arg, *data: GLib.Variant('s', arg.get_type_string()))
    assert pool_apply(pool, f, None).unpack() == '()'
    g = pool.add_function(lambda arg, *data: None)
    result = pool_apply(pool, g, GLib.Variant('i', 1))
    assert result.get_type_string() == '()'


def test_apply_runs_in_a_worker(pool):
    f = pool.add_function(getpid_task)
    pid = pool_apply(pool, f).unpack()
    assert pid != os.getpid()
    assert pid in pool.dup_worker_pids()


def test_remove_function(pool):
    f = pool.add_function(getpid_task)
    pool_apply(pool, f)
    pool.remove_function(f)
    with pytest.raises(GLib.Error) as excinfo:
        pool_apply(pool, f)
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_ARGUMENT)
    assert 'Unknown function' in excinfo.value.message
    with pytest.raises(GLib.Error) as excinfo:
        pool_map(pool, 9999, ints([1]))
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_ARGUMENT)


def test_blocking_map_releases_the_gil(spinner, pool):
    f = pool.add_function(sleep_task)
    before = spinner.count
    pool_map(pool, f, GLib.Variant('ad', [0.1, 0.1, 0.1, 0.1]), 1)
    assert spinner.count > before


def test_initializer(make_pool):
    state = {}

    def init(arg, *data):
        state['init'] = (arg.unpack(), os.getpid())

    pool = make_pool(2, initializer=init, initargs=GLib.Variant('(s)', ('ready',)))
    f = pool.add_function(lambda arg, *data: GLib.Variant('((s)ii)', state['init'] + (os.getpid(),)))
    for args, init_pid, pid in pool_map(pool, f, ints(range(6)), 1).unpack():
        # The initializer ran in the worker that ran the task.
        assert args == ('ready',)
        assert init_pid == pid
        assert pid != os.getpid()
    assert 'init' not in state


def test_initializer_failing(make_pool):
    def init(arg, *data):
        raise GLib.Error.new_literal(Gio.io_error_quark(), 'no config', Gio.IOErrorEnum.NOT_FOUND)

    pool = make_pool(2, initializer=init)
    f = pool.add_function(getpid_task)
    for _ in range(2):
        with pytest.raises(GLib.Error) as excinfo:
            pool_apply(pool, f)
        assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND)
        assert excinfo.value.message == 'Pool initializer failed: no config'


# Asynchronous calls and progress.

def test_map_async_in_a_main_loop(pool):
    loop = GLib.MainLoop()
    results = []
    progress = []
    f = pool.add_function(lambda arg, *data: GLib.Variant('i', arg.unpack() ** 2))

    def on_progress(p, call, done, total):
        assert p is pool
        progress.append((call, done, total))

    def on_mapped(p, result, data):
        try:
            results.append((result, data, p.map_finish(result)))
        except GLib.Error as e:
            results.append((result, data, e))
        loop.quit()

    handler = pool.connect('progress', on_progress)
    pool.map_async(f, ints(range(20)), 5, None, on_mapped, 'data')
    # Never completes in the call itself.
    assert results == [] and progress == []
    # The loop runs meanwhile.
    ticks = []
    ticker = GLib.timeout_add(1, lambda: ticks.append(True) or True)
    run_loop(loop, 'map_async')
    GLib.source_remove(ticker)
    pool.disconnect(handler)

    assert len(results) == 1
    result, data, value = results[0]
    assert not isinstance(value, GLib.Error), value
    assert data == 'data'
    assert value.get_type_string() == 'ai'
    assert value.unpack() == [i * i for i in range(20)]
    # One emission per chunk, in items, all before the callback, for this
    # very call.
    assert [(done, total) for _, done, total in progress] == [(5, 20), (10, 20), (15, 20), (20, 20)]
    assert all(call is result for call, _, _ in progress)
    assert ticks


def test_map_async_error(pool):
    loop = GLib.MainLoop()
    results = []

    def f(arg, *data):
        raise GLib.Error.new_literal(Gio.io_error_quark(), 'bad item', Gio.IOErrorEnum.FAILED)

    def on_mapped(p, result):
        try:
            results.append(p.map_finish(result))
        except GLib.Error as e:
            results.append(e)
        loop.quit()

    pool.map_async(pool.add_function(f), ints([1, 2]), 0, None, on_mapped)
    run_loop(loop, 'map_async')
    assert len(results) == 1
    assert isinstance(results[0], GLib.Error)
    assert results[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.FAILED)
    assert results[0].message == 'bad item'


def test_apply_async_and_progress(pool):
    loop = GLib.MainLoop()
    results = []
    progress = []
    f = pool.add_function(lambda arg, *data: GLib.Variant('s', arg.unpack() * 2))

    def on_applied(p, result):
        results.append(p.apply_finish(result).unpack())
        loop.quit()

    pool.connect('progress', lambda p, call, done, total: progress.append((done, total)))
    pool.apply_async(f, GLib.Variant('s', 'ab'), None, on_applied)
    run_loop(loop, 'apply_async')
    assert results == ['abab']
    assert progress == [(1, 1)]


def test_concurrent_map_async_calls(pool):
    loop = GLib.MainLoop()
    results = {}
    f = pool.add_function(lambda arg, *data: (time.sleep(0.005), GLib.Variant('i', arg.unpack() + 1))[1])

    def on_mapped(p, result, name):
        results[name] = p.map_finish(result).unpack()
        if len(results) == 3:
            loop.quit()

    for name, start in [('a', 0), ('b', 100), ('c', 200)]:
        pool.map_async(f, ints(range(start, start + 30)), 2, None, on_mapped, name)
    run_loop(loop, 'three map_async')
    assert results == {name: list(range(start + 1, start + 31))
                       for name, start in [('a', 0), ('b', 100), ('c', 200)]}


# Iterators.

def test_imap(pool):
    f = pool.add_function(lambda arg, *data: (time.sleep((10 - arg.unpack()) / 1000),
                                              GLib.Variant('i', arg.unpack() * 10))[1])
    it = pool.imap(f, ints(range(10)), 0)
    assert it.get_length() == 10
    assert iterate(it) == [i * 10 for i in range(10)]
    # The end stays the end.
    assert it.next(TIMEOUT_MS, None) == (True, None)


def test_imap_unordered(pool):
    # Item 0 takes long: with two workers, the others finish first.
    f = pool.add_function(lambda arg, *data: (time.sleep(0.5 if arg.unpack() == 0 else 0),
                                              arg)[1])
    it = pool.imap_unordered(f, ints(range(6)), 1)
    assert it.get_length() == 6
    values = iterate(it)
    assert sorted(values) == list(range(6))
    assert values[0] != 0


def test_imap_error_then_the_next_items(pool):
    def f(arg, *data):
        if arg.unpack() == 1:
            raise GLib.Error.new_literal(Gio.io_error_quark(), 'item 1', Gio.IOErrorEnum.NOT_FOUND)
        return arg

    it = pool.imap(pool.add_function(f), ints(range(3)), 1)
    assert it.next(TIMEOUT_MS, None)[1].unpack() == 0
    with pytest.raises(GLib.Error) as excinfo:
        it.next(TIMEOUT_MS, None)
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND)
    assert excinfo.value.message == 'item 1'
    assert it.next(TIMEOUT_MS, None)[1].unpack() == 2
    assert it.next(TIMEOUT_MS, None) == (True, None)


def test_imap_next_timeout(pool):
    f = pool.add_function(sleep_task)
    it = pool.imap(f, GLib.Variant('ad', [0.5]), 1)
    start = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        it.next(0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    with pytest.raises(GLib.Error) as excinfo:
        it.next(50, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    assert time.monotonic() - start < 0.5
    # Nothing was consumed.
    assert iterate(it) == [0.5]


def test_imap_next_cancelled(pool):
    f = pool.add_function(sleep_task)
    it = pool.imap(f, GLib.Variant('ad', [0.5]), 1)
    cancellable = Gio.Cancellable()
    cancellable.cancel()
    with pytest.raises(GLib.Error) as excinfo:
        it.next(TIMEOUT_MS, cancellable)
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    assert iterate(it) == [0.5]


def test_iterator_next_async(pool):
    loop = GLib.MainLoop()
    got = []
    f = pool.add_function(lambda arg, *data: GLib.Variant('i', -arg.unpack()))
    it = pool.imap(f, ints(range(4)), 1)

    def on_next(it, result):
        ok, value = it.next_finish(result)
        assert ok
        if value is None:
            loop.quit()
        else:
            got.append(value.unpack())
            it.next_async(None, on_next)

    it.next_async(None, on_next)
    run_loop(loop, 'next_async')
    assert got == [0, -1, -2, -3]


# Errors of tasks.

def test_exception_in_a_task(pool):
    # The override turns a Python exception into a GLib.Error that carries
    # the traceback.
    def f(arg, *data):
        raise ValueError('boom %d' % arg.unpack())

    with pytest.raises(GLib.Error) as excinfo:
        pool_apply(pool, pool.add_function(f), GLib.Variant('i', 3))
    assert excinfo.value.domain == PYTHON_ERROR_DOMAIN
    assert 'ValueError: boom 3' in excinfo.value.message
    assert 'raise ValueError' in excinfo.value.message


def test_exception_in_a_mapped_lambda(pool):
    f = pool.add_function(lambda arg, *data: GLib.Variant('i', 10 // arg.unpack()))
    with pytest.raises(GLib.Error) as excinfo:
        pool_map(pool, f, ints([5, 0, 2]))
    assert excinfo.value.domain == PYTHON_ERROR_DOMAIN
    assert 'ZeroDivisionError' in excinfo.value.message
    # The pool is still usable.
    assert pool_map(pool, f, ints([5, 2])).unpack() == [2, 5]


def test_glib_error_in_a_task_keeps_domain_code_and_message(pool):
    def f(arg, *data):
        raise GLib.Error('custom', 'my-pool-test-error-quark', 4)

    with pytest.raises(GLib.Error) as excinfo:
        pool_apply(pool, pool.add_function(f))
    assert excinfo.value.domain == 'my-pool-test-error-quark'
    assert excinfo.value.code == 4
    assert excinfo.value.message == 'custom'


def test_map_fails_with_the_error_of_the_first_failing_item(pool):
    def f(arg, *data):
        x = arg.unpack()
        if x in (3, 7):
            # The later failing item fails first.
            time.sleep(0.2 if x == 3 else 0)
            raise GLib.Error.new_literal(Gio.io_error_quark(), 'item %d' % x, Gio.IOErrorEnum.NOT_FOUND)
        return arg

    with pytest.raises(GLib.Error) as excinfo:
        pool_map(pool, pool.add_function(f), ints(range(10)), 1)
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND)
    assert excinfo.value.message == 'item 3'


def test_every_item_of_a_chunk_runs_after_a_failure(pool):
    q = Mpg.Queue.new(0)

    def f(arg, *data):
        q.put(arg, True, TIMEOUT_MS, None)
        if arg.unpack() == 1:
            raise GLib.Error.new_literal(Gio.io_error_quark(), 'item 1', Gio.IOErrorEnum.FAILED)
        return arg

    with pytest.raises(GLib.Error):
        pool_map(pool, pool.add_function(f), ints(range(5)), 5)
    ran = sorted(q.get(True, TIMEOUT_MS, None).unpack() for _ in range(5))
    assert ran == list(range(5))


# Robustness: workers that die, timeouts, cancellation.

def test_worker_killing_itself(pool):
    f = pool.add_function(lambda arg, *data: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(GLib.Error) as excinfo:
        pool_apply(pool, f)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.WORKER_DIED)
    # The worker was replaced; the pool goes on.
    g = pool.add_function(lambda arg, *data: GLib.Variant('i', arg.unpack() + 1))
    assert pool_map(pool, g, ints([1, 2])).unpack() == [2, 3]
    assert pool.props.workers_replaced >= 1


def test_worker_killed_by_the_parent(make_pool, gate):
    pool = make_pool(1)

    def f(arg, *data):
        gate.open()
        time.sleep(CHILD_TIMEOUT_S)

    fid = pool.add_function(f)
    join = in_thread(pool_apply, pool, fid)
    assert gate.wait(TIMEOUT_MS / 1000), 'the task did not start'
    pid, = pool.dup_worker_pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(GLib.Error) as excinfo:
        join()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.WORKER_DIED)
    assert str(pid) in excinfo.value.message
    assert_gone([pid], within=5)
    # Other calls work.
    g = pool.add_function(getpid_task)
    assert pool_apply(pool, g).unpack() != pid


def test_worker_died_is_retried(make_pool, tmp_path):
    pool = make_pool(1)
    pool.props.retries = 1
    flag = tmp_path / 'first-attempt'

    def f(arg, *data):
        # Dies at the first attempt only.
        if not flag.exists():
            flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return GLib.Variant('s', 'second attempt')

    assert pool_apply(pool, pool.add_function(f)).unpack() == 'second attempt'
    assert pool.props.workers_replaced >= 1


def test_task_timeout(pool):
    pool.props.task_timeout = 200
    f = pool.add_function(sleep_task)
    start = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        pool_apply(pool, f, GLib.Variant('d', CHILD_TIMEOUT_S))
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    assert 0.15 <= time.monotonic() - start < 10
    # Short enough tasks go through.
    assert pool_map(pool, f, GLib.Variant('ad', [0.01, 0.01])).unpack() == [0.01, 0.01]


def test_map_cancelled(pool):
    f = pool.add_function(sleep_task)
    cancellable = Gio.Cancellable()
    timer = threading.Timer(0.2, cancellable.cancel)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(GLib.Error) as excinfo:
            pool.map(f, GLib.Variant('ad', [0.2] * 20), 1, cancellable)
    finally:
        timer.join()
    # Twenty items of 0.2 s on two workers take 2 s: the call failed at
    # once, without waiting for them.
    assert time.monotonic() - start < 1.5
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    # The pool stays usable.
    assert pool_map(pool, f, GLib.Variant('ad', [0.0, 0.0])).unpack() == [0.0, 0.0]


def test_map_async_cancelled(pool):
    loop = GLib.MainLoop()
    errors = []
    f = pool.add_function(sleep_task)

    def on_mapped(p, result):
        try:
            p.map_finish(result)
        except GLib.Error as e:
            errors.append(e)
        loop.quit()

    cancellable = Gio.Cancellable()
    pool.map_async(f, GLib.Variant('ad', [0.2] * 20), 1, cancellable, on_mapped)
    GLib.timeout_add(100, lambda: cancellable.cancel() and False)
    start = time.monotonic()
    run_loop(loop, 'the cancelled map_async')
    assert time.monotonic() - start < 1.5
    assert len(errors) == 1
    assert errors[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)


# maxtasksperchild.

def test_maxtasksperchild_replaces_workers(make_pool):
    pool = make_pool(1, maxtasksperchild=1)
    assert pool.props.maxtasksperchild == 1
    f = pool.add_function(getpid_task)
    pids = [pool_apply(pool, f).unpack() for _ in range(3)]
    # One chunk per worker: three workers in turn.
    assert len(set(pids)) == 3
    assert os.getpid() not in pids
    assert_gone(pids[:2], within=5)


def test_maxtasksperchild_counts_chunks(make_pool):
    pool = make_pool(1, maxtasksperchild=2)
    f = pool.add_function(getpid_task)
    pids = pool_map(pool, f, ints(range(12)), 2).unpack()
    # Six chunks of two items, two chunks per worker: three workers, each of
    # which ran four items.
    assert sorted(collections.Counter(pids).values()) == [4, 4, 4]


# close(), terminate(), join().

def test_close_lets_pending_calls_complete(pool):
    loop = GLib.MainLoop()
    results = []
    f = pool.add_function(sleep_task)

    def on_mapped(p, result):
        results.append(p.map_finish(result).unpack())
        loop.quit()

    pool.map_async(f, GLib.Variant('ad', [0.1] * 4), 1, None, on_mapped)
    pool.close()
    run_loop(loop, 'the map_async before close')
    assert results == [[0.1] * 4]

    with pytest.raises(GLib.Error) as excinfo:
        pool_map(pool, f, GLib.Variant('ad', [0.0]))
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    assert 'Pool not running' in excinfo.value.message
    with pytest.raises(GLib.Error) as excinfo:
        pool_apply(pool, f, GLib.Variant('d', 0.0))
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    with pytest.raises(GLib.Error) as excinfo:
        pool.imap(f, GLib.Variant('ad', [0.0]), 1)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)

    pids = pool.dup_worker_pids()
    assert pool.join(TIMEOUT_MS)
    assert_gone(pids)
    assert pool.dup_worker_pids() == []


def test_join_before_close(pool):
    with pytest.raises(GLib.Error) as excinfo:
        pool.join(TIMEOUT_MS)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_join_timeout(pool, gate):
    def f(arg, *data):
        gate.open()
        time.sleep(CHILD_TIMEOUT_S)

    join = in_thread(pool_apply, pool, pool.add_function(f))
    assert gate.wait(TIMEOUT_MS / 1000), 'the task did not start'
    pool.close()
    start = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        pool.join(100)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    assert 0.05 <= time.monotonic() - start < 10
    pool.terminate()
    assert pool.join(TIMEOUT_MS)
    with pytest.raises(GLib.Error) as excinfo:
        join()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)


def test_terminate_fails_pending_calls(pool, gate):
    def f(arg, *data):
        gate.open()
        time.sleep(CHILD_TIMEOUT_S)

    join = in_thread(pool_map, pool, pool.add_function(f), ints(range(4)), 1)
    assert gate.wait(TIMEOUT_MS / 1000), 'the task did not start'
    pids = pool.dup_worker_pids()
    assert pids
    start = time.monotonic()
    pool.terminate()
    with pytest.raises(GLib.Error) as excinfo:
        join()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)
    assert pool.join(TIMEOUT_MS)
    # The workers were killed, not waited for.
    assert time.monotonic() - start < CHILD_TIMEOUT_S / 2
    assert_gone(pids)
    # New calls are refused. (SPEC.md names the error after close() only;
    # Python raises the same "Pool not running" after either.)
    with pytest.raises(GLib.Error) as excinfo:
        pool_apply(pool, pool.add_function(getpid_task))
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_dropping_a_pool_reaps_its_workers():
    pool = Mpg.Pool.new(2)
    f = pool.add_function(getpid_task)
    pool_map(pool, f, ints(range(4)), 1)
    pids = pool.dup_worker_pids()
    assert pids
    del pool
    gc.collect()
    assert_gone(pids, within=5)
