/* hello.vala: run a function in a child process
 *
 * The first example of Python's multiprocessing documentation, with libmpg.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

Variant? f (Variant? args) throws Error {
    string name;
    args.get ("(s)", out name);
    print ("hello %s\n", name);
    return null;
}

int main () {
    var p = new Mpg.Process (new Variant ("(s)", "bob"), f);
    try {
        p.start ();
        p.join (-1);
    } catch (Error e) {
        printerr ("%s\n", e.message);
        return 1;
    }
    return 0;
}
