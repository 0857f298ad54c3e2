/* SPDX-License-Identifier: MIT */
/*
 * kr-conn.c - one client connection on the GLib main loop (default
 * context): buffered non-blocking input and output over a socket,
 * optionally TLS (OpenSSL), idle timeout, orderly close.
 *
 *   public (kr-conn.h): handlers, addresses, input/consume/pause/resume,
 *     write/printf/close, timeout, STARTTLS, TLS info
 *   internal (kr-conn-private.h): kr_conn_new, kr_conn_begin,
 *     kr_conn_set_release, kr_conn_start_tls_client, kr_conn_close_all,
 *     kr_conn_count
 *
 * Events: every connection is an item of the one event source shared by
 * all of them (kr-conn-epoll.c: an epoll fd, a ready list, a deadline
 * heap). conn_sync() brings the item in line with the state after every
 * change: the epoll events it needs (widened at once, narrowed lazily),
 * "run me on the next loop iteration" (work that must not run
 * re-entrantly: resume, on_ready, writes queued from outside a handler,
 * data buffered inside OpenSSL) and the nearest deadline (idle timeout,
 * handshake, close). A loop iteration costs O(1) plus the connections
 * that have something to do; an idle connection costs the KrConn, its
 * slot in the epoll set and the heap and, with TLS, the SSL object
 * (SSL_MODE_RELEASE_BUFFERS): no buffers, no GSource, no timer of its own.
 * Polling is level-triggered. EPOLLRDHUP is not asked for: the peer's
 * FIN reads as EOF when we read, and while we do not read (paused, input
 * full) it waits in the kernel like the data before it. HUP and ERR come
 * unasked; they make the dispatch read, write or fail, and a conn that
 * wants no events then leaves the epoll set.
 *
 * Input is read into one static scratch buffer (the loop is single
 * threaded); the read handler looks at it in place, and only what it
 * leaves unconsumed is copied to a heap buffer, freed when consumed.
 * Output is a GString, freed when written. Reading stops while input
 * fills the limit, while paused (we then read nothing: pending bytes stay
 * in the kernel), and while more than KR_CONN_OUTPUT_HIGH bytes of output
 * wait (a client that pipelines without reading gets no more answers).
 *
 * Lifetime: kr_conn_close() flushes (at most CLOSE_FLUSH_SECONDS), sends
 * a TLS close_notify, closes the socket; then, from the main loop and
 * never from inside another handler of the conn, the pending on_ready or
 * tls_done get ok=FALSE, the closed handler runs once, the release hook
 * runs, and the KrConn is freed. I/O errors close at once with
 * KR_CONN_CLOSED_ERROR (output is dropped). The socket I/O uses
 * MSG_NOSIGNAL, also under TLS (our own BIO, kr-conn-sock.c), so a peer
 * that resets never raises SIGPIPE.
 *
 * The idle timer is reset by input and by output progress, and does not
 * run while the connection is paused (the server, not the client, is
 * busy then). A TLS handshake has its own deadline: the idle timeout, or
 * HANDSHAKE_SECONDS without one.
 *
 * For protocol modules:
 *   - The read handler is called when new bytes arrived (or at EOF), and
 *     again after kr_conn_resume() if input is left; not for bytes that
 *     were there already. So parse everything complete in one call (or
 *     pause), consume what you used, and return.
 *   - A full buffer (len == the input limit) with no complete command in
 *     it is never delivered again until you consume: treat it as "line
 *     too long" (consume or close).
 *   - Asynchronous commands: kr_conn_pause() in the handler, start the
 *     work, kr_conn_resume() when it is done (any time, from any callback
 *     on the loop); the handler then runs again from the loop, never from
 *     inside kr_conn_resume().
 *   - kr_conn_close() may be called anywhere, also in a handler; keep
 *     using your state until the closed handler, which is the last call
 *     (free your state there). Writes after close are still flushed until
 *     the socket is closed, then dropped.
 *   - At EOF the conn closes (KR_CONN_CLOSED_EOF) after the read handler
 *     returns, unless it paused: then after the next resume and call.
 *   - STARTTLS: write the "220"/"+OK" reply, then kr_conn_start_tls(); the
 *     reply goes out in clear before the handshake, later writes are
 *     encrypted, no input is delivered until tls_done(ok=TRUE). Forget
 *     your protocol state there (RFC 3207). On failure the conn closes
 *     after tls_done(FALSE).
 *   - Output has no "drained" callback; the layer stops reading input
 *     while more than KR_CONN_OUTPUT_HIGH bytes are queued.
 *   - Never run a nested main loop in a handler: the shared event source
 *     does not recurse, so no connection would be served inside it.
 */
