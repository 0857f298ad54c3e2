/* SPDX-License-Identifier: MIT */
/*
 * kr-worker.c - the worker thread pool for blocking work.
 *
 *   kr_worker_run(work, done, data)  public, see kr-worker.h
 *   kr_worker_init(n)                start the pool (lazily n=8 otherwise)
 *   kr_worker_drain()                wait until no work is queued or running
 *
 * Completion: done(data) is attached to the default main context as an
 * idle source, so it always runs on the thread iterating that context
 * (the event loop), never in the worker.
 */
#include "kr-internal.h"

typedef struct {
    KrWorkFunc work;
    KrWorkFunc done;
    gpointer data;
} WorkItem;

static GThreadPool *pool;
static GMutex lock;
static GCond idle_cond;
static guint outstanding;

static gboolean
run_done(gpointer p)
{
    WorkItem *w = p;
    if (w->done)
        w->done(w->data);
    g_free(w);
    return G_SOURCE_REMOVE;
}

static void
run_work(gpointer p, gpointer unused)
{
    WorkItem *w = p;
    w->work(w->data);
    GSource *src = g_idle_source_new();
    g_source_set_priority(src, G_PRIORITY_DEFAULT);
    g_source_set_callback(src, run_done, w, NULL);
    g_source_attach(src, NULL);
    g_source_unref(src);
    g_mutex_lock(&lock);
    outstanding--;
    g_cond_broadcast(&idle_cond);
    g_mutex_unlock(&lock);
}

void
kr_worker_init(guint n_threads)
{
    if (pool)
        return;
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
    while (outstanding > 0)
        g_cond_wait(&idle_cond, &lock);
    g_mutex_unlock(&lock);
}
