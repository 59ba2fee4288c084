/* mandelbrot.c: a GTK 4 application that renders the Mandelbrot set in
 * tiles through a pool of worker processes
 *
 * The view is cut into 64×64 tiles; mpg_pool_map_async() computes them in
 * the pool's workers (one tile per chunk) while the main loop goes on: a
 * progress bar follows the pool's "progress" signal, Cancel cancels the
 * call's GCancellable, and zooming or changing the number of workers while
 * a map runs cancels it and starts the next one. A single-process baseline
 * renders the same view in a thread, with the same per-pixel code, to
 * compare speeds (and, in the self-test, pixels).
 *
 * Everything the window does is an action of the application (app.zoom,
 * app.zoom-out, app.home, app.cancel, app.set-workers, app.baseline,
 * app.screenshot), so that --self-test DIR can drive the application as a
 * user would, check what happened, save a screenshot in DIR and exit with
 * 0 only if every check passed (tests/gtk runs it under Xvfb).
 * --benchmark N prints the tiles per second of one and two threads (the
 * baseline, and what the machine gives two threads) and of pools of 1
 * and 2 workers, N renders each.
 *
 * Build it with -rdynamic (meson: export_dynamic): the workers find
 * mandelbrot_tile() by its name.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>

#include <gtk/gtk.h>
#include <libmpg.h>

#define IMAGE_WIDTH  640
#define IMAGE_HEIGHT 480
#define TILE_SIZE    64
#define MAX_ITER     1500

/* The home view: the whole set. */
#define HOME_X     -0.6
#define HOME_Y     0.0
#define HOME_SCALE (3.2 / IMAGE_WIDTH)

/* A double has 53 bits: closer than this, neighbouring pixels merge. */
#define MIN_SCALE 1e-14
#define MAX_SCALE (4.0 / IMAGE_WIDTH)

/* One tile, as a pool item: the view (centre x and y, scale in units per
 * pixel, image width and height, iteration limit), then the tile's
 * rectangle in the image (x, y, width, height). */
#define TILE_TYPE "(ddduuuuuuu)"

/* Pixels and tiles: the code the workers, the baseline and the self-test share */

typedef struct
{
  double x;
  double y;
  double scale;
  guint  width;
  guint  height;
  guint  max_iter;
} View;

typedef struct
{
  guint x;
  guint y;
  guint width;
  guint height;
} TileRect;

static gboolean
view_equal (const View *a,
            const View *b)
{
  return a->x == b->x && a->y == b->y && a->scale == b->scale &&
         a->width == b->width && a->height == b->height && a->max_iter == b->max_iter;
}

static guint
view_n_tiles (const View *view)
{
  return ((view->width + TILE_SIZE - 1) / TILE_SIZE) * ((view->height + TILE_SIZE - 1) / TILE_SIZE);
}

static void
view_get_tile (const View *view,
               guint       index,
               TileRect   *rect)
{
  guint columns = (view->width + TILE_SIZE - 1) / TILE_SIZE;

  rect->x = (index % columns) * TILE_SIZE;
  rect->y = (index / columns) * TILE_SIZE;
  rect->width = MIN (TILE_SIZE, view->width - rect->x);
  rect->height = MIN (TILE_SIZE, view->height - rect->y);
}

/* How many steps of z ← z² + c stay within |z| ≤ 2, up to max_iter. */
static guint
mandelbrot_iterations (double cr,
                       double ci,
                       guint  max_iter)
{
  double zr = 0.0, zi = 0.0, zr2 = 0.0, zi2 = 0.0;
  guint n = 0;

  while (n < max_iter && zr2 + zi2 <= 4.0)
    {
      zi = 2.0 * zr * zi + ci;
      zr = zr2 - zi2 + cr;
      zr2 = zr * zr;
      zi2 = zi * zi;
      n++;
    }

  return n;
}

/* Colour bands that repeat every 64 iterations, interpolated between a few
 * stops in integers; points of the set are black. */
static void
iterations_to_rgb (guint   n,
                   guint   max_iter,
                   guint8 *rgb)
{
  static const struct { guint at; guint8 rgb[3]; } stops[] = {
    {  0, {   8,  16,  80 } },
    { 16, {  40, 110, 200 } },
    { 30, { 230, 245, 255 } },
    { 40, { 250, 175,  30 } },
    { 52, { 110,  40,  10 } },
    { 64, {   8,  16,  80 } },
  };
  guint phase = n % 64;
  guint i = 0;

  if (n >= max_iter)
    {
      rgb[0] = rgb[1] = rgb[2] = 0;
      return;
    }

  while (stops[i + 1].at < phase)
    i++;

  for (guint c = 0; c < 3; c++)
    {
      int from = stops[i].rgb[c], to = stops[i + 1].rgb[c];
      int span = stops[i + 1].at - stops[i].at;

      rgb[c] = from + (to - from) * (int) (phase - stops[i].at) / span;
    }
}

/* Renders @rect of @view as RGB bytes into @out, rows @stride bytes apart.
 * The workers, the single-process baseline and the self-test all call
 * this: their images are the same bytes. */
static void
render_tile (const View     *view,
             const TileRect *rect,
             guint8         *out,
             gsize           stride)
{
  for (guint row = 0; row < rect->height; row++)
    {
      guint8 *pixel = out + row * stride;
      /* Rows go down, the imaginary axis goes up. */
      double ci = view->y - ((rect->y + row + 0.5) - view->height / 2.0) * view->scale;

      for (guint column = 0; column < rect->width; column++, pixel += 3)
        {
          double cr = view->x + ((rect->x + column + 0.5) - view->width / 2.0) * view->scale;

          iterations_to_rgb (mandelbrot_iterations (cr, ci, view->max_iter), view->max_iter, pixel);
        }
    }
}

/* The pool's task. Not static: spawned workers and the forkserver find it
 * by its name, in the program's exported symbols. */
GVariant *mandelbrot_tile (GVariant  *tile,
                           gpointer   user_data,
                           GError   **error);

GVariant *
mandelbrot_tile (GVariant  *tile,
                 gpointer   user_data,
                 GError   **error)
{
  View view;
  TileRect rect;
  guint8 *pixels;
  gsize size;

  if (!g_variant_is_of_type (tile, G_VARIANT_TYPE (TILE_TYPE)))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "A tile is a %s, not a %s", TILE_TYPE, g_variant_get_type_string (tile));
      return NULL;
    }

  g_variant_get (tile, TILE_TYPE, &view.x, &view.y, &view.scale, &view.width, &view.height,
                 &view.max_iter, &rect.x, &rect.y, &rect.width, &rect.height);
  if (rect.width == 0 || rect.width > TILE_SIZE || rect.height == 0 || rect.height > TILE_SIZE ||
      rect.x >= view.width || rect.width > view.width - rect.x ||
      rect.y >= view.height || rect.height > view.height - rect.y)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "The tile is not inside the image");
      return NULL;
    }

  size = (gsize) rect.width * rect.height * 3;
  pixels = g_malloc (size);
  render_tile (&view, &rect, pixels, rect.width * 3);

  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, pixels, size, TRUE, g_free, pixels);
}

/* The application */

#define MANDELBROT_TYPE_APP (mandelbrot_app_get_type ())
G_DECLARE_FINAL_TYPE (MandelbrotApp, mandelbrot_app, MANDELBROT, APP, GtkApplication)