#include "kr-internal.h"
#include "kr-conn-private.h"
#include "kr-conn-epoll.h"
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#define KR_CONN_DEFAULT_INPUT_LIMIT (64 * 1024)
#define KR_CONN_OUTPUT_HIGH         (256 * 1024)
#define SCRATCH_SIZE                (64 * 1024)
#define TLS_WRITE_CHUNK             (16 * 1024)
#define WRITE_BUDGET                (1024 * 1024) /* bytes per dispatch, for fairness */
#define CLOSE_FLUSH_SECONDS         30
#define HANDSHAKE_SECONDS           60 /* when no idle timeout is set */

typedef enum { ST_OPEN, ST_CLOSING, ST_DEAD } ConnState;
typedef enum { TLS_NONE, TLS_HANDSHAKE, TLS_ON } TlsState;

struct KrConn {
    KrEvItem ev; /* first: the shared event source's item */
    GList link;  /* in `conns` */
    int fd;
    guint busy; /* dispatch or handler calls on the stack */
    guint64 id;
    char *listener;
    SSL_CTX *listener_tls;
    KrConnHandlers h;
    gpointer ud;
    KrConnReadyFunc on_ready;
    gpointer ready_ud;
    KrConnReleaseFunc release;
    gpointer release_ud;

    /* input: bytes [in_off, in_off + in_len) of `in`, which is either
     * owned (heap) or the shared scratch buffer during a delivery */
    char *in;
    gsize in_off, in_len, in_limit;
    /* output: bytes from out_off; the first plain_left of them go out in
     * clear before a handshake starts */
    GString *out;
    gsize out_off, plain_left;
    gsize ssl_wlen; /* length of an SSL_write that must be repeated */

    SSL *ssl;
    GIOCondition hs_want, rd_want, wr_want;
    guint timeout_sec;
    gint64 last_activity, hs_deadline, close_deadline;
    KrConnCloseReason reason;
    guint8 state, tls;
    gboolean paused : 1;
    gboolean eof : 1;
    gboolean in_scratch : 1;
    gboolean redeliver : 1;  /* call the read handler again (resume) */
    gboolean ssl_more : 1;   /* OpenSSL may hold decrypted input */
    gboolean wr_blocked : 1; /* last write would block: wait for wr_want */
    gboolean hs_kick : 1;    /* try the handshake without waiting */
    gboolean hs_client : 1;
    gboolean ready_pending : 1; /* on_ready(TRUE) to be called */
    gboolean ready_owed : 1;    /* on_ready not yet called since begin */
    gboolean tls_done_owed : 1;
    gboolean ssl_shutting : 1;
    gboolean in_dispatch : 1;
    gboolean finishing : 1;
    gboolean begun : 1;
    char peer_ip[INET6_ADDRSTRLEN];
    char local_ip[INET6_ADDRSTRLEN];
    guint16 peer_port, local_port;
};

static GQueue conns = G_QUEUE_INIT;
static guint64 next_id = 1;
static char scratch[SCRATCH_SIZE];
static gboolean scratch_in_use;

static void conn_update(KrConn *c);

/* --- helpers --------------------------------------------------------------- */

