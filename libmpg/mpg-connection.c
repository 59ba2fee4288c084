/* mpg-connection.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <glib-unix.h>

#include "mpg-channel-private.h"
#include "mpg-connection.h"
#include "mpg-error.h"
#include "mpg-wire-private.h"

/**
 * MpgConnection:
 *
 * One end of a pipe between processes, as a `Connection` of Python's
 * `multiprocessing.Pipe()`.
 *
 * [func@Mpg.pipe_new] makes two connected ends. Each message is one
 * [struct@GLib.Variant], sent whole with [method@Mpg.Connection.send] and
 * received whole with [method@Mpg.Connection.recv], in order. Messages of
 * any size are fine (up to [property@Mpg.Connection:max-message-size]);
 * they may carry file descriptors ([method@Mpg.Connection.send_with_fds]).
 * [method@Mpg.Connection.recv_async] waits for a message without blocking
 * the main loop, and [func@Mpg.wait] waits on several connections,
 * processes and queues at once.
 *
 * An end is usually handed to a child process by forking: the child
 * inherits both ends, and each side closes the end it does not use, so
 * that each sees the end of the stream when the other side is done.
 *
 * ```c
 * static GVariant *
 * child (GVariant *arg, gpointer user_data, GError **error)
 * {
 *   MpgConnection *conn = user_data;
 *   g_autoptr(GVariant) request = mpg_connection_recv (conn, NULL, error);
 *
 *   if (request == NULL)
 *     return NULL;
 *   if (!mpg_connection_send (conn, g_variant_new ("(imvs)", 42, NULL, "hello"), NULL, error))
 *     return NULL;
 *   return NULL;
 * }
 *
 * g_autoptr(MpgConnection) parent_conn = NULL;
 * g_autoptr(MpgConnection) child_conn = NULL;
 * g_autoptr(MpgProcess) p = NULL;
 * g_autoptr(GVariant) reply = NULL;
 *
 * mpg_pipe_new (TRUE, &parent_conn, &child_conn, &error);
 * p = mpg_process_new (NULL, child, child_conn, NULL);
 * mpg_process_start (p, &error);
 * mpg_connection_close (child_conn);   // the child has its own copy
 * mpg_connection_send (parent_conn, g_variant_new_string ("hi"), NULL, &error);
 * reply = mpg_connection_recv (parent_conn, NULL, &error);   // (42, nothing, 'hello')
 * mpg_process_join (p, -1, NULL, &error);
 * ```
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `a, b = Pipe()`; `Pipe(duplex=False)` | `mpg_pipe_new (TRUE, &a, &b, &error)`; `mpg_pipe_new (FALSE, &r, &w, &error)` |
 * | `conn.send(obj)`, `conn.recv()` | [method@Mpg.Connection.send], [method@Mpg.Connection.recv] (a #GVariant instead of a pickle) |
 * | `conn.send_bytes(buf)`, `conn.recv_bytes()` | [method@Mpg.Connection.send_bytes], [method@Mpg.Connection.recv_bytes] |
 * | `conn.recv_bytes(maxlength)` | [property@Mpg.Connection:max-message-size] |
 * | `conn.poll(timeout)` | [method@Mpg.Connection.poll] (milliseconds) |
 * | `conn.fileno()` | [method@Mpg.Connection.get_fd] |
 * | `conn.close()`, `closed`, `readable`, `writable` | [method@Mpg.Connection.close] and the properties |
 * | `EOFError` from `recv()` | %MPG_ERROR_END_OF_STREAM |
 * | `BrokenPipeError` from `send()` | %MPG_ERROR_END_OF_STREAM (never `SIGPIPE`) |
 * | `OSError` "connection is read-only" / "write-only" | %MPG_ERROR_INVALID_STATE |
 * | `OSError` "handle is closed" | %MPG_ERROR_CLOSED |
 * | passing a `Connection` to another process | [method@Mpg.Connection.to_handle], [ctor@Mpg.Connection.new_from_handle] |
 * | `multiprocessing.reduction.send_handle()` | [method@Mpg.Connection.send_with_fds] |
 * | `multiprocessing.connection.wait()` | [func@Mpg.wait] |
 *
 * Unlike Python's, where a message is a stream of bytes that `recv()`
 * unpickles, a message here has a type: what [method@Mpg.Connection.send_bytes]
 * sends is a message of type `ay`, which [method@Mpg.Connection.recv]
 * returns as such, and [method@Mpg.Connection.recv_bytes] refuses a message
 * of any other type with %MPG_ERROR_PROTOCOL. A message that cannot be
 * received (invalid, or too large) is consumed and reported, and the next
 * one can be received: the connection stays usable.
 *
 * ## Under the hood
 *
 * A pipe is an `AF_UNIX` `SOCK_SEQPACKET` socket pair; a message is one
 * datagram, or, past 64 KiB, a memfd passed along with a small
 * datagram. Received bytes are checked before use: a hostile peer can
 * produce errors, not crashes. A one-way pipe is a socket pair whose
 * unused directions are shut down.
 *
 * A connection can be used by one thread to send while another receives,
 * and several threads or processes may share an end: each message goes
 * whole to one receiver. It must not be closed while another thread is
 * blocked in a call on it: cancel that call with its #GCancellable first.
 *
 * Since: 0.1
 */

