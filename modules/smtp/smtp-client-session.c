/* SPDX-License-Identifier: MIT */
/*
 * smtp-client-session.c - one outgoing SMTP connection of the client.
 *
 *   smtpc_session_open(dest)          resolve, connect, greet, EHLO, STARTTLS,
 *                                     AUTH; then take deliveries of dest
 *   smtpc_session_deliver(s, d)       run one transaction on an idle session
 *   smtpc_sessions_shutdown_all()     QUIT or abort every session
 *
 * Set-up: the next hop is resolved in a worker (smtp-client-dns.c); each
 * address is tried in turn (non-blocking connect; connect_timeout), and a
 * refused connection, a timeout, a greeting or EHLO that is not 2xx, a
 * garbled reply or a failed AUTH moves on to the next address. With
 * tls = "may" a failed TLS handshake is retried once on the same address
 * without STARTTLS (unless AUTH is needed). When every address failed,
 * the deliveries waiting for the destination are deferred with the last
 * error (smtpc_dest_setup_failed).
 *
 * Transactions (smtp-client-tx.c) run on a ready session. A session
 * that ends a transaction normally takes the next waiting delivery at
 * once or idles for cache_time (a reply or EOF while idle just ends it).
 * Every wait has a timeout (one timer per session, smtpc_sess_arm); a
 * timeout, a lost connection or a garbled reply during a transaction
 * defers the recipients still open and drops the session.
 *
 * I/O goes through KrConn: kr_conn_new on the connect()ed socket, from
 * core/kr-conn-private.h, which this file includes (it is the core's
 * documented way to wrap an outgoing socket, but not in the public
 * headers).
 *
 * Lifetime: see smtp-client-session.h. A conn that is let go is
 * detached (s->conn no longer points at it), so its late callbacks do
 * nothing.
 */
#include "smtp-client-session.h"
#include "../../core/kr-conn-private.h"
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static GQueue sessions = G_QUEUE_INIT;

static void try_next_addr(SmtpcSession *s);

/* ---- small helpers ---- */

SmtpcSession *
smtpc_sess_ref(SmtpcSession *s)
{
    s->refs++;
    return s;
}

void
smtpc_sess_unref(SmtpcSession *s)
{
    if (--s->refs > 0)
        return;
    g_assert(s->state == ST_DEAD && !s->conn && !s->timer && !s->fd_watch && s->fd < 0);
    if (s->addrs)
        g_ptr_array_unref(s->addrs);
    smtpc_reply_reader_clear(&s->rr);
    g_free(s->relay);
    g_free(s->err_diag);
    g_free(s);
}

static gboolean
need_auth(SmtpcSession *s)
{
    return s->dest->relay && s->node->password && conf_of(s)->relay_user && *conf_of(s)->relay_user;
}

static void on_timeout_fired(SmtpcSession *s);

static gboolean
on_timer(gpointer p)
{
    SmtpcSession *s = p;
    s->timer = 0;
    on_timeout_fired(s);
    return G_SOURCE_REMOVE;
}

void
smtpc_sess_disarm(SmtpcSession *s)
{
    if (s->timer)
        g_source_remove(s->timer);
    s->timer = 0;
}

void
smtpc_sess_arm(SmtpcSession *s, gint64 seconds, const char *what)
{
    smtpc_sess_disarm(s);
    s->waiting_for = what;
    s->timer = g_timeout_add_seconds((guint)MAX(seconds, 1), on_timer, s);
}

void
smtpc_sess_send(SmtpcSession *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *line = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (kr_debug_enabled("smtp") && g_ascii_strncasecmp(line, "AUTH", 4) != 0 &&
        s->state != ST_AUTH_PASS && s->state != ST_AUTH_LOGIN)
        g_debug("%s: > %s", relay_name(s), line);
    kr_conn_printf(s->conn, "%s\r\n", line);
}

/* Let go of the connection: it closes (flushing what was written) and
 * its late callbacks find it detached. */
static void
detach_conn(SmtpcSession *s)
{
    if (!s->conn)
        return;
    KrConn *c = s->conn;
    s->conn = NULL;
    kr_conn_close(c);
}