static gsize
out_pending(const KrConn *c)
{
    return c->out ? c->out->len - c->out_off : 0;
}

static void
drop_output(KrConn *c)
{
    if (c->out)
        g_string_free(c->out, TRUE);
    c->out = NULL;
    c->out_off = c->plain_left = c->ssl_wlen = 0;
}

static void
drop_input(KrConn *c)
{
    if (!c->in_scratch)
        g_free(c->in);
    c->in = NULL;
    c->in_off = c->in_len = 0;
    c->in_scratch = FALSE;
}

/* --- state predicates ---------------------------------------------------- */

static gboolean
app_io(const KrConn *c)
{
    return c->tls == TLS_NONE || c->tls == TLS_ON;
}

static gboolean
can_deliver(const KrConn *c)
{
    return c->state == ST_OPEN && c->h.read && !c->paused && app_io(c) && !c->ready_pending &&
           out_pending(c) < KR_CONN_OUTPUT_HIGH;
}

static gboolean
can_read(const KrConn *c)
{
    return c->fd >= 0 && can_deliver(c) && !c->eof && c->in_len < c->in_limit;
}

static gboolean
can_write_now(const KrConn *c)
{
    return out_pending(c) > 0 && !c->wr_blocked && !c->ssl_shutting &&
           (c->plain_left > 0 || app_io(c));
}

static GIOCondition
conn_events(const KrConn *c)
{
    if (c->fd < 0 || c->state == ST_DEAD)
        return 0;
    if (c->tls == TLS_HANDSHAKE) {
        if (c->plain_left > 0)
            return c->wr_blocked ? c->wr_want : 0;
        return c->hs_kick ? 0 : c->hs_want;
    }
    if (c->ssl_shutting)
        return c->hs_want;
    GIOCondition ev = 0;
    if (out_pending(c) > 0 && c->wr_blocked)
        ev |= c->wr_want;
    if (can_read(c))
        ev |= c->rd_want;
    return ev;
}

/* Work to do on the next loop iteration without waiting for the socket. */
static gboolean
conn_ready_now(const KrConn *c)
{
    if (c->state == ST_DEAD || c->ready_pending)
        return TRUE;
    if (c->tls == TLS_HANDSHAKE && c->plain_left == 0 && c->hs_kick)
        return TRUE;
    if (can_write_now(c))
        return TRUE;
    if (c->state == ST_CLOSING && out_pending(c) == 0 && !c->ssl_shutting)
        return TRUE;
    if (c->ssl_more && can_read(c))
        return TRUE;
    return c->redeliver && can_deliver(c);
}

/* The nearest deadline (monotonic us), or -1. */
static gint64
conn_deadline(const KrConn *c)
{
    if (c->state == ST_CLOSING)
        return c->close_deadline;
    if (c->state == ST_OPEN && c->tls == TLS_HANDSHAKE)
        return c->hs_deadline;
    if (c->state == ST_OPEN && c->timeout_sec && !c->paused)
        return c->last_activity + (gint64)c->timeout_sec * G_USEC_PER_SEC;
    return -1;
}

static void conn_fail_errno(KrConn *c, const char *what, int err);

/* Bring the epoll events, ready list and timer in line with the state;
 * unwanted: poll events the calling dispatch got that the conn could not
 * act on (0 outside a dispatch). Inside the conn's own dispatch this waits
 * for the end of the dispatch.
 *
 * Kept cheap for the common cases: the epoll set is widened at once, but
 * narrowed only after an event we could not use arrived (so pausing, then
 * resuming, costs no syscall unless the peer sent something meanwhile),
 * except for G_IO_OUT, which would fire at once anyway. Deadlines only
 * move earlier (kr_ev_set_deadline): a timer that fires early re-arms. */
