# test_shared.py: shared memory in the multiprocessing layer: Value, Array,
# RawValue, RawArray (sharedctypes) and SharedMemory, with every start
# method, and objects sent through queues and pipes
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A spawned child imports this module by name and finds the targets below
# by module:qualname. Children report failures by their exit code; every
# wait is bounded.

import ctypes
import threading

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import Mpg  # noqa: E402

import pytest  # noqa: E402

from test_sync import METHODS, T, join_all, start_all  # noqa: E402
# The fixture that checks that no descriptor and nothing in /dev/shm is
# left after each test (autouse).
from test_sync import left_nothing  # noqa: E402,F401


@pytest.fixture(params=METHODS)
def ctx(request):
    return Mpg.get_context(request.param)


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double)]


# -- targets, at the top level (spawned children find them by name)

def fill(value, array, chars, point):
    value.value = -7
    for i in range(len(array)):
        array[i] = i * i
    chars.value = b'child'
    point.x = 3
    point.y = 0.25


def fill_raw(value, array):
    value.value = 11
    array[:] = [4, 5, 6]


def write_pattern(shm, n):
    shm.buf[:n] = bytes(range(n))


def check_and_answer(shm):
    # What the parent wrote, seen here; the answer written back.
    assert bytes(shm.buf[:5]) == b'hello'
    shm.buf[5:10] = b'world'


def get_and_use(q):
    shm, lock, value, raw = q.get(timeout=T)
    with lock:
        shm.buf[:3] = b'abc'
    with value.get_lock():
        value.value += 1
    raw[0] = 42


def make_and_send(conn):
    shm = Mpg.SharedMemory(create=True, size=64)
    shm.buf[:4] = b'made'
    conn.send(('here', shm))
    assert conn.recv() == 'done'


_counter = None


def keep_counter(counter):
    global _counter
    _counter = counter


def add_to_counter(x):
    with _counter.get_lock():
        _counter.value += x
    return x


# -- Value and RawValue

@pytest.mark.parametrize('typecode, value', [
    ('c', b'x'), ('u', 'é'), ('b', -5), ('B', 250), ('h', -300), ('H', 60000),
    ('i', -2 ** 31), ('I', 2 ** 32 - 1), ('l', -2 ** 63), ('L', 2 ** 64 - 1), ('q', 2 ** 62),
    ('Q', 2 ** 63), ('f', 0.5), ('d', 1e300), ('?', True),
])
def test_value_typecodes(typecode, value):
    v = Mpg.Value(typecode)
    assert v.value == {'c': b'\0', 'u': '\0'}.get(typecode, 0)
    v.value = value
    assert v.value == value
    v = Mpg.Value(typecode, value, lock=False)
    assert v.value == value
    assert Mpg.RawValue(typecode, value).value == value


def test_value_of_ctypes_types():
    v = Mpg.Value(ctypes.c_double, 1.5)
    assert v.value == 1.5
    assert isinstance(v.get_obj(), ctypes.c_double)
    assert Mpg.Value(ctypes.c_int).value == 0
    p = Mpg.Value(Point, 1, 2.5)
    assert (p.x, p.y) == (1, 2.5)
    p.x += 1
    assert p.get_obj().x == 2
    raw = Mpg.RawValue(Point, 4)
    assert isinstance(raw, Point) and (raw.x, raw.y) == (4, 0.0)
    with pytest.raises(TypeError, match='typecode'):
        Mpg.Value('z')
    with pytest.raises(TypeError):
        Mpg.Value(int)


