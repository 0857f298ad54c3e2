/* SPDX-License-Identifier: MIT */
/*
 * test-queue-policy.c - the built-in queue policies (modules/queue/
 * policy-fifo.c, policy-fair.c), driven through their KrQueuePolicy
 * vtables the way the queue manager drives them: enqueue, pick, remove,
 * result. Also the queue manager's backoff arithmetic.
 */
#include "testlib.h"
#include "queue/queue.h"

typedef struct {
    KrQueueItem items[64];
    char ids[64][KR_QUEUE_ID_LEN + 1];
    char dests[64][32];
    guint n;
} Pool;

/* Items get IDs that sort by creation, like real queue IDs. */
static KrQueueItem *
item(Pool *p, const char *dest, gint64 arrival)
{
    g_assert_cmpuint(p->n, <, G_N_ELEMENTS(p->items));
    guint i = p->n++;
    g_snprintf(p->ids[i], sizeof p->ids[i], "ID%012u", i);
    g_strlcpy(p->dests[i], dest, sizeof p->dests[i]);
    KrQueueItem *it = &p->items[i];
    *it = (KrQueueItem){.queue_id = p->ids[i], .destination = p->dests[i], .arrival = arrival};
    return it;
}

/* Pick everything; the destinations in order, as one string "a b a". */
static char *
drain(const KrQueuePolicy *pol, gpointer st, gboolean report)
{
    GString *s = g_string_new(NULL);
    KrQueueItem *it;
    while ((it = pol->pick(st))) {
        g_string_append_printf(s, "%s%s", s->len ? " " : "", it->destination);
        if (report)
            pol->result(st, it->destination, KR_RESULT_DELIVERED);
    }
    return g_string_free(s, FALSE);
}

static void
test_fifo_order(void)
{
    const KrQueuePolicy *pol = &queue_policy_fifo;
    g_assert_cmpstr(pol->name, ==, "fifo");
    gpointer st = pol->create();
    Pool p = {0};
    g_assert_null(pol->pick(st));
    /* Enqueued out of order: picked oldest first (arrival, then ID). */
    KrQueueItem *c = item(&p, "c", 300);
    KrQueueItem *a = item(&p, "a", 100);
    KrQueueItem *b1 = item(&p, "b1", 200);
    KrQueueItem *b2 = item(&p, "b2", 200);
    pol->enqueue(st, c);
    pol->enqueue(st, b2);
    pol->enqueue(st, a);
    pol->enqueue(st, b1);
    g_assert_true(pol->pick(st) == a);
    g_assert_null(a->policy_data);
    g_assert_true(pol->pick(st) == b1);
    g_assert_true(pol->pick(st) == b2);
    pol->result(st, "b2", KR_RESULT_DEFERRED); /* fifo ignores results */
    g_assert_true(pol->pick(st) == c);
    g_assert_null(pol->pick(st));
    pol->destroy(st);
}

static void
test_fifo_remove(void)
{
    const KrQueuePolicy *pol = &queue_policy_fifo;
    gpointer st = pol->create();
    Pool p = {0};
    KrQueueItem *x[5];
    for (int i = 0; i < 5; i++) {
        x[i] = item(&p, "d", 10 + i);
        pol->enqueue(st, x[i]);
    }
    pol->remove(st, x[0]);
    pol->remove(st, x[3]);
    g_assert_true(pol->pick(st) == x[1]);
    g_assert_true(pol->pick(st) == x[2]);
    g_assert_true(pol->pick(st) == x[4]);
    g_assert_null(pol->pick(st));
    pol->destroy(st);
}

static void
test_fair_round_robin(void)
{
    const KrQueuePolicy *pol = &queue_policy_fair;
    g_assert_cmpstr(pol->name, ==, "fair");
    gpointer st = pol->create();
    Pool p = {0};
    /* Six old messages for A, then three for B, two for C. */
    for (int i = 0; i < 6; i++)
        pol->enqueue(st, item(&p, "A", 100 + i));
    for (int i = 0; i < 3; i++)
        pol->enqueue(st, item(&p, "B", 200 + i));
    for (int i = 0; i < 2; i++)
        pol->enqueue(st, item(&p, "C", 300 + i));
    /* With results reported at once (one slot), destinations alternate. */
    g_autofree char *order = drain(pol, st, TRUE);
    g_assert_cmpstr(order, ==, "A B C A B C A B A A A");
    pol->destroy(st);

    /* fifo on the same input serves A first, all of it. */
    st = queue_policy_fifo.create();
    for (guint i = 0; i < p.n; i++)
        queue_policy_fifo.enqueue(st, &p.items[i]);
    g_autofree char *forder = drain(&queue_policy_fifo, st, TRUE);
    g_assert_cmpstr(forder, ==, "A A A A A A B B B C C");
    queue_policy_fifo.destroy(st);
}

static void
test_fair_least_running(void)
{
    const KrQueuePolicy *pol = &queue_policy_fair;
    gpointer st = pol->create();
    Pool p = {0};
    for (int i = 0; i < 10; i++)
        pol->enqueue(st, item(&p, "slow", 100 + i));
    /* A is slow: three deliveries are running and never finish. */
    for (int i = 0; i < 3; i++)
        g_assert_cmpstr(pol->pick(st)->destination, ==, "slow");
    /* New mail for B gets the next slots, ahead of A's older backlog,
     * while B has fewer deliveries running than A. */
    for (int i = 0; i < 6; i++)
        pol->enqueue(st, item(&p, "quick", 500 + i));
    KrQueueItem *it = pol->pick(st);
    g_assert_cmpstr(it->destination, ==, "quick");
    pol->result(st, "quick", KR_RESULT_DELIVERED);
    for (int i = 0; i < 3; i++) {
        it = pol->pick(st);
        g_assert_cmpstr(it->destination, ==, "quick");
    }
    /* Three of each running now: ties go to the one served longest ago. */
    it = pol->pick(st);
    g_assert_cmpstr(it->destination, ==, "slow");
    it = pol->pick(st);
    g_assert_cmpstr(it->destination, ==, "quick");
    pol->destroy(st);
}

