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
 *   formats messages until about CHUNK bytes of output are ready; the
 *   session writes them and calls again once the client has read them,
 *   so FETCH 1:* of a 100,000-message mailbox never sits in memory whole.
 *
 *   The whole message (BODY[], RFC822, with or without <partial>) is read
 *   straight from the stored file with bare LFs made CRLF and never needs
 *   MIME parsing; when it is at least STREAM_MIN octets it is the last
 *   item of its FETCH response and its literal is streamed chunk by chunk
 *   (its size is the store's RFC822.SIZE). Everything structural goes
 *   through imap-cmd-fetch-body.c (ENVELOPE/BODYSTRUCTURE cached in the
 *   store's per-message blob; sections from the parsed part table).
 *
 *   A message expunged by someone else meanwhile is left out and the
 *   command ends NO [EXPUNGEISSUED]; BINARY of a part in an unknown
 *   transfer encoding ends it NO [UNKNOWN-CTE]. FETCH without UID sends
 *   no expunges (RFC 9051 7.5.1).
 */
#include "imap-session.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define CHUNK      (256 * 1024)
#define STREAM_MIN (256 * 1024)

/* A whole-message literal being produced from the file. */
typedef struct {
    int fd;
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
    Wire w;            /* streaming the whole message (w.fd >= 0) */
    ImapSecStream *ss; /* ... or a section */
    guint64 ss_left;
    GString *tmp;
} FetchData;

static void
fetch_data_free(gpointer p)
{
    FetchData *d = p;
    if (d->w.fd >= 0)
        close(d->w.fd);
    imap_secstream_free(d->ss);
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

static void
item(GString *out)
{
    if (out->len && out->str[out->len - 1] != '(')
        g_string_append_c(out, ' ');
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

/* Open the content once per message. */
static gboolean
content_fd(ImapSession *s, guint32 uid, int *fd, GError **e)
{
    if (*fd < 0)
        *fd = imap_g.ops->open_content(s->mb, uid, e);
    return *fd >= 0;
}

/* The whole message, or its partial, in memory (small) or streamed
 * (returns TRUE with d->w set up; the literal header is in out). */
static gboolean
whole_section(FetchData *d, const ImapFetchSection *sec, const KrMailboxMsg *m, int fd,
              GString *out, gboolean stream)
{
    guint64 total = (guint64)m->size;
    guint64 from = sec->partial ? MIN(sec->offset, total) : 0;
    guint64 len = total - from;
    if (sec->partial)
        len = MIN(len, sec->length);
    Wire w = {.fd = fd, .skip = from, .left = len};
    imap_fmt_literal_header(out, len, FALSE);
    if (stream) {
        d->w = w;
        return TRUE;
    }
    if (!d->tmp)
        d->tmp = g_string_new(NULL);
    wire_pump(&w, out, d->tmp, (gsize)len);
    return FALSE;
}

/* One message's FETCH response into out; with a streamed literal last,
 * its closing parenthesis comes when the stream ends. FALSE: the
 * message was skipped (gone, unreadable). */
static gboolean
format_message(ImapJob *j, FetchData *d, guint32 uid, GString *out)
{
    ImapSession *s = j->s;
    ImapFetchArgs *a = &j->cmd->u.fetch;
    const KrMailboxOps *ops = imap_g.ops;
    guint32 seq = ops->seq_of_uid(s->mb, uid);
    const KrMailboxMsg *m = seq ? ops->msg(s->mb, seq) : NULL;
    if (!m)
        return FALSE;
    int fd = -1;
    ImapMsgInfo *mi = NULL;
    g_autoptr(GError) e = NULL;
    gboolean ok = TRUE, need_mi = (a->items & (IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY |
                                               IMAP_FETCH_BODYSTRUCTURE)) != 0;
    gint streamed = -1;
    ImapSecStream *defer = NULL;
    const ImapFetchSection *defer_sec = NULL;
    guint64 defer_size = 0;
    for (guint i = 0; i < a->n_sections; i++) {
        const ImapFetchSection *sec = &a->sections[i];
        if (!whole_message(sec))
            need_mi = TRUE;
        else if (streamed < 0 && (guint64)m->size >= STREAM_MIN &&
                 (!sec->partial || sec->length >= STREAM_MIN))
            streamed = (gint)i;
    }
    if (need_mi && !(mi = imap_msginfo_get(s, uid, &fd, &e)))
        goto fail;
    g_string_append_printf(out, "* %u FETCH (", seq);
    if (a->items & IMAP_FETCH_UID) {
        item(out);
        g_string_append_printf(out, "UID %u", uid);
    }
    if ((a->items & IMAP_FETCH_FLAGS) || sorted_has(d->seen_now, uid)) {
        item(out);
        imap_msg_flags(s, out, m);
    }
    if (a->items & IMAP_FETCH_INTERNALDATE) {
        item(out);
        g_string_append(out, "INTERNALDATE ");
        imap_datetime_format(out, m->internal_date, 0);
    }
    if (a->items & IMAP_FETCH_RFC822_SIZE) {
        item(out);
        g_string_append_printf(out, "RFC822.SIZE %" G_GINT64_FORMAT, m->size);
    }
    if ((a->items & IMAP_FETCH_MODSEQ) || (s->condstore && sorted_has(d->seen_now, uid))) {
        item(out);
        g_string_append_printf(out, "MODSEQ (%" G_GUINT64_FORMAT ")", m->modseq);
    }
    if (a->items & IMAP_FETCH_ENVELOPE) {
        item(out);
        g_string_append_printf(out, "ENVELOPE %s", imap_msginfo_envelope(mi));
    }
    if (a->items & IMAP_FETCH_BODY) {
        item(out);
        g_string_append_printf(out, "BODY %s", imap_msginfo_body(mi, FALSE));
    }
    if (a->items & IMAP_FETCH_BODYSTRUCTURE) {
        item(out);
        g_string_append_printf(out, "BODYSTRUCTURE %s", imap_msginfo_body(mi, TRUE));
    }
    for (guint i = 0; i < a->n_sections && ok; i++) {
        const ImapFetchSection *sec = &a->sections[i];
        if ((gint)i == streamed)
            continue;
        gsize mark = out->len;
        item(out);
        imap_fetch_section_name(sec, out);
        g_string_append_c(out, ' ');
        if (whole_message(sec)) {
            ok = content_fd(s, uid, &fd, &e);
            if (ok)
                whole_section(d, sec, m, fd, out, FALSE);
            continue;
        }
        if (sec->kind == IMAP_SECTION_BINARY_SIZE) {
            guint64 size = 0;
            if (imap_msginfo_section_size(s, mi, uid, &fd, sec, &size, &e)) {
                g_string_append_printf(out, "%" G_GUINT64_FORMAT, size);
            } else if (imap_msginfo_no_part(e)) {
                g_clear_error(&e);
                g_string_append(out, "0");
            } else {
                ok = FALSE;
            }
            continue;
        }
        guint64 size = 0;
        ImapSecStream *st = imap_msginfo_stream(s, mi, uid, &fd, sec, &size, &e);
        if (!st) {
            if (imap_msginfo_no_part(e)) {
                g_clear_error(&e);
                g_string_append(out, sec->kind == IMAP_SECTION_BINARY ? "NIL" : "\"\"");
                continue;
            }
            ok = FALSE;
            continue;
        }
        if (!defer && streamed < 0 && size >= STREAM_MIN) {
            /* a big section goes last, streamed */
            defer = st;
            defer_sec = sec;
            defer_size = size;
            g_string_truncate(out, mark);
            continue;
        }
        g_autoptr(GByteArray) b = g_byte_array_new();
        ok = sec_read_all(st, size, b, &e);
        imap_secstream_free(st);
        if (!ok)
            continue;
        gboolean nul = sec->kind == IMAP_SECTION_BINARY && b->len && memchr(b->data, '\0', b->len);
        imap_fmt_literal(out, b->data, b->len, nul);
    }
    if (!ok)
        goto fail;
    if (defer) {
        item(out);
        imap_fetch_section_name(defer_sec, out);
        g_string_append_c(out, ' ');
        imap_fmt_literal_header(out, defer_size, defer_sec->kind == IMAP_SECTION_BINARY);
        d->ss = defer;
        d->ss_left = defer_size;
        if (fd >= 0)
            close(fd);
        imap_msginfo_free(mi);
        return TRUE;
    }
    if (streamed >= 0) {
        const ImapFetchSection *sec = &a->sections[streamed];
        if (!content_fd(s, uid, &fd, &e))
            goto fail;
        item(out);
        imap_fetch_section_name(sec, out);
        g_string_append_c(out, ' ');
        whole_section(d, sec, m, fd, out, TRUE);
        imap_msginfo_free(mi);
        return TRUE; /* d->w owns fd now */
    }
    g_string_append(out, ")\r\n");
    if (fd >= 0)
        close(fd);
    imap_msginfo_free(mi);
    return TRUE;
fail:
    imap_secstream_free(defer);
    if (fd >= 0)
        close(fd);
    imap_msginfo_free(mi);
    if (g_error_matches(e, KR_STORE_ERROR, KR_STORE_ERROR_NO_MESSAGE)) {
        d->expunged = TRUE;
    } else if (e && imap_msginfo_unknown_cte(e)) {
        d->unknown_cte = TRUE;
    } else {
        d->io_error = TRUE;
        g_warning("%s: %s: FETCH of message %u in %s: %s", s->srv->name, s->user, uid, s->mailbox,
                  e ? e->message : "failed");
    }
    return FALSE;
}

static void
fetch_work(ImapJob *j)
{
    FetchData *d = j->data;
    if (!d->began && !fetch_begin(j, d))
        return;
    g_autoptr(GString) msg = g_string_new(NULL);
    while (j->out->len < CHUNK) {
        if (d->ss) {
            sec_pump(d, j->out, CHUNK - MIN(j->out->len, CHUNK) + 1);
            if (d->ss_left == 0) {
                g_clear_pointer(&d->ss, imap_secstream_free);
                g_string_append(j->out, ")\r\n");
            }
            continue;
        }
        if (d->w.fd >= 0) {
            if (!d->tmp)
                d->tmp = g_string_new(NULL);
            wire_pump(&d->w, j->out, d->tmp, CHUNK - MIN(j->out->len, CHUNK) + 1);
            if (d->w.left == 0) {
                close(d->w.fd);
                d->w.fd = -1;
                g_string_append(j->out, ")\r\n");
            }
            continue;
        }
        if (d->next >= d->uids->len)
            break;
        guint32 uid = g_array_index(d->uids, guint32, d->next++);
        g_string_truncate(msg, 0);
        if (format_message(j, d, uid, msg))
            g_string_append_len(j->out, msg->str, (gssize)msg->len);
    }
    j->more = d->w.fd >= 0 || d->ss || d->next < d->uids->len;
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
    d->w.fd = -1;
    ImapJob *j = imap_job_new(s, fetch_work, s->cmd->uid ? IMAP_SYNC_IF_CHANGED : IMAP_SYNC_NONE);
    j->data = d;
    j->free_data = fetch_data_free;
    imap_job_start(j);
}