static void
close_fd(SmtpcSession *s)
{
    if (s->fd_watch)
        g_source_remove(s->fd_watch);
    s->fd_watch = 0;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* ---- set-up ---- */

/* This address failed: remember why and try the next one. */
static void addr_error(SmtpcSession *s, int code, const char *ecode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static void
addr_error(SmtpcSession *s, int code, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_free(s->err_diag);
    s->err_diag = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    s->err_code = code;
    g_strlcpy(s->err_ecode, ecode, sizeof s->err_ecode);
    if (s->retry_plain || (s->addrs && s->addr_i < s->addrs->len))
        g_message("%s; trying %s", s->err_diag,
                  s->retry_plain ? "again without STARTTLS" : "the next address");
    smtpc_sess_disarm(s);
    close_fd(s);
    if (s->conn && s->state != ST_CONNECT && s->state != ST_TLS)
        smtpc_sess_send(s, "QUIT");
    detach_conn(s);
    smtpc_reply_reader_clear(&s->rr);
    if (smtpc_stopping()) {
        smtpc_sess_drop(s, FALSE);
        return;
    }
    try_next_addr(s);
}

/* Every address failed (or there was none). */
static void
setup_failed(SmtpcSession *s)
{
    g_autofree char *diag = g_strdup(s->err_diag ? s->err_diag : "no address to connect to");
    smtpc_dest_setup_failed(s->dest, s->err_code ? s->err_code : 451,
                            s->err_ecode[0] ? s->err_ecode : "4.4.1", s->relay, diag);
    smtpc_sess_drop(s, FALSE);
}

static void on_connected(SmtpcSession *s);

static gboolean
on_connect_ready(gint fd, GIOCondition cond, gpointer p)
{
    SmtpcSession *s = p;
    int err = 0;
    socklen_t len = sizeof err;
    s->fd_watch = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        addr_error(s, 451, "4.4.1", "connect to %s: %s", s->relay, g_strerror(err));
        return G_SOURCE_REMOVE;
    }
    on_connected(s);
    return G_SOURCE_REMOVE;
}

static void
connect_start(SmtpcSession *s)
{
    SmtpcAddr *a = s->cur;
    g_free(s->relay);
    s->relay = g_strdup_printf("%s[%s]:%u", a->host, a->ip, a->port);
    s->state = ST_CONNECT;
    s->tls = FALSE;
    memset(&s->caps, 0, sizeof s->caps);
    s->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        addr_error(s, 451, "4.4.1", "connect to %s: socket: %s", s->relay, g_strerror(errno));
        return;
    }
    if (connect(s->fd, (struct sockaddr *)&a->sa, a->salen) == 0) {
        on_connected(s);
        return;
    }
    if (errno != EINPROGRESS) {
        addr_error(s, 451, "4.4.1", "connect to %s: %s", s->relay, g_strerror(errno));
        return;
    }
    s->fd_watch = g_unix_fd_add(s->fd, G_IO_OUT, on_connect_ready, s);
    smtpc_sess_arm(s, conf_of(s)->connect_timeout, "connecting");
}

static void
try_next_addr(SmtpcSession *s)
{
    if (s->retry_plain && s->cur) {
        s->retry_plain = FALSE;
        s->no_tls = TRUE;
        connect_start(s); /* the same address again, without STARTTLS */
        return;
    }
    s->no_tls = FALSE;
    if (!s->addrs || s->addr_i >= s->addrs->len) {
        setup_failed(s);
        return;
    }
    s->cur = s->addrs->pdata[s->addr_i++];
    connect_start(s);
}

static void on_read(KrConn *conn, gpointer ud);
static void on_tls_done(KrConn *conn, gboolean ok, gpointer ud);
static void on_closed(KrConn *conn, KrConnCloseReason why, gpointer ud);

static const KrConnHandlers handlers = {
    .read = on_read,
    .tls_done = on_tls_done,
    .closed = on_closed,
};