struct _MpgConnection
{
  GObject parent_instance;

  /* Guards pending, and the closing of fd, against an async receive
   * completing in another thread's main context. Never held during I/O or
   * decoding: a thread that forks while another holds it would leave the
   * child a lock that nobody releases. */
  GMutex mutex;
  int fd;   /* atomic: -1 once closed */
  gboolean readable;
  gboolean writable;
  gsize max_message_size;
  /* Tasks of recv_async in flight, owned. */
  GQueue pending;
};

G_DEFINE_FINAL_TYPE (MpgConnection, mpg_connection, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_READABLE,
  PROP_WRITABLE,
  PROP_CLOSED,
  PROP_MAX_MESSAGE_SIZE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

#define HANDLE_TYPE "(hbb)"

static MpgConnection *
connection_new (int      fd,
                gboolean readable,
                gboolean writable)
{
  MpgConnection *self = g_object_new (MPG_TYPE_CONNECTION, NULL);

  g_atomic_int_set (&self->fd, fd);
  self->readable = readable;
  self->writable = writable;

  return self;
}

static void close_internal (MpgConnection *self,
                            gboolean       notify);

static void
mpg_connection_dispose (GObject *object)
{
  MpgConnection *self = (MpgConnection *)object;

  /* Pending receives hold a reference, so there are none unless
   * g_object_run_dispose() was called: complete those too. */
  close_internal (self, FALSE);

  G_OBJECT_CLASS (mpg_connection_parent_class)->dispose (object);
}

static void
mpg_connection_finalize (GObject *object)
{
  MpgConnection *self = (MpgConnection *)object;

  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (mpg_connection_parent_class)->finalize (object);
}

static void
mpg_connection_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  MpgConnection *self = MPG_CONNECTION (object);

  switch (prop_id)
    {
    case PROP_READABLE:
      g_value_set_boolean (value, mpg_connection_get_readable (self));
      break;

    case PROP_WRITABLE:
      g_value_set_boolean (value, mpg_connection_get_writable (self));
      break;

    case PROP_CLOSED:
      g_value_set_boolean (value, mpg_connection_get_closed (self));
      break;

    case PROP_MAX_MESSAGE_SIZE:
      g_value_set_uint64 (value, mpg_connection_get_max_message_size (self));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_connection_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  MpgConnection *self = MPG_CONNECTION (object);

  switch (prop_id)
    {
    case PROP_MAX_MESSAGE_SIZE:
      mpg_connection_set_max_message_size (self, g_value_get_uint64 (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_connection_class_init (MpgConnectionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = mpg_connection_dispose;
  object_class->finalize = mpg_connection_finalize;
  object_class->get_property = mpg_connection_get_property;
  object_class->set_property = mpg_connection_set_property;

  /**
   * MpgConnection:readable:
   *
   * Whether messages can be received on this end: %FALSE for the sending
   * end of a one-way pipe.
   *
   * Since: 0.1
   */
  properties[PROP_READABLE] =
    g_param_spec_boolean ("readable", NULL, NULL,
                          FALSE,
                          (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgConnection:writable:
   *
   * Whether messages can be sent on this end: %FALSE for the receiving end
   * of a one-way pipe.
   *
   * Since: 0.1
   */
  properties[PROP_WRITABLE] =
    g_param_spec_boolean ("writable", NULL, NULL,
                          FALSE,
                          (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgConnection:closed:
   *
   * Whether [method@Mpg.Connection.close] was called. It is notified when
   * the connection is closed.
   *
   * A connection made with g_object_new() rather than by
   * [func@Mpg.pipe_new] or [ctor@Mpg.Connection.new_from_handle] has no
   * socket: it is closed from the start.
   *
   * Since: 0.1
   */
  properties[PROP_CLOSED] =
    g_param_spec_boolean ("closed", NULL, NULL,
                          TRUE,
                          (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgConnection:max-message-size:
   *
   * The largest message, in bytes of its serialised form (a 16-byte header,
   * the type string and the value's data), that this end sends or accepts.
   * A larger message fails to send with %MPG_ERROR_TOO_LARGE; a larger
   * message received is discarded, and the receive fails with
   * %MPG_ERROR_TOO_LARGE. It protects a receiver from a peer that would
   * make it allocate without limit, as the `maxlength` argument of
   * Python's `recv_bytes()` does.
   *
   * The default is 256 MiB.
   *
   * Since: 0.1
   */
  properties[PROP_MAX_MESSAGE_SIZE] =
    g_param_spec_uint64 ("max-message-size", NULL, NULL,
                         1, G_MAXSIZE, MPG_WIRE_DEFAULT_MAX,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_connection_init (MpgConnection *self)
{
  g_mutex_init (&self->mutex);
  g_queue_init (&self->pending);
  g_atomic_int_set (&self->fd, -1);
  self->max_message_size = MPG_WIRE_DEFAULT_MAX;
}

/**
 * mpg_pipe_new:
 * @duplex: %TRUE for a pipe that carries messages both ways; %FALSE for a
 *   one-way pipe, from @out_second to @out_first
 * @out_first: (out) (transfer full) (optional) (nullable): the first end:
 *   with @duplex %FALSE, it can only receive
 * @out_second: (out) (transfer full) (optional) (nullable): the second end:
 *   with @duplex %FALSE, it can only send
 * @error: return location for a #GError
 *
 * Creates a pipe between two connections, as Python's
 * `multiprocessing.Pipe(duplex)`. The ends are [class@Mpg.Connection]s;
 * give one to another process by starting an [class@Mpg.Process] (a forked
 * child inherits both ends: each side should then close the end it does
 * not use), or by passing it with [method@Mpg.Connection.to_handle].
 *
 * Both ends are set to be closed on exec().
 *
 * Returns: %TRUE on success; %FALSE with @error set if the socket pair
 *   could not be created (too many open files)
 *
 * Since: 0.1
 */
gboolean
mpg_pipe_new (gboolean        duplex,
              MpgConnection **out_first,
              MpgConnection **out_second,
              GError        **error)
{
  g_autoptr(MpgConnection) first = NULL;
  g_autoptr(MpgConnection) second = NULL;
  int fds[2];

  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (out_first != NULL)
    *out_first = NULL;
  if (out_second != NULL)
    *out_second = NULL;

  if (!_mpg_channel_socketpair (fds, error))
    return FALSE;

  /* As Python's os.pipe(): the first end reads, the second end writes. The
   * shutdowns make any other use fail at the socket level too, and make the
   * reader see the end of file when the writer closes. */
  if (!duplex)
    {
      shutdown (fds[0], SHUT_WR);
      shutdown (fds[1], SHUT_RD);
    }

  first = connection_new (fds[0], TRUE, duplex);
  second = connection_new (fds[1], duplex, TRUE);

  if (out_first != NULL)
    *out_first = g_steal_pointer (&first);
  if (out_second != NULL)
    *out_second = g_steal_pointer (&second);

  return TRUE;
}

/**
 * mpg_connection_get_readable:
 * @self: a connection
 *
 * Gets [property@Mpg.Connection:readable].
 *
 * Returns: whether messages can be received on this end
 *
 * Since: 0.1
 */
gboolean
mpg_connection_get_readable (MpgConnection *self)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), FALSE);

  return self->readable;
}

/**
 * mpg_connection_get_writable:
 * @self: a connection
 *
 * Gets [property@Mpg.Connection:writable].
 *
 * Returns: whether messages can be sent on this end
 *
 * Since: 0.1
 */
gboolean
mpg_connection_get_writable (MpgConnection *self)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), FALSE);

  return self->writable;
}

/**
 * mpg_connection_get_closed:
 * @self: a connection
 *
 * Gets [property@Mpg.Connection:closed].
 *
 * Returns: whether the connection is closed
 *
 * Since: 0.1
 */
gboolean
mpg_connection_get_closed (MpgConnection *self)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), TRUE);

  return g_atomic_int_get (&self->fd) < 0;
}

/**
 * mpg_connection_get_max_message_size:
 * @self: a connection
 *
 * Gets [property@Mpg.Connection:max-message-size].
 *
 * Returns: the largest message size, in bytes, that this end sends or
 *   accepts
 *
 * Since: 0.1
 */
gsize
mpg_connection_get_max_message_size (MpgConnection *self)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), 0);

  return self->max_message_size;
}

/**
 * mpg_connection_set_max_message_size:
 * @self: a connection
 * @max_message_size: the largest message size in bytes, at least 1
 *
 * Sets [property@Mpg.Connection:max-message-size]. It applies to the
 * messages sent and received from then on, on this end only.
 *
 * Since: 0.1
 */
void
mpg_connection_set_max_message_size (MpgConnection *self,
                                     gsize          max_message_size)
{
  g_return_if_fail (MPG_IS_CONNECTION (self));
  g_return_if_fail (max_message_size > 0);

  if (self->max_message_size != max_message_size)
    {
      self->max_message_size = max_message_size;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MAX_MESSAGE_SIZE]);
    }
}

