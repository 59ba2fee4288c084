# test_process.py: Mpg.Process from Python, through GObject introspection
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the semantics of Python's multiprocessing.Process on the
# introspected API. Another Python thread spins, holding the GIL, during the
# whole module: a child forked under a Python callable must not deadlock on
# the interpreter lock.

import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import Gio, GLib, Mpg  # noqa: E402

import pytest  # noqa: E402

# Every wait in this module is bounded: a broken fork hangs a join, not the
# test run.
JOIN_TIMEOUT_MS = 30000
CHILD_TIMEOUT_S = 60


from mpgtest import Gate, assert_error  # noqa: E402,F401


def run_process(p):
    p.start()
    assert p.join(JOIN_TIMEOUT_MS)
    return p


def square(args):
    x, = args.unpack()
    return GLib.Variant('i', x * x)


def test_exitcode_and_result():
    p = run_process(Mpg.Process.new(GLib.Variant('(i)', (7,)), square))
    assert p.props.exitcode == 0
    result = p.dup_result()
    assert result.get_type_string() == 'i'
    assert result.unpack() == 49


def test_result_of_a_target_returning_none():
    p = run_process(Mpg.Process.new(None, lambda args: None))
    assert p.props.exitcode == 0
    assert p.dup_result() is None


def test_target_gets_args_and_user_data():
    def target(args, extra):
        return GLib.Variant('(sv)', (extra, args))

    p = run_process(Mpg.Process.new(GLib.Variant('(sai)', ('bob', [1, 2])), target, 'data'))
    assert p.props.exitcode == 0
    assert p.dup_result().unpack() == ('data', ('bob', [1, 2]))


def test_no_target():
    p = run_process(Mpg.Process.new(None, None))
    assert p.props.exitcode == 0
    assert p.dup_result() is None


def test_set_target():
    p = Mpg.Process.new(GLib.Variant('(i)', (3,)), None)
    p.set_target(square)
    run_process(p)
    assert p.props.exitcode == 0
    assert p.dup_result().unpack() == 9


def test_target_raising_exits_with_1():
    def target(args):
        raise ValueError('boom')

    p = run_process(Mpg.Process.new(None, target))
    assert p.props.exitcode == 1
    with pytest.raises(GLib.Error) as excinfo:
        p.dup_result()
    assert 'ValueError: boom' in excinfo.value.message


def test_target_setting_an_error_exits_with_1():
    def target(args):
        raise GLib.Error.new_literal(Gio.io_error_quark(), 'no such thing',
                                     Gio.IOErrorEnum.NOT_FOUND)

    p = run_process(Mpg.Process.new(None, target))
    assert p.props.exitcode == 1
    # The same error, domain, code and message, comes back to the parent.
    with pytest.raises(GLib.Error) as excinfo:
        p.dup_result()
    assert_error(excinfo, Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND)
    assert excinfo.value.message == 'no such thing'


def test_target_error_of_a_domain_unknown_to_the_parent():
    def target(args):
        raise GLib.Error('custom', 'my-test-error-quark', 4)

    p = run_process(Mpg.Process.new(None, target))
    assert p.props.exitcode == 1
    with pytest.raises(GLib.Error) as excinfo:
        p.dup_result()
    assert excinfo.value.domain == 'my-test-error-quark'
    assert excinfo.value.code == 4
    assert excinfo.value.message == 'custom'


@pytest.mark.parametrize('code, exitcode', [(None, 0), (0, 0), (3, 3), ('bye', 1)])
def test_target_calling_sys_exit(code, exitcode):
    def target(args):
        sys.exit(code)

    p = run_process(Mpg.Process.new(None, target))
    assert p.props.exitcode == exitcode


def run_script(source):
    """Runs a Python program with stdout to a pipe (block-buffered)."""
    env = dict(os.environ)
    env.pop('PYTHONUNBUFFERED', None)
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(source)],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env, timeout=JOIN_TIMEOUT_MS / 1000)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


SCRIPT_PROLOGUE = """
    import atexit, os, sys
    import gi
    gi.require_version('Mpg', '1.0')
    from gi.repository import GLib, Mpg
"""


def test_child_runs_no_atexit_handler_of_the_parent():
    # As with multiprocessing, a child leaves with _exit(), also by
    # sys.exit(): the parent's atexit handlers run once, in the parent.
    out = run_script(SCRIPT_PROLOGUE + """
    print('main', os.getpid())
    atexit.register(lambda: print('atexit', os.getpid()))

    def target(args):
        sys.exit(args.unpack()[0])

    for code in (0, 3):
        p = Mpg.Process.new(GLib.Variant('(i)', (code,)), target)
        p.start()
        p.join(30000)
        print('exitcode', p.props.exitcode)
    """)
    lines = out.splitlines()
    main_pid = lines[0].split()[1]
    assert lines == ['main ' + main_pid, 'exitcode 0', 'exitcode 3', 'atexit ' + main_pid]


