/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-idle.c - IDLE (RFC 2177, RFC 9051 6.3.13): untagged updates
 *   as soon as the selected mailbox changes, until the client says DONE.
 *
 * SYNOPSIS
 *   imap_cmd_idle(s)                 "+ idling", watch the mailbox
 *   imap_idle_line(s, line, len)     the line that ends IDLE ("DONE")
 *   imap_idle_stop(s)                stop watching
 *
 * DESCRIPTION
 *   While idling, the session asks the store to call it after every change
 *   this process makes to the folder (KrMailboxOps.watch: deliveries,
 *   other sessions). The callback runs in whatever thread made the change;
 *   it only takes a reference and queues an idle callback, which starts a
 *   sync job on the loop (at most one in flight; a change arriving
 *   meanwhile runs another one after it). Changes made by other programs
 *   are found by a sync every idle_poll seconds. Input is read between
 *   syncs, so DONE is seen at once.
 */
#include "imap-session.h"

static void start_sync(ImapSession *s);

static gboolean
notified(gpointer p)
{
    ImapSession *s = p;
    g_atomic_int_set(&s->notify, 0);
    if (!s->dead && s->idling && s->state == IMAP_S_SELECTED) {
        if (s->in_job || s->busy)
            s->idle_again = TRUE;
        else
            start_sync(s);
    }
    imap_session_unref(s);
    return G_SOURCE_REMOVE;
}

static void
sync_done(ImapJob *j)
{
    ImapSession *s = j->s;
    if (s->idle_again && s->idling && !s->dead) {
        /* once this job is over: from the loop */
        s->idle_again = FALSE;
        imap_session_ref(s);
        g_idle_add(notified, s);
    }
}

static void
start_sync(ImapSession *s)
{
    ImapJob *j = imap_job_new(s, NULL, IMAP_SYNC_ALWAYS);
    j->cmd = NULL;
    j->keep_command = TRUE;
    j->done = sync_done;
    imap_job_start(j);
}

/* The store's watch: any thread, maybe under the store's locks. */
static void
on_change(gpointer ud)
{
    ImapSession *s = ud;
    if (g_atomic_int_compare_and_exchange(&s->notify, 0, 1)) {
        imap_session_ref(s);
        g_idle_add(notified, s);
    }
}

static gboolean
poll_tick(gpointer p)
{
    ImapSession *s = p;
    if (s->in_job || s->busy)
        s->idle_again = TRUE;
    else
        start_sync(s);
    return G_SOURCE_CONTINUE;
}

void
imap_cmd_idle(ImapSession *s)
{
    imap_printf(s, "+ idling\r\n");
    s->idling = TRUE;
    s->idle_again = FALSE;
    imap_reader_set_line_mode(s->rd);
    if (s->state != IMAP_S_SELECTED)
        return;
    imap_g.ops->watch(s->mb, on_change, s);
    s->idle_timer = g_timeout_add_seconds((guint)imap_g.conf->idle_poll, poll_tick, s);
    if (imap_g.ops->change_counter(s->mb) != s->counter)
        start_sync(s);
}

void
imap_idle_stop(ImapSession *s)
{
    if (!s->idling)
        return;
    s->idling = FALSE;
    s->idle_again = FALSE;
    if (s->idle_timer) {
        g_source_remove(s->idle_timer);
        s->idle_timer = 0;
    }
    if (s->mb)
        imap_g.ops->watch(s->mb, NULL, NULL);
}

void
imap_idle_line(ImapSession *s, const char *line, gsize len)
{
    imap_idle_stop(s);
    if (imap_is_done((const guchar *)line, len)) {
        imap_tagged_done(s, "OK", NULL, "IDLE terminated.");
        return;
    }
    s->bad++;
    imap_tagged_done(s, "BAD", NULL, "Expected DONE.");
}