def test_value_wrapper():
    v = Mpg.Value('i', 5)
    assert repr(v) == '<Synchronized wrapper for c_int(5)>'
    assert isinstance(v, Mpg.Synchronized)
    assert isinstance(v.get_lock(), Mpg.RLock)
    with v:
        assert repr(v.get_lock()) == '<RLock(MainProcess, 1)>'
    v.acquire()
    v.release()
    lock = Mpg.Lock()
    v = Mpg.Value('d', lock=lock)
    assert v.get_lock() is lock
    # A Lock is not recursive: under it, the object itself (value takes
    # the lock), as in multiprocessing.
    with v.get_lock():
        v.get_obj().value += 2
    assert v.value == 2
    raw = Mpg.Value('i', 3, lock=False)
    assert isinstance(raw, ctypes.c_int) and raw.value == 3
    with pytest.raises(AttributeError, match='acquire'):
        Mpg.Value('i', lock='no')
    # Any object with acquire() and release() is a lock here.
    v = Mpg.Value('i', 1, lock=threading.Lock())
    assert v.value == 1


def test_memory_is_mapped_not_copied():
    v = Mpg.Value('q', 9)
    address = ctypes.addressof(v.get_obj())
    with open('/proc/self/maps') as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split('-'))
            if start <= address < end:
                assert 'memfd:' in line, line
                break
        else:
            pytest.fail('the value is not in a mapping')


# -- Array and RawArray

def test_array_items_and_slices():
    a = Mpg.Array('i', 10)
    assert len(a) == 10 and a[:] == [0] * 10
    a[3] = 7
    a[-1] = -1
    assert a[3] == 7 and a[9] == -1
    a[0:3] = [1, 2, 3]
    assert a[:4] == [1, 2, 3, 7]
    assert a[::3] == [1, 7, 0, -1]
    with pytest.raises(IndexError):
        a[10]
    a = Mpg.Array('d', range(4))
    assert a[:] == [0.0, 1.0, 2.0, 3.0]
    assert isinstance(a, Mpg.SynchronizedArray)
    assert repr(a).startswith('<SynchronizedArray wrapper for ')
    a = Mpg.Array(ctypes.c_ushort, [1, 2])
    assert a[:] == [1, 2]
    assert len(Mpg.Array('i', 0)) == 0
    with pytest.raises(ValueError):
        Mpg.Array('i', -1)


def test_char_arrays():
    a = Mpg.Array('c', b'hello')
    assert isinstance(a, Mpg.SynchronizedString)
    assert a.value == b'hello' and a.raw == b'hello' and len(a) == 5
    a.value = b'hi'
    assert a.value == b'hi'
    assert a.raw == b'hi\0lo'
    a.raw = b'HELLO'
    assert a[1:3] == b'EL'
    a = Mpg.Array('c', 8)
    assert a.raw == bytes(8)
    u = Mpg.Array('u', 'héllo')
    assert u[:] == 'héllo' and isinstance(u, Mpg.SynchronizedArray)
    assert u.get_obj().value == 'héllo'


def test_raw_array_and_locks():
    r = Mpg.RawArray('i', [1, 2, 3])
    assert isinstance(r, ctypes.Array) and r[:] == [1, 2, 3]
    r = Mpg.RawArray(Point, 2)
    r[1].x = 5
    assert r[1].x == 5 and len(r) == 2
    raw = Mpg.Array('i', 3, lock=False)
    assert isinstance(raw, ctypes.Array)
    lock = Mpg.RLock()
    a = Mpg.Array('i', 3, lock=lock)
    assert a.get_lock() is lock
    assert isinstance(a.get_obj(), ctypes.Array)
    with a:
        a[0] = 1


def test_children_see_and_write(ctx):
    value = ctx.Value('i', 1)
    array = ctx.Array('q', 5)
    chars = ctx.Array('c', 8)
    point = ctx.Value(Point)
    join_all(start_all(ctx, [(fill, (value, array, chars, point))]))
    assert value.value == -7
    assert array[:] == [0, 1, 4, 9, 16]
    assert chars.value == b'child'
    assert (point.x, point.y) == (3, 0.25)


def test_children_write_raw_values(ctx):
    value = ctx.RawValue('i', 0)
    array = ctx.RawArray('i', 3)
    join_all(start_all(ctx, [(fill_raw, (value, array))]))
    assert value.value == 11
    assert array[:] == [4, 5, 6]