/* One map of the pool over the tiles of a view. */
typedef struct
{
  MandelbrotApp *app;          /* not a reference: shutdown waits for every map */
  View           view;
  GCancellable  *cancellable;
  gint64         started;      /* monotonic µs */
  gint64         finished;     /* monotonic µs, 0 while running */
  guint          done;         /* tiles, as the progress signal said */
  guint          total;
  guint          workers;
  GError        *error;        /* how it ended, when it failed */
  gboolean       drawn;
} Render;

static void
render_clear (gpointer data)
{
  Render *render = data;

  g_clear_object (&render->cancellable);
  g_clear_error (&render->error);
}

static Render *
render_ref (Render *render)
{
  return g_rc_box_acquire (render);
}

static void
render_unref (Render *render)
{
  g_rc_box_release_full (render, render_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Render, render_unref)

/* A baseline render, in a thread of its own. */
typedef struct
{
  View    view;
  guint8 *pixels;
  gint64  elapsed;   /* µs */
} BaselineJob;

static void
baseline_job_free (gpointer data)
{
  BaselineJob *job = data;

  g_free (job->pixels);
  g_free (job);
}

struct _MandelbrotApp
{
  GtkApplication  parent_instance;

  /* The window and the widgets that change: the window owns them, and
   * these are cleared when it is destroyed (maps and the baseline may
   * still finish after that, while the application shuts down). */
  GtkWindow      *window;
  GtkPicture     *picture;
  GtkProgressBar *progress_bar;
  GtkLabel       *rates_label;
  GtkLabel       *status_label;
  GtkSpinButton  *workers_spin;

  View            view;          /* the view asked for last */
  guint8         *pixels;        /* the image shown, IMAGE_WIDTH × IMAGE_HEIGHT RGB */
  View            shown_view;    /* the view of pixels */

  MpgPool        *pool;
  guint           workers;
  guint           tile_function;
  Render         *current;       /* the map running, if any */
  double          pool_rate;     /* tiles/s of the last complete map */
  guint           pool_rate_workers;
  guint           n_pending;     /* maps, baselines and retired pools still to finish */

  GCancellable   *baseline_cancellable;   /* while the baseline runs */
  guint8         *baseline_pixels;
  View            baseline_view;
  double          baseline_rate;
  guint           baselines_done;

  /* Command line */
  char           *self_test_dir;
  int             benchmark_runs;
  int             exit_status;

  /* What the self-test and the benchmark look at */
  GPtrArray      *renders;       /* every Render, in order */
  char           *screenshot_path;       /* while a screenshot waits for a frame */
  gulong          after_paint_id;
  GError         *screenshot_error;
  guint           screenshots;
};

G_DEFINE_FINAL_TYPE (MandelbrotApp, mandelbrot_app, GTK_TYPE_APPLICATION)

static void start_render (MandelbrotApp *self);

static void
set_action_enabled (MandelbrotApp *self,
                    const char    *name,
                    gboolean       enabled)
{
  GAction *action = g_action_map_lookup_action (G_ACTION_MAP (self), name);

  g_simple_action_set_enabled (G_SIMPLE_ACTION (action), enabled);
}

static void
update_rates (MandelbrotApp *self)
{
  g_autofree char *pool_text = NULL;
  g_autofree char *baseline_text = NULL;
  g_autofree char *text = NULL;
  Render *render = self->current;

  if (self->rates_label == NULL)
    return;

  if (render != NULL && render->done > 0)
    {
      double seconds = (g_get_monotonic_time () - render->started) / 1e6;

      pool_text = g_strdup_printf ("Pool of %u: %.0f tiles/s", render->workers,
                                   render->done / MAX (seconds, 1e-6));
    }
  else if (self->pool_rate > 0)
    pool_text = g_strdup_printf ("Pool of %u: %.0f tiles/s", self->pool_rate_workers, self->pool_rate);
  else
    pool_text = g_strdup ("Pool: –");

  if (self->baseline_cancellable != NULL)
    baseline_text = g_strdup ("one process: measuring…");
  else if (self->baseline_rate > 0)
    baseline_text = g_strdup_printf ("one process: %.0f tiles/s", self->baseline_rate);
  else
    baseline_text = g_strdup ("one process: –");

  text = g_strdup_printf ("%s · %s", pool_text, baseline_text);
  gtk_label_set_text (self->rates_label, text);
}

/* Moves the progress bar to @fraction (unless negative) and shows @text. */
static void
set_progress (MandelbrotApp *self,
              double         fraction,
              const char    *text)
{
  if (self->progress_bar == NULL)
    return;

  if (fraction >= 0.0)
    gtk_progress_bar_set_fraction (self->progress_bar, fraction);
  if (text != NULL)
    gtk_progress_bar_set_text (self->progress_bar, text);
}

static void
set_status (MandelbrotApp *self,
            const char    *text)
{
  if (self->status_label != NULL)
    gtk_label_set_text (self->status_label, text);
}

static void
show_pixels (MandelbrotApp *self)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GdkTexture) texture = NULL;

  if (self->picture == NULL)
    return;

  bytes = g_bytes_new (self->pixels, IMAGE_WIDTH * IMAGE_HEIGHT * 3);
  texture = gdk_memory_texture_new (IMAGE_WIDTH, IMAGE_HEIGHT, GDK_MEMORY_R8G8B8,
                                    bytes, IMAGE_WIDTH * 3);
  gtk_picture_set_paintable (self->picture, GDK_PAINTABLE (texture));
}

/* Copies the tiles of a finished map into the image, once all of them
 * have been checked: a bad reply leaves the image as it was. */
static gboolean
draw_tiles (MandelbrotApp  *self,
            const View     *view,
            GVariant       *tiles,
            GError        **error)
{
  guint n_tiles = view_n_tiles (view);

  if (!g_variant_is_of_type (tiles, G_VARIANT_TYPE ("aay")) || g_variant_n_children (tiles) != n_tiles)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "Expected %u tiles, got a %s", n_tiles, g_variant_get_type_string (tiles));
      return FALSE;
    }

  for (guint i = 0; i < n_tiles; i++)
    {
      g_autoptr(GVariant) tile = g_variant_get_child_value (tiles, i);
      TileRect rect;

      view_get_tile (view, i, &rect);
      if (g_variant_get_size (tile) != (gsize) rect.width * rect.height * 3)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "Tile %u has %" G_GSIZE_FORMAT " bytes", i, g_variant_get_size (tile));
          return FALSE;
        }
    }

  for (guint i = 0; i < n_tiles; i++)
    {
      g_autoptr(GVariant) tile = g_variant_get_child_value (tiles, i);
      const guint8 *data;
      TileRect rect;
      gsize size;

      view_get_tile (view, i, &rect);
      data = g_variant_get_fixed_array (tile, &size, 1);
      for (guint row = 0; row < rect.height; row++)
        memcpy (self->pixels + ((gsize) (rect.y + row) * IMAGE_WIDTH + rect.x) * 3,
                data + (gsize) row * rect.width * 3, rect.width * 3);
    }

  self->shown_view = *view;
  show_pixels (self);
  return TRUE;
}

static void
progress_cb (MpgPool      *pool,
             GAsyncResult *call,
             guint         done,
             guint         total,
             gpointer      user_data)
{
  MandelbrotApp *self = user_data;
  Render *render = g_async_result_get_user_data (call);

  /* A map that was cancelled may still report a chunk that finished
   * before the cancellation: the bar stops where it was cancelled. */
  if (render != self->current || g_cancellable_is_cancelled (render->cancellable))
    return;

  render->done = done;
  render->total = total;
  set_progress (self, (double) done / total, NULL);
  update_rates (self);
}

