/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-mailbox.c - IMAP commands on whole mailboxes: SELECT and
 *   EXAMINE (with CONDSTORE and QRESYNC, RFC 7162), CREATE, DELETE,
 *   RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS, NOOP, CHECK, CLOSE,
 *   UNSELECT, EXPUNGE and UID EXPUNGE (RFC 4315).
 *
 * SYNOPSIS
 *   imap_cmd_select, imap_cmd_create, imap_cmd_delete, imap_cmd_rename,
 *   imap_cmd_subscribe, imap_cmd_status, imap_cmd_noop, imap_cmd_close,
 *   imap_cmd_expunge
 *   imap_status_items(s, out, items, st, stname)   "(MESSAGES 3 RECENT 1 ...)"
 *   imap_vanished(s, known, modseq, out)   QRESYNC: UIDs of known no
 *                                          longer in the view
 *
 * DESCRIPTION
 *   Every store call runs in the command's job (a worker). Selecting a
 *   mailbox first closes the one selected before ("* OK [CLOSED]"); if
 *   the new one cannot be opened the session is left in the authenticated
 *   state, as RFC 9051 6.3.2 says.
 *
 *   The store keeps no record of expunged UIDs, so a QRESYNC SELECT (and
 *   UID FETCH ... VANISHED) reports every UID of the client's known set
 *   that is not in the mailbox -- allowed by RFC 7162 3.2.5.1 -- and only
 *   when the client's MODSEQ is below HIGHESTMODSEQ.
 *
 *   INBOX cannot be deleted; RENAME of INBOX moves its messages into the
 *   new mailbox and leaves INBOX empty (RFC 9051 6.3.6).
 */
#include "imap-session.h"

#include <string.h>

/* --- SELECT / EXAMINE ---------------------------------------------------------- */

typedef struct {
    char *name;
    char *stname;
    gboolean readonly;
    gboolean opened;
} SelectData;

static void
select_data_free(gpointer p)
{
    SelectData *d = p;
    g_free(d->name);
    g_free(d->stname);
    g_free(d);
}

static void
add_range(GString *out, gboolean *any, guint32 lo, guint32 hi)
{
    if (*any)
        g_string_append_c(out, ',');
    *any = TRUE;
    if (lo == hi)
        g_string_append_printf(out, "%u", lo);
    else
        g_string_append_printf(out, "%u:%u", lo, hi);
}

/* The UIDs in known (resolved; NULL: 1:UIDNEXT-1) that the view lacks,
 * as a sequence set; "" when none. */
void
imap_vanished(ImapSession *s, ImapSeqSet *known, GString *out)
{
    const KrMailboxOps *ops = imap_g.ops;
    KrMailboxStatus st;
    ops->get_status(s->mb, &st);
    if (st.uidnext <= 1)
        return;
    guint32 top = st.uidnext - 1, n = ops->count(s->mb);
    ImapSeqRange all = {1, top};
    const ImapSeqRange *r = known ? known->ranges : &all;
    guint nr = known ? known->n : 1;
    gboolean any = FALSE;
    for (guint i = 0; i < nr; i++) {
        guint32 lo = r[i].lo, hi = MIN(r[i].hi, top);
        if (lo == 0 || lo > hi)
            continue;
        guint32 seq = imap_seq_lower_bound(s, lo);
        guint64 cur = lo;
        while (cur <= hi) {
            guint64 present = seq <= n ? ops->msg(s->mb, seq)->uid : G_MAXUINT64;
            if (present > hi) {
                add_range(out, &any, (guint32)cur, hi);
                break;
            }
            if (present > cur)
                add_range(out, &any, (guint32)cur, (guint32)(present - 1));
            cur = present + 1;
            seq++;
        }
    }
}