static void
conn_sync(KrConn *c, GIOCondition unwanted)
{
    if (c->in_dispatch || c->finishing)
        return;
    GIOCondition want = conn_events(c);
    GIOCondition reg = c->ev.watched;
    if (want != reg && ((want & ~reg) || unwanted || (reg & ~want & G_IO_OUT))) {
        if (!kr_ev_watch(&c->ev, c->fd, want)) {
            conn_fail_errno(c, "epoll", errno);
            return;
        }
    }
    if (conn_ready_now(c))
        kr_ev_wake(&c->ev);
    else
        kr_ev_set_deadline(&c->ev, conn_deadline(c));
}

static void
conn_update(KrConn *c)
{
    conn_sync(c, 0);
}

/* --- closing ----------------------------------------------------------------- */

static void
close_fd(KrConn *c)
{
    if (c->fd < 0)
        return;
    kr_ev_watch(&c->ev, c->fd, 0);
    /* Unread input makes close() send a RST, and the peer may then lose
     * our last reply: read away what is already here (bounded). */
    char buf[4096];
    for (int i = 0; i < 16 && recv(c->fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++)
        ;
    close(c->fd);
    c->fd = -1;
}

/* Stop now: no flush, no close_notify. */
static void
conn_kill(KrConn *c, KrConnCloseReason reason)
{
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_OPEN)
        c->reason = reason;
    c->state = ST_DEAD;
    close_fd(c);
    drop_output(c);
    drop_input(c);
    c->redeliver = c->ssl_more = c->ready_pending = FALSE;
    g_debug("conn %" G_GUINT64_FORMAT ": closed", c->id);
    conn_update(c);
}

static void
conn_begin_close(KrConn *c, KrConnCloseReason reason)
{
    if (c->state != ST_OPEN)
        return;
    if (c->tls == TLS_HANDSHAKE) {
        /* nothing sensible can be flushed in the middle of a handshake */
        conn_kill(c, reason);
        return;
    }
    c->reason = reason;
    c->state = ST_CLOSING;
    c->close_deadline = g_get_monotonic_time() + CLOSE_FLUSH_SECONDS * G_USEC_PER_SEC;
    c->redeliver = c->ssl_more = FALSE;
    conn_update(c);
}

/* Output flushed: close_notify (best effort), close. */
static void
conn_close_step(KrConn *c, GIOCondition rev)
{
    if (out_pending(c) > 0 && !c->ssl_shutting)
        return;
    if (c->ssl && c->tls == TLS_ON && (!c->ssl_shutting || (rev & c->hs_want))) {
        ERR_clear_error();
        int r = SSL_shutdown(c->ssl);
        if (r < 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_WRITE) {
            c->ssl_shutting = TRUE;
            c->hs_want = G_IO_OUT;
            return;
        }
        ERR_clear_error();
    } else if (c->ssl_shutting) {
        return;
    }
    conn_kill(c, c->reason);
}

static void
conn_free(KrConn *c)
{
    kr_ev_clear(&c->ev, c->fd);
    if (c->ssl)
        SSL_free(c->ssl);
    drop_input(c);
    drop_output(c);
    g_free(c->listener);
    g_free(c);
}

/* The last calls: owed callbacks, closed, release, free. busy == 0. */
static void
conn_finish(KrConn *c)
{
    c->finishing = TRUE;
    c->busy++;
    g_queue_unlink(&conns, &c->link);
    if (c->ready_owed) {
        c->ready_owed = FALSE;
        if (c->on_ready)
            c->on_ready(c, FALSE, c->ready_ud);
    }
    if (c->tls_done_owed) {
        c->tls_done_owed = FALSE;
        if (c->h.tls_done)
            c->h.tls_done(c, FALSE, c->ud);
    }
    if (c->h.closed)
        c->h.closed(c, c->reason, c->ud);
    if (c->release)
        c->release(c, c->release_ud);
    conn_free(c);
}

/* --- I/O ----------------------------------------------------------------- */

