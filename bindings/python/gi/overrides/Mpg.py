# Mpg.py: PyGObject override for libmpg
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

"""libmpg for Python: multiprocessing's names and semantics on GObject.

`from gi.repository import Mpg` gives two layers over the same objects:

* The **GLib layer** (the introspected API): GVariant values, timeouts in
  milliseconds, GLib.Error, GCancellable, the main loop. Objects made by
  the C constructors `Mpg.Process.new()`, `Mpg.Queue.new()`,
  `Mpg.Queue.new_joinable()`, `Mpg.Pool.new()`, `Mpg.Pool.new_full()`,
  `Mpg.pipe_new()`, `Mpg.Lock.new()` and the other primitives' `new()`
  (and `GObject.new()`) speak it.
* The **multiprocessing layer**: Python values, timeouts in seconds,
  Python exceptions. Objects made the way multiprocessing makes them,
  `Mpg.Process(target=…, args=(…))` (or a subclass overriding `run()`),
  `Mpg.Queue()`, `Mpg.SimpleQueue()`, `Mpg.JoinableQueue()`, `Mpg.Pipe()`,
  `Mpg.Pool(…)`, `Mpg.Lock()`, `Mpg.RLock()`, `Mpg.Semaphore()`,
  `Mpg.BoundedSemaphore()`, `Mpg.Event()`, `Mpg.Condition()`,
  `Mpg.Barrier(…)`, `Mpg.Value(…)`, `Mpg.Array(…)`, `Mpg.RawValue(…)`,
  `Mpg.RawArray(…)`, `Mpg.SharedMemory(create=True, size=…)`, speak it.

Where the two layers spell a method the same way with different meanings
(`join(5)`: 5 ms or 5 s?), the object follows the layer it was made by.
Where the arguments tell them apart, both work on every object: a Pool
method given a Python callable is multiprocessing's, given a function id
(from `add_function()`) it is the GLib one; `join()` without arguments is
multiprocessing's. Attributes that the GLib layer has no use for (`pid`,
`name`, `daemon`, `exitcode`, `closed`, …) exist on every object.

Values cross as GVariants; see `to_variant()` for the encoding.
"""

import array
import builtins
import collections
import ctypes
import errno
import importlib
import importlib.util
import itertools
import json
import math
import mmap
import os
import queue as _queue
import select
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref

from gi.repository import Gio, GLib, GObject

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


def _is_mpg_error(error, code):
    return (isinstance(error, GLib.Error) and error.domain == 'mpg-error-quark'
            and error.code == int(code))


# How long a blocking call of the multiprocessing layer waits in C at a
# time: between two slices Python runs its signal handlers, so that Ctrl-C
# raises KeyboardInterrupt within this delay.
_SLICE_S = 0.1


class _Deadline:
    def __init__(self, timeout):
        self.end = None if timeout is None else time.monotonic() + max(timeout, 0)

    def slice_ms(self):
        """Milliseconds to wait in the next slice; 0 once expired."""
        if self.end is None:
            return int(_SLICE_S * 1000)
        left = self.end - time.monotonic()
        return max(0, int(min(left, _SLICE_S) * 1000 + 0.999))

    def expired(self):
        return self.end is not None and time.monotonic() >= self.end


_SLICE_MS = int(_SLICE_S * 1000)


def _reraise_interrupt(e):
    # See _sliced().
    if str(e) == 'Converting the GError failed':
        raise KeyboardInterrupt from None
    raise e


def _sliced(func, *args):
    # A slice of a blocking C call. When Ctrl-C comes while PyGObject turns
    # the slice's timeout GError into an exception, the KeyboardInterrupt
    # is raised in that conversion and PyGObject reports a RuntimeError
    # instead (after printing it): raise the KeyboardInterrupt. (Waits that
    # have a file descriptor, as a process's sentinel, select() on it
    # instead, and never get there.)
    try:
        return func(*args)
    except RuntimeError as e:
        # PyGObject has printed the KeyboardInterrupt and dropped it.
        if str(e) == 'Converting the GError failed':
            raise KeyboardInterrupt from None
        raise


# ---------------------------------------------------------------------------
# Values: Python <-> GVariant

_INT64_MIN = -2 ** 63
_INT64_MAX = 2 ** 63 - 1
# GVariant nests 128 levels at most; each Python container takes two (the
# container and the 'v' boxing each element).
_MAX_DEPTH = 60
_TAG_PREFIX = 'mpg:'
_T_V = GLib.VariantType.new('v')
_T_SV = GLib.VariantType.new('{sv}')
_T_AY = GLib.VariantType.new('ay')
_FIXED_ARRAYS = {
    # type string: (array typecode, element type)
    'ax': ('q', int), 'ad': ('d', float),
    'ai': ('i', None), 'au': ('I', None), 'at': ('Q', None),
    'an': ('h', None), 'aq': ('H', None),
}
_FAST_LISTS = {int: 'ax', float: 'ad'}
_FAST_ELEMENTS = (int, float, bool, str)
_FAST_TYPES = {k: GLib.VariantType.new(k) for k in ('ax', 'ad', 'ab')}

_SENDABLE = ('None, bool, int (64-bit), float, str, bytes, list, tuple, '
             'dict with str keys, nested')


def _describe(value):
    try:
        text = repr(value)
    except Exception:  # noqa: B902
        text = object.__repr__(value)
    if len(text) > 80:
        text = text[:77] + '...'
    return '%s (of type %s)' % (text, type(value).__qualname__)


def _cannot_send(value, where, why=None):
    return TypeError('cannot send %s at %s to another process: %s' % (
        _describe(value), where, why or 'libmpg sends ' + _SENDABLE + ' values'))


def _tagged(tag, payload):
    return GLib.Variant.new_tuple(GLib.Variant.new_string(_TAG_PREFIX + tag),
                                  GLib.Variant.new_variant(payload))


def _encode_str(value):
    if '\0' not in value:
        try:
            return GLib.Variant.new_string(value)
        except UnicodeError:
            pass
    # GVariant strings are NUL-free UTF-8: carry the others as bytes.
    data = value.encode('utf-8', 'surrogatepass')
    return _tagged('str', GLib.Variant.new_from_bytes(_T_AY, GLib.Bytes.new(data), True))


def _fast_array(value):
    # A non-empty list of only ints (64-bit), floats, bools or plain strs
    # as one ax, ad, ab or as, built at once; None for any other list.
    t = type(value[0])
    if t not in _FAST_ELEMENTS:
        return None
    types = set(map(type, value))
    if len(types) != 1:
        return None
    fast = _FAST_LISTS.get(t)
    if fast is not None:
        try:
            data = array.array(_FIXED_ARRAYS[fast][0], value).tobytes()
        except OverflowError:
            return None
        return GLib.Variant.new_from_bytes(_FAST_TYPES[fast], GLib.Bytes.new(data), True)
    if t is bool:
        return GLib.Variant.new_from_bytes(_FAST_TYPES['ab'], GLib.Bytes.new(bytes(value)), True)
    if '\0' not in ''.join(value):
        try:
            return GLib.Variant.new_strv(value)
        except UnicodeError:
            pass
    return None


def _encode_list(value, where, depth):
    if value:
        fast = _fast_array(value)
        if fast is not None:
            return fast
    return GLib.Variant.new_array(_T_V, [
        GLib.Variant.new_variant(_encode(x, '%s[%d]' % (where, i), depth))
        for i, x in enumerate(value)])


