/* mpg-error.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(MPG_INSIDE) && !defined(MPG_COMPILATION)
# error "Only <libmpg.h> can be included directly."
#endif

#include <glib.h>

#include "mpg-version-macros.h"

G_BEGIN_DECLS

/**
 * MPG_ERROR:
 *
 * The error domain of libmpg's own errors; see [error@Mpg.Error].
 *
 * Since: 0.1
 */
#define MPG_ERROR (mpg_error_quark ())

/**
 * MpgError:
 * @MPG_ERROR_FAILED: a failure that no more specific code describes.
 * @MPG_ERROR_INVALID_STATE: the object is not in a state that allows the
 *   call: a process started twice, joined before it was started, closed
 *   while it still runs, or a property changed after start.
 * @MPG_ERROR_TIMEOUT: a blocking call's timeout expired before the awaited
 *   event happened.
 * @MPG_ERROR_CLOSED: the object was closed with a `close()` call and can no
 *   longer be used.
 * @MPG_ERROR_REMOTE: a task in another process failed with an error whose
 *   domain could not be recreated here (an implausible domain name, or too
 *   many distinct remote domains); the message starts with the remote
 *   domain's name and code (`"my-app-error-quark:3: …"`).
 * @MPG_ERROR_PROTOCOL: bytes received from another process were not a valid
 *   libmpg message (truncated, corrupt or of an unexpected type).
 * @MPG_ERROR_TOO_LARGE: a message exceeded the configured maximum size.
 * @MPG_ERROR_END_OF_STREAM: the other end of a channel is gone.
 * @MPG_ERROR_EMPTY: there was nothing to receive (Python's `queue.Empty`).
 * @MPG_ERROR_FULL: there was no room to send (Python's `queue.Full`).
 * @MPG_ERROR_WORKER_DIED: the process running a task died (killed by a
 *   signal, or exited) before it delivered a result.
 * @MPG_ERROR_UNKNOWN_TASK: a task could not be found by name in a worker.
 * @MPG_ERROR_BROKEN_BARRIER: a [class@Mpg.Barrier] is broken, or broke
 *   while waiting (Python's `threading.BrokenBarrierError`).
 *
 * Error codes of the [error@Mpg.Error] domain.
 *
 * Errors returned by a task running in another process are not wrapped:
 * they come back with their own domain, code and message. The domain is
 * found by its name (the quark's string), registering it if this process
 * has not used it yet, so that `g_error_matches()` works as if the error
 * had been raised locally. %MPG_ERROR_REMOTE is the fallback for domains
 * that cannot be recreated.
 *
 * Since: 0.1
 */
typedef enum
{
  MPG_ERROR_FAILED,
  MPG_ERROR_INVALID_STATE,
  MPG_ERROR_TIMEOUT,
  MPG_ERROR_CLOSED,
  MPG_ERROR_REMOTE,
  MPG_ERROR_PROTOCOL,
  MPG_ERROR_TOO_LARGE,
  MPG_ERROR_END_OF_STREAM,
  MPG_ERROR_EMPTY,
  MPG_ERROR_FULL,
  MPG_ERROR_WORKER_DIED,
  MPG_ERROR_UNKNOWN_TASK,
  MPG_ERROR_BROKEN_BARRIER,
} MpgError;

MPG_AVAILABLE_IN_ALL
GQuark mpg_error_quark (void);

G_END_DECLS
