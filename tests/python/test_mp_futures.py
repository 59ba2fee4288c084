# test_mp_futures.py: concurrent.futures on Mpg.Pool
# (Mpg.ProcessPoolExecutor), as CPython's test_concurrent_futures checks it
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import concurrent.futures as futures
import os
import threading
import time

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import Mpg  # noqa: E402

import pytest  # noqa: E402

from mpgtest import CHILD_TIMEOUT_S  # noqa: E402

pytestmark = pytest.mark.usefixtures('no_glib_criticals')

T = CHILD_TIMEOUT_S


def pow_(x, y=2):
    return x ** y


@pytest.fixture
def executor():
    e = Mpg.ProcessPoolExecutor(2)
    yield e
    e.shutdown(wait=True, cancel_futures=True)


def test_is_an_executor(executor):
    assert isinstance(executor, futures.Executor)
    assert Mpg.PoolExecutor is Mpg.ProcessPoolExecutor


def test_submit(executor):
    f = executor.submit(pow_, 2, 8)
    assert isinstance(f, futures.Future)
    assert f.result(T) == 256
    assert executor.submit(pow_, 3, y=3).result(T) == 27
    assert executor.submit(os.getpid).result(T) != os.getpid()


def test_submit_a_lambda(executor):
    k = 5
    assert executor.submit(lambda: k * 2).result(T) == 10


def test_exception(executor):
    f = executor.submit(pow_, 'a', 'b')
    with pytest.raises(TypeError):
        f.result(T)
    assert isinstance(f.exception(T), TypeError)
    assert isinstance(f.exception().__cause__, Mpg.RemoteTraceback)


def test_map(executor):
    assert list(executor.map(pow_, range(10))) == [x * x for x in range(10)]
    assert list(executor.map(pow_, range(5), [3] * 5, chunksize=2)) == [x ** 3 for x in range(5)]


def test_map_timeout(executor):
    it = executor.map(time.sleep, [1.0, 1.0], timeout=0.1)
    with pytest.raises(futures.TimeoutError):
        list(it)


def test_add_done_callback(executor):
    seen = []
    done = threading.Event()

    def callback(f):
        seen.append(f.result())
        done.set()

    f = executor.submit(pow_, 4)
    f.add_done_callback(callback)
    assert done.wait(T)
    assert seen == [16]


def test_as_completed_and_wait(executor):
    fs = [executor.submit(pow_, i) for i in range(6)]
    assert sorted(f.result() for f in futures.as_completed(fs, timeout=T)) == \
        [i * i for i in range(6)]
    done, not_done = futures.wait(fs, timeout=T)
    assert len(done) == 6 and not not_done


def test_cancel_a_pending_future():
    with Mpg.ProcessPoolExecutor(1) as e:
        blocker = e.submit(time.sleep, 0.5)
        f = e.submit(pow_, 3)
        assert f.cancel()
        assert f.cancelled()
        with pytest.raises(futures.CancelledError):
            f.result()
        blocker.result(T)


def test_shutdown_cancel_futures():
    e = Mpg.ProcessPoolExecutor(1)
    first = e.submit(time.sleep, 0.3)
    rest = [e.submit(pow_, i) for i in range(5)]
    e.shutdown(wait=True, cancel_futures=True)
    assert first.done()
    assert all(f.cancelled() or f.done() for f in rest)
    assert any(f.cancelled() for f in rest)
    with pytest.raises(RuntimeError):
        e.submit(pow_, 1)


def test_shutdown_without_waiting_completes_pending_work():
    e = Mpg.ProcessPoolExecutor(1)
    fs = [e.submit(pow_, i) for i in range(3)]
    e.shutdown(wait=False)
    assert [f.result(T) for f in fs] == [0, 1, 4]
    e.pool.join()


def test_context_manager_waits():
    with Mpg.ProcessPoolExecutor(2) as e:
        fs = [e.submit(pow_, i) for i in range(4)]
    assert all(f.done() for f in fs)
    assert Mpg.active_children() == []


def test_initializer_and_max_tasks_per_child():
    import builtins

    def init(v):
        builtins._mpg_futures_test = v

    with Mpg.ProcessPoolExecutor(1, initializer=init, initargs=(7,),
                                 max_tasks_per_child=1) as e:
        assert e.submit(lambda: builtins._mpg_futures_test).result(T) == 7
        pids = {e.submit(os.getpid).result(T) for _ in range(2)}
    assert len(pids) == 2


def test_mp_context_argument():
    with Mpg.ProcessPoolExecutor(1, mp_context=Mpg.get_context('fork')) as e:
        assert e.submit(pow_, 2).result(T) == 4
    with pytest.raises(ValueError):
        Mpg.ProcessPoolExecutor(0)
