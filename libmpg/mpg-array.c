/* mpg-array.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <wchar.h>

#include "mpg-array.h"
#include "mpg-error.h"

/**
 * MpgArray:
 *
 * An array of numbers (or characters, or booleans) in memory shared by
 * processes, as Python's `multiprocessing.Value` and `multiprocessing.Array`
 * (the `sharedctypes` module).
 *
 * The elements have one C type, named by a typecode as in Python's `array`
 * and `ctypes` modules:
 *
 * | typecode | C type | size | as a #GVariant |
 * |---|---|---|---|
 * | `c` | `char` | 1 | `y` (a byte, as Python's `c_char`) |
 * | `b` | `signed char` | 1 | `n` |
 * | `B` | `unsigned char` | 1 | `y` |
 * | `h` | `short` | 2 | `n` |
 * | `H` | `unsigned short` | 2 | `q` |
 * | `i` | `int` | 4 | `i` |
 * | `I` | `unsigned int` | 4 | `u` |
 * | `l` | `long` | 8 | `x` |
 * | `L` | `unsigned long` | 8 | `t` |
 * | `q` | `long long` | 8 | `x` |
 * | `Q` | `unsigned long long` | 8 | `t` |
 * | `f` | `float` | 4 | `d` |
 * | `d` | `double` | 8 | `d` |
 * | `u` | `wchar_t` | 4 | `s` of one character |
 * | `?` | `bool` | 1 | `b` |
 *
 * The array lives in an [class@Mpg.SharedMemory], filled with zeros when
 * the array is created; every process that has the array sees the same
 * elements. [method@Mpg.Array.get] and [method@Mpg.Array.set] read and
 * write one element as a #GVariant, [method@Mpg.Array.to_variant] and
 * [method@Mpg.Array.set_from_variant] the whole array, and
 * [method@Mpg.Array.get_data] gives the elements themselves, as a C array
 * of the typecode's type.
 *
 * An array made by [ctor@Mpg.Array.new] comes with an [class@Mpg.RLock]
 * ([method@Mpg.Array.get_lock]), as Python's `Value` and `Array` do. No
 * call of this class takes it: as in Python, a change that reads the
 * array and writes it again (`counter.value += 1`) must be made with the
 * lock held, or another process's change made meanwhile is lost. Here four
 * children each count to 1000 in one shared counter:
 *
 * ```c
 * static GVariant *
 * count (GVariant *arg, gpointer user_data, GError **error)
 * {
 *   MpgArray *counter = user_data;
 *   MpgLock *lock = mpg_array_get_lock (counter);
 *   gint32 *value = mpg_array_get_data (counter);
 *
 *   for (int i = 0; i < 1000; i++)
 *     {
 *       // with counter.get_lock(): counter.value += 1
 *       if (!mpg_lock_acquire (lock, -1, NULL, NULL, error))
 *         return NULL;
 *       *value += 1;
 *       if (!mpg_lock_release (lock, error))
 *         return NULL;
 *     }
 *   return NULL;
 * }
 *
 * g_autoptr(MpgArray) counter = mpg_array_new ("i", 1, &error);   // Value('i', 0)
 * MpgProcess *children[4];
 *
 * for (int i = 0; i < 4; i++)
 *   {
 *     children[i] = mpg_process_new (NULL, count, g_object_ref (counter), g_object_unref);
 *     mpg_process_start (children[i], &error);
 *   }
 * for (int i = 0; i < 4; i++)
 *   {
 *     mpg_process_join (children[i], -1, NULL, &error);
 *     g_object_unref (children[i]);
 *   }
 * g_autoptr(GVariant) total = mpg_array_get (counter, 0);
 * g_print ("%d\n", g_variant_get_int32 (total));   // 4000
 * ```
 *
 * A child started with the fork start method simply has the arrays its
 * parent made before; for spawn and forkserver children, and any other
 * process, pass an array as a handle and file descriptors
 * ([method@Mpg.Array.to_handle], [ctor@Mpg.Array.new_from_handle]): the
 * lock travels with it.
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Value(typecode, v)`, `Value(typecode, v, lock=True)` | [ctor@Mpg.Array.new] with length 1, then [method@Mpg.Array.set] |
 * | `Value(typecode, v, lock=lock)` | [ctor@Mpg.Array.new_with_lock] |
 * | `Value(typecode, v, lock=False)`, `RawValue(typecode, v)` | [ctor@Mpg.Array.new_raw] |
 * | `Array(typecode, n)` | [ctor@Mpg.Array.new] |
 * | `Array(typecode, [1, 2, 3])` | [ctor@Mpg.Array.new], then [method@Mpg.Array.set_from_variant] |
 * | `Array(…, lock=False)`, `RawArray(…)`; `Array(…, lock=lock)` | [ctor@Mpg.Array.new_raw]; [ctor@Mpg.Array.new_with_lock] |
 * | `v.value`, `v.value = x` | [method@Mpg.Array.get] and [method@Mpg.Array.set] at index 0 |
 * | `a[i]`, `a[i] = x`, `a[:]` | [method@Mpg.Array.get], [method@Mpg.Array.set], [method@Mpg.Array.to_variant] |
 * | `a.get_lock()` | [method@Mpg.Array.get_lock] |
 * | `a.get_obj()` | [method@Mpg.Array.get_data] |
 * | `len(a)` | [method@Mpg.Array.get_length] |
 *
 * Unlike Python, which wraps a value that does not fit (`Value('b', 300)`
 * holds 44), a value out of the element's range is refused with
 * %G_IO_ERROR_INVALID_ARGUMENT; so is a finite number beyond the range of
 * a `float`, which Python turns into an infinity. The NUL character of
 * typecode `u` is the empty string.
 *
 * Copies: [method@Mpg.Array.get_data] and [method@Mpg.Array.get_memory]
 * give the shared memory itself; [method@Mpg.Array.get] and
 * [method@Mpg.Array.to_variant] copy the elements into a new #GVariant,
 * and [method@Mpg.Array.set] and [method@Mpg.Array.set_from_variant]
 * copy them from one.
 *
 * An array is also a [iface@Gio.Initable]: `g_initable_new (MPG_TYPE_ARRAY,
 * NULL, &error, "typecode", "d", "length", 10, NULL)` is an array without
 * a lock, and the [property@Mpg.Array:memory] property makes an array over
 * an existing [class@Mpg.SharedMemory].
 *
 * Since: 0.1
 */

