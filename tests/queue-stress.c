/* queue-stress.c: many producers and consumers on one MpgQueue
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * 8 producer processes put N messages each (random sizes from 0 to 64 KiB,
 * and two of 2 to 6 MiB each), 4 consumer processes take them. Every
 * message carries its producer, its sequence number, its size and a hash
 * of its payload; consumers record what they got in shared memory. The
 * checks: nothing lost, nothing duplicated, nothing torn, and each
 * consumer sees each producer's messages in order.
 *
 * The kill test makes a producer SIGKILL itself in the middle of a send
 * (after its large message's memfd is written, before the datagram goes)
 * and a consumer in the middle of a receive (after it took a datagram,
 * before decoding it), through the channel's test-only fault hook, and
 * checks that the others get every message that was not taken and never
 * block.
 *
 * Usage: queue-stress [N]        (GTest options too; N defaults to 150)
 *        queue-stress 20000      (the full-size run)
 *        queue-stress bench      (throughput, not a test)
 */

#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <libmpg.h>

#include "mpg-channel-private.h"

#define N_PRODUCERS 8
#define N_CONSUMERS 4
#define MAX_SMALL   (64 * 1024)
#define WAIT_MS     60000

static guint n_messages = 150;
/* The sizes of the large messages, in MiB, at least and below */
static guint big_min = 2;
static guint big_max = 6;

/* What consumers found, shared by every process of a run. */
typedef struct
{
  gint torn;                 /* hash or size mismatches */
  gint out_of_order;         /* a producer's messages out of order */
  gint malformed;            /* anything else unexpected */
  gint counts[];             /* [producer * n_messages + seq] */
} Results;

static Results *
results_new (void)
{
  gsize size = sizeof (Results) + sizeof (gint) * N_PRODUCERS * n_messages;
  void *map = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

  g_assert_true (map != MAP_FAILED);
  return map;
}

static void
results_free (Results *results)
{
  munmap (results, sizeof (Results) + sizeof (gint) * N_PRODUCERS * n_messages);
}

static guint64
hash_bytes (const guint8 *data,
            gsize         len)
{
  guint64 h = 0xcbf29ce484222325ull;

  for (gsize i = 0; i < len; i++)
    h = (h ^ data[i]) * 0x100000001b3ull;

  return h;
}

static void
fill_payload (guint8  *data,
              gsize    len,
              guint64  seed)
{
  guint64 x = seed * 0x9e3779b97f4a7c15ull + 1;
  gsize i = 0;

  while (i < len)
    {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      for (guint b = 0; b < 8 && i < len; b++, i++)
        data[i] = (guint8) (x >> (b * 8));
    }
}

static gboolean
is_big (guint seq)
{
  return seq == n_messages / 3 || seq == 2 * n_messages / 3;
}

/* Producers */

typedef struct
{
  MpgQueue *queue;
  guint id;
  guint kill_at;             /* the send that kills this producer, 0 for none */
} Producer;

static GVariant *
produce (GVariant  *arg,
         gpointer   user_data,
         GError   **error)
{
  Producer *p = user_data;
  g_autoptr(GRand) rand = g_rand_new_with_seed (1000 + p->id);
  guint8 *buf = g_malloc (8 * 1024 * 1024);

  if (p->kill_at > 0)
    _mpg_channel_set_fault (MPG_CHANNEL_FAULT_KILL_IN_SEND, p->kill_at);

  for (guint seq = 0; seq < n_messages; seq++)
    {
      gsize size = is_big (seq) ? (gsize) g_rand_int_range (rand, big_min, big_max + 1) * 1024 * 1024
                                : (gsize) g_rand_int_range (rand, 0, MAX_SMALL + 1);
      GVariant *payload;

      fill_payload (buf, size, ((guint64) p->id << 32) | seq);
      payload = g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, buf, size, 1);
      if (!mpg_queue_put (p->queue,
                          g_variant_new ("(uuut@ay)", p->id, seq, (guint32) size,
                                         hash_bytes (buf, size), payload),
                          TRUE, WAIT_MS, NULL, error))
        {
          g_free (buf);
          return NULL;
        }
    }

  g_free (buf);
  return NULL;
}

/* Consumers */