static void
render_done_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(Render) render = user_data;
  MandelbrotApp *self = render->app;
  g_autoptr(GVariant) tiles = NULL;
  g_autofree char *text = NULL;

  tiles = mpg_pool_map_finish (MPG_POOL (object), result, &render->error);
  render->finished = g_get_monotonic_time ();
  self->n_pending--;

  if (tiles != NULL && draw_tiles (self, &render->view, tiles, &render->error))
    {
      render->drawn = TRUE;
      self->pool_rate = render->total / ((render->finished - render->started) / 1e6);
      self->pool_rate_workers = render->workers;
    }

  /* A render that was replaced leaves the bar and the labels to the next. */
  if (render != self->current)
    return;

  g_clear_pointer (&self->current, render_unref);
  set_action_enabled (self, "cancel", FALSE);

  if (render->error == NULL)
    {
      text = g_strdup_printf ("%u tiles in %.0f ms", render->total,
                              (render->finished - render->started) / 1e3);
      set_progress (self, 1.0, text);
    }
  else if (g_error_matches (render->error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    set_progress (self, -1.0, "Cancelled");
  else
    {
      text = g_strdup_printf ("Failed: %s", render->error->message);
      set_progress (self, -1.0, text);
      set_status (self, text);
    }

  update_rates (self);
}

/* Cancels the map running, if any. Its callback still comes, with
 * G_IO_ERROR_CANCELLED, and draws nothing. */
static void
cancel_render (MandelbrotApp *self)
{
  if (self->current != NULL)
    g_cancellable_cancel (self->current->cancellable);
}

static void
start_render (MandelbrotApp *self)
{
  g_autoptr(Render) render = NULL;
  GVariantBuilder items;

  cancel_render (self);
  g_clear_pointer (&self->current, render_unref);

  render = g_rc_box_new0 (Render);
  render->app = self;
  render->view = self->view;
  render->cancellable = g_cancellable_new ();
  render->total = view_n_tiles (&render->view);
  render->workers = self->workers;
  render->started = g_get_monotonic_time ();

  g_variant_builder_init (&items, G_VARIANT_TYPE ("a" TILE_TYPE));
  for (guint i = 0; i < render->total; i++)
    {
      TileRect rect;

      view_get_tile (&render->view, i, &rect);
      g_variant_builder_add (&items, TILE_TYPE, render->view.x, render->view.y, render->view.scale,
                             render->view.width, render->view.height, render->view.max_iter,
                             rect.x, rect.y, rect.width, rect.height);
    }

  if (self->renders != NULL)
    g_ptr_array_add (self->renders, render_ref (render));
  self->current = render_ref (render);
  self->n_pending++;

  /* One tile per chunk: the progress bar moves tile by tile, and the
   * tiles that take longer (deep inside the set) spread over the workers. */
  mpg_pool_map_async (self->pool, self->tile_function, g_variant_builder_end (&items), 1,
                      render->cancellable, render_done_cb, render_ref (render));

  set_action_enabled (self, "cancel", TRUE);
  set_progress (self, 0.0, "Rendering…");
  update_rates (self);
}

static void
pool_joined_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  MandelbrotApp *self = MANDELBROT_APP (object);
  g_autoptr(GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    g_warning ("A pool's workers did not exit: %s", error->message);
  self->n_pending--;
}

static void
join_pool_thread (GTask        *task,
                  gpointer      source_object,
                  gpointer      task_data,
                  GCancellable *cancellable)
{
  GError *error = NULL;

  if (mpg_pool_join (task_data, 5000, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/* Replaces the pool with one of @workers workers. The old pool is
 * terminated, and joined in a thread: reaping its workers is quick, but
 * the main loop waits for nothing. */
static void
set_pool (MandelbrotApp *self,
          guint          workers)
{
  if (self->pool != NULL)
    {
      g_autoptr(GTask) task = g_task_new (self, NULL, pool_joined_cb, NULL);

      cancel_render (self);
      g_signal_handlers_disconnect_by_data (self->pool, self);
      mpg_pool_terminate (self->pool);
      g_task_set_task_data (task, g_steal_pointer (&self->pool), g_object_unref);
      self->n_pending++;
      g_task_run_in_thread (task, join_pool_thread);
    }

  self->workers = workers;
  self->pool = mpg_pool_new (workers);
  /* Named, so that it works with spawn and forkserver: the workers are
   * other programs (this one, started again), not copies of this process. */
  self->tile_function = mpg_pool_add_named_function (self->pool, "mandelbrot_tile");
  g_signal_connect (self->pool, "progress", G_CALLBACK (progress_cb), self);
}

/* Terminates and joins the pool, waiting at most a few seconds. */
static void
stop_pool (MandelbrotApp *self)
{
  g_autoptr(GError) error = NULL;

  if (self->pool == NULL)
    return;

  cancel_render (self);
  g_signal_handlers_disconnect_by_data (self->pool, self);
  mpg_pool_terminate (self->pool);
  if (!mpg_pool_join (self->pool, 5000, &error))
    g_warning ("The pool's workers did not exit: %s", error->message);
  g_clear_object (&self->pool);
}

/* Actions */

static void
zoom_activated (GSimpleAction *action,
                GVariant      *parameter,
                gpointer       user_data)
{
  MandelbrotApp *self = user_data;
  double x, y, factor, scale;

  g_variant_get (parameter, "(ddd)", &x, &y, &factor);
  if (!isfinite (x) || !isfinite (y) || !isfinite (factor) || factor <= 0.0)
    return;

  scale = CLAMP (self->view.scale / factor, MIN_SCALE, MAX_SCALE);
  self->view.x = x;
  self->view.y = y;
  self->view.scale = scale;
  start_render (self);
}

static void
zoom_out_activated (GSimpleAction *action,
                    GVariant      *parameter,
                    gpointer       user_data)
{
  MandelbrotApp *self = user_data;

  g_action_group_activate_action (G_ACTION_GROUP (self), "zoom",
                                  g_variant_new ("(ddd)", self->view.x, self->view.y, 0.5));
}

static void
home_activated (GSimpleAction *action,
                GVariant      *parameter,
                gpointer       user_data)
{
  MandelbrotApp *self = user_data;

  self->view.x = HOME_X;
  self->view.y = HOME_Y;
  self->view.scale = HOME_SCALE;
  start_render (self);
}

static void
cancel_activated (GSimpleAction *action,
                  GVariant      *parameter,
                  gpointer       user_data)
{
  cancel_render (user_data);
}

static void
set_workers_activated (GSimpleAction *action,
                       GVariant      *parameter,
                       gpointer       user_data)
{
  MandelbrotApp *self = user_data;
  guint workers = g_variant_get_uint32 (parameter);

  if (workers < 1 || workers > 64 || workers == self->workers)
    return;

  /* The running map belongs to the old pool: set_pool() cancels it; the
   * view is rendered again with the new pool, which also shows its speed. */
  set_pool (self, workers);
  g_simple_action_set_state (action, parameter);
  if (self->workers_spin != NULL)
    gtk_spin_button_set_value (self->workers_spin, workers);
  start_render (self);
}

static void
baseline_done_cb (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  MandelbrotApp *self = MANDELBROT_APP (object);
  BaselineJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr(GError) error = NULL;

  self->n_pending--;
  g_clear_object (&self->baseline_cancellable);
  set_action_enabled (self, "baseline", TRUE);

  if (g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_free (self->baseline_pixels);
      self->baseline_pixels = g_steal_pointer (&job->pixels);
      self->baseline_view = job->view;
      self->baseline_rate = view_n_tiles (&job->view) / (job->elapsed / 1e6);
      self->baselines_done++;
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    set_status (self, error->message);

  update_rates (self);
}

/* The single-process baseline: the same tiles, one after the other, in a
 * thread (a GTask's), so that the window goes on while it runs. */
static void
baseline_thread (GTask        *task,
                 gpointer      source_object,
                 gpointer      task_data,
                 GCancellable *cancellable)
{
  BaselineJob *job = task_data;
  guint n_tiles = view_n_tiles (&job->view);
  gint64 start = g_get_monotonic_time ();

  for (guint i = 0; i < n_tiles; i++)
    {
      TileRect rect;

      if (g_task_return_error_if_cancelled (task))
        return;

      view_get_tile (&job->view, i, &rect);
      render_tile (&job->view, &rect,
                   job->pixels + ((gsize) rect.y * job->view.width + rect.x) * 3,
                   job->view.width * 3);
    }

  job->elapsed = g_get_monotonic_time () - start;
  g_task_return_boolean (task, TRUE);
}

static void
baseline_activated (GSimpleAction *action,
                    GVariant      *parameter,
                    gpointer       user_data)
{
  MandelbrotApp *self = user_data;
  g_autoptr(GTask) task = NULL;
  BaselineJob *job;

  if (self->baseline_cancellable != NULL)
    return;

  job = g_new0 (BaselineJob, 1);
  job->view = self->view;
  job->pixels = g_malloc ((gsize) job->view.width * job->view.height * 3);

  self->baseline_cancellable = g_cancellable_new ();
  task = g_task_new (self, self->baseline_cancellable, baseline_done_cb, NULL);
  g_task_set_task_data (task, job, baseline_job_free);
  self->n_pending++;
  g_task_run_in_thread (task, baseline_thread);

  set_action_enabled (self, "baseline", FALSE);
  update_rates (self);
}

/* Draws the whole window into a PNG: the render nodes of the frame just
 * drawn, rendered again by the window's own renderer into a texture. */
static gboolean
save_screenshot (MandelbrotApp  *self,
                 const char     *path,
                 GError        **error)
{
  GtkWidget *widget = GTK_WIDGET (self->window);
  g_autoptr(GdkPaintable) paintable = NULL;
  g_autoptr(GskRenderNode) node = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  GtkSnapshot *snapshot;
  graphene_rect_t bounds;
  int width, height;

  /* The paintable's size, not the widget's: it also covers the window's
   * frame, and drawing it at another size would scale the image. */
  paintable = gtk_widget_paintable_new (widget);
  width = gdk_paintable_get_intrinsic_width (paintable);
  height = gdk_paintable_get_intrinsic_height (paintable);
  snapshot = gtk_snapshot_new ();
  gdk_paintable_snapshot (paintable, snapshot, width, height);
  node = gtk_snapshot_free_to_node (snapshot);
  if (node == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "The window drew nothing");
      return FALSE;
    }

  graphene_rect_init (&bounds, 0, 0, width, height);
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (self->window)),
                                         node, &bounds);
  if (!gdk_texture_save_to_png (texture, path))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "Could not write %s", path);
      return FALSE;
    }

  return TRUE;
}

