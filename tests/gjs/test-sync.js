// test-sync.js: mpg.js's locks, semaphores, events, conditions, barriers,
// shared memory, Value and Array, with spawned gjs children
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The objects travel to the children as Process arguments (handles and
// fds), as Pool initargs and through a Queue. The children's tasks are in
// tasks.js. TAP output.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Mpg from 'gi://Mpg?version=1.0';
import System from 'system';
import * as mpg from '../../bindings/gjs/mpg.js';
import * as tasks from './tasks.js';
import {test, check, equal, rejects, throws, run, exit} from './tap.js';

const TASKS = GLib.Uri.resolve_relative(import.meta.url, 'tasks.js', GLib.UriFlags.NONE);
const task = name => mpg.task(TASKS, name);

function start(name, args) {
    const p = new mpg.Process(task(name), args);
    p.start();
    return p;
}

async function joined(p, what) {
    await p.join();
    equal(p.exitcode, 0, `${what}: exit code 0`);
    const result = p.result();
    p.close();
    return result;
}

function isMpgError(e, code) {
    return e instanceof GLib.Error && e.matches(Mpg.Error, code);
}

function openFds() {
    const dir = Gio.File.new_for_path('/proc/self/fd').enumerate_children('standard::name',
        Gio.FileQueryInfoFlags.NONE, null);
    let n = 0;
    while (dir.next_file(null))
        n++;
    dir.close(null);
    return n;
}

test('Lock, RLock: acquire, timeouts, release', () => {
    const lock = new mpg.Lock();
    check(lock.acquire(), 'acquire()');
    equal(lock.ownerDied, false, 'ownerDied is false');
    equal(lock.acquire({block: false}), false, 'acquire({block: false}) of a held lock: false');
    const t0 = GLib.get_monotonic_time();
    equal(lock.acquire({timeout: 100}), false, 'acquire({timeout: 100}) of a held lock: false');
    const waited = (GLib.get_monotonic_time() - t0) / 1000;
    check(waited >= 90, `it waited about 100 ms (${waited.toFixed(0)} ms)`);
    lock.release();
    const e = throws(() => lock.release());
    check(isMpgError(e, Mpg.Error.INVALID_STATE),
        `releasing an unlocked lock throws INVALID_STATE (${e})`);

    const rlock = new mpg.RLock();
    check(rlock instanceof mpg.Lock, 'an RLock is a Lock');
    check(rlock.acquire() && rlock.acquire({block: false}), 'an RLock is acquired twice');
    rlock.release();
    rlock.release();
    check(isMpgError(throws(() => rlock.release()), Mpg.Error.INVALID_STATE),
        'a third release throws INVALID_STATE');
    check(throws(() => lock.acquire({timeout: 'soon'})) instanceof TypeError,
        'a timeout that is not a number: TypeError');
});

test('a Lock shared by 2 children counting in an Array(\'i\', 1)', async () => {
    const lock = new mpg.Lock();
    const counter = new mpg.Array('i', 1, {lock: false});
    equal(counter.getLock(), null, 'a raw array has no lock');
    const times = 300;
    const children = [0, 1].map(() => start('countUnderLock', [lock, counter, times]));
    for (const p of children)
        // eslint-disable-next-line no-await-in-loop
        equal(await joined(p, 'a counting child'), times, 'the child counted');
    equal(counter.get(0), 2 * times, `no increment lost: ${2 * times}`);
    check(lock.acquire({block: false}), 'the lock is free afterwards');
    lock.release();
});

test('an Event set by a child wakes waitAsync() in a responsive main loop', async () => {
    const event = new mpg.Event();
    equal(event.isSet(), false, 'not set at first');
    equal(event.wait(50), false, 'wait(50) on a clear event: false');
    let ticks = 0;
    const timer = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 10, () => {
        ticks++;
        return GLib.SOURCE_CONTINUE;
    });
    const p = start('setEventLater', [event, 300]);
    try {
        equal(await event.waitAsync(), true, 'waitAsync() resolves with true');
    } finally {
        GLib.source_remove(timer);
    }
    check(ticks >= 10, `a 10 ms timer fired ${ticks} times during the wait`);
    equal(event.isSet(), true, 'the event is set');
    equal(event.wait(0), true, 'wait(0) on a set event: true');
    event.clear();
    equal(event.isSet(), false, 'clear()');
    await joined(p, 'the setting child');
});