static void
test_fair_failing_destination(void)
{
    const KrQueuePolicy *pol = &queue_policy_fair;
    gpointer st = pol->create();
    Pool p = {0};
    for (int i = 0; i < 5; i++)
        pol->enqueue(st, item(&p, "dead", 100 + i));
    KrQueueItem *it = pol->pick(st);
    g_assert_cmpstr(it->destination, ==, "dead");
    pol->result(st, "dead", KR_RESULT_DEFERRED);
    /* Failing: one delivery at a time (the probe). */
    it = pol->pick(st);
    g_assert_nonnull(it);
    g_assert_null(pol->pick(st));
    /* Other destinations are not held back by it. */
    pol->enqueue(st, item(&p, "ok", 900));
    pol->enqueue(st, item(&p, "ok", 901));
    g_assert_cmpstr(pol->pick(st)->destination, ==, "ok");
    g_assert_cmpstr(pol->pick(st)->destination, ==, "ok");
    g_assert_null(pol->pick(st));
    /* The probe succeeds: full speed again. */
    pol->result(st, "dead", KR_RESULT_DELIVERED);
    g_assert_nonnull(pol->pick(st));
    g_assert_nonnull(pol->pick(st));
    g_assert_nonnull(pol->pick(st));
    g_assert_null(pol->pick(st));
    pol->destroy(st);
}

static void
test_fair_remove(void)
{
    const KrQueuePolicy *pol = &queue_policy_fair;
    gpointer st = pol->create();
    Pool p = {0};
    KrQueueItem *a1 = item(&p, "A", 1), *a2 = item(&p, "A", 2), *b1 = item(&p, "B", 3);
    pol->enqueue(st, a1);
    pol->enqueue(st, a2);
    pol->enqueue(st, b1);
    pol->remove(st, a1);
    pol->remove(st, b1); /* B empty: leaves the ring, forgotten */
    g_assert_true(pol->pick(st) == a2);
    g_assert_null(pol->pick(st));
    pol->result(st, "A", KR_RESULT_DELIVERED);
    pol->result(st, "nonexistent", KR_RESULT_DELIVERED); /* harmless */
    /* Reusable after everything was forgotten. */
    KrQueueItem *b2 = item(&p, "B", 4);
    pol->enqueue(st, b2);
    g_assert_true(pol->pick(st) == b2);
    pol->destroy(st);
}

static void
test_fair_many(void)
{
    /* 1000 items over 10 destinations, one slot: every destination is
     * served once per round, and every item exactly once. */
    const KrQueuePolicy *pol = &queue_policy_fair;
    gpointer st = pol->create();
    static KrQueueItem items[1000];
    static char ids[1000][16], dests[10][8];
    for (int d = 0; d < 10; d++)
        g_snprintf(dests[d], sizeof dests[d], "d%d", d);
    for (int i = 0; i < 1000; i++) {
        g_snprintf(ids[i], sizeof ids[i], "X%013d", i);
        items[i] = (KrQueueItem){.queue_id = ids[i], .destination = dests[i % 10], .arrival = i};
        pol->enqueue(st, &items[i]);
    }
    g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (int round = 0; round < 100; round++) {
        gboolean got[10] = {0};
        for (int k = 0; k < 10; k++) {
            KrQueueItem *it = pol->pick(st);
            g_assert_nonnull(it);
            g_assert_false(g_hash_table_contains(seen, it));
            g_hash_table_add(seen, it);
            int d = it->destination[1] - '0';
            g_assert_false(got[d]);
            got[d] = TRUE;
            pol->result(st, it->destination, KR_RESULT_DELIVERED);
        }
    }
    g_assert_null(pol->pick(st));
    g_assert_cmpuint(g_hash_table_size(seen), ==, 1000);
    pol->destroy(st);
}

static void
test_backoff(void)
{
    /* Defaults: 5 min doubling up to 66 min. */
    g_assert_cmpint(qmgr_backoff(1, 300, 3960), ==, 300);
    g_assert_cmpint(qmgr_backoff(2, 300, 3960), ==, 600);
    g_assert_cmpint(qmgr_backoff(3, 300, 3960), ==, 1200);
    g_assert_cmpint(qmgr_backoff(4, 300, 3960), ==, 2400);
    g_assert_cmpint(qmgr_backoff(5, 300, 3960), ==, 3960);
    g_assert_cmpint(qmgr_backoff(500, 300, 3960), ==, 3960);
    g_assert_cmpint(qmgr_backoff(0, 300, 3960), ==, 300);
    g_assert_cmpint(qmgr_backoff(3, 1, 2), ==, 2);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/queue-policy/fifo/order", test_fifo_order);
    g_test_add_func("/queue-policy/fifo/remove", test_fifo_remove);
    g_test_add_func("/queue-policy/fair/round-robin", test_fair_round_robin);
    g_test_add_func("/queue-policy/fair/least-running", test_fair_least_running);
    g_test_add_func("/queue-policy/fair/failing-destination", test_fair_failing_destination);
    g_test_add_func("/queue-policy/fair/remove", test_fair_remove);
    g_test_add_func("/queue-policy/fair/many", test_fair_many);
    g_test_add_func("/queue-policy/backoff", test_backoff);
    return g_test_run();
}