static void
conn_fail_errno(KrConn *c, const char *what, int err)
{
    if (err == EPIPE || err == ECONNRESET)
        g_debug("conn %" G_GUINT64_FORMAT ": %s: %s", c->id, what, g_strerror(err));
    else
        g_message("conn %" G_GUINT64_FORMAT " %s: %s: %s", c->id, c->peer_ip, what,
                  g_strerror(err));
    conn_kill(c, KR_CONN_CLOSED_ERROR);
}

static void
conn_fail_ssl(KrConn *c, const char *what, int ssl_err)
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
    conn_kill(c, KR_CONN_CLOSED_ERROR);
}

static void
compact_output(KrConn *c)
{
    if (!c->out)
        return;
    if (c->out_off == c->out->len) {
        drop_output(c);
    } else if (c->out_off >= 64 * 1024 && c->out_off >= c->out->len / 2 && c->ssl_wlen == 0) {
        g_string_erase(c->out, 0, (gssize)c->out_off);
        c->out_off = 0;
    }
}

static void
conn_write(KrConn *c)
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
                conn_fail_errno(c, "write", errno);
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
                conn_fail_ssl(c, "TLS write", e);
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
    compact_output(c);
}

static void
conn_handshake_done(KrConn *c)
{
    c->tls = TLS_ON;
    c->ssl_more = TRUE; /* the client may have sent data right behind Finished */
    c->rd_want = G_IO_IN;
    c->last_activity = g_get_monotonic_time();
    if (kr_debug_enabled(G_LOG_DOMAIN)) {
        g_autofree char *info = kr_conn_tls_info(c);
        g_debug("conn %" G_GUINT64_FORMAT ": %s", c->id, info);
    }
    c->busy++;
    if (c->ready_owed) {
        c->ready_owed = FALSE;
        if (c->on_ready)
            c->on_ready(c, TRUE, c->ready_ud);
    } else if (c->tls_done_owed) {
        c->tls_done_owed = FALSE;
        if (c->h.tls_done)
            c->h.tls_done(c, TRUE, c->ud);
    }
    c->busy--;
}

static void
conn_handshake(KrConn *c)
{
    c->hs_kick = FALSE;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        conn_handshake_done(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->hs_want = G_IO_IN;
    } else if (e == SSL_ERROR_WANT_WRITE) {
        c->hs_want = G_IO_OUT;
    } else {
        conn_fail_ssl(c, "TLS handshake failed", e);
    }
}

/* Call the read handler; then keep the leftovers and act on EOF. */
static void
conn_deliver(KrConn *c)
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
        conn_begin_close(c, KR_CONN_CLOSED_EOF);
}

static void
conn_read(KrConn *c)
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
                conn_fail_ssl(c, "TLS read", e);
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
            conn_fail_errno(c, "read", errno);
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
            drop_input(c);
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
    conn_deliver(c);
}

static void
conn_timeout(KrConn *c)
{
    g_debug("conn %" G_GUINT64_FORMAT ": idle timeout", c->id);
    conn_begin_close(c, KR_CONN_CLOSED_TIMEOUT);
    if (c->h.timeout && c->state == ST_CLOSING) {
        c->busy++;
        c->h.timeout(c, c->ud);
        c->busy--;
    }
}