def _encode(value, where, depth):
    if value is None:
        return GLib.Variant.new_maybe(_T_V, None)
    t = type(value)
    if t is bool:
        return GLib.Variant.new_boolean(value)
    if t is int or (isinstance(value, int) and not isinstance(value, bool)):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _cannot_send(value, where, 'an int must fit in 64 bits')
        return GLib.Variant.new_int64(int(value))
    if isinstance(value, float):
        return GLib.Variant.new_double(float(value))
    if isinstance(value, str):
        return _encode_str(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return GLib.Variant.new_from_bytes(_T_AY, GLib.Bytes.new(bytes(value)), True)
    if isinstance(value, GLib.Variant):
        return value
    depth += 1
    if depth > _MAX_DEPTH:
        raise _cannot_send(value, where, 'values nest %d levels at most' % _MAX_DEPTH)
    if isinstance(value, list):
        return _encode_list(value, where, depth)
    if isinstance(value, tuple):
        return GLib.Variant.new_tuple(*[
            GLib.Variant.new_variant(_encode(x, '%s[%d]' % (where, i), depth))
            for i, x in enumerate(value)])
    if isinstance(value, dict):
        entries = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise _cannot_send(k, '%s (a key)' % where, 'dict keys must be str')
            if '\0' in k:
                raise _cannot_send(k, '%s (a key)' % where, 'dict keys cannot contain NUL')
            try:
                key = GLib.Variant.new_string(k)
            except UnicodeError:
                raise _cannot_send(k, '%s (a key)' % where, 'dict keys must be valid UTF-8') from None
            entries.append(GLib.Variant.new_dict_entry(
                key, GLib.Variant.new_variant(_encode(v, '%s[%r]' % (where, k), depth))))
        return GLib.Variant.new_array(_T_SV, entries)
    reduce = _reducer(type(value))
    if reduce is not None:
        return reduce(value, where)
    raise _cannot_send(value, where)


def to_variant(value, where='value'):
    """Converts a Python value to the GVariant that libmpg sends.

    The encoding is self-describing: the GVariant type alone tells which
    Python type comes back, so that a round trip keeps value and type.

    ====================  ==========================================
    Python                GVariant
    ====================  ==========================================
    None                  ``mv`` (nothing)
    bool                  ``b``
    int (64-bit)          ``x``
    float                 ``d``
    str                   ``s``; one holding NUL or lone surrogates
                          is tagged: ``('mpg:str', <ay UTF-8>)``
    bytes                 ``ay`` (bytearray and memoryview too)
    list                  ``av``; a list of only ints, floats, bools or
                          strs is the faster ``ax``, ``ad``, ``ab``, ``as``
    tuple                 ``(v…)``, one ``v`` per element; ``()`` empty
    dict with str keys    ``a{sv}``
    GLib.Variant          itself, as is
    ====================  ==========================================

    Tagged values are ``(sv)`` pairs whose string starts with ``mpg:``;
    libmpg uses them for calls (``mpg:call``) and for exceptions
    (``mpg:exc``) too, and for the objects that travel as a handle and
    their file descriptors (queues, pipe ends, the synchronization
    primitives, shared memory, shared ctypes objects: ``mpg:queue``,
    ``mpg:lock``…) where the sender carries descriptors (a Process's
    arguments with spawn and forkserver, a Pool's initargs, Queue.put(),
    Connection.send()). Subclasses of these types (an IntEnum, a
    namedtuple…) arrive as their base type. Anything else raises
    TypeError naming the value and where it is, before anything is sent.
    """
    return _encode(value, where, 0)


def _decode_fixed(variant, typecode):
    a = array.array(typecode)
    a.frombytes(variant.get_data_as_bytes().get_data())
    return a.tolist()


def _decode_tagged(variant):
    tag = variant.get_child_value(0).get_string()
    payload = variant.get_child_value(1).get_variant()
    if tag == _TAG_PREFIX + 'str':
        return bytes(payload.get_data_as_bytes().get_data()).decode('utf-8', 'surrogatepass')
    if tag == _TAG_PREFIX + 'exc':
        return _Failure(from_variant(payload))
    if tag == _TAG_PREFIX + 'call':
        return from_variant(payload)
    rebuild = _REBUILDERS.get(tag)
    if rebuild is not None:
        return rebuild(payload)
    return (tag, from_variant(payload))


def from_variant(variant):
    """Converts a GVariant to a Python value: the inverse of to_variant().

    Any GVariant can be converted: integers of every size become int,
    'o' and 'g' strings str, 'h' handles int, maybes None or their value,
    arrays lists, dictionaries dicts, tuples tuples, variants their
    content.
    """
    ts = variant.get_type_string()
    c = ts[0]
    if c == 'x':
        return variant.get_int64()
    if c == 's':
        return variant.get_string()
    if c == 'b':
        return variant.get_boolean()
    if c == 'd':
        return variant.get_double()
    if c == 'v':
        return from_variant(variant.get_variant())
    if c == 'm':
        return from_variant(variant.get_child_value(0)) if variant.n_children() else None
    if c == 'a':
        if ts == 'ay':
            return bytes(variant.get_data_as_bytes().get_data())
        fixed = _FIXED_ARRAYS.get(ts)
        if fixed is not None:
            return _decode_fixed(variant, fixed[0])
        if ts == 'as':
            return variant.get_strv()
        if ts == 'ab':
            return [b != 0 for b in variant.get_data_as_bytes().get_data()]
        n = variant.n_children()
        get = variant.get_child_value
        if ts[1] == '{':
            result = {}
            for i in range(n):
                entry = get(i)
                result[from_variant(entry.get_child_value(0))] = \
                    from_variant(entry.get_child_value(1))
            return result
        return [from_variant(get(i)) for i in range(n)]
    if c == '(':
        if ts == '(sv)' and variant.get_child_value(0).get_string().startswith(_TAG_PREFIX):
            return _decode_tagged(variant)
        return tuple(from_variant(variant.get_child_value(i))
                     for i in range(variant.n_children()))
    if c == '{':
        return (from_variant(variant.get_child_value(0)), from_variant(variant.get_child_value(1)))
    return variant.unpack()


__all__ += ['to_variant', 'from_variant']


# ---------------------------------------------------------------------------
# Objects that travel as a handle and their file descriptors
#
# Queues, pipe ends, locks and the other synchronization primitives, shared
# memory and shared ctypes objects live in several processes at once. With
# fork a child simply has them; to reach a process that exists already or
# that runs a new program, they travel as multiprocessing's reduction makes
# them travel: a handle (their to_handle(), whose `h` values index a list of
# file descriptors) tagged ('mpg:<kind>', <handle>), and the descriptors
# themselves beside the message. A sender that can carry descriptors gives
# _reduction.fd_list a place for them while it encodes: the arguments of a
# Process and the initargs of a pool with spawn and forkserver, Queue.put()
# and Connection.send(). The receiver gives the list that came with the
# message as _reduction.fd_source while it decodes. Elsewhere (a pool
# task's arguments or result) such an object cannot be sent.

class _Reduction(threading.local):
    fd_list = None      # the sender's Gio.UnixFDList, _LAZY or None
    fd_source = None    # the receiver's Gio.UnixFDList or None


_reduction = _Reduction()
# A sender that makes its fd list on first use (most messages carry none).
_LAZY = object()

# type -> reduce(value, where): the GVariant of an object of that type
# (subclasses included), see _register_handle_type().
_REDUCERS = {}
# tag -> rebuild(payload): the object again.
_REBUILDERS = {}


def _reducer(t):
    for cls in t.__mro__:
        reduce = _REDUCERS.get(cls)
        if reduce is not None:
            return reduce
    return None


def _out_fd_list(value, where, what):
    """The list that the descriptors of value go to, where it is sent."""
    fds = _reduction.fd_list
    if fds is None:
        raise _cannot_send(value, where, (
            '%s can be sent only as an argument of a Process, in the initargs of a Pool, or '
            'with Queue.put() or Connection.send(), where it travels as a handle and its file '
            'descriptors (children started with fork have it already)') % what)
    if fds is _LAZY:
        fds = _reduction.fd_list = Gio.UnixFDList.new()
    return fds


def _in_fd_list(what):
    fds = _reduction.fd_source
    if fds is None:
        raise ValueError('received %s without its file descriptors' % what)
    return fds


def _register_handle_type(cls, kind, what, to_handle, from_handle, check=None):
    """Lets objects of cls travel as ('mpg:<kind>', to_handle(obj, fd_list))
    and come back as from_handle(payload, fd_list). check(obj), if given,
    returns why obj cannot be sent, or None."""
    tag = _TAG_PREFIX + kind

    def reduce(value, where):
        if check is not None:
            why = check(value)
            if why is not None:
                raise _cannot_send(value, where, why)
        return _tagged(kind, to_handle(value, _out_fd_list(value, where, what)))

    def rebuild(payload):
        return from_handle(payload, _in_fd_list(what))

    _REDUCERS[cls] = reduce
    _REBUILDERS[tag] = rebuild


def _mp_object(obj):
    # An object of the C layer, rebuilt from a handle: it follows the
    # multiprocessing layer, as the object it was made from.
    obj._mpg_mp = True
    return obj


def _register_gobject_type(cls, kind, what):
    """_register_handle_type() for a class with to_handle() and
    new_from_handle() (the GLib layer's)."""
    _register_handle_type(cls, kind, what, cls.to_handle,
                          lambda handle, fds: _mp_object(cls.new_from_handle(handle, fds)))


def _encode_with_fds(obj, where):
    """obj as a GVariant, and the Gio.UnixFDList of the descriptors of the
    objects in it that travel as handles (None when there are none)."""
    saved = _reduction.fd_list
    _reduction.fd_list = _LAZY
    try:
        value = _encode(obj, where, 0)
        fds = _reduction.fd_list
    finally:
        _reduction.fd_list = saved
    return value, (None if fds is _LAZY else fds)


def _decode_with_fds(variant, fds):
    """from_variant() of a message that came with the descriptors fds."""
    if fds is None:
        return from_variant(variant)
    saved = _reduction.fd_source
    _reduction.fd_source = fds
    try:
        return from_variant(variant)
    finally:
        _reduction.fd_source = saved


# ---------------------------------------------------------------------------
# Exceptions

import multiprocessing as _mp  # noqa: E402  (its exception classes only)

ProcessError = _mp.ProcessError
BufferTooShort = _mp.BufferTooShort
AuthenticationError = _mp.AuthenticationError


class TimeoutError(_mp.TimeoutError, builtins.TimeoutError):
    """A wait that timed out: multiprocessing.TimeoutError, and the
    built-in TimeoutError (that of concurrent.futures) as well."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in another process: the
    __cause__ of the exception raised again in this one."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return '\n"""\n%s"""' % self.tb


class RemoteError(ProcessError):
    """An exception of a type that is not built in, raised by a task in
    another process. `type_name` is its type's module and qualified name
    (`mymodule.MyError`), `message` its str(), `traceback` the remote
    traceback's text (also the __cause__, a RemoteTraceback)."""

    def __init__(self, type_name, message, traceback_text=''):
        super().__init__(type_name, message, traceback_text)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback_text

    def __str__(self):
        return '%s: %s' % (self.type_name, self.message) if self.message else self.type_name


__all__ += ['ProcessError', 'BufferTooShort', 'AuthenticationError', 'TimeoutError',
            'RemoteTraceback', 'RemoteError']


def _exception_to_variant(e, tb_skip=1):
    tb = e.__traceback__
    for _ in range(tb_skip):
        if tb is not None:
            tb = tb.tb_next
    text = ''.join(traceback.format_exception(type(e), e, tb))
    t = type(e)
    info = {'module': t.__module__, 'qualname': t.__qualname__,
            'message': str(e), 'traceback': text}
    # The arguments that rebuild it, as pickle finds them (an OSError's
    # include its filename, which its args do not).
    args = e.args
    try:
        reduced = e.__reduce__()
        if reduced[0] is t:
            args = reduced[1]
    except Exception:  # noqa: B902
        pass
    try:
        info['args'] = to_variant(tuple(args))
    except TypeError:
        pass
    return _tagged('exc', to_variant(info))


class _Failure:
    """An exception that came from another process, not raised yet."""

    __slots__ = ('info',)

    def __init__(self, info):
        self.info = info

    def exception(self):
        info = self.info
        module, qualname = info.get('module'), info.get('qualname', '?')
        message, tb = info.get('message', ''), info.get('traceback', '')
        cls = getattr(builtins, qualname, None) if module == 'builtins' else None
        exc = None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            args = info.get('args')
            for attempt in ((args,) if isinstance(args, tuple) else ()) + ((message,),):
                try:
                    exc = cls(*attempt)
                    break
                except Exception:  # noqa: B902
                    pass
        if exc is None:
            name = qualname if module in (None, 'builtins') else '%s.%s' % (module, qualname)
            exc = RemoteError(name, message, tb)
        exc.__cause__ = RemoteTraceback(tb)
        return exc


def _check_failures(values):
    for v in values:
        if type(v) is _Failure:
            raise v.exception()
    return values


def _decode_result(variant):
    value = from_variant(variant)
    if type(value) is _Failure:
        raise value.exception()
    return value


def _decode_results(variant):
    values = from_variant(variant)
    ts = variant.get_type_string()
    if ts in ('av', 'a(sv)'):
        _check_failures(values)
    return values


# ---------------------------------------------------------------------------
# The result handler: a thread of this module that runs a main loop, in
# which the asynchronous calls of the multiprocessing layer (apply_async,
# map_async, the executor's futures) complete and run their callbacks, as
# multiprocessing's result-handler thread does. It is made on first use,
# and again in a forked child, where the parent's thread does not exist.

class _Handler:
    def __init__(self):
        self.context = GLib.MainContext.new()
        self.loop = GLib.MainLoop.new(self.context, False)
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,),
                                       name='mpg-result-handler', daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready):
        self.context.push_thread_default()
        ready.set()
        self.loop.run()

    def call(self, func):
        """Runs func() in the handler's thread and returns what it returns."""
        if threading.current_thread() is self.thread:
            return func()
        done = threading.Event()
        outcome = []

        def dispatch(*args):
            try:
                outcome.append((True, func()))
            except BaseException as e:  # noqa: B902
                outcome.append((False, e))
            done.set()
            return GLib.SOURCE_REMOVE

        source = GLib.idle_source_new()
        source.set_callback(dispatch)
        source.attach(self.context)
        while not done.wait(_SLICE_S):
            pass
        ok, value = outcome[0]
        if not ok:
            raise value
        return value


_handler = None
_handler_lock = threading.Lock()


def _get_handler():
    global _handler
    with _handler_lock:
        if _handler is None:
            _handler = _Handler()
        return _handler


def _after_fork_in_child():
    global _handler, _handler_lock, _sigint_watch
    _handler = None
    _handler_lock = threading.Lock()
    if _sigint_watch is not None:
        _sigint_watch.close_in_child()
        _sigint_watch = None

os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------------
# Processes

_GIProcess = Mpg.Process
_EXITCODE_NONE = -2147483648
_START_METHODS = {'fork': Mpg.StartMethod.FORK, 'spawn': Mpg.StartMethod.SPAWN,
                  'forkserver': Mpg.StartMethod.FORKSERVER}


def _start_method_not_implemented(method):
    # multiprocessing raises ValueError for an unknown method name.
    return ValueError('cannot find context for %r: the start methods are %s'
                      % (method, ', '.join(repr(m) for m in _START_METHODS)))


def _mp_process_main(args):
    # The target of a process of the multiprocessing layer: run() of the
    # process object, which in the child is the current process.
    Mpg.current_process().run()
    return None


def _process_error(e):
    # A GLib.Error of the C layer, as multiprocessing would raise it.
    if _is_mpg_error(e, Mpg.Error.CLOSED):
        return ValueError('process object is closed')
    if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
        return AssertionError(e.message)
    return e


class Process(Mpg.Process):
    """multiprocessing.Process, and the GLib layer's Mpg.Process.

    Process(group=None, target=None, name=None, args=(), kwargs={}, *,
    daemon=None) runs target(*args, **kwargs) in a forked child. The
    target, args and kwargs are not converted: the child inherits them.
    A subclass may override run(). join(timeout) is in seconds and
    returns None; exitcode is None until the child has ended.

    Objects made by Mpg.Process.new(), by Mpg.Process(args=<GLib.Variant>)
    or of a subclass overriding do_run() follow the GLib layer: join() in
    milliseconds raising MPG_ERROR_TIMEOUT, run() returning a GVariant.
    """

    _mpg_mp = False

    # None: the class itself; 'gi': a subclass overriding do_run(); 'mp': a
    # subclass overriding run().
    _mpg_style = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get('do_run')
        if run is not None:
            def do_run(self):
                return _call_task(run, self)

            do_run.__name__ = run.__name__
            do_run.__doc__ = run.__doc__
            cls.do_run = do_run
            cls._mpg_style = 'gi'
        elif 'run' in cls.__dict__ and cls._mpg_style != 'gi':
            # A multiprocessing-style subclass: the child runs its run().
            def do_run(self):
                _call_task(self.run)
                return None

            cls.do_run = do_run
            cls._mpg_style = 'mp'

    def __init__(self, group=None, target=None, name=None, args=(), kwargs=None, *,
                 daemon=None, **props):
        if name is not None:
            props['name'] = str(name)
        if daemon is not None:
            props['daemon'] = bool(daemon)
        gi_style = (isinstance(args, GLib.Variant) or args is None
                    or self._mpg_style == 'gi')
        if gi_style:
            if isinstance(args, GLib.Variant):
                props['args'] = args
            super().__init__(**props)
            if target is not None:
                self.set_target(target)
            return
        if group is not None:
            raise AssertionError('group argument must be None for now')
        if target is not None and not callable(target):
            raise TypeError('target must be callable, not %s' % type(target).__name__)
        super().__init__(**props)
        self._mpg_mp = True
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        if self._mpg_style is None:
            _GIProcess.set_target(self, _wrap_task(_mp_process_main))

    @classmethod
    def new(cls, args=None, target=None, *user_data):
        return Mpg.Process.new(args, _wrap_task(target), *user_data)

    def set_target(self, target=None, *user_data):
        Mpg.Process.set_target(self, _wrap_task(target), *user_data)

    # -- attributes, on every process object

    @property
    def pid(self):
        return self.props.pid or None

    ident = pid

    @property
    def name(self):
        return self.props.name

    @name.setter
    def name(self, value):
        self.props.name = str(value)

    @property
    def daemon(self):
        return self.props.daemon

    @daemon.setter
    def daemon(self, value):
        if self.props.pid:
            raise AssertionError('process has already started')
        self.props.daemon = bool(value)

    @property
    def exitcode(self):
        code = self.props.exitcode
        return None if code == _EXITCODE_NONE else code

    @property
    def sentinel(self):
        return self.get_sentinel()

    # -- methods whose meaning depends on the layer

    def run(self):
        """multiprocessing: calls the target in this process; the GLib
        layer: mpg_process_run(), returning the task's GVariant."""
        if not self._mpg_mp:
            return _GIProcess.run(self)
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    def start(self):
        if not self._mpg_mp:
            return _GIProcess.start(self)
        method = self.props.start_method
        if method == Mpg.StartMethod.DEFAULT:
            method = Mpg.get_start_method()
        if method in (Mpg.StartMethod.SPAWN, Mpg.StartMethod.FORKSERVER):
            self._prepare_spawn()
        elif method != Mpg.StartMethod.FORK:
            raise _start_method_not_implemented(method.value_nick)
        try:
            _GIProcess.start(self)
        except GLib.Error as e:
            raise _process_error(e) from None
        # As multiprocessing: no reference cycle through the target.
        del self._target, self._args, self._kwargs
        self._target, self._args, self._kwargs = None, (), {}

    def _prepare_spawn(self):
        # The child is a new interpreter: it gets the target by name and
        # the arguments as values (queues as handles and fds).
        if self._mpg_style == 'mp':
            raise NotImplementedError(
                'a Process subclass overriding run() needs the fork start method for now')
        _setup_spawn()
        target = self._target
        _GIProcess.set_target_name(
            self, 'process:' + _task_name(target, 'a Process target') if target is not None
            else '')
        fds = Gio.UnixFDList.new()
        _reduction.fd_list = fds
        try:
            args = _call_variant(self._args, self._kwargs, 'args')
        finally:
            _reduction.fd_list = None
        self.props.args = args.get_child_value(1).get_variant()
        _GIProcess.set_fd_list(self, fds)

    def join(self, *args, **kwargs):
        """multiprocessing: join(timeout=None), in seconds, returns None
        (check exitcode or is_alive()); the GLib layer: join(timeout_msec,
        cancellable=None)."""
        if not self._mpg_mp and (args or kwargs) and 'timeout' not in kwargs:
            return _GIProcess.join(self, *args, **kwargs)
        return self._mp_join(*args, **kwargs)

    def _mp_join(self, timeout=None):
        if self is Mpg.current_process():
            raise AssertionError('can only join a child process')
        if not self.props.pid:
            raise AssertionError('can only join a started process')
        deadline = _Deadline(timeout)
        try:
            sentinel = self.get_sentinel()
        except GLib.Error as e:
            raise _process_error(e) from None
        while True:
            if sentinel >= 0:
                # Wait on the pidfd in Python, where Ctrl-C interrupts
                # cleanly; then reap.
                ready, _, _ = select.select([sentinel], [], [], deadline.slice_ms() / 1000)
                if not ready:
                    if deadline.expired():
                        return None
                    continue
            try:
                _sliced(_GIProcess.join, self, -1 if sentinel >= 0 else deadline.slice_ms(), None)
                return None
            except GLib.Error as e:
                if not _is_mpg_error(e, Mpg.Error.TIMEOUT):
                    raise _process_error(e) from None
            if deadline.expired():
                return None

    def terminate(self):
        if not self._mpg_mp:
            return _GIProcess.terminate(self)
        try:
            _GIProcess.terminate(self)
        except GLib.Error as e:
            raise _process_error(e) from None

    def kill(self):
        if not self._mpg_mp:
            return _GIProcess.kill(self)
        try:
            _GIProcess.kill(self)
        except GLib.Error as e:
            raise _process_error(e) from None

    def close(self):
        if not self._mpg_mp:
            return _GIProcess.close(self)
        try:
            _GIProcess.close(self)
        except GLib.Error as e:
            if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
                raise ValueError('Cannot close a process while it is still running. '
                                 'You should first call join() or terminate().') from None
            raise _process_error(e) from None

    @property
    def error(self):
        """The exception that ended the child, as a GLib.Error (a Python
        exception's message is its traceback), or None: what
        multiprocessing only prints."""
        if self.exitcode is None:
            return None
        try:
            self.dup_result()
        except GLib.Error as e:
            return e
        return None

    def __repr__(self):
        if not self._mpg_mp:
            return super().__repr__()
        code = self.exitcode
        if not self.props.pid:
            status = 'initial'
        elif code is None:
            status = 'started'
        else:
            status = 'stopped exitcode=%d' % code
        return '<%s name=%r pid=%s %s%s>' % (type(self).__name__, self.name, self.pid,
                                            status, ' daemon' if self.daemon else '')


