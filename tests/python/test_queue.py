# test_queue.py: Mpg.Queue from Python, through GObject introspection
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the semantics of Python's multiprocessing.Queue and JoinableQueue on
# the introspected API, with children running Python (forked through the
# override's os.fork). Another Python thread spins, holding the GIL, during
# the whole module: blocking queue calls must release it, and a child forked
# under a Python callable must not deadlock on the interpreter lock.

import gc
import os
import select
import subprocess
import sys
import textwrap
import threading
import time

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import Gio, GLib, GObject, Mpg  # noqa: E402

import pytest  # noqa: E402

from mpgtest import CHILD_TIMEOUT_S, TIMEOUT_MS, Gate, assert_error, join_ok, run_loop, start  # noqa: E402,F401

# Any GLib warning or critical during a test fails it.
pytestmark = pytest.mark.usefixtures('no_glib_criticals')


def seed_value():
    # Python's [42, None, 'hello']: a list of mixed values is an array of
    # variants, None an empty maybe.
    return GLib.Variant('av', [GLib.Variant('i', 42),
                               GLib.Variant('mv', None),
                               GLib.Variant('s', 'hello')])


def bytes_variant(data):
    # GLib.Variant('ay', …) builds element by element: slow for MiBs.
    return GLib.Variant.new_from_bytes(GLib.VariantType('ay'), GLib.Bytes.new(data), True)


# The seed: the Queue example of multiprocessing's documentation.

def test_seed_example():
    def f(args, q):
        q.put(seed_value(), True, -1, None)

    q = Mpg.Queue.new(0)
    p = start(f, q)
    value = q.get(True, TIMEOUT_MS, None)
    assert value.get_type_string() == 'av'
    assert value.unpack() == [42, None, 'hello']
    assert join_ok(p) is None


def test_trailing_cancellable_may_be_omitted():
    q = Mpg.Queue.new(0)
    assert q.put(GLib.Variant('s', 'x'), True, TIMEOUT_MS)
    assert q.get(True, TIMEOUT_MS).unpack() == 'x'


# Values, order and properties in one process.

VALUES = [
    GLib.Variant('i', -7),
    GLib.Variant('s', 'hello'),
    GLib.Variant('(ias)', (3, ['a', 'b'])),
    GLib.Variant('a{sv}', {'k': GLib.Variant('d', 1.5)}),
    GLib.Variant('mv', None),
    GLib.Variant('ay', b'\x00\x01\xff'),
    GLib.Variant('()', ()),
]


def test_put_get_keeps_values_and_order():
    q = Mpg.Queue.new(0)
    for v in VALUES:
        assert q.put(v, True, TIMEOUT_MS, None)
    got = [q.get(True, TIMEOUT_MS, None) for _ in VALUES]
    assert [g.get_type_string() for g in got] == [v.get_type_string() for v in VALUES]
    assert got == VALUES


def test_put_returns_when_the_message_is_queued():
    # No feeder thread: after put() returns, the message is there to take.
    q = Mpg.Queue.new(0)
    q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)
    assert q.get(False, 0, None).unpack() == 1


def test_properties():
    q = Mpg.Queue.new(5)
    assert q.get_maxsize() == 5
    assert not q.get_joinable()
    assert q.get_max_message_size() > 0
    j = Mpg.Queue.new_joinable(0)
    assert j.get_maxsize() == 0
    assert j.get_joinable()


def test_property_accessors():
    q = Mpg.Queue.new_joinable(4)
    assert q.props.maxsize == 4
    assert q.props.joinable
    assert q.props.max_message_size == q.get_max_message_size()
    q.props.max_message_size = 4096
    assert q.get_max_message_size() == 4096