static void
conn_dispatch(KrConn *c, GIOCondition rev)
{
    /* events we cannot act on now (HUP and ERR are never asked for) */
    GIOCondition unwanted = rev & ~conn_events(c);
    if (c->state == ST_DEAD) {
        if (c->busy == 0)
            conn_finish(c);
        return;
    }
    c->busy++;
    c->in_dispatch = TRUE;
    if (c->ready_pending) {
        c->ready_pending = FALSE;
        if (c->state == ST_OPEN) {
            c->ready_owed = FALSE;
            c->busy++;
            c->on_ready(c, TRUE, c->ready_ud);
            c->busy--;
        }
    }
    if (c->state == ST_DEAD)
        rev = 0;
    if (rev & (G_IO_ERR | G_IO_NVAL)) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0)
            err = ECONNRESET;
        conn_fail_errno(c, "socket error", err);
    } else if (rev & G_IO_HUP) {
        /* let the read, write or handshake find out what is left */
        rev |= G_IO_IN | G_IO_OUT;
    }
    gint64 now = g_get_monotonic_time();
    if (c->state == ST_OPEN && c->tls == TLS_HANDSHAKE && now >= c->hs_deadline) {
        g_message("conn %" G_GUINT64_FORMAT " %s: TLS handshake timed out", c->id, c->peer_ip);
        conn_kill(c, KR_CONN_CLOSED_TIMEOUT);
    } else if (c->state == ST_OPEN && c->timeout_sec && !c->paused && c->tls != TLS_HANDSHAKE &&
               now >= c->last_activity + (gint64)c->timeout_sec * G_USEC_PER_SEC) {
        conn_timeout(c);
    } else if (c->state == ST_CLOSING && now >= c->close_deadline) {
        g_debug("conn %" G_GUINT64_FORMAT ": could not flush output in time", c->id);
        conn_kill(c, c->reason);
    }
    if (c->state != ST_DEAD && out_pending(c) > 0 && (!c->wr_blocked || (rev & c->wr_want)))
        conn_write(c);
    if (c->state == ST_OPEN && c->tls == TLS_HANDSHAKE && c->plain_left == 0 &&
        (c->hs_kick || (rev & c->hs_want)))
        conn_handshake(c);
    if (can_read(c) && ((rev & c->rd_want) || c->ssl_more))
        conn_read(c);
    if (c->redeliver && can_deliver(c))
        conn_deliver(c);
    if (c->state != ST_DEAD && can_write_now(c))
        conn_write(c);
    if (c->state == ST_CLOSING)
        conn_close_step(c, rev);
    c->in_dispatch = FALSE;
    c->busy--;
    if (c->state == ST_DEAD && c->busy == 0) {
        conn_finish(c);
        return;
    }
    if (c->state == ST_DEAD) {
        /* a handler further up the stack: it finishes when it returns */
        kr_ev_wake(&c->ev);
        return;
    }
    conn_sync(c, unwanted);
}

static void
conn_ev_dispatch(KrEvItem *it, GIOCondition rev)
{
    conn_dispatch((KrConn *)it, rev); /* ev is the first member */
}

/* --- creation ------------------------------------------------------------ */

