// test-pool.js: mpg.js's Pool from GJS, with spawned gjs workers
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Tasks are self-contained functions (sent as source text) or exports of
// tasks.js (found by module URL and name). TAP output.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Mpg from 'gi://Mpg?version=1.0';
import * as mpg from '../../bindings/gjs/mpg.js';
import {test, check, equal, show, rejects, throws, run, exit} from './tap.js';

const TASKS = GLib.Uri.resolve_relative(import.meta.url, 'tasks.js', GLib.UriFlags.NONE);
const task = name => mpg.task(TASKS, name);

const pool = new mpg.Pool(2);

test('the default start method is spawn', () => {
    check(Mpg.get_start_method() === Mpg.StartMethod.SPAWN, 'Mpg.get_start_method() is SPAWN');
    equal(mpg.getStartMethod(), 'spawn', 'getStartMethod()');
    check(throws(() => mpg.setStartMethod('fork')) instanceof Error, 'setStartMethod(\'fork\') throws');
    check(!mpg.isWorker, 'the test is not a worker');
    equal(pool.processes, 2, 'processes');
});

test('map of a self-contained function', async () => {
    equal(await pool.map(x => x * x, [1, 2, 3]), [1, 4, 9], 'map(x => x * x, [1, 2, 3])');
    equal(await pool.map(function f(x) {
        return x * x;
    }, [1, 2, 3]), [1, 4, 9], 'map(function f, [1, 2, 3])');
    equal(await pool.map(x => x, []), [], 'map over no items');
    equal(pool.mapSync(x => -x, [1, 2, 3]), [-1, -2, -3], 'mapSync()');
    equal(await pool.map(x => x + 1, [1, 2, 3, 4, 5, 6, 7], {chunksize: 3}),
        [2, 3, 4, 5, 6, 7, 8], 'map() with a chunksize');
    equal(await pool.map(s => s.toUpperCase(), new Set(['a', 'b'])), ['A', 'B'],
        'map() over an iterable');
    const pids = await pool.map(async () => {
        const {default: Mpg} = await import('gi://Mpg');
        return Mpg.current_process().pid;
    }, Array.from({length: 8}, (_, i) => i), {chunksize: 1});
    check(pids.every(pid => pool.workerPids.includes(pid)),
        `tasks ran in the pool's workers (${[...new Set(pids)]} of ${pool.workerPids})`);
});

test('tasks named by module URL and export', async () => {
    equal(await pool.map(task('square'), [1, 2, 3]), [1, 4, 9], 'map(task(square))');
    equal(await pool.map([TASKS, 'square'], [4]), [16], 'a task as [URL, name]');
    equal(await pool.map(`${TASKS}#square`, [5]), [25], 'a task as "URL#name"');
    equal(await pool.apply(task('addLater'), [2, 3]), 5, 'apply() of an async task');
    equal(pool.applySync(task('addLater'), [20, 3]), 23, 'applySync()');
    equal(await pool.starmap(task('addLater'), [[1, 2], [3, 4]]), [3, 7], 'starmap()');
    equal(pool.starmapSync((a, b) => a * b, [[2, 3], [4, 5]]), [6, 20], 'starmapSync()');
});

test('imap and imapUnordered', async () => {
    const ordered = [];
    for await (const y of pool.imap(x => x * 10, [1, 2, 3, 4]))
        ordered.push(y);
    equal(ordered, [10, 20, 30, 40], 'imap() in order');
    const unordered = [];
    for await (const y of pool.imapUnordered(x => x * 10, [1, 2, 3, 4]))
        unordered.push(y);
    equal(unordered.sort((a, b) => a - b), [10, 20, 30, 40], 'imapUnordered() gives every result');
});