static void
select_work(ImapJob *j)
{
    ImapSession *s = j->s;
    SelectData *d = j->data;
    const KrMailboxOps *ops = imap_g.ops;
    ImapSelectArgs *a = &j->cmd->u.select;
    gboolean had_old = s->mb != NULL;
    imap_close_mailbox_work(s);
    if (had_old)
        g_string_append(j->out, "* OK [CLOSED] Previous mailbox closed.\r\n");
    g_autoptr(GError) e = NULL;
    KrMailbox *mb = ops->open(imap_g.store->self, s->user, d->stname,
                              d->readonly ? KR_MAILBOX_READONLY : 0, &e);
    if (!mb) {
        imap_job_store_error(j, e, "select");
        return;
    }
    s->mb = mb;
    s->counter = ops->change_counter(mb);
    d->opened = TRUE;
    KrMailboxStatus st;
    ops->get_status(mb, &st);
    GString *out = j->out;
    imap_flags_lines(s, out);
    g_string_append_printf(out, "* %u EXISTS\r\n", st.messages);
    if (s->rev2) {
        /* RFC 9051 6.3.2: the mailbox's LIST response */
        const char *special = imap_special_use(d->name);
        g_string_append_printf(out, "* LIST (%s) \"/\" ", special ? special : "");
        imap_fmt_mailbox(out, d->name, TRUE);
        g_string_append(out, "\r\n");
    } else {
        /* Just opened, the session's \Recent messages are the newest
         * ones (it claimed, or sees unclaimed, [n, UIDNEXT)): counted from
         * the end, not over the whole view. */
        guint32 recent = 0;
        for (guint32 i = st.messages; i >= 1 && (ops->msg(mb, i)->flags & KR_FLAG_RECENT); i--)
            recent++;
        g_string_append_printf(out, "* %u RECENT\r\n", recent);
        guint32 first = 0;
        if (st.unseen > 0 && KR_STORE_HAS_OP(ops, first_unseen)) {
            first = ops->first_unseen(mb);
        } else {
            for (guint32 i = 1; st.unseen > 0 && i <= st.messages && !first; i++)
                if (!(ops->msg(mb, i)->flags & KR_FLAG_SEEN))
                    first = i;
        }
        if (first)
            g_string_append_printf(out, "* OK [UNSEEN %u] First unseen.\r\n", first);
    }
    g_string_append_printf(out, "* OK [UIDVALIDITY %u] UIDs valid.\r\n", st.uidvalidity);
    g_string_append_printf(out, "* OK [UIDNEXT %u] Predicted next UID.\r\n", st.uidnext);
    g_string_append_printf(out, "* OK [HIGHESTMODSEQ %" G_GUINT64_FORMAT "] Highest.\r\n",
                           st.highestmodseq);
    if (a->qresync && a->uidvalidity == st.uidvalidity && a->modseq < st.highestmodseq) {
        if (a->known_uids)
            imap_seqset_resolve(a->known_uids, st.uidnext ? st.uidnext - 1 : 0);
        g_autoptr(GString) gone = g_string_new(NULL);
        imap_vanished(s, a->known_uids, gone);
        if (gone->len)
            g_string_append_printf(out, "* VANISHED (EARLIER) %s\r\n", gone->str);
        for (guint32 i = 1; i <= st.messages; i++) {
            const KrMailboxMsg *m = ops->msg(mb, i);
            if (m->modseq <= a->modseq)
                continue;
            if (a->known_uids && !imap_seqset_contains(a->known_uids, m->uid))
                continue;
            g_string_append_printf(out, "* %u FETCH (UID %u ", i, m->uid);
            imap_msg_flags(s, out, m);
            g_string_append_printf(out, " MODSEQ (%" G_GUINT64_FORMAT "))\r\n", m->modseq);
        }
    }
    imap_job_tagged(j, "OK", d->readonly ? "READ-ONLY" : "READ-WRITE",
                    j->cmd->name == IMAP_CMD_EXAMINE ? "EXAMINE completed." : "SELECT completed.");
}

static void
select_done(ImapJob *j)
{
    ImapSession *s = j->s;
    SelectData *d = j->data;
    g_clear_pointer(&s->mailbox, g_free);
    if (!d->opened) {
        s->state = IMAP_S_AUTH;
        return;
    }
    s->state = IMAP_S_SELECTED;
    s->mailbox = g_steal_pointer(&d->name);
    s->readonly = d->readonly;
}

void
imap_cmd_select(ImapSession *s)
{
    ImapSelectArgs *a = &s->cmd->u.select;
    if (a->qresync && !s->qresync) {
        imap_tagged_done(s, "BAD", NULL, "QRESYNC is not enabled.");
        return;
    }
    char *name = imap_arg_mailbox(s, a->mailbox, FALSE);
    if (!name)
        return;
    if (a->condstore)
        s->condstore = TRUE;
    SelectData *d = g_new0(SelectData, 1);
    d->name = name;
    d->stname = imap_to_store_name(name);
    d->readonly = s->cmd->name == IMAP_CMD_EXAMINE;
    ImapJob *j = imap_job_new(s, select_work, IMAP_SYNC_NONE);
    j->data = d;
    j->free_data = select_data_free;
    j->done = select_done;
    imap_job_start(j);
}