KrConn *
kr_conn_new(int fd, const char *listener_name, SSL_CTX *tls_ctx, gboolean implicit_tls,
            KrConnReadyFunc on_ready, gpointer ud)
{
    g_return_val_if_fail(fd >= 0, NULL);
    g_return_val_if_fail(!implicit_tls || tls_ctx, NULL);
    KrConn *c = g_new0(KrConn, 1);
    c->fd = fd;
    c->id = next_id++;
    c->listener = g_strdup(listener_name);
    c->listener_tls = tls_ctx;
    c->in_limit = KR_CONN_DEFAULT_INPUT_LIMIT;
    c->rd_want = G_IO_IN;
    c->wr_want = G_IO_OUT;
    c->hs_want = G_IO_IN;
    c->last_activity = g_get_monotonic_time();
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    kr_conn_sock_addr(fd, TRUE, c->peer_ip, sizeof c->peer_ip, &c->peer_port);
    int family = kr_conn_sock_addr(fd, FALSE, c->local_ip, sizeof c->local_ip, &c->local_port);
    if (family == AF_INET || family == AF_INET6) {
        /* we coalesce our output ourselves: one write per loop iteration */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    kr_ev_item_init(&c->ev, conn_ev_dispatch);
    c->link.data = c;
    g_queue_push_tail_link(&conns, &c->link);
    g_debug("conn %" G_GUINT64_FORMAT ": %s from %s port %u", c->id,
            listener_name ? listener_name : "outgoing", c->peer_ip, c->peer_port);
    if (implicit_tls || on_ready)
        kr_conn_begin(c, implicit_tls, on_ready, ud);
    return c;
}

static gboolean
conn_tls_setup(KrConn *c, SSL_CTX *ctx, gboolean client, GError **error)
{
    if (c->state != ST_OPEN) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "connection is closing");
        return FALSE;
    }
    if (c->ssl) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS, "TLS is already active");
        return FALSE;
    }
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    BIO *bio = ssl ? kr_conn_sock_bio(c->fd) : NULL;
    if (!bio) {
        g_autofree char *detail = kr_conn_ssl_errors();
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot start TLS: %s", detail);
        if (ssl)
            SSL_free(ssl);
        return FALSE;
    }
    SSL_set_bio(ssl, bio, bio);
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    if (SSL_get_min_proto_version(ssl) < TLS1_2_VERSION)
        SSL_set_min_proto_version(ssl, TLS1_2_VERSION);
    if (client)
        SSL_set_connect_state(ssl);
    else
        SSL_set_accept_state(ssl);
    /* Nothing read in clear before the handshake may be taken as a
     * command inside the TLS session (CVE-2011-0411): drop it. Bytes not
     * read yet stay in the socket for OpenSSL. */
    if (c->in_len)
        g_debug("conn %" G_GUINT64_FORMAT ": discarding %zu bytes of plaintext input", c->id,
                c->in_len);
    drop_input(c);
    c->eof = FALSE;
    c->redeliver = FALSE;
    c->ssl = ssl;
    c->tls = TLS_HANDSHAKE;
    c->hs_client = client;
    c->plain_left = out_pending(c);
    c->hs_want = client ? G_IO_OUT : G_IO_IN;
    c->hs_kick = TRUE;
    c->hs_deadline = g_get_monotonic_time() +
                     (gint64)(c->timeout_sec ? c->timeout_sec : HANDSHAKE_SECONDS) * G_USEC_PER_SEC;
    return TRUE;
}

void
kr_conn_begin(KrConn *c, gboolean implicit_tls, KrConnReadyFunc on_ready, gpointer ud)
{
    g_return_if_fail(c && !c->begun);
    c->begun = TRUE;
    c->on_ready = on_ready;
    c->ready_ud = ud;
    c->ready_owed = on_ready != NULL;
    if (implicit_tls) {
        g_autoptr(GError) err = NULL;
        if (!c->listener_tls || !conn_tls_setup(c, c->listener_tls, FALSE, &err)) {
            g_warning("conn %" G_GUINT64_FORMAT ": %s", c->id,
                      err ? err->message : "implicit TLS without a TLS context");
            conn_kill(c, KR_CONN_CLOSED_ERROR);
            return;
        }
    } else if (on_ready) {
        c->ready_pending = TRUE;
    }
    conn_update(c);
}

void
kr_conn_set_release(KrConn *c, KrConnReleaseFunc release, gpointer ud)
{
    g_return_if_fail(c);
    c->release = release;
    c->release_ud = ud;
}

void
kr_conn_close_all(void)
{
    GList *l = conns.head;
    while (l) {
        KrConn *c = l->data;
        l = l->next;
        if (c->state != ST_DEAD) {
            if (c->state == ST_OPEN)
                c->reason = KR_CONN_CLOSED_SHUTDOWN;
            c->state = ST_CLOSING;
            if (out_pending(c) > 0 && !c->ssl_shutting && (c->plain_left > 0 || app_io(c)))
                conn_write(c);
            if (c->state != ST_DEAD && c->ssl && c->tls == TLS_ON) {
                ERR_clear_error();
                SSL_shutdown(c->ssl);
                ERR_clear_error();
            }
            conn_kill(c, c->reason);
        }
        if (c->busy == 0)
            conn_finish(c);
    }
}

guint
kr_conn_count(void)
{
    return conns.length;
}

/* --- public API ---------------------------------------------------------------- */

