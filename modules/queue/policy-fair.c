/* SPDX-License-Identifier: MIT */
/*
 * policy-fair.c - the `fair` queue policy: share the delivery slots
 * between destinations, so one slow or dead destination cannot starve
 * the rest.
 *
 * Each destination ("local:example.org", "smtp:example.net") has its own
 * list of items, oldest message first. pick() chooses, among the
 * destinations that have items, the one with the fewest deliveries
 * running; ties go round-robin (the destination served longest ago
 * wins). So when a slot frees up it goes to the least-served destination:
 * a slow destination keeps only the slots nobody else wants.
 *
 * A destination whose last delivery was deferred (temporary failure) is
 * "failing": it gets at most one delivery at a time until one succeeds
 * (the probe), so a dead destination ties up one slot, not all of them.
 * A destination is forgotten (failing state included) once it has
 * nothing queued and nothing running.
 *
 *   queue_policy_fair      the KrQueuePolicy registered as "fair"
 *
 * Cost: pick() scans the destinations that have queued items (usually a
 * handful); enqueue/remove are O(log n) in the destination's items.
 * policy_data of a queued item is its GSequenceIter.
 */
#include "queue.h"

typedef struct {
    char *name;
    GSequence *items; /* KrQueueItem *, queue_item_cmp order */
    guint running;
    gboolean failing;
    GList *link; /* in Fair.ring while it has items */
} Dest;

typedef struct {
    GHashTable *dests; /* name -> Dest */
    GQueue ring;       /* Dest * with items, least recently served first */
} Fair;

static gint
seq_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    return queue_item_cmp(a, b);
}

static void
dest_free(gpointer p)
{
    Dest *d = p;
    g_sequence_free(d->items);
    g_free(d->name);
    g_free(d);
}

static gpointer
fair_create(void)
{
    Fair *f = g_new0(Fair, 1);
    f->dests = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, dest_free);
    g_queue_init(&f->ring);
    return f;
}

static void
fair_destroy(gpointer state)
{
    Fair *f = state;
    g_queue_clear(&f->ring);
    g_hash_table_destroy(f->dests);
    g_free(f);
}

static void
dest_forget_if_idle(Fair *f, Dest *d)
{
    if (d->running == 0 && g_sequence_is_empty(d->items)) {
        if (d->link)
            g_queue_delete_link(&f->ring, d->link);
        g_hash_table_remove(f->dests, d->name);
    }
}

static void
fair_enqueue(gpointer state, KrQueueItem *item)
{
    Fair *f = state;
    const char *name = item->destination ? item->destination : "";
    Dest *d = g_hash_table_lookup(f->dests, name);
    if (!d) {
        d = g_new0(Dest, 1);
        d->name = g_strdup(name);
        d->items = g_sequence_new(NULL);
        g_hash_table_insert(f->dests, d->name, d);
    }
    item->policy_data = g_sequence_insert_sorted(d->items, item, seq_cmp, NULL);
    if (!d->link) {
        g_queue_push_tail(&f->ring, d);
        d->link = f->ring.tail;
    }
}

static KrQueueItem *
fair_pick(gpointer state)
{
    Fair *f = state;
    Dest *best = NULL;
    for (GList *l = f->ring.head; l; l = l->next) {
        Dest *d = l->data;
        if (d->failing && d->running > 0)
            continue;
        if (!best || d->running < best->running)
            best = d;
        if (best->running == 0)
            break; /* nobody can beat an idle destination served longest ago */
    }
    if (!best)
        return NULL;
    GSequenceIter *it = g_sequence_get_begin_iter(best->items);
    KrQueueItem *item = g_sequence_get(it);
    g_sequence_remove(it);
    item->policy_data = NULL;
    best->running++;
    /* Served now: to the back of the ring (or out of it when empty). */
    g_queue_unlink(&f->ring, best->link);
    if (g_sequence_is_empty(best->items)) {
        g_list_free_1(best->link);
        best->link = NULL;
    } else {
        g_queue_push_tail_link(&f->ring, best->link);
    }
    return item;
}

static void
fair_remove(gpointer state, KrQueueItem *item)
{
    Fair *f = state;
    Dest *d = g_hash_table_lookup(f->dests, item->destination ? item->destination : "");
    if (!d || !item->policy_data)
        return;
    g_sequence_remove(item->policy_data);
    item->policy_data = NULL;
    if (g_sequence_is_empty(d->items) && d->link) {
        g_queue_delete_link(&f->ring, d->link);
        d->link = NULL;
    }
    dest_forget_if_idle(f, d);
}

static void
fair_result(gpointer state, const char *destination, KrDeliveryResult result)
{
    Fair *f = state;
    Dest *d = g_hash_table_lookup(f->dests, destination ? destination : "");
    if (!d)
        return;
    if (d->running > 0)
        d->running--;
    if (result == KR_RESULT_DEFERRED)
        d->failing = TRUE;
    else if (result == KR_RESULT_DELIVERED)
        d->failing = FALSE;
    dest_forget_if_idle(f, d);
}

const KrQueuePolicy queue_policy_fair = {
    .struct_size = sizeof(KrQueuePolicy),
    .name = "fair",
    .summary = "round-robin over destinations; a failing one gets one slot",
    .create = fair_create,
    .destroy = fair_destroy,
    .enqueue = fair_enqueue,
    .pick = fair_pick,
    .remove = fair_remove,
    .result = fair_result,
};