static void
screenshot_finish (MandelbrotApp *self,
                   GError        *error)
{
  g_autofree char *path = g_steal_pointer (&self->screenshot_path);
  g_autofree char *text = NULL;

  g_clear_error (&self->screenshot_error);
  self->screenshot_error = error;
  if (error == NULL)
    text = g_strdup_printf ("Saved %s", path);
  else
    text = g_strdup_printf ("Screenshot failed: %s", error->message);
  self->screenshots++;
  set_status (self, text);
}

static void
after_paint_cb (GdkFrameClock *clock,
                gpointer       user_data)
{
  MandelbrotApp *self = user_data;
  GError *error = NULL;

  g_clear_signal_handler (&self->after_paint_id, clock);
  save_screenshot (self, self->screenshot_path, &error);
  screenshot_finish (self, error);
}

static void
screenshot_activated (GSimpleAction *action,
                      GVariant      *parameter,
                      gpointer       user_data)
{
  MandelbrotApp *self = user_data;
  const char *path = g_variant_get_string (parameter, NULL);

  if (self->screenshot_path != NULL)
    return;

  /* The button passes "": a file in the pictures folder. */
  if (path[0] != '\0')
    self->screenshot_path = g_strdup (path);
  else
    {
      const char *dir = g_get_user_special_dir (G_USER_DIRECTORY_PICTURES);
      g_autofree char *name = g_strdup_printf ("mandelbrot-%" G_GINT64_FORMAT ".png",
                                               g_get_real_time () / G_USEC_PER_SEC);

      self->screenshot_path = g_build_filename (dir != NULL ? dir : g_get_home_dir (), name, NULL);
    }

  if (self->window == NULL || !gtk_widget_get_mapped (GTK_WIDGET (self->window)))
    {
      screenshot_finish (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED,
                                                    "The window is not shown"));
      return;
    }

  /* A widget keeps the render nodes it drew in the last frame, until
   * something in it changes. Draw a frame, and take the picture right
   * after it, when every widget's nodes are there. */
  self->after_paint_id = g_signal_connect (gtk_widget_get_frame_clock (GTK_WIDGET (self->window)),
                                           "after-paint", G_CALLBACK (after_paint_cb), self);
  gtk_widget_queue_draw (GTK_WIDGET (self->window));
}

static void
quit_activated (GSimpleAction *action,
                GVariant      *parameter,
                gpointer       user_data)
{
  g_application_quit (G_APPLICATION (user_data));
}

static const GActionEntry app_actions[] = {
  { .name = "zoom", .activate = zoom_activated, .parameter_type = "(ddd)" },
  { .name = "zoom-out", .activate = zoom_out_activated },
  { .name = "home", .activate = home_activated },
  { .name = "cancel", .activate = cancel_activated },
  { .name = "set-workers", .activate = set_workers_activated, .parameter_type = "u", .state = "uint32 1" },
  { .name = "baseline", .activate = baseline_activated },
  { .name = "screenshot", .activate = screenshot_activated, .parameter_type = "s" },
  { .name = "quit", .activate = quit_activated },
};

/* The window */

static void
picture_pressed_cb (GtkGestureClick *gesture,
                    int              n_press,
                    double           x,
                    double           y,
                    gpointer         user_data)
{
  MandelbrotApp *self = user_data;
  guint button = gtk_gesture_single_get_current_button (GTK_GESTURE_SINGLE (gesture));
  const View *view = &self->shown_view;
  double cx, cy;

  /* The picture is shown at its size, one pixel per pixel: the point
   * clicked is where it is in the image shown. */
  cx = view->x + (x - view->width / 2.0) * view->scale;
  cy = view->y - (y - view->height / 2.0) * view->scale;
  g_action_group_activate_action (G_ACTION_GROUP (self), "zoom",
                                  g_variant_new ("(ddd)", cx, cy,
                                                 button == GDK_BUTTON_SECONDARY ? 0.5 : 2.0));
}

static void
workers_changed_cb (GtkSpinButton *spin,
                    gpointer       user_data)
{
  MandelbrotApp *self = user_data;
  guint workers = gtk_spin_button_get_value_as_int (spin);

  if (workers != self->workers)
    g_action_group_activate_action (G_ACTION_GROUP (self), "set-workers",
                                    g_variant_new_uint32 (workers));
}

