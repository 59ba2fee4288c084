/* pool.vala: map a function over a list with a pool of worker processes
 *
 * The first example of Python's multiprocessing documentation,
 * `with Pool(5) as p: print(p.map(f, [1, 2, 3]))`, with libmpg and a pool
 * of 2 processes. Prints the GVariant text format of the result: [1, 4, 9]
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

int main () {
    try {
        var p = new Mpg.Pool (2);
        var f = p.add_function ((x) => {
            return new Variant.int32 (x.get_int32 () * x.get_int32 ());
        });
        var items = Variant.parse (new VariantType ("ai"), "[1, 2, 3]");
        print ("%s\n", p.map (f, items, 0, null).print (false));
        /* What leaving Python's `with Pool (…)` block does. */
        p.terminate ();
        p.join (-1);
    } catch (Error e) {
        printerr ("%s\n", e.message);
        return 1;
    }
    return 0;
}
