/* fuzz-wire.c: libFuzzer target for the frame decoder
 *
 * Feeds arbitrary bytes to the decoder a receiver runs on every datagram:
 * it must return a value or a GError, never crash, hang or allocate more
 * than the announced (and capped) message size. Every decoded value is
 * re-encoded and must decode to an equal value.
 *
 * Build and run: fuzz/run [SECONDS]
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <libmpg.h>

#include "mpg-channel-private.h"
#include "mpg-wire-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GBytes) again = NULL;
  gsize consumed = 0;

  /* A small cap, so that the fuzzer explores the size checks. */
  value = _mpg_channel_decode (data, size, NULL, 0, 1 << 20, NULL, &error);
  g_assert ((value == NULL) != (error == NULL));
  if (value == NULL)
    return 0;

  /* What was accepted is in normal form: it encodes to the same bytes. */
  again = _mpg_wire_encode (g_variant_ref (value), NULL);
  g_assert (again != NULL);
  g_assert (g_bytes_get_size (again) == size);
  g_clear_pointer (&value, g_variant_unref);
  g_assert (_mpg_wire_decode (g_bytes_get_data (again, NULL), g_bytes_get_size (again),
                              1 << 20, &value, &consumed, NULL));
  g_assert (value != NULL && consumed == size);

  return 0;
}
