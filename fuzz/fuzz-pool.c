/* fuzz-pool.c: libFuzzer target for the pool's control messages
 *
 * What a pool worker sends back is decoded as a datagram (no fds), then
 * either an initializer's failure `(sis)`, or a reply that
 * _mpg_pool_reply_check() must accept only if it answers the task the
 * worker holds: type `(utva(u(sis)))`, the chunk and call serial, one
 * result per item, failures only in a boxed (`av`) reply and each naming an
 * item of the chunk once; or an array of numbers alone, one per item. What an accepted reply leads to is then done as
 * the pool does it: each failure's error rebuilt
 * (_mpg_wire_error_from_variant), each boxed result unboxed.
 *
 * Input:
 *   byte 0     bit 0: the chunk is the reply's own (else from the input),
 *              bit 1: the serial is the reply's own, bit 2: the length is
 *              its number of results (these let the fuzzer past the
 *              matching and into the rest of the check)
 *   bytes 1-4  chunk, 5-12 serial, 13-14 length (little endian)
 *   the rest   the datagram
 *
 * Build and run: fuzz/run SECONDS pool
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include <libmpg.h>

#include "mpg-channel-private.h"
#include "mpg-pool-private.h"
#include "mpg-wire-private.h"

#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  FuzzInput in = { data, size };
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) message = NULL;
  g_autoptr(GVariant) results = NULL;
  g_autoptr(GVariant) failures = NULL;
  guint8 modes;
  guint32 chunk;
  guint64 serial;
  guint length;
  gboolean ok;
  gboolean well_typed;
  gboolean bare;

  modes = fuzz_u8 (&in);
  chunk = fuzz_u32 (&in);
  serial = fuzz_u64 (&in);
  length = fuzz_u8 (&in);
  length |= (guint) fuzz_u8 (&in) << 8;

  /* As the pool receives it: _mpg_channel_receive() without taking fds. */
  message = _mpg_channel_decode (in.data, in.size, NULL, 0, FUZZ_MAX_MESSAGE, NULL, &error);
  if (message == NULL)
    return 0;

  if (g_variant_is_of_type (message, G_VARIANT_TYPE ("(sis)")))
    {
      g_autoptr(GError) init_error = _mpg_wire_error_from_variant (message);

      g_assert (init_error != NULL && init_error->message != NULL);
      /* The pool prefixes it. */
      g_prefix_error (&init_error, "Pool initializer failed: ");
      return 0;
    }

  well_typed = g_variant_is_of_type (message, G_VARIANT_TYPE ("(utva(u(sis)))"));
  if (well_typed)
    {
      g_autoptr(GVariant) r = NULL;
      guint32 c;
      guint64 s;

      g_variant_get (message, "(utv@a(u(sis)))", &c, &s, &r, NULL);
      if (modes & 1)
        chunk = c;
      if (modes & 2)
        serial = s;
      if ((modes & 4) && g_variant_is_container (r))
        length = g_variant_n_children (r);
    }
  /* Numbers alone: arrays of y n q i u x t d (not b, not h). */
  bare = g_variant_type_is_array (g_variant_get_type (message)) &&
         strchr ("ynqiuxtd", g_variant_get_type_string (message)[1]) != NULL;
  if (bare && (modes & 4))
    length = g_variant_n_children (message);

  ok = _mpg_pool_reply_check (message, chunk, serial, length, &results, &failures, &error);
  g_assert (ok == (error == NULL));
  if (!ok)
    {
      g_assert_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL);
      return 0;
    }

  /* Accepted: exactly what the pool relies on. */
  g_assert ((well_typed || bare) && results != NULL && failures != NULL);
  if (bare)
    g_assert (g_variant_equal (results, message) && g_variant_n_children (failures) == 0);
  g_assert (g_variant_is_of_type (results, G_VARIANT_TYPE_ARRAY));
  g_assert_cmpuint (g_variant_n_children (results), ==, length);
  g_assert (g_variant_is_of_type (failures, G_VARIANT_TYPE ("a(u(sis))")));
  {
    gsize n_failures = g_variant_n_children (failures);
    gboolean boxed = g_variant_is_of_type (results, G_VARIANT_TYPE ("av"));
    g_autofree guint8 *seen = g_malloc0 (MAX (length, 1));

    g_assert (n_failures == 0 || boxed);
    g_assert (n_failures <= length);
    for (gsize i = 0; i < n_failures; i++)
      {
        g_autoptr(GVariant) error_variant = NULL;
        g_autoptr(GError) item_error = NULL;
        guint32 index;

        g_variant_get_child (failures, i, "(u@(sis))", &index, &error_variant);
        g_assert (index < length && !seen[index]);
        seen[index] = 1;
        item_error = _mpg_wire_error_from_variant (error_variant);
        g_assert (item_error != NULL && item_error->message != NULL);
      }

    for (guint i = 0; i < length && boxed; i++)
      {
        g_autoptr(GVariant) box = g_variant_get_child_value (results, i);
        g_autoptr(GVariant) inner = g_variant_get_variant (box);

        g_assert (inner != NULL);
      }
  }

  return 0;
}
