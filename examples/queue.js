// queue.js: exchange objects between processes through a queue
//
// The Queue example of Python's multiprocessing documentation, with
// libmpg's JavaScript module: plain JS values cross, and the queue itself
// is sent to the child as an argument.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import * as mpg from '../bindings/gjs/mpg.js';

function f(q) {
    q.put([42, null, 'hello']);
}

const q = new mpg.Queue();
const p = new mpg.Process(f, [q]);
p.start();
print(JSON.stringify(await q.getAsync()));    // prints [42,null,"hello"]
await p.join();