#define HANDLE_TYPE   "(st(sth)mv)"
#define HANDLE_FORMAT "(st@(sth)mv)"

typedef enum
{
  KIND_SIGNED,
  KIND_UNSIGNED,
  KIND_FLOAT,
  KIND_BOOL,
  KIND_CHAR,
} Kind;

typedef struct
{
  char typecode[2];
  Kind kind;
  guint8 size;
  const char *type;        /* of an element as a GVariant */
  const char *array_type;  /* of the whole array as a GVariant */
  gint64 min;              /* KIND_SIGNED */
  guint64 max;             /* KIND_SIGNED and KIND_UNSIGNED */
} Format;

G_STATIC_ASSERT (sizeof (wchar_t) == 4);

static const Format formats[] = {
  { "c", KIND_UNSIGNED, 1, "y", "ay", 0, G_MAXUINT8 },
  { "b", KIND_SIGNED, 1, "n", "an", G_MININT8, G_MAXINT8 },
  { "B", KIND_UNSIGNED, 1, "y", "ay", 0, G_MAXUINT8 },
  { "h", KIND_SIGNED, 2, "n", "an", G_MININT16, G_MAXINT16 },
  { "H", KIND_UNSIGNED, 2, "q", "aq", 0, G_MAXUINT16 },
  { "i", KIND_SIGNED, 4, "i", "ai", G_MININT32, G_MAXINT32 },
  { "I", KIND_UNSIGNED, 4, "u", "au", 0, G_MAXUINT32 },
  { "l", KIND_SIGNED, sizeof (long), "x", "ax", G_MINLONG, G_MAXLONG },
  { "L", KIND_UNSIGNED, sizeof (unsigned long), "t", "at", 0, G_MAXULONG },
  { "q", KIND_SIGNED, 8, "x", "ax", G_MININT64, G_MAXINT64 },
  { "Q", KIND_UNSIGNED, 8, "t", "at", 0, G_MAXUINT64 },
  { "f", KIND_FLOAT, 4, "d", "ad", 0, 0 },
  { "d", KIND_FLOAT, 8, "d", "ad", 0, 0 },
  { "u", KIND_CHAR, 4, "s", "as", 0, 0 },
  { "?", KIND_BOOL, 1, "b", "ab", 0, 0 },
};

/* One element on its way between a GVariant and the memory. */
typedef union
{
  gint64 s;      /* KIND_SIGNED */
  guint64 u;     /* KIND_UNSIGNED, KIND_BOOL, KIND_CHAR */
  double d;      /* KIND_FLOAT */
} Element;

struct _MpgArray
{
  GObject parent_instance;

  char *typecode;            /* as set, until initialised */
  const Format *format;      /* NULL until initialised */
  gsize length;
  MpgLock *lock;
  MpgSharedMemory *memory;
  guint8 *data;
};

static void mpg_array_initable_iface_init (GInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MpgArray, mpg_array, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      mpg_array_initable_iface_init))

enum {
  PROP_0,
  PROP_TYPECODE,
  PROP_LENGTH,
  PROP_LOCK,
  PROP_MEMORY,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static const Format *
find_format (const char  *typecode,
             GError     **error)
{
  for (guint i = 0; typecode != NULL && i < G_N_ELEMENTS (formats); i++)
    if (strcmp (typecode, formats[i].typecode) == 0)
      return &formats[i];

  if (typecode == NULL)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                         "An array needs a typecode");
  else
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "Unknown typecode '%s': it must be one of c, b, B, h, H, i, I, l, L, q, Q, f, d, u and ?",
                 typecode);
  return NULL;
}

/* The bytes of memory that @length elements need; FALSE on overflow. The
 * memory of an empty array has one byte, as shared memory cannot be empty. */
static gboolean
memory_size_for (const Format *format,
                 gsize         length,
                 gsize        *out_size)
{
  if (length > G_MAXSSIZE / format->size)
    return FALSE;

  *out_size = MAX (length * format->size, 1);
  return TRUE;
}

/* Elements in memory */

