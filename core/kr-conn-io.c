/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-conn-io.c - connections: input and output buffers, reading and
 *   writing (clear or TLS)
 *
 * SYNOPSIS
 *   #include <kurir/kr-conn.h>
 *
 *   kr_conn_input(c, &len), kr_conn_consume(c, n), kr_conn_eof(c),
 *   kr_conn_set_input_limit(c, limit), kr_conn_write(c, data, len),
 *   kr_conn_printf(c, fmt, ...), kr_conn_output_pending(c)
 *
 *   #include "kr-conn-impl.h"
 *
 *   kr_conn_receive(c), kr_conn_deliver(c), kr_conn_flush(c),
 *   kr_conn_compact_output(c), kr_conn_drop_input(c), kr_conn_drop_output(c),
 *   kr_conn_fail_errno(c, what, err), kr_conn_fail_ssl(c, what, ssl_err)
 *
 * DESCRIPTION
 *   Input is read into one static scratch buffer (the loop is single
 *   threaded); the read handler looks at it in place, and only what it
 *   leaves unconsumed is copied to a heap buffer, freed when consumed.
 *   Output is a GString, freed when written. Reading stops while input
 *   fills the limit, while paused (we then read nothing: pending bytes
 *   stay in the kernel), and while more than KR_CONN_OUTPUT_HIGH bytes of
 *   output wait (a client that pipelines without reading gets no more
 *   answers). A dispatch writes at most WRITE_BUDGET bytes (fairness);
 *   under TLS in TLS_WRITE_CHUNK records, repeating a write that would
 *   block with the same length. Writes before a handshake (plain_left)
 *   go out in clear.
 *
 * DIAGNOSTICS
 *   I/O errors close at once with KR_CONN_CLOSED_ERROR (output is
 *   dropped), logged at debug level for EPIPE and ECONNRESET, else as a
 *   message with the peer's address.
 *
 * SEE ALSO
 *   kr-conn.c, kr-conn-tls.c, kr-conn-sock.c
 */
#include "kr-conn-impl.h"
#include <errno.h>
#include <openssl/err.h>
#include <sys/socket.h>

static char scratch[SCRATCH_SIZE];
static gboolean scratch_in_use;

void
kr_conn_drop_output(KrConn *c)
{
    if (c->out)
        g_string_free(c->out, TRUE);
    c->out = NULL;
    c->out_off = c->plain_left = c->ssl_wlen = 0;
}

void
kr_conn_drop_input(KrConn *c)
{
    if (!c->in_scratch)
        g_free(c->in);
    c->in = NULL;
    c->in_off = c->in_len = 0;
    c->in_scratch = FALSE;
}

void
kr_conn_fail_errno(KrConn *c, const char *what, int err)
{
    if (err == EPIPE || err == ECONNRESET)
        g_debug("conn %" G_GUINT64_FORMAT ": %s: %s", c->id, what, g_strerror(err));
    else
        g_message("conn %" G_GUINT64_FORMAT " %s: %s: %s", c->id, c->peer_ip, what,
                  g_strerror(err));
    kr_conn_kill(c, KR_CONN_CLOSED_ERROR);
}

void
kr_conn_fail_ssl(KrConn *c, const char *what, int ssl_err)
{
    int saved = errno;
    g_autofree char *detail = kr_conn_ssl_errors();
    if (ssl_err == SSL_ERROR_SYSCALL && !*detail) {
        g_free(detail);
        detail = g_strdup(saved ? g_strerror(saved) : "connection closed");
    }
    if (ssl_err == SSL_ERROR_SYSCALL && (saved == EPIPE || saved == ECONNRESET))
        g_debug("conn %" G_GUINT64_FORMAT ": %s: %s", c->id, what, detail);
    else
        g_message("conn %" G_GUINT64_FORMAT " %s: %s: %s", c->id, c->peer_ip, what,
                  *detail ? detail : "TLS error");
    kr_conn_kill(c, KR_CONN_CLOSED_ERROR);
}

void
kr_conn_compact_output(KrConn *c)
{
    if (!c->out)
        return;
    if (c->out_off == c->out->len) {
        kr_conn_drop_output(c);
    } else if (c->out_off >= 64 * 1024 && c->out_off >= c->out->len / 2 && c->ssl_wlen == 0) {
        g_string_erase(c->out, 0, (gssize)c->out_off);
        c->out_off = 0;
    }
}

void
kr_conn_flush(KrConn *c)
{
    gsize budget = WRITE_BUDGET;
    gboolean progress = FALSE;
    c->wr_blocked = FALSE;
    while (c->state != ST_DEAD && out_pending(c) > 0 && budget > 0) {
        const char *p = c->out->str + c->out_off;
        gsize n;
        if (c->plain_left > 0 || c->tls == TLS_NONE) {
            gsize len = MIN(c->plain_left > 0 ? c->plain_left : out_pending(c), budget);
            ssize_t r = send(c->fd, p, len, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c->wr_blocked = TRUE;
                    c->wr_want = G_IO_OUT;
                    break;
                }
                kr_conn_fail_errno(c, "write", errno);
                return;
            }
            n = (gsize)r;
            if (c->plain_left > 0) {
                c->plain_left -= n;
                if (c->plain_left == 0)
                    c->hs_kick = TRUE;
            }
        } else if (c->tls == TLS_ON && !c->ssl_shutting) {
            gsize len = c->ssl_wlen ? c->ssl_wlen : MIN(out_pending(c), TLS_WRITE_CHUNK);
            ERR_clear_error();
            int r = SSL_write(c->ssl, p, (int)len);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    c->ssl_wlen = len;
                    c->wr_blocked = TRUE;
                    c->wr_want = e == SSL_ERROR_WANT_WRITE ? G_IO_OUT : G_IO_IN;
                    break;
                }
                kr_conn_fail_ssl(c, "TLS write", e);
                return;
            }
            c->ssl_wlen = 0;
            n = (gsize)r;
            if (c->rd_want == G_IO_OUT) {
                /* a read that waited for the socket to be writable */
                c->rd_want = G_IO_IN;
                c->ssl_more = TRUE;
            }
        } else {
            break; /* handshake in progress: app data waits */
        }
        c->out_off += n;
        budget -= MIN(budget, n);
        progress = TRUE;
    }
    if (progress)
        c->last_activity = g_get_monotonic_time();
    kr_conn_compact_output(c);
}