test('Semaphore and BoundedSemaphore across processes', async () => {
    const semaphore = new mpg.Semaphore(0);
    equal(semaphore.acquire({block: false}), false, 'no unit: acquire({block: false}) is false');
    const p = start('releaseUnits', [semaphore, 3]);
    equal(await semaphore.acquireAsync(), true, 'acquireAsync() gets a unit the child released');
    equal(semaphore.acquire({timeout: 30000}), true, 'acquire() gets a second');
    await joined(p, 'the releasing child');
    equal(semaphore.getValue(), 1, 'one unit is left');
    equal(semaphore.acquire({block: false}), true, 'a third');
    equal(semaphore.acquire({timeout: 50}), false, 'none left: acquire({timeout: 50}) is false');

    const bounded = new mpg.BoundedSemaphore(1);
    check(bounded instanceof mpg.Semaphore, 'a BoundedSemaphore is a Semaphore');
    const q = start('releaseUnits', [bounded, 1]);
    await q.join();
    equal(q.exitcode, 1, 'a child that releases a full BoundedSemaphore fails');
    const e = throws(() => q.result());
    check(isMpgError(e, Mpg.Error.INVALID_STATE), `with INVALID_STATE (${e})`);
    q.close();
    check(throws(() => new mpg.Semaphore(-1)) instanceof RangeError,
        'a negative value: RangeError');
});

test('a Condition notified by a child', async () => {
    const condition = new mpg.Condition();
    check(condition.lock instanceof mpg.RLock, 'its lock is a new RLock');
    const flag = new mpg.Value('i', 0, {lock: false});

    check(condition.acquire(), 'acquire()');
    // The child blocks on the lock until wait() releases it.
    const p = start('notifyReady', [condition, flag]);
    const result = condition.waitFor(() => flag.value === 1 && 'ready', 30000);
    equal(result, 'ready', 'waitFor() returns the predicate\'s value');
    condition.release();
    await joined(p, 'the notifying child');

    flag.value = 0;
    condition.acquire();
    const q = start('notifyReady', [condition, flag]);
    while (flag.value !== 1) {
        // eslint-disable-next-line no-await-in-loop
        equal(await condition.waitAsync(), true, 'waitAsync() resolves when notified');
    }
    check(condition.lock.acquire({block: false}), 'the lock is held again (an RLock: again)');
    condition.lock.release();
    condition.release();
    await joined(q, 'the second notifying child');

    condition.acquire();
    equal(condition.wait(30), false, 'wait(30) without a notification: false');
    equal(condition.waitFor(() => 0, 30), 0, 'waitFor() timing out: the last value');
    const boom = throws(() => condition.waitFor(() => {
        throw new RangeError('predicate trouble');
    }));
    check(boom instanceof RangeError, `a predicate that throws: the exception (${boom})`);
    condition.release();
    check(isMpgError(throws(() => condition.notify()), Mpg.Error.INVALID_STATE),
        'notify() without the lock: INVALID_STATE');

    const lock = new mpg.Lock();
    equal(new mpg.Condition(lock).lock, lock, 'a Condition with a given lock');
    check(throws(() => new mpg.Condition({})) instanceof TypeError, 'a lock that is not one');
});

test('a Barrier of 3: this process and 2 children', async () => {
    const barrier = new mpg.Barrier(3);
    const counter = new mpg.Array('i', 1);
    const withAction = new mpg.Barrier(3, {action: task('countAction'), timeout: 30000});
    tasks.setActionCounter(counter);
    equal(barrier.parties, 3, 'parties');
    const children = [0, 1].map(() => start('meetTwice', [barrier, withAction, counter]));
    const index = await barrier.waitAsync();
    // The action runs in whichever process is last: it is sent by name.
    const index2 = withAction.wait();
    const indices = [index], indices2 = [index2];
    for (const p of children) {
        // eslint-disable-next-line no-await-in-loop
        const [i, j] = await joined(p, 'a child at the barrier');
        indices.push(i);
        indices2.push(j);
    }
    equal(indices.sort(), [0, 1, 2], 'the 3 parties got the indices 0, 1 and 2');
    equal(indices2.sort(), [0, 1, 2], 'and at the second barrier');
    equal(counter.get(0), 1, 'the action ran once');
    equal(barrier.nWaiting, 0, 'nobody waits');
    equal(barrier.broken, false, 'not broken');
    equal(withAction.timeout, 30000, 'the default timeout');
    const e = await rejects(withAction.waitAsync());
    check(e instanceof Error && /wait\(\)/.test(e.message),
        `waitAsync() of a barrier with an action rejects (${e?.message})`);

    const pair = new mpg.Barrier(2);
    const broken = throws(() => pair.wait(50));
    check(isMpgError(broken, Mpg.Error.BROKEN_BARRIER),
        `a wait that times out breaks the barrier (${broken})`);
    equal(pair.broken, true, 'broken');
    pair.reset();
    equal(pair.broken, false, 'reset()');
    pair.abort();
    check(isMpgError(await rejects(pair.waitAsync()), Mpg.Error.BROKEN_BARRIER),
        'waitAsync() of an aborted barrier rejects with BROKEN_BARRIER');

    const single = new mpg.Barrier(1, {action: () => {
        throw new TypeError('action trouble');
    }});
    const failed = throws(() => single.wait());
    check(failed instanceof TypeError && failed.message === 'action trouble',
        `an action that throws: its error (${failed})`);
    equal(single.broken, true, 'and the barrier is broken');
    check(throws(() => new mpg.Barrier(0)) instanceof RangeError, 'no parties: RangeError');
});

