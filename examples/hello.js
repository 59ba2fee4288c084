// hello.js: run a function in a child process
//
// The first example of Python's multiprocessing documentation, with
// libmpg's JavaScript module. The child is a new gjs program (JavaScript
// never runs in a forked child): f, a self-contained function, is sent to
// it as source text. Run from the source tree with `gjs -m examples/hello.js`;
// an installed program imports mpg.js by its URL (see docs/gjs.md).
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import * as mpg from '../bindings/gjs/mpg.js';

function f(name) {
    print(`hello ${name}`);
}

const p = new mpg.Process(f, ['bob']);
p.start();
await p.join();
