// test-queue.js: Mpg.Queue and Mpg.pipe_new from GJS, through GObject
// introspection
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// JS must never run in a forked child (SpiderMonkey's helper threads do not
// survive a fork), so everything here happens in one process: a queue or a
// pipe works the same between two objects of one process as between
// processes. Async calls use callbacks and a GLib main loop with a timeout
// guard, no Promise. Exits with a non-zero status if a check fails.

import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Mpg from 'gi://Mpg?version=1.0';
import System from 'system';

const TIMEOUT_MS = 30000;
const SEED_TEXT = "[<42>, <@mv nothing>, <'hello'>]";

// Results are printed as TAP.
let checks = 0;
let failures = 0;

function check(condition, what) {
    checks++;
    print(`${condition ? 'ok' : 'not ok'} ${checks} - ${what}`);
    if (!condition)
        failures++;
}

// Runs fn, which must throw a GLib.Error of the domain and code given.
function checkThrows(fn, domain, code, what) {
    try {
        fn();
        check(false, `${what}: no error`);
    } catch (e) {
        const matches = e instanceof GLib.Error && e.matches(domain, code);
        check(matches, `${what} (got ${e})`);
    }
}

// Runs a main loop until quit, or the guard's timeout: returns whether it
// completed in time.
function runLoop(loop) {
    let timedOut = false;
    const guard = GLib.timeout_add(GLib.PRIORITY_DEFAULT, TIMEOUT_MS, () => {
        timedOut = true;
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    loop.run();
    if (!timedOut)
        GLib.source_remove(guard);
    return !timedOut;
}

function seedValue() {
    // Python's [42, None, 'hello']: an array of variants, None an empty maybe.
    return new GLib.Variant('av', [
        new GLib.Variant('i', 42),
        new GLib.Variant('mv', null),
        new GLib.Variant('s', 'hello'),
    ]);
}

function pipe(duplex) {
    // The boolean return of the C function comes first, then the two ends.
    const [ok, first, second] = Mpg.pipe_new(duplex);
    check(ok === true, `pipe_new(${duplex}) returned true`);
    check(first instanceof Mpg.Connection && second instanceof Mpg.Connection,
        `pipe_new(${duplex}) gave two connections`);
    return [first, second];
}

// Queues

function testQueuePutGet() {
    const q = Mpg.Queue.new(0);
    check(q.get_maxsize() === 0, 'maxsize 0');
    check(!q.get_joinable(), 'a plain queue is not joinable');
    check(q.empty(), 'a new queue is empty');

    check(q.put(seedValue(), true, TIMEOUT_MS, null) === true, 'put the seed value');
    check(q.qsize() === 1, `qsize 1 (got ${q.qsize()})`);
    const value = q.get(true, TIMEOUT_MS, null);
    check(value.get_type_string() === 'av', `got an av (got ${value.get_type_string()})`);
    check(value.print(false) === SEED_TEXT, `got the seed value (got ${value.print(false)})`);
    check(JSON.stringify(value.recursiveUnpack()) === '[42,null,"hello"]',
        `unpacks to [42, null, 'hello'] (got ${JSON.stringify(value.recursiveUnpack())})`);

    for (let i = 0; i < 10; i++)
        q.put(new GLib.Variant('(is)', [i, `m${i}`]), false, 0, null);
    const got = [];
    for (let i = 0; i < 10; i++)
        got.push(q.get(false, 0, null).deepUnpack());
    check(got.every(([i, s], k) => i === k && s === `m${k}`), 'first in, first out');
}

function testQueueEmptyAndFull() {
    const q = Mpg.Queue.new(2);
    check(q.get_maxsize() === 2, 'maxsize 2');
    checkThrows(() => q.get(false, 0, null), Mpg.error_quark(), Mpg.Error.EMPTY,
        'non-blocking get from an empty queue fails with EMPTY');

    const start = GLib.get_monotonic_time();
    checkThrows(() => q.get(true, 200, null), Mpg.error_quark(), Mpg.Error.EMPTY,
        'get with a timeout from an empty queue fails with EMPTY');
    const elapsedMs = (GLib.get_monotonic_time() - start) / 1000;
    check(elapsedMs >= 150 && elapsedMs < 10000, `the get waited its timeout (${elapsedMs} ms)`);

    q.put(new GLib.Variant('i', 1), false, 0, null);
    q.put(new GLib.Variant('i', 2), false, 0, null);
    check(q.full(), 'full at maxsize');
    checkThrows(() => q.put(new GLib.Variant('i', 3), false, 0, null),
        Mpg.error_quark(), Mpg.Error.FULL, 'non-blocking put to a full queue fails with FULL');
    checkThrows(() => q.put(new GLib.Variant('i', 3), true, 100, null),
        Mpg.error_quark(), Mpg.Error.FULL, 'put with a timeout to a full queue fails with FULL');
    check(q.get(false, 0, null).get_int32() === 1, 'the first message is still first');
    check(!q.full(), 'not full after a get');
}

function testQueueJoinable() {
    const q = Mpg.Queue.new_joinable(0);
    check(q.get_joinable(), 'new_joinable() makes a joinable queue');
    check(q.join(TIMEOUT_MS, null) === true, 'join of an empty joinable queue');
    q.put(new GLib.Variant('i', 1), true, TIMEOUT_MS, null);
    q.put(new GLib.Variant('i', 2), true, TIMEOUT_MS, null);
    checkThrows(() => q.join(100, null), Mpg.error_quark(), Mpg.Error.TIMEOUT,
        'join times out while tasks are unfinished');
    q.get(true, TIMEOUT_MS, null);
    q.task_done();
    checkThrows(() => q.join(100, null), Mpg.error_quark(), Mpg.Error.TIMEOUT,
        'join times out while one task is unfinished');
    q.get(true, TIMEOUT_MS, null);
    q.task_done();
    check(q.join(TIMEOUT_MS, null) === true, 'join returns once every task is done');
    checkThrows(() => q.task_done(), Mpg.error_quark(), Mpg.Error.INVALID_STATE,
        'task_done called too many times fails with INVALID_STATE');
}

function testQueueGetAsync() {
    const q = Mpg.Queue.new(0);
    const loop = new GLib.MainLoop(null, false);
    let result = null;
    let ticked = false;

    q.get_async(null, (queue, res) => {
        try {
            result = queue.get_finish(res);
        } catch (e) {
            result = e;
        }
        loop.quit();
    });
    // The loop runs meanwhile: a timeout puts the message later.
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 50, () => {
        ticked = true;
        q.put(seedValue(), true, TIMEOUT_MS, null);
        return GLib.SOURCE_REMOVE;
    });
    const inTime = runLoop(loop);

    check(inTime, 'get_async completed in time');
    check(ticked, 'the loop ran while get_async waited');
    check(result instanceof GLib.Variant && result.print(false) === SEED_TEXT,
        `get_finish() returned the seed value (got ${result})`);
}

function testQueueGetAsyncCancelled() {
    const q = Mpg.Queue.new(0);
    const loop = new GLib.MainLoop(null, false);
    const cancellable = new Gio.Cancellable();
    let error = null;

    q.get_async(cancellable, (queue, res) => {
        try {
            queue.get_finish(res);
        } catch (e) {
            error = e;
        }
        loop.quit();
    });
    GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
        cancellable.cancel();
        return GLib.SOURCE_REMOVE;
    });
    const inTime = runLoop(loop);

    check(inTime, 'the cancelled get_async completed in time');
    check(error !== null && error.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED),
        `get_finish() failed with CANCELLED (got ${error})`);
    q.put(new GLib.Variant('i', 5), true, TIMEOUT_MS, null);
    check(q.get(false, 0, null).get_int32() === 5, 'the cancelled get took nothing');
}

