/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-fetch.c - FETCH and UID FETCH (RFC 9051 6.4.5): FLAGS,
 *   INTERNALDATE, RFC822.SIZE, UID, MODSEQ (CONDSTORE), ENVELOPE, BODY,
 *   BODYSTRUCTURE, BODY[section]<partial> and its PEEK form, RFC822.*,
 *   BINARY[...] and BINARY.SIZE[...] (RFC 3516), CHANGEDSINCE and
 *   VANISHED (RFC 7162).
 *
 * SYNOPSIS
 *   imap_cmd_fetch(s)
 *
 * DESCRIPTION
 *   The job resolves the set against the view, applies CHANGEDSINCE, sets
 *   \Seen at once for every message a non-PEEK section is fetched from
 *   (one store call; those messages then report their FLAGS), and then
 *   produces output until about CHUNK bytes are ready; the session writes
 *   them and runs the job again once the client has read them. The work
 *   is resumable inside a message: a section of STREAM_MIN octets or more
 *   is sent as its literal header, then in chunks over as many rounds as
 *   it takes, then the message's next item. So neither FETCH 1:* of a
 *   100,000-message mailbox nor a FETCH asking for the same 50 MB
 *   attachment ten times ever sits in memory whole.
 *
 *   FLAGS carry \Recent for IMAP4rev1 sessions (imap_msg_flags);
 *   INTERNALDATE is shown in the server's local zone (TZ, DST included),
 *   as Dovecot does. Messages are found by walking the view in sequence
 *   (the set's UIDs ascend), a binary search only when that misses, and
 *   the per-message text is appended inline (imap_put, imap_fmt_u64).
 *
 *   The whole message (BODY[], RFC822, with or without <partial>) is read
 *   straight from the stored file with bare LFs made CRLF and needs no
 *   MIME parsing (its size is the store's RFC822.SIZE); nor does a
 *   top-level header section (BODY[HEADER], HEADER.FIELDS(.NOT),
 *   RFC822.HEADER), read from the header alone. Everything
 *   structural goes through imap-cmd-fetch-body.c (ENVELOPE/BODYSTRUCTURE
 *   cached in the store's per-message blob; sections from the part table;
 *   ENVELOPE alone needs only the header parsed).
 *
 *   A message expunged by someone else meanwhile is left out and the
 *   command ends NO [EXPUNGEISSUED]. Once a message's response has begun,
 *   a section that cannot be read is sent empty (NIL for BINARY) and the
 *   command ends NO: BINARY of a part in an unknown transfer encoding
 *   [UNKNOWN-CTE], a read error [SERVERBUG]. A file that shrank while
 *   being sent is padded with spaces so the literal keeps its announced
 *   size. FETCH without UID sends no expunges (RFC 9051 7.5.1).
 */
#include "imap-session.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define CHUNK      (256 * 1024)
#define STREAM_MIN (64 * 1024)

/* A whole-message literal being produced from the file. */
typedef struct {
    int fd;       /* borrowed from FetchData.fd */
    guint64 off;  /* file offset */
    guint64 skip; /* wire octets still to skip (partial origin) */
    guint64 left; /* wire octets still to send */
    gboolean last_cr;
} Wire;

typedef struct {
    GArray *uids;     /* messages to answer, ascending UIDs */
    guint next;       /* index of the next one */
    GArray *seen_now; /* UIDs this FETCH gave \Seen, ascending */
    gboolean began;
    gboolean expunged;    /* a message was gone */
    gboolean unknown_cte; /* BINARY of an unknown encoding */
    gboolean io_error;
    /* the message whose response is being produced */
    gboolean in_msg;
    guint32 uid;
    guint32 seq;     /* its sequence number; the next one's is usually seq + 1 */
    int fd;          /* its content, once needed */
    ImapMsgInfo *mi; /* its MIME description, once needed */
    guint sec_next;  /* next section to answer */
    gboolean first_item;
    /* a literal being streamed */
    gboolean wire_on;
    Wire w;            /* the whole message ... */
    ImapSecStream *ss; /* ... or a section */
    guint64 ss_left;
    GString *tmp;
} FetchData;

static void
msg_end(FetchData *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    g_clear_pointer(&d->mi, imap_msginfo_free);
    g_clear_pointer(&d->ss, imap_secstream_free);
    d->wire_on = FALSE;
    d->in_msg = FALSE;
}

static void
fetch_data_free(gpointer p)
{
    FetchData *d = p;
    msg_end(d);
    if (d->uids)
        g_array_unref(d->uids);
    if (d->seen_now)
        g_array_unref(d->seen_now);
    if (d->tmp)
        g_string_free(d->tmp, TRUE);
    g_free(d);
}

/* Append up to budget wire octets of w to out. A file shorter than the
 * size promised in the literal is padded with spaces, so the protocol
 * stays in step. */
static void
wire_pump(Wire *w, GString *out, GString *tmp, gsize budget)
{
    char buf[65536];
    gsize added = 0;
    while (w->left > 0 && added < budget) {
        ssize_t n = pread(w->fd, buf, sizeof buf, (off_t)w->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            gsize pad = (gsize)MIN(w->left, (guint64)(budget - added));
            for (gsize i = 0; i < pad; i++)
                g_string_append_c(out, ' ');
            w->left -= pad;
            added += pad;
            continue;
        }
        w->off += (guint64)n;
        g_string_truncate(tmp, 0);
        kr_store_crlf(buf, (gsize)n, tmp, &w->last_cr);
        gsize p = 0;
        if (w->skip > 0) {
            p = (gsize)MIN(w->skip, (guint64)tmp->len);
            w->skip -= p;
        }
        gsize take = (gsize)MIN((guint64)(tmp->len - p), w->left);
        g_string_append_len(out, tmp->str + p, (gssize)take);
        w->left -= take;
        added += take;
    }
}

/* Append up to budget octets of the section stream; padded with spaces
 * if it ends early (the file changed), so the literal stays whole. */
static void
sec_pump(FetchData *d, GString *out, gsize budget)
{
    char buf[65536];
    gsize added = 0;
    while (d->ss_left > 0 && added < budget) {
        gsize want = (gsize)MIN((guint64)sizeof buf, d->ss_left);
        g_autoptr(GError) e = NULL;
        gssize n = imap_secstream_read(d->ss, buf, want, &e);
        if (n <= 0) {
            gsize pad = (gsize)MIN(d->ss_left, (guint64)(budget - added));
            for (gsize i = 0; i < pad; i++)
                g_string_append_c(out, ' ');
            d->ss_left -= pad;
            added += pad;
            continue;
        }
        g_string_append_len(out, buf, n);
        d->ss_left -= (guint64)n;
        added += (gsize)n;
    }
}

/* A small section stream read whole into memory; FALSE on error. */
static gboolean
sec_read_all(ImapSecStream *ss, guint64 size, GByteArray *into, GError **e)
{
    g_byte_array_set_size(into, (guint)size);
    gsize got = 0;
    while (got < size) {
        gssize n = imap_secstream_read(ss, into->data + got, (gsize)(size - got), e);
        if (n < 0)
            return FALSE;
        if (n == 0)
            break;
        got += (gsize)n;
    }
    if (got < size)
        memset(into->data + got, ' ', (gsize)(size - got));
    return TRUE;
}

static gboolean
sorted_has(const GArray *a, guint32 v)
{
    guint lo = 0, hi = a ? a->len : 0;
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

/* The separator before an item (none before the first of a message). */
static inline void
item(FetchData *d, GString *out)
{
    if (!d->first_item)
        imap_putc(out, ' ');
    d->first_item = FALSE;
}

/* A section that is the whole message in wire form: no MIME needed. */
static gboolean
whole_message(const ImapFetchSection *sec)
{
    return sec->kind == IMAP_SECTION_BODY && sec->n_part == 0 && sec->text == IMAP_SECTION_ALL;
}

static gboolean
sets_seen(const ImapFetchSection *sec)
{
    return !sec->peek && sec->kind != IMAP_SECTION_BINARY_SIZE;
}

/* First run: resolve, CHANGEDSINCE, VANISHED, \Seen. FALSE: answered. */
static gboolean
fetch_begin(ImapJob *j, FetchData *d)
{
    ImapSession *s = j->s;
    ImapFetchArgs *a = &j->cmd->u.fetch;
    const KrMailboxOps *ops = imap_g.ops;
    d->began = TRUE;
    KrMailboxStatus st;
    ops->get_status(s->mb, &st);
    g_autoptr(ImapSeqSet) known = j->cmd->uid && a->vanished ? imap_seqset_copy(a->set) : NULL;
    d->uids = g_array_new(FALSE, FALSE, sizeof(guint32));
    if (!imap_set_uids(s, a->set, j->cmd->uid, d->uids)) {
        imap_job_tagged(j, "BAD", NULL, "Invalid message sequence number.");
        return FALSE;
    }
    if (a->changedsince_set) {
        guint w = 0;
        for (guint i = 0; i < d->uids->len; i++) {
            guint32 uid = g_array_index(d->uids, guint32, i);
            const KrMailboxMsg *m = ops->msg(s->mb, ops->seq_of_uid(s->mb, uid));
            if (m && m->modseq > a->changedsince)
                g_array_index(d->uids, guint32, w++) = uid;
        }
        g_array_set_size(d->uids, w);
    }
    if (known && a->changedsince < st.highestmodseq) {
        imap_seqset_resolve(known, st.uidnext > 1 ? st.uidnext - 1 : 0);
        g_autoptr(GString) gone = g_string_new(NULL);
        imap_vanished(s, known, gone);
        if (gone->len)
            g_string_append_printf(j->out, "* VANISHED (EARLIER) %s\r\n", gone->str);
    }
    gboolean seen = FALSE;
    for (guint i = 0; i < a->n_sections; i++)
        seen |= sets_seen(&a->sections[i]);
    if (seen && !ops->readonly(s->mb)) {
        d->seen_now = g_array_new(FALSE, FALSE, sizeof(guint32));
        for (guint i = 0; i < d->uids->len; i++) {
            guint32 uid = g_array_index(d->uids, guint32, i);
            const KrMailboxMsg *m = ops->msg(s->mb, ops->seq_of_uid(s->mb, uid));
            if (m && !(m->flags & KR_FLAG_SEEN))
                g_array_append_val(d->seen_now, uid);
        }
        g_autoptr(GError) e = NULL;
        if (d->seen_now->len > 0 &&
            !ops->set_flags(s->mb, (const guint32 *)d->seen_now->data, d->seen_now->len,
                            KR_FLAGS_ADD, KR_FLAG_SEEN, NULL, 0, NULL, &e)) {
            g_warning("%s: %s: FETCH cannot set \\Seen: %s", s->srv->name, s->user, e->message);
            g_array_set_size(d->seen_now, 0);
        }
    }
    return TRUE;
}

/* The start of a message's response: everything but the sections. The
 * MIME description and the content fd are got first, so a message that
 * is gone is left out before anything of it is sent. FALSE: skipped. */
static gboolean
msg_begin(ImapJob *j, FetchData *d, guint32 uid, GString *out)
{
    ImapSession *s = j->s;
    ImapFetchArgs *a = &j->cmd->u.fetch;
    const KrMailboxOps *ops = imap_g.ops;
    /* UIDs ascend: the next message of the view is the likely one (no
     * binary search per message for 1:*) */
    guint32 seq = d->seq + 1;
    const KrMailboxMsg *m = seq <= ops->count(s->mb) ? ops->msg(s->mb, seq) : NULL;
    if (!m || m->uid != uid) {
        seq = ops->seq_of_uid(s->mb, uid);
        m = seq ? ops->msg(s->mb, seq) : NULL;
    }
    if (!m)
        return FALSE;
    d->uid = uid;
    d->seq = seq;
    d->fd = -1;
    d->sec_next = 0;
    gboolean need_mi =
        (a->items & (IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY | IMAP_FETCH_BODYSTRUCTURE)) != 0;
    ImapMsgNeed need =
        a->items & (IMAP_FETCH_BODY | IMAP_FETCH_BODYSTRUCTURE) ? IMAP_MI_TEXTS : IMAP_MI_ENVELOPE;
    gboolean need_fd = FALSE;
    for (guint i = 0; i < a->n_sections; i++) {
        need_fd = TRUE;
        if (!whole_message(&a->sections[i]) && !imap_msginfo_header_only(&a->sections[i]))
            need_mi = TRUE, need = IMAP_MI_FULL;
    }
    g_autoptr(GError) e = NULL;
    if ((need_mi && !(d->mi = imap_msginfo_get(s, uid, &d->fd, need, &e))) ||
        (need_fd && d->fd < 0 && (d->fd = ops->open_content(s->mb, uid, &e)) < 0)) {
        msg_end(d);
        if (g_error_matches(e, KR_STORE_ERROR, KR_STORE_ERROR_NO_MESSAGE)) {
            d->expunged = TRUE;
        } else {
            d->io_error = TRUE;
            g_warning("%s: %s: FETCH of message %u in %s: %s", s->srv->name, s->user, uid,
                      s->mailbox, e ? e->message : "failed");
        }
        return FALSE;
    }
    d->in_msg = TRUE;
    d->first_item = TRUE;
    imap_put(out, "* ", 2);
    imap_fmt_u64(out, seq);
    imap_put(out, " FETCH (", 8);
    if (a->items & IMAP_FETCH_UID) {
        item(d, out);
        imap_put(out, "UID ", 4);
        imap_fmt_u64(out, uid);
    }
    if ((a->items & IMAP_FETCH_FLAGS) || sorted_has(d->seen_now, uid)) {
        item(d, out);
        imap_msg_flags(s, out, m);
    }
    if (a->items & IMAP_FETCH_INTERNALDATE) {
        item(d, out);
        imap_put(out, "INTERNALDATE ", 13);
        /* in the server's local zone, as Dovecot does */
        imap_datetime_format(out, m->internal_date, imap_local_tz(m->internal_date));
    }
    if (a->items & IMAP_FETCH_RFC822_SIZE) {
        item(d, out);
        imap_put(out, "RFC822.SIZE ", 12);
        imap_fmt_u64(out, m->size > 0 ? (guint64)m->size : 0);
    }
    if ((a->items & IMAP_FETCH_MODSEQ) || (s->condstore && sorted_has(d->seen_now, uid))) {
        item(d, out);
        imap_put(out, "MODSEQ (", 8);
        imap_fmt_u64(out, m->modseq);
        g_string_append_c(out, ')');
    }
    gsize len = 0;
    if (a->items & IMAP_FETCH_ENVELOPE) {
        item(d, out);
        imap_put(out, "ENVELOPE ", 9);
        const char *t = imap_msginfo_envelope(d->mi, &len);
        imap_put(out, t, len);
    }
    if (a->items & IMAP_FETCH_BODY) {
        item(d, out);
        imap_put(out, "BODY ", 5);
        const char *t = imap_msginfo_body(d->mi, FALSE, &len);
        imap_put(out, t, len);
    }
    if (a->items & IMAP_FETCH_BODYSTRUCTURE) {
        item(d, out);
        imap_put(out, "BODYSTRUCTURE ", 14);
        const char *t = imap_msginfo_body(d->mi, TRUE, &len);
        imap_put(out, t, len);
    }
    return TRUE;
}

/* A section that could not be read, once the response has begun. */
static void
sec_failed(ImapJob *j, FetchData *d, const ImapFetchSection *sec, GError *e, GString *out)
{
    ImapSession *s = j->s;
    if (imap_msginfo_unknown_cte(e)) {
        d->unknown_cte = TRUE;
    } else if (!imap_msginfo_no_part(e)) {
        d->io_error = TRUE;
        g_warning("%s: %s: FETCH of message %u in %s: %s", s->srv->name, s->user, d->uid,
                  s->mailbox, e ? e->message : "failed");
    }
    g_string_append(out, sec->kind == IMAP_SECTION_BINARY ? "NIL" : "\"\"");
}

/* Answer the message's next section: in out if small, else its literal
 * header in out and the stream set up (d->wire_on or d->ss). */
static void
msg_section(ImapJob *j, FetchData *d, GString *out)
{
    ImapSession *s = j->s;
    const ImapFetchSection *sec = &j->cmd->u.fetch.sections[d->sec_next++];
    const KrMailboxMsg *m = imap_g.ops->msg(s->mb, d->seq);
    g_autoptr(GError) e = NULL;
    item(d, out);
    imap_fetch_section_name(sec, out);
    g_string_append_c(out, ' ');
    if (sec->kind == IMAP_SECTION_BINARY_SIZE) {
        guint64 size = 0;
        if (imap_msginfo_section_size(s, d->mi, d->uid, &d->fd, sec, &size, &e))
            g_string_append_printf(out, "%" G_GUINT64_FORMAT, size);
        else if (imap_msginfo_no_part(e))
            g_string_append(out, "0");
        else
            sec_failed(j, d, sec, e, out);
        return;
    }
    if (whole_message(sec)) {
        guint64 total = m ? (guint64)m->size : 0;
        guint64 from = sec->partial ? MIN(sec->offset, total) : 0;
        guint64 len = total - from;
        if (sec->partial)
            len = MIN(len, sec->length);
        Wire w = {.fd = d->fd, .skip = from, .left = len};
        imap_fmt_literal_header(out, len, FALSE);
        if (len >= STREAM_MIN) {
            d->w = w;
            d->wire_on = TRUE;
        } else {
            wire_pump(&w, out, d->tmp, (gsize)len);
        }
        return;
    }
    guint64 size = 0;
    ImapSecStream *st = imap_msginfo_stream(s, d->mi, d->uid, &d->fd, sec, &size, &e);
    if (!st) {
        sec_failed(j, d, sec, e, out);
        return;
    }
    if (size >= STREAM_MIN) {
        imap_fmt_literal_header(out, size, sec->kind == IMAP_SECTION_BINARY);
        d->ss = st;
        d->ss_left = size;
        return;
    }
    g_autoptr(GByteArray) b = g_byte_array_new();
    if (!sec_read_all(st, size, b, &e)) {
        imap_secstream_free(st);
        sec_failed(j, d, sec, e, out);
        return;
    }
    imap_secstream_free(st);
    gboolean nul = sec->kind == IMAP_SECTION_BINARY && b->len && memchr(b->data, '\0', b->len);
    imap_fmt_literal(out, b->data, b->len, nul);
}

static void
fetch_work(ImapJob *j)
{
    FetchData *d = j->data;
    ImapFetchArgs *a = &j->cmd->u.fetch;
    if (!d->began && !fetch_begin(j, d))
        return;
    if (!d->tmp)
        d->tmp = g_string_new(NULL);
    GString *out = j->out;
    if (out->allocated_len < CHUNK + CHUNK / 4) { /* room for a round: no regrowing */
        gsize l = out->len;
        g_string_set_size(out, CHUNK + CHUNK / 4);
        g_string_truncate(out, l);
    }
    while (out->len < CHUNK) {
        gsize budget = CHUNK - out->len;
        if (d->wire_on) {
            wire_pump(&d->w, out, d->tmp, budget);
            d->wire_on = d->w.left > 0;
        } else if (d->ss) {
            sec_pump(d, out, budget);
            if (d->ss_left == 0)
                g_clear_pointer(&d->ss, imap_secstream_free);
        } else if (d->in_msg && d->sec_next < a->n_sections) {
            msg_section(j, d, out);
        } else if (d->in_msg) {
            imap_put(out, ")\r\n", 3);
            msg_end(d);
        } else if (d->next < d->uids->len) {
            msg_begin(j, d, g_array_index(d->uids, guint32, d->next++), out);
        } else {
            break;
        }
    }
    j->more = d->in_msg || d->next < d->uids->len;
    if (j->more)
        return;
    if (d->expunged)
        imap_job_tagged(j, "NO", "EXPUNGEISSUED", "Some messages were expunged meanwhile.");
    else if (d->unknown_cte)
        imap_job_tagged(j, "NO", "UNKNOWN-CTE", "Unknown content transfer encoding.");
    else if (d->io_error)
        imap_job_tagged(j, "NO", "SERVERBUG", "Some messages could not be read.");
    else
        imap_job_tagged(j, "OK", NULL, "FETCH completed.");
}

void
imap_cmd_fetch(ImapSession *s)
{
    ImapFetchArgs *a = &s->cmd->u.fetch;
    if (a->vanished && !s->qresync) {
        imap_tagged_done(s, "BAD", NULL, "VANISHED needs QRESYNC enabled.");
        return;
    }
    if (a->items & IMAP_FETCH_MODSEQ)
        s->condstore = TRUE;
    FetchData *d = g_new0(FetchData, 1);
    d->fd = -1;
    ImapJob *j = imap_job_new(s, fetch_work, s->cmd->uid ? IMAP_SYNC_IF_CHANGED : IMAP_SYNC_NONE);
    j->data = d;
    j->free_data = fetch_data_free;
    imap_job_start(j);
}
