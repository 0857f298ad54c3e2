/* SPDX-License-Identifier: MIT */
/*
 * kr-worker.c - the worker thread pool for blocking work.
 *
 *   kr_worker_run(work, done, data)  public, see kr-worker.h
 *   kr_worker_init(n)                start the pool (lazily n=8 otherwise)
 *   kr_worker_drain()                wait until no work is queued or running
 *
 * Completion: done(data) always runs on the thread iterating the global
 * default main context (the event loop), never in the worker. Finished
 * items are queued and one eventfd source on that context runs them in
 * the order they finished; a burst of completions wakes the loop once.
 */
#include "kr-internal.h"
#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct {
    KrWorkFunc work;
    KrWorkFunc done;
    gpointer data;
} WorkItem;

static GThreadPool *pool;
static GMutex lock; /* outstanding, drain_waiters */
static GCond idle_cond;
static guint outstanding;
static guint drain_waiters;

/* Finished items wait in done_q for the loop. A worker writes the
 * eventfd only when the queue goes from empty to non-empty, so a burst
 * of completions costs one wakeup of the loop, which then runs every
 * done() in the queue, in the order the work finished. The source is
 * ready whenever the queue is not empty (prepare/check look), so a done()
 * that iterates the loop itself still gets later completions. */
static GMutex done_lock;
static GQueue done_q = G_QUEUE_INIT;
static int done_fd = -1;

typedef struct {
    GSource base;
    gpointer tag; /* the eventfd's poll tag */
} DoneSource;

static gboolean
done_pending(void)
{
    g_mutex_lock(&done_lock);
    gboolean any = !g_queue_is_empty(&done_q);
    g_mutex_unlock(&done_lock);
    return any;
}

static gboolean
done_prepare(GSource *src, gint *timeout)
{
    *timeout = -1;
    return done_pending();
}

static gboolean
done_check(GSource *src)
{
    DoneSource *ds = (DoneSource *)src;
    if (g_source_query_unix_fd(src, ds->tag) & G_IO_IN) {
        guint64 v;
        if (read(done_fd, &v, sizeof v) < 0 && errno != EAGAIN)
            g_warning("worker completion eventfd: %s", g_strerror(errno));
    }
    return done_pending();
}

static gboolean
done_dispatch(GSource *src, GSourceFunc cb, gpointer ud)
{
    for (;;) {
        g_mutex_lock(&done_lock);
        WorkItem *w = g_queue_pop_head(&done_q);
        g_mutex_unlock(&done_lock);
        if (!w)
            break;
        if (w->done)
            w->done(w->data);
        g_free(w);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs done_funcs = {
    .prepare = done_prepare,
    .check = done_check,
    .dispatch = done_dispatch,
};

static void
run_work(gpointer p, gpointer unused)
{
    WorkItem *w = p;
    w->work(w->data);
    g_mutex_lock(&done_lock);
    gboolean wake = g_queue_is_empty(&done_q);
    g_queue_push_tail(&done_q, w);
    g_mutex_unlock(&done_lock);
    if (wake) {
        guint64 one = 1;
        while (write(done_fd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
    g_mutex_lock(&lock);
    outstanding--;
    if (drain_waiters > 0)
        g_cond_broadcast(&idle_cond);
    g_mutex_unlock(&lock);
}

void
kr_worker_init(guint n_threads)
{
    if (pool)
        return;
    done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (done_fd < 0)
        g_error("cannot create the worker completion eventfd: %s", g_strerror(errno));
    GSource *src = g_source_new(&done_funcs, sizeof(DoneSource));
    ((DoneSource *)src)->tag = g_source_add_unix_fd(src, done_fd, G_IO_IN);
    g_source_set_can_recurse(src, TRUE);
    g_source_set_name(src, "kurir worker completions");
    g_source_attach(src, NULL);
    g_source_unref(src);
    pool = g_thread_pool_new(run_work, NULL, (gint)n_threads, FALSE, NULL);
}

void
kr_worker_run(KrWorkFunc work, KrWorkFunc done, gpointer data)
{
    if (!pool)
        kr_worker_init(8);
    WorkItem *w = g_new(WorkItem, 1);
    w->work = work;
    w->done = done;
    w->data = data;
    g_mutex_lock(&lock);
    outstanding++;
    g_mutex_unlock(&lock);
    g_thread_pool_push(pool, w, NULL);
}

void
kr_worker_drain(void)
{
    g_mutex_lock(&lock);
    drain_waiters++;
    while (outstanding > 0)
        g_cond_wait(&idle_cond, &lock);
    drain_waiters--;
    g_mutex_unlock(&lock);
}
