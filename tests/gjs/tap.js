// tap.js: a small TAP harness for the GJS tests
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// test(name, async fn) registers a test; run() runs them in order, each
// with a time limit, prints TAP and returns the exit status: non-zero if a
// check failed. Inside a test, check(condition, what) records one result.

import GLib from 'gi://GLib';
import System from 'system';

const tests = [];
let checks = 0;
let failures = 0;

export function test(name, fn, {timeout = 60000} = {}) {
    tests.push({name, fn, timeout});
}

export function check(condition, what) {
    checks++;
    print(`${condition ? 'ok' : 'not ok'} ${checks} - ${what}`);
    if (!condition)
        failures++;
    return condition;
}

export function equal(actual, expected, what) {
    const a = show(actual), e = show(expected);
    return check(a === e, a === e ? what : `${what}: got ${a}, expected ${e}`);
}

// A deep, type-aware text of a value: -0, NaN, bigints, Uint8Arrays and
// undefined are told apart.
export function show(value) {
    if (Object.is(value, -0))
        return '-0';
    if (typeof value === 'bigint')
        return `${value}n`;
    if (typeof value === 'number' || typeof value === 'boolean' || value === null ||
        value === undefined)
        return String(value);
    if (typeof value === 'string')
        return JSON.stringify(value.split('').map(c => c.charCodeAt(0)));
    if (value instanceof Uint8Array)
        return `Uint8Array[${Array.from(value).join(',')}]`;
    if (Array.isArray(value))
        return `[${value.map(show).join(',')}]`;
    if (typeof value === 'object') {
        return `{${Object.keys(value).sort().map(k => `${JSON.stringify(k)}:${show(value[k])}`)
            .join(',')}}`;
    }
    return `<${typeof value}>`;
}

export async function rejects(promise) {
    try {
        await promise;
    } catch (e) {
        return e;
    }
    return null;
}

export function throws(fn) {
    try {
        fn();
    } catch (e) {
        return e;
    }
    return null;
}

export function sleep(ms) {
    return new Promise(resolve => GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
        resolve();
        return GLib.SOURCE_REMOVE;
    }));
}

export async function run() {
    for (const {name, fn, timeout} of tests) {
        print(`# ${name}`);
        let timer;
        const limit = new Promise((resolve, reject) => {
            timer = GLib.timeout_add(GLib.PRIORITY_DEFAULT, timeout, () => {
                reject(new Error(`timed out after ${timeout} ms`));
                return GLib.SOURCE_REMOVE;
            });
        });
        try {
            // eslint-disable-next-line no-await-in-loop
            await Promise.race([fn(), limit]);
        } catch (e) {
            check(false, `${name}: unexpected exception: ${e}`);
            for (const line of String(e?.stack ?? '').split('\n'))
                print(`# ${line}`);
        } finally {
            GLib.source_remove(timer);
        }
    }
    print(`1..${checks}`);
    return failures > 0 ? 1 : 0;
}

// Exits with the status run() gave.
export function exit(status) {
    System.exit(status);
}
