# test_sync.py: multiprocessing's synchronization primitives in the
# multiprocessing layer (Lock, RLock, Semaphore, BoundedSemaphore, Event,
# Condition, Barrier), with every start method
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A spawned child is a new interpreter that imports this module by name
# (pytest puts the tests directory on sys.path) and finds the targets below
# by module:qualname. Children report failures by their exit code; every
# wait is bounded.

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg  # noqa: E402

import pytest  # noqa: E402

# Every wait is bounded by this many seconds.
T = 30
METHODS = ['fork', 'spawn', 'forkserver']


@pytest.fixture(params=METHODS)
def ctx(request):
    return Mpg.get_context(request.param)


def start_all(ctx, calls):
    """Starts a process of ctx for each (target, args)."""
    procs = []
    try:
        for target, args in calls:
            p = ctx.Process(target=target, args=args)
            p.start()
            procs.append(p)
    except BaseException:
        for p in procs:
            p.kill()
            p.join(T)
        raise
    return procs


def join_all(procs, timeout=T):
    """Joins the processes within timeout seconds in all; each must have
    exited with 0 (a failed assertion in a child exits with 1)."""
    end = time.monotonic() + timeout
    for p in procs:
        p.join(max(0, end - time.monotonic()))
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join(T)
    assert codes == [0] * len(procs)


def wait_until(predicate, timeout=T):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, 'timed out'
        time.sleep(0.01)


def _open_fds():
    fds = {}
    for name in os.listdir('/proc/self/fd'):
        try:
            fds[int(name)] = os.readlink('/proc/self/fd/' + name)
        except OSError:
            pass    # the directory's own fd
    return fds


def _shm_entries():
    try:
        return set(os.listdir('/dev/shm'))
    except FileNotFoundError:
        return set()


_warmed_up = False


def _warm_up():
    # What this process keeps once it was used (the thread that turns
    # Ctrl-C into a cancellation and its pipe, the fork server, the
    # result handler) is not a leak of a test: made before counting.
    global _warmed_up
    if _warmed_up:
        return
    assert not Mpg.Event().wait(0.01)
    for method in METHODS:
        c = Mpg.get_context(method)
        p = c.Process(target=time.sleep, args=(0,))
        p.start()
        p.join(T)
    with Mpg.Pool(1) as pool:
        pool.apply_async(abs, (1,)).get(T)
    _warmed_up = True


@pytest.fixture(autouse=True)
def left_nothing(request):
    """No file descriptor left open by a test, nothing left in /dev/shm."""
    _warm_up()
    gc.collect()
    fds, shm = _open_fds(), _shm_entries()
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        # The failure's traceback holds the test's objects.
        return
    end = time.monotonic() + 5
    while True:
        # Objects of a failed or finished test may need a collection, and
        # the descriptors of a child that just ended a moment to close.
        gc.collect()
        leaked = {fd: target for fd, target in _open_fds().items() if fds.get(fd) != target}
        if not leaked or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert leaked == {}, 'file descriptors left open'
    assert _shm_entries() - shm == set(), 'left in /dev/shm'


# -- targets, at the top level (spawned children find them by name)

def increment(counter, n):
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1


def read_meet_write(value, barrier):
    # Both read, meet, both write what they read plus one: one update is
    # lost, every time.
    seen = value.value
    barrier.wait(T)
    value.value = seen + 1


def hold_semaphore(sem, lock, holders, most, start, rounds):
    start.wait(T)
    for _ in range(rounds):
        assert sem.acquire(timeout=T)
        with lock:
            holders.value += 1
            most.value = max(most.value, holders.value)
        time.sleep(0.002)
        with lock:
            holders.value -= 1
        sem.release()


def wait_for_event(event, woken):
    assert event.wait(T)
    with woken.get_lock():
        woken.value += 1


def wait_on_condition(cond, ready, woken):
    with cond:
        ready.value += 1
        # ready and woken are protected by the condition's lock.
        assert cond.wait(T)
        woken.value += 1


def wait_for_flag(cond, flag, result):
    with cond:
        result.value = 1 if cond.wait_for(lambda: flag.value == 3, T) else 2


_action_counter = None


def count_action():
    # The action of the barrier: runs in the last party's process.
    with _action_counter.get_lock():
        _action_counter.value += 1


