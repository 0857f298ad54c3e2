/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-session-sync.c - untagged updates: what other sessions,
 *   deliveries and other programs changed in the selected mailbox, as
 *   EXPUNGE (or VANISHED with QRESYNC), EXISTS, FLAGS and FETCH FLAGS.
 *
 * SYNOPSIS
 *   imap_sync_updates(s, out, &bye)   (worker) sync the view, append updates
 *   imap_msg_flags(s, out, msg)       "FLAGS (\Seen \Recent kw ...)"
 *   imap_recent_count(mb)             messages of the view with \Recent
 *   imap_flags_lines(s, out)          "* FLAGS (...)" + "* OK [PERMANENTFLAGS ...]"
 *
 * DESCRIPTION
 *   The store's view moves only when the session calls sync() (kr-store.h);
 *   the changes it reports are sent here in an order a client can follow:
 *   expunges first (sequence numbers of the old view, descending), then
 *   EXISTS for new messages (and RECENT, for IMAP4rev1), then FLAGS if
 *   the folder's keywords grew,
 *   then flag changes (sequence numbers of the new view). Jobs call this
 *   at the end of commands where EXPUNGE may be sent (RFC 9051 7.5.1:
 *   not during FETCH, STORE and SEARCH; their UID forms are fine).
 *
 *   With QRESYNC enabled, expunges are "* VANISHED uid-set" (RFC 7162
 *   3.2.10) and FETCH updates carry UID and MODSEQ; with CONDSTORE,
 *   MODSEQ.
 *
 *   A UIDVALIDITY change (the store lost its index) ends the session:
 *   *bye_r is set and the caller sends BYE.
 */
#include "imap-session.h"

#include <string.h>

void
imap_msg_flags(ImapSession *s, GString *out, const KrMailboxMsg *m)
{
    static const struct {
        guint32 bit;
        const char *name;
        gsize len;
    } sys[] = {
#define F(b, n) {b, n, sizeof n - 1}
        F(KR_FLAG_SEEN, "\\Seen"),          F(KR_FLAG_ANSWERED, "\\Answered"),
        F(KR_FLAG_FLAGGED, "\\Flagged"),    F(KR_FLAG_DELETED, "\\Deleted"),
        F(KR_FLAG_DRAFT, "\\Draft"),        F(KR_FLAG_RECENT, "\\Recent"),
        F(KR_FLAG_FORWARDED, "$Forwarded"),
#undef F
    };
    /* \Recent only for IMAP4rev1: RFC 9051 removed it */
    guint32 flags = s->rev2 ? m->flags & ~(guint32)KR_FLAG_RECENT : m->flags;
    gboolean first = TRUE;
    imap_put(out, "FLAGS (", 7);
    for (guint i = 0; flags && i < G_N_ELEMENTS(sys); i++) {
        if (!(flags & sys[i].bit))
            continue;
        if (!first)
            imap_putc(out, ' ');
        imap_put(out, sys[i].name, sys[i].len);
        first = FALSE;
    }
    if (m->keywords) {
        const char *const *kw = imap_g.ops->keywords(s->mb);
        for (guint i = 0; kw && kw[i] && i < KR_STORE_MAX_KEYWORDS; i++) {
            if (!(m->keywords & (1u << i)) || !imap_fmt_flag_ok(kw[i]))
                continue;
            if (!first)
                imap_putc(out, ' ');
            g_string_append(out, kw[i]);
            first = FALSE;
        }
    }
    imap_putc(out, ')');
}

guint32
imap_recent_count(KrMailbox *mb)
{
    const KrMailboxOps *ops = imap_g.ops;
    guint32 n = ops->count(mb), r = 0;
    for (guint32 i = 1; i <= n; i++)
        r += (ops->msg(mb, i)->flags & KR_FLAG_RECENT) != 0;
    return r;
}

void
imap_flags_lines(ImapSession *s, GString *out)
{
    const char *names[8 + KR_STORE_MAX_KEYWORDS];
    guint n = 0;
    static const char *const sys[] = {"\\Answered", "\\Flagged", "\\Deleted",
                                      "\\Seen",     "\\Draft",   "$Forwarded"};
    for (guint i = 0; i < G_N_ELEMENTS(sys); i++)
        names[n++] = sys[i];
    const char *const *kw = imap_g.ops->keywords(s->mb);
    guint nkw = 0;
    for (; kw && kw[nkw] && nkw < KR_STORE_MAX_KEYWORDS; nkw++)
        names[n++] = kw[nkw];
    g_string_append(out, "* FLAGS ");
    /* as RFC 3501 6.3.1 shows (and Dovecot sends): the settable flags; \Recent
     * is in neither list, as no client may set it */
    imap_fmt_flags(out, names, n);
    g_string_append(out, "\r\n");
    if (imap_g.ops->readonly(s->mb)) {
        g_string_append(out, "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
        return;
    }
    if (nkw < KR_STORE_MAX_KEYWORDS)
        names[n++] = "\\*";
    g_string_append(out, "* OK [PERMANENTFLAGS ");
    imap_fmt_flags(out, names, n);
    g_string_append(out, "] Flags permitted.\r\n");
}

void
imap_sync_updates(ImapSession *s, GString *out, gboolean *bye_r)
{
    const KrMailboxOps *ops = imap_g.ops;
    KrMailboxChanges ch;
    g_autoptr(GError) e = NULL;
    guint64 counter = ops->change_counter(s->mb);
    if (!ops->sync(s->mb, &ch, &e)) {
        if (g_error_matches(e, KR_STORE_ERROR, KR_STORE_ERROR_UIDVALIDITY))
            *bye_r = TRUE;
        else
            g_warning("%s: %s: sync of %s: %s", s->srv->name, s->user, s->mailbox, e->message);
        return;
    }
    s->counter = counter;
    if (ch.expunged_seqs && ch.expunged_seqs->len > 0) {
        if (s->qresync) {
            g_string_append(out, "* VANISHED ");
            imap_seqset_compress((const guint32 *)ch.expunged_uids->data, ch.expunged_uids->len,
                                 out);
            g_string_append(out, "\r\n");
        } else {
            for (guint i = 0; i < ch.expunged_seqs->len; i++)
                g_string_append_printf(out, "* %u EXPUNGE\r\n",
                                       g_array_index(ch.expunged_seqs, guint32, i));
        }
    }
    if (ch.new_messages > 0) {
        g_string_append_printf(out, "* %u EXISTS\r\n", ch.exists);
        /* RFC 3501 7.3.2: the new count of \Recent messages (not in IMAP4rev2) */
        if (!s->rev2)
            g_string_append_printf(out, "* %u RECENT\r\n", imap_recent_count(s->mb));
    }
    if (ch.keywords_changed)
        imap_flags_lines(s, out);
    for (guint i = 0; ch.changed_seqs && i < ch.changed_seqs->len; i++) {
        guint32 seq = g_array_index(ch.changed_seqs, guint32, i);
        const KrMailboxMsg *m = ops->msg(s->mb, seq);
        if (!m)
            continue;
        g_string_append_printf(out, "* %u FETCH (UID %u ", seq, m->uid);
        imap_msg_flags(s, out, m);
        if (s->condstore)
            g_string_append_printf(out, " MODSEQ (%" G_GUINT64_FORMAT ")", m->modseq);
        g_string_append(out, ")\r\n");
    }
    kr_mailbox_changes_clear(&ch);
}