test('plain values round-trip', async () => {
    const values = [
        0, 1, -1, 2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER,
        0.5, -0, NaN, Infinity, -Infinity, 1e300,
        2n ** 62n, -(2n ** 63n),
        '', 'hello', 'été ☃ 𝄞', 'a\0b', '\uD800 lone', 'lone \uDC00',
        true, false, null,
        [], [1, 2, 3], [1.5, 2], [2 ** 40, 1], ['a', 'b'], [true, false], [1, 'a', null, [2, [3]]],
        {}, {a: 1, b: 'two', c: [3], d: {e: null}, 'with space': true, '': 0},
        new Uint8Array([0, 1, 254, 255]), new Uint8Array(),
        [new Uint8Array([7]), {x: new Uint8Array([8])}],
    ];
    const back = await pool.map(task('identity'), values);
    for (let i = 0; i < values.length; i++)
        equal(back[i], values[i], `round trip of ${show(values[i])}`);
    equal(mpg.fromVariant(mpg.toVariant(undefined)), null, 'undefined arrives as null');
    equal(await pool.apply(x => x, [[undefined, {u: undefined}]]), [null, {u: null}],
        'undefined inside containers arrives as null');
    equal(mpg.fromVariant(mpg.toVariant(2n ** 60n)), 2n ** 60n,
        'an int64 past 2^53 arrives as a bigint');
    equal(mpg.toVariant([1, 2, 3]).get_type_string(), 'ai', 'an array of int32s is an ai');
    equal(mpg.toVariant([1.5, 2]).get_type_string(), 'ad', 'an array of numbers is an ad');
    equal(mpg.toVariant(['a']).get_type_string(), 'as', 'an array of strings is an as');
    equal(mpg.toVariant({a: 1}).get_type_string(), 'a{sv}', 'an object is an a{sv}');
    equal(mpg.toVariant(null).get_type_string(), 'mv', 'null is an empty mv');
    const variant = new GLib.Variant('(si)', ['x', 1]);
    equal(await pool.apply(v => v, [variant]), ['x', 1], 'a GLib.Variant is sent as it is');
});

test('values that cannot be sent fail in the caller', async () => {
    for (const [value, what] of [
        [() => 1, 'a function'], [new Map(), 'a Map'], [Symbol('s'), 'a symbol'],
        [new (class Point {})(), 'a class instance'], [2n ** 64n, 'a bigint past 64 bits'],
        [new mpg.Queue(), 'a queue sent to a pool'],
    ]) {
        const e = await rejects(pool.map(x => x, [value]));
        check(e instanceof TypeError && /cannot send/.test(e.message),
            `${what}: TypeError before sending (${e})`);
    }
    let deep = [];
    for (let i = 0; i < 100; i++)
        deep = [deep];
    const e = throws(() => mpg.toVariant(deep));
    check(e instanceof TypeError && /nest/.test(e.message), `too deep a value: ${e}`);
});

test('errors thrown in a task', async () => {
    let e = await rejects(pool.map(task('failWithTypeError'), [1, 2]));
    check(e instanceof TypeError, `a TypeError arrives as a TypeError (${e?.constructor?.name})`);
    equal(e?.message, 'not a good value: 1', 'with the remote message, of the first failed item');
    check(/failWithTypeError@.*tasks\.js:\d+/.test(e?.stack), 'and the remote stack');
    equal(e?.stack, e?.remoteStack, 'stack and remoteStack');

    e = await rejects(pool.apply(task('failWithCustomError')));
    check(e instanceof Error && e.name === 'CustomError' && e.message === 'custom trouble',
        `a custom error keeps its name and message (${e})`);

    e = await rejects(pool.apply(task('failWithValue')));
    check(e instanceof Error && e.message === 'a string', `a thrown string arrives as an Error (${e})`);

    e = await rejects(pool.apply(task('failLater')));
    check(e instanceof RangeError && e.message === 'async trouble',
        `a rejected async task arrives as its error (${e})`);

    e = await rejects(pool.apply(task('failWithGError')));
    check(e instanceof GLib.Error && e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.NOT_FOUND),
        `a GLib.Error keeps its domain and code (${e})`);
    equal(e?.message, 'nothing here', 'and its message');
    check(/failWithGError@/.test(e?.stack), 'and has the remote stack');

    e = await rejects(pool.map(x => {
        throw new SyntaxError(`source ${x}`);
    }, [7]));
    check(e instanceof SyntaxError && e.message === 'source 7',
        `an error in a function sent as source (${e})`);

    e = throws(() => pool.mapSync(task('failWithTypeError'), [3]));
    check(e instanceof TypeError && e.message === 'not a good value: 3', `mapSync() throws it (${e})`);

    const captured = 3;
    e = await rejects(pool.map(x => x + captured, [1]));
    check(e instanceof ReferenceError && /captured/.test(e.message) && /as source/.test(e.message),
        `a function that uses a captured variable: a clear ReferenceError (${e?.message})`);

    e = await rejects(pool.map(task('noSuchExport'), [1]));
    check(e instanceof GLib.Error && e.matches(Mpg.Error, Mpg.Error.UNKNOWN_TASK) &&
        /noSuchExport/.test(e.message), `an unknown export: UNKNOWN_TASK (${e})`);

    e = await rejects(pool.map(mpg.task('file:///nonexistent/module.js', 'f'), [1]));
    check(e instanceof GLib.Error && e.matches(Mpg.Error, Mpg.Error.UNKNOWN_TASK),
        `an unknown module: UNKNOWN_TASK (${e})`);

    e = throws(() => pool.mapSync(Math.max, [1]));
    check(e instanceof TypeError && /native/.test(e.message), `a native function: TypeError (${e})`);
    const object = {
        method(x) {
            return x;
        },
    };
    e = throws(() => pool.mapSync(object.method, [1]));
    check(e instanceof TypeError && /function expression/.test(e.message),
        `a method: TypeError (${e})`);

    equal(await pool.map(x => x * 2, [1, 2]), [2, 4], 'the pool works after errors');
});