test('a child killed holding a Lock: acquire() takes it over, ownerDied', async () => {
    const lock = new mpg.Lock();
    const holding = new mpg.Event();
    const p = start('holdLock', [lock, holding]);
    check(holding.wait(30000), 'the child holds the lock');
    equal(lock.acquire({block: false}), false, 'the lock is held by a live child');
    const waiting = lock.acquireAsync();
    const t0 = GLib.get_monotonic_time();
    p.kill();
    equal(await waiting, true, 'a pending acquireAsync() gets the lock');
    const waited = (GLib.get_monotonic_time() - t0) / 1000;
    check(waited < 5000, `within about a second of the kill (${waited.toFixed(0)} ms)`);
    await p.join();
    equal(p.exitcode, -9, 'the child was killed (SIGKILL)');
    p.close();
    equal(lock.ownerDied, true, 'ownerDied is true');
    lock.release();
    check(lock.acquire({block: false}), 'the lock stays usable');
    equal(lock.ownerDied, false, 'ownerDied is false for a normal acquire');
    lock.release();

    const other = new mpg.Lock();
    holding.clear();
    const q = start('holdLock', [other, holding]);
    check(holding.wait(30000), 'a second child holds another lock');
    q.kill();
    await q.join();
    q.close();
    equal(other.acquire({timeout: 30000}), true, 'a blocking acquire() takes it over');
    equal(other.ownerDied, true, 'with ownerDied');
    other.release();
});

test('SharedMemory, Value and Array written by a child', async () => {
    equal(mpg.hasSharedMemoryViews(), System.version < 18102,
        'views in place exist up to GJS 1.81.1 (GLib.Bytes.toArray() copies since)');
    const shm = new mpg.SharedMemory(4096, {name: 'test-sync'});
    equal(shm.size, 4096, 'size');
    check(shm.name.includes('test-sync'), `name (${shm.name})`);
    const array = new mpg.Array('d', 4);
    shm.write(new Uint8Array([7, 8, 9, 10]), 200);
    const p = start('writeShared', [shm, array, 'hello']);
    equal(await joined(p, 'the writing child'), [7, 8, 9, 10],
        'the child read what this process wrote');
    const hello = Array.from(new TextEncoder().encode('hello'));
    equal(Array.from(shm.read(100, 5)), hello, 'read() sees what the child wrote with write()');
    equal(array.toArray(), [1.5, 2.5, 0, 0], 'the child\'s set() and getObj() writes');

    if (mpg.hasSharedMemoryViews()) {
        const buf = shm.buf;
        check(buf instanceof Uint8Array && buf.length === 4096, 'buf is a Uint8Array of 4096');
        check(shm.buf === buf, 'the same array each time');
        equal(Array.from(buf.subarray(0, 5)), hello, 'buf sees what the child wrote in buf');
        buf[4000] = 0xAB;
        equal(shm.gobject.get_data()[4000], 0xAB,
            'a write to buf is in the memory itself (C reads it)');
        equal(shm.read(4000, 1)[0], 0xAB, 'and read() too');
        const view = array.getObj();
        check(view instanceof Float64Array && view.length === 4, 'getObj() is a Float64Array');
        view[3] = 4.5;
        equal(array.get(3), 4.5, 'a write to getObj() is seen by get()');
    } else {
        check(throws(() => shm.buf) instanceof Error, 'buf throws where views do not exist');
    }

    const e = throws(() => shm.read(4090, 10));
    check(e instanceof RangeError, `read() past the end: RangeError (${e})`);
    check(throws(() => shm.write(new Uint8Array(2), 4095)) instanceof RangeError,
        'write() past the end: RangeError');
    const fds = openFds();
    for (let i = 0; i < 20; i++) {
        shm.write(new Uint8Array([i]), i);
        shm.read(i, 1);
    }
    // At most: the garbage collector may close fds of earlier tests meanwhile.
    const after = openFds();
    check(after <= fds, `read() and write() leave no fd open (${fds} before, ${after} after)`);
    check(throws(() => new mpg.SharedMemory(0)) instanceof GLib.Error,
        'a size of 0: the GLib.Error of libmpg');
});

