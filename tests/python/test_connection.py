# test_connection.py: Mpg.pipe_new and Mpg.Connection from Python, through
# GObject introspection
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the semantics of Python's multiprocessing.Pipe() and its
# Connection objects on the introspected API, with children running Python
# (forked through the override's os.fork). Another Python thread spins,
# holding the GIL, during the whole module: blocking calls must release it,
# and a child forked under a Python callable must not deadlock on the
# interpreter lock.

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


def pipe(duplex=True):
    # multiprocessing.Pipe(duplex): the boolean return of the C function
    # comes first, as PyGObject returns it for a function that throws.
    ok, first, second = Mpg.pipe_new(duplex)
    assert ok
    assert isinstance(first, Mpg.Connection)
    assert isinstance(second, Mpg.Connection)
    return first, second


def recv(conn):
    # A bounded recv() in the parent: poll first.
    assert conn.poll(TIMEOUT_MS, None), 'nothing to receive in time'
    return conn.recv(None)


def seed_value():
    return GLib.Variant('av', [GLib.Variant('i', 42),
                               GLib.Variant('mv', None),
                               GLib.Variant('s', 'hello')])


def bytes_variant(data):
    # GLib.Variant('ay', …) builds element by element: slow for MiBs.
    return GLib.Variant.new_from_bytes(GLib.VariantType('ay'), GLib.Bytes.new(data), True)


# In one process.

def test_duplex_pipe():
    a, b = pipe(True)
    for c in (a, b):
        assert c.get_readable() and c.get_writable()
        assert not c.get_closed()
        assert c.get_fd() >= 0
        assert c.get_max_message_size() > 0
    assert a.get_fd() != b.get_fd()
    assert a.send(seed_value(), None)
    value = b.recv(None)
    assert value.get_type_string() == 'av'
    assert value.unpack() == [42, None, 'hello']
    assert b.send(GLib.Variant('s', 'back'), None)
    assert a.recv(None).unpack() == 'back'


def test_trailing_cancellable_may_be_omitted():
    a, b = pipe()
    assert a.send(GLib.Variant('i', 1))
    assert b.poll(0)
    assert b.recv().unpack() == 1


def test_one_way_pipe():
    # Pipe(duplex=False) returns (receiving end, sending end).
    r, w = pipe(False)
    assert r.get_readable() and not r.get_writable()
    assert w.get_writable() and not w.get_readable()
    w.send(GLib.Variant('i', 3), None)
    assert r.recv(None).unpack() == 3


def test_one_way_pipe_refuses_the_wrong_direction():
    r, w = pipe(False)
    with pytest.raises(GLib.Error) as excinfo:
        r.send(GLib.Variant('i', 1), None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    for call in (lambda: w.recv(None), lambda: w.poll(0, None),
                 lambda: w.recv_bytes(None)):
        with pytest.raises(GLib.Error) as excinfo:
            call()
        assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_values_and_order():
    values = [
        GLib.Variant('i', -7),
        GLib.Variant('s', 'hello'),
        GLib.Variant('(ias)', (3, ['a', 'b'])),
        GLib.Variant('a{sv}', {'k': GLib.Variant('d', 1.5)}),
        GLib.Variant('mv', None),
        GLib.Variant('()', ()),
    ]
    a, b = pipe()
    for v in values:
        a.send(v, None)
    assert [b.recv(None) for _ in values] == values


def test_send_bytes_recv_bytes():
    a, b = pipe()
    a.send_bytes(GLib.Bytes.new(b'raw \x00 bytes'), None)
    a.send_bytes(GLib.Bytes.new(b''), None)
    got = b.recv_bytes(None)
    assert isinstance(got, GLib.Bytes)
    assert got.get_data() == b'raw \x00 bytes'
    assert b.recv_bytes(None).get_data() in (b'', None)


def test_poll():
    a, b = pipe()
    assert not b.poll(0, None)
    start_time = time.monotonic()
    assert not b.poll(200, None)
    assert 0.15 <= time.monotonic() - start_time < 10
    a.send(GLib.Variant('i', 1), None)
    assert b.poll(0, None)
    # poll() does not take the message.
    assert b.poll(TIMEOUT_MS, None)
    assert b.recv(None).unpack() == 1
    assert not b.poll(0, None)


def test_poll_cancelled_from_another_thread():
    a, b = pipe()
    cancellable = Gio.Cancellable()
    timer = threading.Timer(0.1, cancellable.cancel)
    timer.start()
    try:
        with pytest.raises(GLib.Error) as excinfo:
            b.poll(TIMEOUT_MS, cancellable)
    finally:
        timer.join()
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)


