/* test-process.vala: Mpg.Process from Vala, through the VAPI
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

const int JOIN_TIMEOUT_MS = 30000;

errordomain TestError {
    FAILED,
    BROKEN
}

/* A subclass overriding run(), as Python users override Process.run(). */
class Squarer : Mpg.Process {
    public Squarer (int x) {
        Object (args: new Variant ("(i)", x));
    }

    public override Variant? run () throws Error {
        int x;
        args.get ("(i)", out x);
        if (x < 0)
            throw new TestError.BROKEN ("negative: %d", x);
        return new Variant ("(is)", x * x, Mpg.current_process ().name);
    }
}

void run_process (Mpg.Process p) {
    try {
        assert_true (p.start ());
        assert_true (p.join (JOIN_TIMEOUT_MS));
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_lambda () {
    /* The target is a closure: with fork it may use any local state. */
    int offset = 40;
    var p = new Mpg.Process (new Variant ("(i)", 2), (args) => {
        int x;
        args.get ("(i)", out x);
        return new Variant.int32 (offset + x);
    });

    run_process (p);
    assert_cmpint (p.exitcode, CompareOperator.EQ, 0);
    try {
        var result = p.dup_result ();
        assert_nonnull (result);
        assert_true (result.is_of_type (VariantType.INT32));
        assert_cmpint (result.get_int32 (), CompareOperator.EQ, 42);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_lambda_returning_null () {
    var p = new Mpg.Process (null, (args) => {
        assert_null (args);
        return null;
    });

    run_process (p);
    assert_cmpint (p.exitcode, CompareOperator.EQ, 0);
    try {
        assert_null (p.dup_result ());
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_lambda_throwing () {
    var p = new Mpg.Process (null, (args) => {
        throw new IOError.NOT_FOUND ("no such thing");
    });

    run_process (p);
    assert_cmpint (p.exitcode, CompareOperator.EQ, 1);
    try {
        p.dup_result ();
        assert_not_reached ();
    } catch (IOError.NOT_FOUND e) {
        assert_cmpstr (e.message, CompareOperator.EQ, "no such thing");
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

void test_subclass () {
    var p = new Squarer (7);
    var name = p.name;

    run_process (p);
    assert_cmpint (p.exitcode, CompareOperator.EQ, 0);
    try {
        int square;
        string child_name;
        p.dup_result ().get ("(is)", out square, out child_name);
        assert_cmpint (square, CompareOperator.EQ, 49);
        /* run() ran in the child, whose current process is this one. */
        assert_cmpstr (child_name, CompareOperator.EQ, name);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_subclass_throwing () {
    var p = new Squarer (-3);

    run_process (p);
    assert_cmpint (p.exitcode, CompareOperator.EQ, 1);
    try {
        p.dup_result ();
        assert_not_reached ();
    } catch (TestError.BROKEN e) {
        /* The same error domain, code and message, from the child. */
        assert_cmpstr (e.message, CompareOperator.EQ, "negative: -3");
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

void test_join_timeout () {
    var p = new Mpg.Process (null, (args) => {
        Thread.usleep (60 * 1000000);
        return null;
    });

    try {
        p.start ();
    } catch (Error e) {
        error ("%s", e.message);
    }

    try {
        p.join (50);
        assert_not_reached ();
    } catch (Mpg.Error.TIMEOUT e) {
        /* The child keeps running: a join that gives up does not stop it. */
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
    assert_true (p.is_alive ());

    try {
        p.kill ();
        assert_true (p.join (JOIN_TIMEOUT_MS));
    } catch (Error e) {
        error ("%s", e.message);
    }
    assert_cmpint (p.exitcode, CompareOperator.EQ, -(int) Posix.Signal.KILL);
}

void test_join_async () {
    var loop = new MainLoop ();
    var p = new Squarer (3);
    bool joined = false;

    run_process_async.begin (p, (obj, res) => {
        joined = run_process_async.end (res);
        loop.quit ();
    });

    var guard = Timeout.add (JOIN_TIMEOUT_MS, () => {
        loop.quit ();
        return Source.REMOVE;
    });
    loop.run ();
    assert_true (joined);
    Source.remove (guard);
    assert_cmpint (p.exitcode, CompareOperator.EQ, 0);
}

async bool run_process_async (Mpg.Process p) {
    try {
        p.start ();
        return yield p.join_async (null);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_current_process () {
    assert_cmpstr (Mpg.current_process ().name, CompareOperator.EQ, "MainProcess");
    assert_null (Mpg.parent_process ());
    assert_cmpuint (Mpg.cpu_count (), CompareOperator.GE, 1);
}

int main (string[] args) {
    Test.init (ref args);

    Test.add_func ("/Mpg/Vala/Process/lambda", test_lambda);
    Test.add_func ("/Mpg/Vala/Process/lambda-returning-null", test_lambda_returning_null);
    Test.add_func ("/Mpg/Vala/Process/lambda-throwing", test_lambda_throwing);
    Test.add_func ("/Mpg/Vala/Process/subclass", test_subclass);
    Test.add_func ("/Mpg/Vala/Process/subclass-throwing", test_subclass_throwing);
    Test.add_func ("/Mpg/Vala/Process/join-timeout", test_join_timeout);
    Test.add_func ("/Mpg/Vala/Process/join-async", test_join_async);
    Test.add_func ("/Mpg/Vala/Process/current-process", test_current_process);

    return Test.run ();
}
