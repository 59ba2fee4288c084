/* info.vala: show the processes involved
 *
 * The second example of Python's multiprocessing documentation, with libmpg.
 * Vala has no module name: the program name stands in for it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

void info (string title) {
    print ("%s\n", title);
    print ("module name: %s\n", Environment.get_prgname ());
    print ("parent process: %d\n", (int) Posix.getppid ());
    print ("process id: %d\n", (int) Posix.getpid ());
}

Variant? f (Variant? args) throws Error {
    string name;
    args.get ("(s)", out name);
    info ("function f");
    print ("hello %s\n", name);
    return null;
}

int main (string[] args) {
    Environment.set_prgname (Path.get_basename (args[0]));
    info ("main line");

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