static void
on_connected(SmtpcSession *s)
{
    smtpc_sess_disarm(s);
    if (s->fd_watch)
        g_source_remove(s->fd_watch);
    s->fd_watch = 0;
    s->conn = kr_conn_new(s->fd, NULL, NULL, FALSE, NULL, NULL);
    s->fd = -1;
    smtpc_sess_ref(s); /* the conn's */
    kr_conn_set_handlers(s->conn, &handlers, s);
    smtpc_reply_reader_clear(&s->rr);
    smtpc_reply_reader_init(&s->rr, REPLY_LINE_MAX, REPLY_LINES_MAX);
    s->state = ST_GREETING;
    g_debug("connected to %s", s->relay);
    smtpc_sess_arm(s, conf_of(s)->greeting_timeout, "receiving the initial server greeting");
}

typedef struct {
    SmtpcSession *s;
    SmtpcResolveReq req;
    SmtpcResolved res;
} ResolveOp;

static void
resolve_work(gpointer p)
{
    ResolveOp *op = p;
    smtpc_resolve(&op->req, &op->res);
}

static void
resolve_done(gpointer p)
{
    ResolveOp *op = p;
    SmtpcSession *s = op->s;
    if (s->state != ST_DEAD) {
        if (op->res.addrs && op->res.addrs->len > 0) {
            s->addrs = g_steal_pointer(&op->res.addrs);
            try_next_addr(s);
        } else {
            s->err_code = op->res.code ? op->res.code : 451;
            g_strlcpy(s->err_ecode, op->res.ecode[0] ? op->res.ecode : "4.4.3",
                      sizeof s->err_ecode);
            g_free(s->err_diag);
            s->err_diag = g_strdup(op->res.error ? op->res.error : "no address");
            g_message("%s: %s", s->dest->target.host, s->err_diag);
            setup_failed(s);
        }
    }
    smtpc_resolved_clear(&op->res);
    smtpc_target_clear(&op->req.target);
    g_free(op->req.myhostname);
    g_free(op);
    smtpc_sess_unref(s);
}

void
smtpc_session_open(SmtpcDest *dest)
{
    SmtpcSession *s = g_new0(SmtpcSession, 1);
    s->refs = 1;
    s->dest = dest;
    s->node = dest->node;
    s->fd = -1;
    s->state = ST_RESOLVE;
    s->setup = TRUE;
    g_queue_init(&s->expect);
    dest->n_sessions++;
    dest->n_setup++;
    s->link.data = s;
    g_queue_push_tail_link(&sessions, &s->link);
    ResolveOp *op = g_new0(ResolveOp, 1);
    op->s = smtpc_sess_ref(s);
    op->req.target = dest->target;
    op->req.target.host = g_strdup(dest->target.host);
    op->req.override = s->node->override;
    op->req.dns = conf_of(s)->dns;
    op->req.max_addrs = (guint)conf_of(s)->max_addresses;
    op->req.myhostname = g_strdup(kr_hostname());
    kr_worker_run(resolve_work, resolve_done, op);
}

static void
start_auth(SmtpcSession *s)
{
    const char *user = conf_of(s)->relay_user;
    if (s->caps.auth & SMTPC_AUTH_PLAIN) {
        g_autofree char *b64 = smtpc_auth_plain(user, s->node->password);
        s->state = ST_AUTH;
        kr_conn_printf(s->conn, "AUTH PLAIN %s\r\n", b64);
        memset(b64, 0, strlen(b64));
    } else {
        s->state = ST_AUTH_LOGIN;
        smtpc_sess_send(s, "AUTH LOGIN");
    }
    smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to AUTH");
}

static void
session_ready(SmtpcSession *s)
{
    smtpc_sess_disarm(s);
    s->state = ST_READY;
    if (s->setup) {
        s->setup = FALSE;
        s->dest->n_setup--;
    }
    g_debug("%s: ready (%s%s%s)", s->relay, s->tls ? "TLS" : "plain",
            s->caps.ext & SMTPC_EXT_PIPELINING ? ", PIPELINING" : "",
            need_auth(s) ? ", authenticated" : "");
    smtpc_sess_next(s);
}