/* A button with an icon, or a label when @icon_name is NULL. */
static GtkWidget *
button_new (const char *icon_name,
            const char *label,
            const char *action_name,
            const char *tooltip)
{
  GtkWidget *button = icon_name != NULL ? gtk_button_new_from_icon_name (icon_name)
                                        : gtk_button_new_with_label (label);

  gtk_actionable_set_action_name (GTK_ACTIONABLE (button), action_name);
  gtk_widget_set_tooltip_text (button, tooltip);
  return button;
}

static void
window_destroyed_cb (GtkWidget *window,
                     gpointer   user_data)
{
  MandelbrotApp *self = user_data;

  self->window = NULL;
  self->picture = NULL;
  self->progress_bar = NULL;
  self->rates_label = NULL;
  self->status_label = NULL;
  self->workers_spin = NULL;
}

static void
create_window (MandelbrotApp *self)
{
  GtkWidget *window, *header, *box, *bottom, *row, *spin, *screenshot;
  GtkGesture *click;

  window = gtk_application_window_new (GTK_APPLICATION (self));
  gtk_window_set_title (GTK_WINDOW (window), "Mandelbrot");
  self->window = GTK_WINDOW (window);
  g_signal_connect (window, "destroy", G_CALLBACK (window_destroyed_cb), self);

  header = gtk_header_bar_new ();
  gtk_header_bar_pack_start (GTK_HEADER_BAR (header),
                             button_new ("zoom-out-symbolic", NULL, "app.zoom-out", "Zoom out ×2 (or right-click)"));
  gtk_header_bar_pack_start (GTK_HEADER_BAR (header),
                             button_new ("go-home-symbolic", NULL, "app.home", "The whole set"));
  gtk_header_bar_pack_start (GTK_HEADER_BAR (header),
                             button_new ("process-stop-symbolic", NULL, "app.cancel", "Stop rendering (Escape)"));
  screenshot = button_new ("camera-photo-symbolic", NULL, "app.screenshot",
                           "Save the window as a PNG in the pictures folder");
  gtk_actionable_set_action_target (GTK_ACTIONABLE (screenshot), "s", "");
  gtk_header_bar_pack_end (GTK_HEADER_BAR (header), screenshot);
  gtk_window_set_titlebar (GTK_WINDOW (window), header);

  box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_window_set_child (GTK_WINDOW (window), box);

  /* Centred, and not shrinkable: the picture gets the image's size, so it
   * is shown one pixel per pixel and a click maps to a pixel. */
  self->picture = GTK_PICTURE (gtk_picture_new ());
  gtk_picture_set_can_shrink (self->picture, FALSE);
  gtk_widget_set_halign (GTK_WIDGET (self->picture), GTK_ALIGN_CENTER);
  gtk_widget_set_valign (GTK_WIDGET (self->picture), GTK_ALIGN_CENTER);
  gtk_widget_set_vexpand (GTK_WIDGET (self->picture), TRUE);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->picture), "Click: zoom in ×2 there; right-click: zoom out");
  click = gtk_gesture_click_new ();
  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (click), 0);
  g_signal_connect (click, "pressed", G_CALLBACK (picture_pressed_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self->picture), GTK_EVENT_CONTROLLER (click));
  gtk_box_append (GTK_BOX (box), GTK_WIDGET (self->picture));
  show_pixels (self);

  bottom = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_margin_start (bottom, 8);
  gtk_widget_set_margin_end (bottom, 8);
  gtk_widget_set_margin_bottom (bottom, 8);
  gtk_box_append (GTK_BOX (box), bottom);

  self->progress_bar = GTK_PROGRESS_BAR (gtk_progress_bar_new ());
  gtk_progress_bar_set_show_text (self->progress_bar, TRUE);
  gtk_box_append (GTK_BOX (bottom), GTK_WIDGET (self->progress_bar));

  row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  gtk_box_append (GTK_BOX (bottom), row);
  self->rates_label = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->rates_label, 0.0);
  gtk_label_set_ellipsize (self->rates_label, PANGO_ELLIPSIZE_END);
  gtk_widget_set_hexpand (GTK_WIDGET (self->rates_label), TRUE);
  gtk_box_append (GTK_BOX (row), GTK_WIDGET (self->rates_label));
  gtk_box_append (GTK_BOX (row), gtk_label_new ("Workers"));
  spin = gtk_spin_button_new_with_range (1, MAX (2 * mpg_cpu_count (), 4), 1);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (spin), self->workers);
  gtk_widget_set_tooltip_text (spin, "Worker processes of the pool");
  g_signal_connect (spin, "value-changed", G_CALLBACK (workers_changed_cb), self);
  self->workers_spin = GTK_SPIN_BUTTON (spin);
  gtk_box_append (GTK_BOX (row), spin);
  gtk_box_append (GTK_BOX (row), button_new (NULL, "Baseline", "app.baseline",
                                             "Render the view in one process, to compare"));

  self->status_label = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->status_label, 0.0);
  gtk_label_set_ellipsize (self->status_label, PANGO_ELLIPSIZE_MIDDLE);
  gtk_box_append (GTK_BOX (bottom), GTK_WIDGET (self->status_label));

  update_rates (self);
}

static void run_self_test (gpointer user_data);
static void run_benchmark (gpointer user_data);

static void
mandelbrot_app_activate (GApplication *app)
{
  MandelbrotApp *self = MANDELBROT_APP (app);

  if (self->window != NULL)
    {
      gtk_window_present (self->window);
      return;
    }

  create_window (self);
  gtk_window_present (self->window);
  /* Not the spin button's text: typing there is not the first thing to do. */
  gtk_window_set_focus (self->window, NULL);
  start_render (self);

  if (self->self_test_dir != NULL)
    g_idle_add_once (run_self_test, self);
  else if (self->benchmark_runs > 0)
    g_idle_add_once (run_benchmark, self);
}

static void
mandelbrot_app_startup (GApplication *app)
{
  MandelbrotApp *self = MANDELBROT_APP (app);
  static const char *quit_accels[] = { "<Control>q", NULL };
  static const char *zoom_out_accels[] = { "minus", NULL };
  static const char *cancel_accels[] = { "Escape", NULL };
  GAction *action;

  G_APPLICATION_CLASS (mandelbrot_app_parent_class)->startup (app);

  g_action_map_add_action_entries (G_ACTION_MAP (self), app_actions, G_N_ELEMENTS (app_actions), self);
  action = g_action_map_lookup_action (G_ACTION_MAP (self), "set-workers");
  g_simple_action_set_state (G_SIMPLE_ACTION (action), g_variant_new_uint32 (self->workers));
  set_action_enabled (self, "cancel", FALSE);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.quit", quit_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.zoom-out", zoom_out_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.cancel", cancel_accels);

  set_pool (self, self->workers);
}

static void
mandelbrot_app_shutdown (GApplication *app)
{
  MandelbrotApp *self = MANDELBROT_APP (app);
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  if (self->baseline_cancellable != NULL)
    g_cancellable_cancel (self->baseline_cancellable);
  stop_pool (self);

  /* Let the callbacks of the cancelled map, the baseline and the old
   * pools' joins come, so that nothing is left running or referenced. */
  while (self->n_pending > 0 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);

  G_APPLICATION_CLASS (mandelbrot_app_parent_class)->shutdown (app);
}