test('a worker that dies fails the call, and the pool goes on', async () => {
    const e = await rejects(pool.apply(task('exitNow'), [3]));
    check(e instanceof GLib.Error && e.matches(Mpg.Error, Mpg.Error.WORKER_DIED),
        `WORKER_DIED (${e})`);
    equal(await pool.map(x => x + 1, [1, 2, 3]), [2, 3, 4], 'the pool works afterwards');
});

test('a GLib timer keeps firing while a map is awaited', async () => {
    let ticks = 0;
    let worst = 0;
    let last = GLib.get_monotonic_time();
    const timer = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 10, () => {
        const now = GLib.get_monotonic_time();
        worst = Math.max(worst, now - last);
        last = now;
        ticks++;
        return GLib.SOURCE_CONTINUE;
    });
    const start = GLib.get_monotonic_time();
    const result = await pool.map(task('busy'), [150, 150, 150, 150], {chunksize: 1});
    const elapsed = (GLib.get_monotonic_time() - start) / 1000;
    GLib.source_remove(timer);
    equal(result, [150, 150, 150, 150], 'the map completed');
    check(elapsed >= 290, `the map took a while (${elapsed.toFixed(0)} ms)`);
    check(ticks >= elapsed / 10 / 4, `the timer fired ${ticks} times in ${elapsed.toFixed(0)} ms`);
    check(worst < 150000, `its worst gap was ${(worst / 1000).toFixed(1)} ms`);
});

test('cancellation', async () => {
    const cancellable = new Gio.Cancellable();
    const promise = pool.map(task('busy'), [200, 200, 200, 200, 200, 200], {chunksize: 1, cancellable});
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 50, () => {
        cancellable.cancel();
        return GLib.SOURCE_REMOVE;
    });
    const start = GLib.get_monotonic_time();
    const e = await rejects(promise);
    const elapsed = (GLib.get_monotonic_time() - start) / 1000;
    check(e instanceof GLib.Error && e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED),
        `a cancelled map rejects with CANCELLED (${e})`);
    check(elapsed < 600, `promptly (${elapsed.toFixed(0)} ms)`);
});

test('close and join', async () => {
    const other = new mpg.Pool(1);
    equal(await other.map(x => x, [1]), [1], 'a second pool works');
    other.close();
    check(other.join(30000), 'join() after close()');
    const e = throws(() => other.mapSync(x => x, [1]));
    check(e instanceof GLib.Error && e.matches(Mpg.Error, Mpg.Error.INVALID_STATE),
        `a closed pool refuses work (${e})`);
});

test('an initializer sets module state that the tasks read', async () => {
    const init = new mpg.Pool(2, {initializer: task('initialize'), initargs: ['a', 2, {b: [3]}]});
    const got = await init.map(task('readInitialized'), [1, 2, 3, 4, 5, 6], {chunksize: 1});
    equal(got.map(([values]) => values), Array(6).fill(['a', 2, {b: [3]}]),
        'every task sees the initargs that the initializer kept');
    check(got.every(([, here]) => here), 'the initializer ran in the worker that runs the task');
    equal(got.map(([, , x]) => x), [1, 2, 3, 4, 5, 6], 'with the task\'s own argument');
    init.terminate();
    init.join();

    const source = new mpg.Pool(1, {
        initializer: (a, b) => {
            globalThis.initialized = a + b;
        },
        initargs: [40, 2],
    });
    equal(source.applySync(x => [globalThis.initialized, x], ['y']), [42, 'y'],
        'an initializer sent as source sets a global that a task sent as source reads');
    source.terminate();
    source.join();

    const none = new mpg.Pool(1, {initializer: task('initialize')});
    equal(await none.apply(task('readInitialized'), [0]), [[], true, 0],
        'initargs default to no arguments');
    none.terminate();
    none.join();
});