/* After EHLO (or HELO): STARTTLS, AUTH, or ready. */
static void
after_ehlo(SmtpcSession *s)
{
    const SmtpcConf *c = conf_of(s);
    gboolean must_tls = c->tls == SMTPC_TLS_ENCRYPT || need_auth(s);
    if (!s->tls && c->tls != SMTPC_TLS_NONE && !s->no_tls && s->node->tls_ctx &&
        (s->caps.ext & SMTPC_EXT_STARTTLS)) {
        s->state = ST_STARTTLS;
        smtpc_sess_send(s, "STARTTLS");
        smtpc_sess_arm(s, c->command_timeout, "waiting for the reply to STARTTLS");
        return;
    }
    if (!s->tls && must_tls) {
        addr_error(s, 451, "4.7.4", "TLS is required, but host %s %s", s->relay,
                   s->no_tls ? "failed the TLS handshake" : "offered no STARTTLS");
        return;
    }
    if (need_auth(s)) {
        if (!(s->caps.auth & (SMTPC_AUTH_PLAIN | SMTPC_AUTH_LOGIN))) {
            addr_error(s, 451, "4.7.4", "relay host %s offers no AUTH PLAIN or LOGIN", s->relay);
            return;
        }
        start_auth(s);
        return;
    }
    session_ready(s);
}

static void
send_ehlo(SmtpcSession *s)
{
    const char *helo =
        conf_of(s)->helo_name && *conf_of(s)->helo_name ? conf_of(s)->helo_name : kr_hostname();
    s->state = ST_EHLO;
    smtpc_sess_send(s, "EHLO %s", helo);
    smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to EHLO");
}

static void
on_tls_done(KrConn *conn, gboolean ok, gpointer ud)
{
    SmtpcSession *s = ud;
    if (s->conn != conn || s->state != ST_TLS)
        return;
    smtpc_sess_disarm(s);
    if (!ok) {
        if (conf_of(s)->tls == SMTPC_TLS_MAY && !need_auth(s)) {
            g_message("TLS handshake with %s failed; trying again without TLS", s->relay);
            s->retry_plain = TRUE;
        }
        addr_error(s, 451, "4.7.5", "TLS handshake with %s failed", s->relay);
        return;
    }
    s->tls = TRUE;
    g_autofree char *info = kr_conn_tls_info(conn);
    g_message("Untrusted TLS connection established to %s: %s", s->relay, info ? info : "TLS");
    smtpc_reply_reader_clear(&s->rr);
    smtpc_reply_reader_init(&s->rr, REPLY_LINE_MAX, REPLY_LINES_MAX);
    send_ehlo(s); /* RFC 3207: forget what was said before */
}

/* A reply during set-up. */
static void
setup_reply(SmtpcSession *s, const SmtpcReply *r)
{
    g_autofree char *text = smtpc_reply_oneline(r);
    const char *st = smtpc_reply_status(r);
    switch (s->state) {
    case ST_GREETING:
        if (r->code / 100 != 2) {
            addr_error(s, r->code >= 500 ? 451 : r->code, r->code >= 500 ? "4.4.0" : st,
                       "host %s refused to talk to me: %u %s", s->relay, r->code, text);
            return;
        }
        send_ehlo(s);
        return;
    case ST_EHLO:
        if (r->code / 100 == 2) {
            smtpc_caps_parse(r->text, &s->caps);
            after_ehlo(s);
        } else if (r->code >= 500 && r->code <= 504) {
            s->state = ST_HELO;
            smtpc_sess_send(s, "HELO %s",
                            conf_of(s)->helo_name && *conf_of(s)->helo_name ? conf_of(s)->helo_name
                                                                            : kr_hostname());
            smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to HELO");
        } else {
            addr_error(s, 451, "4.4.0", "host %s refused EHLO: %u %s", s->relay, r->code, text);
        }
        return;
    case ST_HELO:
        if (r->code / 100 != 2) {
            addr_error(s, 451, "4.4.0", "host %s refused HELO: %u %s", s->relay, r->code, text);
            return;
        }
        memset(&s->caps, 0, sizeof s->caps);
        after_ehlo(s);
        return;
    case ST_STARTTLS: {
        if (r->code != 220) {
            if (conf_of(s)->tls == SMTPC_TLS_ENCRYPT || need_auth(s)) {
                addr_error(s, 451, "4.7.4", "host %s refused STARTTLS: %u %s", s->relay, r->code,
                           text);
                return;
            }
            s->no_tls = TRUE; /* go on in clear */
            after_ehlo(s);
            return;
        }
        g_autoptr(GError) err = NULL;
        s->state = ST_TLS;
        const char *sni = s->cur->host;
        if (!kr_conn_start_tls_client(s->conn, s->node->tls_ctx, sni, &err)) {
            addr_error(s, 451, "4.7.5", "cannot start TLS with %s: %s", s->relay, err->message);
            return;
        }
        smtpc_sess_arm(s, conf_of(s)->command_timeout, "in the TLS handshake");
        return;
    }
    case ST_AUTH_LOGIN:
    case ST_AUTH_PASS:
        if (r->code != 334) {
            addr_error(s, 451, "4.7.0", "authentication with %s failed: %u %s", s->relay, r->code,
                       text);
            return;
        }
        {
            const char *v = s->state == ST_AUTH_LOGIN ? conf_of(s)->relay_user : s->node->password;
            g_autofree char *b64 = g_base64_encode((const guchar *)v, strlen(v));
            s->state = s->state == ST_AUTH_LOGIN ? ST_AUTH_PASS : ST_AUTH;
            kr_conn_printf(s->conn, "%s\r\n", b64);
            memset(b64, 0, strlen(b64));
            smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to AUTH");
        }
        return;
    case ST_AUTH:
        if (r->code != 235) {
            addr_error(s, 451, "4.7.0", "authentication with %s failed: %u %s", s->relay, r->code,
                       text);
            return;
        }
        g_message("authenticated to %s as %s", s->relay, conf_of(s)->relay_user);
        session_ready(s);
        return;
    default:
        return;
    }
}

