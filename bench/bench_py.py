#!/usr/bin/python3
# bench_py.py: the benchmark workloads in Python, one run of one workload
# per invocation, one JSON object on stdout (see bench-mpg.c for the list).
#
#   bench_py.py IMPL WORKLOAD ARGS...
#
# IMPL:
#   mp      CPython's multiprocessing, fork start method
#   mpg-py  libmpg's multiprocessing-style Python layer (the PyGObject
#           override): the very same code as mp, with Mpg for the context
#   mpg-gi  libmpg's introspected (GLib-level) API from Python: GVariants,
#           function ids, milliseconds
#
# Timings include what a user of each API must do to get Python values in
# and out: pickling for multiprocessing; building the GVariant of the items
# and unpacking the result for the GI API.
#
# Copyright 2026 The libmpg authors
# SPDX-License-Identifier: LGPL-2.1-or-later

import array
import json
import os
import sys
import time


def square(x):
    return x * x


def noop():
    pass


def burn(ms):
    end = time.thread_time() + ms / 1000.0
    x = 0
    while time.thread_time() < end:
        for i in range(1000):
            x += i
    return x


def memory(pid):
    def read(path):
        rss = pss = -1
        with open(path) as f:
            for line in f:
                if line.startswith('Rss:'):
                    rss = int(line.split()[1])
                elif line.startswith('Pss:'):
                    pss = int(line.split()[1])
        return rss, pss
    prss, ppss = read('/proc/self/smaps_rollup')
    wrss, wpss = read('/proc/%d/smaps_rollup' % pid)
    return {'parent_rss_kib': prss, 'parent_pss_kib': ppss,
            'worker_rss_kib': wrss, 'worker_pss_kib': wpss}


def delays_report(delays, seconds, finish_ms=0.0):
    delays.sort()
    n = len(delays)
    return {'seconds': seconds, 'finish_ms': finish_ms,
            'worst_ms': delays[-1] if n else 0.0,
            'p99_ms': delays[int((n - 1) * 0.99)] if n else 0.0,
            'mean_ms': sum(delays) / n if n else 0.0,
            'ticks': n}


class Ticker:
    """A 1 ms GLib timeout: its lateness, in ms, at each tick."""

    def __init__(self, GLib):
        self.GLib = GLib
        self.delays = []
        self.last = None
        self.id = GLib.timeout_add(1, self.tick)

    def tick(self):
        t = time.monotonic()
        if self.last is not None:
            self.delays.append((t - self.last) * 1000.0 - 1.0)
        self.last = t
        return True

    def stop(self):
        self.GLib.source_remove(self.id)


# ---------------------------------------------------------------------------
# multiprocessing's API: mp and mpg-py

def mp_producer(q, count, size, use_queue):
    msg = bytes(size)
    put = q.put if use_queue else q.send
    for i in range(count):
        put(msg if size else i)


def count_under_lock(lock, counter, go, n):
    # Both children start together, so that they contend.
    while not go.value:
        pass
    for i in range(n):
        lock.acquire()
        counter.value += 1
        lock.release()


