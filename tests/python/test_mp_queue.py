# test_mp_queue.py: multiprocessing's Queue, SimpleQueue, JoinableQueue
# and Pipe on Mpg.Queue and Mpg.Connection
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import queue
import subprocess
import sys
import textwrap
import time

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg  # noqa: E402

import pytest  # noqa: E402

from mpgtest import CHILD_TIMEOUT_S  # noqa: E402

pytestmark = pytest.mark.usefixtures('no_glib_criticals')

T = CHILD_TIMEOUT_S

# The tests that start processes run under every start method (the ctx
# fixture) unless their point is fork's. A spawned or forkserver child is a
# new interpreter that imports this module by name: its targets are the
# module-level functions below, and its queues travel as handles and fds.
METHODS = ['fork', 'spawn', 'forkserver']


@pytest.fixture(params=METHODS)
def ctx(request):
    return Mpg.get_context(request.param)


def start(target, *args, ctx=Mpg):
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def put_all(q, values):
    for v in values:
        q.put(v)


def sleep_then_get(q):
    time.sleep(0.2)
    q.get()


def put_numbered(q, i, n):
    for k in range(n):
        q.put((i, k))


def put_value(q, value):
    q.put(value)


def double_until_none(q, results):
    while True:
        item = q.get()
        if item is None:
            q.task_done()
            break
        results.put(item * 2)
        q.task_done()


def echo(conn, other):
    # A forked child inherited both ends: as with multiprocessing's fork,
    # it must close the one it does not use to see the end of stream.
    if other is not None:
        other.close()
    while True:
        try:
            conn.send(conn.recv())
        except EOFError:
            break


# fork only, as the seed: from -c, which a spawned child cannot import.
def test_seed_queue_example():
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent("""
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository.Mpg import Process, Queue

        def f(q):
            q.put([42, None, 'hello'])

        if __name__ == '__main__':
            q = Queue()
            p = Process(target=f, args=(q,))
            p.start()
            print(q.get())    # prints "[42, None, 'hello']"
            p.join()
    """)], capture_output=True, text=True, timeout=T)
    assert (proc.stdout, proc.stderr, proc.returncode) == ("[42, None, 'hello']\n", '', 0)


def test_put_get_between_processes_in_order(ctx):
    q = ctx.Queue()
    values = [None, 1, 'two', (3,), [4.0], {'five': b'5'}, True]
    p = start(put_all, q, values, ctx=ctx)
    assert [q.get(timeout=T) for _ in values] == values
    p.join(T)


def test_get_timeout_and_nowait_raise_empty():
    q = Mpg.Queue()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    start_time = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert 0.15 <= time.monotonic() - start_time < 5


def test_bounded_queue_raises_full():
    q = Mpg.Queue(maxsize=2)
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2 and not q.empty()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    start_time = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.2)
    assert 0.15 <= time.monotonic() - start_time < 5
    assert q.get() == 1 and q.get() == 2 and q.empty()


def test_blocked_put_resumes_when_a_consumer_gets(ctx):
    q = ctx.Queue(1)
    q.put('first')
    p = start(sleep_then_get, q, ctx=ctx)
    q.put('second', timeout=T)
    p.join(T)
    assert q.get(timeout=T) == 'second'


def test_unsendable_value_raises_type_error_and_sends_nothing():
    q = Mpg.Queue()
    with pytest.raises(TypeError, match='object'):
        q.put(['fine', object()])
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_several_producers(ctx):
    q = ctx.Queue()
    ps = [start(put_numbered, q, i, 50, ctx=ctx) for i in range(3)]
    got = [q.get(timeout=T) for _ in range(150)]
    for p in ps:
        p.join(T)
    for i in range(3):
        assert [n for j, n in got if j == i] == list(range(50))


def test_close_then_put_is_value_error():
    q = Mpg.Queue()
    q.close()
    with pytest.raises(ValueError):
        q.put(1)
    q.join_thread()


