/* shared.vala: share state between processes in shared memory
 *
 * The Value and Array example of Python's multiprocessing documentation,
 * with libmpg: a child writes 3.1415927 into a shared value and negates a
 * shared array; the parent prints their GVariant text.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

Mpg.Array num;
Mpg.Array arr;

Variant? f (Variant? args) throws Error {
    double* n = num.get_data ();
    int32* a = arr.get_data ();
    *n = 3.1415927;
    for (size_t i = 0; i < arr.get_length (); i++) {
        a[i] = -a[i];
    }
    return null;
}

int main () {
    try {
        // New arrays are zero-filled: num is 0.0 already.
        num = new Mpg.Array ("d", 1);
        arr = new Mpg.Array ("i", 10);
        var range = new VariantBuilder (new VariantType ("ai"));
        for (int32 i = 0; i < 10; i++) {
            range.add ("i", i);
        }
        arr.set_from_variant (range.end ());

        // With the fork start method the child has the same shared memory.
        var p = new Mpg.Process (null, f);
        p.start ();
        p.join (-1);

        print ("%s\n%s\n", num.get (0).print (false), arr.to_variant ().print (false));
    } catch (Error e) {
        printerr ("%s\n", e.message);
        return 1;
    }
    return 0;
}