def test_recv_cancelled_from_another_thread():
    a, b = pipe()
    cancellable = Gio.Cancellable()
    timer = threading.Timer(0.1, cancellable.cancel)
    timer.start()
    try:
        with pytest.raises(GLib.Error) as excinfo:
            b.recv(cancellable)
    finally:
        timer.join()
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    # Nothing was lost: the pipe still works.
    a.send(GLib.Variant('i', 2), None)
    assert b.recv(None).unpack() == 2


def test_end_of_stream_after_the_peer_closes():
    # As EOFError from Connection.recv() in Python.
    a, b = pipe()
    a.send(GLib.Variant('s', 'before close'), None)
    a.close()
    assert a.get_closed()
    # What was sent before the close is still delivered.
    assert b.recv(None).unpack() == 'before close'
    # At end of stream recv() would not block: poll() says so.
    assert b.poll(0, None)
    with pytest.raises(GLib.Error) as excinfo:
        b.recv(None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.END_OF_STREAM)
    with pytest.raises(GLib.Error) as excinfo:
        b.recv_bytes(None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.END_OF_STREAM)


def test_send_after_the_peer_closed():
    a, b = pipe()
    b.close()
    with pytest.raises(GLib.Error) as excinfo:
        a.send(GLib.Variant('i', 1), None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.END_OF_STREAM)


def test_closed_connection():
    a, b = pipe()
    a.close()
    assert a.get_closed()
    for call in (lambda: a.send(GLib.Variant('i', 1), None),
                 lambda: a.recv(None),
                 lambda: a.poll(0, None),
                 lambda: a.send_bytes(GLib.Bytes.new(b'x'), None),
                 lambda: a.recv_bytes(None)):
        with pytest.raises(GLib.Error) as excinfo:
            call()
        assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)
    # Closing twice is harmless.
    a.close()


def test_max_message_size():
    a, b = pipe()
    a.set_max_message_size(1024)
    assert a.get_max_message_size() == 1024
    assert a.props.max_message_size == 1024
    # A setting of this end only, for what it sends…
    with pytest.raises(GLib.Error) as excinfo:
        a.send(bytes_variant(b'x' * 4096), None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TOO_LARGE)
    # …and what it receives.
    assert b.get_max_message_size() > 4096
    b.send(bytes_variant(b'y' * 4096), None)
    with pytest.raises(GLib.Error) as excinfo:
        a.recv(None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TOO_LARGE)
    # The refused message is gone; the next one is received normally.
    b.send(GLib.Variant('s', 'small'), None)
    assert a.recv(None).unpack() == 'small'


def test_recv_bytes_of_a_typed_message():
    # send_bytes() sends an 'ay' message: recv() gets it as such, and
    # recv_bytes() refuses (and consumes) a message of another type.
    a, b = pipe()
    a.send_bytes(GLib.Bytes.new(b'abc'), None)
    value = b.recv(None)
    assert value.get_type_string() == 'ay'
    assert value.get_data_as_bytes().get_data() == b'abc'
    a.send(GLib.Variant('s', 'not bytes'), None)
    with pytest.raises(GLib.Error) as excinfo:
        b.recv_bytes(None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.PROTOCOL)
    a.send(bytes_variant(b'def'), None)
    assert b.recv_bytes(None).get_data() == b'def'


def test_properties():
    r, w = pipe(False)
    assert r.props.readable and not r.props.writable
    assert w.props.writable and not w.props.readable
    assert not r.props.closed
    r.close()
    assert r.props.closed
    assert r.get_fd() == -1


def test_fd_passing_in_one_process():
    a, b = pipe()
    r, w = os.pipe()
    try:
        fds = Gio.UnixFDList.new()
        index = fds.append(w)
        a.send_with_fds(GLib.Variant('(sh)', ('writer', index)), fds, None)
        value, got_fds = b.recv_with_fds(None)
        name, got_index = value.unpack()
        assert name == 'writer'
        fd = got_fds.get(got_index)
        try:
            os.write(fd, b'via the fd')
        finally:
            os.close(fd)
        assert os.read(r, 100) == b'via the fd'
    finally:
        os.close(r)
        os.close(w)


