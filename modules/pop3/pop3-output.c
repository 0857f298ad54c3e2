/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   pop3-output.c - POP3 multi-line replies, streamed: LIST and UIDL
 *   listings, RETR and TOP message content.
 *
 * SYNOPSIS
 *   pop3_out_listing(s, what)          LIST or UIDL of every message
 *   pop3_out_content(s, seq, top, n)   RETR seq, or TOP seq n
 *   pop3_out_free(s)                   drop an output in progress
 *   pop3_uidl_of(s, msg)               the UIDL string of a message
 *
 * DESCRIPTION
 *   Output is produced in pieces so that neither a 100,000-line UIDL nor
 *   a 50 MB message is ever held whole in memory: a piece is written,
 *   and the next one is made when the connection's output queue is below
 *   LOW_WATER (checked when the loop is idle, then every millisecond
 *   while the client is slow to read).
 *
 *   Message content is read in a worker thread (the store's
 *   open_content(), then CHUNK bytes per job), converted to the wire form
 *   there (bare LF -> CRLF, dot-stuffing, the final "."), and written on
 *   the loop. "+OK" goes out only once the message could be opened.
 *
 *   Read-ahead: after a RETR, the following messages not marked deleted
 *   (up to RA_COUNT of them, RA_BYTES in all, each at most READAHEAD_MAX)
 *   are read and converted by one worker job while the client takes in
 *   the reply; RETRs of them are then answered at once from memory, also
 *   while the next batch is being read. Commands that need the mailbox
 *   meanwhile (another RETR, TOP, QUIT) wait for that job; LIST, UIDL,
 *   STAT, DELE, RSET and NOOP do not (open_content leaves the view alone,
 *   see kr-store.h). Clients download in order, so most RETRs never wait
 *   for a worker thread.
 *
 *   UIDL: the store's guid for the message (its Maildir file name) when
 *   it is 1..70 printable characters (RFC 1939), else the SHA-1 of it in
 *   hex; either way stable for the message's life.
 */
#include "pop3.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK         (256 * 1024)
#define LOW_WATER     (256 * 1024)
#define LISTING_PIECE (64 * 1024)
#define READAHEAD_MAX (256 * 1024)

typedef enum { OUT_LIST, OUT_UIDL, OUT_CONTENT } OutKind;

struct Pop3Out {
    OutKind kind;
    guint32 seq; /* listing: next message; content: the message */
    guint32 uid;
    gboolean top; /* TOP (else RETR) */
    Pop3Top tp;
    Pop3Stuff st;
    int fd;
    gint64 off;
    gboolean started; /* "+OK" sent */
};

typedef struct {
    Pop3Session *s;
    Pop3Out *o;
    GString *buf;
    gboolean eof;
    GError *error;
} ReadJob;

char *
pop3_uidl_of(Pop3Session *s, const KrMailboxMsg *m)
{
    if (m->guid && pop3_uidl_ok(m->guid))
        return g_strdup(m->guid);
    return g_compute_checksum_for_string(G_CHECKSUM_SHA1, m->guid ? m->guid : "", -1);
}

void
pop3_out_free(Pop3Session *s)
{
    Pop3Out *o = s->out;
    if (!o)
        return;
    if (o->fd >= 0)
        close(o->fd);
    g_free(o);
    s->out = NULL;
}

static void out_finish(Pop3Session *s);
static void next_piece(Pop3Session *s);

/* Go on with the output in progress once the connection's queue is low. */
static gboolean
drain_check(gpointer p)
{
    Pop3Session *s = p;
    s->timer = 0;
    if (s->dead || !s->out) {
        pop3_session_reap(s);
        return G_SOURCE_REMOVE;
    }
    if (kr_conn_output_pending(s->conn) > LOW_WATER) {
        s->timer = g_timeout_add(1, drain_check, s); /* the client is slow */
        return G_SOURCE_REMOVE;
    }
    next_piece(s);
    return G_SOURCE_REMOVE;
}

static void
wait_drain(Pop3Session *s)
{
    /* An idle-priority check lets the connection write first. */
    s->timer = g_timeout_add_full(G_PRIORITY_DEFAULT_IDLE, 0, drain_check, s, NULL);
}

/* --- listings ------------------------------------------------------------------- */

