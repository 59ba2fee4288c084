/* mpg-shared-memory.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "mpg-error.h"
#include "mpg-shared-memory.h"

/**
 * MpgSharedMemory:
 *
 * A block of memory shared by processes, as Python's
 * `multiprocessing.shared_memory.SharedMemory`.
 *
 * [ctor@Mpg.SharedMemory.new] makes a block of the given size, filled with
 * zeros, and maps it into this process. Every process that has the block
 * sees the same bytes: what one writes, the others read, with no copy and
 * no message. A child started with the fork start method simply has it;
 * for a child started with spawn or forkserver, or any other process, pass
 * it as a handle and a file descriptor ([method@Mpg.SharedMemory.to_handle],
 * [ctor@Mpg.SharedMemory.new_from_handle]), for example in the arguments
 * of an [class@Mpg.Process] (with [method@Mpg.Process.set_fd_list]), or
 * through an [class@Mpg.Queue] or an [class@Mpg.Connection] that carries
 * file descriptors.
 *
 * ```c
 * static GVariant *
 * fill (GVariant *arg, gpointer user_data, GError **error)
 * {
 *   MpgSharedMemory *shm = user_data;
 *   gsize size;
 *   guint8 *buf = mpg_shared_memory_get_data (shm, &size);
 *
 *   memset (buf, 0xab, size);   // shm.buf[:] = b'\xab' * shm.size
 *   return NULL;
 * }
 *
 * g_autoptr(MpgSharedMemory) shm = mpg_shared_memory_new (NULL, 4096, &error);
 * g_autoptr(MpgProcess) p = mpg_process_new (NULL, fill,
 *                                            g_object_ref (shm), g_object_unref);
 * mpg_process_start (p, &error);
 * mpg_process_join (p, -1, NULL, &error);
 * g_assert (mpg_shared_memory_get_data (shm, NULL)[0] == 0xab);
 * ```
 *
 * Nothing orders the accesses of different processes: guard data that
 * several processes change with a [class@Mpg.Lock], or use an
 * [class@Mpg.Array], which comes with one.
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing.shared_memory` | libmpg |
 * |---|---|
 * | `SharedMemory(create=True, size=n)` | [ctor@Mpg.SharedMemory.new] |
 * | `SharedMemory(name)` (attach by name) | [ctor@Mpg.SharedMemory.new_from_handle] (there is no attaching by name) |
 * | `shm.buf` | [method@Mpg.SharedMemory.get_data], [method@Mpg.SharedMemory.get_bytes] |
 * | `shm.name`, `shm.size` | [property@Mpg.SharedMemory:name], [property@Mpg.SharedMemory:size] |
 * | `shm.close()`, `shm.unlink()` | g_object_unref() |
 * | the resource tracker | not needed (below) |
 *
 * ## Under the hood
 *
 * The block is a memfd (an anonymous file in memory): it is named in no
 * file system, so there is no `unlink()` and nothing is ever left behind
 * in `/dev/shm`, however the processes end. The kernel frees the memory
 * when the last process that had it closed its file descriptor and
 * unmapped it. The name is only a label, for diagnostics: it is the
 * memfd's name, shown in `/proc/PID/fd` and `/proc/PID/maps`.
 *
 * The file is sealed at its size, so that no process can shrink it under
 * the others' mappings (an access past the end of a shrunk file would
 * kill them with `SIGBUS`), and [ctor@Mpg.SharedMemory.new_from_handle]
 * refuses a file descriptor that is not such a sealed memfd of the size
 * the handle says: a hostile peer can make it fail, not crash.
 *
 * The memory stays mapped until the object is finalized. Neither
 * [method@Mpg.SharedMemory.get_data] nor [method@Mpg.SharedMemory.get_bytes]
 * copies it; [method@Mpg.SharedMemory.get_bytes] keeps the object (and so
 * the mapping) alive for as long as the bytes live. Pages are allocated
 * when first touched: a large block costs nothing until it is used, and a
 * process that touches more than the machine can give is ended by the
 * kernel as for any other memory.
 *
 * A shared memory object is also a [iface@Gio.Initable]:
 * `g_initable_new (MPG_TYPE_SHARED_MEMORY, NULL, &error, "size", 4096, NULL)`
 * is [ctor@Mpg.SharedMemory.new].
 *
 * Since: 0.1
 */