function testQueueAddWatch() {
    const q = Mpg.Queue.new(0);
    const loop = new GLib.MainLoop(null, false);
    const seen = [];

    const id = q.add_watch((queue, value) => {
        seen.push(value.get_int32());
        if (seen.length === 3) {
            loop.quit();
            return GLib.SOURCE_REMOVE;
        }
        return GLib.SOURCE_CONTINUE;
    });
    check(id > 0, `add_watch() returned a source id (got ${id})`);
    for (let i = 0; i < 4; i++)
        q.put(new GLib.Variant('i', i * 10), true, TIMEOUT_MS, null);
    const inTime = runLoop(loop);

    check(inTime, 'the watch saw three messages in time');
    check(JSON.stringify(seen) === '[0,10,20]', `the watch saw 0, 10, 20 (got ${seen})`);
    check(q.get(false, 0, null).get_int32() === 30,
        'the watch stopped after returning SOURCE_REMOVE');
}

function testQueueClose() {
    const q = Mpg.Queue.new(0);
    q.close();
    checkThrows(() => q.put(new GLib.Variant('i', 1), true, TIMEOUT_MS, null),
        Mpg.error_quark(), Mpg.Error.CLOSED, 'put after close() fails with CLOSED');
    checkThrows(() => q.get(false, 0, null), Mpg.error_quark(), Mpg.Error.CLOSED,
        'get after close() fails with CLOSED');
}

