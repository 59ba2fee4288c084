// mpg-worker.js: the program of a spawned libmpg worker, in GJS
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// mpg.js makes libmpg spawn `gjs -m <this file>` for every process and
// pool worker (JavaScript must never run in a forked child). libmpg starts
// it with MPG_WORKER=process|pool in the environment and the channels to
// the parent as fds 3 (and 4); Mpg.worker_main() receives each task by
// name, runs it through the dispatcher that mpg.js sets, sends back the
// result or error, and exits: it never returns in a worker.

import * as mpg from './mpg.js';
import System from 'system';

mpg.workerMain();

// Not started by libmpg.
printerr('mpg-worker.js: this program is started by libmpg for spawned workers ' +
    '(MPG_WORKER is not set)');
System.exit(2);
