/* fuzz-wire.c: libFuzzer target for the frame decoder
 *
 * Feeds arbitrary bytes to the two ways a receiver decodes frames:
 *
 *  - as a stream (_mpg_wire_decode, as MpgProcess reads a result pipe):
 *    the first frame of the bytes, or "incomplete", or an error;
 *  - as one datagram (_mpg_channel_decode without fds, as queues, pipes
 *    and the pool read a socket): exactly one frame.
 *
 * They must return a value or a GError, never crash, hang or allocate more
 * than the announced (and capped) message size, and agree with each other.
 * Every decoded frame re-encodes to the same bytes, each of its prefixes is
 * "incomplete" (not an error), and a cap one byte below its size refuses it.
 *
 * Build and run: fuzz/run SECONDS wire
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <libmpg.h>

#include "mpg-channel-private.h"
#include "mpg-wire-private.h"

#include "fuzz-common.h"

static void
check_incomplete (const guint8 *data,
                  gsize         len)
{
  g_autoptr(GError) error = NULL;
  GVariant *value = NULL;
  gsize consumed = 1;

  g_assert (_mpg_wire_decode (data, len, FUZZ_MAX_MESSAGE, &value, &consumed, &error));
  g_assert (value == NULL && consumed == 0 && error == NULL);
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) channel_error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) channel_value = NULL;
  g_autoptr(GBytes) again = NULL;
  gsize consumed = 0;
  gboolean ok;

  /* The stream decoder. */
  ok = _mpg_wire_decode (data, size, FUZZ_MAX_MESSAGE, &value, &consumed, &error);
  g_assert (ok == (error == NULL));
  g_assert (ok || (value == NULL && consumed == 0));
  if (error != NULL)
    g_assert (error->domain == MPG_ERROR &&
              (error->code == MPG_ERROR_PROTOCOL || error->code == MPG_ERROR_TOO_LARGE));
  g_assert ((value == NULL) == (consumed == 0));

  /* The datagram decoder: the same, if the frame is the whole datagram and
   * has no handle (it comes with no fds). */
  channel_value = _mpg_channel_decode (data, size, NULL, 0, FUZZ_MAX_MESSAGE, NULL, &channel_error);
  g_assert ((channel_value == NULL) != (channel_error == NULL));
  if (channel_value != NULL)
    {
      g_assert (value != NULL && consumed == size);
      g_assert (g_variant_equal (value, channel_value));
    }
  else if (value != NULL && consumed == size)
    /* Refused only because of a handle. */
    g_assert (fuzz_walk (value, 0, NULL, NULL) >= 0);

  if (value == NULL)
    {
      /* Incomplete: every shorter prefix is incomplete too. */
      if (ok && size > 0)
        check_incomplete (data, size - 1);
      return 0;
    }

  g_assert (consumed >= MPG_WIRE_HEADER_SIZE && consumed <= size);

  /* What was accepted is in normal form: it encodes to the same bytes. */
  /* Not floating: encode takes a reference of its own. */
  again = _mpg_wire_encode (value, NULL);
  g_assert (again != NULL);
  g_assert (g_bytes_get_size (again) == consumed);
  g_assert (memcmp (g_bytes_get_data (again, NULL), data, consumed) == 0);

  /* A prefix of a frame is not an error: the rest may come later. */
  check_incomplete (data, consumed - 1);
  check_incomplete (data, size % consumed);
  check_incomplete (data, MIN (consumed - 1, MPG_WIRE_HEADER_SIZE));

  /* A cap below its size refuses it, before allocating anything. */
  {
    g_autoptr(GError) cap_error = NULL;
    GVariant *capped = NULL;
    gsize capped_consumed = 1;

    g_assert (!_mpg_wire_decode (data, size, consumed - 1, &capped, &capped_consumed, &cap_error));
    g_assert (capped == NULL && capped_consumed == 0);
    g_assert_error (cap_error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  }

  return 0;
}