def barrier_party(barrier, counter, q):
    global _action_counter
    _action_counter = counter
    for generation in range(2):
        q.put((generation, barrier.wait(T), os.getpid()))


def wait_for_break(barrier, result):
    try:
        barrier.wait(T)
        result.value = 1
    except Mpg.BrokenBarrierError:
        result.value = 2


def hold_and_sleep(lock, rlock, sem, held):
    assert lock.acquire(timeout=T)
    assert rlock.acquire(timeout=T)
    assert rlock.acquire(timeout=T)
    assert sem.acquire(timeout=T)
    held.set()
    time.sleep(3 * T)


def take_over(lock, q):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        got = lock.acquire(timeout=T)
    q.put((got, [w.category.__name__ for w in caught]))
    if got:
        lock.release()


# -- Lock and RLock

def test_lock_in_one_process():
    lock = Mpg.Lock()
    assert repr(lock) == '<Lock(owner=None)>'
    assert lock.acquire()
    assert repr(lock) == '<Lock(owner=MainProcess)>'
    assert not lock.acquire(False)
    start = time.monotonic()
    assert not lock.acquire(timeout=0.2)
    assert time.monotonic() - start >= 0.15
    lock.release()
    with pytest.raises(ValueError, match='released too many times'):
        lock.release()
    with lock:
        assert not lock.acquire(block=False)
    assert lock.acquire(block=False)
    lock.release()


def test_lock_released_by_another_thread():
    # As multiprocessing's: a Lock is not owned.
    lock = Mpg.Lock()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join(T)
    assert lock.acquire(timeout=T)
    lock.release()


def test_rlock_in_one_process():
    rlock = Mpg.RLock()
    assert repr(rlock) == '<RLock(None, 0)>'
    with rlock:
        with rlock:
            assert repr(rlock) == '<RLock(MainProcess, 2)>'
    with pytest.raises(AssertionError, match='not owned'):
        rlock.release()
    rlock.acquire()
    errors = []

    def other_thread():
        try:
            rlock.release()
        except AssertionError as e:
            errors.append(e)
        errors.append(rlock.acquire(timeout=0.1))

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(T)
    assert len(errors) == 2 and isinstance(errors[0], AssertionError)
    assert errors[1] is False
    rlock.release()


def test_glib_layer_lock():
    lock = Mpg.Lock.new()
    assert lock.acquire(0, None) == (True, False)
    with pytest.raises(GLib.Error) as excinfo:
        lock.acquire(0, None)
    assert excinfo.value.matches(Mpg.error_quark(), Mpg.Error.TIMEOUT)
    assert lock.release()
    assert isinstance(Mpg.RLock(), Mpg.Lock)


def test_counter_under_lock(ctx):
    counter = ctx.Value('i', 0)
    procs = start_all(ctx, [(increment, (counter, 10000))] * 4)
    join_all(procs, timeout=240)
    assert counter.value == 40000


def test_update_lost_without_lock(ctx):
    value = ctx.Value('i', 0, lock=False)
    barrier = ctx.Barrier(2)
    procs = start_all(ctx, [(read_meet_write, (value, barrier))] * 2)
    join_all(procs)
    assert value.value == 1


# -- Semaphore

def test_semaphore_bound_never_exceeded(ctx):
    sem = ctx.Semaphore(2)
    lock = ctx.Lock()
    holders = ctx.RawValue('i', 0)
    most = ctx.RawValue('i', 0)
    start = ctx.Barrier(5)
    procs = start_all(ctx, [(hold_semaphore, (sem, lock, holders, most, start, 20))] * 5)
    join_all(procs)
    # Never more than 2; 2 at once when the processes overlap, as they
    # (almost surely) do.
    assert 1 <= most.value <= 2
    assert holders.value == 0
    assert sem.get_value() == 2


def test_semaphore_in_one_process():
    sem = Mpg.Semaphore(2)
    assert repr(sem) == '<Semaphore(value=2)>'
    assert sem.acquire() and sem.acquire()
    assert not sem.acquire(False)
    assert not sem.acquire(timeout=0.1)
    sem.release()
    sem.release()
    sem.release()    # not bounded
    assert sem.get_value() == 3
    with sem:
        assert sem.get_value() == 2
    with pytest.raises(ValueError):
        Mpg.Semaphore(-1)