static int
mandelbrot_app_handle_local_options (GApplication *app,
                                     GVariantDict *options)
{
  MandelbrotApp *self = MANDELBROT_APP (app);
  const char *method = NULL;
  gint workers = 0;

  if (g_variant_dict_lookup (options, "workers", "i", &workers))
    {
      if (workers < 1 || workers > 64)
        {
          g_printerr ("--workers: between 1 and 64\n");
          return 2;
        }
      self->workers = workers;
    }

  if (g_variant_dict_lookup (options, "start-method", "&s", &method))
    {
      if (g_str_equal (method, "spawn"))
        mpg_set_start_method (MPG_START_METHOD_SPAWN);
      else if (g_str_equal (method, "forkserver"))
        mpg_set_start_method (MPG_START_METHOD_FORKSERVER);
      else
        {
          /* fork is not offered: see main(). */
          g_printerr ("--start-method: spawn or forkserver\n");
          return 2;
        }
    }

  g_variant_dict_lookup (options, "self-test", "^ay", &self->self_test_dir);
  g_variant_dict_lookup (options, "benchmark", "i", &self->benchmark_runs);
  if (self->self_test_dir != NULL || self->benchmark_runs > 0)
    {
      /* A run of its own, even if the application already runs. */
      g_application_set_flags (app, g_application_get_flags (app) | G_APPLICATION_NON_UNIQUE);
      self->renders = g_ptr_array_new_with_free_func ((GDestroyNotify) render_unref);
    }

  return -1;
}

static void
mandelbrot_app_finalize (GObject *object)
{
  MandelbrotApp *self = MANDELBROT_APP (object);

  g_clear_pointer (&self->current, render_unref);
  g_clear_object (&self->pool);
  g_clear_object (&self->baseline_cancellable);
  g_clear_pointer (&self->pixels, g_free);
  g_clear_pointer (&self->baseline_pixels, g_free);
  g_clear_pointer (&self->self_test_dir, g_free);
  g_clear_pointer (&self->renders, g_ptr_array_unref);
  g_clear_pointer (&self->screenshot_path, g_free);
  g_clear_error (&self->screenshot_error);

  G_OBJECT_CLASS (mandelbrot_app_parent_class)->finalize (object);
}

static void
mandelbrot_app_class_init (MandelbrotAppClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  object_class->finalize = mandelbrot_app_finalize;
  app_class->startup = mandelbrot_app_startup;
  app_class->activate = mandelbrot_app_activate;
  app_class->shutdown = mandelbrot_app_shutdown;
  app_class->handle_local_options = mandelbrot_app_handle_local_options;
}

static void
mandelbrot_app_init (MandelbrotApp *self)
{
  static const GOptionEntry options[] = {
    { "workers", 'w', 0, G_OPTION_ARG_INT, NULL, "Worker processes (default: one per CPU)", "N" },
    { "start-method", 0, 0, G_OPTION_ARG_STRING, NULL,
      "How workers start: forkserver (default) or spawn", "METHOD" },
    { "self-test", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      "Drive the window through its actions, check the results, save a screenshot in DIR, and exit", "DIR" },
    { "benchmark", 0, 0, G_OPTION_ARG_INT, NULL,
      "Print the tiles per second of 1 and 2 threads and of pools of 1 and 2 workers, N renders each, and exit",
      "N" },
    { NULL }
  };

  self->workers = CLAMP (mpg_cpu_count (), 1, 64);
  self->view = (View) { HOME_X, HOME_Y, HOME_SCALE, IMAGE_WIDTH, IMAGE_HEIGHT, MAX_ITER };
  self->shown_view = self->view;
  self->pixels = g_malloc0 (IMAGE_WIDTH * IMAGE_HEIGHT * 3);

  g_application_add_main_option_entries (G_APPLICATION (self), options);
}

/* The self-test and the benchmark
 *
 * They run inside the application, from an idle callback, and do what a
 * user does: activate the application's actions. Waiting for what comes
 * next iterates the main context (with a deadline), as GTK's own tests do,
 * so that the window, the pool's callbacks and a 10 ms timer all go on. */

typedef struct
{
  MandelbrotApp *app;
  guint          n_checks;
  guint          n_failed;
  /* The 10 ms timer */
  guint          ticks;
  gint64         last_tick;
  gint64         longest_gap;
  gint64         ticks_since;
} SelfTest;

static void check (SelfTest   *t,
                   gboolean    ok,
                   const char *format,
                   ...) G_GNUC_PRINTF (3, 4);

static void
check (SelfTest   *t,
       gboolean    ok,
       const char *format,
       ...)
{
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  t->n_checks++;
  if (!ok)
    t->n_failed++;
  g_print ("%s %u - %s\n", ok ? "ok" : "not ok", t->n_checks, text);
}

static gboolean
tick_cb (gpointer user_data)
{
  SelfTest *t = user_data;
  gint64 now = g_get_monotonic_time ();

  t->longest_gap = MAX (t->longest_gap, now - t->last_tick);
  t->last_tick = now;
  t->ticks++;
  return G_SOURCE_CONTINUE;
}

static void
reset_ticks (SelfTest *t)
{
  t->ticks = 0;
  t->longest_gap = 0;
  t->last_tick = t->ticks_since = g_get_monotonic_time ();
}

/* Checks that the 10 ms timer ticked through the step: at least half of
 * the ticks expected, and no gap of a quarter of a second. */
static void
check_ticks (SelfTest   *t,
             const char *what)
{
  gint64 elapsed = g_get_monotonic_time () - t->ticks_since;
  guint expected = elapsed / 10000;

  check (t, t->ticks * 2 >= expected && t->longest_gap < 250000,
         "the main loop never froze during %s: a 10 ms timer ticked %u times in %.0f ms "
         "(%u expected), longest gap %.1f ms",
         what, t->ticks, elapsed / 1e3, expected, t->longest_gap / 1e3);
}

typedef gboolean (*Condition) (MandelbrotApp *self,
                               gconstpointer  data);

static gboolean
wake_cb (gpointer user_data)
{
  return G_SOURCE_CONTINUE;
}

/* Iterates the main context until @condition holds, for @timeout_ms at
 * most. A timer wakes the loop up to see the deadline if nothing else does. */
static gboolean
wait_until (MandelbrotApp *self,
            Condition      condition,
            gconstpointer  data,
            guint          timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  guint wake_id = g_timeout_add (50, wake_cb, NULL);
  gboolean ok;

  while (!(ok = condition (self, data)) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);

  g_source_remove (wake_id);
  return ok;
}

static gboolean
render_is_finished (MandelbrotApp *self,
                    gconstpointer  data)
{
  const Render *render = data;

  return render->finished != 0;
}

static gboolean
render_has_progress (MandelbrotApp *self,
                     gconstpointer  data)
{
  const Render *render = data;

  return render->done > 0 || render->finished != 0;
}

static gboolean
baseline_is_done (MandelbrotApp *self,
                  gconstpointer  data)
{
  return self->baselines_done > GPOINTER_TO_UINT (data);
}

static gboolean
window_is_mapped (MandelbrotApp *self,
                  gconstpointer  data)
{
  return self->window != NULL && gtk_widget_get_mapped (GTK_WIDGET (self->window));
}

static gboolean
screenshot_is_done (MandelbrotApp *self,
                    gconstpointer  data)
{
  return self->screenshots > 0;
}

static gboolean
time_has_come (MandelbrotApp *self,
               gconstpointer  data)
{
  const gint64 *deadline = data;

  return g_get_monotonic_time () >= *deadline;
}

