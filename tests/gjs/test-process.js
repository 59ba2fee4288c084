// test-process.js: Mpg from GJS, through GObject introspection
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// JS must never run in a forked child (SpiderMonkey's helper threads do not
// survive a fork), so the only process started here has no target: its
// child runs no JS. Exits with a non-zero status if a check fails.

import GLib from 'gi://GLib';
import Mpg from 'gi://Mpg?version=1.0';
import System from 'system';

const JOIN_TIMEOUT_MS = 30000;

// Results are printed as TAP.
let checks = 0;
let failures = 0;

function check(condition, what) {
    checks++;
    print(`${condition ? 'ok' : 'not ok'} ${checks} - ${what}`);
    if (!condition)
        failures++;
}

function testCurrentProcess() {
    const current = Mpg.current_process();
    check(current.name === 'MainProcess', `current process is MainProcess (got ${current.name})`);
    check(current.is_alive(), 'the current process is alive');
    check(Mpg.parent_process() === null, 'the main process has no parent');
}

function testCpuCount() {
    const n = Mpg.cpu_count();
    check(Number.isInteger(n) && n >= 1, `cpu_count() >= 1 (got ${n})`);
}

function testJoinAsync() {
    const p = Mpg.Process.new(null, null);
    check(/^Process-\d+$/.test(p.name), `default name Process-N (got ${p.name})`);
    check(p.exitcode === Mpg.PROCESS_EXITCODE_NONE, 'no exit code before start');

    p.start();
    check(p.pid > 0, `started with a pid (got ${p.pid})`);

    const loop = new GLib.MainLoop(null, false);
    let joined = null;
    let timedOut = false;

    p.join_async(null, (process, result) => {
        try {
            joined = process.join_finish(result);
        } catch (e) {
            joined = e;
        }
        loop.quit();
    });
    const guard = GLib.timeout_add(GLib.PRIORITY_DEFAULT, JOIN_TIMEOUT_MS, () => {
        timedOut = true;
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    loop.run();

    if (timedOut) {
        // Do not leave the child behind, nor make the exit wait for it.
        p.kill();
        p.join(JOIN_TIMEOUT_MS, null);
    } else {
        GLib.source_remove(guard);
    }

    check(!timedOut, 'join_async completed in time');
    check(joined === true, `join_finish() returned true (got ${joined})`);
    check(!p.is_alive(), 'the process is not alive after the join');
    check(p.exitcode === 0, `exit code 0 (got ${p.exitcode})`);
    check(p.dup_result() === null, 'no result from a process without a target');
}

try {
    testCurrentProcess();
    testCpuCount();
    testJoinAsync();
} catch (e) {
    check(false, `unexpected exception: ${e}`);
    printerr(e.stack);
}

print(`1..${checks}`);
System.exit(failures > 0 ? 1 : 0);