function testQueueHandle() {
    const q = Mpg.Queue.new(0);
    const fds = Gio.UnixFDList.new();
    const handle = q.to_handle(fds);
    check(fds.get_length() > 0, `to_handle() appended fds (${fds.get_length()})`);
    const copy = Mpg.Queue.new_from_handle(handle, fds);
    q.put(new GLib.Variant('s', 'via the copy'), true, TIMEOUT_MS, null);
    check(copy.get(true, TIMEOUT_MS, null).get_string()[0] === 'via the copy',
        'a queue rebuilt from its handle is the same queue');
}

// Pipes

function testPipeDuplex() {
    const [a, b] = pipe(true);
    check(a.get_readable() && a.get_writable() && b.get_readable() && b.get_writable(),
        'both ends of a duplex pipe read and write');
    check(!a.get_closed(), 'a new end is not closed');

    check(!b.poll(0, null), 'poll(0) is false with nothing to receive');
    a.send(seedValue(), null);
    check(b.poll(0, null), 'poll(0) is true once a message waits');
    check(b.poll(TIMEOUT_MS, null), 'poll() does not take the message');
    const value = b.recv(null);
    check(value.print(false) === SEED_TEXT,
        `recv() got the seed value (got ${value.print(false)})`);
    check(!b.poll(0, null), 'poll(0) is false again after recv()');

    b.send(new GLib.Variant('s', 'back'), null);
    check(a.recv(null).get_string()[0] === 'back', 'the other direction');
}

function testPipeOneWay() {
    const [r, w] = pipe(false);
    check(r.get_readable() && !r.get_writable(), 'the first end of a one-way pipe receives');
    check(w.get_writable() && !w.get_readable(), 'the second end of a one-way pipe sends');
    w.send(new GLib.Variant('i', 3), null);
    check(r.recv(null).get_int32() === 3, 'a message through a one-way pipe');
}

function testPipeBytes() {
    const [a, b] = pipe(true);
    a.send_bytes(new GLib.Bytes(new Uint8Array([0, 1, 2, 255])), null);
    const got = b.recv_bytes(null);
    check(got instanceof GLib.Bytes, 'recv_bytes() returns a GLib.Bytes');
    check(Array.from(got.toArray()).join(',') === '0,1,2,255',
        `send_bytes()/recv_bytes() (got ${Array.from(got.toArray())})`);
}

function testPipePollTimeout() {
    const [a, b] = pipe(true);
    const start = GLib.get_monotonic_time();
    check(!b.poll(200, null), 'poll(200) is false with nothing to receive');
    const elapsedMs = (GLib.get_monotonic_time() - start) / 1000;
    check(elapsedMs >= 150 && elapsedMs < 10000, `poll waited its timeout (${elapsedMs} ms)`);
    a.close();
}

function testPipeEndOfStream() {
    const [a, b] = pipe(true);
    a.send(new GLib.Variant('s', 'before close'), null);
    a.close();
    check(a.get_closed(), 'closed after close()');
    check(b.recv(null).get_string()[0] === 'before close', 'what was sent before close() arrives');
    check(b.poll(0, null), 'poll() is true at end of stream');
    checkThrows(() => b.recv(null), Mpg.error_quark(), Mpg.Error.END_OF_STREAM,
        'recv() after the peer closed fails with END_OF_STREAM');
    checkThrows(() => a.send(new GLib.Variant('i', 1), null), Mpg.error_quark(), Mpg.Error.CLOSED,
        'send() on a closed end fails with CLOSED');
}

function testPipeRecvAsync() {
    const [a, b] = pipe(true);
    const loop = new GLib.MainLoop(null, false);
    let result = null;

    b.recv_async(null, (conn, res) => {
        try {
            result = conn.recv_finish(res);
        } catch (e) {
            result = e;
        }
        loop.quit();
    });
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 50, () => {
        a.send(seedValue(), null);
        return GLib.SOURCE_REMOVE;
    });
    const inTime = runLoop(loop);

    check(inTime, 'recv_async completed in time');
    check(result instanceof GLib.Variant && result.print(false) === SEED_TEXT,
        `recv_finish() returned the seed value (got ${result})`);
}