/* ---- sessions between transactions ---- */

void
smtpc_sess_next(SmtpcSession *s)
{
    SmtpcDest *dest = s->dest;
    if (smtpc_stopping() || s->n_tx >= (guint)conf_of(s)->max_reuse) {
        smtpc_sess_drop(s, TRUE);
        return;
    }
    SmtpcDelivery *d = smtpc_dest_next(dest);
    if (d) {
        smtpc_tx_start(s, d);
        return;
    }
    if (conf_of(s)->cache_time <= 0) {
        smtpc_sess_drop(s, TRUE);
        return;
    }
    s->idle = TRUE;
    g_queue_push_tail(&dest->idle, s);
    smtpc_sess_arm(s, conf_of(s)->cache_time, "idle");
}

void
smtpc_session_deliver(SmtpcSession *s, SmtpcDelivery *d)
{
    s->idle = FALSE; /* the caller took it off dest->idle */
    smtpc_sess_disarm(s);
    smtpc_tx_start(s, d);
}

/* The end of a session. quit: say QUIT first. */
void
smtpc_sess_drop(SmtpcSession *s, gboolean quit)
{
    if (s->state == ST_DEAD)
        return;
    gboolean was_setup = s->setup;
    if (s->d) {
        /* Never reached with a transaction open (tx_abort clears it);
         * defensive. */
        SmtpcDelivery *d = s->d;
        smtpc_tx_clear(s);
        smtpc_delivery_fail(d, KR_RCPT_DEFERRED, 451, "4.3.0", s->relay, "session ended");
    }
    smtpc_tx_clear(s);
    smtpc_sess_disarm(s);
    close_fd(s);
    if (s->conn && quit)
        smtpc_sess_send(s, "QUIT");
    detach_conn(s);
    s->state = ST_DEAD;
    s->setup = FALSE;
    if (s->idle) {
        g_queue_remove(&s->dest->idle, s);
        s->idle = FALSE;
    }
    g_queue_unlink(&sessions, &s->link);
    SmtpcDest *dest = s->dest;
    s->dest = NULL;
    smtpc_dest_session_gone(dest, s, was_setup);
    smtpc_sess_unref(s);
}

void
smtpc_sessions_shutdown_all(void)
{
    GList *all = g_list_copy(sessions.head);
    for (GList *l = all; l; l = l->next)
        smtpc_sess_ref(l->data);
    for (GList *l = all; l; l = l->next) {
        SmtpcSession *s = l->data;
        if (s->state == ST_DEAD)
            continue;
        if (s->state == ST_TX)
            smtpc_tx_abort(s, 451, "4.3.2", "mail system is shutting down");
        else
            smtpc_sess_drop(s, s->state == ST_READY);
    }
    g_list_free_full(all, (GDestroyNotify)smtpc_sess_unref);
}

