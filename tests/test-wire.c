/* test-wire.c: the frame format, with valid and hostile bytes
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include <libmpg.h>

#include "mpg-wire-private.h"

static GVariant *
roundtrip (GVariant *value)
{
  g_autoptr(GBytes) frame = _mpg_wire_encode (value, NULL);
  g_autoptr(GError) error = NULL;
  GVariant *out = NULL;
  gsize consumed = 0;
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);

  /* Every proper prefix is "incomplete", never an error or a value. */
  for (gsize i = 0; i < len; i += MAX (1, len / 50))
    {
      g_assert_true (_mpg_wire_decode (data, i, MPG_WIRE_DEFAULT_MAX, &out, &consumed, &error));
      g_assert_no_error (error);
      g_assert_null (out);
      g_assert_cmpuint (consumed, ==, 0);
    }

  g_assert_true (_mpg_wire_decode (data, len, MPG_WIRE_DEFAULT_MAX, &out, &consumed, &error));
  g_assert_no_error (error);
  g_assert_nonnull (out);
  g_assert_cmpuint (consumed, ==, len);
  return out;
}

static void
test_wire_roundtrip (void)
{
  const char *texts[] = {
    "42", "[1, 4, 9]", "(42, @mv nothing, 'hello')", "{'a': <1>, 'b': <'x'>}",
    "@ay []", "(true, 3.5, @ms 'x', [(1, 'a'), (2, 'b')])", "@as []",
  };

  g_test_summary ("Values survive encode and decode; prefixes are incomplete");

  for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr(GVariant) in = g_variant_parse (NULL, texts[i], NULL, NULL, NULL);
      g_autoptr(GVariant) out = NULL;

      g_assert_nonnull (in);
      out = roundtrip (in);
      g_assert_true (g_variant_equal (in, out));
    }
}

static void
expect_error (const guint8 *data,
              gsize         len,
              gsize         max,
              gint          code)
{
  g_autoptr(GError) error = NULL;
  GVariant *out = NULL;
  gsize consumed = 0;

  g_assert_false (_mpg_wire_decode (data, len, max, &out, &consumed, &error));
  g_assert_error (error, MPG_ERROR, code);
  g_assert_null (out);
}

static guint8 *
make_frame (const char *type,
            const void *payload,
            guint32     data_len,
            gsize      *out_len)
{
  gsize type_len = strlen (type);
  guint8 *buf = g_malloc0 (16 + type_len + data_len);
  guint32 v;

  memcpy (buf, "MPG1", 4);
  v = GUINT32_TO_LE ((guint32) type_len);
  memcpy (buf + 8, &v, 4);
  v = GUINT32_TO_LE (data_len);
  memcpy (buf + 12, &v, 4);
  memcpy (buf + 16, type, type_len);
  if (payload != NULL)
    memcpy (buf + 16 + type_len, payload, data_len);
  *out_len = 16 + type_len + data_len;
  return buf;
}

static void
test_wire_hostile (void)
{
  g_autofree guint8 *bad_type = NULL;
  g_autofree guint8 *indefinite = NULL;
  g_autofree guint8 *not_normal = NULL;
  g_autofree guint8 *huge = NULL;
  g_autofree guint8 *flags = NULL;
  g_autofree guint8 *nul_type = NULL;
  g_autofree guint8 *odd_array = NULL;
  g_autofree guint8 *bad_bool = NULL;
  const guint8 three[3] = { 1, 2, 3 };
  const guint8 two = 2;
  gsize len;
  guint8 garbage[32] = "not a frame at all, just bytes";
  /* A string without its terminating NUL is not in normal form. */
  const char unterminated[3] = { 'a', 'b', 'c' };

  g_test_summary ("Hostile bytes give MPG_ERROR_PROTOCOL or TOO_LARGE, never a crash");

  expect_error (garbage, sizeof garbage, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);
  expect_error (garbage, 1, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);

  bad_type = make_frame ("(i", NULL, 4, &len);
  expect_error (bad_type, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);

  indefinite = make_frame ("a*", NULL, 0, &len);
  expect_error (indefinite, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);

  nul_type = make_frame ("i", NULL, 4, &len);
  nul_type[16] = '\0';
  expect_error (nul_type, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);

  not_normal = make_frame ("s", unterminated, sizeof unterminated, &len);
  expect_error (not_normal, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);

  /* Arrays of fixed-size values take a fast path: a length that is not a
   * multiple of the element size, or a boolean that is not 0 or 1, is
   * still refused. */
  odd_array = make_frame ("an", three, sizeof three, &len);
  expect_error (odd_array, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);
  bad_bool = make_frame ("ab", &two, 1, &len);
  expect_error (bad_bool, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);

  flags = make_frame ("i", NULL, 4, &len);
  flags[4] = 1;
  expect_error (flags, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_PROTOCOL);

  /* A header announcing 4 GiB is refused before anything is allocated. */
  huge = make_frame ("ay", NULL, 0, &len);
  memset (huge + 12, 0xff, 4);
  expect_error (huge, len, MPG_WIRE_DEFAULT_MAX, MPG_ERROR_TOO_LARGE);
  expect_error (huge, 16, 1024, MPG_ERROR_TOO_LARGE);
}

static void
test_wire_errors (void)
{
  g_autoptr(GError) in = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "gone");
  g_autoptr(GError) out = NULL;
  g_autoptr(GError) remote = NULL;
  g_autoptr(GError) fresh = NULL;
  g_autoptr(GVariant) v = g_variant_ref_sink (_mpg_wire_error_to_variant (in));
  g_autoptr(GVariant) odd = g_variant_ref_sink (g_variant_new ("(sis)", "bad domain", 3, "m"));
  g_autoptr(GVariant) unseen = g_variant_ref_sink (g_variant_new ("(sis)", "never-used-before-quark", 5, "m"));

  g_test_summary ("Errors travel as domain name, code and message");

  out = _mpg_wire_error_from_variant (v);
  g_assert_error (out, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_cmpstr (out->message, ==, "gone");

  remote = _mpg_wire_error_from_variant (odd);
  g_assert_error (remote, MPG_ERROR, MPG_ERROR_REMOTE);
  g_assert_cmpstr (remote->message, ==, "bad domain:3: m");

  /* Error quarks are created lazily: a plausible name is registered, so
   * that it matches when this process first uses the domain. */
  fresh = _mpg_wire_error_from_variant (unseen);
  g_assert_error (fresh, g_quark_from_static_string ("never-used-before-quark"), 5);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/Mpg/Wire/roundtrip", test_wire_roundtrip);
  g_test_add_func ("/Mpg/Wire/hostile", test_wire_hostile);
  g_test_add_func ("/Mpg/Wire/errors", test_wire_errors);

  return g_test_run ();
}
