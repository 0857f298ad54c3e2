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
 *   (each at most READAHEAD_MAX) are read and converted in batches by
 *   worker jobs while the client takes in the replies, keeping up to
 *   about RA_QUEUE_BYTES + RA_BATCH_BYTES ready, each as its whole reply;
 *   RETRs of them are answered at once from memory with one write, also
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
    char *buf; /* wire form of the piece */
    gsize len;
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
    j->buf = g_malloc(2 * take + POP3_STUFF_END_MAX);
    j->len = pop3_stuff_buf(&o->st, raw, take, j->buf);
    g_free(raw);
    if (eof) {
        j->len += pop3_stuff_end_buf(&o->st, j->buf + j->len);
        close(o->fd);
        o->fd = -1;
        j->eof = TRUE;
    }
}

static void
job_free(ReadJob *j)
{
    g_free(j->buf);
    g_clear_error(&j->error);
    g_free(j);
}

static void read_ahead_soon(Pop3Session *s);

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
    kr_conn_write(s->conn, j->buf, j->len);
    if (!o->top)
        s->retr_bytes += (gint64)j->len;
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
        read_ahead_soon(s);
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
 * RA_BATCH_BYTES or RA_BATCH_COUNT at a time (at least one), by one
 * worker job that runs while the client takes in what was sent; RETRs of
 * them are answered at once. The next batch starts as soon as fewer than
 * RA_QUEUE_COUNT messages and RA_QUEUE_BYTES are ready, so a batch has
 * a good many RETRs to come back in: a RETR of a message not read yet
 * waits for the whole batch, and the worker thread may not get a CPU at
 * once on a busy machine. Batches are large because each one costs the
 * loop some wakeups and, on a busy machine, a stall of a RETR or so.
 * The first batch (nothing ready) is small: a RETR is waiting for it.
 * A downloading session thus holds up to about RA_QUEUE_BYTES +
 * RA_BATCH_BYTES (plus CRs and dots) in memory.
 *
 * Each is kept as the whole reply ("+OK n octets", the stuffed content,
 * the final "."), in one buffer of its exact size, so a RETR of it is
 * one write. The job reads a message with one pread() of its size (from
 * the index, with CRLF line ends, so at least the file's) plus one: a
 * short read is the whole file when the CRLF size of what was read is
 * that size; any other file is left to RETR itself (which reads to EOF). */

#define RA_BATCH_BYTES (512 * 1024)
#define RA_BATCH_COUNT 128
#define RA_QUEUE_BYTES (256 * 1024)
#define RA_QUEUE_COUNT 64
#define RA_FIRST_BYTES (64 * 1024)
#define RA_FIRST_COUNT 16

typedef struct {
    guint32 seq;
    guint32 head; /* length of the "+OK" line */
    gsize len;
    char *data; /* the reply */
} Pop3Ahead;

typedef struct {
    guint32 uid;
    guint32 seq;
    gint64 size;
} AheadWant;

typedef struct {
    Pop3Session *s;
    GArray *want;   /* AheadWant */
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
    g_free(a->data);
    g_free(a);
}

/* Take the first message read ahead off the queue. */
static Pop3Ahead *
ahead_pop(Pop3Session *s)
{
    Pop3Ahead *a = g_queue_pop_head(&s->pfq);
    if (a)
        s->pf_bytes -= a->len;
    return a;
}

void
pop3_out_drop_ahead(Pop3Session *s)
{
    Pop3Ahead *a;
    while ((a = ahead_pop(s)))
        ahead_free(a);
}

/* The whole file fd if it is the message of CRLF size `size`, as a
 * reply in wire form; NULL if not (or on error). raw: room for size + 1. */
static Pop3Ahead *
ahead_read(int fd, const AheadWant *w, char *raw)
{
    gsize want = (gsize)w->size + 1;
    ssize_t got;
    do
        got = pread(fd, raw, want, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0 || (gsize)got == want)
        return NULL;
    char head[64];
    int hl = g_snprintf(head, sizeof head, "+OK %" G_GINT64_FORMAT " octets\r\n", w->size);
    Pop3Ahead *a = g_new(Pop3Ahead, 1);
    a->seq = w->seq;
    a->head = (guint32)hl;
    a->data = g_malloc((gsize)hl + 2 * (gsize)got + POP3_STUFF_END_MAX);
    memcpy(a->data, head, (gsize)hl);
    Pop3Stuff st = {0};
    gsize n = (gsize)hl + pop3_stuff_buf(&st, raw, (gsize)got, a->data + hl);
    if (st.crlf != (guint64)w->size) {
        ahead_free(a); /* not the indexed size: a short read, or another file */
        return NULL;
    }
    n += pop3_stuff_end_buf(&st, a->data + n);
    a->len = n;
    a->data = g_realloc(a->data, n);
    return a;
}

static void
ahead_work(gpointer p)
{
    AheadJob *j = p;
    gint64 max = 0;
    for (guint i = 0; i < j->want->len; i++)
        max = MAX(max, g_array_index(j->want, AheadWant, i).size);
    char *raw = g_malloc((gsize)max + 1);
    for (guint i = 0; i < j->want->len; i++) {
        const AheadWant *w = &g_array_index(j->want, AheadWant, i);
        int fd = pop3_g.ops->open_content(j->s->mb, w->uid, NULL);
        if (fd < 0)
            break; /* RETR will say why */
        Pop3Ahead *a = ahead_read(fd, w, raw);
        close(fd);
        if (!a)
            break;
        g_ptr_array_add(j->out, a);
    }
    g_free(raw);
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
        if (s->dead || pop3_is_deleted(s, a->seq)) {
            ahead_free(a);
        } else {
            g_queue_push_tail(&s->pfq, a);
            s->pf_bytes += a->len;
        }
    }
    if (j->out->len < j->want->len && !s->dead) {
        /* stopped early: the rest is read by RETR itself */
        s->pf_last = j->out->len ? ((Pop3Ahead *)j->out->pdata[j->out->len - 1])->seq
                                 : g_array_index(j->want, AheadWant, 0).seq - 1;
    }
    g_ptr_array_unref(j->out);
    g_array_unref(j->want);
    g_free(j);
    if (s->dead) {
        pop3_session_reap(s);
    } else if (s->wait_job) {
        s->wait_job = FALSE;
        pop3_command_done(s);
    }
}