/**
 * mpg_connection_get_fd:
 * @self: a connection
 *
 * Gets the connection's socket, as Python's `fileno()`: to poll it with
 * other fds, or to check for messages from a main loop source of one's own.
 * It stays owned by @self: do not close it, and do not read from it.
 *
 * Returns: the file descriptor, or -1 if the connection is closed
 *
 * Since: 0.1
 */
gint
mpg_connection_get_fd (MpgConnection *self)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), -1);

  return g_atomic_int_get (&self->fd);
}

/* Returns the fd to use, or -1 with @error set (Python's _check_closed,
 * _check_readable, _check_writable). */
static int
check_usable (MpgConnection  *self,
              gboolean        for_reading,
              gboolean        for_writing,
              GError        **error)
{
  int fd = mpg_connection_get_fd (self);

  if (fd < 0)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_CLOSED, "The connection is closed");
      return -1;
    }

  if (for_reading && !self->readable)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE, "The connection is write-only");
      return -1;
    }

  if (for_writing && !self->writable)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE, "The connection is read-only");
      return -1;
    }

  return fd;
}

/**
 * mpg_connection_send_with_fds:
 * @self: a connection
 * @value: the message; a floating reference is sunk
 * @fd_list: (nullable): the file descriptors that @value's handles (type
 *   `h`) index, or %NULL for none
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Sends a message that carries file descriptors, as Python's
 * `multiprocessing.reduction.send_handle()`: each handle in @value is an
 * index into @fd_list. The receiver gets copies of the descriptors, in a
 * list of its own, from [method@Mpg.Connection.recv_with_fds]. @fd_list
 * is not modified: its descriptors stay open here too. At most 250
 * descriptors can go with one message.
 *
 * Fails with %G_IO_ERROR_INVALID_ARGUMENT if a handle of @value is not an
 * index into @fd_list, and otherwise as [method@Mpg.Connection.send].
 *
 * Returns: %TRUE if the message was sent
 *
 * Since: 0.1
 */
