/* fuzz-variant.c: libFuzzer target for the checks a decoded value goes
 * through before a receiver uses it
 *
 * Input: one byte, the number of fds (0 to 3) that come with the message,
 * then one datagram. The datagram is decoded as a receiver does
 * (_mpg_channel_decode with those fds: normal form, every handle inside
 * any container or variant indexing one of the fds), and the decision is
 * checked against an independent walk of the whole value. The value, and
 * every `(sis)` inside it, then goes through what the receivers do with
 * such values: the remote-error conversion (_mpg_wire_error_from_variant,
 * as for a process's or a pool task's error and a pool initializer's
 * failure) and the unpacking of a process's result message `(bmv(sis))`.
 *
 * Build and run: fuzz/run SECONDS variant
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

static int devnull = -1;

/* As _mpg_wire_error_from_variant() promises: the same domain (by name),
 * code and message, or MPG_ERROR_REMOTE naming them. */
static void
check_remote_error (GVariant *variant)
{
  g_autoptr(GError) error = NULL;
  const char *domain, *message;
  gint32 code;

  g_variant_get (variant, "(&si&s)", &domain, &code, &message);
  error = _mpg_wire_error_from_variant (variant);
  g_assert (error != NULL && error->domain != 0 && error->message != NULL);
  g_assert (g_utf8_validate (error->message, -1, NULL));

  if (error->domain == MPG_ERROR && error->code == MPG_ERROR_REMOTE &&
      !(g_str_equal (domain, g_quark_to_string (MPG_ERROR)) && code == MPG_ERROR_REMOTE))
    {
      /* Not rebuilt: the message names the domain and code. */
      g_autofree char *expected = g_strdup_printf ("%s:%d: %s",
                                                   domain[0] != '\0' ? domain : "unknown-domain",
                                                   code, message);

      g_assert_cmpstr (error->message, ==, expected);
    }
  else
    {
      g_assert_cmpstr (g_quark_to_string (error->domain), ==, domain);
      g_assert_cmpint (error->code, ==, code);
      g_assert_cmpstr (error->message, ==, message);
    }
}

static void
visit (GVariant *part,
       gpointer  user_data)
{
  if (g_variant_is_of_type (part, G_VARIANT_TYPE ("(sis)")))
    check_remote_error (part);
}

/* What MpgProcess does with its child's result message. */
static void
check_process_result (GVariant *message)
{
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  gboolean ok;

  if (!g_variant_is_of_type (message, G_VARIANT_TYPE ("(bmv(sis))")))
    return;

  g_variant_get_child (message, 0, "b", &ok);
  if (ok)
    {
      g_autoptr(GVariant) maybe = g_variant_get_child_value (message, 1);
      g_autoptr(GVariant) boxed = g_variant_get_maybe (maybe);

      if (boxed != NULL)
        result = g_variant_get_variant (boxed);
    }
  else
    {
      g_autoptr(GVariant) error_v = g_variant_get_child_value (message, 2);

      error = _mpg_wire_error_from_variant (error_v);
      g_assert (error != NULL);
    }
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  FuzzInput in = { data, size };
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) wire_error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) wire_value = NULL;
  g_autoptr(GUnixFDList) fd_list = NULL;
  int fds[3];
  guint n_fds;
  gsize consumed = 0;
  gint64 max_handle;

  if (devnull < 0)
    devnull = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  g_assert (devnull >= 0);

  n_fds = fuzz_u8 (&in) % 4;
  for (guint i = 0; i < n_fds; i++)
    {
      fds[i] = fcntl (devnull, F_DUPFD_CLOEXEC, 0);
      g_assert (fds[i] >= 0);
    }

  value = _mpg_channel_decode (in.data, in.size, fds, n_fds, FUZZ_MAX_MESSAGE, &fd_list, &error);
  g_assert ((value == NULL) != (error == NULL));
  g_assert (value != NULL || fd_list == NULL);
  g_assert ((fd_list != NULL) == (value != NULL && n_fds > 0));
  if (fd_list != NULL)
    g_assert_cmpint (g_unix_fd_list_get_length (fd_list), ==, n_fds);
  g_clear_object (&fd_list);
  /* The fds are the receiver's or closed: none is left behind. */
  for (guint i = 0; i < n_fds; i++)
    g_assert (!fuzz_fd_is_open (fds[i]));

  /* The same frame, by the frame decoder alone. */
  if (!_mpg_wire_decode (in.data, in.size, FUZZ_MAX_MESSAGE, &wire_value, &consumed, &wire_error) ||
      wire_value == NULL || consumed != in.size)
    {
      g_assert (value == NULL);
      return 0;
    }

  /* Accepted means in normal form (the decoder takes a shortcut for arrays
   * of fixed-size numbers), and every handle indexing one of the fds. */
  g_assert (g_variant_is_normal_form (wire_value));
  max_handle = fuzz_walk (wire_value, 0, visit, NULL);
  g_assert ((value != NULL) == (max_handle < (gint64) n_fds));
  if (value == NULL)
    {
      g_assert_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL);
      return 0;
    }

  g_assert (g_variant_equal (value, wire_value));
  check_process_result (value);

  /* What MpgConnection's recv_bytes does with an `ay`. */
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING))
    {
      g_autoptr(GBytes) bytes = g_variant_get_data_as_bytes (value);

      g_assert (g_bytes_get_size (bytes) == g_variant_get_size (value));
    }

  return 0;
}