/* ---- events ---- */

static void
on_timeout_fired(SmtpcSession *s)
{
    switch (s->state) {
    case ST_CONNECT:
        addr_error(s, 451, "4.4.1", "connect to %s: timed out", s->relay);
        return;
    case ST_GREETING:
    case ST_EHLO:
    case ST_HELO:
    case ST_STARTTLS:
    case ST_TLS:
    case ST_AUTH:
    case ST_AUTH_LOGIN:
    case ST_AUTH_PASS:
        addr_error(s, 451, "4.4.2", "conversation with %s timed out while %s", s->relay,
                   s->waiting_for);
        return;
    case ST_TX:
        smtpc_tx_abort(s, 451, "4.4.2", "conversation with %s timed out while %s", s->relay,
                       s->waiting_for);
        return;
    case ST_READY: /* idle too long */
        smtpc_sess_drop(s, TRUE);
        return;
    default:
        smtpc_sess_drop(s, FALSE);
        return;
    }
}

static void
lost(SmtpcSession *s, const char *what)
{
    switch (s->state) {
    case ST_GREETING:
    case ST_EHLO:
    case ST_HELO:
    case ST_STARTTLS:
    case ST_TLS:
    case ST_AUTH:
    case ST_AUTH_LOGIN:
    case ST_AUTH_PASS:
        addr_error(s, 451, "4.4.2", "%s with %s while %s", what, s->relay, s->waiting_for);
        return;
    case ST_TX:
        smtpc_tx_abort(s, 451, "4.4.2", "%s with %s while %s", what, s->relay, s->waiting_for);
        return;
    default:
        smtpc_sess_drop(s, FALSE);
        return;
    }
}

static void
on_reply(SmtpcSession *s, const SmtpcReply *r)
{
    if (kr_debug_enabled("smtp")) {
        g_autofree char *t = smtpc_reply_oneline(r);
        g_debug("%s: < %u %s", relay_name(s), r->code, t);
    }
    switch (s->state) {
    case ST_TX:
        smtpc_tx_reply(s, r);
        return;
    case ST_READY: /* idle: the server says goodbye (421 timeout) */
        g_debug("%s: closing idle session after reply %u", relay_name(s), r->code);
        smtpc_sess_drop(s, FALSE);
        return;
    default:
        setup_reply(s, r);
        return;
    }
}

static void
on_read(KrConn *conn, gpointer ud)
{
    SmtpcSession *s = ud;
    gsize len = 0;
    const char *buf = kr_conn_input(conn, &len);
    if (s->conn != conn) {
        kr_conn_consume(conn, len);
        return;
    }
    smtpc_sess_ref(s);
    while (s->conn == conn) {
        buf = kr_conn_input(conn, &len);
        if (len == 0)
            break;
        gsize used = 0;
        SmtpcReply r = {0};
        g_autoptr(GError) err = NULL;
        SmtpcReplyStatus st = smtpc_reply_feed(&s->rr, buf, len, &used, &r, &err);
        kr_conn_consume(conn, used);
        if (st == SMTPC_REPLY_MORE)
            break;
        if (st == SMTPC_REPLY_BAD) {
            g_warning("%s: protocol error: %s", relay_name(s), err->message);
            if (s->state == ST_TX)
                smtpc_tx_abort(s, 451, "4.5.0", "host %s sent a malformed reply (%s) while %s",
                               relay_name(s), err->message, s->waiting_for);
            else if (s->state == ST_READY)
                smtpc_sess_drop(s, FALSE);
            else
                addr_error(s, 451, "4.5.0", "host %s sent a malformed reply (%s) while %s",
                           relay_name(s), err->message, s->waiting_for);
            break;
        }
        on_reply(s, &r);
        smtpc_reply_clear(&r);
    }
    smtpc_sess_unref(s);
}

static void
on_closed(KrConn *conn, KrConnCloseReason why, gpointer ud)
{
    SmtpcSession *s = ud;
    if (s->conn == conn) {
        s->conn = NULL;
        lost(s, why == KR_CONN_CLOSED_EOF       ? "lost connection"
                : why == KR_CONN_CLOSED_TIMEOUT ? "timeout"
                                                : "connection error");
    }
    smtpc_sess_unref(s);
}
