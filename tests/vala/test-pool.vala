/* test-pool.vala: Mpg.Pool from Vala, through the VAPI
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

const int TIMEOUT_MS = 30000;

errordomain PoolTestError {
    FAILED,
    ODD
}

/* A main loop run with a timeout guard: an async call that never completes
 * fails the test instead of hanging it. */
void run_loop (MainLoop loop, string what) {
    bool timed_out = false;
    var guard = Timeout.add (TIMEOUT_MS, () => {
        timed_out = true;
        loop.quit ();
        return Source.REMOVE;
    });
    loop.run ();
    if (timed_out)
        error ("%s did not complete in time", what);
    Source.remove (guard);
}

/* A cancellable that a thread cancels after TIMEOUT_MS unless stopped
 * first: bounds the blocking calls, which have no timeout of their own. */
class Deadline {
    private Cancellable cancellable = new Cancellable ();
    private Mutex mutex = Mutex ();
    private Cond cond = Cond ();
    private bool done = false;
    private Thread<bool> thread;

    public Deadline () {
        thread = new Thread<bool> ("deadline", () => {
            int64 end = get_monotonic_time () + TIMEOUT_MS * 1000L;
            mutex.lock ();
            while (!done) {
                if (!cond.wait_until (mutex, end))
                    break;
            }
            if (!done)
                cancellable.cancel ();
            mutex.unlock ();
            return true;
        });
    }

    public Cancellable get () {
        return cancellable;
    }

    public void stop () {
        mutex.lock ();
        done = true;
        cond.signal ();
        mutex.unlock ();
        thread.join ();
        if (cancellable.is_cancelled ())
            error ("the call did not complete in time");
    }
}

Variant ints (int from, int to) {
    var builder = new VariantBuilder (new VariantType ("ai"));
    for (int i = from; i < to; i++)
        builder.add ("i", i);
    return builder.end ();
}

void terminate_and_join (Mpg.Pool pool) {
    pool.terminate ();
    try {
        assert_true (pool.join (TIMEOUT_MS));
    } catch (Error e) {
        error ("%s", e.message);
    }
}

/* The seed of Python's documentation, with a lambda that uses local
 * state: the workers are forked, so they have it. */
void test_map_lambda () {
    var pool = new Mpg.Pool (2);
    int offset = 40;
    var f = pool.add_function ((x) => {
        return new Variant.int32 (x.get_int32 () * x.get_int32 () + offset);
    });
    assert_cmpuint (f, CompareOperator.GE, 1);

    var d = new Deadline ();
    try {
        var result = pool.map (f, Variant.parse (new VariantType ("ai"), "[1, 2, 3]"), 0, d.get ());
        assert_cmpstr (result.get_type_string (), CompareOperator.EQ, "ai");
        assert_cmpstr (result.print (false), CompareOperator.EQ, "[41, 44, 49]");

        /* A second lambda, added after the workers were forked: they are
         * replaced by workers that have it. (Not by changing offset: a
         * worker sees the captured variables as they were when it was
         * forked, and which workers are replaced is the pool's choice.) */
        int offset2 = 1000;
        var g = pool.add_function ((x) => {
            return new Variant.string ("%d".printf (x.get_int32 () + offset2));
        });
        result = pool.map (g, ints (0, 10), 3, d.get ());
        assert_cmpstr (result.get_type_string (), CompareOperator.EQ, "as");
        for (int i = 0; i < 10; i++)
            assert_cmpstr (result.get_child_value (i).get_string (), CompareOperator.EQ,
                           "%d".printf (i + 1000));

        var one = pool.apply (f, new Variant.int32 (5), d.get ());
        assert_cmpint (one.get_int32 (), CompareOperator.EQ, 65);
    } catch (Error e) {
        error ("%s", e.message);
    }
    d.stop ();
    terminate_and_join (pool);
}

async Variant map_squares (Mpg.Pool pool, uint f, Variant items) throws Error {
    return yield pool.map_async (f, items, 4, null);
}

void test_map_async () {
    var loop = new MainLoop ();
    var pool = new Mpg.Pool (2);
    var f = pool.add_function ((x) => {
        Thread.usleep (2000);
        return new Variant.int32 (x.get_int32 () * x.get_int32 ());
    });

    uint[] done_counts = {};
    bool finished = false;
    pool.progress.connect ((call, done, total) => {
        assert_false (finished);
        assert_cmpuint (total, CompareOperator.EQ, 20);
        done_counts += done;
    });

    int ticks = 0;
    var ticker = Timeout.add (1, () => {
        ticks++;
        return Source.CONTINUE;
    });

    Variant? result = null;
    Error? failure = null;
    map_squares.begin (pool, f, ints (0, 20), (obj, res) => {
        try {
            result = map_squares.end (res);
        } catch (Error e) {
            failure = e;
        }
        finished = true;
        loop.quit ();
    });
    run_loop (loop, "map_async");
    Source.remove (ticker);

    if (failure != null)
        error ("map_async failed: %s", failure.message);
    assert_nonnull (result);
    assert_cmpstr (result.get_type_string (), CompareOperator.EQ, "ai");
    for (int i = 0; i < 20; i++)
        assert_cmpint (result.get_child_value (i).get_int32 (), CompareOperator.EQ, i * i);

    /* One emission per chunk of 4, counted in items, all before the end. */
    assert_cmpint (done_counts.length, CompareOperator.EQ, 5);
    for (int i = 0; i < done_counts.length; i++)
        assert_cmpuint (done_counts[i], CompareOperator.EQ, 4 * (i + 1));
    /* The loop was not blocked meanwhile. */
    assert_cmpint (ticks, CompareOperator.GT, 0);

    terminate_and_join (pool);
}