static Element
load (const Format *format,
      const guint8 *data,
      gsize         index)
{
  const void *p = data + index * format->size;
  Element e = { 0 };

  switch (format->kind)
    {
    case KIND_SIGNED:
      switch (format->size)
        {
        case 1: e.s = *(const gint8 *) p; break;
        case 2: e.s = *(const gint16 *) p; break;
        case 4: e.s = *(const gint32 *) p; break;
        default: e.s = *(const gint64 *) p; break;
        }
      break;

    case KIND_UNSIGNED:
      switch (format->size)
        {
        case 1: e.u = *(const guint8 *) p; break;
        case 2: e.u = *(const guint16 *) p; break;
        case 4: e.u = *(const guint32 *) p; break;
        default: e.u = *(const guint64 *) p; break;
        }
      break;

    case KIND_FLOAT:
      e.d = format->size == 4 ? *(const float *) p : *(const double *) p;
      break;

    case KIND_BOOL:
      e.u = *(const guint8 *) p != 0;
      break;

    case KIND_CHAR:
    default:
      e.u = *(const guint32 *) p;
      break;
    }

  return e;
}

/* @e was checked to fit. */
static void
store (const Format *format,
       guint8       *data,
       gsize         index,
       Element       e)
{
  void *p = data + index * format->size;

  switch (format->kind)
    {
    case KIND_SIGNED:
      switch (format->size)
        {
        case 1: *(gint8 *) p = (gint8) e.s; break;
        case 2: *(gint16 *) p = (gint16) e.s; break;
        case 4: *(gint32 *) p = (gint32) e.s; break;
        default: *(gint64 *) p = e.s; break;
        }
      break;

    case KIND_UNSIGNED:
    case KIND_BOOL:
    case KIND_CHAR:
      switch (format->size)
        {
        case 1: *(guint8 *) p = (guint8) e.u; break;
        case 2: *(guint16 *) p = (guint16) e.u; break;
        case 4: *(guint32 *) p = (guint32) e.u; break;
        default: *(guint64 *) p = e.u; break;
        }
      break;

    case KIND_FLOAT:
    default:
      if (format->size == 4)
        *(float *) p = (float) e.d;
      else
        *(double *) p = e.d;
      break;
    }
}

/* Elements as GVariants */

/* The size of an element in a GVariant array; 0 for a string. */
static gsize
variant_item_size (const Format *format)
{
  switch (format->type[0])
    {
    case 'y': case 'b': return 1;
    case 'n': case 'q': return 2;
    case 'i': case 'u': return 4;
    case 'x': case 't': case 'd': return 8;
    default: return 0;
    }
}

static GVariant *
element_to_variant (const Format *format,
                    Element       e)
{
  switch (format->type[0])
    {
    case 'y': return g_variant_new_byte ((guint8) e.u);
    case 'n': return g_variant_new_int16 ((gint16) e.s);
    case 'q': return g_variant_new_uint16 ((guint16) e.u);
    case 'i': return g_variant_new_int32 ((gint32) e.s);
    case 'u': return g_variant_new_uint32 ((guint32) e.u);
    case 'x': return g_variant_new_int64 (e.s);
    case 't': return g_variant_new_uint64 (e.u);
    case 'd': return g_variant_new_double (e.d);
    case 'b': return g_variant_new_boolean (e.u != 0);
    case 's':
      {
        char utf8[8] = { 0 };

        /* Any 4 bytes can be in the memory: not all are characters. */
        if (e.u != 0)
          g_unichar_to_utf8 (g_unichar_validate ((gunichar) e.u) ? (gunichar) e.u : 0xFFFD, utf8);
        return g_variant_new_string (utf8);
      }
    default:
      g_assert_not_reached ();
    }
}

static gboolean
out_of_range (const Format  *format,
              const char    *value,
              GError       **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "%s is out of range for typecode '%s'", value, format->typecode);
  return FALSE;
}

/* Checks that @e, read from a value of the element's GVariant type, fits
 * the element's C type. */
static gboolean
check_element (const Format  *format,
               Element        e,
               GError       **error)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  switch (format->kind)
    {
    case KIND_SIGNED:
      if (e.s < format->min || e.s > (gint64) format->max)
        {
          g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, e.s);
          return out_of_range (format, buf, error);
        }
      break;

    case KIND_UNSIGNED:
      if (e.u > format->max)
        {
          g_snprintf (buf, sizeof buf, "%" G_GUINT64_FORMAT, e.u);
          return out_of_range (format, buf, error);
        }
      break;

    case KIND_FLOAT:
      /* Infinities and NaNs are floats too; a finite double beyond a
       * float's range is not. */
      if (format->size == 4 && isfinite (e.d) && fabs (e.d) > FLT_MAX)
        return out_of_range (format, g_ascii_formatd (buf, sizeof buf, "%g", e.d), error);
      break;

    case KIND_BOOL:
    case KIND_CHAR:
    default:
      break;
    }

  return TRUE;
}

/* Typecode u: the character of @s, valid UTF-8, if it has one at most. */
static gboolean
element_from_string (const Format  *format,
                     const char    *s,
                     Element       *out,
                     GError       **error)
{
  if (s[0] != '\0' && *g_utf8_next_char (s) != '\0')
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Typecode '%s' takes a string of one character, not \"%s\"",
                   format->typecode, s);
      return FALSE;
    }

  out->u = g_utf8_get_char (s);
  return TRUE;
}

