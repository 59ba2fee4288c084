/* fuzz-common.h: helpers shared by the libFuzzer targets
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

/* GSlice's magazines keep freed blocks: libFuzzer then sees more mallocs
 * than frees in a run and has LeakSanitizer scan the heap after each one,
 * a hundred times slower. GLib reads G_SLICE when it is loaded: the
 * target starts itself again with it set. */
int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  const char *slice = getenv ("G_SLICE");

  if (slice == NULL || strstr (slice, "always-malloc") == NULL)
    {
      setenv ("G_SLICE", "always-malloc", 1);
      execv ("/proc/self/exe", *argv);
      perror ("fuzz: could not run again with G_SLICE=always-malloc");
    }
  return 0;
}

/* A cap small enough that the fuzzer reaches the size checks. */
#define FUZZ_MAX_MESSAGE (1u << 20)

/* Takes bytes off the front of the input; past its end, zeros. */
typedef struct
{
  const guint8 *data;
  gsize size;
} FuzzInput;

static inline guint8
fuzz_u8 (FuzzInput *in)
{
  guint8 v = 0;

  if (in->size > 0)
    {
      v = in->data[0];
      in->data++;
      in->size--;
    }
  return v;
}

static inline guint32
fuzz_u32 (FuzzInput *in)
{
  guint32 v = 0;

  for (int i = 0; i < 4; i++)
    v |= (guint32) fuzz_u8 (in) << (8 * i);
  return v;
}

static inline guint64
fuzz_u64 (FuzzInput *in)
{
  guint64 lo = fuzz_u32 (in);

  return lo | (guint64) fuzz_u32 (in) << 32;
}

/*
 * fuzz_walk:
 * @value: a value the decoder accepted
 *
 * Visits every part of @value without any shortcut (unlike the library's
 * handle check, which skips containers whose type has no `h` or `v`), checks
 * what normal form promises of each leaf, and calls @visit on each part.
 *
 * Returns: the largest handle in @value, or -1 if it holds none (negative
 *   handles count as G_MAXINT32: they index no fd)
 */
static gint64
fuzz_walk (GVariant *value,
           guint     depth,
           void    (*visit) (GVariant *part, gpointer user_data),
           gpointer  user_data)
{
  const GVariantType *type = g_variant_get_type (value);
  gint64 max_handle = -1;

  /* Normal form bounds the nesting (G_VARIANT_MAX_RECURSION_DEPTH, 128):
   * the library's recursive handle check relies on it. */
  g_assert (depth <= 1024);

  if (visit != NULL)
    visit (value, user_data);

  if (g_variant_type_is_basic (type))
    {
      switch (g_variant_classify (value))
        {
        case G_VARIANT_CLASS_HANDLE:
          {
            gint32 h = g_variant_get_handle (value);

            return h < 0 ? G_MAXINT32 : h;
          }
        case G_VARIANT_CLASS_STRING:
          {
            gsize len;
            const char *s = g_variant_get_string (value, &len);

            g_assert (strlen (s) == len);
            g_assert (g_utf8_validate (s, len, NULL));
            break;
          }
        case G_VARIANT_CLASS_OBJECT_PATH:
          g_assert (g_variant_is_object_path (g_variant_get_string (value, NULL)));
          break;
        case G_VARIANT_CLASS_SIGNATURE:
          g_assert (g_variant_is_signature (g_variant_get_string (value, NULL)));
          break;
        case G_VARIANT_CLASS_BOOLEAN:
          {
            /* In normal form a boolean is 0 or 1. */
            guint8 b = *(const guint8 *) g_variant_get_data (value);

            g_assert (b == 0 || b == 1);
            break;
          }
        default:
          break;
        }
      return -1;
    }

  g_assert (g_variant_is_container (value));
  {
    gsize n = g_variant_n_children (value);

    for (gsize i = 0; i < n; i++)
      {
        g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

        max_handle = MAX (max_handle, fuzz_walk (child, depth + 1, visit, user_data));
      }
  }

  return max_handle;
}

/* Whether @fd is an open file descriptor. */
static inline gboolean
fuzz_fd_is_open (int fd)
{
  return fcntl (fd, F_GETFD) >= 0 || errno != EBADF;
}
