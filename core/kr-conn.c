/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-conn.c - one client connection on the GLib main loop (default
 *   context): buffered non-blocking input and output over a socket,
 *   optionally TLS (OpenSSL), idle timeout, orderly close
 *
 * SYNOPSIS
 *   #include <kurir/kr-conn.h>
 *
 *   kr_conn_set_handlers, kr_conn_peer_ip, kr_conn_peer_port,
 *   kr_conn_local_ip, kr_conn_local_port, kr_conn_listener, kr_conn_id,
 *   kr_conn_pause, kr_conn_resume, kr_conn_close, kr_conn_set_timeout
 *   (input and output: kr-conn-io.c; STARTTLS and TLS info: kr-conn-tls.c)
 *
 *   #include "kr-conn-private.h"
 *
 *   kr_conn_new, kr_conn_begin, kr_conn_set_release, kr_conn_close_all,
 *   kr_conn_count (kr_conn_start_tls_client: kr-conn-tls.c)
 *
 *   #include "kr-conn-impl.h"
 *
 *   kr_conn_update(c), kr_conn_kill(c, reason), kr_conn_begin_close(c, reason)
 *
 * DESCRIPTION
 *   Events: every connection is an item of the one event source shared by
 *   all of them (kr-conn-epoll.c: an epoll fd, a ready list, a deadline
 *   heap). conn_sync() brings the item in line with the state after every
 *   change: the epoll events it needs (widened at once, narrowed lazily),
 *   "run me on the next loop iteration" (work that must not run
 *   re-entrantly: resume, on_ready, writes queued from outside a handler,
 *   data buffered inside OpenSSL) and the nearest deadline (idle timeout,
 *   handshake, close). A loop iteration costs O(1) plus the connections
 *   that have something to do; an idle connection costs the KrConn, its
 *   slot in the epoll set and the heap and, with TLS, the SSL object
 *   (SSL_MODE_RELEASE_BUFFERS): no buffers, no GSource, no timer of its own.
 *   Polling is level-triggered. EPOLLRDHUP is not asked for: the peer's
 *   FIN reads as EOF when we read, and while we do not read (paused, input
 *   full) it waits in the kernel like the data before it. HUP and ERR come
 *   unasked; they make the dispatch read, write or fail, and a conn that
 *   wants no events then leaves the epoll set.
 *
 *   Buffers, reading and writing are in kr-conn-io.c; TLS setup, the
 *   handshake and STARTTLS in kr-conn-tls.c; the KrConn structure and what
 *   these files share in kr-conn-impl.h.
 *
 *   Lifetime: kr_conn_close() flushes (at most CLOSE_FLUSH_SECONDS), sends
 *   a TLS close_notify, closes the socket; then, from the main loop and
 *   never from inside another handler of the conn, the pending on_ready or
 *   tls_done get ok=FALSE, the closed handler runs once, the release hook
 *   runs, and the KrConn is freed. I/O errors close at once with
 *   KR_CONN_CLOSED_ERROR (output is dropped). The socket I/O uses
 *   MSG_NOSIGNAL, also under TLS (our own BIO, kr-conn-sock.c), so a peer
 *   that resets never raises SIGPIPE.
 *
 *   The idle timer is reset by input and by output progress, and does not
 *   run while the connection is paused (the server, not the client, is
 *   busy then). A TLS handshake has its own deadline: the idle timeout, or
 *   HANDSHAKE_SECONDS without one.
 *
 *   For protocol modules:
 *     - The read handler is called when new bytes arrived (or at EOF), and
 *       again after kr_conn_resume() if input is left; not for bytes that
 *       were there already. So parse everything complete in one call (or
 *       pause), consume what you used, and return.
 *     - A full buffer (len == the input limit) with no complete command in
 *       it is never delivered again until you consume: treat it as "line
 *       too long" (consume or close).
 *     - Asynchronous commands: kr_conn_pause() in the handler, start the
 *       work, kr_conn_resume() when it is done (any time, from any callback
 *       on the loop); the handler then runs again from the loop, never from
 *       inside kr_conn_resume().
 *     - kr_conn_close() may be called anywhere, also in a handler; keep
 *       using your state until the closed handler, which is the last call
 *       (free your state there). Writes after close are still flushed until
 *       the socket is closed, then dropped.
 *     - At EOF the conn closes (KR_CONN_CLOSED_EOF) after the read handler
 *       returns, unless it paused: then after the next resume and call.
 *     - STARTTLS: write the "220"/"+OK" reply, then kr_conn_start_tls(); the
 *       reply goes out in clear before the handshake, later writes are
 *       encrypted, no input is delivered until tls_done(ok=TRUE). Forget
 *       your protocol state there (RFC 3207). On failure the conn closes
 *       after tls_done(FALSE).
 *     - Output has no "drained" callback; the layer stops reading input
 *       while more than KR_CONN_OUTPUT_HIGH bytes are queued.
 *     - Never run a nested main loop in a handler: the shared event source
 *       does not recurse, so no connection would be served inside it.
 *
 * SEE ALSO
 *   kr-conn-io.c, kr-conn-tls.c, kr-conn-impl.h, kr-conn-epoll.h,
 *   kr-conn-sock.c, kurir/kr-conn.h
 */