void
kr_conn_set_handlers(KrConn *c, const KrConnHandlers *h, gpointer ud)
{
    g_return_if_fail(c);
    if (h)
        c->h = *h;
    else
        memset(&c->h, 0, sizeof c->h);
    c->ud = ud;
    if (c->in_len > 0 || c->eof)
        c->redeliver = TRUE;
    conn_update(c);
}

const char *
kr_conn_peer_ip(const KrConn *c)
{
    return c->peer_ip;
}

guint16
kr_conn_peer_port(const KrConn *c)
{
    return c->peer_port;
}

const char *
kr_conn_local_ip(const KrConn *c)
{
    return c->local_ip;
}

guint16
kr_conn_local_port(const KrConn *c)
{
    return c->local_port;
}

const char *
kr_conn_listener(const KrConn *c)
{
    return c->listener ? c->listener : "";
}

guint64
kr_conn_id(const KrConn *c)
{
    return c->id;
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
        drop_input(c);
    conn_update(c);
}

gboolean
kr_conn_eof(const KrConn *c)
{
    return c->eof;
}

void
kr_conn_pause(KrConn *c)
{
    c->paused = TRUE;
    conn_update(c);
}

void
kr_conn_resume(KrConn *c)
{
    if (!c->paused)
        return;
    c->paused = FALSE;
    c->last_activity = g_get_monotonic_time();
    if (c->in_len > 0 || c->eof)
        c->redeliver = TRUE;
    conn_update(c);
}

void
kr_conn_set_input_limit(KrConn *c, gsize limit)
{
    c->in_limit = MAX(limit, 1);
    conn_update(c);
}

void
kr_conn_write(KrConn *c, const void *data, gsize len)
{
    if (c->state == ST_DEAD || c->ssl_shutting || len == 0)
        return;
    if (!c->out)
        c->out = g_string_sized_new(MAX(len, 128));
    g_string_append_len(c->out, data, (gssize)len);
    conn_update(c);
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
    compact_output(c); /* the format may have produced nothing */
    conn_update(c);
}

gsize
kr_conn_output_pending(const KrConn *c)
{
    return out_pending(c);
}

void
kr_conn_close(KrConn *c)
{
    conn_begin_close(c, KR_CONN_CLOSED_LOCAL);
}

void
kr_conn_set_timeout(KrConn *c, guint seconds)
{
    c->timeout_sec = seconds;
    c->last_activity = g_get_monotonic_time();
    conn_update(c);
}

gboolean
kr_conn_start_tls(KrConn *c, SSL_CTX *ctx, GError **error)
{
    g_return_val_if_fail(c && ctx, FALSE);
    if (!conn_tls_setup(c, ctx, FALSE, error))
        return FALSE;
    c->tls_done_owed = TRUE;
    conn_update(c);
    return TRUE;
}

gboolean
kr_conn_start_tls_client(KrConn *c, SSL_CTX *ctx, const char *servername, GError **error)
{
    g_return_val_if_fail(c && ctx, FALSE);
    if (!conn_tls_setup(c, ctx, TRUE, error))
        return FALSE;
    if (servername && *servername && !g_hostname_is_ip_address(servername))
        SSL_set_tlsext_host_name(c->ssl, servername);
    c->tls_done_owed = TRUE;
    conn_update(c);
    return TRUE;
}

gboolean
kr_conn_is_tls(const KrConn *c)
{
    return c->tls == TLS_ON;
}

char *
kr_conn_tls_info(const KrConn *c)
{
    if (c->tls != TLS_ON)
        return NULL;
    const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
    int alg_bits = 0;
    int bits = ci ? SSL_CIPHER_get_bits(ci, &alg_bits) : 0;
    return g_strdup_printf("%s with cipher %s (%d/%d bits)", SSL_get_version(c->ssl),
                           ci ? SSL_CIPHER_get_name(ci) : "unknown", bits, alg_bits);
}

SSL_CTX *
kr_conn_listener_tls(const KrConn *c)
{
    return c->listener_tls;
}
