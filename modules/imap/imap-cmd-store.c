/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-store.c - STORE (RFC 9051 6.4.6, CONDSTORE UNCHANGEDSINCE
 *   RFC 7162), COPY (UIDPLUS COPYUID, RFC 4315) and MOVE (RFC 6851), and
 *   their UID forms.
 *
 * SYNOPSIS
 *   imap_cmd_store(s)   +FLAGS / -FLAGS / FLAGS [.SILENT]
 *   imap_cmd_copy(s)    COPY and MOVE
 *
 * DESCRIPTION
 *   The set is resolved against the session's view in the job; a
 *   sequence number past the end is BAD, UIDs that are not there are
 *   skipped. The store applies flags and keywords in one call and updates
 *   the view, so the FETCH responses show the flags as they are now, with
 *   UID (UID STORE, QRESYNC) and MODSEQ (CONDSTORE). With UNCHANGEDSINCE
 *   the messages changed since that MODSEQ are left alone and listed in
 *   [MODIFIED ...]. Without a UID, STORE sends no expunges (RFC 9051
 *   7.5.1).
 *
 *   MOVE is the store's copy-then-expunge: "* OK [COPYUID ...]", then the
 *   expunges (or VANISHED), then the tagged OK. A destination that does
 *   not exist gets NO [TRYCREATE].
 */
#include "imap-session.h"

#include <string.h>

/* --- STORE ---------------------------------------------------------------------- */

typedef struct {
    guint32 flags;
    GPtrArray *kw;
} StoreData;

static void
store_data_free(gpointer p)
{
    StoreData *d = p;
    g_ptr_array_unref(d->kw);
    g_free(d);
}

