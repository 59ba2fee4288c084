/* mpg-wire.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "mpg-error.h"
#include "mpg-wire-private.h"

/*
 * _mpg_wire_is_normal_form:
 * @value: a value, typically from untrusted bytes
 *
 * The same as g_variant_is_normal_form(), which checks arrays element by
 * element (some 18 ms per MiB of bytes here): any data of the right length
 * is in normal form for an array of fixed-size numbers other than booleans.
 */
gboolean
_mpg_wire_is_normal_form (GVariant *value)
{
  const char *type = g_variant_get_type_string (value);

  if (type[0] == 'a' && type[1] != '\0' && type[2] == '\0' && strchr ("ynqiuxtdh", type[1]) != NULL)
    {
      gsize element_size;

      switch (type[1])
        {
        case 'y': element_size = 1; break;
        case 'n': case 'q': element_size = 2; break;
        case 'i': case 'u': case 'h': element_size = 4; break;
        default: element_size = 8; break;
        }
      return g_variant_get_size (value) % element_size == 0;
    }

  return g_variant_is_normal_form (value);
}

/*
 * _mpg_wire_encode:
 * @value: a value (a floating reference is sunk)
 * @error: return location for a #GError
 *
 * Returns: (transfer full): one frame holding @value in normal form, or
 *   %NULL with %MPG_ERROR_TOO_LARGE if its type string or data cannot be
 *   framed
 */
GBytes *
_mpg_wire_encode (GVariant  *value,
                  GError   **error)
{
  g_autoptr(GVariant) normal = NULL;
  const char *type;
  gsize type_len;
  gsize data_len;
  guint8 *buf;

  g_return_val_if_fail (value != NULL, NULL);

  g_variant_ref_sink (value);
  if (_mpg_wire_is_normal_form (value))
    normal = g_steal_pointer (&value);
  else
    {
      normal = g_variant_get_normal_form (value);
      g_variant_unref (value);
    }

  type = g_variant_get_type_string (normal);
  type_len = strlen (type);
  data_len = g_variant_get_size (normal);

  if (type_len > MPG_WIRE_MAX_TYPE || data_len > G_MAXUINT32 - MPG_WIRE_HEADER_SIZE - type_len)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "A value of %" G_GSIZE_FORMAT " bytes with a type string of %" G_GSIZE_FORMAT
                   " characters cannot be sent (at most 4 GiB and %d characters)",
                   data_len, type_len, MPG_WIRE_MAX_TYPE);
      return NULL;
    }

  buf = g_malloc (MPG_WIRE_HEADER_SIZE + type_len + data_len);
  memcpy (buf, MPG_WIRE_MAGIC, 4);
  _mpg_wire_put_u32 (buf + 4, 0);
  _mpg_wire_put_u32 (buf + 8, type_len);
  _mpg_wire_put_u32 (buf + 12, data_len);
  memcpy (buf + MPG_WIRE_HEADER_SIZE, type, type_len);
  /* g_variant_store() needs an aligned destination; the data may not be. */
  if (data_len > 0)
    memcpy (buf + MPG_WIRE_HEADER_SIZE + type_len, g_variant_get_data (normal), data_len);

  return g_bytes_new_take (buf, MPG_WIRE_HEADER_SIZE + type_len + data_len);
}

/*
 * _mpg_wire_decode:
 * @data: (array length=len): received bytes, starting at a frame boundary
 * @len: how many bytes @data holds
 * @max_frame: the largest frame (header included) to accept
 * @out_value: (out) (transfer full): the decoded value, or %NULL if @data does
 *   not hold a whole frame yet
 * @out_consumed: (out): how many bytes of @data the frame used (0 if incomplete)
 * @error: return location for a #GError
 *
 * Decodes the first frame of @data. Every length is checked before anything
 * is allocated, so hostile bytes cost at most @max_frame bytes of memory.
 * Only a valid, definite type string and data in normal form are accepted:
 * whatever is returned can be used without further checks.
 *
 * Returns: %FALSE with @error set if @data does not start with a valid frame;
 *   %TRUE otherwise (with *@out_value %NULL while the frame is incomplete).
 */
