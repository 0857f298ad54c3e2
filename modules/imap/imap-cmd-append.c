/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-append.c - APPEND (RFC 9051 6.3.12, UIDPLUS APPENDUID RFC
 *   4315, LITERAL+ RFC 7888, literal8 RFC 3516), and the streamed
 *   literals that carry large messages.
 *
 * SYNOPSIS
 *   imap_cmd_append(s)                     store the message, APPENDUID
 *   imap_lit_begin(s, info)                a streamed literal was accepted
 *   imap_lit_data(s, data, len, last)      the next chunk of it
 *   imap_lit_free(lit)
 *
 * DESCRIPTION
 *   The reader checks an APPEND literal's size against max_literal
 *   (APPENDLIMIT) before any byte is taken. Literals below 64 KiB come in
 *   the command's buffer; larger ones are streamed: their chunks are
 *   collected up to FLUSH bytes, then written to an unnamed temporary
 *   file under DATA_DIR by a worker while input is paused, so the loop
 *   never writes to disk and memory stays bounded. The store then reads
 *   the file (KrMailboxAppend.fd).
 *
 *   One message per APPEND: MULTIAPPEND (RFC 3502) is not offered and is
 *   refused. A mailbox that does not exist gets NO [TRYCREATE].
 */
#include "imap-session.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define FLUSH (256 * 1024)

struct ImapLit {
    guint index;
    int fd;
    GByteArray *buf;
    guint64 size, written;
    gboolean failed;
};

void
imap_lit_free(ImapLit *lit)
{
    if (!lit)
        return;
    if (lit->fd >= 0)
        close(lit->fd);
    if (lit->buf)
        g_byte_array_unref(lit->buf);
    g_free(lit);
}

void
imap_lit_begin(ImapSession *s, const ImapLiteralInfo *info)
{
    imap_lit_free(s->lit);
    ImapLit *lit = g_new0(ImapLit, 1);
    lit->index = info->index;
    lit->fd = -1;
    lit->size = info->size;
    lit->buf = g_byte_array_new();
    s->lit = lit;
}

