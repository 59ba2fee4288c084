/* mpg-wire-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-wire-private.h"
#endif

#include <string.h>

#include <glib.h>

G_BEGIN_DECLS

/*
 * The wire: how one GVariant crosses a process boundary as bytes. Pure
 * functions, no I/O, so that they can be tested and fuzzed on buffers.
 *
 * A frame is a 16-byte header, the value's type string, then the value's
 * serialised data in normal form:
 *
 *   offset  size  field
 *   0       4     magic "MPG1"
 *   4       4     flags (little endian u32, must be 0 in this version)
 *   8       4     type string length T (little endian u32, 1..MPG_WIRE_MAX_TYPE)
 *   12      4     data length D (little endian u32)
 *   16      T     type string, not NUL-terminated
 *   16+T    D     serialised data
 */

#define MPG_WIRE_MAGIC        "MPG1"
#define MPG_WIRE_HEADER_SIZE  16
#define MPG_WIRE_MAX_TYPE     1024
/* The default cap on one frame (header included). */
#define MPG_WIRE_DEFAULT_MAX  (256u * 1024u * 1024u)

/* Little-endian 32-bit fields of a frame's header. */
static inline void
_mpg_wire_put_u32 (guint8  *p,
                   guint32  v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static inline guint32
_mpg_wire_get_u32 (const guint8 *p)
{
  guint32 v;

  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

gboolean  _mpg_wire_is_normal_form (GVariant    *value);
GBytes   *_mpg_wire_encode (GVariant      *value,
                            GError       **error);
gboolean  _mpg_wire_decode (const guint8  *data,
                            gsize          len,
                            gsize          max_frame,
                            GVariant     **out_value,
                            gsize         *out_consumed,
                            GError       **error);

GVariant *_mpg_wire_error_to_variant   (const GError  *error);
GError   *_mpg_wire_error_from_variant (GVariant      *variant);

G_END_DECLS
