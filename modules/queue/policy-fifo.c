/* SPDX-License-Identifier: MIT */
/*
 * policy-fifo.c - the `fifo` queue policy: oldest message first.
 *
 * Items are kept sorted by (arrival, queue ID), so the message that has
 * waited longest is delivered first, whatever its destination, and
 * whether it is a first attempt or a retry. One slow destination can hold
 * every delivery slot; use `fair` when that matters.
 *
 *   queue_policy_fifo        the KrQueuePolicy registered as "fifo"
 *   queue_item_cmp(a, b)     (arrival, queue ID) order, shared with `fair`
 *
 * policy_data of a queued item is its GSequenceIter.
 */
#include "queue.h"

int
queue_item_cmp(const KrQueueItem *a, const KrQueueItem *b)
{
    if (a->arrival != b->arrival)
        return a->arrival < b->arrival ? -1 : 1;
    int c = strcmp(a->queue_id, b->queue_id);
    if (c)
        return c;
    /* Several items of one message: keep them apart, stable by address. */
    return a < b ? -1 : a > b ? 1 : 0;
}

static gint
seq_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    return queue_item_cmp(a, b);
}

static gpointer
fifo_create(void)
{
    return g_sequence_new(NULL);
}

static void
fifo_destroy(gpointer state)
{
    g_sequence_free(state);
}

static void
fifo_enqueue(gpointer state, KrQueueItem *item)
{
    item->policy_data = g_sequence_insert_sorted(state, item, seq_cmp, NULL);
}

static KrQueueItem *
fifo_pick(gpointer state)
{
    GSequenceIter *it = g_sequence_get_begin_iter(state);
    if (g_sequence_iter_is_end(it))
        return NULL;
    KrQueueItem *item = g_sequence_get(it);
    g_sequence_remove(it);
    item->policy_data = NULL;
    return item;
}

static void
fifo_remove(gpointer state, KrQueueItem *item)
{
    if (item->policy_data)
        g_sequence_remove(item->policy_data);
    item->policy_data = NULL;
}

static void
fifo_result(gpointer state, const char *destination, KrDeliveryResult result)
{
}

const KrQueuePolicy queue_policy_fifo = {
    .struct_size = sizeof(KrQueuePolicy),
    .name = "fifo",
    .summary = "oldest message first",
    .create = fifo_create,
    .destroy = fifo_destroy,
    .enqueue = fifo_enqueue,
    .pick = fifo_pick,
    .remove = fifo_remove,
    .result = fifo_result,
};
