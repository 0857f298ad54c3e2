/* SPDX-License-Identifier: MIT */
/*
 * kr-conn-epoll.h - the one event source that all connections share
 * (kr-conn-epoll.c, used by kr-conn.c): a GSource on the default main
 * context whose only polled fd is an epoll fd, a ready list of items to
 * dispatch on the next loop iteration, and a min-heap of deadlines. The
 * work per loop iteration is O(1) plus O(items that are ready): idle
 * items cost nothing.
 *
 *   kr_ev_item_init(it, fn)        an item (embedded in its owner) that
 *                                  fn(it, revents) dispatches
 *   kr_ev_watch(it, fd, events)    poll fd for exactly these events
 *                                  (G_IO_IN / G_IO_OUT; 0: not at all)
 *   kr_ev_wake(it)                 dispatch on the next iteration
 *   kr_ev_set_deadline(it, when)   dispatch at `when` (monotonic us) at
 *                                  the latest
 *   kr_ev_clear(it, fd)            forget the item (before it is freed;
 *                                  fd: the one it watched, or -1)
 *   kr_ev_stats(st)                counters, for tests and debugging
 *
 * Dispatch: fn(it, revents) runs once per iteration for an item that had
 * poll events (revents: G_IO_IN, G_IO_OUT, G_IO_ERR, G_IO_HUP), was woken,
 * or whose deadline passed (revents may be 0: the owner looks at its own
 * state and clocks; a spurious call must be harmless). Items woken during
 * a dispatch run on the next iteration, never in the same one. The item
 * leaves the ready list and the heap before fn runs; the owner re-arms
 * whatever it still needs.
 *
 * Deadlines are lazy: kr_ev_set_deadline only ever moves an item's timer
 * earlier (a later or negative `when` leaves it as it is). The owner
 * re-arms the real deadline when the early timer fires. So input that
 * pushes an idle timeout back costs nothing here.
 *
 * Poll events are level-triggered. ERR and HUP are reported whenever the
 * fd is watched for anything; watch 0 (removes the fd from the epoll set)
 * to stop them. Call kr_ev_watch(it, fd, 0) before closing the fd.
 *
 * All of this is main-thread only. The source does not recurse: a nested
 * main loop inside fn dispatches no item.
 */
#ifndef KR_CONN_EPOLL_H
#define KR_CONN_EPOLL_H

#include "kr-internal.h"

typedef struct KrEvLink KrEvLink;
struct KrEvLink {
    KrEvLink *prev, *next; /* NULL when not on a list */
};

typedef struct KrEvItem KrEvItem;
typedef void (*KrEvDispatchFunc)(KrEvItem *it, GIOCondition revents);

struct KrEvItem {
    KrEvLink link; /* ready list */
    KrEvDispatchFunc fn;
    gint64 deadline; /* heap key while heap_idx >= 0 */
    gint heap_idx;   /* -1: no timer */
    guint16 watched; /* GIOCondition registered with epoll, 0: fd not in the set */
    guint16 revents; /* collected for the next dispatch */
};

typedef struct {
    guint64 dispatches; /* source dispatches (loop iterations that did work) */
    guint64 items;      /* item dispatches: fn calls */
    guint64 events;     /* epoll events received */
    guint64 timers;     /* deadlines that fired */
    guint64 ctl;        /* epoll_ctl calls */
    guint watched;      /* items whose fd is in the epoll set now */
    guint timed;        /* items with a timer now */
} KrEvStats;

KR_INTERNAL void kr_ev_item_init(KrEvItem *it, KrEvDispatchFunc fn);
/* FALSE with errno set if epoll refuses (the item is then not watched). */
KR_INTERNAL gboolean kr_ev_watch(KrEvItem *it, int fd, GIOCondition events);
KR_INTERNAL void kr_ev_wake(KrEvItem *it);
KR_INTERNAL void kr_ev_set_deadline(KrEvItem *it, gint64 when);
KR_INTERNAL void kr_ev_clear(KrEvItem *it, int fd);
KR_INTERNAL void kr_ev_stats(KrEvStats *st);

#endif