static void
listing_piece(Pop3Session *s)
{
    Pop3Out *o = s->out;
    const KrMailboxOps *ops = pop3_g.ops;
    GString *b = g_string_sized_new(LISTING_PIECE + 256);
    while (o->seq <= s->n && b->len < LISTING_PIECE) {
        guint32 i = o->seq++;
        if (pop3_is_deleted(s, i))
            continue;
        const KrMailboxMsg *m = ops->msg(s->mb, i);
        if (o->kind == OUT_LIST) {
            g_string_append_printf(b, "%u %" G_GINT64_FORMAT "\r\n", i, m->size);
        } else if (m->guid && pop3_uidl_ok(m->guid)) {
            g_string_append_printf(b, "%u %s\r\n", i, m->guid);
        } else {
            g_autofree char *u = pop3_uidl_of(s, m);
            g_string_append_printf(b, "%u %s\r\n", i, u);
        }
    }
    gboolean done = o->seq > s->n;
    if (done)
        g_string_append(b, ".\r\n");
    kr_conn_write(s->conn, b->str, b->len);
    g_string_free(b, TRUE);
    if (done)
        out_finish(s);
    else
        wait_drain(s);
}

void
pop3_out_listing(Pop3Session *s, Pop3CmdId what)
{
    Pop3Out *o = g_new0(Pop3Out, 1);
    o->kind = what == POP3_CMD_LIST ? OUT_LIST : OUT_UIDL;
    o->seq = 1;
    o->fd = -1;
    s->out = o;
    s->busy = TRUE;
    kr_conn_pause(s->conn);
    if (o->kind == OUT_LIST)
        kr_conn_printf(s->conn, "+OK %u messages (%" G_GINT64_FORMAT " octets)\r\n", s->n - s->ndel,
                       s->total - s->del_size);
    else
        kr_conn_printf(s->conn, "+OK\r\n");
    listing_piece(s);
}

/* --- content -------------------------------------------------------------------- */

/* Read up to max bytes of fd at off into a new buffer; *eof_r when the
 * file ends there. NULL with error. */
static char *
read_some(int fd, gint64 off, gsize max, gsize *len_r, gboolean *eof_r, GError **error)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "fstat: %s",
                    g_strerror(errno));
        return NULL;
    }
    gsize want = st.st_size > off ? (gsize)(st.st_size - off) : 0;
    if (want > max)
        want = max;
    char *raw = g_malloc(want ? want : 1);
    gsize got = 0;
    while (got < want) {
        ssize_t n = pread(fd, raw + got, want - got, off + (gint64)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "read: %s",
                        g_strerror(errno));
            g_free(raw);
            return NULL;
        }
        if (n == 0)
            break;
        got += (gsize)n;
    }
    *eof_r = got < want || off + (gint64)got >= st.st_size;
    *len_r = got;
    return raw;
}

static void
read_work(gpointer p)
{
    ReadJob *j = p;
    Pop3Out *o = j->o;
    if (o->fd < 0) {
        o->fd = pop3_g.ops->open_content(j->s->mb, o->uid, &j->error);
        if (o->fd < 0)
            return;
    }
    gsize got;
    gboolean eof;
    char *raw = read_some(o->fd, o->off, CHUNK, &got, &eof, &j->error);
    if (!raw)
        return;
    o->off += (gint64)got;
    gsize take = got;
    if (o->top) {
        take = pop3_top_take(&o->tp, raw, got);
        if (o->tp.done)
            eof = TRUE;
    }
    j->buf = g_string_sized_new(take + take / 32 + 16);
    pop3_stuff(&o->st, raw, take, j->buf);
    g_free(raw);
    if (eof) {
        pop3_stuff_end(&o->st, j->buf);
        close(o->fd);
        o->fd = -1;
        j->eof = TRUE;
    }
}

static void
job_free(ReadJob *j)
{
    if (j->buf)
        g_string_free(j->buf, TRUE);
    g_clear_error(&j->error);
    g_free(j);
}

static void maybe_read_ahead(Pop3Session *s);

