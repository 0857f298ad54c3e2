/* SPDX-License-Identifier: MIT */
/*
 * test-worker.c - the worker pool (core/kr-worker.c): work runs off the
 * loop, every done() runs on the loop thread exactly once, a burst of
 * completions is all delivered, done() may queue more work, a done()
 * that iterates the loop itself still gets later completions, and
 * kr_worker_drain waits for what is queued.
 */
#include "testlib.h"
#include <kurir/kr-worker.h>

/* from core/kr-internal.h */
void kr_worker_init(guint n_threads);
void kr_worker_drain(void);

typedef struct {
    guint index;
    GThread *work_thread;
    gboolean done_ran;
    guint done_count;
    GThread *done_thread;
} Item;

static GThread *loop_thread;
static guint dones;

static void
item_work(gpointer p)
{
    Item *it = p;
    it->work_thread = g_thread_self();
    if (it->index % 7 == 0)
        g_usleep(200); /* let completions overtake each other */
}

static void
item_done(gpointer p)
{
    Item *it = p;
    it->done_ran = TRUE;
    it->done_count++;
    it->done_thread = g_thread_self();
    dones++;
}

static void
iterate_until(guint *counter, guint want)
{
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (*counter < want && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
}

static void
test_burst(void)
{
    enum { N = 2000 };
    Item *items = g_new0(Item, N);
    dones = 0;
    for (guint i = 0; i < N; i++) {
        items[i].index = i;
        kr_worker_run(item_work, item_done, &items[i]);
    }
    iterate_until(&dones, N);
    g_assert_cmpuint(dones, ==, N);
    guint off_loop = 0;
    for (guint i = 0; i < N; i++) {
        g_assert_true(items[i].done_ran);
        g_assert_cmpuint(items[i].done_count, ==, 1);
        g_assert_true(items[i].done_thread == loop_thread);
        off_loop += items[i].work_thread != loop_thread;
    }
    g_assert_cmpuint(off_loop, ==, N);
    /* Nothing more arrives. */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_assert_cmpuint(dones, ==, N);
    g_free(items);
}

/* A done() that queues the next step: a chain of 100 hops. */
static guint chain_left;

static void
chain_work(gpointer p)
{
}

static void
chain_done(gpointer p)
{
    if (--chain_left > 0)
        kr_worker_run(chain_work, chain_done, NULL);
    dones++;
}

static void
test_chain(void)
{
    dones = 0;
    chain_left = 100;
    kr_worker_run(chain_work, chain_done, NULL);
    iterate_until(&dones, 100);
    g_assert_cmpuint(dones, ==, 100);
    g_assert_cmpuint(chain_left, ==, 0);
}

/* A done() that waits, in a nested loop iteration, for another
 * completion (as code waiting for an async commit would). */
static gboolean inner_done;

static void
inner_cb(gpointer p)
{
    inner_done = TRUE;
}

static void
outer_cb(gpointer p)
{
    kr_worker_run(chain_work, inner_cb, NULL);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!inner_done && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    dones++;
}

static void
test_nested(void)
{
    dones = 0;
    inner_done = FALSE;
    kr_worker_run(chain_work, outer_cb, NULL);
    iterate_until(&dones, 1);
    g_assert_true(inner_done);
    g_assert_cmpuint(dones, ==, 1);
}

/* kr_worker_drain: returns once every queued work function has run
 * (their done()s still wait for the loop). */
static gint slow_ran;

static void
count_done(gpointer p)
{
    dones++;
}

static void
slow_work(gpointer p)
{
    g_usleep(20000);
    g_atomic_int_inc(&slow_ran);
}

static void
test_drain(void)
{
    dones = 0;
    for (int i = 0; i < 20; i++)
        kr_worker_run(slow_work, count_done, NULL);
    kr_worker_drain();
    g_assert_cmpint(g_atomic_int_get(&slow_ran), ==, 20);
    g_assert_cmpuint(dones, ==, 0);
    iterate_until(&dones, 20);
    g_assert_cmpuint(dones, ==, 20);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    loop_thread = g_thread_self();
    kr_worker_init(4);
    g_test_add_func("/worker/burst", test_burst);
    g_test_add_func("/worker/chain", test_chain);
    g_test_add_func("/worker/nested", test_nested);
    g_test_add_func("/worker/drain", test_drain);
    return g_test_run();
}
