// shared.js: share state between processes in shared memory
//
// The Value and Array example of Python's multiprocessing documentation,
// with libmpg's JavaScript module: the child (a new gjs program, which gets
// f as source text and the value and the array as handles and fds) writes
// straight into the shared memory, which the parent reads.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import * as mpg from '../bindings/gjs/mpg.js';

function f(n, a) {
    n.value = 3.1415927;
    for (let i = 0; i < a.length; i++)
        a.set(i, -a.get(i));
}

const num = new mpg.Value('d', 0.0);
const arr = new mpg.Array('i', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

const p = new mpg.Process(f, [num, arr]);
p.start();
await p.join();

print(num.value);
print(JSON.stringify(arr.toArray()));