/* --- CREATE, DELETE, RENAME, (UN)SUBSCRIBE ------------------------------------ */

typedef struct {
    char *name, *stname;
    char *to, *stto;
    gboolean closed; /* the selected mailbox was deleted */
} NameData;

static void
name_data_free(gpointer p)
{
    NameData *d = p;
    g_free(d->name);
    g_free(d->stname);
    g_free(d->to);
    g_free(d->stto);
    g_free(d);
}

static ImapJob *
name_job(ImapSession *s, ImapJobFunc work, char *name)
{
    NameData *d = g_new0(NameData, 1);
    d->name = name;
    d->stname = imap_to_store_name(name);
    ImapJob *j = imap_job_new(s, work, IMAP_SYNC_IF_CHANGED);
    j->data = d;
    j->free_data = name_data_free;
    return j;
}

static void
create_work(ImapJob *j)
{
    NameData *d = j->data;
    g_autoptr(GError) e = NULL;
    if (!imap_g.ops->create(imap_g.store->self, j->s->user, d->stname, &e))
        imap_job_store_error(j, e, "create");
    else
        imap_job_tagged(j, "OK", NULL, "CREATE completed.");
}

void
imap_cmd_create(ImapSession *s)
{
    ImapCommand *c = s->cmd;
    if (c->u.create.use) {
        imap_tagged_done(s, "NO", "USEATTR", "Special-use attributes cannot be set here.");
        return;
    }
    /* "a/b/" asks for a name that will hold children: the same here */
    gsize len = strlen(c->u.create.mailbox);
    if (len > 1 && c->u.create.mailbox[len - 1] == IMAP_SEP)
        c->u.create.mailbox[len - 1] = '\0';
    char *name = imap_arg_mailbox(s, c->u.create.mailbox, TRUE);
    if (!name)
        return;
    if (imap_mailbox_is_inbox(name)) {
        g_free(name);
        imap_tagged_done(s, "NO", "ALREADYEXISTS", "INBOX always exists.");
        return;
    }
    imap_job_start(name_job(s, create_work, name));
}

static void
delete_work(ImapJob *j)
{
    ImapSession *s = j->s;
    NameData *d = j->data;
    g_autoptr(GError) e = NULL;
    if (!imap_g.ops->remove(imap_g.store->self, s->user, d->stname, &e)) {
        imap_job_store_error(j, e, "delete");
        return;
    }
    if (s->mb && s->mailbox && strcmp(s->mailbox, d->name) == 0) {
        imap_close_mailbox_work(s);
        d->closed = TRUE;
        g_string_append(j->out, "* OK [CLOSED] The selected mailbox was deleted.\r\n");
    }
    imap_job_tagged(j, "OK", NULL, "DELETE completed.");
}

static void
closed_done(ImapJob *j)
{
    NameData *d = j->data;
    if (d->closed) {
        j->s->state = IMAP_S_AUTH;
        g_clear_pointer(&j->s->mailbox, g_free);
    }
}

void
imap_cmd_delete(ImapSession *s)
{
    char *name = imap_arg_mailbox(s, s->cmd->u.mbox.mailbox, FALSE);
    if (!name)
        return;
    if (imap_mailbox_is_inbox(name)) {
        g_free(name);
        imap_tagged_done(s, "NO", "CANNOT", "INBOX cannot be deleted.");
        return;
    }
    ImapJob *j = name_job(s, delete_work, name);
    j->done = closed_done;
    imap_job_start(j);
}

/* RENAME INBOX: its messages move to the new mailbox. */
static gboolean
rename_inbox(ImapJob *j, NameData *d, GError **e)
{
    const KrMailboxOps *ops = imap_g.ops;
    const char *user = j->s->user;
    if (!ops->create(imap_g.store->self, user, d->stto, e))
        return FALSE;
    KrMailbox *in = ops->open(imap_g.store->self, user, "INBOX", 0, e);
    if (!in)
        return FALSE;
    guint32 n = ops->count(in);
    g_autoptr(GArray) uids = g_array_sized_new(FALSE, FALSE, sizeof(guint32), n);
    for (guint32 i = 1; i <= n; i++)
        g_array_append_val(uids, ops->msg(in, i)->uid);
    gboolean ok = n == 0 || ops->copy(in, (const guint32 *)uids->data, uids->len, d->stto, TRUE,
                                      NULL, NULL, NULL, e);
    ops->close(in);
    return ok;
}

