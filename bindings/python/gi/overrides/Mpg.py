# Mpg.py: PyGObject override for libmpg
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import ctypes
import os
import sys
import traceback

from gi.repository import Gio, GLib

from ..module import get_introspection_module
from ..overrides import override

Mpg = get_introspection_module('Mpg')

__all__ = []

# The error domain of a Python exception raised by a task: PyGObject only
# forwards GLib.Error from a callback, and prints and swallows the rest.
PYTHON_ERROR_DOMAIN = 'mpg-python-error-quark'

# The pid of this process if the library forked it (see _fork()).
_forked_pid = None


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass


def _fork():
    # A Python callable must never run in a child that C's fork() created:
    # the interpreter would not know it forked. os.fork() runs Python's
    # at-fork handlers and leaves the child a consistent interpreter.
    global _forked_pid

    # As multiprocessing: what the parent printed must not be printed again
    # by the child, which inherits a copy of the buffers.
    _flush_std_streams()
    try:
        pid = os.fork()
    except OSError:
        return -1
    if pid == 0:
        _forked_pid = os.getpid()
        # The library forks on a thread of its own unless start() was called
        # on the main thread. There this callback runs in a thread state
        # that PyGILState_Ensure() made and that is deleted when it returns;
        # in the child it is the only one left, and CPython (3.11) then
        # aborts in the next callback ("init_threadstate: thread state
        # already initialized"). Keep it for the child's lifetime.
        ctypes.pythonapi.PyGILState_Ensure()
        # The child leaves with _exit(): make sure what it prints is not
        # lost in a buffer.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
    return pid


Mpg.set_fork_func(_fork)


def _exit_child(code):
    # What the library does when a child's run() returns, for a child that
    # leaves with sys.exit(code): daemon children are terminated, the
    # others waited for; then _exit(), as Python's own children do.
    children = Mpg.active_children()
    for child in children:
        if child.props.daemon:
            child.terminate()
    for child in children:
        child.join(-1)
    _flush_std_streams()
    os._exit(code)


def _call_task(func, *args):
    # Runs a task and turns what Python raises into what multiprocessing's
    # child does: exit code 1 for an exception (here a GLib.Error carrying
    # the traceback, which the parent receives), the given code for
    # sys.exit().
    try:
        return func(*args)
    except GLib.Error:
        raise
    except SystemExit as e:
        if _forked_pid != os.getpid():
            raise
        if e.code is None or e.code == 0:
            return None
        if isinstance(e.code, int):
            _exit_child(e.code)
        raise GLib.Error(str(e.code), PYTHON_ERROR_DOMAIN, 0) from None
    except BaseException as e:
        # Skip this function's frame: the traceback starts in the task.
        tb = traceback.format_exception(type(e), e, e.__traceback__.tb_next)
        raise GLib.Error(''.join(tb).rstrip('\n'), PYTHON_ERROR_DOMAIN, 0) from None


def _wrap_task(func):
    if func is None:
        return None

    def task(*args):
        return _call_task(func, *args)

    return task


class Process(Mpg.Process):
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get('do_run')
        if run is not None:
            def do_run(self):
                return _call_task(run, self)

            do_run.__name__ = run.__name__
            do_run.__doc__ = run.__doc__
            cls.do_run = do_run

    @classmethod
    def new(cls, args=None, target=None, *user_data):
        return Mpg.Process.new(args, _wrap_task(target), *user_data)

    def set_target(self, target=None, *user_data):
        Mpg.Process.set_target(self, _wrap_task(target), *user_data)


Process = override(Process)
__all__.append('Process')


def _wait_interruptibly(start, finish, cancellable):
    # Runs an async call in a private main context and waits for it in
    # slices, so that Python can run its signal handlers in between.
    context = GLib.MainContext.new()
    context.push_thread_default()
    try:
        own = Gio.Cancellable()
        if cancellable is not None:
            cancellable.connect(own.cancel)
        results = []
        ticker = GLib.timeout_source_new(50)
        ticker.set_callback(lambda *args: GLib.SOURCE_CONTINUE)
        ticker.attach(context)
        try:
            start(own, lambda source, res, *args: results.append(res))
            try:
                while not results:
                    context.iteration(True)
            except BaseException:
                own.cancel()
                while not results:
                    context.iteration(True)
                raise
        finally:
            ticker.destroy()
        return finish(results[0])
    finally:
        context.pop_thread_default()


class Pool(Mpg.Pool):
    # The tasks run in forked workers: what they raise must reach the
    # parent as a GLib.Error, like a failed Process target.

    @classmethod
    def new_full(cls, processes, initializer, initargs, maxtasksperchild):
        # Python closures carry their data: no user data argument here.
        return Mpg.Pool.new_full(processes, _wrap_task(initializer), None,
                                 initargs, maxtasksperchild)

    def add_function(self, func, *user_data):
        return Mpg.Pool.add_function(self, _wrap_task(func), *user_data)

    # The blocking calls wait in Python, so that Ctrl-C raises
    # KeyboardInterrupt at once (and cancels the call) instead of after
    # the call returns, as a blocking C call would.

    def apply(self, function, arg, cancellable=None):
        return _wait_interruptibly(
            lambda c, cb: Mpg.Pool.apply_async(self, function, arg, c, cb),
            lambda res: Mpg.Pool.apply_finish(self, res), cancellable)

    def map(self, function, items, chunksize=0, cancellable=None):
        return _wait_interruptibly(
            lambda c, cb: Mpg.Pool.map_async(self, function, items, chunksize, c, cb),
            lambda res: Mpg.Pool.map_finish(self, res), cancellable)

    def starmap(self, function, items, chunksize=0, cancellable=None):
        return _wait_interruptibly(
            lambda c, cb: Mpg.Pool.starmap_async(self, function, items, chunksize, c, cb),
            lambda res: Mpg.Pool.starmap_finish(self, res), cancellable)


Pool = override(Pool)
__all__.append('Pool')