def test_recv_with_fds_of_a_message_without_fds():
    a, b = pipe()
    a.send(GLib.Variant('i', 1), None)
    value, fds = b.recv_with_fds(None)
    assert value.unpack() == 1
    assert fds is None or fds.get_length() == 0


def test_fd_is_pollable():
    # get_fd() is there for select() and friends, as Connection.fileno().
    a, b = pipe()
    ready, _, _ = select.select([b.get_fd()], [], [], 0)
    assert ready == []
    a.send(GLib.Variant('i', 1), None)
    ready, _, _ = select.select([b.get_fd()], [], [], CHILD_TIMEOUT_S)
    assert ready == [b.get_fd()]


# Main loop integration.

def test_recv_async(gate):
    def f(args, conn, other, gate):
        other.close()
        gate.wait()
        conn.send(seed_value(), None)

    loop = GLib.MainLoop()
    results = []

    def on_received(conn, result):
        try:
            results.append(conn.recv_finish(result))
        except GLib.Error as e:
            results.append(e)
        loop.quit()

    parent_end, child_end = pipe()
    p = start(f, child_end, parent_end, gate)
    child_end.close()
    parent_end.recv_async(None, on_received)
    GLib.timeout_add(50, lambda: gate.open() and False)
    run_loop(loop, 'recv_async')
    assert len(results) == 1
    assert not isinstance(results[0], GLib.Error), results[0]
    assert results[0].unpack() == [42, None, 'hello']
    join_ok(p)