/* Call the read handler; then keep the leftovers and act on EOF. */
void
kr_conn_deliver(KrConn *c)
{
    gboolean from_scratch = c->in_scratch;
    c->redeliver = FALSE;
    c->busy++;
    c->h.read(c, c->ud);
    c->busy--;
    if (c->in_scratch) {
        /* keep only what the handler left, on the heap */
        c->in = c->in_len ? g_memdup2(c->in + c->in_off, c->in_len) : NULL;
        c->in_off = 0;
        c->in_scratch = FALSE;
    }
    if (from_scratch)
        scratch_in_use = FALSE;
    if (c->eof && c->state == ST_OPEN && !c->paused && app_io(c))
        kr_conn_begin_close(c, KR_CONN_CLOSED_EOF);
}

void
kr_conn_receive(KrConn *c)
{
    gsize room = MIN(c->in_limit - c->in_len, SCRATCH_SIZE);
    gboolean use_scratch = !scratch_in_use;
    char *buf = use_scratch ? scratch : g_malloc(room);
    gssize n;
    if (c->ssl) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, (int)room);
        n = r;
        c->ssl_more = FALSE;
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            n = -1;
            if (e == SSL_ERROR_WANT_READ) {
                c->rd_want = G_IO_IN;
            } else if (e == SSL_ERROR_WANT_WRITE) {
                c->rd_want = G_IO_OUT;
            } else if (e == SSL_ERROR_ZERO_RETURN ||
                       (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)) {
                n = 0; /* close_notify, or plain EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
            } else {
                if (!use_scratch)
                    g_free(buf);
                kr_conn_fail_ssl(c, "TLS read", e);
                return;
            }
        } else {
            c->rd_want = G_IO_IN;
            c->ssl_more = SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl);
        }
        if (c->wr_blocked && c->wr_want == G_IO_IN)
            c->wr_blocked = FALSE; /* the write waited for this read */
    } else {
        n = recv(c->fd, buf, room, 0);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            if (!use_scratch)
                g_free(buf);
            kr_conn_fail_errno(c, "read", errno);
            return;
        }
    }
    if (n < 0) {
        if (!use_scratch)
            g_free(buf);
        return;
    }
    if (n == 0) {
        if (!use_scratch)
            g_free(buf);
        g_debug("conn %" G_GUINT64_FORMAT ": EOF from peer", c->id);
        c->eof = TRUE;
    } else {
        c->last_activity = g_get_monotonic_time();
        if (c->in_len == 0) {
            kr_conn_drop_input(c);
            c->in = buf;
            c->in_len = (gsize)n;
            c->in_scratch = use_scratch;
            if (use_scratch)
                scratch_in_use = TRUE;
        } else {
            if (c->in_off) {
                memmove(c->in, c->in + c->in_off, c->in_len);
                c->in_off = 0;
            }
            c->in = g_realloc(c->in, c->in_len + (gsize)n);
            memcpy(c->in + c->in_len, buf, (gsize)n);
            c->in_len += (gsize)n;
            if (!use_scratch)
                g_free(buf);
        }
    }
    kr_conn_deliver(c);
}

const char *
kr_conn_input(const KrConn *c, gsize *len_r)
{
    *len_r = c->in_len;
    return c->in ? c->in + c->in_off : "";
}

void
kr_conn_consume(KrConn *c, gsize n)
{
    g_return_if_fail(n <= c->in_len);
    c->in_off += n;
    c->in_len -= n;
    if (c->in_len == 0)
        kr_conn_drop_input(c);
    kr_conn_update(c);
}

gboolean
kr_conn_eof(const KrConn *c)
{
    return c->eof;
}

void
kr_conn_set_input_limit(KrConn *c, gsize limit)
{
    c->in_limit = MAX(limit, 1);
    kr_conn_update(c);
}

void
kr_conn_write(KrConn *c, const void *data, gsize len)
{
    if (c->state == ST_DEAD || c->ssl_shutting || len == 0)
        return;
    if (!c->out)
        c->out = g_string_sized_new(MAX(len, 128));
    g_string_append_len(c->out, data, (gssize)len);
    kr_conn_update(c);
}

void
kr_conn_printf(KrConn *c, const char *fmt, ...)
{
    if (c->state == ST_DEAD || c->ssl_shutting)
        return;
    if (!c->out)
        c->out = g_string_sized_new(128);
    va_list ap;
    va_start(ap, fmt);
    g_string_append_vprintf(c->out, fmt, ap);
    va_end(ap);
    kr_conn_compact_output(c); /* the format may have produced nothing */
    kr_conn_update(c);
}

gsize
kr_conn_output_pending(const KrConn *c)
{
    return out_pending(c);
}