gboolean
_mpg_wire_decode (const guint8  *data,
                  gsize          len,
                  gsize          max_frame,
                  GVariant     **out_value,
                  gsize         *out_consumed,
                  GError       **error)
{
  g_autofree char *type_string = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) value = NULL;
  guint32 flags, type_len, data_len;
  guint64 frame_len;
  const char *endptr = NULL;

  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (out_value != NULL, FALSE);
  g_return_val_if_fail (out_consumed != NULL, FALSE);

  *out_value = NULL;
  *out_consumed = 0;

  /* Check the magic as soon as its first byte is there, so that a stream of
   * garbage is refused at once rather than waited on. */
  if (len > 0 && memcmp (data, MPG_WIRE_MAGIC, MIN (len, 4)) != 0)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "Not a libmpg message (bad magic)");
      return FALSE;
    }

  if (len < MPG_WIRE_HEADER_SIZE)
    return TRUE;

  flags = _mpg_wire_get_u32 (data + 4);
  type_len = _mpg_wire_get_u32 (data + 8);
  data_len = _mpg_wire_get_u32 (data + 12);

  if (flags != 0)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "Unsupported message flags 0x%x", flags);
      return FALSE;
    }

  if (type_len == 0 || type_len > MPG_WIRE_MAX_TYPE)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "Invalid type string length %u", type_len);
      return FALSE;
    }

  frame_len = (guint64) MPG_WIRE_HEADER_SIZE + type_len + data_len;
  if (frame_len > max_frame)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "Message of %" G_GUINT64_FORMAT " bytes exceeds the maximum of %" G_GSIZE_FORMAT,
                   frame_len, max_frame);
      return FALSE;
    }

  if (len < MPG_WIRE_HEADER_SIZE + type_len)
    return TRUE;

  type_string = g_strndup ((const char *) data + MPG_WIRE_HEADER_SIZE, type_len);
  if (strlen (type_string) != type_len ||
      !g_variant_type_string_scan (type_string, NULL, &endptr) ||
      *endptr != '\0' ||
      !g_variant_type_is_definite (G_VARIANT_TYPE (type_string)))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "Invalid or indefinite type string in message");
      return FALSE;
    }

  if (len < frame_len)
    return TRUE;

  bytes = g_bytes_new (data + MPG_WIRE_HEADER_SIZE + type_len, data_len);
  value = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type_string), bytes, FALSE));
  if (!_mpg_wire_is_normal_form (value))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "Message of type %s is not in normal form", type_string);
      return FALSE;
    }

  *out_value = g_steal_pointer (&value);
  *out_consumed = frame_len;
  return TRUE;
}

/*
 * _mpg_wire_error_to_variant:
 * @error: an error
 *
 * Returns: (transfer floating): @error as `(sis)`: domain name, code, message
 */
GVariant *
_mpg_wire_error_to_variant (const GError *error)
{
  const char *domain = g_quark_to_string (error->domain);

  return g_variant_new ("(sis)",
                        domain ? domain : "",
                        error->code,
                        error->message ? error->message : "");
}

/* Error domains are quarks, which are never freed: a hostile peer must not
 * be able to grow the quark table without bound. */
#define MAX_REMOTE_DOMAINS 256
#define MAX_DOMAIN_LEN     128

static gboolean
domain_name_is_valid (const char *domain)
{
  gsize len = 0;

  for (const char *p = domain; *p != '\0'; p++, len++)
    {
      if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_' && *p != '.')
        return FALSE;
    }

  return len > 0 && len <= MAX_DOMAIN_LEN;
}

/*
 * _mpg_wire_error_from_variant:
 * @variant: a `(sis)` from _mpg_wire_error_to_variant()
 *
 * Rebuilds the error in this process with the same domain, code and
 * message. The domain is found by name; error quarks are registered
 * lazily, so a domain this process has not used yet is registered here,
 * and then matches when the program first uses it. Only the first few
 * hundred such domains are accepted (so that a hostile peer cannot grow
 * the quark table), and only plausible names: past that, or for an odd
 * name, the error is %MPG_ERROR_REMOTE naming the remote domain and code.
 *
 * Returns: (transfer full): the error
 */
GError *
_mpg_wire_error_from_variant (GVariant *variant)
{
  static gint n_remote_domains;
  const char *domain;
  const char *message;
  gint32 code;
  GQuark quark = 0;

  g_return_val_if_fail (g_variant_is_of_type (variant, G_VARIANT_TYPE ("(sis)")), NULL);

  g_variant_get (variant, "(&si&s)", &domain, &code, &message);

  if (domain_name_is_valid (domain))
    {
      quark = g_quark_try_string (domain);
      /* Counted only while under the cap, so that the count cannot wrap. */
      if (quark == 0 && g_atomic_int_get (&n_remote_domains) < MAX_REMOTE_DOMAINS &&
          g_atomic_int_add (&n_remote_domains, 1) < MAX_REMOTE_DOMAINS)
        quark = g_quark_from_string (domain);
    }

  if (quark != 0)
    return g_error_new_literal (quark, code, message);

  return g_error_new (MPG_ERROR, MPG_ERROR_REMOTE, "%s:%d: %s",
                      domain[0] != '\0' ? domain : "unknown-domain", code, message);
}
