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
 *   Read-ahead: after RETR n, the next message not marked deleted is
 *   read into memory by a worker (if at most READAHEAD_MAX bytes) while
 *   the client takes in RETR n; a following RETR of it is then answered
 *   at once from memory. Clients download in order, so most RETRs skip
 *   the trip to a worker thread.
 *
 *   UIDL: the store's guid for the message (its Maildir file name) when
 *   it is 1..70 printable characters (RFC 1939), else the SHA-1 of it in
 *   hex; either way stable for the message's life.
 */
#include "pop3.h"

#include <errno.h>
#include <string.h>
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
    gboolean readahead; /* the job reads ahead (s->out is not o) */
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
    char *raw = g_malloc(CHUNK);
    gsize got = 0;
    gboolean eof = FALSE;
    while (got < CHUNK) {
        ssize_t n = pread(o->fd, raw + got, CHUNK - got, o->off + (gint64)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(&j->error, G_FILE_ERROR, g_file_error_from_errno(errno), "read: %s",
                        g_strerror(errno));
            g_free(raw);
            return;
        }
        if (n == 0) {
            eof = TRUE;
            break;
        }
        got += (gsize)n;
    }
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

static void start_readahead(Pop3Session *s, guint32 after);

static void
job_free(ReadJob *j)
{
    if (j->buf)
        g_string_free(j->buf, TRUE);
    g_clear_error(&j->error);
    g_free(j);
}

static void
read_done(gpointer p)
{
    ReadJob *j = p;
    Pop3Session *s = j->s;
    Pop3Out *o = j->o;
    s->in_job = FALSE;
    if (j->readahead) {
        if (!s->dead && !j->error && j->eof) {
            s->pf_seq = o->seq;
            s->pf_data = g_steal_pointer(&j->buf);
        }
        if (o->fd >= 0)
            close(o->fd);
        g_free(o);
        job_free(j);
        pop3_command_done(s); /* the read-ahead kept the session busy */
        return;
    }
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
    guint32 seq = o->seq;
    gboolean retr = !o->top;
    pop3_out_free(s);
    if (retr) {
        s->nretr++;
        start_readahead(s, seq);
    }
    if (!s->in_job)
        pop3_command_done(s);
}

static void
read_chunk(Pop3Session *s, Pop3Out *o, gboolean readahead)
{
    ReadJob *j = g_new0(ReadJob, 1);
    j->s = s;
    j->o = o;
    j->readahead = readahead;
    s->in_job = TRUE;
    kr_worker_run(read_work, read_done, j);
}

static void
next_piece(Pop3Session *s)
{
    if (!s->out || s->dead)
        return;
    if (s->out->kind == OUT_CONTENT)
        read_chunk(s, s->out, FALSE);
    else
        listing_piece(s);
}

/* Read the message after `after` into memory while the client reads. */
static void
start_readahead(Pop3Session *s, guint32 after)
{
    guint32 next = after + 1;
    while (next <= s->n && pop3_is_deleted(s, next))
        next++;
    if (next > s->n || s->dead)
        return;
    const KrMailboxMsg *m = pop3_g.ops->msg(s->mb, next);
    if (m->size > READAHEAD_MAX)
        return;
    Pop3Out *o = g_new0(Pop3Out, 1);
    o->kind = OUT_CONTENT;
    o->seq = next;
    o->uid = m->uid;
    o->fd = -1;
    read_chunk(s, o, TRUE); /* the session stays busy until it is back */
}

void
pop3_out_content(Pop3Session *s, guint32 seq, gboolean top, guint lines)
{
    s->busy = TRUE;
    kr_conn_pause(s->conn);
    if (!top && s->pf_data && s->pf_seq == seq) {
        const KrMailboxMsg *m = pop3_g.ops->msg(s->mb, seq);
        kr_conn_printf(s->conn, "+OK %" G_GINT64_FORMAT " octets\r\n", m->size);
        kr_conn_write(s->conn, s->pf_data->str, s->pf_data->len);
        s->retr_bytes += (gint64)s->pf_data->len;
        s->nretr++;
        g_string_free(s->pf_data, TRUE);
        s->pf_data = NULL;
        start_readahead(s, seq);
        if (!s->in_job)
            pop3_command_done(s);
        return;
    }
    if (s->pf_data) {
        g_string_free(s->pf_data, TRUE);
        s->pf_data = NULL;
    }
    Pop3Out *o = g_new0(Pop3Out, 1);
    o->kind = OUT_CONTENT;
    o->seq = seq;
    o->uid = pop3_g.ops->msg(s->mb, seq)->uid;
    o->top = top;
    o->fd = -1;
    if (top)
        pop3_top_init(&o->tp, lines);
    s->out = o;
    read_chunk(s, o, FALSE);
}

static void
out_finish(Pop3Session *s)
{
    pop3_out_free(s);
    pop3_command_done(s);
}