gboolean
mpg_connection_send_with_fds (MpgConnection  *self,
                              GVariant       *value,
                              GUnixFDList    *fd_list,
                              GCancellable   *cancellable,
                              GError        **error)
{
  g_autoptr(GVariant) owned = NULL;
  int fd;

  g_return_val_if_fail (MPG_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* Sunk at once, so that no error path leaks a floating reference. */
  owned = g_variant_ref_sink (value);

  fd = check_usable (self, FALSE, TRUE, error);
  if (fd < 0)
    return FALSE;

  return _mpg_channel_send (fd, owned, fd_list, self->max_message_size, -1, cancellable, error);
}

/**
 * mpg_connection_send:
 * @self: a connection
 * @value: the message; a floating reference is sunk
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Sends a message to the other end, as Python's `send(obj)`. The whole
 * message is sent, or nothing. This blocks only while the socket's buffer
 * is full, which holds about 270 small messages, or 200 KiB, that the
 * other end has not received yet (larger messages wait in memfds, and
 * take little of it); @cancellable interrupts that wait.
 *
 * Fails with %MPG_ERROR_END_OF_STREAM if the other end is closed (Python's
 * `BrokenPipeError`; no `SIGPIPE` is raised), %MPG_ERROR_TOO_LARGE if the
 * message is larger than [property@Mpg.Connection:max-message-size],
 * %MPG_ERROR_INVALID_STATE on a read-only end, %MPG_ERROR_CLOSED on a
 * closed one, and %G_IO_ERROR_CANCELLED. Handles (type `h`) need
 * [method@Mpg.Connection.send_with_fds].
 *
 * Returns: %TRUE if the message was sent
 *
 * Since: 0.1
 */
gboolean
mpg_connection_send (MpgConnection  *self,
                     GVariant       *value,
                     GCancellable   *cancellable,
                     GError        **error)
{
  return mpg_connection_send_with_fds (self, value, NULL, cancellable, error);
}

/**
 * mpg_connection_send_bytes:
 * @self: a connection
 * @bytes: the bytes to send
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Sends bytes, as Python's `send_bytes(buf)`: a message of type `ay`, which
 * the other end receives with [method@Mpg.Connection.recv_bytes] (or as an
 * `ay` value with [method@Mpg.Connection.recv]). Fails as
 * [method@Mpg.Connection.send].
 *
 * Returns: %TRUE if the message was sent
 *
 * Since: 0.1
 */
gboolean
mpg_connection_send_bytes (MpgConnection  *self,
                           GBytes         *bytes,
                           GCancellable   *cancellable,
                           GError        **error)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (bytes != NULL, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return mpg_connection_send (self,
                              g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, bytes, TRUE),
                              cancellable, error);
}