static void
rename_work(ImapJob *j)
{
    ImapSession *s = j->s;
    NameData *d = j->data;
    g_autoptr(GError) e = NULL;
    gboolean ok = imap_mailbox_is_inbox(d->name)
                      ? rename_inbox(j, d, &e)
                      : imap_g.ops->rename(imap_g.store->self, s->user, d->stname, d->stto, &e);
    if (!ok)
        imap_job_store_error(j, e, "rename");
    else
        imap_job_tagged(j, "OK", NULL, "RENAME completed.");
}

static void
rename_done(ImapJob *j)
{
    ImapSession *s = j->s;
    NameData *d = j->data;
    if (s->mailbox && strcmp(s->mailbox, d->name) == 0 && !imap_mailbox_is_inbox(d->name)) {
        g_free(s->mailbox);
        s->mailbox = g_strdup(d->to);
    }
}

void
imap_cmd_rename(ImapSession *s)
{
    char *from = imap_arg_mailbox(s, s->cmd->u.rename.from, FALSE);
    if (!from)
        return;
    char *to = imap_arg_mailbox(s, s->cmd->u.rename.to, TRUE);
    if (!to) {
        g_free(from);
        return;
    }
    if (imap_mailbox_is_inbox(to)) {
        g_free(from);
        g_free(to);
        imap_tagged_done(s, "NO", "ALREADYEXISTS", "INBOX always exists.");
        return;
    }
    ImapJob *j = name_job(s, rename_work, from);
    NameData *d = j->data;
    d->to = to;
    d->stto = imap_to_store_name(to);
    j->done = rename_done;
    imap_job_start(j);
}

static void
subscribe_work(ImapJob *j)
{
    NameData *d = j->data;
    gboolean on = j->cmd->name == IMAP_CMD_SUBSCRIBE;
    g_autoptr(GError) e = NULL;
    if (!imap_g.ops->subscribe(imap_g.store->self, j->s->user, d->stname, on, &e))
        imap_job_store_error(j, e, "subscribe");
    else
        imap_job_tagged(j, "OK", NULL, on ? "SUBSCRIBE completed." : "UNSUBSCRIBE completed.");
}

void
imap_cmd_subscribe(ImapSession *s)
{
    char *name = imap_arg_mailbox(s, s->cmd->u.mbox.mailbox, FALSE);
    if (name)
        imap_job_start(name_job(s, subscribe_work, name));
}

/* --- STATUS -------------------------------------------------------------------------- */

/* (worker) Messages with \Recent in folder stname: this session's view
 * if it is the selected folder, else what a read-only session sees there
 * (messages no session has claimed yet; opening it claims nothing). */
static guint32
status_recent(ImapSession *s, const char *stname)
{
    const KrMailboxOps *ops = imap_g.ops;
    if (s->mb && s->mailbox) {
        g_autofree char *sel = imap_to_store_name(s->mailbox);
        if (strcmp(sel, stname) == 0)
            return imap_recent_count(s->mb);
    }
    KrMailbox *mb = ops->open(imap_g.store->self, s->user, stname, KR_MAILBOX_READONLY, NULL);
    if (!mb)
        return 0;
    guint32 n = imap_recent_count(mb);
    ops->close(mb);
    return n;
}

void
imap_status_items(ImapSession *s, GString *out, guint items, const KrMailboxStatus *st,
                  const char *stname)
{
    gboolean first = TRUE;
    guint32 recent = items & IMAP_STATUS_RECENT ? status_recent(s, stname) : 0;
#define ITEM(bit, fmt, ...)                                                                        \
    if (items & (bit)) {                                                                           \
        g_string_append_printf(out, "%s" fmt, first ? "" : " ", __VA_ARGS__);                      \
        first = FALSE;                                                                             \
    }
    g_string_append_c(out, '(');
    ITEM(IMAP_STATUS_MESSAGES, "MESSAGES %u", st->messages);
    ITEM(IMAP_STATUS_RECENT, "RECENT %u", recent);
    ITEM(IMAP_STATUS_UIDNEXT, "UIDNEXT %u", st->uidnext);
    ITEM(IMAP_STATUS_UIDVALIDITY, "UIDVALIDITY %u", st->uidvalidity);
    ITEM(IMAP_STATUS_UNSEEN, "UNSEEN %u", st->unseen);
    ITEM(IMAP_STATUS_DELETED, "DELETED %u", st->deleted);
    ITEM(IMAP_STATUS_SIZE, "SIZE %" G_GINT64_FORMAT, st->size);
    ITEM(IMAP_STATUS_HIGHESTMODSEQ, "HIGHESTMODSEQ %" G_GUINT64_FORMAT, st->highestmodseq);
    ITEM(IMAP_STATUS_APPENDLIMIT, "APPENDLIMIT %" G_GINT64_FORMAT, imap_g.conf->max_literal);
#undef ITEM
    g_string_append_c(out, ')');
}