/* Element @index of @items, a fixed-size GVariant array of the element's
 * type, if it fits. */
static gboolean
element_from_item (const Format  *format,
                   const void    *items,
                   gsize          index,
                   Element       *out,
                   GError       **error)
{
  Element e = { 0 };

  switch (format->type[0])
    {
    case 'y': e.u = ((const guint8 *) items)[index]; break;
    case 'n': e.s = ((const gint16 *) items)[index]; break;
    case 'q': e.u = ((const guint16 *) items)[index]; break;
    case 'i': e.s = ((const gint32 *) items)[index]; break;
    case 'u': e.u = ((const guint32 *) items)[index]; break;
    case 'x': e.s = ((const gint64 *) items)[index]; break;
    case 't': e.u = ((const guint64 *) items)[index]; break;
    case 'd': e.d = ((const double *) items)[index]; break;
    case 'b': e.u = ((const guint8 *) items)[index] != 0; break;
    default: g_assert_not_reached ();
    }

  if (!check_element (format, e, error))
    return FALSE;

  *out = e;
  return TRUE;
}

/* Reads @value, of the element's GVariant type, into @out if it fits. */
static gboolean
element_from_variant (const Format  *format,
                      GVariant      *value,
                      Element       *out,
                      GError       **error)
{
  Element e = { 0 };

  if (!g_variant_is_of_type (value, G_VARIANT_TYPE (format->type)))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Typecode '%s' takes values of type %s, not %s",
                   format->typecode, format->type, g_variant_get_type_string (value));
      return FALSE;
    }

  switch (format->type[0])
    {
    case 'y': e.u = g_variant_get_byte (value); break;
    case 'n': e.s = g_variant_get_int16 (value); break;
    case 'q': e.u = g_variant_get_uint16 (value); break;
    case 'i': e.s = g_variant_get_int32 (value); break;
    case 'u': e.u = g_variant_get_uint32 (value); break;
    case 'x': e.s = g_variant_get_int64 (value); break;
    case 't': e.u = g_variant_get_uint64 (value); break;
    case 'd': e.d = g_variant_get_double (value); break;
    case 'b': e.u = g_variant_get_boolean (value); break;
    case 's':
      /* g_variant_get_string() gives valid UTF-8, even from bad data. */
      return element_from_string (format, g_variant_get_string (value, NULL), out, error);
    default:
      g_assert_not_reached ();
    }

  if (!check_element (format, e, error))
    return FALSE;

  *out = e;
  return TRUE;
}

/* GObject */

static gboolean
mpg_array_initable_init (GInitable     *initable,
                         GCancellable  *cancellable,
                         GError       **error)
{
  MpgArray *self = MPG_ARRAY (initable);
  const Format *format;
  gsize size;

  if (self->format != NULL)
    return TRUE;

  format = find_format (self->typecode, error);
  if (format == NULL)
    return FALSE;

  if (!memory_size_for (format, self->length, &size))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "An array of %" G_GSIZE_FORMAT " elements of typecode '%s' is too large",
                   self->length, format->typecode);
      return FALSE;
    }

  if (self->memory == NULL)
    {
      self->memory = mpg_shared_memory_new (NULL, size, error);
      if (self->memory == NULL)
        return FALSE;
    }
  else if (mpg_shared_memory_get_size (self->memory) != size)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "An array of %" G_GSIZE_FORMAT " elements of typecode '%s' needs %"
                   G_GSIZE_FORMAT " bytes of memory, not %" G_GSIZE_FORMAT,
                   self->length, format->typecode, size,
                   mpg_shared_memory_get_size (self->memory));
      return FALSE;
    }

  self->data = mpg_shared_memory_get_data (self->memory, NULL);
  self->format = format;
  return TRUE;
}

static void
mpg_array_initable_iface_init (GInitableIface *iface)
{
  iface->init = mpg_array_initable_init;
}

static void
mpg_array_dispose (GObject *object)
{
  MpgArray *self = (MpgArray *)object;

  self->data = NULL;
  g_clear_object (&self->lock);
  g_clear_object (&self->memory);

  G_OBJECT_CLASS (mpg_array_parent_class)->dispose (object);
}

static void
mpg_array_finalize (GObject *object)
{
  MpgArray *self = (MpgArray *)object;

  g_clear_pointer (&self->typecode, g_free);

  G_OBJECT_CLASS (mpg_array_parent_class)->finalize (object);
}