def test_bounded_semaphore_over_release():
    sem = Mpg.BoundedSemaphore(2)
    assert repr(sem) == '<BoundedSemaphore(value=2, maxvalue=2)>'
    with pytest.raises(ValueError, match='released too many times'):
        sem.release()
    assert sem.acquire()
    sem.release()
    with pytest.raises(ValueError, match='released too many times'):
        sem.release()
    assert sem.get_value() == 2


# -- Event

def test_event_wakes_waiters(ctx):
    event = ctx.Event()
    woken = ctx.Value('i', 0)
    procs = start_all(ctx, [(wait_for_event, (event, woken))] * 3)
    time.sleep(0.3)
    assert woken.value == 0
    assert not event.is_set()
    event.set()
    join_all(procs)
    assert woken.value == 3


def test_event_in_one_process():
    event = Mpg.Event()
    assert not event.wait(0.1)
    assert not event.wait(0)
    event.set()
    assert event.is_set() and event.wait() and event.wait(0)
    event.clear()
    assert not event.is_set()
    # Set and cleared while a thread waits: the waiter returns True.
    got = []
    t = threading.Thread(target=lambda: got.append(event.wait(T)))
    t.start()
    time.sleep(0.2)
    event.set()
    event.clear()
    t.join(T)
    assert got == [True]


# -- Condition

def test_condition_notify_one_then_all(ctx):
    cond = ctx.Condition()
    ready = ctx.RawValue('i', 0)
    woken = ctx.RawValue('i', 0)
    procs = start_all(ctx, [(wait_on_condition, (cond, ready, woken))] * 3)

    def all_waiting():
        # A child holds the lock until its wait() releases it: seen under
        # the lock, ready == 3 means that all three wait.
        with cond:
            return ready.value == 3

    wait_until(all_waiting)
    with cond:
        cond.notify()
    wait_until(lambda: woken.value == 1)
    time.sleep(0.3)
    with cond:
        assert woken.value == 1
        cond.notify_all()
    join_all(procs)
    assert woken.value == 3


def test_condition_wait_for(ctx):
    cond = ctx.Condition(ctx.Lock())
    flag = ctx.RawValue('i', 0)
    result = ctx.RawValue('i', 0)
    procs = start_all(ctx, [(wait_for_flag, (cond, flag, result))])
    for i in range(1, 4):
        time.sleep(0.05)
        with cond:
            flag.value = i
            cond.notify_all()
    join_all(procs)
    assert result.value == 1


def test_condition_in_one_process():
    cond = Mpg.Condition()
    with pytest.raises(AssertionError, match='must acquire'):
        cond.wait(0.1)
    with pytest.raises(AssertionError, match='not owned'):
        cond.notify()
    with pytest.raises(AssertionError, match='not owned'):
        cond.notify_all()
    with cond:
        start = time.monotonic()
        assert cond.wait(0.2) is False
        assert time.monotonic() - start >= 0.15
        assert cond.wait_for(lambda: 0, timeout=0.1) == 0
        assert cond.wait_for(lambda: 'yes') == 'yes'
        cond.notify()
        cond.notify_all()
    lock = Mpg.RLock()
    cond = Mpg.Condition(lock)
    with cond:
        assert repr(lock) == '<RLock(MainProcess, 1)>'
    with pytest.raises(TypeError):
        Mpg.Condition(threading.Lock())


# -- Barrier

def test_barrier_with_an_action(ctx):
    counter = ctx.Value('i', 0)
    q = ctx.Queue()
    barrier = ctx.Barrier(4, action=count_action)
    procs = start_all(ctx, [(barrier_party, (barrier, counter, q))] * 4)
    got = [q.get(timeout=T) for _ in range(8)]
    join_all(procs)
    for generation in range(2):
        assert sorted(i for g, i, _ in got if g == generation) == [0, 1, 2, 3]
    assert counter.value == 2
    assert not barrier.broken


def test_barrier_abort_breaks_a_waiter(ctx):
    barrier = ctx.Barrier(2)
    result = ctx.RawValue('i', 0)
    procs = start_all(ctx, [(wait_for_break, (barrier, result))])
    wait_until(lambda: barrier.n_waiting == 1)
    barrier.abort()
    join_all(procs)
    assert result.value == 2
    assert barrier.broken
    with pytest.raises(Mpg.BrokenBarrierError):
        barrier.wait(T)
    barrier.reset()
    assert not barrier.broken and barrier.n_waiting == 0


