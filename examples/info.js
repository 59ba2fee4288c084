// info.js: show the processes involved
//
// The second example of Python's multiprocessing documentation, with
// libmpg's JavaScript module. f is not self-contained (it calls info()), so
// the child finds it as an export of this module, which it imports: the
// main code is guarded by isMainModule(), JavaScript's
// `if __name__ == '__main__'`.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import GLib from 'gi://GLib';
import * as mpg from '../bindings/gjs/mpg.js';

export function info(title) {
    print(title);
    print('module name:', GLib.path_get_basename(import.meta.url));
    print('parent process:', mpg.getppid());
    print('process id:', mpg.getpid());
}

export function f(name) {
    info('function f');
    print('hello', name);
}

if (mpg.isMainModule(import.meta)) {
    info('main line');
    const p = new mpg.Process(mpg.task(import.meta.url, 'f'), ['bob']);
    p.start();
    await p.join();
}