static void
read_done(gpointer p)
{
    ReadJob *j = p;
    Pop3Session *s = j->s;
    Pop3Out *o = j->o;
    s->in_job = FALSE;
    if (s->dead) {
        job_free(j);
        pop3_command_done(s); /* reaps */
        return;
    }
    if (j->error) {
        if (!o->started) {
            if (g_error_matches(j->error, KR_STORE_ERROR, KR_STORE_ERROR_NO_MESSAGE))
                kr_conn_printf(s->conn, "-ERR Message %u was removed meanwhile.\r\n", o->seq);
            else
                kr_conn_printf(s->conn, "-ERR [SYS/TEMP] Cannot read message %u.\r\n", o->seq);
            g_warning("%s: %s: message %u: %s", s->srv->name, s->login, o->seq, j->error->message);
        } else {
            /* mid-message: the reply cannot be completed */
            g_warning("%s: %s: message %u: %s; closing", s->srv->name, s->login, o->seq,
                      j->error->message);
            kr_conn_close(s->conn);
        }
        job_free(j);
        out_finish(s);
        return;
    }
    if (!o->started) {
        o->started = TRUE;
        if (o->top)
            kr_conn_printf(s->conn, "+OK\r\n");
        else
            kr_conn_printf(s->conn, "+OK %" G_GINT64_FORMAT " octets\r\n",
                           pop3_g.ops->msg(s->mb, o->seq)->size);
    }
    kr_conn_write(s->conn, j->buf->str, j->buf->len);
    if (!o->top)
        s->retr_bytes += (gint64)j->buf->len;
    gboolean eof = j->eof;
    job_free(j);
    if (!eof) {
        wait_drain(s);
        return;
    }
    gboolean retr = !o->top;
    if (retr) {
        s->nretr++;
        if (s->pf_last < o->seq)
            s->pf_last = o->seq;
    }
    pop3_out_free(s);
    if (retr)
        maybe_read_ahead(s);
    pop3_command_done(s);
}

static void
read_chunk(Pop3Session *s, Pop3Out *o)
{
    ReadJob *j = g_new0(ReadJob, 1);
    j->s = s;
    j->o = o;
    s->in_job = TRUE;
    s->ra_job = FALSE;
    kr_worker_run(read_work, read_done, j);
}

static void
next_piece(Pop3Session *s)
{
    if (!s->out || s->dead)
        return;
    if (s->out->kind == OUT_CONTENT)
        read_chunk(s, s->out);
    else
        listing_piece(s);
}

/* --- read-ahead --------------------------------------------------------------------
 * Messages after the last RETR are read, converted and kept in memory,
 * RA_BYTES or RA_COUNT at a time, by one worker job that runs while the
 * client takes in what was sent; RETRs of them are answered at once. A
 * new batch starts when fewer than RA_LOW are left. */

#define RA_BYTES (256 * 1024)
#define RA_COUNT 32
#define RA_LOW   8

typedef struct {
    guint32 seq;
    GString *data; /* the reply body, stuffed, with the final "." */
} Pop3Ahead;

typedef struct {
    Pop3Session *s;
    GArray *seqs, *uids;
    GPtrArray *out; /* Pop3Ahead * */
} AheadJob;

gboolean
pop3_out_ready(Pop3Session *s, guint32 seq)
{
    Pop3Ahead *a = g_queue_peek_head(&s->pfq);
    return a && a->seq == seq;
}

static void
ahead_free(Pop3Ahead *a)
{
    if (a->data)
        g_string_free(a->data, TRUE);
    g_free(a);
}

void
pop3_out_drop_ahead(Pop3Session *s)
{
    Pop3Ahead *a;
    while ((a = g_queue_pop_head(&s->pfq)))
        ahead_free(a);
}

static void
ahead_work(gpointer p)
{
    AheadJob *j = p;
    for (guint i = 0; i < j->uids->len; i++) {
        int fd = pop3_g.ops->open_content(j->s->mb, g_array_index(j->uids, guint32, i), NULL);
        if (fd < 0)
            break; /* RETR will say why */
        gsize got;
        gboolean eof;
        char *raw = read_some(fd, 0, READAHEAD_MAX, &got, &eof, NULL);
        close(fd);
        if (!raw || !eof) {
            g_free(raw);
            break;
        }
        Pop3Ahead *a = g_new0(Pop3Ahead, 1);
        a->seq = g_array_index(j->seqs, guint32, i);
        a->data = g_string_sized_new(got + got / 32 + 16);
        Pop3Stuff st = {0};
        pop3_stuff(&st, raw, got, a->data);
        pop3_stuff_end(&st, a->data);
        g_free(raw);
        g_ptr_array_add(j->out, a);
    }
}

