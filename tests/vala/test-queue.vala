/* test-queue.vala: Mpg.Queue and Mpg.pipe_new from Vala, through the VAPI
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

const int TIMEOUT_MS = 30000;
const string SEED_TEXT = "[<42>, <@mv nothing>, <'hello'>]";

void start (Mpg.Process p) {
    try {
        assert_true (p.start ());
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void join_ok (Mpg.Process p) {
    try {
        assert_true (p.join (TIMEOUT_MS));
    } catch (Error e) {
        error ("%s", e.message);
    }
    assert_cmpint (p.exitcode, CompareOperator.EQ, 0);
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

/* The seed: a Vala child puts [42, None, 'hello'], the parent gets it. */
void test_queue_seed () {
    try {
        var q = new Mpg.Queue (0);
        var p = new Mpg.Process (null, (args) => {
            q.put (Variant.parse (null, SEED_TEXT), true, TIMEOUT_MS, null);
            return null;
        });
        start (p);
        var value = q.get (true, TIMEOUT_MS, null);
        assert_cmpstr (value.get_type_string (), CompareOperator.EQ, "av");
        assert_cmpstr (value.print (false), CompareOperator.EQ, SEED_TEXT);
        join_ok (p);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

/* The parent puts, a Vala child gets until a None-like sentinel. */
void test_queue_child_consumes () {
    try {
        var q = new Mpg.Queue (0);
        var p = new Mpg.Process (null, (args) => {
            int total = 0;
            while (true) {
                var v = q.get (true, TIMEOUT_MS, null);
                if (v.get_maybe () == null)
                    return new Variant.int32 (total);
                total += v.get_maybe ().get_int32 ();
            }
        });
        start (p);
        for (int i = 0; i < 100; i++) {
            var v = new Variant.maybe (VariantType.INT32, new Variant.int32 (i));
            q.put (v, true, TIMEOUT_MS, null);
        }
        q.put (new Variant.maybe (VariantType.INT32, null), true, TIMEOUT_MS, null);
        join_ok (p);
        assert_cmpint (p.dup_result ().get_int32 (), CompareOperator.EQ, 4950);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_queue_empty_and_full () {
    try {
        var q = new Mpg.Queue (1);
        assert_cmpuint (q.get_maxsize (), CompareOperator.EQ, 1);
        assert_true (q.empty ());

        try {
            q.get (true, 100, null);
            assert_not_reached ();
        } catch (Mpg.Error.EMPTY e) {
        }

        q.put (new Variant.string ("only"), false, 0, null);
        assert_true (q.full ());
        assert_cmpuint (q.qsize (), CompareOperator.EQ, 1);
        try {
            q.put (new Variant.string ("one too many"), true, 100, null);
            assert_not_reached ();
        } catch (Mpg.Error.FULL e) {
        }

        assert_cmpstr (q.get (false, 0, null).get_string (), CompareOperator.EQ, "only");
        try {
            q.get (false, 0, null);
            assert_not_reached ();
        } catch (Mpg.Error.EMPTY e) {
        }
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

void test_queue_joinable () {
    try {
        var q = new Mpg.Queue.joinable (0);
        assert_true (q.get_joinable ());
        var results = new Mpg.Queue (0);
        var p = new Mpg.Process (null, (args) => {
            for (int i = 0; i < 10; i++) {
                var v = q.get (true, TIMEOUT_MS, null);
                results.put (new Variant.int32 (v.get_int32 () * 2), true, TIMEOUT_MS, null);
                q.task_done ();
            }
            return null;
        });
        start (p);
        for (int i = 0; i < 10; i++)
            q.put (new Variant.int32 (i), true, TIMEOUT_MS, null);
        /* join() returns once all ten are taken and marked done. */
        assert_true (q.join (TIMEOUT_MS, null));
        int total = 0;
        for (int i = 0; i < 10; i++)
            total += results.get (false, 0, null).get_int32 ();
        assert_cmpint (total, CompareOperator.EQ, 90);
        join_ok (p);

        try {
            q.task_done ();
            assert_not_reached ();
        } catch (Mpg.Error.INVALID_STATE e) {
        }
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

void test_queue_join_timeout () {
    try {
        var q = new Mpg.Queue.joinable (0);
        q.put (new Variant.int32 (1), true, TIMEOUT_MS, null);
        try {
            q.join (100, null);
            assert_not_reached ();
        } catch (Mpg.Error.TIMEOUT e) {
        }
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

async Variant get_one (Mpg.Queue q) throws Error {
    return yield q.get_async (null);
}

void test_queue_get_async () {
    try {
        var loop = new MainLoop ();
        var q = new Mpg.Queue (0);
        var p = new Mpg.Process (null, (args) => {
            Thread.usleep (100000);
            q.put (Variant.parse (null, SEED_TEXT), true, TIMEOUT_MS, null);
            return null;
        });
        Variant? value = null;
        Error? failure = null;
        get_one.begin (q, (obj, res) => {
            try {
                value = get_one.end (res);
            } catch (Error e) {
                failure = e;
            }
            loop.quit ();
        });
        start (p);
        run_loop (loop, "get_async");
        if (failure != null)
            error ("get_async failed: %s", failure.message);
        assert_nonnull (value);
        assert_cmpstr (value.print (false), CompareOperator.EQ, SEED_TEXT);
        join_ok (p);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_queue_add_watch () {
    try {
        var loop = new MainLoop ();
        var q = new Mpg.Queue (0);
        int[] seen = {};
        q.add_watch ((queue, value) => {
            assert_true (queue == q);
            seen += value.get_int32 ();
            if (seen.length == 3) {
                loop.quit ();
                return Source.REMOVE;
            }
            return Source.CONTINUE;
        });
        var p = new Mpg.Process (null, (args) => {
            for (int i = 0; i < 3; i++)
                q.put (new Variant.int32 (i * 10), true, TIMEOUT_MS, null);
            return null;
        });
        start (p);
        run_loop (loop, "the watch");
        join_ok (p);
        assert_cmpint (seen.length, CompareOperator.EQ, 3);
        assert_cmpint (seen[0], CompareOperator.EQ, 0);
        assert_cmpint (seen[1], CompareOperator.EQ, 10);
        assert_cmpint (seen[2], CompareOperator.EQ, 20);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

/* A Vala child echoes what it receives until the parent closes its end. */
void test_pipe_round_trip () {
    try {
        Mpg.Connection parent_end, child_end;
        assert_true (Mpg.pipe_new (true, out parent_end, out child_end));
        assert_true (parent_end.get_readable () && parent_end.get_writable ());

        var p = new Mpg.Process (null, (args) => {
            /* The child's copy of the parent's end must go, or it would
             * never see the end of the stream. */
            parent_end.close ();
            int n = 0;
            while (true) {
                Variant v;
                try {
                    v = child_end.recv (null);
                } catch (Mpg.Error.END_OF_STREAM e) {
                    return new Variant.int32 (n);
                }
                n++;
                child_end.send (new Variant ("(iv)", n, v), null);
            }
        });
        start (p);
        child_end.close ();

        parent_end.send (Variant.parse (null, SEED_TEXT), null);
        assert_true (parent_end.poll (TIMEOUT_MS, null));
        int n;
        Variant back;
        parent_end.recv (null).get ("(iv)", out n, out back);
        assert_cmpint (n, CompareOperator.EQ, 1);
        assert_cmpstr (back.print (false), CompareOperator.EQ, SEED_TEXT);

        parent_end.send (new Variant.string ("second"), null);
        parent_end.recv (null).get ("(iv)", out n, out back);
        assert_cmpint (n, CompareOperator.EQ, 2);
        assert_cmpstr (back.get_string (), CompareOperator.EQ, "second");

        parent_end.close ();
        assert_true (parent_end.get_closed ());
        join_ok (p);
        assert_cmpint (p.dup_result ().get_int32 (), CompareOperator.EQ, 2);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_pipe_end_of_stream () {
    try {
        Mpg.Connection r, w;
        assert_true (Mpg.pipe_new (false, out r, out w));
        assert_true (r.get_readable () && !r.get_writable ());
        assert_true (w.get_writable () && !w.get_readable ());
        assert_false (r.poll (0, null));
        w.send (new Variant.string ("last"), null);
        w.close ();
        assert_cmpstr (r.recv (null).get_string (), CompareOperator.EQ, "last");
        try {
            r.recv (null);
            assert_not_reached ();
        } catch (Mpg.Error.END_OF_STREAM e) {
        }
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

void test_pipe_fd_from_a_child () {
    try {
        Mpg.Connection parent_end, child_end;
        Mpg.pipe_new (true, out parent_end, out child_end);
        var p = new Mpg.Process (null, (args) => {
            parent_end.close ();
            int fds[2];
            assert_cmpint (Posix.pipe (fds), CompareOperator.EQ, 0);
            Posix.write (fds[1], "from vala", 9);
            Posix.close (fds[1]);
            var list = new UnixFDList ();
            int index = list.append (fds[0]);
            Posix.close (fds[0]);
            child_end.send_with_fds (new Variant.handle (index), list, null);
            return null;
        });
        start (p);
        child_end.close ();
        UnixFDList list;
        var value = parent_end.recv_with_fds (out list, null);
        join_ok (p);
        int fd = list.get (value.get_handle ());
        char buf[32];
        var n = Posix.read (fd, buf, buf.length);
        Posix.close (fd);
        assert_cmpint ((int) n, CompareOperator.EQ, 9);
        assert_cmpstr (((string) buf).substring (0, 9), CompareOperator.EQ, "from vala");
    } catch (Error e) {
        error ("%s", e.message);
    }
}

/* Python's multiprocessing.connection.wait(): a connection with a message
 * and a process that ended. */
void test_wait () {
    try {
        Mpg.Connection a, b;
        assert_true (Mpg.pipe_new (true, out a, out b));
        var p = new Mpg.Process (null, (args) => {
            Thread.usleep (100000);
            return null;
        });

        var objects = new GenericArray<Object> ();
        objects.add (b);
        objects.add (p);
        start (p);
        assert_cmpuint (Mpg.wait (objects, 0, null).length, CompareOperator.EQ, 0);

        var ready = Mpg.wait (objects, TIMEOUT_MS, null);
        assert_cmpuint (ready.length, CompareOperator.EQ, 1);
        assert_true (ready[0] == p);
        assert_cmpint (p.exitcode, CompareOperator.EQ, 0);

        a.send (new Variant.int32 (1), null);
        ready = Mpg.wait (objects, TIMEOUT_MS, null);
        assert_cmpuint (ready.length, CompareOperator.EQ, 2);
        assert_true (ready[0] == b);
        assert_true (ready[1] == p);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

int main (string[] args) {
    Test.init (ref args);

    Test.add_func ("/Mpg/Vala/Queue/seed", test_queue_seed);
    Test.add_func ("/Mpg/Vala/Queue/child-consumes", test_queue_child_consumes);
    Test.add_func ("/Mpg/Vala/Queue/empty-and-full", test_queue_empty_and_full);
    Test.add_func ("/Mpg/Vala/Queue/joinable", test_queue_joinable);
    Test.add_func ("/Mpg/Vala/Queue/join-timeout", test_queue_join_timeout);
    Test.add_func ("/Mpg/Vala/Queue/get-async", test_queue_get_async);
    Test.add_func ("/Mpg/Vala/Queue/add-watch", test_queue_add_watch);
    Test.add_func ("/Mpg/Vala/Connection/round-trip", test_pipe_round_trip);
    Test.add_func ("/Mpg/Vala/Connection/end-of-stream", test_pipe_end_of_stream);
    Test.add_func ("/Mpg/Vala/Connection/fd-from-a-child", test_pipe_fd_from_a_child);
    Test.add_func ("/Mpg/Vala/Connection/wait", test_wait);

    return Test.run ();
}