test('an initializer that receives a Queue: the tasks put, the parent gets', async () => {
    const queue = new mpg.Queue();
    const qpool = new mpg.Pool(2, {initializer: task('keepResults'), initargs: [queue, 'q']});
    equal(await qpool.map(task('putResult'), [1, 2, 3, 4, 5, 6, 7, 8], {chunksize: 1}),
        [1, 2, 3, 4, 5, 6, 7, 8], 'the map completed');
    const got = [];
    for (let i = 0; i < 8; i++)
        got.push(queue.get({timeout: 10000}));
    equal(got.map(([, , v]) => v).sort((a, b) => a - b), [10, 20, 30, 40, 50, 60, 70, 80],
        'the parent got every value that the tasks put');
    check(got.every(([tag, pid]) => tag === 'q' && qpool.workerPids.includes(pid)),
        'from the pool\'s workers, with the other initarg');
    check(queue.empty(), 'and nothing more');
    // A worker that replaces one gets the queue too.
    const e = await rejects(qpool.apply(task('exitNow'), [3]));
    check(e instanceof GLib.Error && e.matches(Mpg.Error, Mpg.Error.WORKER_DIED),
        `a worker died (${e})`);
    equal(await qpool.map(task('putResult'), [9, 10], {chunksize: 1}), [9, 10],
        'the pool works afterwards');
    equal([queue.get({timeout: 10000})[2], queue.get({timeout: 10000})[2]].sort((a, b) => a - b),
        [90, 100], 'and its replacement worker has the queue');
    qpool.terminate();
    qpool.join();

    const recycled = new mpg.Pool(1, {
        initializer: task('keepResults'), initargs: [queue, 'r'], maxtasksperchild: 1,
    });
    equal(await recycled.map(task('putResult'), [1, 2, 3], {chunksize: 1}), [1, 2, 3],
        'with maxtasksperchild 1');
    const pids = new Set();
    for (let i = 0; i < 3; i++)
        pids.add(queue.get({timeout: 10000})[1]);
    equal(pids.size, 3, 'three workers, each initialized with the queue');
    recycled.terminate();
    recycled.join();
});

test('an initializer that receives a Connection', async () => {
    const [reader, writer] = mpg.Pipe(false);
    const cpool = new mpg.Pool(1, {initializer: task('keepConnection'), initargs: [writer]});
    equal(await cpool.map(task('sendResult'), [1, 2, 3]), [1, 2, 3], 'the map completed');
    equal([reader.recv(), reader.recv(), reader.recv()], [101, 102, 103],
        'the parent received what the tasks sent');
    cpool.terminate();
    cpool.join();
});

test('a failing or unsendable initializer', async () => {
    const failing = new mpg.Pool(1, {initializer: task('failToInitialize')});
    const e = await rejects(failing.map(x => x, [1]));
    check(e instanceof RangeError && e.message === 'Pool initializer failed: no start',
        `the pool's calls fail with the initializer's error (${e})`);
    check(/failToInitialize@.*tasks\.js:\d+/.test(e?.stack), 'with its remote stack');
    const again = throws(() => failing.applySync(x => x, [1]));
    check(again instanceof RangeError && /Pool initializer failed/.test(again.message),
        `and so do later calls (${again})`);
    failing.terminate();
    failing.join();

    check(throws(() => new mpg.Pool(1, {initializer: Math.max})) instanceof TypeError,
        'a native initializer: TypeError');
    check(throws(() => new mpg.Pool(1, {initializer: task('initialize'), initargs: 1})) instanceof
        TypeError, 'initargs that are not an array: TypeError');
    check(throws(() => new mpg.Pool(1, {initializer: task('initialize'), initargs: [() => 1]})) instanceof
        TypeError, 'unsendable initargs: TypeError');
});

const status = await run();
pool.terminate();
pool.join();
exit(status);