/* A task's error comes back with its domain, code and message; map fails
 * with the error of the first failing item. */
void test_error () {
    var pool = new Mpg.Pool (2);
    var f = pool.add_function ((x) => {
        int v = x.get_int32 ();
        if (v % 2 == 1)
            throw new PoolTestError.ODD ("odd: %d", v);
        return x;
    });

    var d = new Deadline ();
    try {
        pool.map (f, ints (0, 10), 1, d.get ());
        assert_not_reached ();
    } catch (PoolTestError.ODD e) {
        assert_cmpstr (e.message, CompareOperator.EQ, "odd: 1");
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }

    try {
        pool.apply (f, new Variant.int32 (7), d.get ());
        assert_not_reached ();
    } catch (PoolTestError.ODD e) {
        assert_cmpstr (e.message, CompareOperator.EQ, "odd: 7");
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }

    /* The pool goes on. */
    try {
        var result = pool.map (f, Variant.parse (new VariantType ("ai"), "[0, 2, 4]"), 0, d.get ());
        assert_cmpstr (result.print (false), CompareOperator.EQ, "[0, 2, 4]");
    } catch (Error e) {
        error ("%s", e.message);
    }
    d.stop ();
    terminate_and_join (pool);
}

/* A worker that dies makes its call fail with WORKER_DIED. */
void test_worker_died () {
    var pool = new Mpg.Pool (1);
    var f = pool.add_function ((x) => {
        Posix.kill (Posix.getpid (), Posix.Signal.KILL);
        return null;
    });
    var g = pool.add_function ((x) => {
        return new Variant.int32 (Posix.getpid ());
    });

    var d = new Deadline ();
    try {
        pool.apply (f, null, d.get ());
        assert_not_reached ();
    } catch (Mpg.Error.WORKER_DIED e) {
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
    try {
        assert_cmpint (pool.apply (g, null, d.get ()).get_int32 (), CompareOperator.NE, Posix.getpid ());
    } catch (Error e) {
        error ("%s", e.message);
    }
    d.stop ();
    assert_cmpuint (pool.workers_replaced, CompareOperator.GE, 1);
    terminate_and_join (pool);
}

void test_imap () {
    var pool = new Mpg.Pool (2);
    var f = pool.add_function ((x) => {
        return new Variant.int32 (-x.get_int32 ());
    });
    try {
        var it = pool.imap (f, ints (0, 5), 0);
        assert_cmpuint (it.get_length (), CompareOperator.EQ, 5);
        for (int i = 0; i < 5; i++) {
            Variant? value;
            assert_true (it.next (TIMEOUT_MS, null, out value));
            assert_nonnull (value);
            assert_cmpint (value.get_int32 (), CompareOperator.EQ, -i);
        }
        Variant? end;
        assert_true (it.next (TIMEOUT_MS, null, out end));
        assert_null (end);
    } catch (Error e) {
        error ("%s", e.message);
    }
    terminate_and_join (pool);
}

void test_close () {
    var pool = new Mpg.Pool (2);
    var f = pool.add_function ((x) => x);
    var d = new Deadline ();
    try {
        pool.map (f, ints (0, 4), 0, d.get ());
        pool.close ();
        try {
            pool.map (f, ints (0, 4), 0, d.get ());
            assert_not_reached ();
        } catch (Mpg.Error.INVALID_STATE e) {
        }
        assert_true (pool.join (TIMEOUT_MS));
        assert_cmpuint (pool.dup_worker_pids ().length, CompareOperator.EQ, 0);
    } catch (Error e) {
        error ("%s", e.message);
    }
    d.stop ();
}

int main (string[] args) {
    Test.init (ref args);

    Test.add_func ("/Mpg/Vala/Pool/map-lambda", test_map_lambda);
    Test.add_func ("/Mpg/Vala/Pool/map-async", test_map_async);
    Test.add_func ("/Mpg/Vala/Pool/error", test_error);
    Test.add_func ("/Mpg/Vala/Pool/worker-died", test_worker_died);
    Test.add_func ("/Mpg/Vala/Pool/imap", test_imap);
    Test.add_func ("/Mpg/Vala/Pool/close", test_close);

    return Test.run ();
}