def test_recv_async_cancelled():
    loop = GLib.MainLoop()
    errors = []

    def on_received(conn, result):
        try:
            conn.recv_finish(result)
        except GLib.Error as e:
            errors.append(e)
        loop.quit()

    a, b = pipe()
    cancellable = Gio.Cancellable()
    b.recv_async(cancellable, on_received)
    GLib.idle_add(lambda: cancellable.cancel() and False)
    run_loop(loop, 'the cancelled recv_async')
    assert len(errors) == 1
    assert errors[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    a.send(GLib.Variant('i', 5), None)
    assert b.recv(None).unpack() == 5


def test_recv_async_end_of_stream():
    loop = GLib.MainLoop()
    errors = []

    def on_received(conn, result):
        try:
            conn.recv_finish(result)
        except GLib.Error as e:
            errors.append(e)
        loop.quit()

    a, b = pipe()
    b.recv_async(None, on_received)
    GLib.idle_add(lambda: a.close() and False)
    run_loop(loop, 'recv_async at end of stream')
    assert len(errors) == 1
    assert errors[0].matches(Mpg.error_quark(), Mpg.Error.END_OF_STREAM)


# With a Python child.

def echo(args, conn, other):
    # The child closes its copy of the parent's end, so that it sees end of
    # stream when the parent closes its own.
    other.close()
    n = 0
    while True:
        try:
            value = conn.recv(None)
        except GLib.Error as e:
            if e.matches(Mpg.error_quark(), Mpg.Error.END_OF_STREAM):
                return GLib.Variant('i', n)
            raise
        n += 1
        conn.send(GLib.Variant('(iv)', (n, value)), None)


def test_round_trip_with_a_child():
    parent_end, child_end = pipe()
    p = start(echo, child_end, parent_end)
    child_end.close()
    for i, v in enumerate([seed_value(), GLib.Variant('s', 'x'), GLib.Variant('ai', [1, 2])]):
        parent_end.send(v, None)
        assert parent_end.poll(TIMEOUT_MS, None)
        n, back = recv(parent_end).unpack()
        assert n == i + 1
        assert back == v.unpack()
    parent_end.close()
    # The child saw the end of the stream and counted three messages.
    assert join_ok(p).unpack() == 3


def test_many_messages_keep_their_order():
    def producer(args, conn, other):
        other.close()
        for i in range(5000):
            conn.send(GLib.Variant('i', i), None)
        conn.close()

    parent_end, child_end = pipe()
    p = start(producer, child_end, parent_end)
    child_end.close()
    got = []
    while True:
        try:
            got.append(recv(parent_end).unpack())
        except GLib.Error as e:
            assert e.matches(Mpg.error_quark(), Mpg.Error.END_OF_STREAM), e
            break
    join_ok(p)
    assert got == list(range(5000))


def test_bytes_with_a_child():
    def f(args, conn, other):
        other.close()
        data = conn.recv_bytes(None).get_data()
        conn.send_bytes(GLib.Bytes.new(data[::-1]), None)

    parent_end, child_end = pipe()
    p = start(f, child_end, parent_end)
    child_end.close()
    parent_end.send_bytes(GLib.Bytes.new(b'abcdef'), None)
    assert parent_end.recv_bytes(None).get_data() == b'fedcba'
    join_ok(p)


def test_large_message_with_a_child():
    size = 8 * 1024 * 1024

    def f(args, conn, other):
        other.close()
        value = conn.recv(None)
        data = value.get_data_as_bytes().get_data()
        conn.send(bytes_variant(data[::-1]), None)

    data = bytes(range(256)) * (size // 256)
    parent_end, child_end = pipe()
    p = start(f, child_end, parent_end)
    child_end.close()
    parent_end.send(bytes_variant(data), None)
    back = recv(parent_end)
    join_ok(p)
    assert back.get_type_string() == 'ay'
    assert back.get_data_as_bytes().get_data() == data[::-1]


def test_one_way_pipe_to_a_child():
    def f(args, r, w):
        w.close()
        return r.recv(None)

    r, w = pipe(False)
    p = start(f, r, w)
    r.close()
    w.send(GLib.Variant('s', 'one way'), None)
    assert join_ok(p).unpack() == 'one way'


def test_child_end_of_stream_when_the_child_dies(gate):
    # A child killed while the parent waits: the parent's recv() ends with
    # END_OF_STREAM, it does not hang.
    def f(args, conn, other, gate):
        other.close()
        gate.wait()
        os.kill(os.getpid(), 9)

    parent_end, child_end = pipe()
    p = start(f, child_end, parent_end, gate)
    child_end.close()
    gate.open()
    with pytest.raises(GLib.Error) as excinfo:
        recv(parent_end)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.END_OF_STREAM)
    assert p.join(TIMEOUT_MS)
    assert p.props.exitcode == -9


def test_fd_passing_from_a_child():
    def f(args, conn, other):
        other.close()
        r, w = os.pipe()
        os.write(w, b'from the child')
        os.close(w)
        fds = Gio.UnixFDList.new_from_array([r])
        conn.send_with_fds(GLib.Variant('ah', [0]), fds, None)

    parent_end, child_end = pipe()
    p = start(f, child_end, parent_end)
    child_end.close()
    value, fds = parent_end.recv_with_fds(None)
    join_ok(p)
    assert value.unpack() == [0]
    fd = fds.get(0)
    try:
        assert os.read(fd, 100) == b'from the child'
    finally:
        os.close(fd)


def test_connection_passed_through_a_connection():
    # An end of one pipe travels over another, as multiprocessing's
    # reduction of Connection objects does.
    def f(args, conn, other):
        other.close()
        value, fds = conn.recv_with_fds(None)
        inner = Mpg.Connection.new_from_handle(value, fds)
        inner.send(GLib.Variant('s', 'over the passed pipe'), None)

    outer_parent, outer_child = pipe()
    p = start(f, outer_child, outer_parent)
    outer_child.close()
    inner_mine, inner_theirs = pipe()
    fds = Gio.UnixFDList.new()
    handle = inner_theirs.to_handle(fds)
    outer_parent.send_with_fds(handle, fds, None)
    inner_theirs.close()
    assert recv(inner_mine).unpack() == 'over the passed pipe'
    join_ok(p)


def test_handle_in_a_fresh_interpreter():
    # What spawn does: a new program gets the handle and its fds, rebuilds
    # the connection and uses it.
    mine, theirs = pipe()
    fds = Gio.UnixFDList.new()
    handle = theirs.to_handle(fds)
    theirs.close()
    passed = [fds.get(i) for i in range(fds.get_length())]
    try:
        source = textwrap.dedent("""
            import sys
            import gi
            gi.require_version('Mpg', '1.0')
            from gi.repository import Gio, GLib, Mpg
            handle = GLib.Variant.parse(None, sys.argv[1], None, None)
            fds = Gio.UnixFDList.new_from_array([int(fd) for fd in sys.argv[2:]])
            conn = Mpg.Connection.new_from_handle(handle, fds)
            x = conn.recv(None).unpack()
            conn.send(GLib.Variant('s', 'got %s' % x), None)
        """)
        proc = subprocess.Popen(
            [sys.executable, '-c', source, handle.print_(True)] + [str(fd) for fd in passed],
            pass_fds=passed, stdin=subprocess.DEVNULL)
    finally:
        for fd in passed:
            os.close(fd)
        # The list keeps copies of the fds: close them too.
        for fd in fds.steal_fds():
            os.close(fd)
    try:
        mine.send(GLib.Variant('s', 'spawned'), None)
        assert recv(mine).unpack() == 'got spawned'
        assert proc.wait(CHILD_TIMEOUT_S) == 0
        # The program's exit closed the last copy of its end.
        with pytest.raises(GLib.Error) as excinfo:
            recv(mine)
        assert_error(excinfo, Mpg.error_quark(), Mpg.Error.END_OF_STREAM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# multiprocessing.connection.wait()

def test_wait_times_out_with_an_empty_list():
    # As in Python, a timeout is no error: nothing is ready.
    a, b = pipe()
    c, d = pipe()
    assert Mpg.wait([b, d], 0, None) == []
    start_time = time.monotonic()
    assert Mpg.wait([b, d], 200, None) == []
    assert 0.15 <= time.monotonic() - start_time < 10


def test_wait_on_connections():
    a, b = pipe()
    c, d = pipe()
    c.send(GLib.Variant('i', 1), None)
    assert Mpg.wait([b, d], TIMEOUT_MS, None) == [d]
    a.send(GLib.Variant('i', 2), None)
    # In the order given.
    assert Mpg.wait([d, b], TIMEOUT_MS, None) == [d, b]
    # The end of a stream counts as ready.
    d.recv(None)
    c.close()
    assert Mpg.wait([d], TIMEOUT_MS, None) == [d]


def test_wait_for_a_child_and_its_message(gate):
    def f(args, conn, other, gate, done):
        other.close()
        gate.wait()
        conn.send(GLib.Variant('s', 'ready'), None)
        done.wait()

    done = Gate()
    try:
        parent_end, child_end = pipe()
        p = start(f, child_end, parent_end, gate, done)
        child_end.close()
        assert Mpg.wait([parent_end, p], 100, None) == []
        gate.open()
        assert Mpg.wait([parent_end, p], TIMEOUT_MS, None) == [parent_end]
        assert recv(parent_end).unpack() == 'ready'
        # The child ends: the process is ready, and so is the end of stream.
        done.open()
        assert Mpg.wait([p], TIMEOUT_MS, None) == [p]
        assert not p.is_alive()
        assert p.props.exitcode == 0
        assert Mpg.wait([parent_end], TIMEOUT_MS, None) == [parent_end]
    finally:
        done.close()


def test_wait_on_a_queue(gate):
    def f(args, q, gate):
        gate.wait()
        q.put(GLib.Variant('i', 3), True, TIMEOUT_MS, None)

    q = Mpg.Queue.new(0)
    a, b = pipe()
    p = start(f, q, gate)
    assert Mpg.wait([b, q], 100, None) == []
    gate.open()
    assert Mpg.wait([b, q], TIMEOUT_MS, None) == [q]
    assert q.get(True, TIMEOUT_MS, None).unpack() == 3
    join_ok(p)


def test_wait_errors():
    a, b = pipe()
    r, w = pipe(False)
    closed, _ = pipe()
    closed.close()
    with pytest.raises(GLib.Error) as excinfo:
        Mpg.wait([b, closed], 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)
    with pytest.raises(GLib.Error) as excinfo:
        Mpg.wait([w], 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    with pytest.raises(GLib.Error) as excinfo:
        Mpg.wait([Mpg.Process.new(None, None)], 0, None)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    with pytest.raises(GLib.Error) as excinfo:
        Mpg.wait([b, Gio.Cancellable()], 0, None)
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_ARGUMENT)


def test_wait_cancelled_from_another_thread():
    a, b = pipe()
    cancellable = Gio.Cancellable()
    timer = threading.Timer(0.1, cancellable.cancel)
    timer.start()
    try:
        with pytest.raises(GLib.Error) as excinfo:
            Mpg.wait([b], TIMEOUT_MS, cancellable)
    finally:
        timer.join()
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