def test_simple_queue(ctx):
    q = ctx.SimpleQueue()
    assert q.empty()
    p = start(put_value, q, {'a': (1, 2)}, ctx=ctx)
    assert q.get() == {'a': (1, 2)}
    p.join(T)
    q.close()


def test_joinable_queue(ctx):
    q = ctx.JoinableQueue()
    results = ctx.Queue()
    p = start(double_until_none, q, results, ctx=ctx)
    for i in range(5):
        q.put(i)
    q.put(None)
    q.join()
    assert sorted(results.get(timeout=T) for _ in range(5)) == [0, 2, 4, 6, 8]
    p.join(T)
    with pytest.raises(ValueError):
        q.task_done()


def test_glib_layer_queue_still_works():
    q = Mpg.Queue.new(0)
    q.put(GLib.Variant('i', 5), True, -1, None)
    assert q.get(True, 1000, None).unpack() == 5


# -- pipes

@pytest.mark.parametrize('method', [
    'fork',
    'spawn',
    'forkserver',
])
def test_pipe_duplex(method):
    ctx = Mpg.get_context(method)
    a, b = ctx.Pipe()
    # Only a forked child has the other end too.
    p = start(echo, b, a if method == 'fork' else None, ctx=ctx)
    b.close()
    for value in [1, 'two', [3, None], (4,), {'5': b'5'}]:
        a.send(value)
        assert a.recv() == value
    a.close()
    p.join(T)
    assert p.exitcode == 0


def test_pipe_one_way():
    r, w = Mpg.Pipe(duplex=False)
    assert r.readable and not r.writable
    assert w.writable and not w.readable
    with pytest.raises(OSError):
        r.send(1)
    with pytest.raises(OSError):
        w.recv()
    w.send('x')
    assert r.recv() == 'x'


def test_recv_after_the_other_end_closed_is_eof():
    a, b = Mpg.Pipe()
    b.send('last')
    b.close()
    assert a.recv() == 'last'
    with pytest.raises(EOFError):
        a.recv()
    with pytest.raises(BrokenPipeError):
        a.send(1)


def test_closed_connection():
    a, b = Mpg.Pipe()
    a.close()
    assert a.closed
    with pytest.raises(OSError):
        a.send(1)
    with pytest.raises(OSError):
        a.fileno()


def test_poll_is_in_seconds():
    a, b = Mpg.Pipe()
    assert not a.poll()
    start_time = time.monotonic()
    assert not a.poll(0.2)
    assert 0.15 <= time.monotonic() - start_time < 5
    b.send(None)
    assert a.poll(T)
    assert a.recv() is None


def test_send_bytes_and_recv_bytes():
    a, b = Mpg.Pipe()
    a.send_bytes(b'hello world', 6)
    a.send_bytes(bytearray(b'abcdef'), 1, 3)
    a.send_bytes(b'0123456789')
    assert b.recv_bytes() == b'world'
    assert b.recv_bytes() == b'bcd'
    with pytest.raises(OSError):
        b.recv_bytes(maxlength=4)
    with pytest.raises(ValueError):
        a.send_bytes(b'abc', 2, 5)


def test_recv_bytes_into():
    a, b = Mpg.Pipe()
    buf = bytearray(8)
    a.send_bytes(b'abc')
    assert b.recv_bytes_into(buf, 2) == 3
    assert buf == b'\0\0abc\0\0\0'
    a.send_bytes(b'far too long')
    with pytest.raises(Mpg.BufferTooShort) as excinfo:
        b.recv_bytes_into(buf)
    assert excinfo.value.args[0] == b'far too long'


def test_fileno_and_context_manager():
    a, b = Mpg.Pipe()
    with a:
        assert isinstance(a.fileno(), int)
    assert a.closed


def test_unsendable_over_a_pipe():
    a, b = Mpg.Pipe()
    with pytest.raises(TypeError):
        a.send({'f': print})
    assert not b.poll()


def test_glib_layer_pipe_still_works():
    ok, a, b = Mpg.pipe_new(True)
    a.send(GLib.Variant('s', 'raw'), None)
    assert b.poll(1000, None)
    assert b.recv(None).unpack() == 'raw'