test('Value and Array: typecodes, conversions, errors', () => {
    const v = new mpg.Value('i', 41);
    v.value += 1;
    equal(v.value, 42, 'v.value');
    check(v.getLock() instanceof mpg.RLock, 'a Value has an RLock by default');
    equal(v.typecode, 'i', 'typecode');
    const lock = new mpg.Lock();
    equal(new mpg.Value('d', 0, {lock}).getLock(), lock, 'a given lock');

    const big = new mpg.Array('q', [2n ** 62n, -3]);
    equal(big.toArray(), [2n ** 62n, -3], 'q: bigints past 2^53, numbers below');
    equal(new mpg.Value('?', true).value, true, '?: a boolean');
    equal(new mpg.Array('u', 'hé').toArray(), ['h', 'é'], 'u: characters');
    equal(new mpg.Value('c', 65).value, 65, 'c: a byte');
    const floats = new mpg.Array('f', 3);
    floats.setValues([0.5, 1]);
    equal(floats.toArray(), [0.5, 1, 0], 'setValues() writes the first elements');
    equal(floats.get(-2), 1, 'a negative index counts from the end');
    equal([...floats], [0.5, 1, 0], 'an Array is iterable');

    const small = new mpg.Array('b', 2);
    const e = throws(() => small.set(0, 300));
    check(e instanceof GLib.Error && e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.INVALID_ARGUMENT),
        `300 for typecode 'b': INVALID_ARGUMENT (${e})`);
    check(throws(() => new mpg.Value('i', 2 ** 40)) instanceof GLib.Error,
        '2^40 for typecode \'i\': the same error');
    check(throws(() => small.set(0, '1')) instanceof TypeError, 'a string for \'b\': TypeError');
    check(throws(() => small.get(2)) instanceof RangeError, 'an index out of range: RangeError');
    check(throws(() => small.setValues([1, 2, 3])) instanceof GLib.Error,
        'setValues() longer than the array: an error');
    equal(small.toArray(), [0, 0], 'and nothing was written');
    check(throws(() => new mpg.Array('z', 1)) instanceof GLib.Error, 'an unknown typecode');
});

test('objects through a Queue and in Pool initargs; not as task arguments', async () => {
    const queue = new mpg.Queue();
    const semaphore = new mpg.BoundedSemaphore(2);
    const originals = [new mpg.RLock(), semaphore, new mpg.Event(), new mpg.Condition(),
        new mpg.Barrier(2), new mpg.SharedMemory(16), new mpg.Value('d', 0.5),
        new mpg.Array('i', [1, 2])];
    queue.put(originals);
    const copies = queue.get({timeout: 30000});
    equal(copies.map(x => x.constructor.name),
        ['RLock', 'BoundedSemaphore', 'Event', 'Condition', 'Barrier', 'SharedMemory', 'Value',
            'SharedArray'], 'each arrives as its class');
    copies[2].set();
    equal(originals[2].isSet(), true, 'the same Event');
    copies[6].value = 1.25;
    equal(originals[6].value, 1.25, 'the same Value');
    copies[1].acquire();
    equal(semaphore.getValue(), 1, 'the same Semaphore');
    copies[5].write(new Uint8Array([3]), 15);
    equal(originals[5].read(15, 1)[0], 3, 'the same SharedMemory');
    check(copies[3].lock instanceof mpg.RLock, 'a Condition arrives with its lock');

    // A function action travels as its source text, compiled on arrival.
    queue.put(new mpg.Barrier(1, {action: () => {
        globalThis.barrierActionRuns = (globalThis.barrierActionRuns ?? 0) + 1;
    }}));
    const barrier = queue.get({timeout: 30000});
    equal(barrier.wait(), 0, 'a barrier of 1 that arrived through a queue');
    equal(globalThis.barrierActionRuns, 1, 'its action, sent as source, ran');
    const fds = openFds();
    const e = throws(() => queue.put([new mpg.Lock(), new mpg.Barrier(1, {action: Math.max})]));
    check(e instanceof TypeError && /action/.test(e.message),
        `a barrier whose action cannot be sent: TypeError (${e})`);
    const after = openFds();
    check(after <= fds + 2, 'the fds of what was encoded before the failure are closed ' +
        `(${fds} before; ${after} after, with the 2 objects made here)`);

    const counter = new mpg.Value('i', 0);
    const pool = new mpg.Pool(2, {initializer: task('keepCounter'), initargs: [counter]});
    try {
        equal(await pool.map(task('addToCounter'), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the tasks ran');
        equal(counter.value, 55, 'the workers added to a Value given in initargs');
        const e = await rejects(pool.map(task('identity'), [new mpg.Lock()]));
        check(e instanceof TypeError, `a Lock as a task's argument: TypeError (${e})`);
    } finally {
        pool.terminate();
        pool.join(30000);
    }
});

exit(await run());