static gboolean
ahead_due(Pop3Session *s)
{
    /* (the state: QUIT may have closed the mailbox before an idle call) */
    return !s->in_job && !s->dead && s->state == POP3_ST_TRANS && s->mb &&
           g_queue_get_length(&s->pfq) < RA_QUEUE_COUNT && s->pf_bytes < RA_QUEUE_BYTES;
}

static void
maybe_read_ahead(Pop3Session *s)
{
    if (!ahead_due(s))
        return;
    gboolean first = g_queue_is_empty(&s->pfq);
    guint max_count = first ? RA_FIRST_COUNT : RA_BATCH_COUNT;
    gint64 max_bytes = first ? RA_FIRST_BYTES : RA_BATCH_BYTES;
    GArray *want = NULL;
    gint64 bytes = 0;
    for (guint32 seq = s->pf_last + 1; seq <= s->n && (!want || want->len < max_count); seq++) {
        if (pop3_is_deleted(s, seq))
            continue;
        const KrMailboxMsg *m = pop3_g.ops->msg(s->mb, seq);
        if (m->size > READAHEAD_MAX || (want && bytes + m->size > max_bytes))
            break;
        bytes += m->size;
        if (!want)
            want = g_array_sized_new(FALSE, FALSE, sizeof(AheadWant), max_count);
        AheadWant w = {.uid = m->uid, .seq = seq, .size = m->size};
        g_array_append_val(want, w);
    }
    if (!want)
        return;
    AheadJob *j = g_new0(AheadJob, 1);
    j->s = s;
    j->want = want;
    j->out = g_ptr_array_sized_new(want->len);
    s->pf_last = g_array_index(want, AheadWant, want->len - 1).seq;
    s->in_job = TRUE;
    s->ra_job = TRUE;
    kr_worker_run(ahead_work, ahead_done, j);
}

static gboolean
ahead_idle(gpointer p)
{
    Pop3Session *s = p;
    s->ra_idle = 0;
    maybe_read_ahead(s);
    return G_SOURCE_REMOVE;
}

/* Start the next batch, if one is due, on the next turn of the loop, so
 * that the reply just queued is sent first: waking a worker thread before
 * the send only delays it, the more so as the worker may take the CPU.
 * (The priority of the connections: an idle priority could starve behind
 * a client that pipelines.) */
static void
read_ahead_soon(Pop3Session *s)
{
    if (!s->ra_idle && ahead_due(s))
        s->ra_idle = g_idle_add_full(G_PRIORITY_DEFAULT, ahead_idle, s, NULL);
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
            ahead_free(ahead_pop(s));
        }
        if ((a = g_queue_peek_head(&s->pfq)) && a->seq == seq) {
            ahead_pop(s);
            kr_conn_write(s->conn, a->data, a->len);
            s->retr_bytes += (gint64)(a->len - a->head);
            s->nretr++;
            ahead_free(a);
            read_ahead_soon(s);
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
