/* lock.vala: synchronize processes with a lock
 *
 * The Lock example of Python's multiprocessing documentation, with libmpg:
 * ten processes print "hello world N" one at a time, in any order.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

Mpg.Lock l;

Variant? f (Variant? args) throws Error {
    bool owner_died;
    l.acquire (-1, out owner_died);
    print ("hello world %d\n", args.get_int32 ());
    l.release ();
    return null;
}

int main () {
    try {
        // With the fork start method the children inherit the lock.
        l = new Mpg.Lock ();
        var children = new GenericArray<Mpg.Process> ();
        for (int num = 0; num < 10; num++) {
            var p = new Mpg.Process (new Variant.int32 (num), f);
            children.add (p);
            p.start ();
        }
        foreach (var p in children) {
            p.join (-1);
        }
    } catch (Error e) {
        printerr ("%s\n", e.message);
        return 1;
    }
    return 0;
}