static gboolean
in_sorted(const GArray *a, guint32 v)
{
    guint lo = 0, hi = a->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        guint32 x = g_array_index(a, guint32, mid);
        if (x == v)
            return TRUE;
        if (x < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return FALSE;
}

static gint
cmp_u32(gconstpointer a, gconstpointer b)
{
    guint32 x = *(const guint32 *)a, y = *(const guint32 *)b;
    return x < y ? -1 : x > y;
}

static void
store_work(ImapJob *j)
{
    ImapSession *s = j->s;
    StoreData *d = j->data;
    ImapStoreArgs *a = &j->cmd->u.store;
    const KrMailboxOps *ops = imap_g.ops;
    g_autoptr(GArray) uids = g_array_new(FALSE, FALSE, sizeof(guint32));
    if (!imap_set_uids(s, a->set, j->cmd->uid, uids)) {
        imap_job_tagged(j, "BAD", NULL, "Invalid message sequence number.");
        return;
    }
    g_autoptr(GArray) failed = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_autofree guint64 *before = g_new(guint64, uids->len + 1);
    for (guint i = 0; i < uids->len; i++)
        before[i] =
            ops->msg(s->mb, ops->seq_of_uid(s->mb, g_array_index(uids, guint32, i)))->modseq;
    KrFlagsOp op = a->op == IMAP_STORE_ADD      ? KR_FLAGS_ADD
                   : a->op == IMAP_STORE_REMOVE ? KR_FLAGS_REMOVE
                                                : KR_FLAGS_REPLACE;
    g_autoptr(GError) e = NULL;
    gboolean ok = TRUE;
    if (a->unchangedsince_set && a->unchangedsince == 0) {
        /* nothing is unchanged since MODSEQ 0 */
        g_array_append_vals(failed, uids->data, uids->len);
    } else if (uids->len > 0) {
        ok = ops->set_flags(s->mb, (const guint32 *)uids->data, uids->len, op, d->flags,
                            (const char *const *)d->kw->pdata,
                            a->unchangedsince_set ? a->unchangedsince : 0, failed, &e);
    }
    if (!ok) {
        if (g_error_matches(e, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME)) {
            imap_job_tagged(j, "BAD", NULL, "Invalid keyword.");
            return;
        }
        imap_job_store_error(j, e, "store");
        return;
    }
    g_array_sort(failed, cmp_u32);
    gboolean with_uid = j->cmd->uid || s->qresync;
    for (guint i = 0; i < uids->len; i++) {
        guint32 uid = g_array_index(uids, guint32, i);
        if (in_sorted(failed, uid))
            continue;
        guint32 seq = ops->seq_of_uid(s->mb, uid);
        const KrMailboxMsg *m = seq ? ops->msg(s->mb, seq) : NULL;
        if (!m)
            continue;
        gboolean changed = m->modseq != before[i];
        if (a->silent && !(s->condstore && changed))
            continue;
        g_string_append_printf(j->out, "* %u FETCH (", seq);
        if (with_uid)
            g_string_append_printf(j->out, "UID %u ", uid);
        if (!a->silent)
            imap_msg_flags(s, j->out, m);
        if (s->condstore)
            g_string_append_printf(j->out, "%sMODSEQ (%" G_GUINT64_FORMAT ")", a->silent ? "" : " ",
                                   m->modseq);
        g_string_append(j->out, ")\r\n");
    }
    if (failed->len > 0) {
        g_autoptr(GString) code = g_string_new("MODIFIED ");
        if (j->cmd->uid) {
            imap_seqset_compress((const guint32 *)failed->data, failed->len, code);
        } else {
            g_autoptr(GArray) seqs = g_array_new(FALSE, FALSE, sizeof(guint32));
            for (guint i = 0; i < failed->len; i++) {
                guint32 seq = ops->seq_of_uid(s->mb, g_array_index(failed, guint32, i));
                if (seq)
                    g_array_append_val(seqs, seq);
            }
            imap_seqset_compress((const guint32 *)seqs->data, seqs->len, code);
        }
        imap_job_tagged(j, "OK", code->str, "Conditional STORE failed for some messages.");
        return;
    }
    imap_job_tagged(j, "OK", NULL, "STORE completed.");
}

void
imap_cmd_store(ImapSession *s)
{
    ImapStoreArgs *a = &s->cmd->u.store;
    if (s->readonly) {
        imap_tagged_done(s, "NO", "READ-ONLY", "Mailbox is read-only.");
        return;
    }
    StoreData *d = g_new0(StoreData, 1);
    d->kw = g_ptr_array_new();
    if (!imap_flags_from_args(a->flags, &d->flags, d->kw)) {
        store_data_free(d);
        s->bad++;
        imap_tagged_done(s, "BAD", NULL, "Invalid system flag.");
        return;
    }
    if (a->unchangedsince_set)
        s->condstore = TRUE;
    ImapJob *j = imap_job_new(s, store_work, s->cmd->uid ? IMAP_SYNC_IF_CHANGED : IMAP_SYNC_NONE);
    j->data = d;
    j->free_data = store_data_free;
    imap_job_start(j);
}

/* --- COPY, MOVE ------------------------------------------------------------------------ */

static void
copy_work(ImapJob *j)
{
    ImapSession *s = j->s;
    const char *stname = j->data;
    gboolean move = j->cmd->name == IMAP_CMD_MOVE;
    g_autoptr(GArray) uids = g_array_new(FALSE, FALSE, sizeof(guint32));
    if (!imap_set_uids(s, j->cmd->u.copy.set, j->cmd->uid, uids)) {
        imap_job_tagged(j, "BAD", NULL, "Invalid message sequence number.");
        return;
    }
    const char *done = move ? "MOVE completed." : "COPY completed.";
    if (uids->len == 0) {
        imap_job_tagged(j, "OK", NULL, "No messages.");
        return;
    }
    g_autoptr(GArray) src = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_autoptr(GArray) dst = g_array_new(FALSE, FALSE, sizeof(guint32));
    guint32 validity = 0;
    g_autoptr(GError) e = NULL;
    if (!imap_g.ops->copy(s->mb, (const guint32 *)uids->data, uids->len, stname, move, &validity,
                          src, dst, &e)) {
        if (g_error_matches(e, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND))
            imap_job_tagged(j, "NO", "TRYCREATE", "Mailbox does not exist.");
        else
            imap_job_store_error(j, e, move ? "move" : "copy");
        return;
    }
    if (src->len == 0) {
        imap_job_tagged(j, "OK", NULL, done);
        return;
    }
    g_autoptr(GString) code = g_string_new(NULL);
    g_string_printf(code, "COPYUID %u ", validity);
    imap_seqset_compress((const guint32 *)src->data, src->len, code);
    g_string_append_c(code, ' ');
    imap_seqset_compress((const guint32 *)dst->data, dst->len, code);
    if (move) {
        g_string_append_printf(j->out, "* OK [%s] Moved.\r\n", code->str);
        imap_job_tagged(j, "OK", NULL, done);
    } else {
        imap_job_tagged(j, "OK", code->str, done);
    }
}

void
imap_cmd_copy(ImapSession *s)
{
    if (s->cmd->name == IMAP_CMD_MOVE && s->readonly) {
        imap_tagged_done(s, "NO", "READ-ONLY", "Mailbox is read-only.");
        return;
    }
    char *name = imap_arg_mailbox(s, s->cmd->u.copy.mailbox, FALSE);
    if (!name)
        return;
    ImapJob *j = imap_job_new(s, copy_work, IMAP_SYNC_IF_CHANGED);
    j->data = imap_to_store_name(name);
    j->free_data = g_free;
    g_free(name);
    imap_job_start(j);
}