def test_constructed_from_properties():
    # The queue is a GInitable: built with GObject's constructor, as
    # GObject.new(Mpg.Queue, maxsize=…), it works once init() was called,
    # and refuses to before. (Mpg.Queue(maxsize=…) is multiprocessing's
    # Queue, ready to use: see test_mp_queue.py.)
    q = GObject.new(Mpg.Queue, maxsize=1)
    with pytest.raises(GLib.Error) as excinfo:
        q.put(GLib.Variant('i', 1), False, 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    assert q.init(None)
    q.put(GLib.Variant('i', 1), False, 0, None)
    assert q.full()
    assert q.get(False, 0, None).unpack() == 1


def test_qsize_empty_full():
    q = Mpg.Queue.new(2)
    assert q.qsize() == 0
    assert q.empty()
    assert not q.full()
    q.put(GLib.Variant('i', 1), False, 0, None)
    assert q.qsize() == 1
    assert not q.empty()
    assert not q.full()
    q.put(GLib.Variant('i', 2), False, 0, None)
    assert q.qsize() == 2
    assert q.full()
    q.get(False, 0, None)
    assert q.qsize() == 1
    assert not q.full()


# Empty and Full, blocking or not, with timeouts.

def test_get_nonblocking_from_empty_queue():
    q = Mpg.Queue.new(0)
    start_time = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        q.get(False, 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.EMPTY)
    assert excinfo.value.domain == 'mpg-error-quark'
    assert time.monotonic() - start_time < 5


def test_get_timeout_from_empty_queue():
    # As queue.Empty after Queue.get(timeout=…) in Python.
    q = Mpg.Queue.new(0)
    start_time = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        q.get(True, 200, None)
    elapsed = time.monotonic() - start_time
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.EMPTY)
    assert 0.15 <= elapsed < 10


def test_put_nonblocking_to_full_queue():
    q = Mpg.Queue.new(1)
    q.put(GLib.Variant('i', 1), False, 0, None)
    with pytest.raises(GLib.Error) as excinfo:
        q.put(GLib.Variant('i', 2), False, 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.FULL)
    # The refused message is not in the queue.
    assert q.qsize() == 1
    assert q.get(False, 0, None).unpack() == 1
    with pytest.raises(GLib.Error) as excinfo:
        q.get(False, 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.EMPTY)


def test_put_timeout_to_full_queue():
    q = Mpg.Queue.new(2)
    q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)
    q.put(GLib.Variant('i', 2), True, TIMEOUT_MS, None)
    start_time = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        q.put(GLib.Variant('i', 3), True, 200, None)
    elapsed = time.monotonic() - start_time
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.FULL)
    assert 0.15 <= elapsed < 10
    # Taking one makes room again.
    assert q.get(True, TIMEOUT_MS, None).unpack() == 1
    q.put(GLib.Variant('i', 3), False, 0, None)
    assert [q.get(False, 0, None).unpack() for _ in range(2)] == [2, 3]


def test_unbounded_queue_without_a_reader():
    # maxsize 0: put() never blocks and never fails with FULL, as Python's.
    # What the socket has no room for (about 11,000 small messages) waits in
    # this process's buffer, and a feeder thread sends it once someone takes
    # messages: here, this process itself.
    q = Mpg.Queue.new(0)
    n = 20000
    for i in range(n):
        start_time = time.monotonic()
        assert q.put(GLib.Variant('i', i), i % 2 == 0, TIMEOUT_MS, None)
        assert time.monotonic() - start_time < 2
    assert not q.full()
    assert q.qsize() == n
    assert [q.get(True, TIMEOUT_MS, None).unpack() for _ in range(n)] == list(range(n))
    assert q.empty()
    assert q.qsize() == 0


def test_child_exits_right_after_putting():
    # The child's exit waits until its buffer was sent, as Python's children
    # join their queues' feeder threads.
    n = 20000

    def producer(args, q, gate):
        for i in range(n):
            q.put(GLib.Variant('i', i), False, 0, None)
        gate.open()

    g = Gate()
    try:
        q = Mpg.Queue.new(0)
        p = start(producer, q, g)
        # Every put returned while nobody was taking anything.
        g.wait()
        assert [q.get(True, TIMEOUT_MS, None).unpack() for _ in range(n)] == list(range(n))
        join_ok(p)
        assert q.empty()
    finally:
        g.close()