static void
mpg_array_get_property (GObject    *object,
                        guint       prop_id,
                        GValue     *value,
                        GParamSpec *pspec)
{
  MpgArray *self = MPG_ARRAY (object);

  switch (prop_id)
    {
    case PROP_TYPECODE:
      g_value_set_string (value, self->typecode);
      break;

    case PROP_LENGTH:
      g_value_set_uint64 (value, self->length);
      break;

    case PROP_LOCK:
      g_value_set_object (value, self->lock);
      break;

    case PROP_MEMORY:
      g_value_set_object (value, self->memory);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_array_set_property (GObject      *object,
                        guint         prop_id,
                        const GValue *value,
                        GParamSpec   *pspec)
{
  MpgArray *self = MPG_ARRAY (object);

  switch (prop_id)
    {
    case PROP_TYPECODE:
      g_free (self->typecode);
      self->typecode = g_value_dup_string (value);
      break;

    case PROP_LENGTH:
      self->length = (gsize) MIN (g_value_get_uint64 (value), G_MAXSIZE);
      break;

    case PROP_LOCK:
      g_set_object (&self->lock, g_value_get_object (value));
      break;

    case PROP_MEMORY:
      g_set_object (&self->memory, g_value_get_object (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_array_class_init (MpgArrayClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = mpg_array_dispose;
  object_class->finalize = mpg_array_finalize;
  object_class->get_property = mpg_array_get_property;
  object_class->set_property = mpg_array_set_property;

  /**
   * MpgArray:typecode:
   *
   * The type of the elements, as a one-character string: one of `c`, `b`,
   * `B`, `h`, `H`, `i`, `I`, `l`, `L`, `q`, `Q`, `f`, `d`, `u` and `?`
   * (see the table in [class@Mpg.Array]).
   *
   * Since: 0.1
   */
  properties[PROP_TYPECODE] =
    g_param_spec_string ("typecode", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgArray:length:
   *
   * The number of elements; it may be 0. It never changes.
   *
   * Since: 0.1
   */
  properties[PROP_LENGTH] =
    g_param_spec_uint64 ("length", NULL, NULL,
                         0, G_MAXSIZE, 0,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgArray:lock:
   *
   * The lock that goes with the array, or %NULL for a raw array: see
   * [method@Mpg.Array.get_lock]. An array made with g_initable_new()
   * has the lock given at construction, or none.
   *
   * Since: 0.1
   */
  properties[PROP_LOCK] =
    g_param_spec_object ("lock", NULL, NULL,
                         MPG_TYPE_LOCK,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgArray:memory:
   *
   * The shared memory that holds the elements: see
   * [method@Mpg.Array.get_memory]. Given at construction, it must be
   * exactly as large as the elements (1 byte for an empty array), and
   * its content is kept; otherwise new memory, filled with zeros, is made.
   *
   * Since: 0.1
   */
  properties[PROP_MEMORY] =
    g_param_spec_object ("memory", NULL, NULL,
                         MPG_TYPE_SHARED_MEMORY,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_array_init (MpgArray *self)
{
}

/* Constructors */

/**
 * mpg_array_new:
 * @typecode: the type of the elements (see [property@Mpg.Array:typecode])
 * @length: the number of elements; may be 0
 * @error: return location for a #GError
 *
 * Creates an array of @length elements in new shared memory, filled with
 * zeros, with a new [class@Mpg.RLock] to guard it, as Python's
 * `multiprocessing.Array(typecode, length)` (and `Value(typecode)` for a
 * length of 1).
 *
 * Fails with %G_IO_ERROR_INVALID_ARGUMENT for an unknown typecode or a
 * length too large, and with an error of the %G_IO_ERROR domain if the
 * system cannot give the memory or the lock.
 *
 * Returns: (transfer full): the array, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgArray *
mpg_array_new (const char  *typecode,
               gsize        length,
               GError     **error)
{
  g_autoptr(MpgRLock) lock = NULL;

  g_return_val_if_fail (typecode != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  /* The typecode first: an unknown one is the error to report. */
  if (find_format (typecode, error) == NULL)
    return NULL;

  lock = mpg_rlock_new (error);
  if (lock == NULL)
    return NULL;

  return mpg_array_new_with_lock (typecode, length, MPG_LOCK (lock), error);
}

/**
 * mpg_array_new_raw:
 * @typecode: the type of the elements (see [property@Mpg.Array:typecode])
 * @length: the number of elements; may be 0
 * @error: return location for a #GError
 *
 * Creates an array of @length elements in new shared memory, filled with
 * zeros, without a lock, as Python's `multiprocessing.RawArray(typecode,
 * length)` (and `RawValue(typecode)` for a length of 1).
 *
 * Fails as [ctor@Mpg.Array.new] does.
 *
 * Returns: (transfer full): the array, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgArray *
mpg_array_new_raw (const char  *typecode,
                   gsize        length,
                   GError     **error)
{
  g_return_val_if_fail (typecode != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (MPG_TYPE_ARRAY, NULL, error,
                         "typecode", typecode,
                         "length", (guint64) length,
                         NULL);
}

/**
 * mpg_array_new_with_lock:
 * @typecode: the type of the elements (see [property@Mpg.Array:typecode])
 * @length: the number of elements; may be 0
 * @lock: the lock that guards the array: an [class@Mpg.Lock] or an
 *   [class@Mpg.RLock], which may guard other things too
 * @error: return location for a #GError
 *
 * Creates an array of @length elements in new shared memory, filled with
 * zeros, guarded by @lock, as Python's `multiprocessing.Array(typecode,
 * length, lock=lock)`.
 *
 * Fails as [ctor@Mpg.Array.new] does.
 *
 * Returns: (transfer full): the array, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgArray *
mpg_array_new_with_lock (const char  *typecode,
                         gsize        length,
                         MpgLock     *lock,
                         GError     **error)
{
  g_return_val_if_fail (typecode != NULL, NULL);
  g_return_val_if_fail (MPG_IS_LOCK (lock), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (MPG_TYPE_ARRAY, NULL, error,
                         "typecode", typecode,
                         "length", (guint64) length,
                         "lock", lock,
                         NULL);
}

/* Getters */

/**
 * mpg_array_get_typecode:
 * @self: an array
 *
 * Gets the type of the elements: see [property@Mpg.Array:typecode].
 *
 * Returns: (transfer none): the typecode, a one-character string
 *
 * Since: 0.1
 */
const char *
mpg_array_get_typecode (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);
  g_return_val_if_fail (self->format != NULL, NULL);

  return self->format->typecode;
}

/**
 * mpg_array_get_length:
 * @self: an array
 *
 * Gets the number of elements, as Python's `len(a)`.
 *
 * Returns: the length
 *
 * Since: 0.1
 */
gsize
mpg_array_get_length (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), 0);

  return self->length;
}

/**
 * mpg_array_get_item_size:
 * @self: an array
 *
 * Gets the size of one element in bytes: that of the typecode's C type.
 *
 * Returns: the size of an element
 *
 * Since: 0.1
 */
gsize
mpg_array_get_item_size (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), 0);
  g_return_val_if_fail (self->format != NULL, 0);

  return self->format->size;
}

/**
 * mpg_array_get_item_type:
 * @self: an array
 *
 * Gets the #GVariant type of one element, as [method@Mpg.Array.get]
 * returns it and [method@Mpg.Array.set] takes it: for example `n` for
 * typecode `b`. See the table in [class@Mpg.Array].
 *
 * Returns: (transfer none): the type of an element
 *
 * Since: 0.1
 */
const GVariantType *
mpg_array_get_item_type (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);
  g_return_val_if_fail (self->format != NULL, NULL);

  return G_VARIANT_TYPE (self->format->type);
}

/**
 * mpg_array_get_lock:
 * @self: an array
 *
 * Gets the lock that guards the array, as Python's `a.get_lock()`. Take
 * it around any change that reads the array and writes it again: no
 * method of [class@Mpg.Array] takes it by itself.
 *
 * Returns: (transfer none) (nullable): the lock, or %NULL for an array
 *   made by [ctor@Mpg.Array.new_raw]
 *
 * Since: 0.1
 */
MpgLock *
mpg_array_get_lock (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);

  return self->lock;
}

/**
 * mpg_array_get_memory:
 * @self: an array
 *
 * Gets the shared memory that holds the elements, one after the other
 * with no padding: `length × item size` bytes (1 byte for an empty
 * array).
 *
 * Returns: (transfer none): the memory
 *
 * Since: 0.1
 */
MpgSharedMemory *
mpg_array_get_memory (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);

  return self->memory;
}

/**
 * mpg_array_get_data:
 * @self: an array
 *
 * Gets the elements themselves, as Python's `a.get_obj()`: a C array of
 * the typecode's type (`gint32 *` for `i`, `double *` for `d`, …) in the
 * shared memory, valid while @self lives. Reading and writing it is the
 * fastest way to the elements; guard changes with the lock as for any
 * other access.
 *
 * Returns: (transfer none): the elements
 *
 * Since: 0.1
 */
gpointer
mpg_array_get_data (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);
  g_return_val_if_fail (self->format != NULL, NULL);

  return self->data;
}

/* Elements */

/**
 * mpg_array_get:
 * @self: an array
 * @index: the index of an element, less than the length
 *
 * Reads one element, as Python's `a[index]` (or `v.value` at index 0), as
 * a #GVariant of the element's type ([method@Mpg.Array.get_item_type]).
 * It does not take the lock.
 *
 * Returns: (transfer full): a new #GVariant (not floating)
 *
 * Since: 0.1
 */
GVariant *
mpg_array_get (MpgArray *self,
               gsize     index)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);
  g_return_val_if_fail (self->format != NULL, NULL);
  g_return_val_if_fail (index < self->length, NULL);

  return g_variant_ref_sink (element_to_variant (self->format, load (self->format, self->data, index)));
}