#define HANDLE_TYPE "(sth)"
#define SEALS       (F_SEAL_SHRINK | F_SEAL_GROW)

/* A memfd's name is at most 249 bytes (NAME_MAX less "memfd:"). */
#define NAME_MAX_LENGTH 249

struct _MpgSharedMemory
{
  GObject parent_instance;

  char *name;
  gsize size;
  int fd;          /* -1 until initialised */
  guint8 *data;    /* the mapping of size bytes, or NULL */
};

static void mpg_shared_memory_initable_iface_init (GInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MpgSharedMemory, mpg_shared_memory, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      mpg_shared_memory_initable_iface_init))

enum {
  PROP_0,
  PROP_NAME,
  PROP_SIZE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static gboolean
set_error_from_errno (GError     **error,
                      const char  *what)
{
  int saved_errno = errno;

  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
               "%s: %s", what, g_strerror (saved_errno));
  return FALSE;
}

static gboolean
map_memory (MpgSharedMemory  *self,
            GError          **error)
{
  void *map = mmap (NULL, self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);

  if (map == MAP_FAILED)
    return set_error_from_errno (error, "Cannot map the shared memory");

  self->data = map;
  return TRUE;
}

static gboolean
mpg_shared_memory_initable_init (GInitable     *initable,
                                 GCancellable  *cancellable,
                                 GError       **error)
{
  MpgSharedMemory *self = MPG_SHARED_MEMORY (initable);
  static gint counter = 0;

  if (self->data != NULL)
    return TRUE;

  if (self->size == 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "The size of shared memory must be a positive number different from zero");
      return FALSE;
    }
  if (self->size > G_MAXSSIZE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "The size of shared memory can be at most %" G_GSIZE_FORMAT " bytes",
                   (gsize) G_MAXSSIZE);
      return FALSE;
    }

  if (self->name == NULL || self->name[0] == '\0')
    {
      g_free (self->name);
      self->name = g_strdup_printf ("mpg-%d-%d", (int) getpid (), g_atomic_int_add (&counter, 1));
    }
  else if (strlen (self->name) > NAME_MAX_LENGTH || !g_utf8_validate (self->name, -1, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "The name of shared memory must be valid UTF-8 of at most %d bytes",
                   NAME_MAX_LENGTH);
      return FALSE;
    }

  self->fd = memfd_create (self->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (self->fd < 0)
    return set_error_from_errno (error, "Cannot create shared memory");

  /* Sealed at its size, so that no holder can make the others' mappings
   * fault (SIGBUS) by shrinking it, and for good (F_SEAL_SEAL). */
  if (ftruncate (self->fd, (off_t) self->size) < 0 ||
      fcntl (self->fd, F_ADD_SEALS, SEALS | F_SEAL_SEAL) < 0)
    {
      set_error_from_errno (error, "Cannot create shared memory");
      close (g_steal_fd (&self->fd));
      return FALSE;
    }

  if (!map_memory (self, error))
    {
      close (g_steal_fd (&self->fd));
      return FALSE;
    }

  return TRUE;
}

static void
mpg_shared_memory_initable_iface_init (GInitableIface *iface)
{
  iface->init = mpg_shared_memory_initable_init;
}

