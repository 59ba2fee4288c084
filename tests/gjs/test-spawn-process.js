// test-spawn-process.js: mpg.js's Process, Queue and Pipe from GJS, with
// spawned gjs children
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Every child is a new gjs program (mpg-worker.js), given its target as
// source text or as an export of tasks.js. TAP output.

import GLib from 'gi://GLib';
import Mpg from 'gi://Mpg?version=1.0';
import * as mpg from '../../bindings/gjs/mpg.js';
import {test, check, equal, rejects, throws, run, exit, sleep} from './tap.js';

const TASKS = GLib.Uri.resolve_relative(import.meta.url, 'tasks.js', GLib.UriFlags.NONE);
const task = name => mpg.task(TASKS, name);

test('a process runs its target with its args', async () => {
    const p = new mpg.Process((a, b) => ({sum: a + b, list: [a, b]}), [2, 3]);
    check(/^Process-\d+$/.test(p.name), `default name (${p.name})`);
    equal(p.pid, null, 'no pid before start');
    equal(p.exitcode, null, 'no exit code before start');
    check(!p.isAlive(), 'not alive before start');
    p.start();
    check(p.pid > 0, `a pid after start (${p.pid})`);
    check(p.isAlive(), 'alive after start');
    await p.join();
    equal(p.exitcode, 0, 'exit code 0');
    check(!p.isAlive(), 'not alive after join');
    equal(p.result(), {sum: 5, list: [2, 3]}, 'result() is the return value');
    p.close();
});

test('the options form, name and daemon', async () => {
    const p = new mpg.Process({target: task('info'), name: 'worker-7', daemon: true});
    equal(p.name, 'worker-7', 'name');
    equal(p.daemon, true, 'daemon');
    p.start();
    await p.join();
    const info = p.result();
    equal(info.name, 'worker-7', 'the child knows its name');
    equal(info.pid, p.pid, 'the child\'s pid is p.pid');
    equal(info.ppid, mpg.getpid(), 'the child\'s parent is this process');
    equal(info.parent?.pid, mpg.getpid(), 'parentProcess() in the child is this process');
    equal(info.isWorker, true, 'isWorker in the child');
    equal(mpg.parentProcess(), null, 'no parent process here');
    equal(mpg.currentProcess().name, 'MainProcess', 'currentProcess() here');
    equal(mpg.currentProcess().pid, mpg.getpid(), 'its pid');
});

test('a queue passed to a child', async () => {
    const q = new mpg.Queue();
    const p = new mpg.Process(q => q.put([42, null, 'hello']), [q]);
    p.start();
    equal(await q.getAsync(), [42, null, 'hello'], 'the child put [42, null, \'hello\']');
    await p.join();
    equal(p.exitcode, 0, 'exit code 0');

    const r = new mpg.Process(task('putAll'), [q, 1, 'two', {three: 3}, new Uint8Array([4])]);
    r.start();
    equal(q.get({timeout: 30000}), 1, 'get() blocking');
    equal(q.get(), 'two', 'second');
    equal(q.get(), {three: 3}, 'third');
    equal(q.get(), new Uint8Array([4]), 'fourth');
    await r.join();
    const e = throws(() => q.getNowait());
    check(e instanceof mpg.Empty, `getNowait() on an empty queue throws Empty (${e})`);
    check(q.empty(), 'empty()');
});

test('a queue sent through a queue, and a joinable queue', async () => {
    const outer = new mpg.Queue();
    const inner = new mpg.Queue();
    outer.put(inner);
    const got = outer.get();
    check(got instanceof mpg.Queue, 'a queue arrives as a Queue');
    got.put('through the copy');
    equal(inner.get(), 'through the copy', 'both ends are the same queue');

    const jq = new mpg.JoinableQueue();
    jq.put('job');
    equal(jq.get(), 'job', 'a joinable queue');
    jq.taskDone();
    check(jq.join(1000), 'join() once every task is done');

    const full = new mpg.Queue(1);
    full.put(1);
    check(throws(() => full.putNowait(2)) instanceof mpg.Full, 'putNowait() on a full queue throws Full');
});