static Render *
last_render (MandelbrotApp *self)
{
  return g_ptr_array_index (self->renders, self->renders->len - 1);
}

static void
zoom (MandelbrotApp *self,
      double         x,
      double         y,
      double         factor)
{
  g_action_group_activate_action (G_ACTION_GROUP (self), "zoom", g_variant_new ("(ddd)", x, y, factor));
}

static gboolean
is_cancelled (const Render *render)
{
  return g_error_matches (render->error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

static const char *
describe_error (const Render *render)
{
  if (render->finished == 0)
    return "still running";
  return render->error != NULL ? render->error->message : "completed";
}

/* Runs a map, and while it runs (after its first tile) does @interrupt:
 * checks that the map was cancelled and that the next one completed. */
static void
check_interrupted_render (SelfTest   *t,
                          const char *what,
                          void      (*interrupt) (MandelbrotApp *self))
{
  MandelbrotApp *self = t->app;
  Render *old = last_render (self);
  Render *next;

  wait_until (self, render_has_progress, old, 10000);
  check (t, old->finished == 0 && old->done > 0 && old->done < old->total,
         "%s: a map is running (%u of %u tiles done)", what, old->done, old->total);

  interrupt (self);
  next = last_render (self);
  wait_until (self, render_is_finished, next, 30000);
  wait_until (self, render_is_finished, old, 5000);

  check (t, is_cancelled (old) && !old->drawn,
         "%s: the running map's callback got G_IO_ERROR_CANCELLED and drew nothing (%s)",
         what, describe_error (old));
  check (t, next != old && next->error == NULL && next->drawn &&
         view_equal (&self->shown_view, &next->view),
         "%s: the next map completed in %.0f ms and is shown (%s)",
         what, (next->finished - next->started) / 1e3, describe_error (next));
}

static void
zoom_in_again (MandelbrotApp *self)
{
  zoom (self, -0.74529, 0.11307, 2.0);
}

static void
use_one_worker (MandelbrotApp *self)
{
  g_action_group_activate_action (G_ACTION_GROUP (self), "set-workers", g_variant_new_uint32 (1));
}

static guint
count_colours (GdkTexture *texture)
{
  int width = gdk_texture_get_width (texture);
  int height = gdk_texture_get_height (texture);
  g_autofree guint32 *data = g_new (guint32, (gsize) width * height);
  g_autoptr(GHashTable) colours = g_hash_table_new (NULL, NULL);

  gdk_texture_download (texture, (guchar *) data, width * 4);
  for (gsize i = 0; i < (gsize) width * height; i++)
    g_hash_table_add (colours, GUINT_TO_POINTER (data[i]));

  return g_hash_table_size (colours);
}

static void
run_self_test (gpointer user_data)
{
  MandelbrotApp *self = user_data;
  SelfTest t = { .app = self };
  g_autofree char *png = g_build_filename (self->self_test_dir, "gtk-demo.png", NULL);
  g_autoptr(GArray) pids = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  Render *render;
  gint64 deadline, cancelled_at;
  double fraction;
  guint identical = 0, n_tiles, baselines, gone = 0;
  guint tick_id;

  g_print ("# libmpg GTK demo self-test: %u workers, %s\n", self->workers,
           mpg_get_start_method () == MPG_START_METHOD_SPAWN ? "spawn" : "forkserver");
  reset_ticks (&t);
  tick_id = g_timeout_add (10, tick_cb, &t);

  /* 1. The first render, started when the window opened. */
  check (&t, wait_until (self, window_is_mapped, NULL, 10000), "the window is shown");
  render = last_render (self);
  wait_until (self, render_is_finished, render, 60000);
  check (&t, render->error == NULL && render->drawn,
         "the first map completed in %.0f ms, workers' start included (%s)",
         (render->finished - render->started) / 1e3, describe_error (render));
  check_ticks (&t, "the first map");

  /* 2. A zoom while a map runs: the map is cancelled, the next one
   * completes. Then the same with a change of the number of workers,
   * which also replaces the pool; and back to two workers. */
  reset_ticks (&t);
  zoom (self, -0.745, 0.113, 4.0);
  check_interrupted_render (&t, "zoom during a map", zoom_in_again);
  check_ticks (&t, "the maps of the zoom");

  reset_ticks (&t);
  zoom (self, -0.7453, 0.1127, 2.0);
  check_interrupted_render (&t, "workers changed during a map", use_one_worker);
  check (&t, self->pool != NULL && mpg_pool_get_processes (self->pool) == 1,
         "the new pool has 1 worker");
  g_action_group_activate_action (G_ACTION_GROUP (self), "set-workers", g_variant_new_uint32 (2));
  render = last_render (self);
  wait_until (self, render_is_finished, render, 30000);
  check (&t, render->error == NULL && render->drawn,
         "a pool of 2 workers again renders the view (%s)", describe_error (render));
  check_ticks (&t, "the maps of the worker changes");

  /* 3. Cancel during a map: it ends with CANCELLED at once, and the
   * progress bar stays where it was. */
  g_action_group_activate_action (G_ACTION_GROUP (self), "zoom-out", NULL);
  render = last_render (self);
  wait_until (self, render_has_progress, render, 10000);
  check (&t, render->finished == 0, "cancel: a map is running (%u of %u tiles done)",
         render->done, render->total);
  cancelled_at = g_get_monotonic_time ();
  g_action_group_activate_action (G_ACTION_GROUP (self), "cancel", NULL);
  fraction = gtk_progress_bar_get_fraction (self->progress_bar);
  wait_until (self, render_is_finished, render, 5000);
  check (&t, is_cancelled (render) && !render->drawn && render->finished - cancelled_at < 500000,
         "cancel: the map ended with G_IO_ERROR_CANCELLED %.1f ms after the cancel (%s)",
         (render->finished - cancelled_at) / 1e3, describe_error (render));
  deadline = g_get_monotonic_time () + 300000;
  wait_until (self, time_has_come, &deadline, 1000);
  check (&t, gtk_progress_bar_get_fraction (self->progress_bar) == fraction && fraction < 1.0 &&
         g_strcmp0 (gtk_progress_bar_get_text (self->progress_bar), "Cancelled") == 0,
         "cancel: the progress bar stopped at %.0f %% and says \"%s\"",
         100 * gtk_progress_bar_get_fraction (self->progress_bar),
         gtk_progress_bar_get_text (self->progress_bar));

  /* 4. One more zoom; then the same view in one process: the same bytes. */
  zoom (self, -0.74515, 0.11295, 4.0);
  render = last_render (self);
  wait_until (self, render_is_finished, render, 30000);
  check (&t, render->error == NULL && render->drawn,
         "a zoom after the cancel completed in %.0f ms (%s)",
         (render->finished - render->started) / 1e3, describe_error (render));
  baselines = self->baselines_done;
  g_action_group_activate_action (G_ACTION_GROUP (self), "baseline", NULL);
  check (&t, wait_until (self, baseline_is_done, GUINT_TO_POINTER (baselines), 60000) &&
         view_equal (&self->baseline_view, &self->shown_view),
         "the single-process baseline rendered the view shown");
  n_tiles = view_n_tiles (&self->shown_view);
  for (guint i = 0; i < n_tiles && self->baseline_pixels != NULL; i++)
    {
      TileRect rect;
      gboolean same = TRUE;

      view_get_tile (&self->shown_view, i, &rect);
      for (guint row = 0; row < rect.height && same; row++)
        {
          gsize offset = ((gsize) (rect.y + row) * IMAGE_WIDTH + rect.x) * 3;

          same = memcmp (self->pixels + offset, self->baseline_pixels + offset, rect.width * 3) == 0;
        }
      identical += same;
    }
  check (&t, identical == n_tiles, "%u of %u tiles of the pool's image are byte for byte the baseline's",
         identical, n_tiles);
  g_print ("# this view: pool of %u %.0f tiles/s, single process %.0f tiles/s\n",
           render->workers, self->pool_rate, self->baseline_rate);

  /* 5. A screenshot of the window, which must not be blank. */
  g_action_group_activate_action (G_ACTION_GROUP (self), "screenshot", g_variant_new_string (png));
  wait_until (self, screenshot_is_done, NULL, 10000);
  check (&t, self->screenshots == 1 && self->screenshot_error == NULL, "screenshot saved to %s%s%s", png,
         self->screenshot_error != NULL ? ": " : "",
         self->screenshot_error != NULL ? self->screenshot_error->message : "");
  texture = gdk_texture_new_from_filename (png, &error);
  if (texture != NULL)
    {
      guint colours = count_colours (texture);

      check (&t, gdk_texture_get_width (texture) >= IMAGE_WIDTH &&
             gdk_texture_get_height (texture) >= IMAGE_HEIGHT && colours >= 16,
             "the screenshot is %d×%d with %u distinct colours",
             gdk_texture_get_width (texture), gdk_texture_get_height (texture), colours);
    }
  else
    check (&t, FALSE, "the screenshot can be read: %s", error->message);

  /* 6. No worker is left once the pool is terminated and joined, as
   * quitting does. */
  pids = mpg_pool_dup_worker_pids (self->pool);
  stop_pool (self);
  for (guint i = 0; i < pids->len; i++)
    gone += kill (g_array_index (pids, GPid, i), 0) == -1 && errno == ESRCH;
  check (&t, pids->len > 0 && gone == pids->len,
         "%u of the pool's %u workers are gone after terminate and join", gone, pids->len);

  g_source_remove (tick_id);
  g_print ("1..%u\n", t.n_checks);
  g_print ("# %s: %u of %u checks failed\n", t.n_failed == 0 ? "PASS" : "FAIL", t.n_failed, t.n_checks);
  self->exit_status = t.n_failed == 0 ? 0 : 1;
  g_application_quit (G_APPLICATION (self));
}

static int
compare_doubles (gconstpointer a,
                 gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static double
median (GArray *values)
{
  g_array_sort (values, compare_doubles);
  return values->len > 0 ? g_array_index (values, double, values->len / 2) : 0.0;
}

/* Renders the view once more with @workers workers, and returns its tiles
 * per second; a first render after a change of pool starts its workers
 * and is not counted. */
static double
measure_pool (MandelbrotApp *self,
              guint          workers)
{
  Render *render;

  if (workers != self->workers)
    {
      g_action_group_activate_action (G_ACTION_GROUP (self), "set-workers", g_variant_new_uint32 (workers));
      wait_until (self, render_is_finished, last_render (self), 60000);
    }

  zoom (self, self->view.x, self->view.y, 1.0);
  render = last_render (self);
  wait_until (self, render_is_finished, render, 60000);
  if (!render->drawn)
    return 0.0;

  return render->total / ((render->finished - render->started) / 1e6);
}

static void
thread_done_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  guint *running = user_data;

  (*running)--;
}

static gboolean
threads_are_done (MandelbrotApp *self,
                  gconstpointer  data)
{
  const guint *running = data;

  return *running == 0;
}

/* Renders the view in @n_threads threads of this process at once, each
 * the whole view as the baseline does, and returns the tiles per second
 * of all of them together: what the machine gives to as many threads. */
static double
measure_threads (MandelbrotApp *self,
                 guint          n_threads)
{
  gint64 start = g_get_monotonic_time ();
  guint running = n_threads;

  for (guint i = 0; i < n_threads; i++)
    {
      g_autoptr(GTask) task = g_task_new (NULL, NULL, thread_done_cb, &running);
      BaselineJob *job = g_new0 (BaselineJob, 1);

      job->view = self->view;
      job->pixels = g_malloc ((gsize) job->view.width * job->view.height * 3);
      g_task_set_task_data (task, job, baseline_job_free);
      g_task_run_in_thread (task, baseline_thread);
    }
  wait_until (self, threads_are_done, &running, 120000);

  return n_threads * view_n_tiles (&self->view) / ((g_get_monotonic_time () - start) / 1e6);
}

static void
run_benchmark (gpointer user_data)
{
  MandelbrotApp *self = user_data;
  g_autoptr(GArray) thread1 = g_array_new (FALSE, FALSE, sizeof (double));
  g_autoptr(GArray) thread2 = g_array_new (FALSE, FALSE, sizeof (double));
  g_autoptr(GArray) pool1 = g_array_new (FALSE, FALSE, sizeof (double));
  g_autoptr(GArray) pool2 = g_array_new (FALSE, FALSE, sizeof (double));
  double one;

  wait_until (self, render_is_finished, last_render (self), 60000);

  /* In turns, so that the other work of a busy machine weighs on all of
   * them alike. */
  for (int i = 0; i < self->benchmark_runs; i++)
    {
      double rate;

      rate = measure_threads (self, 1);
      g_array_append_val (thread1, rate);
      rate = measure_threads (self, 2);
      g_array_append_val (thread2, rate);
      rate = measure_pool (self, 1);
      g_array_append_val (pool1, rate);
      rate = measure_pool (self, 2);
      g_array_append_val (pool2, rate);
    }

  one = median (thread1);
  g_print ("The whole set, %u×%u pixels in %u tiles of %u×%u, up to %u iterations a pixel.\n"
           "Tiles per second (median of %d runs), and the ratio to one thread:\n",
           IMAGE_WIDTH, IMAGE_HEIGHT, view_n_tiles (&self->view), TILE_SIZE, TILE_SIZE, MAX_ITER,
           self->benchmark_runs);
  g_print ("  one process, 1 thread (the baseline)  %6.0f\n", one);
  g_print ("  one process, 2 threads at once        %6.0f  (%.2f×)\n", median (thread2), median (thread2) / one);
  g_print ("  pool of 1 worker                      %6.0f  (%.2f×)\n", median (pool1), median (pool1) / one);
  g_print ("  pool of 2 workers                     %6.0f  (%.2f×)\n", median (pool2), median (pool2) / one);

  g_application_quit (G_APPLICATION (self));
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(MandelbrotApp) app = NULL;
  int status;

  /* A spawned worker, or the forkserver, is this program started again:
   * mpg_init() makes it run its tasks, and it never returns from here. */
  mpg_init (&argc, &argv);

  /* A GTK application has threads (GLib's, the GL driver's, GTask's…),
   * so a fork() of it could copy a lock that another thread holds, and
   * hang in the child. Workers start from a fresh program instead.
   * forkserver rather than spawn: the server is started (executed) once,
   * and each worker is a fork of that small single-threaded server, which
   * is cheaper than executing a GTK program again whenever the number of
   * workers changes. */
  mpg_set_start_method (MPG_START_METHOD_FORKSERVER);

  app = g_object_new (MANDELBROT_TYPE_APP,
                      "application-id", "org.gnome.libmpg.Mandelbrot",
                      NULL);
  status = g_application_run (G_APPLICATION (app), argc, argv);

  return status != 0 ? status : app->exit_status;
}