def test_child_does_not_repeat_the_output_of_the_parent():
    out = run_script(SCRIPT_PROLOGUE + """
    print('parent')
    p = Mpg.Process.new(None, lambda args: print('child'))
    p.start()
    p.join(30000)
    """)
    assert out == 'parent\nchild\n'


class Squarer(Mpg.Process):
    def do_run(self):
        x, = self.props.args.unpack()
        return GLib.Variant('(is)', (x * x, Mpg.current_process().props.name))


class Failing(Mpg.Process):
    def do_run(self):
        raise KeyError('nope')


def test_subclass_overriding_run():
    p = Squarer(args=GLib.Variant('(i)', (5,)))
    name = p.props.name
    run_process(p)
    assert p.props.exitcode == 0
    # run() ran in the child, where the current process is this object.
    assert p.dup_result().unpack() == (25, name)


def test_subclass_run_in_the_calling_process():
    # Python's Process.run(), called directly, runs in the caller.
    p = Squarer(args=GLib.Variant('(i)', (6,)))
    assert p.run().unpack() == (36, 'MainProcess')


def test_subclass_run_raising_exits_with_1():
    p = run_process(Failing())
    assert p.props.exitcode == 1
    with pytest.raises(GLib.Error) as excinfo:
        p.dup_result()
    assert 'KeyError' in excinfo.value.message


def test_default_names():
    names = [Mpg.Process.new(None, None).props.name for _ in range(3)]
    numbers = []
    for name in names:
        match = re.fullmatch(r'Process-(\d+)', name)
        assert match, name
        numbers.append(int(match.group(1)))
    assert numbers == list(range(numbers[0], numbers[0] + 3))


def test_name_can_be_set():
    p = Mpg.Process.new(None, lambda args: GLib.Variant('s', Mpg.current_process().props.name))
    p.props.name = 'worker'
    run_process(p)
    assert p.dup_result().unpack() == 'worker'


def test_pid():
    def target(args):
        return GLib.Variant('(ii)', (os.getpid(), os.getppid()))

    p = Mpg.Process.new(None, target)
    assert p.props.pid == 0
    p.start()
    pid = p.props.pid
    assert pid > 0 and pid != os.getpid()
    assert p.join(JOIN_TIMEOUT_MS)
    assert p.dup_result().unpack() == (pid, os.getpid())
    assert p.props.pid == pid


def test_is_alive(gate):
    p = Mpg.Process.new(None, lambda args: GLib.Variant('b', gate.wait()))
    assert not p.is_alive()
    assert p.props.exitcode == Mpg.PROCESS_EXITCODE_NONE
    p.start()
    assert p.is_alive()
    assert p.props.exitcode == Mpg.PROCESS_EXITCODE_NONE
    gate.open()
    assert p.join(JOIN_TIMEOUT_MS)
    assert not p.is_alive()
    assert p.props.exitcode == 0
    assert p.dup_result().unpack() is True


def test_join_timeout_expires(gate):
    p = Mpg.Process.new(None, lambda args: GLib.Variant('b', gate.wait()))
    p.start()
    start = time.monotonic()
    with pytest.raises(GLib.Error) as excinfo:
        p.join(100)
    elapsed = time.monotonic() - start
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.TIMEOUT)
    assert excinfo.value.domain == 'mpg-error-quark'
    assert 0.05 <= elapsed < 10
    # The child is unaffected by the expired wait.
    assert p.is_alive()
    gate.open()
    assert p.join(JOIN_TIMEOUT_MS)
    assert p.props.exitcode == 0


def run_loop(loop, what):
    timed_out = []

    def on_timeout():
        timed_out.append(True)
        loop.quit()
        return GLib.SOURCE_REMOVE

    guard = GLib.timeout_add(JOIN_TIMEOUT_MS, on_timeout)
    loop.run()
    if not timed_out:
        GLib.source_remove(guard)
    assert not timed_out, '%s did not complete in time' % what


def test_join_async():
    loop = GLib.MainLoop()
    results = []

    def on_joined(p, result):
        results.append(p.join_finish(result))
        loop.quit()

    p = Mpg.Process.new(GLib.Variant('(i)', (4,)), square)
    p.start()
    p.join_async(None, on_joined)
    run_loop(loop, 'join_async')
    assert results == [True]
    assert p.props.exitcode == 0
    assert p.dup_result().unpack() == 16


