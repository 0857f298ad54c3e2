/* SPDX-License-Identifier: MIT */
/*
 * queue-lifo.c - an example queue policy module: "lifo", newest message
 * first. The complete example of docs/queue-policies.md (which quotes
 * this file; t/queue-policy.py checks the two agree), built like any
 * third-party module and loaded by the policy tests.
 *
 * Enable:  modules = [ ..., "queue", "queue-lifo" ];
 *          queue = { policy = "lifo"; };
 */
#include <kurir/kurir.h>
#include <string.h>

/* The state: a list of items, newest first. (A list keeps the example
 * short; insertion is O(n). A real policy would use a GSequence.) */
static gpointer
lifo_create(void)
{
    return g_queue_new();
}

static void
lifo_destroy(gpointer state)
{
    g_queue_free(state);
}

/* Newer first: later arrival, then the later queue ID (IDs sort by time). */
static gint
newer_first(gconstpointer a, gconstpointer b, gpointer unused)
{
    const KrQueueItem *x = a, *y = b;
    if (x->arrival != y->arrival)
        return x->arrival > y->arrival ? -1 : 1;
    return -strcmp(x->queue_id, y->queue_id);
}

/* A new item (new mail, or a retry that is due): in its place. */
static void
lifo_enqueue(gpointer state, KrQueueItem *item)
{
    g_queue_insert_sorted(state, item, newer_first, NULL);
}

/* The next delivery: the newest item, or NULL if there is none. */
static KrQueueItem *
lifo_pick(gpointer state)
{
    return g_queue_pop_head(state);
}

/* An item left before it was picked (held, deleted). */
static void
lifo_remove(gpointer state, KrQueueItem *item)
{
    g_queue_remove(state, item);
}

/* How a delivery went. A smarter policy would slow down a destination
 * that keeps failing; this one does not care. */
static void
lifo_result(gpointer state, const char *destination, KrDeliveryResult result)
{
}

static const KrQueuePolicy lifo_policy = {
    .struct_size = sizeof(KrQueuePolicy),
    .name = "lifo",
    .summary = "newest message first (example)",
    .create = lifo_create,
    .destroy = lifo_destroy,
    .enqueue = lifo_enqueue,
    .pick = lifo_pick,
    .remove = lifo_remove,
    .result = lifo_result,
};

static gboolean
lifo_init(KrModule *mod, GError **error)
{
    return kr_register_queue_policy(mod, &lifo_policy, error);
}

KR_MODULE(queue_lifo, "queue-lifo", "1.0", "example queue policy: newest first", NULL, 0, lifo_init,
          NULL);