def test_join_thread_and_cancel_join_thread():
    q = Mpg.Queue.new(0)
    with pytest.raises(GLib.Error) as excinfo:
        q.join_thread(0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    fds = Gio.UnixFDList.new()
    other = Mpg.Queue.new_from_handle(q.to_handle(fds), fds)
    n = 20000
    for i in range(n):
        q.put(GLib.Variant('i', i), False, 0, None)
    q.close()
    # Nobody takes anything: the buffer cannot be sent.
    with pytest.raises(GLib.Error) as excinfo:
        q.join_thread(100, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    q.cancel_join_thread()
    assert q.join_thread(0, None)
    # The feeder goes on sending all the same.
    assert [other.get(True, TIMEOUT_MS, None).unpack() for _ in range(n)] == list(range(n))
    assert other.empty()


def test_unbounded_queue_with_a_reader():
    # Many more messages than the socket buffer holds go through when a
    # child takes them.
    n = 20000

    def consumer(args, q, out):
        total = 0
        for _ in range(n):
            total += q.get(True, TIMEOUT_MS, None).unpack()
        out.put(GLib.Variant('x', total), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    out = Mpg.Queue.new(0)
    p = start(consumer, q, out)
    for i in range(n):
        q.put(GLib.Variant('i', i), True, TIMEOUT_MS, None)
    assert out.get(True, TIMEOUT_MS, None).unpack() == sum(range(n))
    join_ok(p)


def test_blocked_put_resumes_when_a_child_gets():
    def consumer(args, q, gate):
        gate.wait()
        return q.get(True, TIMEOUT_MS, None)

    g = Gate()
    try:
        q = Mpg.Queue.new(1)
        q.put(GLib.Variant('s', 'first'), False, 0, None)
        p = start(consumer, q, g)
        g.open()
        # Blocks until the child has made room.
        assert q.put(GLib.Variant('s', 'second'), True, TIMEOUT_MS, None)
        assert join_ok(p).unpack() == 'first'
        assert q.get(True, TIMEOUT_MS, None).unpack() == 'second'
    finally:
        g.close()


def test_blocked_get_resumes_when_a_child_puts(gate):
    def producer(args, q, gate):
        gate.wait()
        time.sleep(0.1)
        q.put(GLib.Variant('s', 'late'), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    p = start(producer, q, gate)
    gate.open()
    assert q.get(True, TIMEOUT_MS, None).unpack() == 'late'
    join_ok(p)


def test_blocking_get_releases_the_gil(spinner, gate):
    def producer(args, q, gate):
        gate.wait()
        time.sleep(0.3)
        q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    p = start(producer, q, gate)
    gate.open()
    before = spinner.count
    assert q.get(True, TIMEOUT_MS, None).unpack() == 1
    assert spinner.count > before
    join_ok(p)


def test_get_cancelled_from_another_thread():
    q = Mpg.Queue.new(0)
    cancellable = Gio.Cancellable()
    timer = threading.Timer(0.1, cancellable.cancel)
    timer.start()
    try:
        with pytest.raises(GLib.Error) as excinfo:
            q.get(True, TIMEOUT_MS, cancellable)
    finally:
        timer.join()
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)


# Several processes.

def test_child_gets_what_the_parent_puts():
    def consumer(args, q):
        total = 0
        while True:
            x = q.get(True, TIMEOUT_MS, None).unpack()
            if x is None:
                return GLib.Variant('i', total)
            total += x

    q = Mpg.Queue.new(0)
    p = start(consumer, q)
    for i in range(100):
        q.put(GLib.Variant('mi', i), True, TIMEOUT_MS, None)
    q.put(GLib.Variant('mi', None), True, TIMEOUT_MS, None)
    assert join_ok(p).unpack() == sum(range(100))


def test_many_producers_and_consumers():
    # Three producers and two consumers in children, on a small bounded
    # queue: every message arrives exactly once and whole, each producer's
    # messages in order.
    n_per_producer = 200

    def producer(args, q):
        k, = args.unpack()
        for i in range(n_per_producer):
            q.put(GLib.Variant('(iis)', (k, i, 'x' * (i % 50))), True, TIMEOUT_MS, None)

    def consumer(args, q, out):
        while True:
            v = q.get(True, TIMEOUT_MS, None)
            if v.get_type_string() == 'b':
                return None
            out.put(v, True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(4)
    out = Mpg.Queue.new(0)
    consumers = [start(consumer, q, out) for _ in range(2)]
    producers = [start(producer, q, args=GLib.Variant('(i)', (k,))) for k in range(3)]
    received = [out.get(True, TIMEOUT_MS, None).unpack() for _ in range(3 * n_per_producer)]
    for p in producers:
        join_ok(p)
    for _ in consumers:
        q.put(GLib.Variant('b', True), True, TIMEOUT_MS, None)
    for p in consumers:
        join_ok(p)
    for k, i, s in received:
        assert s == 'x' * (i % 50)
    assert sorted((k, i) for k, i, _ in received) == \
        [(k, i) for k in range(3) for i in range(n_per_producer)]
    with pytest.raises(GLib.Error) as excinfo:
        out.get(False, 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.EMPTY)


def test_message_put_just_before_exit_is_not_lost():
    def f(args, q):
        q.put(GLib.Variant('s', 'last words'), True, TIMEOUT_MS, None)
        os._exit(0)

    q = Mpg.Queue.new(0)
    p = start(f, q)
    assert p.join(TIMEOUT_MS)
    assert q.get(True, TIMEOUT_MS, None).unpack() == 'last words'


def test_large_message_from_a_child():
    # Larger than a datagram can carry: it travels another way, whole.
    size = 4 * 1024 * 1024

    def f(args, q):
        data = bytes(range(256)) * (size // 256)
        q.put(bytes_variant(data), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    p = start(f, q)
    value = q.get(True, TIMEOUT_MS, None)
    join_ok(p)
    assert value.get_type_string() == 'ay'
    data = value.get_data_as_bytes().get_data()
    assert len(data) == size
    assert data == bytes(range(256)) * (size // 256)


def test_max_message_size():
    q = Mpg.Queue.new(0)
    q.set_max_message_size(1024)
    assert q.get_max_message_size() == 1024
    with pytest.raises(GLib.Error) as excinfo:
        q.put(GLib.Variant('ay', b'x' * 4096), True, TIMEOUT_MS, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TOO_LARGE)
    # The queue is still usable.
    q.put(GLib.Variant('ay', b'x' * 100), True, TIMEOUT_MS, None)
    assert len(q.get(True, TIMEOUT_MS, None).unpack()) == 100


def test_file_descriptor_from_a_child():
    def f(args, q):
        r, w = os.pipe()
        os.write(w, b'through the queue')
        os.close(w)
        fds = Gio.UnixFDList.new()
        index = fds.append(r)
        os.close(r)
        q.put_with_fds(GLib.Variant('(sh)', ('fd', index)), fds, True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    p = start(f, q)
    value, fds = q.get_with_fds(True, TIMEOUT_MS, None)
    join_ok(p)
    name, index = value.unpack()
    assert name == 'fd'
    assert fds is not None and fds.get_length() == 1
    fd = fds.get(index)
    try:
        assert os.read(fd, 100) == b'through the queue'
    finally:
        os.close(fd)


def test_get_without_fds_closes_them():
    # A message with fds taken by plain get(): nothing leaks, no error.
    q = Mpg.Queue.new(0)
    r, w = os.pipe()
    try:
        fds = Gio.UnixFDList.new_from_array([os.dup(r)])
        q.put_with_fds(GLib.Variant('h', 0), fds, True, TIMEOUT_MS, None)
        del fds
        assert q.get(True, TIMEOUT_MS, None).get_type_string() == 'h'
        os.close(r)
        r = -1
        # Every copy of the read end is closed: writing fails.
        with pytest.raises(BrokenPipeError):
            os.write(w, b'x')
    finally:
        if r >= 0:
            os.close(r)
        os.close(w)


# JoinableQueue: task_done() and join().

def test_joinable_queue():
    def worker(args, q, results):
        while True:
            v = q.get(True, TIMEOUT_MS, None)
            x = v.unpack()
            if x is not None:
                results.put(GLib.Variant('i', x * x), True, TIMEOUT_MS, None)
            q.task_done()
            if x is None:
                return None

    q = Mpg.Queue.new_joinable(0)
    results = Mpg.Queue.new(0)
    p = start(worker, q, results)
    for i in range(10):
        q.put(GLib.Variant('mi', i), True, TIMEOUT_MS, None)
    q.put(GLib.Variant('mi', None), True, TIMEOUT_MS, None)
    # join() returns once every message has been taken and marked done.
    assert q.join(TIMEOUT_MS, None)
    assert sorted(results.get(False, 0, None).unpack() for _ in range(10)) == \
        [i * i for i in range(10)]
    join_ok(p)


def test_join_of_an_empty_joinable_queue_returns_at_once():
    q = Mpg.Queue.new_joinable(0)
    assert q.join(TIMEOUT_MS, None)


def test_join_times_out_while_tasks_are_unfinished():
    q = Mpg.Queue.new_joinable(0)
    q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)
    start_time = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        q.join(200, None)
    elapsed = time.monotonic() - start_time
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    assert 0.15 <= elapsed < 10
    # Taken is not done yet.
    q.get(True, TIMEOUT_MS, None)
    with pytest.raises(GLib.Error) as excinfo:
        q.join(100, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    assert q.task_done()
    assert q.join(TIMEOUT_MS, None)


def test_task_done_called_too_many_times():
    # Python raises ValueError; the library refuses the call.
    q = Mpg.Queue.new_joinable(0)
    q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)
    q.get(True, TIMEOUT_MS, None)
    assert q.task_done()
    with pytest.raises(GLib.Error) as excinfo:
        q.task_done()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_task_done_on_a_plain_queue():
    q = Mpg.Queue.new(0)
    with pytest.raises(GLib.Error) as excinfo:
        q.task_done()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    with pytest.raises(GLib.Error) as excinfo:
        q.join(100, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_join_waits_for_task_done_in_a_child(gate):
    def worker(args, q, gate):
        q.get(True, TIMEOUT_MS, None)
        gate.wait()
        q.task_done()

    q = Mpg.Queue.new_joinable(0)
    q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)
    p = start(worker, q, gate)
    with pytest.raises(GLib.Error) as excinfo:
        q.join(200, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    gate.open()
    assert q.join(TIMEOUT_MS, None)
    join_ok(p)


# Main loop integration.

def test_get_async(gate):
    def producer(args, q, gate):
        gate.wait()
        q.put(seed_value(), True, TIMEOUT_MS, None)

    loop = GLib.MainLoop()
    results = []

    def on_got(q, result):
        try:
            results.append(q.get_finish(result))
        except GLib.Error as e:
            results.append(e)
        loop.quit()

    q = Mpg.Queue.new(0)
    p = start(producer, q, gate)
    q.get_async(None, on_got)
    # The loop is not blocked meanwhile: an idle runs, then lets the child
    # put.
    ticks = []

    def open_gate():
        ticks.append(True)
        gate.open()
        return GLib.SOURCE_REMOVE

    GLib.timeout_add(50, open_gate)
    run_loop(loop, 'get_async')
    assert ticks == [True]
    assert len(results) == 1
    assert not isinstance(results[0], GLib.Error), results[0]
    assert results[0].unpack() == [42, None, 'hello']
    join_ok(p)


def test_get_async_of_a_waiting_message():
    loop = GLib.MainLoop()
    results = []

    def on_got(q, result):
        results.append(q.get_finish(result).unpack())
        loop.quit()

    q = Mpg.Queue.new(0)
    q.put(GLib.Variant('s', 'ready'), True, TIMEOUT_MS, None)
    q.get_async(None, on_got)
    # Never completes in the call itself, as GTask-based calls do not.
    assert results == []
    run_loop(loop, 'get_async')
    assert results == ['ready']


def test_get_async_cancelled():
    loop = GLib.MainLoop()
    errors = []

    def on_got(q, result):
        try:
            q.get_finish(result)
        except GLib.Error as e:
            errors.append(e)
        loop.quit()

    q = Mpg.Queue.new(0)
    cancellable = Gio.Cancellable()
    q.get_async(cancellable, on_got)
    GLib.idle_add(lambda: cancellable.cancel() and False)
    run_loop(loop, 'the cancelled get_async')
    assert len(errors) == 1
    assert errors[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    # A cancelled get took nothing: a later message is still there.
    q.put(GLib.Variant('i', 5), True, TIMEOUT_MS, None)
    assert q.get(True, TIMEOUT_MS, None).unpack() == 5


def test_several_get_async_in_a_row():
    loop = GLib.MainLoop()
    got = []
    q = Mpg.Queue.new(0)

    def on_got(q, result):
        got.append(q.get_finish(result).unpack())
        if len(got) < 5:
            q.get_async(None, on_got)
        else:
            loop.quit()

    def producer(args, q):
        for i in range(5):
            q.put(GLib.Variant('i', i), True, TIMEOUT_MS, None)
            time.sleep(0.01)

    p = start(producer, q)
    q.get_async(None, on_got)
    run_loop(loop, 'five get_async')
    assert got == [0, 1, 2, 3, 4]
    join_ok(p)


def test_add_watch():
    loop = GLib.MainLoop()
    seen = []
    user_data_seen = []

    def on_message(queue, value, data):
        seen.append(value.unpack())
        user_data_seen.append(data)
        if len(seen) == 3:
            loop.quit()
            return GLib.SOURCE_REMOVE
        return GLib.SOURCE_CONTINUE

    def producer(args, q):
        for i in range(4):
            q.put(GLib.Variant('i', i), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    watch_id = q.add_watch(on_message, 'data')
    assert watch_id > 0
    p = start(producer, q)
    run_loop(loop, 'the watch')
    join_ok(p)
    assert seen == [0, 1, 2]
    assert user_data_seen == ['data'] * 3
    # The watch removed itself: the fourth message is still in the queue.
    assert q.get(True, TIMEOUT_MS, None).unpack() == 3
    # Its id is gone.
    assert GLib.MainContext.default().find_source_by_id(watch_id) is None


def test_add_watch_removed_by_id():
    loop = GLib.MainLoop()
    seen = []
    q = Mpg.Queue.new(0)
    watch_id = q.add_watch(lambda queue, value: seen.append(value) or True)
    GLib.source_remove(watch_id)
    q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)
    GLib.timeout_add(100, lambda: loop.quit() or False)
    run_loop(loop, 'the idle loop')
    assert seen == []
    assert q.get(False, 0, None).unpack() == 1


# close(), and a queue rebuilt from its handle.

def test_close():
    q = Mpg.Queue.new(0)
    q.put(GLib.Variant('i', 1), True, TIMEOUT_MS, None)
    q.close()
    with pytest.raises(GLib.Error) as excinfo:
        q.put(GLib.Variant('i', 2), True, TIMEOUT_MS, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)
    with pytest.raises(GLib.Error) as excinfo:
        q.get(False, 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)
    # Closing twice is harmless.
    q.close()


def test_close_in_the_parent_does_not_affect_a_child(gate):
    def producer(args, q, gate):
        gate.wait()
        q.put(GLib.Variant('s', 'after close'), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    peer = Mpg.Queue.new_from_handle(*handle_of(q))
    p = start(producer, q, gate)
    q.close()
    gate.open()
    join_ok(p)
    assert peer.get(True, TIMEOUT_MS, None).unpack() == 'after close'


def handle_of(q):
    fds = Gio.UnixFDList.new()
    handle = q.to_handle(fds)
    return handle, fds


def test_handle_in_the_same_process():
    q = Mpg.Queue.new_joinable(3)
    handle, fds = handle_of(q)
    assert fds.get_length() > 0
    copy = Mpg.Queue.new_from_handle(handle, fds)
    assert copy.get_maxsize() == 3
    assert copy.get_joinable()
    q.put(GLib.Variant('s', 'a'), True, TIMEOUT_MS, None)
    assert copy.qsize() == 1
    assert copy.get(True, TIMEOUT_MS, None).unpack() == 'a'
    copy.task_done()
    assert q.join(TIMEOUT_MS, None)


def test_handle_in_a_fresh_interpreter():
    # What spawn does: a new program gets the handle and its fds, rebuilds
    # the queue and uses it.
    q = Mpg.Queue.new(0)
    handle, fds = handle_of(q)
    passed = [fds.get(i) for i in range(fds.get_length())]
    try:
        source = textwrap.dedent("""
            import sys
            import gi
            gi.require_version('Mpg', '1.0')
            from gi.repository import Gio, GLib, Mpg
            handle = GLib.Variant.parse(None, sys.argv[1], None, None)
            fds = Gio.UnixFDList.new_from_array([int(fd) for fd in sys.argv[2:]])
            q = Mpg.Queue.new_from_handle(handle, fds)
            x = q.get(True, 30000, None).unpack()
            q.put(GLib.Variant('s', 'got %s' % x), True, 30000, None)
        """)
        proc = subprocess.Popen(
            [sys.executable, '-c', source, handle.print_(True)] + [str(fd) for fd in passed],
            pass_fds=passed, stdin=subprocess.DEVNULL)
        try:
            q.put(GLib.Variant('s', 'spawned'), True, TIMEOUT_MS, None)
            # The reply may not be the message just put back: wait for the
            # program to finish first.
            assert proc.wait(CHILD_TIMEOUT_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert q.get(True, TIMEOUT_MS, None).unpack() == 'got spawned'
    finally:
        for fd in passed:
            os.close(fd)


def test_queue_passed_through_a_queue():
    # The documented way to hand a queue to a process that did not inherit
    # it: its handle and fds, as a message of another queue.
    def f(args, mailbox):
        value, fds = mailbox.get_with_fds(True, TIMEOUT_MS, None)
        inner = Mpg.Queue.new_from_handle(value, fds)
        inner.put(GLib.Variant('s', 'over the passed queue'), True, TIMEOUT_MS, None)

    mailbox = Mpg.Queue.new(0)
    p = start(f, mailbox)
    # Created after the child started: the child does not have it.
    inner = Mpg.Queue.new(0)
    fds = Gio.UnixFDList.new()
    mailbox.put_with_fds(inner.to_handle(fds), fds, True, TIMEOUT_MS, None)
    assert inner.get(True, TIMEOUT_MS, None).unpack() == 'over the passed queue'
    join_ok(p)


def test_many_forks_with_a_queue_while_another_thread_holds_the_gil(spinner):
    def f(args, q):
        i, = args.unpack()
        q.put(GLib.Variant('i', i * i), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    before = spinner.count
    for i in range(30):
        p = start(f, q, args=GLib.Variant('(i)', (i,)))
        assert q.get(True, TIMEOUT_MS, None).unpack() == i * i
        join_ok(p)
    assert spinner.count > before