def test_pool_initargs(ctx):
    counter = ctx.Value('i', 0)
    with ctx.Pool(2, initializer=keep_counter, initargs=(counter,)) as pool:
        assert pool.map(add_to_counter, range(1, 11)) == list(range(1, 11))
    assert counter.value == 55


def test_what_cannot_be_sent():
    with Mpg.Pool(1) as pool:
        with pytest.raises(TypeError, match='initargs of a Pool'):
            pool.apply(abs, (Mpg.Value('i', 1),))
    q = Mpg.Queue()
    with pytest.raises(TypeError, match='ctypes'):
        q.put(ctypes.c_int(1))
    with pytest.raises(TypeError, match='lock of a shared value'):
        q.put(Mpg.Value('i', 1, lock=threading.Lock()))

    class Local(ctypes.Structure):
        _fields_ = [('a', ctypes.c_int)]

    with pytest.raises(ValueError, match='top level of a module'):
        q.put(Mpg.RawValue(Local))
    assert q.empty()


# -- SharedMemory

def test_shared_memory_in_one_process():
    shm = Mpg.SharedMemory(create=True, size=100)
    assert shm.size == 100 and isinstance(shm.name, str)
    assert len(shm.buf) == 100 and not shm.buf.readonly
    assert bytes(shm.buf[:4]) == bytes(4)
    shm.buf[:4] = b'abcd'
    assert bytes(shm.buf[:4]) == b'abcd'
    assert repr(shm) == 'SharedMemory(%r, size=100)' % shm.name
    named = Mpg.SharedMemory('my-block', create=True, size=10)
    assert named.name == 'my-block'
    shm.unlink()
    shm.close()
    assert shm.buf is None
    shm.close()


def test_shared_memory_errors():
    with pytest.raises(FileNotFoundError, match='attached by name'):
        Mpg.SharedMemory('some-name')
    with pytest.raises(ValueError):
        Mpg.SharedMemory()
    with pytest.raises(ValueError, match='different from zero'):
        Mpg.SharedMemory(create=True)
    with pytest.raises(ValueError):
        Mpg.SharedMemory(create=True, size=-1)
    shm = Mpg.SharedMemory(create=True, size=10)
    view = shm.buf[2:4]
    with pytest.raises(BufferError):
        shm.close()
    view.release()
    shm.close()


def test_shared_memory_written_by_a_child(ctx):
    shm = Mpg.SharedMemory(create=True, size=4096)
    join_all(start_all(ctx, [(write_pattern, (shm, 256))]))
    assert bytes(shm.buf[:256]) == bytes(range(256))
    assert bytes(shm.buf[256:]) == bytes(4096 - 256)


def test_shared_memory_both_ways(ctx):
    shm = Mpg.SharedMemory(create=True, size=10)
    shm.buf[:5] = b'hello'
    join_all(start_all(ctx, [(check_and_answer, (shm,))]))
    assert bytes(shm.buf) == b'helloworld'


# -- through a queue and a pipe

def test_through_a_queue(ctx):
    q = ctx.Queue()
    shm = Mpg.SharedMemory(create=True, size=8)
    value = ctx.Value('i', 1)
    raw = ctx.RawArray('i', 2)
    procs = start_all(ctx, [(get_and_use, (q,))])
    q.put((shm, ctx.Lock(), value, raw))
    join_all(procs)
    assert bytes(shm.buf[:3]) == b'abc'
    assert value.value == 2
    assert raw[:] == [42, 0]


def test_through_a_pipe(ctx):
    a, b = ctx.Pipe()
    procs = start_all(ctx, [(make_and_send, (b,))])
    tag, shm = a.recv()
    assert tag == 'here' and bytes(shm.buf[:4]) == b'made'
    a.send('done')
    join_all(procs)
    # The block lives on here after its maker ended.
    shm.buf[:4] = b'mine'
    assert bytes(shm.buf[:4]) == b'mine'
    a.close()
    b.close()