#include "kr-conn-impl.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

static GQueue conns = G_QUEUE_INIT;
static guint64 next_id = 1;

/* --- state predicates ---------------------------------------------------- */

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
            kr_conn_fail_errno(c, "epoll", errno);
            return;
        }
    }
    if (conn_ready_now(c))
        kr_ev_wake(&c->ev);
    else
        kr_ev_set_deadline(&c->ev, conn_deadline(c));
}

void
kr_conn_update(KrConn *c)
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
void
kr_conn_kill(KrConn *c, KrConnCloseReason reason)
{
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_OPEN)
        c->reason = reason;
    c->state = ST_DEAD;
    close_fd(c);
    kr_conn_drop_output(c);
    kr_conn_drop_input(c);
    c->redeliver = c->ssl_more = c->ready_pending = FALSE;
    g_debug("conn %" G_GUINT64_FORMAT ": closed", c->id);
    kr_conn_update(c);
}

void
kr_conn_begin_close(KrConn *c, KrConnCloseReason reason)
{
    if (c->state != ST_OPEN)
        return;
    if (c->tls == TLS_HANDSHAKE) {
        /* nothing sensible can be flushed in the middle of a handshake */
        kr_conn_kill(c, reason);
        return;
    }
    c->reason = reason;
    c->state = ST_CLOSING;
    c->close_deadline = g_get_monotonic_time() + CLOSE_FLUSH_SECONDS * G_USEC_PER_SEC;
    c->redeliver = c->ssl_more = FALSE;
    kr_conn_update(c);
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
    kr_conn_kill(c, c->reason);
}

static void
conn_free(KrConn *c)
{
    kr_ev_clear(&c->ev, c->fd);
    if (c->ssl)
        SSL_free(c->ssl);
    kr_conn_drop_input(c);
    kr_conn_drop_output(c);
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

static void
conn_timeout(KrConn *c)
{
    g_debug("conn %" G_GUINT64_FORMAT ": idle timeout", c->id);
    kr_conn_begin_close(c, KR_CONN_CLOSED_TIMEOUT);
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
        kr_conn_fail_errno(c, "socket error", err);
    } else if (rev & G_IO_HUP) {
        /* let the read, write or handshake find out what is left */
        rev |= G_IO_IN | G_IO_OUT;
    }
    gint64 now = g_get_monotonic_time();
    if (c->state == ST_OPEN && c->tls == TLS_HANDSHAKE && now >= c->hs_deadline) {
        g_message("conn %" G_GUINT64_FORMAT " %s: TLS handshake timed out", c->id, c->peer_ip);
        kr_conn_kill(c, KR_CONN_CLOSED_TIMEOUT);
    } else if (c->state == ST_OPEN && c->timeout_sec && !c->paused && c->tls != TLS_HANDSHAKE &&
               now >= c->last_activity + (gint64)c->timeout_sec * G_USEC_PER_SEC) {
        conn_timeout(c);
    } else if (c->state == ST_CLOSING && now >= c->close_deadline) {
        g_debug("conn %" G_GUINT64_FORMAT ": could not flush output in time", c->id);
        kr_conn_kill(c, c->reason);
    }
    if (c->state != ST_DEAD && out_pending(c) > 0 && (!c->wr_blocked || (rev & c->wr_want)))
        kr_conn_flush(c);
    if (c->state == ST_OPEN && c->tls == TLS_HANDSHAKE && c->plain_left == 0 &&
        (c->hs_kick || (rev & c->hs_want)))
        kr_conn_handshake(c);
    if (can_read(c) && ((rev & c->rd_want) || c->ssl_more))
        kr_conn_receive(c);
    if (c->redeliver && can_deliver(c))
        kr_conn_deliver(c);
    if (c->state != ST_DEAD && can_write_now(c))
        kr_conn_flush(c);
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
        if (!c->listener_tls || !kr_conn_tls_setup(c, c->listener_tls, FALSE, &err)) {
            g_warning("conn %" G_GUINT64_FORMAT ": %s", c->id,
                      err ? err->message : "implicit TLS without a TLS context");
            kr_conn_kill(c, KR_CONN_CLOSED_ERROR);
            return;
        }
    } else if (on_ready) {
        c->ready_pending = TRUE;
    }
    kr_conn_update(c);
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
                kr_conn_flush(c);
            if (c->state != ST_DEAD && c->ssl && c->tls == TLS_ON) {
                ERR_clear_error();
                SSL_shutdown(c->ssl);
                ERR_clear_error();
            }
            kr_conn_kill(c, c->reason);
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
    kr_conn_update(c);
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

void
kr_conn_pause(KrConn *c)
{
    c->paused = TRUE;
    kr_conn_update(c);
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
    kr_conn_update(c);
}

void
kr_conn_close(KrConn *c)
{
    kr_conn_begin_close(c, KR_CONN_CLOSED_LOCAL);
}

void
kr_conn_set_timeout(KrConn *c, guint seconds)
{
    c->timeout_sec = seconds;
    c->last_activity = g_get_monotonic_time();
    kr_conn_update(c);
}