static int
tmp_file(GError **error)
{
    int fd = open(kr_data_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    g_autofree char *path = NULL;
    fd = g_file_open_tmp("kurir-imap-XXXXXX", &path, error);
    if (fd >= 0)
        unlink(path);
    return fd;
}

typedef struct {
    ImapSession *s;
    ImapLit *lit;
    GByteArray *data;
} FlushJob;

static void
flush_work(gpointer p)
{
    FlushJob *f = p;
    ImapLit *lit = f->lit;
    if (lit->failed)
        return;
    g_autoptr(GError) e = NULL;
    if (lit->fd < 0 && (lit->fd = tmp_file(&e)) < 0) {
        g_warning("imap: cannot create a temporary file for APPEND: %s", e->message);
        lit->failed = TRUE;
        return;
    }
    gsize off = 0;
    while (off < f->data->len) {
        ssize_t n = write(lit->fd, f->data->data + off, f->data->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            g_warning("imap: cannot write APPEND data: %s", g_strerror(errno));
            lit->failed = TRUE;
            return;
        }
        off += (gsize)n;
    }
    lit->written += off;
}

static void
flush_done(gpointer p)
{
    FlushJob *f = p;
    ImapSession *s = f->s;
    g_byte_array_unref(f->data);
    g_free(f);
    s->in_job = FALSE;
    s->busy = FALSE;
    if (s->dead) {
        imap_command_done(s); /* reaps */
        return;
    }
    kr_conn_resume(s->conn);
}

void
imap_lit_data(ImapSession *s, const void *data, gsize len, gboolean last)
{
    ImapLit *lit = s->lit;
    if (!lit)
        return;
    if (!lit->failed)
        g_byte_array_append(lit->buf, data, (guint)len);
    if (lit->buf->len < FLUSH && !last)
        return;
    FlushJob *f = g_new0(FlushJob, 1);
    f->s = s;
    f->lit = lit;
    f->data = lit->buf;
    lit->buf = g_byte_array_new();
    imap_begin_busy(s);
    s->in_job = TRUE;
    kr_worker_run(flush_work, flush_done, f);
}

/* --- APPEND -------------------------------------------------------------------------- */

typedef struct {
    char *stname;
    ImapLit *lit;
    GPtrArray *kw;
    guint32 flags;
} AppendData;

static void
append_data_free(gpointer p)
{
    AppendData *d = p;
    g_free(d->stname);
    imap_lit_free(d->lit);
    if (d->kw)
        g_ptr_array_unref(d->kw);
    g_free(d);
}

static void
append_work(ImapJob *j)
{
    ImapSession *s = j->s;
    AppendData *d = j->data;
    ImapAppendMsg *m = &j->cmd->u.append.msgs[0];
    KrMailboxAppend ap = {
        .flags = d->flags,
        .keywords = (const char *const *)d->kw->pdata,
        .internal_date = m->has_date ? m->date : 0,
        .fd = -1,
    };
    if (m->streamed) {
        ap.fd = d->lit->fd;
        if (lseek(ap.fd, 0, SEEK_SET) < 0) {
            imap_job_tagged(j, "NO", "UNAVAILABLE", "Temporary failure, try again later.");
            return;
        }
    } else {
        ap.data = m->data;
        ap.len = (gsize)m->size;
    }
    guint32 uidvalidity = 0, uid = 0;
    g_autoptr(GError) e = NULL;
    if (!imap_g.ops->append(imap_g.store->self, s->user, d->stname, &ap, &uidvalidity, &uid, &e)) {
        if (g_error_matches(e, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND))
            imap_job_tagged(j, "NO", "TRYCREATE", "Mailbox does not exist.");
        else if (g_error_matches(e, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME) && d->kw->len > 1)
            imap_job_tagged(j, "NO", "CANNOT", "Invalid keyword or mailbox name.");
        else
            imap_job_store_error(j, e, "append");
        return;
    }
    g_autofree char *code = g_strdup_printf("APPENDUID %u %u", uidvalidity, uid);
    imap_job_tagged(j, "OK", code, "APPEND completed.");
}

void
imap_cmd_append(ImapSession *s)
{
    ImapAppendArgs *a = &s->cmd->u.append;
    ImapLit *lit = g_steal_pointer(&s->lit);
    if (a->n_msgs != 1) {
        imap_lit_free(lit);
        imap_tagged_done(s, "NO", "CANNOT", "One message per APPEND (no MULTIAPPEND).");
        return;
    }
    ImapAppendMsg *m = &a->msgs[0];
    if (m->size == 0) {
        imap_lit_free(lit);
        imap_tagged_done(s, "NO", NULL, "Empty messages cannot be stored.");
        return;
    }
    if (m->streamed &&
        (!lit || lit->index != m->literal_index || lit->failed || lit->written != lit->size)) {
        imap_lit_free(lit);
        imap_tagged_done(s, "NO", "UNAVAILABLE", "Temporary failure, try again later.");
        return;
    }
    AppendData *d = g_new0(AppendData, 1);
    d->lit = lit;
    d->kw = g_ptr_array_new();
    if (!imap_flags_from_args(m->flags, &d->flags, d->kw)) {
        append_data_free(d);
        s->bad++;
        imap_tagged_done(s, "BAD", NULL, "Invalid system flag.");
        return;
    }
    char *name = imap_arg_mailbox(s, a->mailbox, FALSE);
    if (!name) {
        append_data_free(d);
        return;
    }
    d->stname = imap_to_store_name(name);
    g_free(name);
    ImapJob *j = imap_job_new(s, append_work, IMAP_SYNC_IF_CHANGED);
    j->data = d;
    j->free_data = append_data_free;
    imap_job_start(j);
}
