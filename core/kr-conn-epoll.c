/* SPDX-License-Identifier: MIT */
/*
 * kr-conn-epoll.c - the event source shared by all connections: one
 * GSource on the default main context, an epoll fd (the only fd GLib
 * polls for connections), a ready list and a deadline heap. See
 * kr-conn-epoll.h for the interface:
 *
 *   kr_ev_item_init, kr_ev_watch, kr_ev_wake, kr_ev_set_deadline,
 *   kr_ev_clear, kr_ev_stats
 *
 * Per loop iteration GLib calls prepare and check, which look at the
 * ready list and the heap's first entry only, and polls the epoll fd.
 * A dispatch
 *   1. takes up to EVENT_BATCH events per epoll_wait (non-blocking),
 *      EVENT_ROUNDS times at most while batches come back full, and puts
 *      each item with events on the ready list (events OR'ed together);
 *   2. pops up to TIMER_BATCH due deadlines off the heap onto the list;
 *   3. moves the ready list aside and calls each item on it once; items
 *      woken meanwhile go on the (new) ready list, for the next
 *      iteration, so no item can starve the rest of the loop.
 * Whatever a cap left over keeps the source ready (epoll fd readable,
 * list non-empty, deadline due), so the next iteration goes on.
 *
 * An item freed during the dispatch (kr_ev_clear) unlinks itself from
 * whichever list it is on, also the one being walked: items are popped
 * from its head one at a time, no pointer is kept across a call.
 *
 * Errors: epoll_create1 and epoll_ctl failures are returned to the caller
 * of kr_ev_watch (errno); epoll_wait failures other than EINTR are logged.
 */
#include "kr-conn-epoll.h"
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define EVENT_BATCH  256
#define EVENT_ROUNDS 4    /* at most 1024 events per dispatch */
#define TIMER_BATCH  1024 /* deadlines per dispatch */

typedef struct {
    GSource base;
} EvSource;

static GSource *src;
static int epfd = -1;
static gpointer ep_tag;
static KrEvLink ready = {&ready, &ready};
static KrEvItem **heap;
static guint heap_len, heap_cap;
static KrEvStats stats;

/* --- lists ------------------------------------------------------------------ */

static gboolean
list_empty(const KrEvLink *head)
{
    return head->next == head;
}