static void
ahead_done(gpointer p)
{
    AheadJob *j = p;
    Pop3Session *s = j->s;
    s->in_job = FALSE;
    s->ra_job = FALSE;
    for (guint i = 0; i < j->out->len; i++) {
        Pop3Ahead *a = j->out->pdata[i];
        if (s->dead || pop3_is_deleted(s, a->seq))
            ahead_free(a);
        else
            g_queue_push_tail(&s->pfq, a);
    }
    if (j->out->len < j->seqs->len && !s->dead) {
        /* stopped early: the rest is read by RETR itself */
        s->pf_last = j->out->len ? ((Pop3Ahead *)j->out->pdata[j->out->len - 1])->seq
                                 : g_array_index(j->seqs, guint32, 0) - 1;
    }
    g_ptr_array_unref(j->out);
    g_array_unref(j->seqs);
    g_array_unref(j->uids);
    g_free(j);
    if (s->dead) {
        pop3_session_reap(s);
    } else if (s->wait_job) {
        s->wait_job = FALSE;
        pop3_command_done(s);
    }
}

static void
maybe_read_ahead(Pop3Session *s)
{
    if (s->in_job || s->dead || g_queue_get_length(&s->pfq) >= RA_LOW)
        return;
    AheadJob *j = g_new0(AheadJob, 1);
    j->s = s;
    j->seqs = g_array_new(FALSE, FALSE, sizeof(guint32));
    j->uids = g_array_new(FALSE, FALSE, sizeof(guint32));
    j->out = g_ptr_array_new();
    gint64 bytes = 0;
    for (guint32 seq = s->pf_last + 1; seq <= s->n && j->seqs->len < RA_COUNT; seq++) {
        if (pop3_is_deleted(s, seq))
            continue;
        const KrMailboxMsg *m = pop3_g.ops->msg(s->mb, seq);
        if (m->size > READAHEAD_MAX || bytes + m->size > RA_BYTES)
            break;
        bytes += m->size;
        g_array_append_val(j->seqs, seq);
        g_array_append_val(j->uids, m->uid);
    }
    if (j->seqs->len == 0) {
        g_array_unref(j->seqs);
        g_array_unref(j->uids);
        g_ptr_array_unref(j->out);
        g_free(j);
        return;
    }
    s->pf_last = g_array_index(j->seqs, guint32, j->seqs->len - 1);
    s->in_job = TRUE;
    s->ra_job = TRUE;
    kr_worker_run(ahead_work, ahead_done, j);
}

void
pop3_out_content(Pop3Session *s, guint32 seq, gboolean top, guint lines)
{
    if (!top) {
        /* drop what the client skipped */
        Pop3Ahead *a;
        while ((a = g_queue_peek_head(&s->pfq)) && a->seq != seq) {
            if (a->seq > seq) {
                pop3_out_drop_ahead(s);
                break;
            }
            ahead_free(g_queue_pop_head(&s->pfq));
        }
        if ((a = g_queue_peek_head(&s->pfq)) && a->seq == seq) {
            g_queue_pop_head(&s->pfq);
            const KrMailboxMsg *m = pop3_g.ops->msg(s->mb, seq);
            kr_conn_printf(s->conn, "+OK %" G_GINT64_FORMAT " octets\r\n", m->size);
            kr_conn_write(s->conn, a->data->str, a->data->len);
            s->retr_bytes += (gint64)a->data->len;
            s->nretr++;
            ahead_free(a);
            maybe_read_ahead(s);
            return; /* answered: no need to wait */
        }
        if (g_queue_is_empty(&s->pfq) && !s->ra_job)
            s->pf_last = seq; /* read ahead from here on */
    }
    g_assert(!s->in_job);
    s->busy = TRUE;
    kr_conn_pause(s->conn);
    Pop3Out *o = g_new0(Pop3Out, 1);
    o->kind = OUT_CONTENT;
    o->seq = seq;
    o->uid = pop3_g.ops->msg(s->mb, seq)->uid;
    o->top = top;
    o->fd = -1;
    if (top)
        pop3_top_init(&o->tp, lines);
    s->out = o;
    read_chunk(s, o);
}

static void
out_finish(Pop3Session *s)
{
    pop3_out_free(s);
    pop3_command_done(s);
}