typedef struct
{
  MpgQueue *queue;
  Results *results;
  guint kill_at;             /* the receive that kills this consumer, 0 for none */
} Consumer;

static GVariant *
consume (GVariant  *arg,
         gpointer   user_data,
         GError   **error)
{
  Consumer *c = user_data;
  gint64 last[N_PRODUCERS];

  for (guint i = 0; i < N_PRODUCERS; i++)
    last[i] = -1;

  if (c->kill_at > 0)
    _mpg_channel_set_fault (MPG_CHANNEL_FAULT_KILL_IN_RECEIVE, c->kill_at);

  for (;;)
    {
      g_autoptr(GVariant) v = mpg_queue_get (c->queue, TRUE, WAIT_MS, NULL, error);
      g_autoptr(GVariant) payload = NULL;
      guint32 producer, seq, size;
      guint64 hash;
      const guint8 *data;
      gsize len;

      if (v == NULL)
        return NULL;
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
        break;   /* the end */
      if (!g_variant_is_of_type (v, G_VARIANT_TYPE ("(uuutay)")))
        {
          g_atomic_int_inc (&c->results->malformed);
          continue;
        }

      g_variant_get (v, "(uuut@ay)", &producer, &seq, &size, &hash, &payload);
      if (producer >= N_PRODUCERS || seq >= n_messages)
        {
          g_atomic_int_inc (&c->results->malformed);
          continue;
        }
      data = g_variant_get_fixed_array (payload, &len, 1);
      if (len != size || hash_bytes (data, len) != hash)
        g_atomic_int_inc (&c->results->torn);
      if ((gint64) seq <= last[producer])
        g_atomic_int_inc (&c->results->out_of_order);
      last[producer] = seq;
      g_atomic_int_inc (&c->results->counts[producer * n_messages + seq]);
    }

  return NULL;
}

/* A run */

static MpgProcess *
start (MpgTaskFunc func,
       gpointer    data)
{
  g_autoptr(GError) error = NULL;
  MpgProcess *p = mpg_process_new (NULL, func, data, NULL);

  mpg_process_start (p, &error);
  g_assert_no_error (error);

  return p;
}

static gint
join (MpgProcess *p)
{
  g_autoptr(GError) error = NULL;
  /* Generous for the full-size run on a slow machine, but bounded. */
  gint timeout = WAIT_MS + n_messages * 20;

  mpg_process_join (p, timeout, NULL, &error);
  g_assert_no_error (error);

  return mpg_process_get_exitcode (p);
}

static void
put_stop (MpgQueue *q)
{
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < N_CONSUMERS; i++)
    {
      mpg_queue_put (q, g_variant_new_string ("stop"), TRUE, WAIT_MS, NULL, &error);
      g_assert_no_error (error);
    }
}

static guint
drain (MpgQueue *q)
{
  guint n = 0;

  for (;;)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) v = mpg_queue_get (q, FALSE, 0, NULL, &error);

      if (v == NULL)
        {
          g_assert_error (error, MPG_ERROR, MPG_ERROR_EMPTY);
          return n;
        }
      n++;
    }
}

static void
run_stress (guint maxsize)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgQueue) q = mpg_queue_new (maxsize, &error);
  Results *results = results_new ();
  Producer producers[N_PRODUCERS];
  Consumer consumers[N_CONSUMERS];
  MpgProcess *pp[N_PRODUCERS];
  MpgProcess *cp[N_CONSUMERS];
  gint64 start_time = g_get_monotonic_time ();

  g_assert_no_error (error);

  for (guint i = 0; i < N_CONSUMERS; i++)
    {
      consumers[i] = (Consumer) { q, results, 0 };
      cp[i] = start (consume, &consumers[i]);
    }
  for (guint i = 0; i < N_PRODUCERS; i++)
    {
      producers[i] = (Producer) { q, i, 0 };
      pp[i] = start (produce, &producers[i]);
    }

  for (guint i = 0; i < N_PRODUCERS; i++)
    {
      g_assert_cmpint (join (pp[i]), ==, 0);
      g_object_unref (pp[i]);
    }
  put_stop (q);
  for (guint i = 0; i < N_CONSUMERS; i++)
    {
      g_assert_cmpint (join (cp[i]), ==, 0);
      g_object_unref (cp[i]);
    }

  g_test_message ("%u messages through a queue of maxsize %u in %.2f s",
                  N_PRODUCERS * n_messages, maxsize,
                  (g_get_monotonic_time () - start_time) / 1e6);

  g_assert_cmpint (results->torn, ==, 0);
  g_assert_cmpint (results->out_of_order, ==, 0);
  g_assert_cmpint (results->malformed, ==, 0);
  for (guint i = 0; i < N_PRODUCERS * n_messages; i++)
    if (results->counts[i] != 1)
      {
        g_test_message ("producer %u message %u received %d times",
                        i / n_messages, i % n_messages, results->counts[i]);
        g_assert_cmpint (results->counts[i], ==, 1);
      }

  g_assert_cmpuint (drain (q), ==, 0);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
  results_free (results);
}