/**
 * mpg_connection_recv_with_fds:
 * @self: a connection
 * @out_fd_list: (out) (transfer full) (optional) (nullable): return location
 *   for the file descriptors that came with the message, or %NULL if it
 *   came with none
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Receives a message and the file descriptors it carries, sent with
 * [method@Mpg.Connection.send_with_fds]: each handle (type `h`) in the
 * message is an index into *@out_fd_list, whose descriptors are new ones,
 * owned by the list (and closed on exec()). Every handle was checked to
 * be such an index. Fails as [method@Mpg.Connection.recv].
 *
 * Returns: (transfer full): the message, or %NULL on error
 *
 * Since: 0.1
 */
GVariant *
mpg_connection_recv_with_fds (MpgConnection  *self,
                              GUnixFDList   **out_fd_list,
                              GCancellable   *cancellable,
                              GError        **error)
{
  int fd;

  g_return_val_if_fail (MPG_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (out_fd_list != NULL)
    *out_fd_list = NULL;

  fd = check_usable (self, TRUE, FALSE, error);
  if (fd < 0)
    return NULL;

  return _mpg_channel_receive (fd, self->max_message_size, -1, cancellable, out_fd_list, error);
}

/**
 * mpg_connection_recv:
 * @self: a connection
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Receives the next message, as Python's `recv()`. Blocks until one is
 * there, or until @cancellable is cancelled; [method@Mpg.Connection.poll]
 * waits with a timeout, and [method@Mpg.Connection.recv_async] without
 * blocking. A message sent with [method@Mpg.Connection.send_bytes] is
 * returned as a value of type `ay`. File descriptors that came with the
 * message are closed: see [method@Mpg.Connection.recv_with_fds].
 *
 * Once the other end is closed and every message it sent was received,
 * this fails with %MPG_ERROR_END_OF_STREAM (Python's `EOFError`), and
 * keeps failing so. A message that is not valid (%MPG_ERROR_PROTOCOL) or
 * too large (%MPG_ERROR_TOO_LARGE, see
 * [property@Mpg.Connection:max-message-size]) is discarded: the next call
 * receives the next message. On a write-only end this fails with
 * %MPG_ERROR_INVALID_STATE, on a closed one with %MPG_ERROR_CLOSED.
 *
 * Returns: (transfer full): the message, or %NULL on error
 *
 * Since: 0.1
 */
GVariant *
mpg_connection_recv (MpgConnection  *self,
                     GCancellable   *cancellable,
                     GError        **error)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return mpg_connection_recv_with_fds (self, NULL, cancellable, error);
}

/**
 * mpg_connection_recv_bytes:
 * @self: a connection
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Receives a message sent with [method@Mpg.Connection.send_bytes] (any
 * message of type `ay`), as Python's `recv_bytes()`. A message of another
 * type is consumed and the call fails with %MPG_ERROR_PROTOCOL. Otherwise
 * fails as [method@Mpg.Connection.recv].
 *
 * Returns: (transfer full): the bytes, or %NULL on error
 *
 * Since: 0.1
 */
GBytes *
mpg_connection_recv_bytes (MpgConnection  *self,
                           GCancellable   *cancellable,
                           GError        **error)
{
  g_autoptr(GVariant) value = NULL;

  g_return_val_if_fail (MPG_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  value = mpg_connection_recv (self, cancellable, error);
  if (value == NULL)
    return NULL;

  if (!g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "Expected a message of bytes (type ay), received one of type %s",
                   g_variant_get_type_string (value));
      return NULL;
    }

  return g_variant_get_data_as_bytes (value);
}