static void
list_unlink(KrEvLink *l)
{
    if (!l->next)
        return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

static void
list_push(KrEvLink *head, KrEvLink *l)
{
    if (l->next)
        return;
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

/* Move every entry of `from` to the empty list `to`. */
static void
list_splice(KrEvLink *from, KrEvLink *to)
{
    if (list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    from->next = from->prev = from;
}

/* --- the deadline heap ---------------------------------------------------- */

static void
heap_set(guint i, KrEvItem *it)
{
    heap[i] = it;
    it->heap_idx = (gint)i;
}

static void
heap_up(guint i)
{
    KrEvItem *it = heap[i];
    while (i > 0) {
        guint p = (i - 1) / 2;
        if (heap[p]->deadline <= it->deadline)
            break;
        heap_set(i, heap[p]);
        i = p;
    }
    heap_set(i, it);
}

static void
heap_down(guint i)
{
    KrEvItem *it = heap[i];
    for (;;) {
        guint l = 2 * i + 1, m = i;
        gint64 best = it->deadline;
        if (l < heap_len && heap[l]->deadline < best)
            m = l, best = heap[l]->deadline;
        if (l + 1 < heap_len && heap[l + 1]->deadline < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(i, heap[m]);
        i = m;
    }
    heap_set(i, it);
}

static void
heap_remove(KrEvItem *it)
{
    if (it->heap_idx < 0)
        return;
    guint i = (guint)it->heap_idx;
    it->heap_idx = -1;
    heap_len--;
    if (i == heap_len)
        return;
    KrEvItem *last = heap[heap_len];
    heap_set(i, last);
    if (i > 0 && heap[(i - 1) / 2]->deadline > last->deadline)
        heap_up(i);
    else
        heap_down(i);
}

/* --- the GSource ----------------------------------------------------------------- */

static gboolean
timer_due(gint64 now)
{
    return heap_len > 0 && heap[0]->deadline <= now;
}

static gboolean
ev_prepare(GSource *s, gint *timeout)
{
    if (!list_empty(&ready)) {
        *timeout = 0;
        return TRUE;
    }
    *timeout = -1;
    if (heap_len == 0)
        return FALSE;
    gint64 now = g_source_get_time(s);
    if (timer_due(now)) {
        *timeout = 0;
        return TRUE;
    }
    /* round up: waking before the deadline only costs an iteration */
    gint64 ms = (heap[0]->deadline - now + 999) / 1000;
    *timeout = (gint)MIN(ms, G_MAXINT);
    return FALSE;
}

static gboolean
ev_check(GSource *s)
{
    if (!list_empty(&ready) || timer_due(g_source_get_time(s)))
        return TRUE;
    return ep_tag && g_source_query_unix_fd(s, ep_tag) != 0;
}

static GIOCondition
cond_from_epoll(guint32 e)
{
    GIOCondition c = 0;
    if (e & EPOLLIN)
        c |= G_IO_IN;
    if (e & EPOLLOUT)
        c |= G_IO_OUT;
    if (e & EPOLLERR)
        c |= G_IO_ERR;
    if (e & EPOLLHUP)
        c |= G_IO_HUP;
    return c;
}

static guint32
epoll_from_cond(GIOCondition c)
{
    return ((c & G_IO_IN) ? EPOLLIN : 0) | ((c & G_IO_OUT) ? EPOLLOUT : 0);
}

static void
collect_events(void)
{
    static struct epoll_event evs[EVENT_BATCH];
    for (int round = 0; round < EVENT_ROUNDS; round++) {
        int n = epoll_wait(epfd, evs, EVENT_BATCH, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            g_warning("epoll_wait: %s", g_strerror(errno));
            return;
        }
        stats.events += (guint)n;
        for (int i = 0; i < n; i++) {
            KrEvItem *it = evs[i].data.ptr;
            it->revents |= (guint16)cond_from_epoll(evs[i].events);
            list_push(&ready, &it->link);
        }
        if (n < EVENT_BATCH)
            return;
    }
}

static gboolean
ev_dispatch(GSource *s, GSourceFunc cb, gpointer ud)
{
    stats.dispatches++;
    if (ep_tag && g_source_query_unix_fd(s, ep_tag) != 0)
        collect_events();
    gint64 now = g_get_monotonic_time();
    for (int n = 0; n < TIMER_BATCH && timer_due(now); n++) {
        KrEvItem *it = heap[0];
        heap_remove(it);
        stats.timers++;
        list_push(&ready, &it->link);
    }
    KrEvLink run = {&run, &run};
    list_splice(&ready, &run);
    while (!list_empty(&run)) {
        KrEvItem *it = (KrEvItem *)run.next; /* link is the first member */
        list_unlink(&it->link);
        GIOCondition rev = it->revents;
        it->revents = 0;
        stats.items++;
        it->fn(it, rev);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs ev_funcs = {
    .prepare = ev_prepare,
    .check = ev_check,
    .dispatch = ev_dispatch,
};

static void
ensure_source(void)
{
    if (src)
        return;
    src = g_source_new(&ev_funcs, sizeof(EvSource));
    g_source_set_name(src, "kr-conn");
    /* Not blocked around each dispatch: GLib would take the epoll fd out
     * of the poll set before every dispatch and put it back after, each
     * time signalling the context's wakeup eventfd (2 write()s, then one
     * more loop iteration with a poll() and a read()). The source never
     * recurses: no nested main loop (kr-conn.c). */
    g_source_set_can_recurse(src, TRUE);
    g_source_attach(src, NULL);
}

static gboolean
ensure_epoll(void)
{
    ensure_source();
    if (epfd >= 0)
        return TRUE;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return FALSE;
    ep_tag = g_source_add_unix_fd(src, epfd, G_IO_IN);
    return TRUE;
}

/* --- items ------------------------------------------------------------------------ */

void
kr_ev_item_init(KrEvItem *it, KrEvDispatchFunc fn)
{
    memset(it, 0, sizeof *it);
    it->fn = fn;
    it->heap_idx = -1;
    ensure_source();
}

gboolean
kr_ev_watch(KrEvItem *it, int fd, GIOCondition events)
{
    events &= G_IO_IN | G_IO_OUT;
    if (events == it->watched)
        return TRUE;
    if (!ensure_epoll())
        return FALSE;
    struct epoll_event ev = {.events = epoll_from_cond(events), .data.ptr = it};
    int op = events == 0 ? EPOLL_CTL_DEL : it->watched == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    stats.ctl++;
    if (epoll_ctl(epfd, op, fd, &ev) < 0) {
        int e = errno;
        if (op != EPOLL_CTL_ADD) {
            /* the fd is in an unknown state: make sure it is out */
            epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
            stats.watched--;
            it->watched = 0;
        }
        errno = e;
        return op == EPOLL_CTL_DEL; /* removing cannot really fail */
    }
    if (it->watched == 0)
        stats.watched++;
    else if (events == 0)
        stats.watched--;
    it->watched = (guint16)events;
    return TRUE;
}

void
kr_ev_wake(KrEvItem *it)
{
    list_push(&ready, &it->link);
}

void
kr_ev_set_deadline(KrEvItem *it, gint64 when)
{
    if (when < 0)
        return;
    if (it->heap_idx >= 0) {
        if (when < it->deadline) {
            it->deadline = when;
            heap_up((guint)it->heap_idx);
        }
        return;
    }
    if (heap_len == heap_cap) {
        heap_cap = MAX(64, heap_cap * 2);
        heap = g_renew(KrEvItem *, heap, heap_cap);
    }
    it->deadline = when;
    heap[heap_len] = it;
    heap_up(heap_len++);
}

void
kr_ev_clear(KrEvItem *it, int fd)
{
    if (it->watched && fd >= 0) {
        kr_ev_watch(it, fd, 0);
    } else if (it->watched) {
        /* closed while watched: epoll dropped it with its last fd */
        it->watched = 0;
        stats.watched--;
    }
    list_unlink(&it->link);
    heap_remove(it);
    it->revents = 0;
}

void
kr_ev_stats(KrEvStats *st)
{
    *st = stats;
    st->timed = heap_len;
}