function testPipeRecvAsyncEndOfStream() {
    const [a, b] = pipe(true);
    const loop = new GLib.MainLoop(null, false);
    let error = null;

    b.recv_async(null, (conn, res) => {
        try {
            conn.recv_finish(res);
        } catch (e) {
            error = e;
        }
        loop.quit();
    });
    GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
        a.close();
        return GLib.SOURCE_REMOVE;
    });
    const inTime = runLoop(loop);

    check(inTime, 'recv_async at end of stream completed in time');
    check(error !== null && error.matches(Mpg.error_quark(), Mpg.Error.END_OF_STREAM),
        `recv_finish() failed with END_OF_STREAM (got ${error})`);
}

function testPipeFds() {
    const [a, b] = pipe(true);
    // Send an end of another pipe: its fd travels with the message.
    const [inner, other] = pipe(true);
    const fds = Gio.UnixFDList.new();
    const index = fds.append(other.get_fd());
    a.send_with_fds(new GLib.Variant('(sh)', ['fd', index]), fds, null);
    for (const fd of fds.steal_fds())
        GLib.close(fd);
    const [value, gotFds] = b.recv_with_fds(null);
    const [name, gotIndex] = value.deepUnpack();
    check(name === 'fd' && gotIndex === 0 && gotFds !== null && gotFds.get_length() === 1,
        'recv_with_fds() got the message and one fd');

    // The received fd is a live copy of other's socket: it keeps the
    // stream open after other is closed, and closing it ends the stream.
    other.close();
    check(!inner.poll(0, null), 'the received fd keeps the peer open');
    for (const fd of gotFds.steal_fds())
        GLib.close(fd);
    check(inner.poll(TIMEOUT_MS, null), 'closing the received fd ends the stream');
    checkThrows(() => inner.recv(null), Mpg.error_quark(), Mpg.Error.END_OF_STREAM,
        'recv() once the received fd is closed fails with END_OF_STREAM');
}

function testPipeHandle() {
    const [a, b] = pipe(true);
    const fds = Gio.UnixFDList.new();
    const handle = b.to_handle(fds);
    const copy = Mpg.Connection.new_from_handle(handle, fds);
    b.close();
    a.send(new GLib.Variant('s', 'to the copy'), null);
    check(copy.recv(null).get_string()[0] === 'to the copy',
        'a connection rebuilt from its handle is the same end');
}

// multiprocessing.connection.wait()

function testWait() {
    const [a, b] = pipe(true);
    const [c, d] = pipe(true);
    let ready = Mpg.wait([b, d], 0, null);
    check(Array.isArray(ready) && ready.length === 0,
        `wait() with nothing ready returns an empty array (got ${ready})`);
    c.send(new GLib.Variant('i', 1), null);
    ready = Mpg.wait([b, d], TIMEOUT_MS, null);
    check(ready.length === 1 && ready[0] === d, 'wait() returns the ready connection');
    a.send(new GLib.Variant('i', 2), null);
    ready = Mpg.wait([d, b], TIMEOUT_MS, null);
    check(ready.length === 2 && ready[0] === d && ready[1] === b,
        'wait() returns the ready objects in the order given');
    checkThrows(() => Mpg.wait([b, new Gio.Cancellable()], 0, null),
        Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_ARGUMENT,
        'wait() on an object of another type fails with INVALID_ARGUMENT');
}

const tests = [
    testQueuePutGet,
    testQueueEmptyAndFull,
    testQueueJoinable,
    testQueueGetAsync,
    testQueueGetAsyncCancelled,
    testQueueAddWatch,
    testQueueClose,
    testQueueHandle,
    testPipeDuplex,
    testPipeOneWay,
    testPipeBytes,
    testPipePollTimeout,
    testPipeEndOfStream,
    testPipeRecvAsync,
    testPipeRecvAsyncEndOfStream,
    testPipeFds,
    testPipeHandle,
    testWait,
];

for (const test of tests) {
    try {
        test();
    } catch (e) {
        check(false, `${test.name}: unexpected exception: ${e}`);
        printerr(e.stack);
    }
}

print(`1..${checks}`);
System.exit(failures > 0 ? 1 : 0);