test('a pipe passed to a child', async () => {
    const [a, b] = mpg.Pipe();
    const p = new mpg.Process(task('echoConnection'), [b]);
    p.start();
    b.close();
    a.send({ping: 1});
    equal(await a.recvAsync(), {ping: 1}, 'recvAsync() of the echo');
    a.send([1, 2, 3]);
    check(a.poll(30000), 'poll() sees the echo');
    equal(a.recv(), [1, 2, 3], 'recv() of the echo');
    a.close();
    await p.join();
    equal(p.result(), 'eof', 'the child saw the end of the pipe');

    const [r, w] = mpg.Pipe(false);
    check(r.readable && !r.writable && w.writable && !w.readable, 'a one-way pipe');
    const q = new mpg.Process(task('sendThrough'), [w, 'one way']);
    q.start();
    w.close();
    equal(r.recv(), 'one way', 'received');
    const e = throws(() => r.recv());
    check(e instanceof mpg.EOFError, `EOFError once the writer is gone (${e})`);
    await q.join();

    const [x, y] = mpg.Pipe();
    x.sendBytes(new Uint8Array([1, 2, 3]));
    equal(y.recvBytes(), new Uint8Array([1, 2, 3]), 'sendBytes() and recvBytes()');
    check(Number.isInteger(x.fileno()) && x.fileno() >= 0, 'fileno()');
});

test('a target that throws', async () => {
    const p = new mpg.Process(task('failWithTypeError'), ['bad']);
    p.start();
    await p.join();
    equal(p.exitcode, 1, 'exit code 1');
    const e = throws(() => p.result());
    check(e instanceof TypeError, `result() throws a TypeError (${e})`);
    equal(e?.message, 'not a good value: bad', 'with the remote message');
    check(/failWithTypeError@/.test(e?.stack ?? ''), 'and the remote stack');

    const r = new mpg.Process(task('noSuchExport'));
    r.start();
    await r.join();
    equal(r.exitcode, 1, 'an unknown task: exit code 1');
    const e2 = throws(() => r.result());
    check(e2 instanceof GLib.Error && e2.matches(Mpg.Error, Mpg.Error.UNKNOWN_TASK),
        `an unknown task: UNKNOWN_TASK (${e2})`);
});

test('join() does not block the main loop; joinSync(), terminate()', async () => {
    let ticks = 0;
    const timer = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 10, () => {
        ticks++;
        return GLib.SOURCE_CONTINUE;
    });
    const p = new mpg.Process(task('busy'), [300]);
    p.start();
    await p.join();
    GLib.source_remove(timer);
    check(ticks >= 10, `the timer fired ${ticks} times while join() was awaited`);
    equal(p.result(), 300, 'the result');

    const q = new mpg.Process(task('busy'), [20000]);
    q.start();
    check(!q.joinSync(100), 'joinSync(100) times out on a running process');
    q.terminate();
    check(q.joinSync(30000), 'joinSync() after terminate()');
    equal(q.exitcode, -15, 'killed by SIGTERM: exit code -15');

    const k = new mpg.Process(task('busy'), [20000]);
    k.start();
    await sleep(50);
    k.kill();
    await k.join();
    equal(k.exitcode, -9, 'killed by SIGKILL: exit code -9');
});

test('an async target', async () => {
    const p = new mpg.Process(task('addLater'), [40, 2]);
    p.start();
    await p.join();
    equal(p.result(), 42, 'the value of its promise');
});

test('what cannot be a target', () => {
    check(throws(() => new mpg.Process(Math.max)) instanceof TypeError, 'a native function');
    check(throws(() => new mpg.Process(42)) instanceof TypeError, 'a number');
    check(throws(() => new mpg.Process('nothash')) instanceof TypeError, 'a string without #');
    check(throws(() => new mpg.Process(x => x, [() => 1])) instanceof TypeError,
        'args that cannot be sent');
});

exit(await run());