Process = override(Process)
__all__.append('Process')


# ---------------------------------------------------------------------------
# Queues

_GIQueue = Mpg.Queue


def _queue_error(e):
    if _is_mpg_error(e, Mpg.Error.CLOSED):
        return ValueError('Queue is closed')
    return e


class Queue(Mpg.Queue):
    """multiprocessing.Queue, and the GLib layer's Mpg.Queue.

    Queue(maxsize=0) is multiprocessing's: put(obj, block=True,
    timeout=None) and get(block=True, timeout=None) with Python values
    and seconds, queue.Full and queue.Empty. Queues made by
    Mpg.Queue.new(), Mpg.Queue.new_joinable() or GObject.new(Mpg.Queue,
    …) follow the GLib layer: put(variant, block, timeout_msec,
    cancellable), get(block, timeout_msec, cancellable).
    """

    _mpg_mp = False

    def __new__(cls, maxsize=0, *, ctx=None):
        q = _GIQueue.new(max(0, int(maxsize)))
        q._mpg_mp = True
        return q

    def __init__(self, *args, **kwargs):
        pass

    def put(self, obj, *args, **kwargs):
        if not self._mpg_mp:
            return _GIQueue.put(self, obj, *args, **kwargs)
        return self._mp_put(obj, *args, **kwargs)

    def _mp_put(self, obj, block=True, timeout=None):
        value, fds = _encode_with_fds(obj, 'obj')
        if fds is not None:
            return self._mp_put_with_fds(value, fds, block, timeout)
        if block and timeout is None:
            # The common case, with as little as possible around the C
            # call: a slice at a time, so that Ctrl-C is seen.
            while True:
                try:
                    _GIQueue.put(self, value, True, _SLICE_MS, None)
                    return None
                except GLib.Error as e:
                    if not _is_mpg_error(e, Mpg.Error.FULL):
                        raise _queue_error(e) from None
                except RuntimeError as e:
                    _reraise_interrupt(e)
        if not block:
            timeout = 0
        deadline = _Deadline(timeout)
        while True:
            try:
                _sliced(_GIQueue.put, self, value, True, deadline.slice_ms(), None)
                return None
            except GLib.Error as e:
                if not _is_mpg_error(e, Mpg.Error.FULL):
                    raise _queue_error(e) from None
            if not block or deadline.expired():
                raise _queue.Full

    def _mp_put_with_fds(self, value, fds, block, timeout):
        # A message with objects that travel as handles: their descriptors
        # go with it.
        deadline = _Deadline(timeout if block else 0)
        while True:
            try:
                _sliced(_GIQueue.put_with_fds, self, value, fds, True, deadline.slice_ms(), None)
                return None
            except GLib.Error as e:
                if not _is_mpg_error(e, Mpg.Error.FULL):
                    raise _queue_error(e) from None
            if not block or deadline.expired():
                raise _queue.Full

    def get(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GIQueue.get(self, *args, **kwargs)
        return self._mp_get(*args, **kwargs)

    def _mp_get(self, block=True, timeout=None):
        if block and timeout is None:
            while True:
                try:
                    return _decode_with_fds(*_GIQueue.get_with_fds(self, True, _SLICE_MS, None))
                except GLib.Error as e:
                    if not _is_mpg_error(e, Mpg.Error.EMPTY):
                        raise _queue_error(e) from None
                except RuntimeError as e:
                    _reraise_interrupt(e)
        if not block:
            timeout = 0
        deadline = _Deadline(timeout)
        while True:
            try:
                return _decode_with_fds(*_sliced(_GIQueue.get_with_fds, self, True,
                                                 deadline.slice_ms(), None))
            except GLib.Error as e:
                if not _is_mpg_error(e, Mpg.Error.EMPTY):
                    raise _queue_error(e) from None
            if not block or deadline.expired():
                raise _queue.Empty

    def put_nowait(self, obj):
        return self._mp_put(obj, False)

    def get_nowait(self):
        return self._mp_get(False)

    def task_done(self):
        if not self._mpg_mp:
            return _GIQueue.task_done(self)
        try:
            _GIQueue.task_done(self)
        except GLib.Error as e:
            if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
                raise ValueError('task_done() called too many times') from None
            raise _queue_error(e) from None

    def join(self, *args, **kwargs):
        """multiprocessing: join() waits until every item was task_done();
        the GLib layer: join(timeout_msec, cancellable)."""
        if args or kwargs:
            return _GIQueue.join(self, *args, **kwargs)
        while True:
            try:
                _sliced(_GIQueue.join, self, int(_SLICE_S * 1000), None)
                return None
            except GLib.Error as e:
                if not _is_mpg_error(e, Mpg.Error.TIMEOUT):
                    raise _queue_error(e) from None

    def join_thread(self, *args, **kwargs):
        if args or kwargs:
            return _GIQueue.join_thread(self, *args, **kwargs)
        while True:
            try:
                _sliced(_GIQueue.join_thread, self, int(_SLICE_S * 1000), None)
                return None
            except GLib.Error as e:
                if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
                    raise AssertionError(e.message) from None
                if not _is_mpg_error(e, Mpg.Error.TIMEOUT):
                    raise _queue_error(e) from None

    def __repr__(self):
        if not self._mpg_mp:
            return super().__repr__()
        return '<%s maxsize=%d%s>' % ('JoinableQueue' if self.props.joinable else 'Queue',
                                      self.props.maxsize, '')


Queue = override(Queue)
__all__.append('Queue')
_register_gobject_type(_GIQueue, 'queue', 'a queue')


def SimpleQueue(*, ctx=None):
    """multiprocessing.SimpleQueue(): an unbounded Queue (get(), put(),
    empty(), close())."""
    return Queue(0)


def JoinableQueue(maxsize=0, *, ctx=None):
    """multiprocessing.JoinableQueue(maxsize=0): a Queue with task_done()
    and join()."""
    q = _GIQueue.new_joinable(max(0, int(maxsize)))
    q._mpg_mp = True
    return q


__all__ += ['SimpleQueue', 'JoinableQueue']


# ---------------------------------------------------------------------------
# Pipes

_GIConnection = Mpg.Connection


def _connection_error(e, sending=False):
    if _is_mpg_error(e, Mpg.Error.END_OF_STREAM):
        return BrokenPipeError(e.message) if sending else EOFError()
    if _is_mpg_error(e, Mpg.Error.CLOSED):
        return OSError('handle is closed')
    if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
        return OSError(e.message)
    return e


class Connection(Mpg.Connection):
    """multiprocessing.connection.Connection, and the GLib layer's
    Mpg.Connection. Connections made by Mpg.Pipe() follow
    multiprocessing (Python values, poll() in seconds, EOFError); those
    made by Mpg.pipe_new() the GLib layer (GVariants, milliseconds)."""

    _mpg_mp = False

    @property
    def closed(self):
        return self.props.closed

    @property
    def readable(self):
        return self.props.readable

    @property
    def writable(self):
        return self.props.writable

    def fileno(self):
        if self.props.closed:
            raise OSError('handle is closed')
        return self.get_fd()

    def send(self, obj, *args, **kwargs):
        if not self._mpg_mp:
            return _GIConnection.send(self, obj, *args, **kwargs)
        value, fds = _encode_with_fds(obj, 'obj')
        try:
            if fds is None:
                _GIConnection.send(self, value, None)
            else:
                _GIConnection.send_with_fds(self, value, fds, None)
        except GLib.Error as e:
            raise _connection_error(e, True) from None

    def _wait_readable(self, timeout):
        deadline = _Deadline(timeout)
        while True:
            try:
                if _sliced(_GIConnection.poll, self, deadline.slice_ms(), None):
                    return True
            except GLib.Error as e:
                raise _connection_error(e) from None
            if deadline.expired():
                return False

    def recv(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GIConnection.recv(self, *args, **kwargs)
        try:
            # One blocking C call, which Ctrl-C cancels (see _blocking()).
            return _decode_with_fds(*_blocking(self._gi_recv))
        except GLib.Error as e:
            raise _connection_error(e) from None

    def _gi_recv(self, cancellable):
        return _GIConnection.recv_with_fds(self, cancellable)

    def poll(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GIConnection.poll(self, *args, **kwargs)
        return self._mp_poll(*args, **kwargs)

    def _mp_poll(self, timeout=0.0):
        return self._wait_readable(timeout)

    def send_bytes(self, buf, *args, **kwargs):
        if not self._mpg_mp:
            return _GIConnection.send_bytes(self, buf, *args, **kwargs)
        return self._mp_send_bytes(buf, *args, **kwargs)

    def _mp_send_bytes(self, buf, offset=0, size=None):
        m = memoryview(buf).cast('B')
        n = len(m)
        if offset < 0:
            raise ValueError('offset is negative')
        if n < offset:
            raise ValueError('buffer length < offset')
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError('size is negative')
        elif offset + size > n:
            raise ValueError('buffer length < offset + size')
        try:
            _GIConnection.send_bytes(self, GLib.Bytes.new(bytes(m[offset:offset + size])), None)
        except GLib.Error as e:
            raise _connection_error(e, True) from None

    def recv_bytes(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GIConnection.recv_bytes(self, *args, **kwargs)
        return self._mp_recv_bytes(*args, **kwargs)

    def _mp_recv_bytes(self, maxlength=None):
        if maxlength is not None and maxlength < 0:
            raise ValueError('negative maxlength')
        self._wait_readable(None)
        try:
            data = _GIConnection.recv_bytes(self, None).get_data()
        except GLib.Error as e:
            raise _connection_error(e) from None
        if maxlength is not None and len(data) > maxlength:
            raise OSError('bad message length')
        return bytes(data)

    def recv_bytes_into(self, buf, offset=0):
        m = memoryview(buf).cast('B')
        if offset < 0 or offset > len(m):
            raise ValueError('offset out of bounds' if offset >= 0 else 'negative offset')
        data = self._mp_recv_bytes()
        if len(data) > len(m) - offset:
            raise BufferTooShort(data)
        m[offset:offset + len(data)] = data
        return len(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


Connection = override(Connection)
__all__.append('Connection')
_register_gobject_type(_GIConnection, 'connection', 'a pipe end')


def Pipe(duplex=True):
    """multiprocessing.Pipe(duplex=True): a pair of connections, both ends
    read-write; with duplex=False, (reader, writer)."""
    ok, a, b = Mpg.pipe_new(bool(duplex))
    a._mpg_mp = True
    b._mpg_mp = True
    return a, b


__all__.append('Pipe')


# ---------------------------------------------------------------------------
# Pools


def _wait_in_thread(call, cancellable):
    # Runs call(c), a blocking C call, in a thread of its own while this
    # thread waits on an Event, where Python runs its signal handlers; if
    # one raises (Ctrl-C), the call is cancelled through c.
    own = Gio.Cancellable()
    if cancellable is not None:
        cancellable.connect(own.cancel)
    done = threading.Event()
    box = {}

    def run():
        try:
            box['value'] = call(own)
        except BaseException as e:  # noqa: B902
            box['error'] = e
        finally:
            done.set()

    threading.Thread(target=run, name='mpg-wait', daemon=True).start()
    try:
        while not done.wait(_SLICE_S):
            pass
    except BaseException:
        own.cancel()
        done.wait()
        raise
    if 'error' in box:
        raise box['error']
    return box['value']


class _SigintWatch:
    """Cancels the main thread's blocking call when Ctrl-C comes.

    Python runs its signal handlers in the main thread between two
    bytecodes, never while that thread waits in C. But its C-level handler
    writes the signal's number to the wakeup fd (signal.set_wakeup_fd()),
    which a thread of this module reads: it cancels the GCancellable of the
    call, which then returns at once, and the KeyboardInterrupt is raised
    as soon as the main thread is back in Python."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.cancellable = Gio.Cancellable()
        self.dirty = False          # cancellable may be cancelled
        self.current = None
        self.thread = threading.Thread(target=self._run, name='mpg-sigint', daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = os.read(self.read_fd, 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGINT in data:
                current = self.current
                if current is not None:
                    self.dirty = True
                    current.cancel()

    def close_in_child(self):
        # In a forked child, where the thread does not exist (and the fork
        # may have come while the main thread waited, the fd set).
        try:
            old = signal.set_wakeup_fd(-1)
            if old not in (-1, self.write_fd):
                signal.set_wakeup_fd(old)
        except ValueError:
            pass
        os.close(self.read_fd)
        os.close(self.write_fd)


_sigint_watch = None
try:
    # Without signal.getsignal()'s conversion to an enum.
    from _signal import getsignal as _getsignal
except ImportError:
    _getsignal = signal.getsignal


def _blocking(call, cancellable=None):
    """Runs call(c), a blocking C call that returns at once, failing with
    G_IO_ERROR_CANCELLED, when the GCancellable c is cancelled, so that
    Ctrl-C raises KeyboardInterrupt (and cancels the call) while it waits.
    cancellable, if given, cancels it too.

    In the main thread with Python's own SIGINT handler, call runs right
    here (PyGObject lets other threads run meanwhile) and _SigintWatch
    cancels it on Ctrl-C. With another handler (which may not raise), the
    call runs in a thread of its own while this one waits, as any Python
    code does. Other threads get no KeyboardInterrupt: call runs as is."""
    global _sigint_watch
    if threading.current_thread() is not threading.main_thread():
        return call(cancellable)
    if _getsignal(signal.SIGINT) is not signal.default_int_handler:
        return _wait_in_thread(call, cancellable)
    watch = _sigint_watch
    if watch is None:
        watch = _sigint_watch = _SigintWatch()
    if watch.dirty:
        watch.cancellable = Gio.Cancellable()
        watch.dirty = False
    own = watch.cancellable
    linked = 0
    mine = False
    try:
        if cancellable is not None:
            watch.dirty = True
            linked = cancellable.connect(own.cancel)
        mine = True
        old = signal.set_wakeup_fd(watch.write_fd)
        if old != -1:
            # The wakeup fd is someone else's: leave it alone.
            mine = False
            signal.set_wakeup_fd(old)
            return _wait_in_thread(call, cancellable)
        watch.current = own
        try:
            return call(own)
        except GLib.Error as e:
            error = e
        except RuntimeError as e:
            # Ctrl-C while PyGObject made the GError an exception: it
            # printed the KeyboardInterrupt and raised this instead.
            if str(e) != 'Converting the GError failed':
                raise
            raise KeyboardInterrupt from None
    finally:
        watch.current = None
        if mine:
            signal.set_wakeup_fd(-1)
        if linked:
            cancellable.disconnect(linked)
    # Outside the except clause: the pending KeyboardInterrupt, raised by
    # the next call, does not come with the GError as its context.
    if own.is_cancelled() and (cancellable is None or not cancellable.is_cancelled()):
        raise KeyboardInterrupt
    raise error


_GIPool = Mpg.Pool
# Python callables whose C function id a pool keeps (its workers stay
# warm for them); the least recently used beyond this are removed.
_MAX_FUNCTIONS = 256
_functions_lock = threading.RLock()


def _pool_error(e):
    # A GLib.Error of the pool, as multiprocessing would raise it.
    if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
        return ValueError(e.message)
    if _is_mpg_error(e, Mpg.Error.TIMEOUT):
        return TimeoutError(e.message)
    return e


def _call_variant(args, kwargs, where):
    """A call's arguments: the tagged value ('mpg:call', <(args, kwargs)>)."""
    return _tagged('call', GLib.Variant.new_tuple(
        GLib.Variant.new_variant(to_variant(tuple(args), where)),
        GLib.Variant.new_variant(to_variant(dict(kwargs or {}), 'kwds'))))


def _call_args(args, kwargs):
    """What the call function of a callable (see Pool._mpg_function())
    gets for func(*args, **kwargs): the arguments as a list (an ax for ints
    only...), a lone int, float or bool as itself, or the call envelope
    when there are keyword arguments."""
    if kwargs:
        return _call_variant(args, kwargs, 'args')
    if len(args) == 1 and type(args[0]) in _SCALARS:
        # A lone number or bool: itself (no array to build and read).
        return _encode(args[0], 'args[0]', 1)
    return _encode_list(list(args), 'args', 1)


_SCALARS = (int, float, bool)


def _make_call_task(func):
    # The function that a worker runs for one call of a Python callable
    # (apply, apply_async, an executor's submit): its argument is the list
    # of positional arguments, or a call envelope. What func raises comes
    # back as a value, ('mpg:exc', <info>), that the parent raises again.
    def task(arg):
        try:
            c = arg.get_type_string()[0]
            if c == 'a':
                result = func(*from_variant(arg))
            elif c != '(':
                result = func(from_variant(arg))
            else:
                args, kwargs = from_variant(arg.get_child_value(1).get_variant())
                result = func(*args, **kwargs)
            return to_variant(result, 'the result')
        except Exception as e:  # noqa: B902
            return _exception_to_variant(e)

    return task


def _is_call(variant):
    return (variant is not None and variant.get_type_string() == '(sv)'
            and variant.get_child_value(0).get_string() == _TAG_PREFIX + 'call')


def _make_pool_task(func):
    # The function that a worker runs for a Python callable: a call
    # envelope is func(*args, **kwargs), any other value func(value). What
    # func raises comes back as a value, ('mpg:exc', <info>), that the
    # parent raises again.
    def task(arg):
        try:
            if _is_call(arg):
                args, kwargs = from_variant(arg.get_child_value(1).get_variant())
                result = func(*args, **kwargs)
            else:
                result = func(from_variant(arg) if arg is not None else None)
            return to_variant(result, 'the result')
        except Exception as e:  # noqa: B902
            return _exception_to_variant(e)

    return task


class _Args:
    """The arguments of one call (a call envelope's content) in a chunk."""

    __slots__ = ('args', 'kwargs')

    def __init__(self, args, kwargs):
        self.args = args
        self.kwargs = kwargs


def _decode_boxed_item(variant):
    # An item of an av or a(sv) chunk: a call envelope becomes _Args, any
    # other value its Python value.
    if variant.get_type_string() == '(sv)':
        tag = variant.get_child_value(0).get_string()
        if tag == _TAG_PREFIX + 'call':
            return _Args(*from_variant(variant.get_child_value(1).get_variant()))
    return from_variant(variant)


def _decode_chunk(items):
    """The items of a chunk as a list, and how to call the function on
    them: 'map' (func(item)), 'star' (they are the tuples of positional
    arguments of calls) or 'calls' (some are _Args)."""
    ts = items.get_type_string()
    if ts == 'av':
        get = items.get_child_value
        values = [_decode_boxed_item(get(i).get_variant()) for i in range(items.n_children())]
    elif ts == 'a(sv)':
        get = items.get_child_value
        values = [_decode_boxed_item(get(i)) for i in range(items.n_children())]
    else:
        fixed = _FIXED_ARRAYS.get(ts)
        if fixed is not None:
            # Iterated as is: no list of the items.
            values = array.array(fixed[0])
            values.frombytes(items.get_data_as_bytes().get_data())
            return values, 'map'
        return from_variant(items), 'map'
    if not any(type(v) is _Args for v in values):
        return values, 'map'
    if all(type(v) is _Args and not v.kwargs for v in values):
        return [v.args for v in values], 'star'
    return values, 'calls'


def _encode_chunk_results(results, failures):
    # One array for the results of a chunk, where a failed item (or a
    # result that cannot be sent) is its ('mpg:exc', <info>) value: built
    # at once for numbers, bools and strs; otherwise an aT when all have
    # the type T, as the pool makes for item-by-item functions, or an av.
    if not failures and results:
        fast = _fast_array(results)
        if fast is not None:
            return fast
    values = []
    for i, result in enumerate(results):
        value = failures.get(i) if failures else None
        if value is None:
            try:
                value = _encode(result, 'the result', 0)
            except Exception as e:  # noqa: B902
                value = _exception_to_variant(e)
        values.append(value)
    types = {v.get_type_string() for v in values}
    if len(types) == 1:
        return GLib.Variant.new_array(GLib.VariantType.new(types.pop()), values)
    return GLib.Variant.new_array(_T_V, [GLib.Variant.new_variant(v) for v in values])


def _make_chunk_task(func):
    # The chunk function that a worker runs for a Python callable: the
    # chunk's items are decoded at once (a typed array in one go), func is
    # called on each (a call envelope is func(*args, **kwargs)), and the
    # results are encoded at once. An item whose call raises comes back as
    # its ('mpg:exc', <info>) value, which the parent raises again for that
    # item only, as _make_pool_task() does.
    def task(items):
        values, how = _decode_chunk(items)
        results = []
        failures = None
        it = iter(values)
        while True:
            # A failing item stops extend(), which keeps the results before
            # it; the next round goes on from the item after it. func is
            # called from this frame (map() and starmap() add none), which
            # the remote traceback skips.
            try:
                if how == 'map':
                    results.extend(map(func, it))
                elif how == 'star':
                    results.extend(itertools.starmap(func, it))
                else:
                    for v in it:
                        if type(v) is _Args:
                            results.append(func(*v.args, **v.kwargs))
                        else:
                            results.append(func(v))
                break
            except Exception as e:  # noqa: B902
                if failures is None:
                    failures = {}
                failures[len(results)] = _exception_to_variant(e)
                results.append(None)
        return _encode_chunk_results(results, failures)

    return task


class AsyncResult:
    """multiprocessing.pool.AsyncResult: what apply_async(), map_async()
    and starmap_async() return. Its callbacks run in libmpg's
    result-handler thread."""

    def __init__(self, pool, decode, callback=None, error_callback=None):
        self._pool = pool
        self._decode = decode
        self._callback = callback
        self._error_callback = error_callback
        self._event = threading.Event()
        self._success = None
        self._value = None
        self._cancellable = Gio.Cancellable()

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError('{0!r} not ready'.format(self))
        return self._success

    def wait(self, timeout=None):
        deadline = _Deadline(timeout)
        while not self._event.wait(deadline.slice_ms() / 1000):
            if deadline.expired():
                break

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _complete(self, finish, res):
        try:
            self._value = self._decode(finish(res))
            self._success = True
        except GLib.Error as e:
            self._value, self._success = _pool_error(e), False
        except Exception as e:  # noqa: B902
            self._value, self._success = e, False
        callback = self._callback if self._success else self._error_callback
        if callback is not None:
            try:
                callback(self._value)
            except Exception:  # noqa: B902
                traceback.print_exc()
        self._event.set()
        self._pool = None


MapResult = AsyncResult


class IMapIterator:
    """What imap() and imap_unordered() return: an iterator whose
    next(timeout) raises TimeoutError when no result came in time."""

    def __init__(self, iterator):
        self._it = iterator

    def __iter__(self):
        return self

    def next(self, timeout=None):
        # One blocking C call, which Ctrl-C cancels (see _blocking()).
        msec = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            ok, value = _blocking(lambda c: self._it.next(msec, c))
        except GLib.Error as e:
            if _is_mpg_error(e, Mpg.Error.TIMEOUT):
                raise TimeoutError from None
            raise _pool_error(e) from None
        if value is None:
            raise StopIteration
        return _decode_result(value)

    def __next__(self):
        return self.next()

    def __length_hint__(self):
        return self._it.get_length()


class Pool(Mpg.Pool):
    """multiprocessing.Pool, and the GLib layer's Mpg.Pool.

    Pool(processes=None, initializer=None, initargs=(),
    maxtasksperchild=None) is multiprocessing's. Its methods take Python
    callables and values: apply, apply_async, map, map_async, imap,
    imap_unordered, starmap, starmap_async, close, terminate, join(),
    `with` (leaving it terminates). Any callable works, lambdas and
    closures made just before the call included: the workers are forked.
    The pool keeps C function ids per callable (a chunk function for the
    maps, a function for single calls), so that calls of the same
    callable reuse warm workers.

    Given a function id from add_function() instead of a callable, the
    same methods are the GLib layer's, with GVariants, chunksize 0 for
    the default, a GCancellable and a GAsyncReadyCallback.
    """

    def __new__(cls, processes=None, initializer=None, initargs=(),
                maxtasksperchild=None, context=None, **props):
        backend = props.get('backend')
        if isinstance(backend, str):
            props['backend'] = _BACKENDS[backend]
        if processes is not None and processes < 1:
            raise ValueError('Number of processes must be at least 1')
        if maxtasksperchild is not None and (
                not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError('maxtasksperchild must be a positive int or None')
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        method = getattr(context, '_name', None) if context is not None else get_start_method()
        if method not in _START_METHODS:
            raise _start_method_not_implemented(method)
        # Workers on MPI ranks are other interpreters, as spawned ones.
        remote = _resolve_backend(props.get('backend')) != Mpg.PoolBackend.LOCAL
        if method != 'fork' or remote:
            _setup_spawn()
            if initializer is None:
                return GObject.new(_GIPool, processes=processes or 0,
                                   maxtasksperchild=maxtasksperchild or 0,
                                   start_method=_START_METHODS[method], **props)
            # The workers are other interpreters: they find the initializer
            # by name and get its arguments as values (queues as handles
            # and fds).
            name = 'init:' + _task_name(initializer, 'a Pool initializer')
            fds = Gio.UnixFDList.new()
            _reduction.fd_list = fds
            try:
                args = _call_variant(tuple(initargs), {}, 'initargs').get_child_value(1).get_variant()
            finally:
                _reduction.fd_list = None
            pool = GObject.new(_GIPool, processes=processes or 0,
                               maxtasksperchild=maxtasksperchild or 0, initargs=args,
                               start_method=_START_METHODS[method], **props)
            _GIPool.set_initializer_name(pool, name, fds)
            return pool
        init = None
        if initializer is not None:
            initargs = tuple(initargs)

            def init(*_):
                initializer(*initargs)
                return None

        pool = GObject.new(_GIPool, processes=processes or 0,
                           maxtasksperchild=maxtasksperchild or 0,
                           start_method=Mpg.StartMethod.FORK, **props)
        if init is not None:
            _GIPool.set_initializer(pool, _wrap_task(init))
        return pool

    def __init__(self, *args, **kwargs):
        pass

    @classmethod
    def new_full(cls, processes, initializer, initargs, maxtasksperchild):
        # Python closures carry their data: no user data argument here.
        return Mpg.Pool.new_full(processes, _wrap_task(initializer), None,
                                 initargs, maxtasksperchild)

    def add_function(self, func, *user_data):
        return Mpg.Pool.add_function(self, _wrap_task(func), *user_data)

    def add_chunk_function(self, func, *user_data):
        # What func raises fails the chunk's items with its traceback.
        return Mpg.Pool.add_chunk_function(self, _wrap_task(func), *user_data)

    # -- the multiprocessing layer's machinery

    def _mpg_function(self, func):
        """The id of the chunk function that maps func over a chunk of
        items (map, starmap, imap, imap_unordered)."""
        return self._mpg_functions_of(func)[0]

    def _mpg_call_function(self, func):
        """The id of the function that runs one call of func (apply,
        apply_async): its item is the list of arguments, see _call_args()."""
        return self._mpg_functions_of(func)[1]

    def _mpg_functions_of(self, func):
        if not callable(func):
            raise TypeError('%r is not callable' % (func,))
        with _functions_lock:
            cache = self.__dict__.get('_mpg_functions')
            if cache is None:
                cache = self._mpg_functions = collections.OrderedDict()
            try:
                key = ('f', func)
                hash(key)
            except TypeError:
                key = ('id', id(func))
            entry = cache.get(key)
            if entry is not None:
                cache.move_to_end(key)
                return entry
            # Two functions per callable, added together (a fork pool
            # replaces its workers once for both): a chunk function, which
            # a worker runs once for a whole chunk of items and which sends
            # their results back in one array; and a function for single
            # calls, which needs no array around its argument and result.
            if self.props.start_method != Mpg.StartMethod.FORK or \
                    self.props.backend != Mpg.PoolBackend.LOCAL:
                name = _task_name(func, 'a pool task')
                entry = (_GIPool.add_named_chunk_function(self, 'chunk:' + name),
                         _GIPool.add_named_function(self, 'call:' + name), func)
            else:
                entry = (_GIPool.add_chunk_function(self, _wrap_task(_make_chunk_task(func))),
                         _GIPool.add_function(self, _wrap_task(_make_call_task(func))), func)
            cache[key] = entry
            if len(cache) > _MAX_FUNCTIONS:
                _, old = cache.popitem(last=False)
                _GIPool.remove_function(self, old[0])
                _GIPool.remove_function(self, old[1])
            return entry

    def _check_running(self):
        if self.__dict__.get('_mpg_closed'):
            raise ValueError('Pool not running')

    def _mpg_wait(self, call, decode):
        try:
            return decode(_blocking(call))
        except GLib.Error as e:
            raise _pool_error(e) from None

    def _mpg_async(self, start, finish, decode, callback, error_callback):
        result = AsyncResult(self, decode, callback, error_callback)

        def done(source, res, *args):
            result._complete(lambda r: finish(self, r), res)

        _get_handler().call(lambda: start(result._cancellable, done))
        return result

    @staticmethod
    def _chunksize(chunksize, default=0):
        if chunksize is None:
            return default
        if chunksize < 1:
            raise ValueError('Chunksize must be 1+, not {0:n}'.format(chunksize))
        return chunksize

    @staticmethod
    def _items(iterable):
        if type(iterable) is range:
            # Ints by construction: no list, no check of their types.
            try:
                data = array.array('q', iterable).tobytes()
            except OverflowError:
                pass
            else:
                return GLib.Variant.new_from_bytes(_FAST_TYPES['ax'], GLib.Bytes.new(data), True)
        if type(iterable) is not list:
            iterable = list(iterable)
        return _encode_list(iterable, 'iterable', 1)

    @staticmethod
    def _star_items(iterable):
        calls = [_call_variant(args, None, 'iterable[%d]' % i) for i, args in enumerate(iterable)]
        return GLib.Variant.new_array(GLib.VariantType.new('(sv)'), calls)

    # -- methods of both layers

    def apply(self, func, *args, **kwargs):
        if not callable(func):
            return self._gi_apply(func, *args, **kwargs)
        return self._mp_apply(func, *args, **kwargs)

    def _gi_apply(self, function, arg, cancellable=None):
        return _blocking(lambda c: _GIPool.apply(self, function, arg, c), cancellable)

    def _mp_apply(self, func, args=(), kwds={}):
        self._check_running()
        fid = self._mpg_call_function(func)
        arg = _call_args(args, kwds)
        return self._mpg_wait(lambda c: _GIPool.apply(self, fid, arg, c), _decode_result)

    def map(self, func, *args, **kwargs):
        if not callable(func):
            return self._gi_map(func, *args, **kwargs)
        return self._mp_map(func, *args, **kwargs)

    def _gi_map(self, function, items, chunksize=0, cancellable=None):
        return _blocking(lambda c: _GIPool.map(self, function, items, chunksize, c), cancellable)

    def _mp_map(self, func, iterable, chunksize=None):
        self._check_running()
        fid = self._mpg_function(func)
        items = self._items(iterable)
        chunksize = self._chunksize(chunksize)
        return self._mpg_wait(lambda c: _GIPool.map(self, fid, items, chunksize, c),
                              _decode_results)

    def starmap(self, func, *args, **kwargs):
        if not callable(func):
            return self._gi_starmap(func, *args, **kwargs)
        return self._mp_starmap(func, *args, **kwargs)

    def _gi_starmap(self, function, items, chunksize=0, cancellable=None):
        return _blocking(lambda c: _GIPool.starmap(self, function, items, chunksize, c),
                         cancellable)

    def _mp_starmap(self, func, iterable, chunksize=None):
        self._check_running()
        fid = self._mpg_function(func)
        items = self._star_items(iterable)
        chunksize = self._chunksize(chunksize)
        return self._mpg_wait(lambda c: _GIPool.map(self, fid, items, chunksize, c),
                              _decode_results)

    def apply_async(self, func, *args, **kwargs):
        if not callable(func):
            return _GIPool.apply_async(self, func, *args, **kwargs)
        return self._mp_apply_async(func, *args, **kwargs)

    def _mp_apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        fid = self._mpg_call_function(func)
        arg = _call_args(args, kwds)
        return self._mpg_async(
            lambda c, cb: _GIPool.apply_async(self, fid, arg, c, cb),
            _GIPool.apply_finish, _decode_result, callback, error_callback)

    def map_async(self, func, *args, **kwargs):
        if not callable(func):
            return _GIPool.map_async(self, func, *args, **kwargs)
        return self._mp_map_async(func, *args, **kwargs)

    def _mp_map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        self._check_running()
        fid = self._mpg_function(func)
        items = self._items(iterable)
        chunksize = self._chunksize(chunksize)
        return self._mpg_async(
            lambda c, cb: _GIPool.map_async(self, fid, items, chunksize, c, cb),
            _GIPool.map_finish, _decode_results, callback, error_callback)

    def starmap_async(self, func, *args, **kwargs):
        if not callable(func):
            return _GIPool.starmap_async(self, func, *args, **kwargs)
        return self._mp_starmap_async(func, *args, **kwargs)

    def _mp_starmap_async(self, func, iterable, chunksize=None, callback=None,
                          error_callback=None):
        self._check_running()
        fid = self._mpg_function(func)
        items = self._star_items(iterable)
        chunksize = self._chunksize(chunksize)
        return self._mpg_async(
            lambda c, cb: _GIPool.map_async(self, fid, items, chunksize, c, cb),
            _GIPool.map_finish, _decode_results, callback, error_callback)

    def imap(self, func, *args, **kwargs):
        if not callable(func):
            return _GIPool.imap(self, func, *args, **kwargs)
        return self._mp_imap(_GIPool.imap, func, *args, **kwargs)

    def imap_unordered(self, func, *args, **kwargs):
        if not callable(func):
            return _GIPool.imap_unordered(self, func, *args, **kwargs)
        return self._mp_imap(_GIPool.imap_unordered, func, *args, **kwargs)

    def _mp_imap(self, method, func, iterable, chunksize=1):
        self._check_running()
        fid = self._mpg_function(func)
        items = self._items(iterable)
        chunksize = self._chunksize(chunksize, 1)
        try:
            return IMapIterator(method(self, fid, items, chunksize))
        except GLib.Error as e:
            raise _pool_error(e) from None

    def close(self):
        self._mpg_closed = True
        _GIPool.close(self)

    def terminate(self):
        self._mpg_closed = True
        _GIPool.terminate(self)

    def join(self, *args, **kwargs):
        """multiprocessing: join() waits for the workers to exit, after
        close() or terminate(); the GLib layer: join(timeout_msec)."""
        if args or kwargs:
            return _GIPool.join(self, *args, **kwargs)
        while True:
            try:
                _sliced(_GIPool.join, self, int(_SLICE_S * 1000))
                return None
            except GLib.Error as e:
                if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
                    raise ValueError('Pool is still running') from None
                if not _is_mpg_error(e, Mpg.Error.TIMEOUT):
                    raise

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()
        self.join()

    def __reduce__(self):
        raise NotImplementedError('pool objects cannot be passed between processes or pickled')


Pool = override(Pool)
__all__ += ['Pool', 'AsyncResult', 'MapResult', 'IMapIterator']


# ---------------------------------------------------------------------------
# The spawn start method
#
# A spawned worker is a new interpreter: `python3 -c <bootstrap> <json>`
# that takes the parent's sys.path, imports the parent's main script as
# __mp_main__ (so that its `if __name__ == '__main__'` block does not run,
# as in multiprocessing), and then runs the C worker with a dispatcher that
# finds tasks by 'module:qualname'. Queues given as arguments travel as a
# handle and their fds (multiprocessing's reduction).


_SPAWN_BOOTSTRAP = (
    'import sys, json; _c = json.loads(sys.argv[1]); sys.path[:] = _c["path"]; '
    'import gi; gi.require_version("Mpg", "1.0"); '
    'from gi.repository import Mpg; sys.modules["gi.overrides.Mpg"]._spawn_worker_main(_c)')

_spawn_ready = False


def _setup_spawn():
    global _spawn_ready
    if _spawn_ready:
        return
    main = sys.modules.get('__main__')
    main_path = getattr(main, '__file__', None)
    main_spec = getattr(main, '__spec__', None)
    # As multiprocessing: a script is run again as __mp_main__, a module
    # run with -m is imported by name; code from stdin or -c has no source
    # to run again (its functions cannot be found by name).
    if main_path is not None and not os.path.isfile(main_path):
        main_path = None
    config = {'path': sys.path,
              'main': os.path.abspath(main_path) if main_path else None,
              'main_module': main_spec.name if main_spec is not None else None}
    Mpg.set_spawn_command([sys.executable, '-c', _SPAWN_BOOTSTRAP, json.dumps(config)])
    _spawn_ready = True


def _task_name(func, what):
    # 'module:qualname' for a function a spawned worker can import.
    module = getattr(func, '__module__', None)
    qualname = getattr(func, '__qualname__', None)
    if module is None or qualname is None or '<' in qualname:
        raise ValueError(
            'with the spawn and forkserver start methods, %s must be a function defined at the top level '
            'of a module (found by module:qualname in the new process), not %r: lambdas, '
            'closures and nested functions only work with fork' % (what, func))
    return '%s:%s' % (module, qualname)


def _resolve_task(name):
    module_name, _, qualname = name.partition(':')
    if module_name == '__main__':
        module_name = '__mp_main__'
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    obj = module
    for part in qualname.split('.'):
        obj = getattr(obj, part)
    return obj


_spawned_tasks = {}


def _spawn_dispatch(name, arg, fd_list, *data):
    # In a spawned worker: 'process:module:qualname' runs a Process target
    # with its (args, kwargs), 'init:module:qualname' a pool's initializer
    # likewise; 'pool:module:qualname' a pool task, item by item,
    # 'chunk:module:qualname' one for a whole chunk of items and
    # 'call:module:qualname' one for single calls (see Pool._mpg_function).
    wrapped = _spawned_tasks.get(name)
    if wrapped is not None:
        return wrapped(arg)
    kind, _, task = name.partition(':')
    try:
        func = _resolve_task(task)
    except Exception as e:  # noqa: B902
        raise GLib.Error('cannot find %s in the spawned process: %s: %s'
                         % (task, type(e).__name__, e),
                         'mpg-error-quark', int(Mpg.Error.UNKNOWN_TASK)) from None
    if kind in ('pool', 'chunk', 'call'):
        make = {'chunk': _make_chunk_task, 'call': _make_call_task}.get(kind, _make_pool_task)
        wrapped = _spawned_tasks[name] = _wrap_task(make(func))
        return wrapped(arg)
    _reduction.fd_source = fd_list
    try:
        args, kwargs = from_variant(arg) if arg is not None else ((), {})
    finally:
        _reduction.fd_source = None
    _call_task(lambda: func(*args, **kwargs))
    return None


_BACKENDS = {'auto': Mpg.PoolBackend.AUTO, 'local': Mpg.PoolBackend.LOCAL,
             'mpi': Mpg.PoolBackend.MPI, 'mpi-spawn': Mpg.PoolBackend.MPI_SPAWN}


def _resolve_backend(backend):
    # The C library decides (MPG_POOL_BACKEND, the MPI launcher's
    # environment) when a pool is made: ask a pool that never starts.
    if backend is None:
        backend = Mpg.PoolBackend.AUTO
    return GObject.new(_GIPool, backend=backend).props.backend


def _spawn_worker_main(config):
    global _forked_pid
    _forked_pid = os.getpid()
    main_path = config.get('main')
    if config.get('main_module'):
        module = importlib.import_module(config['main_module'])
        sys.modules['__mp_main__'] = module
    elif main_path:
        spec = importlib.util.spec_from_file_location('__mp_main__', main_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules['__mp_main__'] = module
        sys.modules['__main__'] = module
        spec.loader.exec_module(module)
    Mpg.set_task_dispatcher(_spawn_dispatch)
    Mpg.worker_main()
    os._exit(1)   # not reached: worker_main() exits


# ---------------------------------------------------------------------------
# Synchronization primitives
#
# Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier are
# the C layer's objects (a page of shared memory each, with no name in the
# file system), spoken to as multiprocessing does. Objects made by
# Mpg.Lock() and the like follow the multiprocessing layer (timeouts in
# seconds, False on a timeout, Python's exceptions); those made by the C
# constructors (Mpg.Lock.new(), …) the GLib layer, as for queues.

BrokenBarrierError = threading.BrokenBarrierError


class OwnerDiedWarning(RuntimeWarning):
    """Warned by acquire() (and `with`) when the process that held the lock
    died holding it: the lock was taken over and is now held by the caller,
    but what it protects may have been left half changed. Python's
    multiprocessing would wait for ever instead. Turn it into an error with
    warnings.simplefilter('error', Mpg.OwnerDiedWarning)."""


__all__ += ['BrokenBarrierError', 'OwnerDiedWarning']

_INT_MAX = 2 ** 31 - 1


def _timeout_msec(block=True, timeout=None):
    """multiprocessing's (block, timeout in seconds) as the C layer's
    milliseconds: -1 for ever, 0 not to wait."""
    if not block:
        return 0
    if timeout is None:
        return -1
    if not timeout > 0:
        return 0
    return min(_INT_MAX, math.ceil(timeout * 1000))


def _sync_wait(call, msec, try_first=True):
    """Runs call(timeout_msec, cancellable), a wait of the C layer that fails
    with MPG_ERROR_TIMEOUT when timeout_msec passes; returns its result, or
    None after a timeout. A wait goes through _blocking(), so that Ctrl-C
    interrupts it. With try_first, a call that does not wait comes first:
    all that an uncontended lock needs."""
    if try_first or msec == 0:
        try:
            return _sliced(call, 0, None)
        except GLib.Error as e:
            if not _is_mpg_error(e, Mpg.Error.TIMEOUT):
                raise
        if msec == 0:
            return None
    try:
        return _blocking(lambda c: call(msec, c))
    except GLib.Error as e:
        if _is_mpg_error(e, Mpg.Error.TIMEOUT):
            return None
        raise


def _owner_name():
    name = Mpg.current_process().props.name
    thread = threading.current_thread()
    if thread is not threading.main_thread():
        name += '|' + thread.name
    return name


_GILock = Mpg.Lock


class Lock(Mpg.Lock):
    """multiprocessing.Lock, and the GLib layer's Mpg.Lock.

    Lock() is multiprocessing's: acquire(block=True, timeout=None) returns
    True, or False when it could not acquire the lock in time; release();
    `with lock:`. Any thread of any process may release it; releasing it
    when it is not held raises ValueError.

    When the process that held the lock died holding it, acquire() takes it
    over: it returns True and warns with OwnerDiedWarning, since what the
    lock protects may be half changed. (multiprocessing's waiters hang.)

    Locks made by Mpg.Lock.new() follow the GLib layer: acquire(timeout_msec,
    cancellable) returns (True, owner_died) or raises MPG_ERROR_TIMEOUT.
    """

    _mpg_mp = False

    def __new__(cls, *, ctx=None):
        return _mp_object(_GILock.new())

    def __init__(self, *args, **kwargs):
        pass

    def acquire(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GILock.acquire(self, *args, **kwargs)
        return self._mp_acquire(*args, **kwargs)

    def _mp_acquire(self, block=True, timeout=None):
        result = _sync_wait(lambda msec, c: _GILock.acquire(self, msec, c),
                            _timeout_msec(block, timeout))
        if result is None:
            return False
        if result[1]:
            warnings.warn(OwnerDiedWarning(
                'the process that held %s died holding it: this process took it over, and '
                'what it protects may be half changed' % type(self).__name__), stacklevel=3)
        return True

    def release(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GILock.release(self, *args, **kwargs)
        self._mp_release()

    def _mp_release(self):
        try:
            _GILock.release(self)
        except GLib.Error as e:
            if not _is_mpg_error(e, Mpg.Error.INVALID_STATE):
                raise
            if _GILock.get_recursive(self):
                raise AssertionError('attempt to release recursive lock not owned by thread') \
                    from None
            raise ValueError('semaphore or lock released too many times') from None

    def __enter__(self):
        return self._mp_acquire()

    def __exit__(self, *exc):
        self._mp_release()

    def _owner(self):
        try:
            if _GILock.is_mine(self):
                return _owner_name()
            if _GILock.get_count(self) == 0:
                return 'None'
            return 'SomeOtherProcess'
        except Exception:  # noqa: B902
            return 'unknown'

    def __repr__(self):
        if not self._mpg_mp:
            return super().__repr__()
        return '<%s(owner=%s)>' % (type(self).__name__, self._owner())


Lock = override(Lock)
__all__.append('Lock')

# Made after the override of Lock, PyGObject's class of MpgRLock derives
# from it (it looks its parent up in the overridden module): RLock has all
# of Lock's methods.
_GIRLock = Mpg.RLock


class RLock(Mpg.RLock):
    """multiprocessing.RLock, and the GLib layer's Mpg.RLock.

    As Lock, and the thread that holds it may acquire it again; it must
    release it as many times, and only it may release it (others raise
    AssertionError)."""

    def __new__(cls, *, ctx=None):
        return _mp_object(_GIRLock.new())

    def __repr__(self):
        if not self._mpg_mp:
            return GObject.Object.__repr__(self)
        owner = self._owner()
        try:
            count = _GILock.get_count(self)
        except Exception:  # noqa: B902
            count = 'unknown'
        if owner == 'SomeOtherProcess':
            count = 'nonzero'
        return '<%s(%s, %s)>' % (type(self).__name__, owner, count)


RLock = override(RLock)
__all__.append('RLock')
_register_gobject_type(_GILock, 'lock', 'a Lock')

_GISemaphore = Mpg.Semaphore


class Semaphore(Mpg.Semaphore):
    """multiprocessing.Semaphore, and the GLib layer's Mpg.Semaphore.

    Semaphore(value=1): acquire(block=True, timeout=None) takes a unit and
    returns True (False when none came in time), release() gives one back,
    get_value(), `with`. The units taken by a process that dies are given
    back (multiprocessing loses them). BoundedSemaphore(value) raises
    ValueError for a release beyond its value.

    Semaphores made by Mpg.Semaphore.new() or new_bounded() follow the GLib
    layer: acquire(timeout_msec, cancellable) raises MPG_ERROR_TIMEOUT.
    """

    _mpg_mp = False

    def __new__(cls, value=1, *, ctx=None):
        return _new_semaphore(_GISemaphore.new, value)

    def __init__(self, *args, **kwargs):
        pass

    def acquire(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GISemaphore.acquire(self, *args, **kwargs)
        return self._mp_acquire(*args, **kwargs)

    def _mp_acquire(self, block=True, timeout=None):
        return _sync_wait(lambda msec, c: _GISemaphore.acquire(self, msec, c),
                          _timeout_msec(block, timeout)) is not None

    def release(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GISemaphore.release(self, *args, **kwargs)
        self._mp_release()

    def _mp_release(self):
        try:
            _GISemaphore.release(self)
        except GLib.Error as e:
            if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
                raise ValueError('semaphore or lock released too many times') from None
            raise

    def __enter__(self):
        return self._mp_acquire()

    def __exit__(self, *exc):
        self._mp_release()

    def __repr__(self):
        if not self._mpg_mp:
            return super().__repr__()
        try:
            value = self.get_value()
        except Exception:  # noqa: B902
            value = 'unknown'
        if self.get_bounded():
            return '<BoundedSemaphore(value=%s, maxvalue=%s)>' % (value, self.get_max_value())
        return '<Semaphore(value=%s)>' % value


def _new_semaphore(new, value):
    if not isinstance(value, int):
        raise TypeError('the value of a semaphore must be an int, not %s'
                        % type(value).__name__)
    if value < 0:
        raise ValueError('semaphore initial value must be >= 0')
    if value > _INT_MAX:
        raise ValueError('semaphore initial value must be <= %d' % _INT_MAX)
    return _mp_object(new(value))


def BoundedSemaphore(value=1, *, ctx=None):
    """multiprocessing.BoundedSemaphore(value=1): a Semaphore whose
    release() raises ValueError when it would raise the value above the
    initial one."""
    return _new_semaphore(_GISemaphore.new_bounded, value)


Semaphore = override(Semaphore)
__all__ += ['Semaphore', 'BoundedSemaphore']
_register_gobject_type(_GISemaphore, 'semaphore', 'a Semaphore')

_GIEvent = Mpg.Event


class Event(Mpg.Event):
    """multiprocessing.Event, and the GLib layer's Mpg.Event.

    Event(): is_set(), set(), clear(), and wait(timeout=None), which returns
    True once the flag was set (even if it was cleared again before the
    waiter ran) and False on a timeout. Events made by Mpg.Event.new()
    follow the GLib layer: wait(timeout_msec, cancellable) raises
    MPG_ERROR_TIMEOUT."""

    _mpg_mp = False

    def __new__(cls, *, ctx=None):
        return _mp_object(_GIEvent.new())

    def __init__(self, *args, **kwargs):
        pass

    def wait(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GIEvent.wait(self, *args, **kwargs)
        return self._mp_wait(*args, **kwargs)

    def _mp_wait(self, timeout=None):
        return _sync_wait(lambda msec, c: _GIEvent.wait(self, msec, c),
                          _timeout_msec(True, timeout)) is not None

    def __repr__(self):
        if not self._mpg_mp:
            return super().__repr__()
        return '<Event(%s)>' % ('set' if self.is_set() else 'unset')


Event = override(Event)
__all__.append('Event')
_register_gobject_type(_GIEvent, 'event', 'an Event')

_GICondition = Mpg.Condition


def _condition_error(e, what):
    if _is_mpg_error(e, Mpg.Error.INVALID_STATE):
        return AssertionError(what)
    return e


class Condition(Mpg.Condition):
    """multiprocessing.Condition, and the GLib layer's Mpg.Condition.

    Condition(lock=None) (an RLock unless a Lock or RLock is given):
    acquire(block=True, timeout=None), release(), `with`, wait(timeout=None)
    (False on a timeout), wait_for(predicate, timeout=None), notify(n=1),
    notify_all(). Waiting or notifying without holding the lock raises
    AssertionError. Conditions made by Mpg.Condition.new() follow the GLib
    layer."""

    _mpg_mp = False

    def __new__(cls, lock=None, *, ctx=None):
        if lock is not None and not isinstance(lock, _GILock):
            raise TypeError('the lock of a Condition must be an Mpg.Lock or an Mpg.RLock, not %s'
                            % _describe(lock))
        if lock is None:
            lock = RLock()
        cond = _mp_object(_GICondition.new(lock))
        cond._mpg_lock = lock
        return cond

    def __init__(self, *args, **kwargs):
        pass

    def _get_lock(self):
        lock = self.__dict__.get('_mpg_lock')
        if lock is None:
            # A condition rebuilt from a handle: its lock was made with it.
            lock = self._mpg_lock = _mp_object(_GICondition.get_lock(self))
        return lock

    def acquire(self, block=True, timeout=None):
        return Lock._mp_acquire(self._get_lock(), block, timeout)

    def release(self):
        Lock._mp_release(self._get_lock())

    def __enter__(self):
        return Lock._mp_acquire(self._get_lock())

    def __exit__(self, *exc):
        Lock._mp_release(self._get_lock())

    def wait(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GICondition.wait(self, *args, **kwargs)
        return self._mp_wait(*args, **kwargs)

    def _mp_wait(self, timeout=None):
        try:
            return _sync_wait(lambda msec, c: _GICondition.wait(self, msec, c),
                              _timeout_msec(True, timeout), try_first=False) is not None
        except GLib.Error as e:
            raise _condition_error(e, 'must acquire() condition before using wait()') from None

    def wait_for(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GICondition.wait_for(self, *args, **kwargs)
        return self._mp_wait_for(*args, **kwargs)

    def _mp_wait_for(self, predicate, timeout=None):
        # The predicate is Python: waits of the C layer, with the
        # predicate looked at in between.
        result = predicate()
        if result:
            return result
        end = None if timeout is None else time.monotonic() + timeout
        while not result:
            if end is None:
                self._mp_wait()
            else:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._mp_wait(left)
            result = predicate()
        return result

    def notify(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GICondition.notify(self, *args, **kwargs)
        return self._mp_notify(*args, **kwargs)

    def _mp_notify(self, n=1):
        if n < 0:
            raise ValueError('n must be >= 0')
        try:
            _GICondition.notify(self, min(n, _INT_MAX))
        except GLib.Error as e:
            raise _condition_error(e, 'lock is not owned') from None

    def notify_all(self):
        try:
            _GICondition.notify_all(self)
        except GLib.Error as e:
            if not self._mpg_mp:
                raise
            raise _condition_error(e, 'lock is not owned') from None

    def __repr__(self):
        if not self._mpg_mp:
            return super().__repr__()
        return '<Condition(%r)>' % (self._get_lock(),)


Condition = override(Condition)
__all__.append('Condition')
_register_gobject_type(_GICondition, 'condition', 'a Condition')

_GIBarrier = Mpg.Barrier


def _object_name(obj, what):
    """'module:qualname' of obj, for another process to find it by."""
    module = getattr(obj, '__module__', None)
    qualname = getattr(obj, '__qualname__', None)
    if module is None or qualname is None or '<' in qualname:
        raise ValueError(
            '%s must be defined at the top level of a module, to be found by module:qualname in '
            'the process it is sent to, not %r: lambdas, closures and nested functions stay in '
            'their process' % (what, obj))
    return '%s:%s' % (module, qualname)


class Barrier(Mpg.Barrier):
    """multiprocessing.Barrier, and the GLib layer's Mpg.Barrier.

    Barrier(parties, action=None, timeout=None): wait(timeout=None)
    returns this party's index (0 to parties - 1) once all have arrived,
    and raises threading.BrokenBarrierError when the barrier is or becomes
    broken (a timeout breaks it); abort(), reset(); parties, n_waiting,
    broken. The action runs in the process of the last party to arrive,
    before the others are released; if it raises, the barrier breaks and
    that party's wait() raises the exception.

    The action is Python code of this process: a child forked later has it;
    a barrier sent to another process (with spawn or forkserver, or through
    a queue or a pipe) finds it there by module:qualname, so it must then be
    a function defined at the top level of a module. Barriers made by
    Mpg.Barrier.new() follow the GLib layer.
    """

    _mpg_mp = False

    def __new__(cls, parties, action=None, timeout=None, *, ctx=None):
        if not isinstance(parties, int):
            raise TypeError('parties must be an int, not %s' % type(parties).__name__)
        if not 0 < parties <= _INT_MAX:
            raise ValueError('parties must be > 0')
        if action is not None and not callable(action):
            raise TypeError('action must be callable, not %s' % type(action).__name__)
        barrier = _mp_object(_GIBarrier.new(parties, -1 if timeout is None
                                            else _timeout_msec(True, timeout)))
        if action is not None:
            barrier._set_mp_action(action)
        return barrier

    def __init__(self, *args, **kwargs):
        pass

    def _set_mp_action(self, action):
        # The C object calls run(); what action raises is kept for the
        # wait() that ran it (no reference to self: no cycle through C).
        failure = []

        def run(*_):
            try:
                action()
            except BaseException as e:  # noqa: B902
                failure.append(e)
                raise GLib.Error("the barrier's action raised %s: %s" % (type(e).__name__, e),
                                 PYTHON_ERROR_DOMAIN, 0) from None
            return True

        self._mpg_action = action
        self._mpg_action_failure = failure
        _GIBarrier.set_action(self, run)

    def wait(self, *args, **kwargs):
        if not self._mpg_mp:
            return _GIBarrier.wait(self, *args, **kwargs)
        return self._mp_wait(*args, **kwargs)

    def _mp_wait(self, timeout=None):
        # -1: the barrier's own timeout, as Python's None.
        msec = -1 if timeout is None else _timeout_msec(True, timeout)
        try:
            return _blocking(lambda c: _GIBarrier.wait(self, msec, c))
        except GLib.Error as e:
            failure = self.__dict__.get('_mpg_action_failure')
            if failure:
                raise failure.pop() from None
            if _is_mpg_error(e, Mpg.Error.BROKEN_BARRIER) or _is_mpg_error(e, Mpg.Error.TIMEOUT):
                raise BrokenBarrierError from None
            raise

    @property
    def parties(self):
        return self.get_parties()

    @property
    def n_waiting(self):
        return self.get_n_waiting()

    @property
    def broken(self):
        return self.get_broken()

    def __repr__(self):
        if not self._mpg_mp:
            return super().__repr__()
        return '<Barrier(parties=%d, n_waiting=%d, broken=%s)>' % (
            self.parties, self.n_waiting, self.broken)


Barrier = override(Barrier)
__all__.append('Barrier')


def _reduce_barrier(barrier, fds):
    action = barrier.__dict__.get('_mpg_action')
    name = '' if action is None else _object_name(action, 'the action of a Barrier')
    return GLib.Variant.new_tuple(GLib.Variant.new_variant(_GIBarrier.to_handle(barrier, fds)),
                                  GLib.Variant.new_string(name))


def _rebuild_barrier(payload, fds):
    barrier = _mp_object(_GIBarrier.new_from_handle(
        payload.get_child_value(0).get_variant(), fds))
    name = payload.get_child_value(1).get_string()
    if name:
        try:
            action = _resolve_task(name)
        except Exception as e:  # noqa: B902
            raise ValueError("cannot find the barrier's action %s in this process: %s: %s"
                             % (name, type(e).__name__, e)) from None
        barrier._set_mp_action(action)
    return barrier


_register_handle_type(_GIBarrier, 'barrier', 'a Barrier', _reduce_barrier, _rebuild_barrier)


# ---------------------------------------------------------------------------
# Shared memory

_GISharedMemory = Mpg.SharedMemory


def _map(memory):
    # The memory of the C object, mapped once more for Python (the kernel
    # shares the pages: no copy).
    return mmap.mmap(_GISharedMemory.get_fd(memory), _GISharedMemory.get_size(memory))


class SharedMemory(Mpg.SharedMemory):
    """multiprocessing.shared_memory.SharedMemory, and the GLib layer's
    Mpg.SharedMemory.

    SharedMemory(name=None, create=True, size=N) makes a block of N bytes
    of memory shared by processes: buf is a writable memoryview of it (no
    copy: the pages are the block's own), name its name, size its size,
    close() unmaps it from this object. Children started with fork have it;
    to reach another process, pass the object itself (an argument of a
    Process, the initargs of a Pool, Queue.put(), Connection.send()).

    The block has no name in the file system: the name is only shown in
    /proc/PID/fd, and create=False (attaching to a block by its name)
    raises FileNotFoundError. Nothing is ever left in /dev/shm: the kernel
    frees the memory when the last process that has it closes it, and
    unlink() has nothing to do.
    """

    def __new__(cls, name=None, create=False, size=0):
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if not create:
            if name is None:
                raise ValueError("'name' can only be None if create=True")
            raise FileNotFoundError(
                errno.ENOENT, "No shared memory block of that name: libmpg's shared memory cannot "
                "be attached by name; pass the SharedMemory object itself to the other process "
                "(a Process argument, a Pool's initargs, Queue.put(), Connection.send())", name)
        if size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is not None and not isinstance(name, str):
            raise TypeError("'name' must be a str, not %s" % type(name).__name__)
        shm = _GISharedMemory.new(name, size)
        shm.buf
        return shm

    def __init__(self, *args, **kwargs):
        pass

    @property
    def buf(self):
        """A writable memoryview of the memory (None after close())."""
        d = self.__dict__
        buf = d.get('_mpg_buf')
        if buf is None and not d.get('_mpg_closed'):
            mm = d['_mpg_mmap'] = _map(self)
            buf = d['_mpg_buf'] = memoryview(mm)
        return buf

    @property
    def name(self):
        return self.get_name()

    @property
    def size(self):
        return self.get_size()

    def close(self):
        """Releases buf and unmaps the memory from this object, as
        multiprocessing's close() (BufferError while views of buf are in
        use). The block lives on as long as an object or a process has it."""
        d = self.__dict__
        buf = d.get('_mpg_buf')
        if buf is not None:
            buf.release()
            d['_mpg_mmap'].close()
            del d['_mpg_buf'], d['_mpg_mmap']
        self._mpg_closed = True

    def unlink(self):
        """Does nothing: the block has no name to remove. The kernel frees
        the memory when the last process that has it closes it, and nothing
        is left behind (in /dev/shm or elsewhere) even if a process dies."""

    def __repr__(self):
        return '%s(%r, size=%d)' % (type(self).__name__, self.name, self.size)


SharedMemory = override(SharedMemory)
__all__.append('SharedMemory')
_register_gobject_type(_GISharedMemory, 'shared_memory', 'a SharedMemory')


# ---------------------------------------------------------------------------
# Shared ctypes objects: Value, Array, RawValue, RawArray
#
# A ctypes object over a mapping of an Mpg.Array's memory (zero copy, as
# multiprocessing's sharedctypes over its heap). The Mpg.Array has the
# element type when it is one of its typecodes (so that C code sees the
# same numbers); any other ctypes type (a Structure, a subclass…) is its
# bytes ('B').

_TYPECODE_TO_CTYPE = {
    'c': ctypes.c_char, 'u': ctypes.c_wchar, 'b': ctypes.c_byte, 'B': ctypes.c_ubyte,
    'h': ctypes.c_short, 'H': ctypes.c_ushort, 'i': ctypes.c_int, 'I': ctypes.c_uint,
    'l': ctypes.c_long, 'L': ctypes.c_ulong, 'q': ctypes.c_longlong, 'Q': ctypes.c_ulonglong,
    'f': ctypes.c_float, 'd': ctypes.c_double, '?': ctypes.c_bool,
}
_CTYPE_TO_TYPECODE = {}
for _code, _ctype in _TYPECODE_TO_CTYPE.items():
    _CTYPE_TO_TYPECODE.setdefault(_ctype, _code)
del _code, _ctype

_GIArray = Mpg.Array


def _ctype_of(typecode_or_type):
    if isinstance(typecode_or_type, str):
        ctype = _TYPECODE_TO_CTYPE.get(typecode_or_type)
        if ctype is None:
            raise TypeError('unknown typecode %r: one of %s, or a ctypes type'
                            % (typecode_or_type, ' '.join(_TYPECODE_TO_CTYPE)))
        return ctype
    if not (isinstance(typecode_or_type, type) and issubclass(typecode_or_type, _CDATA)):
        raise TypeError('a typecode or a ctypes type is needed, not %s'
                        % _describe(typecode_or_type))
    return typecode_or_type


_CDATA = (ctypes._SimpleCData, ctypes.Array, ctypes.Structure, ctypes.Union)


def _check_lock(lock):
    if lock not in (True, False, None) and not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % (lock,))


def _new_shared(ctype, count, lock):
    """A ctypes object of ctype (count None) or of an array of count of
    them, over new shared memory, zero-filled. lock: True for the
    Mpg.Array's own RLock, an Mpg.Lock for that lock, anything else for
    none."""
    array_type = ctype if count is None else ctype * count   # checks count
    code = _CTYPE_TO_TYPECODE.get(ctype)
    length = (1 if count is None else count) if code else ctypes.sizeof(array_type)
    if code is None:
        code = 'B'
    if lock is True or lock is None:
        array = _GIArray.new(code, length)
    elif isinstance(lock, _GILock):
        array = _GIArray.new_with_lock(code, length, lock)
    else:
        array = _GIArray.new_raw(code, length)
    return _view(array, ctype, count, array_type)


def _view(array, ctype, count, array_type=None):
    if array_type is None:
        array_type = ctype if count is None else ctype * count
    obj = array_type.from_buffer(_map(_GIArray.get_memory(array)))
    # What travels to other processes; it keeps the C object alive.
    obj._mpg_array = array
    obj._mpg_ctype = ctype
    obj._mpg_count = count
    return obj


def _sync_lock(array, lock):
    """The lock of a synchronized wrapper: the one given, or the
    Mpg.Array's own."""
    if lock is True or lock is None:
        return _mp_object(_GIArray.get_lock(array))
    return lock


def RawValue(typecode_or_type, *args):
    """multiprocessing.RawValue(typecode_or_type, *args): a ctypes object
    in shared memory, initialized with args (zero without), without a
    lock."""
    obj = _new_shared(_ctype_of(typecode_or_type), None, False)
    if args:
        obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """multiprocessing.RawArray(typecode_or_type, size_or_initializer): a
    ctypes array in shared memory, of that many zeros or initialized from
    the sequence, without a lock."""
    return _new_shared_array(typecode_or_type, size_or_initializer, False)


def _new_shared_array(typecode_or_type, size_or_initializer, lock):
    ctype = _ctype_of(typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _new_shared(ctype, size_or_initializer, lock)
    init = size_or_initializer
    obj = _new_shared(ctype, len(init), lock)
    obj.__init__(*init)
    return obj


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """multiprocessing.Value(typecode_or_type, *args, lock=True): a ctypes
    object in shared memory, in a synchronized wrapper (value, get_lock(),
    get_obj(), `with`) whose lock is an RLock, or lock if it is a lock.
    With lock=False, the ctypes object itself (RawValue)."""
    _check_lock(lock)
    obj = _new_shared(_ctype_of(typecode_or_type), None, lock)
    if args:
        obj.__init__(*args)
    if lock is False:
        return obj
    return _synchronized(obj, _sync_lock(obj._mpg_array, lock))


def _array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """multiprocessing.Array(typecode_or_type, size_or_initializer, *,
    lock=True): a ctypes array in shared memory, in a synchronized wrapper
    (len(), indexes, slices, get_lock(), get_obj(), `with`; value and raw
    for 'c') whose lock is an RLock, or lock if it is a lock. With
    lock=False, the ctypes array itself (RawArray)."""
    _check_lock(lock)
    obj = _new_shared_array(typecode_or_type, size_or_initializer, lock)
    if lock is False:
        return obj
    return _synchronized(obj, _sync_lock(obj._mpg_array, lock))


class Array(Mpg.Array):
    """multiprocessing.Array, and the GLib layer's Mpg.Array.

    Array(typecode_or_type, size_or_initializer, *, lock=True) is
    multiprocessing's: a ctypes array in shared memory (typecodes 'c', 'u',
    'b', 'B', 'h', 'H', 'i', 'I', 'l', 'L', 'q', 'Q', 'f', 'd', '?', or any
    ctypes type), in a synchronized wrapper whose lock is an RLock (or the
    given lock); lock=False gives the ctypes array itself. The elements are
    the memory of an Mpg.Array, mapped (no copy).

    Mpg.Array.new(typecode, length) and the other C constructors make the
    GLib layer's object.
    """

    def __new__(cls, typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
        return _array(typecode_or_type, size_or_initializer, lock=lock)


Array = override(Array)
__all__ += ['Value', 'Array', 'RawValue', 'RawArray']


class _SynchronizedBase:
    """What Value() and Array() return: the ctypes object and its lock."""

    def __init__(self, obj, lock):
        self._obj = obj
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    def __repr__(self):
        return '<%s wrapper for %s>' % (type(self).__name__, self._obj)


class Synchronized(_SynchronizedBase):
    """A shared ctypes value with its lock (Value()): value reads and
    writes it under the lock."""

    @property
    def value(self):
        with self._lock:
            return self._obj.value

    @value.setter
    def value(self, value):
        with self._lock:
            self._obj.value = value


class SynchronizedArray(_SynchronizedBase):
    """A shared ctypes array with its lock (Array()): len(), items and
    slices, read and written under the lock."""

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, value):
        with self._lock:
            self._obj[i] = value


class SynchronizedString(SynchronizedArray):
    """A shared array of chars ('c') with its lock: also value (up to the
    first NUL) and raw (all the bytes)."""

    @property
    def value(self):
        with self._lock:
            return self._obj.value

    @value.setter
    def value(self, value):
        with self._lock:
            self._obj.value = value

    @property
    def raw(self):
        with self._lock:
            return self._obj.raw

    @raw.setter
    def raw(self, value):
        with self._lock:
            self._obj.raw = value


_synchronized_structs = weakref.WeakKeyDictionary()


def _synchronized_field(name):
    def get(self):
        with self._lock:
            return getattr(self._obj, name)

    def set(self, value):
        with self._lock:
            setattr(self._obj, name, value)

    return property(get, set)


def _synchronized(obj, lock):
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock)
        return SynchronizedArray(obj, lock)
    # A Structure or a Union: a property for each field.
    cls = type(obj)
    wrapper = _synchronized_structs.get(cls)
    if wrapper is None:
        fields = {name: _synchronized_field(name) for name, *_ in getattr(cls, '_fields_', ())}
        wrapper = _synchronized_structs[cls] = type('Synchronized' + cls.__name__,
                                                    (_SynchronizedBase,), fields)
    return wrapper(obj, lock)


__all__ += ['Synchronized', 'SynchronizedArray', 'SynchronizedString']


def _check_shared_ctype(value):
    synchronized = isinstance(value, _SynchronizedBase)
    obj = value._obj if synchronized else value
    array = obj.__dict__.get('_mpg_array')
    if array is None:
        return ('of ctypes objects, only those of Mpg.Value(), Mpg.Array(), Mpg.RawValue() '
                'and Mpg.RawArray() can be sent, as handles of their shared memory')
    if synchronized and (not isinstance(value._lock, _GILock)
                         or _GIArray.get_lock(array) is None):
        return ('the lock of a shared value sent to another process must be an Mpg.Lock or '
                'an Mpg.RLock, not %s' % _describe(value._lock))
    return None


def _reduce_shared_ctype(value, fds):
    synchronized = isinstance(value, _SynchronizedBase)
    obj = value._obj if synchronized else value
    array = obj._mpg_array
    ctype = obj._mpg_ctype
    count = obj._mpg_count
    name = '' if ctype in _CTYPE_TO_TYPECODE else _object_name(
        ctype, 'the ctypes type of a shared value sent to another process')
    return GLib.Variant.new_tuple(
        GLib.Variant.new_string('value' if count is None else 'array'),
        GLib.Variant.new_string(name),
        GLib.Variant.new_uint64(count or 0),
        GLib.Variant.new_boolean(synchronized),
        GLib.Variant.new_variant(_GIArray.to_handle(array, fds)))


def _rebuild_shared_ctype(payload, fds):
    kind, name, count, synchronized = (from_variant(payload.get_child_value(i)) for i in range(4))
    array = _GIArray.new_from_handle(payload.get_child_value(4).get_variant(), fds)
    if name:
        try:
            ctype = _resolve_task(name)
        except Exception as e:  # noqa: B902
            raise ValueError('cannot find the ctypes type %s of a shared value in this process: '
                             '%s: %s' % (name, type(e).__name__, e)) from None
        if not (isinstance(ctype, type) and issubclass(ctype, _CDATA)):
            raise ValueError('%s is not a ctypes type' % name)
    else:
        ctype = _TYPECODE_TO_CTYPE.get(_GIArray.get_typecode(array))
    if kind == 'value':
        count = None
    size = ctypes.sizeof(ctype) * (1 if count is None else count) if ctype else -1
    if size != _GIArray.get_length(array) * _GIArray.get_item_size(array):
        raise ValueError('a shared value of %s does not fit the memory that came with it'
                         % (name or ctype))
    obj = _view(array, ctype, count)
    if not synchronized:
        return obj
    lock = _GIArray.get_lock(array)
    if lock is None:
        raise ValueError('a synchronized shared value came without its lock')
    return _synchronized(obj, _mp_object(lock))


for _cls in _CDATA + (_SynchronizedBase,):
    _register_handle_type(_cls, 'sharedctypes', 'a shared ctypes object',
                          _reduce_shared_ctype, _rebuild_shared_ctype, _check_shared_ctype)
del _cls


# ---------------------------------------------------------------------------
# Start methods and contexts

_start_method_set = False


def get_context(method=None):
    """multiprocessing.get_context(): a context for 'fork', 'spawn' or
    'forkserver' (None: the default's)."""
    if method is None:
        method = get_start_method()
    if method == 'fork':
        return _fork_context
    if method == 'spawn':
        _setup_spawn()
        return _spawn_context
    if method == 'forkserver':
        _setup_spawn()
        return _forkserver_context
    raise ValueError('cannot find context for %r' % (method,))


def set_start_method(method, force=False):
    """multiprocessing.set_start_method(method, force=False). Given a
    Mpg.StartMethod, it is the GLib layer's mpg_set_start_method()."""
    global _start_method_set
    if isinstance(method, Mpg.StartMethod):
        return Mpg.set_start_method(method)
    if _start_method_set and not force:
        raise RuntimeError('context has already been set')
    if method is None and force:
        _start_method_set = False
        return
    get_context(method)
    Mpg.set_start_method(_START_METHODS[method])
    _start_method_set = True


def get_start_method(allow_none=False):
    """multiprocessing.get_start_method(): 'fork' (None before one was set,
    with allow_none). The GLib layer's enum: Mpg.get_start_method_enum()."""
    global _start_method_set
    if not _start_method_set:
        if allow_none:
            return None
        _start_method_set = True
    return {v: k for k, v in _START_METHODS.items()}[Mpg.get_start_method()]


def get_all_start_methods():
    return ['fork', 'spawn', 'forkserver']


get_start_method_enum = Mpg.get_start_method


def freeze_support():
    """A no-op, as on Linux in multiprocessing."""


class _ForkContext:
    """What get_context('fork') returns: multiprocessing's API."""

    _name = 'fork'

    def __repr__(self):
        return '<Mpg fork context>'

    def get_start_method(self, allow_none=False):
        return self._name

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        return Pool(processes, initializer, initargs, maxtasksperchild, context=self)

    def ProcessPoolExecutor(self, max_workers=None, **kwargs):
        return ProcessPoolExecutor(max_workers, mp_context=self, **kwargs)


_fork_context = _ForkContext()


class _SpawnContext(_ForkContext):
    """What get_context('spawn') returns: processes and pools whose children
    are new interpreters; tasks must be top-level functions of a module."""

    _name = 'spawn'

    def __repr__(self):
        return '<Mpg spawn context>'

    def Process(self, *args, **kwargs):
        p = Process(*args, **kwargs)
        p.props.start_method = _START_METHODS[self._name]
        return p


_spawn_context = _SpawnContext()


class _ForkServerContext(_SpawnContext):
    """What get_context('forkserver') returns: children forked by a server
    process that was started fresh (one thread, nothing locked); tasks are
    found by module:qualname, as with spawn."""

    _name = 'forkserver'

    def __repr__(self):
        return '<Mpg forkserver context>'


_forkserver_context = _ForkServerContext()

__all__ += ['get_context', 'set_start_method', 'get_start_method', 'get_all_start_methods',
            'get_start_method_enum', 'freeze_support']


# ---------------------------------------------------------------------------
# concurrent.futures

import concurrent.futures as _futures  # noqa: E402


class _Future(_futures.Future):
    def __init__(self, cancellable):
        super().__init__()
        self._mpg_cancellable = cancellable

    def cancel(self):
        # The call is cancelled in the pool too: not sent to a worker if
        # it was not yet, its result dropped if it was.
        if super().cancel():
            self._mpg_cancellable.cancel()
            return True
        return False


class ProcessPoolExecutor(_futures.Executor):
    """concurrent.futures.ProcessPoolExecutor on an Mpg.Pool.

    ProcessPoolExecutor(max_workers=None, mp_context=None, initializer=None,
    initargs=(), *, max_tasks_per_child=None): submit(fn, *args,
    **kwargs) returns a concurrent.futures.Future; map(), shutdown(wait,
    cancel_futures=False) and `with` as in the standard library. A
    future stays pending until its result comes, and cancel() succeeds
    until then (the result of a task already running is dropped).
    """

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(),
                 *, max_tasks_per_child=None):
        if max_workers is not None and max_workers <= 0:
            raise ValueError('max_workers must be greater than 0')
        self._pool = Pool(max_workers, initializer, initargs, max_tasks_per_child,
                          context=mp_context)
        self._lock = threading.Lock()
        self._shutdown = False
        self._pending = set()

    @property
    def pool(self):
        """The Mpg.Pool underneath."""
        return self._pool

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            if self._shutdown:
                raise RuntimeError('cannot schedule new futures after shutdown')
            fid = self._pool._mpg_call_function(fn)
            arg = _call_args(args, kwargs)
            cancellable = Gio.Cancellable()
            future = _Future(cancellable)
            self._pending.add(future)
        pool = self._pool

        def done(source, res, *data):
            try:
                value, ok = _decode_result(_GIPool.apply_finish(pool, res)), True
            except GLib.Error as e:
                value, ok = _pool_error(e), False
            except Exception as e:  # noqa: B902
                value, ok = e, False
            with self._lock:
                self._pending.discard(future)
            if future.set_running_or_notify_cancel():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        _get_handler().call(lambda: _GIPool.apply_async(pool, fid, arg, cancellable, done))
        return future

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return super().map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                future.cancel()
        self._pool.close()
        if wait:
            _futures.wait(pending)
            self._pool.join()


PoolExecutor = ProcessPoolExecutor
__all__ += ['ProcessPoolExecutor', 'PoolExecutor']

# The names of multiprocessing's module that come from the C layer as they
# are: cpu_count(), current_process(), parent_process(), active_children().
for _name, _value in list(globals().items()):
    if _name in ('Process', 'Queue', 'SimpleQueue', 'JoinableQueue', 'Pipe', 'Connection',
                 'TimeoutError', 'ProcessError', 'BufferTooShort', 'AuthenticationError',
                 'RemoteError', 'get_context', 'set_start_method', 'get_all_start_methods',
                 'freeze_support', 'cpu_count', 'Lock', 'RLock', 'Semaphore',
                 'BoundedSemaphore', 'Event', 'Condition', 'Barrier', 'Value', 'Array',
                 'RawValue', 'RawArray'):
        setattr(_ForkContext, _name, staticmethod(_value) if callable(_value)
                and not isinstance(_value, type) else _value)
for _name in ('cpu_count', 'current_process', 'parent_process', 'active_children'):
    setattr(_ForkContext, _name, staticmethod(getattr(Mpg, _name)))
del _name, _value

# Under an MPI launcher (mpiexec -n N python3 app.py), the ranks other than
# 0 relay tasks to workers for rank 0's pools: they do it here, when the
# program imports Mpg, and exit when rank 0 ends; the rest of the program
# runs on rank 0 only. Anywhere else, this returns at once.
if 'MPG_WORKER' not in os.environ:
    Mpg.worker_main()