def run_mp_style(ctx, impl, workload, args):
    def pool(n=2):
        p = ctx.Pool(n)
        p.map(square, range(2 * n), 1)
        return p

    if workload in ('map', 'map-chunk'):
        # No chunk API in multiprocessing; the mp layer of libmpg maps
        # whole chunks by itself.
        n, chunk = int(args[0]), int(args[1])
        p = pool()
        t0 = time.perf_counter()
        r = p.map(square, range(n), chunk or None)
        s = time.perf_counter() - t0
        assert len(r) == n and (n < 8 or r[7] == 49)
        p.terminate()
        p.join()
        return {'seconds': s}

    if workload == 'apply':
        n = int(args[0])
        p = pool()
        t0 = time.perf_counter()
        for i in range(n):
            p.apply(square, (i % 1000,))
        s = time.perf_counter() - t0
        p.terminate()
        p.join()
        return {'seconds': s}

    if workload in ('queue', 'pipe'):
        count, size = int(args[0]), int(args[1])
        if workload == 'queue':
            q = ctx.Queue()
            reader = writer = q
            get = q.get
        else:
            reader, writer = ctx.Pipe(False)
            get = reader.recv
        t0 = time.perf_counter()
        proc = ctx.Process(target=mp_producer, args=(writer, count, size, workload == 'queue'))
        proc.start()
        if workload == 'pipe':
            writer.close()
        total = 0
        for i in range(count):
            v = get()
            total += len(v) if size else 0
        s = time.perf_counter() - t0
        proc.join()
        assert total == count * size
        return {'seconds': s}

    if workload == 'spawn':
        n = int(args[0])
        t0 = time.perf_counter()
        for i in range(n):
            proc = ctx.Process(target=noop)
            proc.start()
            proc.join()
        return {'seconds': time.perf_counter() - t0}

    if workload == 'cpu':
        n, workers, ms = int(args[0]), int(args[1]), int(args[2])
        p = pool(workers)
        t0 = time.perf_counter()
        p.map(burn, [ms] * n, 1)
        s = time.perf_counter() - t0
        p.terminate()
        p.join()
        return {'seconds': s}

    if workload == 'lifecycle':
        t0 = time.perf_counter()
        p = ctx.Pool(2)
        p.map(square, range(2))
        p.close()
        p.join()
        return {'seconds': time.perf_counter() - t0}

    if workload == 'gui':
        from gi.repository import GLib
        n = int(args[0])
        p = pool()
        loop = GLib.MainLoop()
        ticker = Ticker(GLib)
        out = []

        def done(result):
            # In multiprocessing's result thread: the main loop gets it,
            # then runs on for a few ticks.
            GLib.idle_add(lambda: (out.append(list(result)),
                                   GLib.timeout_add(10, loop.quit)) and False)

        t0 = time.perf_counter()
        p.map_async(square, range(n), callback=done,
                    error_callback=lambda e: (print(e, file=sys.stderr), os._exit(1)))
        loop.run()
        s = time.perf_counter() - t0
        ticker.stop()
        assert len(out[0]) == n
        p.terminate()
        p.join()
        return delays_report(ticker.delays, s)

    if workload == 'lock':
        n = int(args[0])
        lock = ctx.Lock()
        t0 = time.perf_counter()
        for i in range(n):
            lock.acquire()
            lock.release()
        return {'seconds': time.perf_counter() - t0}

    if workload == 'lock-counter':
        n = int(args[0])
        lock = ctx.Lock()
        counter = ctx.RawValue('q', 0)
        go = ctx.RawValue('i', 0)
        procs = [ctx.Process(target=count_under_lock, args=(lock, counter, go, n)) for _ in range(2)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        go.value = 1
        for proc in procs:
            proc.join()
        s = time.perf_counter() - t0
        assert counter.value == 2 * n, counter.value
        return {'seconds': s}

    if workload == 'memory':
        p = pool()
        pid = p._pool[0].pid if impl == 'mp' else p.dup_worker_pids()[0]
        time.sleep(0.2)
        r = memory(pid)
        p.terminate()
        p.join()
        return r

    raise SystemExit('unknown workload %r' % workload)


# ---------------------------------------------------------------------------
# libmpg's introspected API: mpg-gi

def run_gi(workload, args):
    from gi.repository import GLib, Mpg

    def sq(arg):
        # 'x': the squares of range(100000) do not fit an int32.
        return GLib.Variant('x', arg.unpack() ** 2)

    def pool(n=2, func=sq):
        p = Mpg.Pool.new(n)
        f = p.add_function(func)
        p.map(f, GLib.Variant('ai', list(range(2 * n))), 1, None)
        return p, f

    def done(p):
        p.terminate()
        p.join(-1)

    if workload == 'map':
        n, chunk = int(args[0]), int(args[1])
        p, f = pool()
        t0 = time.perf_counter()
        r = p.map(f, GLib.Variant('ai', range(n)), chunk, None).unpack()
        s = time.perf_counter() - t0
        assert len(r) == n and (n < 8 or r[7] == 49)
        done(p)
        return {'seconds': s}

    if workload == 'map-chunk':
        # The chunk API: one call per chunk; arrays in and out as bytes.
        def sq_chunk(items):
            a = array.array('i')
            a.frombytes(items.get_data_as_bytes().get_data())
            out = array.array('q', [x * x for x in a])
            return GLib.Variant.new_from_bytes(GLib.VariantType('ax'),
                                               GLib.Bytes.new(out.tobytes()), True)

        n, chunk = int(args[0]), int(args[1])
        p = Mpg.Pool.new(2)
        f = p.add_chunk_function(sq_chunk)
        p.map(f, GLib.Variant('ai', list(range(4))), 1, None)
        t0 = time.perf_counter()
        items = GLib.Variant.new_from_bytes(GLib.VariantType('ai'),
                                            GLib.Bytes.new(array.array('i', range(n)).tobytes()), True)
        r = p.map(f, items, chunk, None)
        a = array.array('q')
        a.frombytes(r.get_data_as_bytes().get_data())
        r = a.tolist()
        s = time.perf_counter() - t0
        assert len(r) == n and (n < 8 or r[7] == 49)
        done(p)
        return {'seconds': s}

    if workload == 'apply':
        n = int(args[0])
        p, f = pool()
        t0 = time.perf_counter()
        for i in range(n):
            p.apply(f, GLib.Variant('i', i % 1000), None).unpack()
        s = time.perf_counter() - t0
        done(p)
        return {'seconds': s}

    if workload in ('queue', 'pipe'):
        count, size = int(args[0]), int(args[1])
        if workload == 'queue':
            q = Mpg.Queue.new(0)
            put = lambda v: q.put(v, True, -1, None)
            get = lambda: q.get(True, -1, None)
        else:
            ok, reader, writer = Mpg.pipe_new(False)
            put = lambda v: writer.send(v, None)
            get = lambda: reader.recv(None)

        def producer(arg):
            if size:
                msg = GLib.Variant.new_from_bytes(GLib.VariantType('ay'),
                                                  GLib.Bytes.new(bytes(size)), True)
                for i in range(count):
                    put(msg)
            else:
                for i in range(count):
                    put(GLib.Variant('i', i))
            return None

        t0 = time.perf_counter()
        proc = Mpg.Process.new(None, producer)
        proc.start()
        if workload == 'pipe':
            writer.close()
        total = 0
        for i in range(count):
            v = get()
            if size:
                total += len(v.get_data_as_bytes().get_data())
            else:
                v.unpack()
        s = time.perf_counter() - t0
        proc.join(-1, None)
        assert total == count * size
        return {'seconds': s}

    if workload == 'spawn':
        n = int(args[0])
        t0 = time.perf_counter()
        for i in range(n):
            proc = Mpg.Process.new(None, lambda arg: None)
            proc.start()
            proc.join(-1, None)
        return {'seconds': time.perf_counter() - t0}

    if workload == 'cpu':
        n, workers, ms = int(args[0]), int(args[1]), int(args[2])

        def task(arg):
            burn(ms)
            return arg

        p, f = pool(workers, task)
        t0 = time.perf_counter()
        p.map(f, GLib.Variant('ai', range(n)), 1, None).unpack()
        s = time.perf_counter() - t0
        done(p)
        return {'seconds': s}

    if workload == 'lifecycle':
        t0 = time.perf_counter()
        p = Mpg.Pool.new(2)
        f = p.add_function(sq)
        p.map(f, GLib.Variant('ai', range(2)), 0, None).unpack()
        p.close()
        p.join(-1)
        return {'seconds': time.perf_counter() - t0}

    if workload == 'gui':
        n = int(args[0])
        p, f = pool()
        loop = GLib.MainLoop()
        ticker = Ticker(GLib)
        out = []

        def finished(pool_, res, *data):
            t = time.perf_counter()
            out.append(pool_.map_finish(res).unpack())
            out.append((time.perf_counter() - t) * 1e3)
            # The loop runs on for a few ticks, so that the time this
            # callback took shows in the delay of the next tick.
            GLib.timeout_add(10, loop.quit)

        t0 = time.perf_counter()
        p.map_async(f, GLib.Variant('ai', range(n)), 0, None, finished)
        loop.run()
        s = time.perf_counter() - t0
        ticker.stop()
        assert len(out[0]) == n
        done(p)
        return delays_report(ticker.delays, s, out[1])

    if workload == 'memory':
        p, f = pool()
        pid = p.dup_worker_pids()[0]
        time.sleep(0.2)
        r = memory(pid)
        done(p)
        return r

    if workload == 'lock':
        n = int(args[0])
        lock = Mpg.Lock.new()
        t0 = time.perf_counter()
        for i in range(n):
            lock.acquire(-1, None)
            lock.release()
        return {'seconds': time.perf_counter() - t0}

    if workload == 'lock-counter':
        n = int(args[0])
        lock = Mpg.Lock.new()
        counter = Mpg.Array.new_raw('q', 2)   # [0]: the counter; [1]: go

        def count(arg):
            while counter.get(1).unpack() == 0:
                pass
            for i in range(n):
                lock.acquire(-1, None)
                counter.set(0, GLib.Variant('x', counter.get(0).unpack() + 1))
                lock.release()
            return None

        procs = [Mpg.Process.new(None, count) for _ in range(2)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        counter.set(1, GLib.Variant('x', 1))
        for proc in procs:
            proc.join(-1, None)
        s = time.perf_counter() - t0
        assert counter.get(0).unpack() == 2 * n
        return {'seconds': s}

    raise SystemExit('unknown workload %r' % workload)


def main():
    impl, workload, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if impl == 'mp':
        import multiprocessing
        result = run_mp_style(multiprocessing.get_context('fork'), impl, workload, args)
    else:
        import gi
        gi.require_version('Mpg', '1.0')
        from gi.repository import Mpg
        if impl == 'mpg-py':
            result = run_mp_style(Mpg.get_context('fork'), impl, workload, args)
        elif impl == 'mpg-gi':
            result = run_gi(workload, args)
        else:
            raise SystemExit('unknown implementation %r' % impl)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