/**
 * mpg_array_set:
 * @self: an array
 * @index: the index of an element, less than the length
 * @value: the new value, of the element's type
 *   ([method@Mpg.Array.get_item_type]); a floating reference is sunk
 * @error: return location for a #GError
 *
 * Writes one element, as Python's `a[index] = value` (or `v.value = value`
 * at index 0). It does not take the lock.
 *
 * Fails with %G_IO_ERROR_INVALID_ARGUMENT, leaving the element as it was,
 * if @value is of another type or does not fit the element's C type (300
 * for typecode `b`, a string of more than one character for `u`).
 *
 * Returns: %TRUE on success
 *
 * Since: 0.1
 */
gboolean
mpg_array_set (MpgArray  *self,
               gsize      index,
               GVariant  *value,
               GError   **error)
{
  g_autoptr(GVariant) owned = NULL;
  Element e;

  g_return_val_if_fail (MPG_IS_ARRAY (self), FALSE);
  g_return_val_if_fail (self->format != NULL, FALSE);
  g_return_val_if_fail (index < self->length, FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  owned = g_variant_ref_sink (value);
  if (!element_from_variant (self->format, owned, &e, error))
    return FALSE;

  store (self->format, self->data, index, e);
  return TRUE;
}

static GVariant *
to_variant_floating (MpgArray *self)
{
  const Format *format;
  gsize item_size;
  guint8 *buf;

  format = self->format;
  item_size = variant_item_size (format);

  /* Where the memory holds the elements as a GVariant array does: one copy. */
  if (item_size == format->size && format->kind != KIND_BOOL)
    return g_variant_new_fixed_array (G_VARIANT_TYPE (format->type), self->data,
                                      self->length, format->size);

  if (format->kind == KIND_CHAR)
    {
      GVariantBuilder builder;

      g_variant_builder_init (&builder, G_VARIANT_TYPE_STRING_ARRAY);
      for (gsize i = 0; i < self->length; i++)
        g_variant_builder_add_value (&builder, element_to_variant (format, load (format, self->data, i)));
      return g_variant_builder_end (&builder);
    }

  /* Widened (b, f) or made 0 or 1 (?) into the layout of the GVariant
   * array, without a GVariant per element. */
  buf = g_malloc (self->length * item_size);
  for (gsize i = 0; i < self->length; i++)
    {
      Element e = load (format, self->data, i);

      switch (format->type[0])
        {
        case 'n': ((gint16 *) buf)[i] = (gint16) e.s; break;
        case 'd': ((double *) buf)[i] = e.d; break;
        case 'b': buf[i] = e.u != 0; break;
        default: g_assert_not_reached ();
        }
    }

  return g_variant_new_from_data (G_VARIANT_TYPE (format->array_type), buf, self->length * item_size,
                                  TRUE, g_free, buf);
}

/**
 * mpg_array_to_variant:
 * @self: an array
 *
 * Reads the whole array, as Python's `a[:]`, into a #GVariant array of
 * the element's type (`ai` for typecode `i`, `as` for `u`). It does not
 * take the lock: another process may change elements while they are
 * copied.
 *
 * Returns: (transfer full): a new #GVariant (not floating)
 *
 * Since: 0.1
 */
GVariant *
mpg_array_to_variant (MpgArray *self)
{
  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);
  g_return_val_if_fail (self->format != NULL, NULL);

  return g_variant_ref_sink (to_variant_floating (self));
}

