// pool.js: map a function over a list with a pool of worker processes
//
// The first example of Python's multiprocessing documentation,
// `with Pool(5) as p: print(p.map(f, [1, 2, 3]))`, with libmpg's JavaScript
// module and a pool of 2 processes (new gjs programs, which get f as
// source text). map() returns a Promise; the main loop runs meanwhile.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import * as mpg from '../bindings/gjs/mpg.js';

function f(x) {
    return x * x;
}

const p = new mpg.Pool(2);
try {
    print(JSON.stringify(await p.map(f, [1, 2, 3])));    // prints [1,4,9]
} finally {
    // What leaving Python's `with Pool(…)` block does.
    p.terminate();
    p.join();
}
