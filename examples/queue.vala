/* queue.vala: exchange objects between processes through a queue
 *
 * The Queue example of Python's multiprocessing documentation, with libmpg.
 * Prints the GVariant text format of the value: [<42>, <@mv nothing>, <'hello'>]
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

int main () {
    try {
        var q = new Mpg.Queue (0);
        var p = new Mpg.Process (null, (args) => {
            q.put (Variant.parse (null, "[<42>, <@mv nothing>, <'hello'>]"), true, -1, null);
            return null;
        });
        p.start ();
        print ("%s\n", q.get (true, -1, null).print (false));
        p.join (-1);
    } catch (Error e) {
        printerr ("%s\n", e.message);
        return 1;
    }
    return 0;
}
