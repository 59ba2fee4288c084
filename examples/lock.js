// lock.js: synchronize processes with a lock
//
// The Lock example of Python's multiprocessing documentation, with libmpg's
// JavaScript module: ten processes (new gjs programs, which get f as source
// text and the lock as a handle and its fd) print "hello world N" one at a
// time, in any order.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import * as mpg from '../bindings/gjs/mpg.js';

function f(l, i) {
    l.acquire();
    try {
        print(`hello world ${i}`);
    } finally {
        l.release();
    }
}

const lock = new mpg.Lock();
const children = [];
for (let num = 0; num < 10; num++) {
    const p = new mpg.Process(f, [lock, num]);
    p.start();
    children.push(p);
}
// Python joins its non-daemon children at exit; here the script does.
for (const p of children)
    await p.join();