static void
test_stress_unbounded (void)
{
  g_test_summary ("8 producers and 4 consumers of random sizes up to several MiB on an unbounded queue: "
                  "nothing lost, duplicated, torn or out of order");
  run_stress (0);
}

static void
test_stress_bounded (void)
{
  g_test_summary ("The same on a queue of maxsize 16, where producers wait for slots");
  run_stress (16);
}

#define KILL_MAXSIZE 16

static void
test_stress_kill (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgQueue) q = mpg_queue_new (KILL_MAXSIZE, &error);
  Results *results = results_new ();
  Producer producers[N_PRODUCERS];
  Consumer consumers[N_CONSUMERS];
  MpgProcess *pp[N_PRODUCERS];
  MpgProcess *cp[N_CONSUMERS];
  /* Producer 0 dies sending its first big message (the memfd is written,
   * the datagram not sent); consumer 0 dies in its 5th receive, having
   * taken the message. */
  guint producer_kill_at = n_messages / 3 + 1;
  guint consumer_kill_at = 5;
  guint missing = 0;
  guint fitted = 0;

  g_test_summary ("A producer killed in a send and a consumer killed in a receive: the others get every "
                  "message not taken, and nobody blocks");
  g_assert_no_error (error);

  for (guint i = 0; i < N_PRODUCERS; i++)
    {
      producers[i] = (Producer) { q, i, i == 0 ? producer_kill_at : 0 };
      pp[i] = start (produce, &producers[i]);
    }

  /* The doomed consumer first, alone, so that it surely takes a message
   * before the others could empty the queue. */
  consumers[0] = (Consumer) { q, results, consumer_kill_at };
  cp[0] = start (consume, &consumers[0]);
  g_assert_cmpint (join (cp[0]), ==, -SIGKILL);
  for (guint i = 1; i < N_CONSUMERS; i++)
    {
      consumers[i] = (Consumer) { q, results, 0 };
      cp[i] = start (consume, &consumers[i]);
    }

  for (guint i = 0; i < N_PRODUCERS; i++)
    {
      g_assert_cmpint (join (pp[i]), ==, i == 0 ? -SIGKILL : 0);
      g_object_unref (pp[i]);
    }
  put_stop (q);
  for (guint i = 1; i < N_CONSUMERS; i++)
    g_assert_cmpint (join (cp[i]), ==, 0);
  for (guint i = 0; i < N_CONSUMERS; i++)
    g_object_unref (cp[i]);

  g_assert_cmpint (results->torn, ==, 0);
  g_assert_cmpint (results->out_of_order, ==, 0);
  g_assert_cmpint (results->malformed, ==, 0);
  for (guint p = 0; p < N_PRODUCERS; p++)
    for (guint seq = 0; seq < n_messages; seq++)
      {
        gint count = results->counts[p * n_messages + seq];
        /* Producer 0's send number producer_kill_at (seq kill_at - 1)
         * never happened, nor any after it. */
        gboolean sent = p != 0 || seq < producer_kill_at - 1;

        g_assert_cmpint (count, <=, 1);
        if (!sent)
          g_assert_cmpint (count, ==, 0);
        else if (count == 0)
          missing++;
      }
  /* Exactly the one message the killed consumer took. */
  g_assert_cmpuint (missing, ==, 1);

  /* The documented approximations: the stop message nobody took is left,
   * the counters still count the consumer's message, and both deaths cost
   * the queue a slot. */
  g_assert_cmpuint (drain (q), ==, 1);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 1);
  while (mpg_queue_put (q, g_variant_new_int32 (0), FALSE, 0, NULL, &error))
    fitted++;
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FULL);
  g_assert_cmpuint (fitted, ==, KILL_MAXSIZE - 2);

  results_free (results);
}