static void
status_work(ImapJob *j)
{
    ImapSession *s = j->s;
    NameData *d = j->data;
    KrMailboxStatus st;
    g_autoptr(GError) e = NULL;
    if (!imap_g.ops->status(imap_g.store->self, s->user, d->stname, &st, &e)) {
        imap_job_store_error(j, e, "status");
        return;
    }
    g_string_append(j->out, "* STATUS ");
    imap_fmt_mailbox(j->out, d->name, imap_utf8_names(s));
    g_string_append_c(j->out, ' ');
    imap_status_items(s, j->out, j->cmd->u.status.items, &st, d->stname);
    g_string_append(j->out, "\r\n");
    imap_job_tagged(j, "OK", NULL, "STATUS completed.");
}

void
imap_cmd_status(ImapSession *s)
{
    char *name = imap_arg_mailbox(s, s->cmd->u.status.mailbox, FALSE);
    if (!name)
        return;
    if (s->cmd->u.status.items & IMAP_STATUS_HIGHESTMODSEQ)
        s->condstore = TRUE;
    imap_job_start(name_job(s, status_work, name));
}

/* --- NOOP, CHECK, CLOSE, UNSELECT, EXPUNGE ----------------------------------------- */

static void
noop_work(ImapJob *j)
{
    imap_job_tagged(j, "OK", NULL,
                    j->cmd->name == IMAP_CMD_CHECK ? "CHECK completed." : "NOOP completed.");
}

void
imap_cmd_noop(ImapSession *s)
{
    if (s->state != IMAP_S_SELECTED) {
        imap_tagged_done(s, "OK", NULL, "NOOP completed.");
        return;
    }
    imap_job_start(imap_job_new(s, noop_work, IMAP_SYNC_ALWAYS));
}

static void
close_work(ImapJob *j)
{
    ImapSession *s = j->s;
    if (j->cmd->name == IMAP_CMD_CLOSE && !imap_g.ops->readonly(s->mb)) {
        g_autoptr(GError) e = NULL;
        if (!imap_g.ops->expunge(s->mb, NULL, 0, TRUE, NULL, &e))
            g_warning("%s: %s: CLOSE of %s: expunge: %s", s->srv->name, s->user, s->mailbox,
                      e->message);
    }
    imap_close_mailbox_work(s);
    imap_job_tagged(j, "OK", NULL,
                    j->cmd->name == IMAP_CMD_CLOSE ? "CLOSE completed." : "UNSELECT completed.");
}

static void
close_done(ImapJob *j)
{
    j->s->state = IMAP_S_AUTH;
    g_clear_pointer(&j->s->mailbox, g_free);
}

void
imap_cmd_close(ImapSession *s)
{
    ImapJob *j = imap_job_new(s, close_work, IMAP_SYNC_NONE);
    j->done = close_done;
    imap_job_start(j);
}

static void
expunge_work(ImapJob *j)
{
    ImapSession *s = j->s;
    const KrMailboxOps *ops = imap_g.ops;
    g_autoptr(GError) e = NULL;
    gboolean ok;
    if (j->cmd->uid) {
        g_autoptr(GArray) uids = g_array_new(FALSE, FALSE, sizeof(guint32));
        imap_set_uids(s, j->cmd->u.expunge.set, TRUE, uids);
        ok = uids->len == 0 ||
             ops->expunge(s->mb, (const guint32 *)uids->data, uids->len, TRUE, NULL, &e);
    } else {
        ok = ops->expunge(s->mb, NULL, 0, TRUE, NULL, &e);
    }
    if (!ok)
        imap_job_store_error(j, e, "expunge");
    else
        imap_job_tagged(j, "OK", NULL, "EXPUNGE completed.");
}

void
imap_cmd_expunge(ImapSession *s)
{
    if (s->readonly) {
        imap_tagged_done(s, "NO", "READ-ONLY", "Mailbox is read-only.");
        return;
    }
    imap_job_start(imap_job_new(s, expunge_work, IMAP_SYNC_ALWAYS));
}