/**
 * mpg_connection_poll:
 * @self: a connection
 * @timeout_msec: how long to wait at most, in milliseconds: 0 to check
 *   without waiting, -1 to wait for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Waits until there is something to receive, as Python's `poll(timeout)`:
 * a message, or the end of the stream (then [method@Mpg.Connection.recv]
 * fails with %MPG_ERROR_END_OF_STREAM without blocking).
 *
 * As in Python, a timeout is not an error: this returns %FALSE and leaves
 * @error unset. It fails (%FALSE with @error set) when @cancellable is
 * cancelled, on a write-only end (%MPG_ERROR_INVALID_STATE) and on a closed
 * one (%MPG_ERROR_CLOSED).
 *
 * If other threads or processes receive on the same end, the message may
 * be gone by the time this thread calls [method@Mpg.Connection.recv].
 *
 * Returns: %TRUE if there is something to receive; %FALSE if the timeout
 *   expired or on error
 *
 * Since: 0.1
 */
gboolean
mpg_connection_poll (MpgConnection  *self,
                     gint            timeout_msec,
                     GCancellable   *cancellable,
                     GError        **error)
{
  g_autoptr(GError) local_error = NULL;
  gint64 deadline;
  int fd;

  g_return_val_if_fail (MPG_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (timeout_msec >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  fd = check_usable (self, TRUE, FALSE, error);
  if (fd < 0)
    return FALSE;

  if (timeout_msec < 0)
    deadline = -1;
  else
    deadline = g_get_monotonic_time () + (gint64) timeout_msec * 1000;

  if (_mpg_channel_wait (fd, G_IO_IN, deadline, cancellable, &local_error))
    return TRUE;

  if (!g_error_matches (local_error, MPG_ERROR, MPG_ERROR_TIMEOUT))
    g_propagate_error (error, g_steal_pointer (&local_error));

  return FALSE;
}

/* recv_async */

typedef struct
{
  GSource *fd_source;
  GSource *cancel_source;
} RecvData;

static void
recv_data_clear_sources (RecvData *data)
{
  if (data->fd_source != NULL)
    {
      g_source_destroy (data->fd_source);
      g_clear_pointer (&data->fd_source, g_source_unref);
    }
  if (data->cancel_source != NULL)
    {
      g_source_destroy (data->cancel_source);
      g_clear_pointer (&data->cancel_source, g_source_unref);
    }
}

static void
recv_data_free (gpointer p)
{
  RecvData *data = p;

  recv_data_clear_sources (data);
  g_free (data);
}

/* Takes @task out of the pending ones, if close() did not take it first.
 * Called with the mutex held. */
static gboolean
take_pending_locked (MpgConnection *self,
                     GTask         *task)
{
  GList *link = g_queue_find (&self->pending, task);

  if (link == NULL)
    return FALSE;

  g_queue_delete_link (&self->pending, link);
  return TRUE;
}

/* Completes a pending task that was taken out of the pending ones. The
 * sources go first, so that they never fire again nor outlive the fd. */
static void
recv_complete (GTask    *task,
               GVariant *value,
               GError   *error)
{
  recv_data_clear_sources (g_task_get_task_data (task));

  if (value != NULL)
    g_task_return_pointer (task, value, (GDestroyNotify) g_variant_unref);
  else
    g_task_return_error (task, error);
  g_object_unref (task);   /* the pending queue's reference */
}

static gboolean
recv_on_readable (int          fd,
                  GIOCondition condition,
                  gpointer     user_data)
{
  GTask *task = user_data;
  MpgConnection *self = g_task_get_source_object (task);
  g_autoptr(GError) error = NULL;
  GVariant *value = NULL;
  gboolean pending;

  g_mutex_lock (&self->mutex);
  pending = g_queue_find (&self->pending, task) != NULL;
  g_mutex_unlock (&self->mutex);
  if (!pending)
    return G_SOURCE_REMOVE;   /* close() completed it meanwhile */

  /* Deadline 0: never blocks. Another receiver (a thread, a process, a
   * task earlier in the queue) may have taken the message: then this one
   * keeps waiting. */
  value = _mpg_channel_receive (fd, self->max_message_size, 0, NULL, NULL, &error);
  if (value == NULL && g_error_matches (error, MPG_ERROR, MPG_ERROR_TIMEOUT))
    return G_SOURCE_CONTINUE;

  g_mutex_lock (&self->mutex);
  pending = take_pending_locked (self, task);
  g_mutex_unlock (&self->mutex);

  if (pending)
    recv_complete (task, value, g_steal_pointer (&error));
  else
    g_clear_pointer (&value, g_variant_unref);   /* closed from another thread: dropped */

  return G_SOURCE_REMOVE;
}

static gboolean
recv_on_cancelled (GCancellable *cancellable,
                   gpointer      user_data)
{
  GTask *task = user_data;
  MpgConnection *self = g_task_get_source_object (task);
  GError *error = NULL;
  gboolean taken;

  g_mutex_lock (&self->mutex);
  taken = take_pending_locked (self, task);
  g_mutex_unlock (&self->mutex);

  if (taken)
    {
      g_cancellable_set_error_if_cancelled (cancellable, &error);
      recv_complete (task, NULL, error);
    }

  return G_SOURCE_REMOVE;
}

/**
 * mpg_connection_recv_async:
 * @self: a connection
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when a message was received, or on error
 * @user_data: data for @callback
 *
 * Receives the next message without blocking: @callback runs in the
 * thread-default main context of the caller once a message arrives (or
 * the call fails); it calls [method@Mpg.Connection.recv_finish].
 *
 * Several receives may be pending at once: they complete in the order
 * they were made. Cancelling @cancellable completes the call promptly
 * with %G_IO_ERROR_CANCELLED, and no message is lost: a message is either
 * returned or left for the next receive. Closing the connection completes
 * pending calls with %MPG_ERROR_CLOSED. The pending call holds a reference
 * on @self.
 *
 * Since: 0.1
 */
void
mpg_connection_recv_async (MpgConnection       *self,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  RecvData *data;
  GVariant *value = NULL;
  gboolean first;
  int fd;

  g_return_if_fail (MPG_IS_CONNECTION (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, mpg_connection_recv_async);
  g_task_set_name (task, "[mpg] receive from connection");
  /* Once a message is taken it must reach the caller, even if the
   * cancellable fires before the callback runs: it would be lost. */
  g_task_set_check_cancellable (task, FALSE);
  data = g_new0 (RecvData, 1);
  g_task_set_task_data (task, data, recv_data_free);

  if (g_task_return_error_if_cancelled (task))
    return;

  fd = check_usable (self, TRUE, FALSE, &error);
  if (fd < 0)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  /* A message already there is taken at once (the callback still runs
   * from the main loop), unless earlier calls wait: they come first. */
  g_mutex_lock (&self->mutex);
  first = g_queue_is_empty (&self->pending);
  g_mutex_unlock (&self->mutex);

  if (first)
    {
      value = _mpg_channel_receive (fd, self->max_message_size, 0, NULL, NULL, &error);
      if (value != NULL)
        {
          g_task_return_pointer (task, value, (GDestroyNotify) g_variant_unref);
          return;
        }
      if (!g_error_matches (error, MPG_ERROR, MPG_ERROR_TIMEOUT))
        {
          g_task_return_error (task, g_steal_pointer (&error));
          return;
        }
    }

  g_mutex_lock (&self->mutex);

  if (g_atomic_int_get (&self->fd) < 0)
    {
      g_mutex_unlock (&self->mutex);
      g_task_return_new_error (task, MPG_ERROR, MPG_ERROR_CLOSED, "The connection is closed");
      return;
    }

  data->fd_source = g_unix_fd_source_new (fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_task_attach_source (task, data->fd_source, (GSourceFunc) recv_on_readable);

  if (cancellable != NULL)
    {
      data->cancel_source = g_cancellable_source_new (cancellable);
      g_task_attach_source (task, data->cancel_source, (GSourceFunc) recv_on_cancelled);
    }

  g_queue_push_tail (&self->pending, g_steal_pointer (&task));

  g_mutex_unlock (&self->mutex);
}

/**
 * mpg_connection_recv_finish:
 * @self: a connection
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Connection.recv_async]. Fails as
 * [method@Mpg.Connection.recv], with %G_IO_ERROR_CANCELLED if the call was
 * cancelled, and %MPG_ERROR_CLOSED if the connection was closed meanwhile.
 *
 * Returns: (transfer full): the message, or %NULL on error
 *
 * Since: 0.1
 */
GVariant *
mpg_connection_recv_finish (MpgConnection  *self,
                            GAsyncResult   *result,
                            GError        **error)
{
  g_return_val_if_fail (MPG_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == mpg_connection_recv_async, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
close_internal (MpgConnection *self,
                gboolean       notify)
{
  GQueue pending = G_QUEUE_INIT;
  GTask *task;
  int fd;

  g_mutex_lock (&self->mutex);
  fd = g_atomic_int_exchange (&self->fd, -1);
  pending = self->pending;
  g_queue_init (&self->pending);
  /* Stop watching before the fd number can be reused. */
  for (GList *l = pending.head; l != NULL; l = l->next)
    recv_data_clear_sources (g_task_get_task_data (l->data));
  if (fd >= 0)
    close (fd);
  g_mutex_unlock (&self->mutex);

  /* Callbacks may run from here on: the object is consistent. */
  while ((task = g_queue_pop_head (&pending)) != NULL)
    recv_complete (task, NULL, g_error_new_literal (MPG_ERROR, MPG_ERROR_CLOSED,
                                                    "The connection was closed"));

  if (fd >= 0 && notify)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CLOSED]);
}

/**
 * mpg_connection_close:
 * @self: a connection
 *
 * Closes this end, as Python's `close()`. Once every copy of it (in forked
 * children, or passed as a handle) is closed too, the other end sees the
 * end of the stream. Pending [method@Mpg.Connection.recv_async] calls
 * complete with %MPG_ERROR_CLOSED; later calls fail so. Closing twice is
 * harmless. Finalising a connection closes it.
 *
 * Since: 0.1
 */
void
mpg_connection_close (MpgConnection *self)
{
  g_return_if_fail (MPG_IS_CONNECTION (self));

  /* A completed task may drop the caller's last reference. */
  g_object_ref (self);
  close_internal (self, TRUE);
  g_object_unref (self);
}

/**
 * mpg_connection_to_handle:
 * @self: a connection
 * @fd_list: the list to which the connection's socket is added (a copy of it)
 * @error: return location for a #GError
 *
 * Describes this end so that another process can use it, as pickling a
 * `Connection` does in Python: send the handle and @fd_list with
 * [method@Mpg.Connection.send_with_fds] (or with a queue), and the receiver
 * rebuilds the end with [ctor@Mpg.Connection.new_from_handle].
 *
 * The handle is a value of type `(hbb)`: the index of the socket in
 * @fd_list, and whether the end is readable and writable. @self stays
 * open: close it if only the other process should use the end.
 *
 * Returns: (transfer full): the handle, or %NULL if the connection is
 *   closed (%MPG_ERROR_CLOSED) or @fd_list is full
 *
 * Since: 0.1
 */
GVariant *
mpg_connection_to_handle (MpgConnection  *self,
                          GUnixFDList    *fd_list,
                          GError        **error)
{
  int index;
  int fd;

  g_return_val_if_fail (MPG_IS_CONNECTION (self), NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  fd = check_usable (self, FALSE, FALSE, error);
  if (fd < 0)
    return NULL;

  index = g_unix_fd_list_append (fd_list, fd, error);
  if (index < 0)
    return NULL;

  return g_variant_ref_sink (g_variant_new (HANDLE_TYPE, index, self->readable, self->writable));
}

/**
 * mpg_connection_new_from_handle:
 * @handle: a handle made by [method@Mpg.Connection.to_handle]; a floating
 *   reference is sunk
 * @fd_list: the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds a connection end from a handle, typically one received from
 * another process with [method@Mpg.Connection.recv_with_fds]. The new
 * connection has its own copy of the socket: @fd_list keeps its own.
 *
 * As the handle may come from an untrusted peer, it is checked: it must be
 * of type `(hbb)`, with an index into @fd_list, at least one of readable
 * and writable, and name an `AF_UNIX` `SOCK_SEQPACKET` socket. Otherwise
 * this fails with %MPG_ERROR_PROTOCOL.
 *
 * Returns: (transfer full): the connection, or %NULL on error
 *
 * Since: 0.1
 */
MpgConnection *
mpg_connection_new_from_handle (GVariant      *handle,
                                GUnixFDList   *fd_list,
                                GError       **error)
{
  g_autoptr(GVariant) owned = NULL;
  gint32 index;
  gboolean readable, writable;
  int type = 0, domain = 0;
  socklen_t len;
  int fd;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  owned = g_variant_ref_sink (handle);

  if (!g_variant_is_of_type (owned, G_VARIANT_TYPE (HANDLE_TYPE)))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "A connection handle must be of type %s, not %s",
                   HANDLE_TYPE, g_variant_get_type_string (owned));
      return NULL;
    }

  g_variant_get (owned, HANDLE_TYPE, &index, &readable, &writable);

  if (index < 0 || index >= g_unix_fd_list_get_length (fd_list))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "Connection handle %d is not an index into its %d file descriptors",
                   index, g_unix_fd_list_get_length (fd_list));
      return NULL;
    }

  if (!readable && !writable)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A connection handle must be readable, writable or both");
      return NULL;
    }

  /* Any other kind of fd would break the message framing, or block. */
  fd = g_unix_fd_list_peek_fds (fd_list, NULL)[index];
  len = sizeof type;
  if (getsockopt (fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A connection handle must name a SOCK_SEQPACKET socket");
      return NULL;
    }
  len = sizeof domain;
  if (getsockopt (fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_UNIX)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A connection handle must name an AF_UNIX socket");
      return NULL;
    }

  fd = g_unix_fd_list_get (fd_list, index, error);
  if (fd < 0)
    return NULL;

  return connection_new (fd, readable, writable);
}
