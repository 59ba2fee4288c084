# test_mp_process.py: multiprocessing.Process's API and semantics on
# Mpg.Process (the kinds of cases CPython's test_multiprocessing checks)
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
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
# fixture) unless their point is fork's: lambdas, closures, inherited
# objects. A spawned or forkserver child is a new interpreter that imports
# this module by name (pytest puts the tests directory on sys.path): its
# targets are the module-level functions below.
METHODS = ['fork', 'spawn', 'forkserver']


@pytest.fixture(params=METHODS)
def ctx(request):
    return Mpg.get_context(request.param)


def noop():
    pass


def put_value(q, value):
    q.put(value)


def report_call(q, a, b, *, c):
    q.put((a, b, c, Mpg.current_process().name, os.getpid()))


def try_to_start_a_child(q):
    try:
        Mpg.Process(target=noop).start()
        q.put('started')
    except AssertionError as e:
        q.put('AssertionError: ' + str(e))


def report_parent(q):
    parent = Mpg.parent_process()
    q.put((Mpg.current_process().name, parent.name, parent.pid))


def run_python(code):
    """Runs code in a new interpreter (whose stdout is a pipe) and returns
    its stdout, stderr and exit status."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=T, env=os.environ)
    return proc.stdout, proc.stderr, proc.returncode


# fork only, as the seed: from -c, which a spawned child cannot import.
def test_seed_hello_bob():
    out, err, status = run_python("""
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository.Mpg import Process

        def f(name):
            print('hello', name)

        if __name__ == '__main__':
            p = Process(target=f, args=('bob',))
            p.start()
            p.join()
    """)
    assert (out, err, status) == ('hello bob\n', '', 0)


def test_target_args_kwargs_and_exitcode(ctx):
    q = ctx.Queue()
    p = ctx.Process(target=report_call, args=(q, 1, [2]), kwargs={'c': {'x': None}}, name='worker')
    assert p.pid is None and p.exitcode is None and not p.is_alive()
    assert p.name == 'worker' and p.ident is None
    p.start()
    a, b, c, name, pid = q.get(timeout=T)
    p.join(T)
    assert (a, b, c, name) == (1, [2], {'x': None}, 'worker')
    assert pid == p.pid != os.getpid()
    assert p.exitcode == 0 and not p.is_alive()
    assert 'stopped exitcode=0' in repr(p)


# fork only: the point is fork's (inherited, unsendable arguments); spawn
# refuses them (test_mp_spawn).
def test_args_are_inherited_not_converted():
    # With fork, the target's arguments need not be sendable values.
    r, w = os.pipe()

    class Thing:
        value = 'inherited'

    def target(thing, fd):
        os.write(fd, thing.value.encode())

    p = Mpg.Process(target=target, args=(Thing(), w))
    p.start()
    p.join(T)
    os.close(w)
    assert os.read(r, 100) == b'inherited'
    os.close(r)


# fork only: a lambda.
def test_lambda_target():
    q = Mpg.SimpleQueue()
    p = Mpg.Process(target=lambda: q.put('from a lambda'))
    p.start()
    assert q.get() == 'from a lambda'
    p.join(T)


class Squarer(Mpg.Process):
    def __init__(self, n, q):
        super().__init__()
        self.n = n
        self.q = q

    def run(self):
        self.q.put(self.n * self.n)


# fork only: a subclass's run() is inherited code, not a name.
def test_subclass_overriding_run():
    q = Mpg.Queue()
    p = Squarer(7, q)
    p.start()
    assert q.get(timeout=T) == 49
    p.join(T)
    assert p.exitcode == 0


def test_subclass_run_in_the_calling_process():
    q = Mpg.Queue()
    Squarer(3, q).run()
    assert q.get(timeout=T) == 9


def test_run_calls_the_target_in_this_process():
    seen = []
    p = Mpg.Process(target=seen.append, args=(os.getpid(),))
    p.run()
    assert seen == [os.getpid()]


# fork only: the code runs from -c, which a spawned child cannot import.
def test_exception_in_target_exits_with_1_and_prints_the_traceback():
    out, err, status = run_python("""
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository import Mpg

        def f():
            raise ValueError('boom')

        p = Mpg.Process(target=f)
        p.start()
        p.join()
        print(p.exitcode)
        print('ValueError: boom' in p.error.message)
    """)
    assert status == 0
    assert out == '1\nTrue\n'
    assert 'Process Process-1:' in err
    assert 'Traceback (most recent call last)' in err
    assert 'line 7, in f' in err and 'ValueError: boom' in err


def test_sys_exit_in_target(ctx):
    # Started together: a spawned interpreter takes a while.
    cases = [(None, 0), (3, 3), ('bye', 1)]
    ps = [ctx.Process(target=sys.exit, args=(code,)) for code, _ in cases]
    for p in ps:
        p.start()
    for p in ps:
        p.join(T)
    assert [p.exitcode for p in ps] == [exitcode for _, exitcode in cases]


def test_join_timeout_returns_none_and_is_in_seconds(ctx):
    p = ctx.Process(target=time.sleep, args=(30,))
    p.start()
    start = time.monotonic()
    assert p.join(0.2) is None
    assert 0.15 <= time.monotonic() - start < 5
    assert p.is_alive() and p.exitcode is None
    p.terminate()
    p.join(T)
    assert p.exitcode == -signal.SIGTERM


def test_kill(ctx):
    p = ctx.Process(target=time.sleep, args=(30,))
    p.start()
    p.kill()
    p.join(T)
    assert p.exitcode == -signal.SIGKILL
    assert not p.is_alive()


# Not per method (a spawned child costs a few hundred ms): the state
# checks are the parent's.
def test_start_twice_and_join_before_start():
    p = Mpg.Process(target=noop)
    with pytest.raises(AssertionError):
        p.join()
    p.start()
    with pytest.raises(AssertionError):
        p.start()
    p.join(T)


def test_close():
    p = Mpg.Process(target=time.sleep, args=(30,))
    p.start()
    with pytest.raises(ValueError):
        p.close()
    p.terminate()
    p.join(T)
    p.close()
    with pytest.raises(ValueError):
        p.start()


def test_daemon_attribute():
    p = Mpg.Process(target=noop, daemon=True)
    assert p.daemon
    p.daemon = False
    assert not p.daemon
    p.start()
    with pytest.raises(AssertionError):
        p.daemon = True
    p.join(T)


def test_daemonic_processes_cannot_have_children(ctx):
    q = ctx.Queue()
    p = ctx.Process(target=try_to_start_a_child, args=(q,), daemon=True)
    p.start()
    assert q.get(timeout=T).startswith('AssertionError')
    p.join(T)


def test_current_parent_and_active_children(ctx):
    assert Mpg.current_process().name == 'MainProcess'
    assert Mpg.parent_process() is None
    q = ctx.Queue()
    p = ctx.Process(target=report_parent, args=(q,), name='child')
    p.start()
    # With forkserver too: the parent is the requester, not the server.
    assert q.get(timeout=T) == ('child', 'MainProcess', os.getpid())
    p.join(T)
    assert p not in Mpg.active_children()
    s = ctx.Process(target=time.sleep, args=(30,))
    s.start()
    assert s in Mpg.active_children()
    s.terminate()
    s.join(T)
    assert Mpg.active_children() == []


def test_cpu_count():
    assert Mpg.cpu_count() >= 1


def test_sentinel():
    p = Mpg.Process(target=time.sleep, args=(0.1,))
    p.start()
    assert isinstance(p.sentinel, int) and p.sentinel >= 0
    p.join(T)


def test_process_without_target(ctx):
    p = ctx.Process()
    p.start()
    p.join(T)
    assert p.exitcode == 0


def test_target_must_be_callable():
    with pytest.raises(TypeError):
        Mpg.Process(target=42)


def test_start_methods():
    assert Mpg.get_all_start_methods() == ['fork', 'spawn', 'forkserver']
    assert Mpg.get_context().get_start_method() == 'fork'
    assert Mpg.get_context('fork').Process is Mpg.Process
    assert Mpg.get_context('spawn').get_start_method() == 'spawn'
    assert Mpg.get_context('forkserver').get_start_method() == 'forkserver'
    with pytest.raises(ValueError):
        Mpg.get_context('bogus')
    Mpg.set_start_method('fork', force=True)
    with pytest.raises(RuntimeError):
        Mpg.set_start_method('fork')
    assert Mpg.get_start_method() == 'fork'
    Mpg.set_start_method(None, force=True)
    assert Mpg.get_start_method(allow_none=True) is None


def test_context_objects_work(ctx):
    q = ctx.Queue()
    p = ctx.Process(target=put_value, args=(q, ctx.cpu_count()))
    p.start()
    assert q.get(timeout=T) == Mpg.cpu_count()
    p.join(T)
    a, b = ctx.Pipe()
    a.send(1)
    assert b.recv() == 1
    with ctx.Pool(1) as pool:
        assert pool.apply(abs, (-3,)) == 3


# fork only: a lambda.
def test_glib_layer_still_works_on_the_same_class():
    p = Mpg.Process.new(GLib.Variant('(i)', (4,)), lambda args: GLib.Variant('i', args[0] ** 2))
    assert p.start()
    assert p.join(T * 1000)        # milliseconds, returns True
    assert p.dup_result().unpack() == 16
    assert p.exitcode == 0 and p.pid > 0


# Waits, not starts: fork only, each case in an interpreter of its own.
@pytest.mark.parametrize('wait', [
    'Mpg.Queue().get()',
    'p = Mpg.Process(target=time.sleep, args=(30,)); p.start(); p.join()',
    'Mpg.Pool(1).map(time.sleep, [30])',
    'Mpg.Pool(1).apply(time.sleep, (30,))',
    'Mpg.Pool(1).starmap(time.sleep, [(30,)])',
    'next(Mpg.Pool(1).imap(time.sleep, [30]))',
    'Mpg.get_context("spawn").Pool(1).apply(time.sleep, (30,))',
    'Mpg.get_context("forkserver").Pool(1).map(time.sleep, [30, 30])',
    'Mpg.Pool(1).apply_async(time.sleep, (30,)).get()',
    'a, b = Mpg.Pipe(); a.recv()',
])
def test_ctrl_c_interrupts_a_blocking_wait(wait):
    out, err, status = run_python("""
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
            for c in Mpg.active_children():
                c.kill()
    """ % wait)
    assert out == 'interrupted True\n', err


# A blocking call that Ctrl-C interrupted is cancelled: the pool goes on
# (and the next call is not interrupted by the same Ctrl-C), in the main
# thread, with Python's SIGINT handler or another, and in another thread.
@pytest.mark.parametrize('handler', ['default', 'custom', 'wakeup fd'])
def test_ctrl_c_in_a_blocking_pool_call_leaves_the_pool_usable(handler):
    out, err, status = run_python("""
        import os, signal, threading, time
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository import Mpg

        def interrupt(*args):
            raise KeyboardInterrupt

        import socket
        if %r == 'custom':
            signal.signal(signal.SIGINT, interrupt)
        elif %r == 'wakeup fd':
            # Someone else's wakeup fd, which must stay.
            r, w = socket.socketpair()
            w.setblocking(False)
            signal.set_wakeup_fd(w.fileno())
        # A cancelled task runs to its end: a worker for each, one free.
        pool = Mpg.Pool(3)
        for call in (lambda: pool.apply(time.sleep, (30,)),
                     lambda: pool.map(time.sleep, [30])):
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            start = time.monotonic()
            try:
                call()
            except KeyboardInterrupt:
                print('interrupted', time.monotonic() - start < 5)
            print(pool.apply(abs, (-2,)), pool.map(abs, [-1, -2]))
        out = []
        t = threading.Thread(target=lambda: out.append(pool.apply(abs, (-5,))))
        t.start()
        t.join()
        print(out, signal.set_wakeup_fd(-1) == (w.fileno() if %r == 'wakeup fd' else -1))
        pool.terminate()
        pool.join()
    """ % (handler, handler, handler))
    assert out == ('interrupted True\n2 [1, 2]\n' * 2) + '[5] True\n', err
    assert status == 0