/* Throughput, for humans: queue-stress bench */

static GVariant *
bench_produce (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  MpgQueue *q = user_data;
  guint32 n, size;
  gboolean as_string;
  g_autofree guint8 *buf = NULL;
  g_autoptr(GVariant) string = NULL;

  g_variant_get (arg, "(uub)", &n, &size, &as_string);
  buf = g_malloc0 (MAX (size, 1));
  if (as_string)
    {
      memset (buf, 'x', size - 1);
      buf[size - 1] = 0;
      string = g_variant_ref_sink (g_variant_new_string ((char *) buf));
    }
  for (guint32 i = 0; i < n; i++)
    {
      GVariant *v = size == 0 ? g_variant_new_uint32 (i)
                  : as_string ? g_variant_ref (string)
                  : g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, buf, size, 1);

      if (!mpg_queue_put (q, v, TRUE, WAIT_MS, NULL, error))
        return NULL;
    }

  return NULL;
}

static void
bench (guint    n_producers,
       guint32  n,
       guint32  size,
       gboolean as_string)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgQueue) q = mpg_queue_new (0, &error);
  MpgProcess *pp[N_PRODUCERS];
  gint64 start_time;
  gdouble secs;
  guint32 total = n * n_producers;

  g_assert_no_error (error);
  start_time = g_get_monotonic_time ();
  for (guint i = 0; i < n_producers; i++)
    {
      pp[i] = mpg_process_new (g_variant_new ("(uub)", n, size, as_string), bench_produce,
                               g_object_ref (q), g_object_unref);
      mpg_process_start (pp[i], &error);
      g_assert_no_error (error);
    }
  for (guint32 i = 0; i < total; i++)
    {
      g_autoptr(GVariant) v = mpg_queue_get (q, TRUE, WAIT_MS, NULL, &error);

      g_assert_no_error (error);
    }
  secs = (g_get_monotonic_time () - start_time) / 1e6;
  for (guint i = 0; i < n_producers; i++)
    {
      mpg_process_join (pp[i], WAIT_MS, NULL, &error);
      g_assert_no_error (error);
      g_object_unref (pp[i]);
    }

  if (size == 0)
    g_print ("%u producer(s) -> 1 consumer, %u small messages: %.0f messages/s\n",
             n_producers, total, total / secs);
  else
    g_print ("%u producer(s) -> 1 consumer, %u messages of %u bytes (%s): %.0f messages/s, %.0f MiB/s\n",
             n_producers, total, size, as_string ? "s" : "ay",
             total / secs, (gdouble) total * size / secs / (1024 * 1024));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  if (argc > 1 && g_str_equal (argv[1], "bench"))
    {
      bench (1, 200000, 0, FALSE);
      bench (4, 50000, 0, FALSE);
      bench (1, 20000, 32 * 1024, FALSE);
      bench (1, 20000, 32 * 1024, TRUE);
      bench (1, 1000, 1024 * 1024, FALSE);
      bench (1, 1000, 1024 * 1024, TRUE);
      return 0;
    }

  if (argc > 1)
    n_messages = (guint) g_ascii_strtoull (argv[1], NULL, 10);
  else if (g_getenv ("MPG_TEST_VALGRIND") != NULL)
    n_messages = 12;
  /* Still the memfd path, at a pace valgrind can follow. */
  if (g_getenv ("MPG_TEST_VALGRIND") != NULL)
    big_min = big_max = 1;
  if (n_messages < 6)
    n_messages = 6;

  g_test_add_func ("/Mpg/Queue/stress/unbounded", test_stress_unbounded);
  g_test_add_func ("/Mpg/Queue/stress/bounded", test_stress_bounded);
  g_test_add_func ("/Mpg/Queue/stress/kill", test_stress_kill);

  return g_test_run ();
}
