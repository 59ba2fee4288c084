// tasks.js: task functions of the GJS tests, found by spawned workers as
// exports of this module (mpg.task(import.meta.url, name)).
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import System from 'system';
import * as mpg from '../../bindings/gjs/mpg.js';

export function square(x) {
    return x * x;
}

export function identity(x) {
    return x;
}

export async function addLater(x, y) {
    await new Promise(resolve => GLib.timeout_add(GLib.PRIORITY_DEFAULT, 20, () => {
        resolve();
        return GLib.SOURCE_REMOVE;
    }));
    return x + y;
}

// Busy for ms milliseconds, without a main loop.
export function busy(ms) {
    GLib.usleep(ms * 1000);
    return ms;
}

export function failWithTypeError(x) {
    throw new TypeError(`not a good value: ${x}`);
}

class CustomError extends Error {
    name = 'CustomError';
}

export function failWithCustomError() {
    throw new CustomError('custom trouble');
}

export function failWithValue() {
    // eslint-disable-next-line no-throw-literal
    throw 'a string';
}

export function failWithGError() {
    throw new GLib.Error(Gio.IOErrorEnum, Gio.IOErrorEnum.NOT_FOUND, 'nothing here');
}

export async function failLater() {
    await null;
    throw new RangeError('async trouble');
}

export function exitNow(status) {
    // A worker that dies in the middle of a task.
    System.exit(status);
}

export function info() {
    return {
        pid: mpg.getpid(),
        ppid: mpg.getppid(),
        name: mpg.currentProcess().name,
        parent: mpg.parentProcess(),
        isWorker: mpg.isWorker,
    };
}

export function putAll(q, ...values) {
    for (const v of values)
        q.put(v);
}

export function sendThrough(conn, value) {
    conn.send(value);
    conn.close();
}

export function echoConnection(conn) {
    for (;;) {
        let value;
        try {
            value = conn.recv();
        } catch (e) {
            if (e instanceof mpg.EOFError)
                return 'eof';
            throw e;
        }
        conn.send(value);
    }
}

// Pool initializers: they set this module's state in each worker, which
// the tasks then read (the worker imports this module once).

let initialized = null;

export function initialize(...values) {
    initialized = {values, pid: mpg.getpid()};
}

export function readInitialized(x) {
    return [initialized?.values ?? null, initialized?.pid === mpg.getpid(), x];
}

let results = null;

export function keepResults(queue, tag) {
    results = {queue, tag};
}

export function putResult(x) {
    results.queue.put([results.tag, mpg.getpid(), x * 10]);
    return x;
}

let connection = null;

export function keepConnection(conn) {
    connection = conn;
}

export function sendResult(x) {
    connection.send(x + 100);
    return x;
}

export function failToInitialize() {
    throw new RangeError('no start');
}

// Synchronization and shared memory (test-sync.js): the objects arrive
// rebuilt from their handles.

export function countUnderLock(lock, counter, times) {
    for (let i = 0; i < times; i++) {
        lock.acquire();
        // A read, then a write: increments are lost without the lock.
        counter.set(0, counter.get(0) + 1);
        lock.release();
    }
    return times;
}

export function setEventLater(event, ms) {
    GLib.usleep(ms * 1000);
    event.set();
}

export function releaseUnits(semaphore, n) {
    for (let i = 0; i < n; i++)
        semaphore.release();
    return semaphore.getValue();
}

export function notifyReady(condition, flag) {
    condition.acquire();
    flag.value = 1;
    condition.notify();
    condition.release();
}

let actionCounter = null;

export function setActionCounter(counter) {
    actionCounter = counter;
}

// A barrier's action: counts its runs, in whichever process it runs.
export function countAction() {
    actionCounter.set(0, actionCounter.get(0) + 1);
}

export function meetTwice(first, second, counter) {
    actionCounter = counter;
    return [first.wait(30000), second.wait(30000)];
}

// Holds the lock until killed.
export function holdLock(lock, holding) {
    lock.acquire();
    holding.set();
    for (;;)
        GLib.usleep(1000000);
}

export function writeShared(shm, array, text) {
    const bytes = new TextEncoder().encode(text);
    shm.buf.set(bytes, 0);
    shm.write(bytes, 100);
    array.set(0, 1.5);
    array.getObj()[1] = 2.5;
    return Array.from(shm.read(200, 4));
}

// Pool initializer and task over a shared Value.
let poolCounter = null;

export function keepCounter(counter) {
    poolCounter = counter;
}

export function addToCounter(x) {
    const lock = poolCounter.getLock();
    lock.acquire();
    poolCounter.value += x;
    lock.release();
    return x;
}