def test_join_async_cancelled(gate):
    loop = GLib.MainLoop()
    errors = []

    def on_joined(p, result):
        try:
            p.join_finish(result)
        except GLib.Error as e:
            errors.append(e)
        loop.quit()

    p = Mpg.Process.new(None, lambda args: GLib.Variant('b', gate.wait()))
    p.start()
    cancellable = Gio.Cancellable()
    p.join_async(cancellable, on_joined)
    GLib.idle_add(lambda: cancellable.cancel() and False)
    run_loop(loop, 'the cancelled join_async')
    assert len(errors) == 1
    assert errors[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    # Cancelling the wait does not stop the child.
    assert p.is_alive()
    gate.open()
    assert p.join(JOIN_TIMEOUT_MS)
    assert p.props.exitcode == 0


def start_and_wait_until_running(gate):
    # The child tells it runs, then sleeps: the signal reaches the target,
    # not a half-started child.
    def target(args):
        gate.open()
        time.sleep(CHILD_TIMEOUT_S)

    p = Mpg.Process.new(None, target)
    p.start()
    assert gate.wait(JOIN_TIMEOUT_MS / 1000)
    return p


def test_terminate(gate):
    p = start_and_wait_until_running(gate)
    p.terminate()
    assert p.join(JOIN_TIMEOUT_MS)
    assert p.props.exitcode == -signal.SIGTERM
    with pytest.raises(GLib.Error) as excinfo:
        p.dup_result()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.WORKER_DIED)


def test_kill(gate):
    p = start_and_wait_until_running(gate)
    p.kill()
    assert p.join(JOIN_TIMEOUT_MS)
    assert p.props.exitcode == -signal.SIGKILL
    with pytest.raises(GLib.Error) as excinfo:
        p.dup_result()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.WORKER_DIED)


def test_start_twice():
    p = run_process(Mpg.Process.new(None, None))
    with pytest.raises(GLib.Error) as excinfo:
        p.start()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_join_before_start():
    p = Mpg.Process.new(None, None)
    with pytest.raises(GLib.Error) as excinfo:
        p.join(JOIN_TIMEOUT_MS)
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_signal_before_start():
    p = Mpg.Process.new(None, None)
    with pytest.raises(GLib.Error) as excinfo:
        p.terminate()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)


def test_close_while_running(gate):
    p = Mpg.Process.new(None, lambda args: GLib.Variant('b', gate.wait()))
    p.start()
    with pytest.raises(GLib.Error) as excinfo:
        p.close()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.INVALID_STATE)
    gate.open()
    assert p.join(JOIN_TIMEOUT_MS)
    assert p.close()
    with pytest.raises(GLib.Error) as excinfo:
        p.dup_result()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)
    with pytest.raises(GLib.Error) as excinfo:
        p.start()
    assert_error(excinfo, Mpg.error_quark(), Mpg.Error.CLOSED)


def test_current_process():
    main = Mpg.current_process()
    assert main.props.name == 'MainProcess'
    assert main.props.pid == os.getpid()
    assert main.is_alive()
    assert Mpg.parent_process() is None


def test_parent_process_in_child():
    def target(args):
        parent = Mpg.parent_process()
        return GLib.Variant('(si)', (parent.props.name, parent.props.pid))

    p = run_process(Mpg.Process.new(None, target))
    assert p.dup_result().unpack() == ('MainProcess', os.getpid())


def test_active_children(gate):
    p = Mpg.Process.new(None, lambda args: GLib.Variant('b', gate.wait()))
    p.start()
    assert p in Mpg.active_children()
    gate.open()
    assert p.join(JOIN_TIMEOUT_MS)
    assert p not in Mpg.active_children()


def test_cpu_count():
    n = Mpg.cpu_count()
    assert n >= 1
    assert n <= os.cpu_count()


def test_start_from_another_thread():
    # The library forks from a thread of its own when the caller is not the
    # main thread; the fork still goes through os.fork.
    p = Mpg.Process.new(GLib.Variant('(i)', (8,)), square)
    errors = []

    def start():
        try:
            p.start()
        except Exception as e:
            errors.append(e)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(JOIN_TIMEOUT_MS / 1000)
    assert not thread.is_alive(), 'start() from a thread did not return'
    assert errors == []
    assert p.join(JOIN_TIMEOUT_MS)
    assert p.props.exitcode == 0
    assert p.dup_result().unpack() == 64


def test_many_forks_while_another_thread_holds_the_gil(spinner):
    before = spinner.count
    for i in range(50):
        p = run_process(Mpg.Process.new(GLib.Variant('(i)', (i,)), square))
        assert p.props.exitcode == 0
        assert p.dup_result().unpack() == i * i
    # The spinning thread really ran meanwhile.
    assert spinner.count > before


def test_grandchild():
    # A child can start and join processes of its own.
    def child(args):
        q = Mpg.Process.new(GLib.Variant('(i)', (9,)), square)
        q.start()
        q.join(JOIN_TIMEOUT_MS)
        return GLib.Variant('(si)', (q.props.name, q.dup_result().unpack()))

    p = run_process(Mpg.Process.new(None, child))
    assert p.props.exitcode == 0
    assert p.dup_result().unpack() == (p.props.name + ':1', 81)
