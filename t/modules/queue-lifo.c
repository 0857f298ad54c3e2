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

/* The state: a stack of items (GQueue, head = newest). */
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

/* A new item: on top. Remember its list link, for remove(). */
static void
lifo_enqueue(gpointer state, KrQueueItem *item)
{
    GQueue *q = state;
    g_queue_push_head(q, item);
    item->policy_data = q->head;
}

/* The next delivery: the newest item, or NULL if there is none. */
static KrQueueItem *
lifo_pick(gpointer state)
{
    KrQueueItem *item = g_queue_pop_head(state);
    if (item)
        item->policy_data = NULL;
    return item;
}

/* An item left before it was picked (held, deleted). */
static void
lifo_remove(gpointer state, KrQueueItem *item)
{
    if (item->policy_data)
        g_queue_delete_link(state, item->policy_data);
    item->policy_data = NULL;
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