static void
mpg_shared_memory_finalize (GObject *object)
{
  MpgSharedMemory *self = (MpgSharedMemory *)object;

  if (self->data != NULL)
    munmap (g_steal_pointer (&self->data), self->size);
  if (self->fd >= 0)
    close (g_steal_fd (&self->fd));
  g_clear_pointer (&self->name, g_free);

  G_OBJECT_CLASS (mpg_shared_memory_parent_class)->finalize (object);
}

static void
mpg_shared_memory_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  MpgSharedMemory *self = MPG_SHARED_MEMORY (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, self->name);
      break;

    case PROP_SIZE:
      g_value_set_uint64 (value, self->size);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_shared_memory_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  MpgSharedMemory *self = MPG_SHARED_MEMORY (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_free (self->name);
      self->name = g_value_dup_string (value);
      break;

    case PROP_SIZE:
      self->size = (gsize) MIN (g_value_get_uint64 (value), G_MAXSIZE);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_shared_memory_class_init (MpgSharedMemoryClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = mpg_shared_memory_finalize;
  object_class->get_property = mpg_shared_memory_get_property;
  object_class->set_property = mpg_shared_memory_set_property;

  /**
   * MpgSharedMemory:name:
   *
   * A label for the memory, shown as the memfd's name in `/proc/PID/fd`
   * and `/proc/PID/maps`: at most 249 bytes of UTF-8. When none is given
   * at construction, a name unique in this process is made up
   * (`mpg-PID-N`). It does not need to be unique, and no other process
   * can find the memory by its name.
   *
   * A block rebuilt from a handle has the name that its creator gave it.
   *
   * Since: 0.1
   */
  properties[PROP_NAME] =
    g_param_spec_string ("name", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgSharedMemory:size:
   *
   * The size of the memory in bytes, at least 1. It never changes.
   *
   * Since: 0.1
   */
  properties[PROP_SIZE] =
    g_param_spec_uint64 ("size", NULL, NULL,
                         0, G_MAXSIZE, 0,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_shared_memory_init (MpgSharedMemory *self)
{
  self->fd = -1;
}

/**
 * mpg_shared_memory_new:
 * @name: (nullable): a label for the memory (see
 *   [property@Mpg.SharedMemory:name]), or %NULL to make one up
 * @size: the size of the memory in bytes; not 0
 * @error: return location for a #GError
 *
 * Creates a block of shared memory of @size bytes, filled with zeros, and
 * maps it into this process, as Python's
 * `SharedMemory(create=True, size=size)`.
 *
 * Fails with %G_IO_ERROR_INVALID_ARGUMENT if @size is 0 or @name is too
 * long, and with an error of the %G_IO_ERROR domain if the system cannot
 * give the memory (too many open files, not enough memory).
 *
 * Returns: (transfer full): the shared memory, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgSharedMemory *
mpg_shared_memory_new (const char  *name,
                       gsize        size,
                       GError     **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (MPG_TYPE_SHARED_MEMORY, NULL, error,
                         "name", name,
                         "size", (guint64) size,
                         NULL);
}

/**
 * mpg_shared_memory_get_name:
 * @self: a shared memory
 *
 * Gets the name of the memory: see [property@Mpg.SharedMemory:name].
 *
 * Returns: (transfer none): the name
 *
 * Since: 0.1
 */
const char *
mpg_shared_memory_get_name (MpgSharedMemory *self)
{
  g_return_val_if_fail (MPG_IS_SHARED_MEMORY (self), NULL);

  return self->name;
}

/**
 * mpg_shared_memory_get_size:
 * @self: a shared memory
 *
 * Gets the size of the memory in bytes, as Python's `shm.size`.
 *
 * Returns: the size
 *
 * Since: 0.1
 */
gsize
mpg_shared_memory_get_size (MpgSharedMemory *self)
{
  g_return_val_if_fail (MPG_IS_SHARED_MEMORY (self), 0);

  return self->size;
}

/**
 * mpg_shared_memory_get_data:
 * @self: a shared memory
 * @out_size: (out) (optional): return location for the size of the memory
 *
 * Gets the memory itself, as Python's `shm.buf`: what this process writes
 * there, every process that has the memory reads, and the other way
 * round. It is not a copy, and it stays valid until @self is finalized.
 *
 * Returns: (array length=out_size) (transfer none): the memory
 *
 * Since: 0.1
 */
guint8 *
mpg_shared_memory_get_data (MpgSharedMemory *self,
                            gsize           *out_size)
{
  g_return_val_if_fail (MPG_IS_SHARED_MEMORY (self), NULL);
  g_return_val_if_fail (self->data != NULL, NULL);

  if (out_size != NULL)
    *out_size = self->size;

  return self->data;
}

/**
 * mpg_shared_memory_get_bytes:
 * @self: a shared memory
 *
 * Gets the memory as a #GBytes, for APIs that take one. It is not a copy:
 * the bytes are the memory itself, and keep @self (and so the mapping)
 * alive until they are freed.
 *
 * Unlike the usual #GBytes, their content changes when any process writes
 * to the memory: copy them (g_bytes_new()) for a snapshot, and do not use
 * them as a key in a hash table.
 *
 * Returns: (transfer full): the memory as bytes
 *
 * Since: 0.1
 */
GBytes *
mpg_shared_memory_get_bytes (MpgSharedMemory *self)
{
  g_return_val_if_fail (MPG_IS_SHARED_MEMORY (self), NULL);
  g_return_val_if_fail (self->data != NULL, NULL);

  return g_bytes_new_with_free_func (self->data, self->size,
                                     g_object_unref, g_object_ref (self));
}

/**
 * mpg_shared_memory_get_fd:
 * @self: a shared memory
 *
 * Gets the memfd that holds the memory. It belongs to @self, which closes
 * it when finalized: duplicate it to keep it longer. It is sealed against
 * shrinking and growing.
 *
 * Returns: the file descriptor
 *
 * Since: 0.1
 */
int
mpg_shared_memory_get_fd (MpgSharedMemory *self)
{
  g_return_val_if_fail (MPG_IS_SHARED_MEMORY (self), -1);

  return self->fd;
}

/**
 * mpg_shared_memory_to_handle:
 * @self: a shared memory
 * @fd_list: the list to append (a copy of) the memory's file descriptor to
 * @error: return location for a #GError
 *
 * Describes the memory for another process, as pickling a `SharedMemory`
 * does in Python: appends a copy of its file descriptor to @fd_list and
 * returns a `(sth)` value: its name, its size and the index of the file
 * descriptor in @fd_list. Send both, for example as the arguments of an
 * [class@Mpg.Process] (with [method@Mpg.Process.set_fd_list]), with
 * [method@Mpg.Queue.put_with_fds] or with
 * [method@Mpg.Connection.send_with_fds], and map the memory on the other
 * side with [ctor@Mpg.SharedMemory.new_from_handle].
 *
 * With the fork start method this is not needed: memory created before a
 * child is started is there in the child.
 *
 * Returns: (transfer full): a new `(sth)` value (not floating), or %NULL
 *   with @error set if @fd_list is full
 *
 * Since: 0.1
 */
GVariant *
mpg_shared_memory_to_handle (MpgSharedMemory  *self,
                             GUnixFDList      *fd_list,
                             GError          **error)
{
  gint index;

  g_return_val_if_fail (MPG_IS_SHARED_MEMORY (self), NULL);
  g_return_val_if_fail (self->fd >= 0, NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  index = g_unix_fd_list_append (fd_list, self->fd, error);
  if (index < 0)
    return NULL;

  return g_variant_ref_sink (g_variant_new (HANDLE_TYPE, self->name, (guint64) self->size, index));
}

static gboolean
invalid_handle (GError     **error,
                const char  *format,
                ...) G_GNUC_PRINTF (2, 3);

static gboolean
invalid_handle (GError     **error,
                const char  *format,
                ...)
{
  g_autofree char *why = NULL;
  va_list args;

  va_start (args, format);
  why = g_strdup_vprintf (format, args);
  va_end (args);

  g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL, "Invalid shared memory handle: %s", why);
  return FALSE;
}

/* Whether @fd is memory that can be mapped @size bytes long and stays so:
 * anything else could make an access to the mapping fault (SIGBUS). */
static gboolean
check_memfd (int       fd,
             guint64   size,
             GError  **error)
{
  struct statfs sfs;
  struct stat st;
  int seals;
  int flags;

  /* A memfd lives in the kernel's internal tmpfs; a hugetlbfs memfd could
   * fault when the huge page pool runs dry. */
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) ||
      fstatfs (fd, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC)
    return invalid_handle (error, "its file descriptor is not a memfd");

  seals = fcntl (fd, F_GET_SEALS);
  if (seals < 0 || (seals & SEALS) != SEALS)
    return invalid_handle (error, "its memfd is not sealed against shrinking and growing");

  /* A mapping for writing would fail: say why. */
  flags = fcntl (fd, F_GETFL);
  if ((seals & F_SEAL_WRITE) != 0
#ifdef F_SEAL_FUTURE_WRITE
      || (seals & F_SEAL_FUTURE_WRITE) != 0
#endif
      || flags < 0 || (flags & O_ACCMODE) != O_RDWR)
    return invalid_handle (error, "its memfd cannot be written");

  if ((guint64) st.st_size != size)
    return invalid_handle (error, "its memfd has %" G_GINT64_FORMAT " bytes, not the %"
                           G_GUINT64_FORMAT " of the handle",
                           (gint64) st.st_size, size);

  return TRUE;
}

/**
 * mpg_shared_memory_new_from_handle:
 * @handle: a `(sth)` value from [method@Mpg.SharedMemory.to_handle]; a
 *   floating reference is sunk
 * @fd_list: the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Maps memory that another process (or this one) described with
 * [method@Mpg.SharedMemory.to_handle], as unpickling a `SharedMemory`
 * does in Python. The new object has its own copy of the file descriptor
 * (@fd_list keeps its own) and its own mapping of the same memory: what
 * either side writes, the other reads.
 *
 * As the handle may come from an untrusted peer, it is checked: it must be
 * of type `(sth)`, with an index into @fd_list of a memfd that can be
 * written, is sealed against shrinking and growing, and has the size the
 * handle says. Otherwise this fails with %MPG_ERROR_PROTOCOL.
 *
 * Returns: (transfer full): the shared memory, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgSharedMemory *
mpg_shared_memory_new_from_handle (GVariant     *handle,
                                   GUnixFDList  *fd_list,
                                   GError      **error)
{
  g_autoptr(GVariant) owned = NULL;
  g_autoptr(MpgSharedMemory) self = NULL;
  const char *name;
  guint64 size;
  gint32 index;
  int fd;

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

  g_variant_get (owned, "(&sth)", &name, &size, &index);

  if (size == 0 || size > G_MAXSSIZE)
    {
      invalid_handle (error, "a size of %" G_GUINT64_FORMAT " bytes", size);
      return NULL;
    }
  if (index < 0 || index >= g_unix_fd_list_get_length (fd_list))
    {
      invalid_handle (error, "%d is not an index into its %d file descriptors",
                      index, g_unix_fd_list_get_length (fd_list));
      return NULL;
    }
  if (!check_memfd (g_unix_fd_list_peek_fds (fd_list, NULL)[index], size, error))
    return NULL;

  fd = g_unix_fd_list_get (fd_list, index, error);
  if (fd < 0)
    return NULL;

  self = g_object_new (MPG_TYPE_SHARED_MEMORY,
                       "name", name,
                       "size", size,
                       NULL);
  self->fd = fd;
  if (!map_memory (self, error))
    return NULL;

  return g_steal_pointer (&self);
}