/* Checks every value of @values (of the array's GVariant type) and, with
 * @write, writes them. */
static gboolean
copy_from_variant (MpgArray  *self,
                   GVariant  *values,
                   gboolean   write,
                   GError   **error)
{
  const Format *format = self->format;
  gsize n = 0;
  Element e;

  if (format->kind == KIND_CHAR)
    {
      GVariantIter iter;
      const char *s;

      g_variant_iter_init (&iter, values);
      while (g_variant_iter_next (&iter, "&s", &s))
        {
          if (!element_from_string (format, s, &e, error))
            {
              g_prefix_error (error, "Value %" G_GSIZE_FORMAT ": ", n);
              return FALSE;
            }
          if (write)
            store (format, self->data, n, e);
          n++;
        }
    }
  else
    {
      const void *items = g_variant_get_fixed_array (values, &n, variant_item_size (format));

      for (gsize i = 0; i < n; i++)
        {
          if (!element_from_item (format, items, i, &e, error))
            {
              g_prefix_error (error, "Value %" G_GSIZE_FORMAT ": ", i);
              return FALSE;
            }
          if (write)
            store (format, self->data, i, e);
        }
    }

  return TRUE;
}

/**
 * mpg_array_set_from_variant:
 * @self: an array
 * @values: an array of the element's type (`ai` for typecode `i`, `as`
 *   for `u`), no longer than @self; a floating reference is sunk
 * @error: return location for a #GError
 *
 * Writes @values to the first elements of the array, as the initializer
 * of Python's `multiprocessing.Array(typecode, [1, 2, 3])` (or
 * `a[:len(values)] = values`); the other elements keep their values. It
 * does not take the lock.
 *
 * Fails with %G_IO_ERROR_INVALID_ARGUMENT, writing nothing, if @values is
 * of another type, longer than the array, or holds a value that does not
 * fit the element's C type.
 *
 * Returns: %TRUE on success
 *
 * Since: 0.1
 */
gboolean
mpg_array_set_from_variant (MpgArray  *self,
                            GVariant  *values,
                            GError   **error)
{
  g_autoptr(GVariant) owned = NULL;
  gsize n;

  g_return_val_if_fail (MPG_IS_ARRAY (self), FALSE);
  g_return_val_if_fail (self->format != NULL, FALSE);
  g_return_val_if_fail (values != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  owned = g_variant_ref_sink (values);
  if (!g_variant_is_of_type (owned, G_VARIANT_TYPE (self->format->array_type)))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Typecode '%s' takes an array of type %s, not %s",
                   self->format->typecode, self->format->array_type,
                   g_variant_get_type_string (owned));
      return FALSE;
    }

  n = g_variant_n_children (owned);
  if (n > self->length)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%" G_GSIZE_FORMAT " values do not fit in an array of %" G_GSIZE_FORMAT " elements",
                   n, self->length);
      return FALSE;
    }

  if (!copy_from_variant (self, owned, FALSE, error))
    return FALSE;
  copy_from_variant (self, owned, TRUE, NULL);

  return TRUE;
}

/* Handles */