def test_barrier_timeout_and_reset():
    barrier = Mpg.Barrier(2, timeout=0.2)
    assert barrier.parties == 2
    start = time.monotonic()
    with pytest.raises(Mpg.BrokenBarrierError):
        barrier.wait()
    assert time.monotonic() - start >= 0.15
    assert barrier.broken
    barrier.reset()
    assert not barrier.broken
    with pytest.raises(Mpg.BrokenBarrierError):
        barrier.wait(0.1)


def test_barrier_action_that_raises():
    def action():
        raise KeyError('in the action')

    barrier = Mpg.Barrier(1, action=action)
    with pytest.raises(KeyError, match='in the action'):
        barrier.wait(T)
    assert barrier.broken
    barrier.reset()
    barrier = Mpg.Barrier(1, action=lambda: None)
    assert barrier.wait(T) == 0


@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_barrier_action_must_be_found_by_name(method):
    ctx = Mpg.get_context(method)
    barrier = ctx.Barrier(2, action=lambda: None)
    p = ctx.Process(target=wait_for_break, args=(barrier, ctx.RawValue('i', 0)))
    with pytest.raises(ValueError, match='top level of a module'):
        p.start()


def test_barrier_checks_its_arguments():
    with pytest.raises(ValueError):
        Mpg.Barrier(0)
    with pytest.raises(TypeError):
        Mpg.Barrier(2, action=3)


# -- a holder killed while holding

def test_killed_holder(ctx):
    lock, rlock, sem = ctx.Lock(), ctx.RLock(), ctx.Semaphore(1)
    held = ctx.Event()
    q = ctx.Queue()
    holder = ctx.Process(target=hold_and_sleep, args=(lock, rlock, sem, held))
    holder.start()
    try:
        assert held.wait(T)
        # Another process waits for the lock while its holder is killed.
        waiter = ctx.Process(target=take_over, args=(lock, q))
        waiter.start()
        time.sleep(0.2)
    finally:
        holder.kill()
        holder.join(T)
    assert holder.exitcode == -signal.SIGKILL
    assert q.get(timeout=T) == (True, ['OwnerDiedWarning'])
    waiter.join(T)
    assert waiter.exitcode == 0
    with pytest.warns(Mpg.OwnerDiedWarning):
        assert rlock.acquire(timeout=T)
    rlock.release()
    # The unit that the dead process held comes back.
    assert sem.acquire(timeout=T)
    sem.release()
    assert sem.get_value() == 1
    # The lock was released by the waiter: no warning now.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with lock:
            pass


# -- the contexts, and the C layer's objects of the same classes

def test_context_has_the_names(ctx):
    for name in ('Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Event', 'Condition',
                 'Barrier', 'Value', 'Array', 'RawValue', 'RawArray'):
        assert callable(getattr(ctx, name)), name
    assert isinstance(ctx.Lock(), Mpg.Lock)
    assert isinstance(ctx.RLock(), Mpg.RLock)
    assert ctx.BoundedSemaphore(3).get_bounded()


def test_sent_through_a_queue():
    # A lock rebuilt from its handle is the same lock.
    q = Mpg.Queue()
    lock, event = Mpg.Lock(), Mpg.Event()
    q.put({'lock': lock, 'event': [event]})
    got = q.get(timeout=T)
    assert got['lock'] is not lock
    with got['lock']:
        assert not lock.acquire(False)
    got['event'][0].set()
    assert event.is_set()


# -- Ctrl-C

@pytest.mark.parametrize('wait', [
    'lock = Mpg.Lock(); lock.acquire(); lock.acquire()',
    'rlock = Mpg.RLock(); threading.Thread(target=rlock.acquire).start(); time.sleep(0.1); '
    'rlock.acquire()',
    'Mpg.Semaphore(0).acquire()',
    'Mpg.Event().wait()',
    'cond = Mpg.Condition(); cond.acquire(); cond.wait()',
    'Mpg.Barrier(2).wait()',
])
def test_ctrl_c_interrupts_a_wait(wait):
    code = textwrap.dedent("""
        import os, signal, threading, time
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository import Mpg
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            %s
        except KeyboardInterrupt:
            print('interrupted', time.monotonic() - start < 5)
    """) % wait
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=T, env=os.environ)
    assert proc.stdout == 'interrupted True\n', proc.stderr
