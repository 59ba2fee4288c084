// mpi-pool.js: the GJS Pool with workers on MPI ranks (TAP output)
//
// Run as `mpirun -n 3 gjs -m mpi-pool.js` (ranks 1 and 2 relay when they
// import mpg.js, and never run the rest), or with MPG_POOL_BACKEND=mpi-spawn
// and no launcher. Each task reports where it ran: results computed by
// local processes fail the test.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import GLib from 'gi://GLib';
import System from 'system';
import Mpg from 'gi://Mpg';

import * as mpg from '../../bindings/gjs/mpg.js';

function where(x) {
    const imports = globalThis.imports;
    const G = imports.gi.GLib;
    return [x * x, Number(G.getenv('MPG_MPI_RANK') ?? -1)];
}

function fail(x) {
    if (x === 7)
        throw new RangeError(`no luck with ${x}`);
    return x;
}

const tests = [];
let failed = 0;

tests.push(['map', async () => {
    const p = new mpg.Pool(2);
    try {
        const expected = GLib.getenv('MPG_POOL_BACKEND') === 'mpi-spawn'
            ? Mpg.PoolBackend.MPI_SPAWN : Mpg.PoolBackend.MPI;
        if (p.gobject.backend !== expected)
            throw new Error(`backend ${p.gobject.backend}`);
        const results = await p.map(where, [...Array(24).keys()], 1);
        const ranks = new Set(results.map(r => r[1]));
        results.forEach((r, i) => {
            if (r[0] !== i * i)
                throw new Error(`result ${i}: ${r[0]}`);
        });
        if ([...ranks].some(rank => rank < 1))
            throw new Error(`computed locally: ${[...ranks]}`);
        if (ranks.size !== 2)
            throw new Error(`ranks used: ${[...ranks]}`);
    } finally {
        p.terminate();
        p.join();
    }
}]);

tests.push(['error', async () => {
    const p = new mpg.Pool(2);
    try {
        await p.map(fail, [...Array(10).keys()], 1);
        throw new Error('no exception');
    } catch (e) {
        if (!(e instanceof RangeError) || !e.message.includes('no luck with 7'))
            throw e;
    } finally {
        p.terminate();
        p.join();
    }
}]);

print(`1..${tests.length}`);
for (const [i, [name, test]] of tests.entries()) {
    try {
        // eslint-disable-next-line no-await-in-loop
        await test();
        print(`ok ${i + 1} - ${name}`);
    } catch (e) {
        failed++;
        print(`not ok ${i + 1} - ${name}: ${e}`);
    }
}
System.exit(failed ? 1 : 0);