/**
 * mpg_array_to_handle:
 * @self: an array
 * @fd_list: the list to append (copies of) the file descriptors of the
 *   array's memory and lock to
 * @error: return location for a #GError
 *
 * Describes the array for another process, as pickling a shared `Array`
 * does in Python: appends copies of the file descriptors of its memory
 * and of its lock to @fd_list and returns a `(st(sth)mv)` value: the
 * typecode, the length, the memory's handle
 * ([method@Mpg.SharedMemory.to_handle]) and the lock's handle
 * ([method@Mpg.Lock.to_handle]), or nothing for a raw array. Send both,
 * for example as the arguments of an [class@Mpg.Process] (with
 * [method@Mpg.Process.set_fd_list]) or with [method@Mpg.Queue.put_with_fds],
 * and rebuild the array on the other side with
 * [ctor@Mpg.Array.new_from_handle].
 *
 * With the fork start method this is not needed: an array created before
 * a child is started is there in the child.
 *
 * Returns: (transfer full): a new `(st(sth)mv)` value (not floating), or
 *   %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_array_to_handle (MpgArray     *self,
                     GUnixFDList  *fd_list,
                     GError      **error)
{
  g_autoptr(GVariant) memory = NULL;
  g_autoptr(GVariant) lock = NULL;

  g_return_val_if_fail (MPG_IS_ARRAY (self), NULL);
  g_return_val_if_fail (self->format != NULL, NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  memory = mpg_shared_memory_to_handle (self->memory, fd_list, error);
  if (memory == NULL)
    return NULL;

  if (self->lock != NULL)
    {
      lock = mpg_lock_to_handle (self->lock, fd_list, error);
      if (lock == NULL)
        return NULL;
      /* Owned whether or not it came floating. */
      g_variant_take_ref (lock);
    }

  return g_variant_ref_sink (g_variant_new (HANDLE_FORMAT, self->format->typecode,
                                            (guint64) self->length, memory, lock));
}

static void
invalid_handle (GError     **error,
                const char  *format,
                ...) G_GNUC_PRINTF (2, 3);

static void
invalid_handle (GError     **error,
                const char  *format,
                ...)
{
  g_autofree char *why = NULL;
  va_list args;

  va_start (args, format);
  why = g_strdup_vprintf (format, args);
  va_end (args);

  g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL, "Invalid array handle: %s", why);
}

/**
 * mpg_array_new_from_handle:
 * @handle: a `(st(sth)mv)` value from [method@Mpg.Array.to_handle]; a
 *   floating reference is sunk
 * @fd_list: the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds an array that another process (or this one) described with
 * [method@Mpg.Array.to_handle], as unpickling a shared `Array` does in
 * Python. It is the same array, guarded by the same lock: what either
 * side writes, the other reads. The new object has its own copies of the
 * file descriptors; @fd_list keeps its own.
 *
 * As the handle may come from an untrusted peer, it is checked: it must be
 * of type `(st(sth)mv)`, with a known typecode, and memory of exactly the
 * size of the elements (see [ctor@Mpg.SharedMemory.new_from_handle] for
 * the checks of the memory itself). Otherwise this fails with
 * %MPG_ERROR_PROTOCOL. An invalid lock handle fails as
 * [ctor@Mpg.Lock.new_from_handle] does.
 *
 * Returns: (transfer full): the array, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgArray *
mpg_array_new_from_handle (GVariant     *handle,
                           GUnixFDList  *fd_list,
                           GError      **error)
{
  g_autoptr(GVariant) owned = NULL;
  g_autoptr(GVariant) memory_handle = NULL;
  g_autoptr(GVariant) lock_handle = NULL;
  g_autoptr(MpgSharedMemory) memory = NULL;
  g_autoptr(MpgLock) lock = NULL;
  const Format *format;
  const char *typecode;
  guint64 length;
  guint64 memory_size;
  gsize size;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  owned = g_variant_ref_sink (handle);
  if (!g_variant_is_of_type (owned, G_VARIANT_TYPE (HANDLE_TYPE)))
    {
      invalid_handle (error, "it must be of type %s, not %s",
                      HANDLE_TYPE, g_variant_get_type_string (owned));
      return NULL;
    }

  g_variant_get (owned, "(&st@(sth)mv)", &typecode, &length, &memory_handle, &lock_handle);

  format = find_format (typecode, NULL);
  if (format == NULL)
    {
      invalid_handle (error, "unknown typecode '%s'", typecode);
      return NULL;
    }

  /* Before the memory is mapped: the handle must agree with itself. */
  g_variant_get_child (memory_handle, 1, "t", &memory_size);
  if (length > G_MAXSIZE || !memory_size_for (format, length, &size) || memory_size != size)
    {
      invalid_handle (error, "%" G_GUINT64_FORMAT " elements of typecode '%s' do not fill %"
                      G_GUINT64_FORMAT " bytes of memory",
                      length, format->typecode, memory_size);
      return NULL;
    }

  memory = mpg_shared_memory_new_from_handle (memory_handle, fd_list, error);
  if (memory == NULL)
    return NULL;

  if (lock_handle != NULL)
    {
      lock = mpg_lock_new_from_handle (lock_handle, fd_list, error);
      if (lock == NULL)
        {
          g_prefix_error (error, "Invalid array handle: its lock: ");
          return NULL;
        }
    }

  return g_initable_new (MPG_TYPE_ARRAY, NULL, error,
                         "typecode", format->typecode,
                         "length", length,
                         "memory", memory,
                         "lock", lock,
                         NULL);
}
