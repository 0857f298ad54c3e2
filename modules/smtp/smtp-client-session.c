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
 * Transactions: MAIL FROM, RCPT TO for each recipient, DATA and the
 * content (dot-stuffed, CRLF; or BDAT ... LAST for BINARYMIME), the final
 * reply. With PIPELINING, MAIL, every RCPT and DATA go out at once
 * (RFC 2920) and the replies are matched in order. The reply to each
 * RCPT decides for that recipient (4xx deferred, 5xx failed); the reply
 * to MAIL or DATA, or to the content, for all recipients still open.
 * After a failed transaction, RSET; a session that ends a transaction
 * normally takes the next waiting delivery at once or idles for
 * cache_time (a reply or EOF while idle just ends it). Every wait has a
 * timeout; a timeout, a lost connection or a garbled reply during a
 * transaction defers the recipients still open and drops the session.
 *
 * I/O goes through KrConn (kr_conn_new on the connect()ed socket; see
 * core/kr-conn-private.h, which this file includes: it is the core's
 * documented way to wrap an outgoing socket, but not in the public
 * headers). KrConn has no "output drained" callback, so the content pump
 * polls kr_conn_output_pending() every 10 ms while more than PUMP_HIGH
 * bytes wait. The content is read from the queue file in a worker
 * (kr_msg_read, PUMP_CHUNK bytes at a time).
 *
 * Lifetime: a session holds one reference while alive (dropped in
 * session_drop), its connection one until the conn's closed handler, each
 * worker operation one. A conn that is let go is detached (s->conn no
 * longer points at it), so its late callbacks do nothing.
 */
#include "smtp-client.h"
#include "../../core/kr-conn-private.h"
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REPLY_LINE_MAX  4096
#define REPLY_LINES_MAX 200
#define PUMP_CHUNK      (128 * 1024)
#define PUMP_HIGH       (256 * 1024)
#define PUMP_POLL_MS    10

typedef enum {
    ST_RESOLVE,
    ST_CONNECT,
    ST_GREETING,
    ST_EHLO,
    ST_HELO,
    ST_STARTTLS,
    ST_TLS,
    ST_AUTH,       /* waiting for 235 */
    ST_AUTH_LOGIN, /* waiting for the 334 user name prompt */
    ST_AUTH_PASS,  /* waiting for the 334 password prompt */
    ST_READY,      /* set up, no transaction (idle or about to start one) */
    ST_TX,
    ST_DEAD,
} SessState;

typedef enum { EX_MAIL, EX_RCPT, EX_DATA, EX_DOT, EX_IGNORE, EX_RSET } Expect;

struct SmtpcSession {
    GList link; /* in `sessions` */
    int refs;
    SmtpcDest *dest;
    SmtpcNode *node;
    SessState state;
    gboolean setup; /* counted in dest->n_setup */
    gboolean idle;  /* in dest->idle */
    GPtrArray *addrs;
    guint addr_i;
    SmtpcAddr *cur;
    gboolean no_tls;      /* the current address without STARTTLS */
    gboolean retry_plain; /* connect to the current address again, without STARTTLS */
    int fd;
    guint fd_watch;
    KrConn *conn;
    guint timer;
    const char *waiting_for;
    SmtpcReplyReader rr;
    SmtpcCaps caps;
    gboolean tls;
    char *relay; /* "host[ip]:port" */
    int err_code;
    char err_ecode[12];
    char *err_diag;
    guint n_tx;
    /* the transaction */
    SmtpcDelivery *d;
    guint tx_gen;
    GQueue expect; /* GUINT_TO_POINTER(Expect | index << 8) */
    guint n_send;  /* recipients to send (indexes in `send`) */
    GArray *send;  /* guint: indexes into d->rcpts */
    guint next_rcpt;
    guint n_accepted;
    gboolean *accepted; /* per index into d->rcpts */
    gboolean mail_failed, data_sent, data_ok, data_failed, content_sent, final_reply, ignored;
    gboolean pipelining, bdat;
    /* the content pump */
    goffset off;
    SmtpcDot dot;
    gboolean reading;
    guint pump_timer;
    gsize pump_last_pending;
};

static GQueue sessions = G_QUEUE_INIT;

static void session_drop(SmtpcSession *s, gboolean quit);
static void try_next_addr(SmtpcSession *s);
static void session_next(SmtpcSession *s);
static void tx_advance(SmtpcSession *s);

/* ---- small helpers ---- */

static SmtpcSession *
session_ref(SmtpcSession *s)
{
    s->refs++;
    return s;
}

static void
session_unref(SmtpcSession *s)
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

static const SmtpcConf *
conf_of(SmtpcSession *s)
{
    return s->node->conf;
}

static gboolean
need_auth(SmtpcSession *s)
{
    return s->dest->relay && s->node->password && conf_of(s)->relay_user && *conf_of(s)->relay_user;
}

static const char *
relay_name(SmtpcSession *s)
{
    return s->relay ? s->relay : s->dest->target.host;
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

static void
disarm(SmtpcSession *s)
{
    if (s->timer)
        g_source_remove(s->timer);
    s->timer = 0;
}

static void
arm(SmtpcSession *s, gint64 seconds, const char *what)
{
    disarm(s);
    s->waiting_for = what;
    s->timer = g_timeout_add_seconds((guint)MAX(seconds, 1), on_timer, s);
}

static void send_line(SmtpcSession *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
send_line(SmtpcSession *s, const char *fmt, ...)
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
    disarm(s);
    close_fd(s);
    if (s->conn && s->state != ST_CONNECT && s->state != ST_TLS)
        send_line(s, "QUIT");
    detach_conn(s);
    smtpc_reply_reader_clear(&s->rr);
    if (smtpc_stopping()) {
        session_drop(s, FALSE);
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
    session_drop(s, FALSE);
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
    arm(s, conf_of(s)->connect_timeout, "connecting");
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
    disarm(s);
    if (s->fd_watch)
        g_source_remove(s->fd_watch);
    s->fd_watch = 0;
    s->conn = kr_conn_new(s->fd, NULL, NULL, FALSE, NULL, NULL);
    s->fd = -1;
    session_ref(s); /* the conn's */
    kr_conn_set_handlers(s->conn, &handlers, s);
    smtpc_reply_reader_clear(&s->rr);
    smtpc_reply_reader_init(&s->rr, REPLY_LINE_MAX, REPLY_LINES_MAX);
    s->state = ST_GREETING;
    g_debug("connected to %s", s->relay);
    arm(s, conf_of(s)->greeting_timeout, "receiving the initial server greeting");
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
    session_unref(s);
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
    op->s = session_ref(s);
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
        send_line(s, "AUTH LOGIN");
    }
    arm(s, conf_of(s)->command_timeout, "waiting for the reply to AUTH");
}

static void
session_ready(SmtpcSession *s)
{
    disarm(s);
    s->state = ST_READY;
    if (s->setup) {
        s->setup = FALSE;
        s->dest->n_setup--;
    }
    g_debug("%s: ready (%s%s%s)", s->relay, s->tls ? "TLS" : "plain",
            s->caps.ext & SMTPC_EXT_PIPELINING ? ", PIPELINING" : "",
            need_auth(s) ? ", authenticated" : "");
    session_next(s);
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
        send_line(s, "STARTTLS");
        arm(s, c->command_timeout, "waiting for the reply to STARTTLS");
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
    send_line(s, "EHLO %s", helo);
    arm(s, conf_of(s)->command_timeout, "waiting for the reply to EHLO");
}

static void
on_tls_done(KrConn *conn, gboolean ok, gpointer ud)
{
    SmtpcSession *s = ud;
    if (s->conn != conn || s->state != ST_TLS)
        return;
    disarm(s);
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
            send_line(s, "HELO %s",
                      conf_of(s)->helo_name && *conf_of(s)->helo_name ? conf_of(s)->helo_name
                                                                      : kr_hostname());
            arm(s, conf_of(s)->command_timeout, "waiting for the reply to HELO");
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
        arm(s, conf_of(s)->command_timeout, "in the TLS handshake");
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
            arm(s, conf_of(s)->command_timeout, "waiting for the reply to AUTH");
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

/* ---- transactions ---- */

static void
send_rcpt(SmtpcSession *s, guint j)
{
    guint k = g_array_index(s->send, guint, j);
    KrRcpt *r = kr_job_rcpt(s->d->sj->job, g_array_index(s->d->rcpts, guint, k));
    GString *cmd = g_string_new(NULL);
    smtpc_rcpt_cmd(cmd, smtpc_rcpt_address(r), (s->caps.ext & SMTPC_EXT_DSN) != 0, r->notify,
                   r->orcpt);
    g_string_truncate(cmd, cmd->len - 2);
    send_line(s, "%s", cmd->str);
    g_string_free(cmd, TRUE);
    g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_RCPT | (k << 8)));
}

/* Result for recipient k (index into d->rcpts) from a reply. */
static void
rcpt_reply(SmtpcSession *s, guint k, const SmtpcReply *r, const char *after)
{
    KrRcptState st = r->code < 300   ? KR_RCPT_DELIVERED
                     : r->code < 500 ? KR_RCPT_DEFERRED
                                     : KR_RCPT_FAILED;
    g_autofree char *text = smtpc_reply_oneline(r);
    KrRcpt *rc = kr_job_rcpt(s->d->sj->job, g_array_index(s->d->rcpts, guint, k));
    kr_rcpt_set_attr(rc, "remote_mta", s->cur->host);
    if (st == KR_RCPT_DELIVERED)
        smtpc_rcpt_result(s->d, k, st, (int)r->code, smtpc_reply_status(r), s->relay, "%u %s %s",
                          r->code, smtpc_reply_status(r), text);
    else
        smtpc_rcpt_result(s->d, k, st, (int)r->code, smtpc_reply_status(r), s->relay,
                          "%s (in reply to %s command)", text, after);
}

/* Every open recipient of the transaction gets the reply. */
static void
all_reply(SmtpcSession *s, const SmtpcReply *r, const char *after, gboolean accepted_only)
{
    for (guint j = 0; j < s->n_send; j++) {
        guint k = g_array_index(s->send, guint, j);
        if (!accepted_only || s->accepted[k])
            rcpt_reply(s, k, r, after);
    }
}

static void
tx_clear(SmtpcSession *s)
{
    g_queue_clear(&s->expect);
    g_clear_pointer(&s->accepted, g_free);
    if (s->send)
        g_array_unref(s->send);
    s->send = NULL;
    if (s->pump_timer)
        g_source_remove(s->pump_timer);
    s->pump_timer = 0;
    s->reading = FALSE;
    s->d = NULL;
    s->tx_gen++;
    if (s->state == ST_TX)
        s->state = ST_READY;
}

/* The transaction is over (every recipient has its result). */
static void
tx_finish(SmtpcSession *s, gboolean usable)
{
    SmtpcDelivery *d = s->d;
    tx_clear(s);
    s->n_tx++;
    s->state = ST_READY;
    disarm(s);
    smtpc_delivery_end(d);
    if (!usable) {
        session_drop(s, TRUE);
        return;
    }
    session_next(s);
}

/* Something broke during the transaction: open recipients are deferred,
 * the session ends. */
static void tx_abort(SmtpcSession *s, int code, const char *ecode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static void
tx_abort(SmtpcSession *s, int code, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *diag = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    SmtpcDelivery *d = s->d;
    tx_clear(s);
    s->state = ST_READY;
    smtpc_delivery_fail(d, code >= 500 ? KR_RCPT_FAILED : KR_RCPT_DEFERRED, code, ecode, s->relay,
                        diag);
    session_drop(s, FALSE);
}

static void
tx_start(SmtpcSession *s, SmtpcDelivery *d)
{
    SmtpcJob *sj = d->sj;
    KrMsg *msg = sj->msg;
    s->d = d;
    s->state = ST_TX;
    s->tx_gen++;
    s->accepted = g_new0(gboolean, d->rcpts->len);
    s->send = g_array_new(FALSE, FALSE, sizeof(guint));
    s->n_send = s->next_rcpt = s->n_accepted = 0;
    s->mail_failed = s->data_sent = s->data_ok = s->data_failed = FALSE;
    s->content_sent = s->final_reply = s->ignored = FALSE;
    const char *sender = kr_msg_sender(msg);
    const char *body = kr_msg_attr(msg, "body");
    gboolean utf8_sender = FALSE, utf8_any = FALSE;
    gboolean binary = body && !g_ascii_strcasecmp(body, "BINARYMIME");
    const char *relay = s->relay;
    if (!smtpc_address_ok(sender, TRUE, &utf8_sender)) {
        smtpc_delivery_fail(d, KR_RCPT_FAILED, 553, "5.1.7", relay, "bad sender address syntax");
        tx_clear(s);
        session_next(s);
        return;
    }
    if ((s->caps.ext & SMTPC_EXT_SIZE) && s->caps.size_max > 0 &&
        (guint64)sj->size > s->caps.size_max) {
        g_autofree char *diag =
            g_strdup_printf("message size %" G_GINT64_FORMAT
                            " exceeds the size limit %" G_GUINT64_FORMAT " of host %s",
                            (gint64)sj->size, s->caps.size_max, s->cur->host);
        smtpc_delivery_fail(d, KR_RCPT_FAILED, 552, "5.3.4", relay, diag);
        tx_clear(s);
        session_next(s);
        return;
    }
    if (binary && (s->caps.ext & (SMTPC_EXT_BINARYMIME | SMTPC_EXT_CHUNKING)) !=
                      (SMTPC_EXT_BINARYMIME | SMTPC_EXT_CHUNKING)) {
        g_autofree char *diag = g_strdup_printf(
            "the message is binary (BINARYMIME) and host %s does not accept that", s->cur->host);
        smtpc_delivery_fail(d, KR_RCPT_FAILED, 554, "5.6.3", relay, diag);
        tx_clear(s);
        session_next(s);
        return;
    }
    utf8_any = utf8_sender;
    for (guint k = 0; k < d->rcpts->len; k++) {
        KrRcpt *r = kr_job_rcpt(sj->job, g_array_index(d->rcpts, guint, k));
        gboolean u = FALSE;
        smtpc_address_ok(smtpc_rcpt_address(r), FALSE, &u);
        if (u && !(s->caps.ext & SMTPC_EXT_SMTPUTF8)) {
            smtpc_rcpt_result(d, k, KR_RCPT_FAILED, 553, "5.6.7", relay,
                              "host %s does not support SMTPUTF8, needed for this address",
                              s->cur->host);
            continue;
        }
        utf8_any |= u;
        g_array_append_val(s->send, k);
    }
    if (utf8_sender && !(s->caps.ext & SMTPC_EXT_SMTPUTF8)) {
        for (guint j = 0; j < s->send->len; j++)
            smtpc_rcpt_result(
                d, g_array_index(s->send, guint, j), KR_RCPT_FAILED, 553, "5.6.7", relay,
                "host %s does not support SMTPUTF8, needed for the sender address", s->cur->host);
        g_array_set_size(s->send, 0);
    }
    s->n_send = s->send->len;
    if (s->n_send == 0) {
        smtpc_delivery_end(d);
        tx_clear(s);
        session_next(s);
        return;
    }
    s->pipelining = (s->caps.ext & SMTPC_EXT_PIPELINING) != 0;
    s->bdat = binary;
    SmtpcMailParams mp = {
        .ext = s->caps.ext,
        .size = (guint64)sj->size,
        .body = body,
        .smtputf8 = utf8_any || kr_msg_attr(msg, "smtputf8") != NULL,
        .ret = kr_msg_attr(msg, "ret"),
        .envid = kr_msg_attr(msg, "envid"),
    };
    GString *cmd = g_string_new(NULL);
    smtpc_mail_cmd(cmd, sender, &mp);
    g_string_truncate(cmd, cmd->len - 2);
    send_line(s, "%s", cmd->str);
    g_string_free(cmd, TRUE);
    g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_MAIL));
    if (s->pipelining) {
        for (; s->next_rcpt < s->n_send; s->next_rcpt++)
            send_rcpt(s, s->next_rcpt);
        if (!s->bdat) {
            send_line(s, "DATA");
            g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_DATA));
            s->data_sent = TRUE;
        }
    }
    arm(s, conf_of(s)->command_timeout, "waiting for the reply to MAIL FROM");
}

/* ---- the content pump ---- */

typedef struct {
    SmtpcSession *s;
    KrMsg *msg;
    goffset off;
    guint gen;
    char *buf;
    gssize n;
    GError *error;
} ReadOp;

static void pump_read(SmtpcSession *s);

static void
read_work(gpointer p)
{
    ReadOp *op = p;
    op->n = kr_msg_read(op->msg, op->off, op->buf, PUMP_CHUNK, &op->error);
}

static gboolean
pump_check(gpointer p)
{
    SmtpcSession *s = p;
    gsize pending = kr_conn_output_pending(s->conn);
    if (pending < s->pump_last_pending)
        arm(s, conf_of(s)->data_timeout, "sending the message content");
    s->pump_last_pending = pending;
    if (pending > PUMP_HIGH)
        return G_SOURCE_CONTINUE;
    s->pump_timer = 0;
    pump_read(s);
    return G_SOURCE_REMOVE;
}

static void
content_end(SmtpcSession *s)
{
    if (!s->bdat) {
        GString *out = g_string_new(NULL);
        smtpc_dot_finish(&s->dot, out);
        kr_conn_write(s->conn, out->str, out->len);
        g_string_free(out, TRUE);
    }
    s->content_sent = TRUE;
    g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_DOT));
    arm(s, conf_of(s)->data_timeout, "waiting for the reply to the end of the content");
}

static void
read_done(gpointer p)
{
    ReadOp *op = p;
    SmtpcSession *s = op->s;
    if (s->state == ST_TX && op->gen == s->tx_gen && s->conn) {
        s->reading = FALSE;
        if (op->n < 0) {
            g_warning("%s: cannot read the queue file: %s", kr_msg_queue_id(op->msg),
                      op->error ? op->error->message : "?");
            tx_abort(s, 451, "4.3.0", "cannot read the queue file: %s",
                     op->error ? op->error->message : "read error");
        } else if (op->n == 0 || (s->bdat && op->off >= s->d->sj->size)) {
            if (s->bdat && op->off != s->d->sj->size)
                tx_abort(s, 451, "4.3.0", "the message changed size while being sent");
            else
                content_end(s);
        } else {
            gssize n = op->n;
            if (s->bdat) {
                n = MIN(n, s->d->sj->size - op->off);
                kr_conn_write(s->conn, op->buf, (gsize)n);
            } else {
                GString *out = g_string_sized_new((gsize)n + n / 32 + 16);
                smtpc_dot_feed(&s->dot, out, op->buf, (gsize)n);
                kr_conn_write(s->conn, out->str, out->len);
                g_string_free(out, TRUE);
            }
            s->off = op->off + n;
            arm(s, conf_of(s)->data_timeout, "sending the message content");
            s->pump_last_pending = kr_conn_output_pending(s->conn);
            if (s->pump_last_pending > PUMP_HIGH)
                s->pump_timer = g_timeout_add(PUMP_POLL_MS, pump_check, s);
            else
                pump_read(s);
        }
    }
    kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op->buf);
    g_free(op);
    session_unref(s);
}

static void
pump_read(SmtpcSession *s)
{
    ReadOp *op = g_new0(ReadOp, 1);
    op->s = session_ref(s);
    op->msg = kr_msg_ref(s->d->sj->msg);
    op->off = s->off;
    op->gen = s->tx_gen;
    op->buf = g_malloc(PUMP_CHUNK);
    s->reading = TRUE;
    kr_worker_run(read_work, read_done, op);
}

static void
pump_start(SmtpcSession *s)
{
    s->off = 0;
    smtpc_dot_init(&s->dot);
    if (s->bdat)
        send_line(s, "BDAT %" G_GINT64_FORMAT " LAST", (gint64)s->d->sj->size);
    arm(s, conf_of(s)->data_timeout, "sending the message content");
    pump_read(s);
}

static void
send_rset(SmtpcSession *s)
{
    send_line(s, "RSET");
    g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_RSET));
    arm(s, conf_of(s)->command_timeout, "waiting for the reply to RSET");
}

/* Next step when no reply is outstanding. */
static void
tx_advance(SmtpcSession *s)
{
    if (!g_queue_is_empty(&s->expect) || s->reading || s->pump_timer)
        return;
    if (s->final_reply) {
        tx_finish(s, TRUE);
        return;
    }
    if (s->mail_failed || s->data_failed || s->ignored) {
        send_rset(s);
        return;
    }
    if (s->next_rcpt < s->n_send) {
        send_rcpt(s, s->next_rcpt++);
        arm(s, conf_of(s)->command_timeout, "waiting for the reply to RCPT TO");
        return;
    }
    if (s->n_accepted == 0) {
        send_rset(s);
        return;
    }
    if (!s->data_sent) {
        s->data_sent = TRUE;
        if (s->bdat) {
            s->data_ok = TRUE;
            pump_start(s);
        } else {
            send_line(s, "DATA");
            g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_DATA));
            arm(s, conf_of(s)->command_timeout, "waiting for the reply to DATA");
        }
        return;
    }
    if (s->data_ok && !s->content_sent) {
        pump_start(s);
        return;
    }
}

static void
tx_reply(SmtpcSession *s, const SmtpcReply *r)
{
    if (g_queue_is_empty(&s->expect)) {
        g_autofree char *text = smtpc_reply_oneline(r);
        tx_abort(s, 451, "4.5.0", "host %s sent an unexpected reply: %u %s", relay_name(s), r->code,
                 text);
        return;
    }
    guint e = GPOINTER_TO_UINT(g_queue_pop_head(&s->expect));
    guint k = e >> 8;
    gboolean ok = r->code / 100 == 2;
    switch (e & 0xff) {
    case EX_MAIL:
        if (!ok) {
            s->mail_failed = TRUE;
            all_reply(s, r, "MAIL FROM", FALSE);
        }
        break;
    case EX_RCPT:
        if (s->mail_failed)
            break;
        if (ok) {
            s->accepted[k] = TRUE;
            s->n_accepted++;
        } else {
            rcpt_reply(s, k, r, "RCPT TO");
        }
        break;
    case EX_DATA:
        if (s->mail_failed || s->n_accepted == 0) {
            if (r->code == 354) { /* it wants content nobody can receive */
                kr_conn_printf(s->conn, ".\r\n");
                g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_IGNORE));
                s->ignored = TRUE;
            }
            break;
        }
        if (r->code == 354) {
            s->data_ok = TRUE;
        } else {
            s->data_failed = TRUE;
            all_reply(s, r, "DATA", TRUE);
        }
        break;
    case EX_DOT:
        all_reply(s, r, s->bdat ? "end of BDAT" : "end of DATA", TRUE);
        s->final_reply = TRUE;
        break;
    case EX_IGNORE:
        break;
    case EX_RSET:
        tx_finish(s, ok);
        return;
    }
    if (!g_queue_is_empty(&s->expect))
        arm(s, conf_of(s)->command_timeout, "waiting for pipelined replies");
    else
        disarm(s);
    tx_advance(s);
}

/* ---- sessions between transactions ---- */

static void
session_next(SmtpcSession *s)
{
    SmtpcDest *dest = s->dest;
    if (smtpc_stopping() || s->n_tx >= (guint)conf_of(s)->max_reuse) {
        session_drop(s, TRUE);
        return;
    }
    SmtpcDelivery *d = smtpc_dest_next(dest);
    if (d) {
        tx_start(s, d);
        return;
    }
    if (conf_of(s)->cache_time <= 0) {
        session_drop(s, TRUE);
        return;
    }
    s->idle = TRUE;
    g_queue_push_tail(&dest->idle, s);
    arm(s, conf_of(s)->cache_time, "idle");
}

void
smtpc_session_deliver(SmtpcSession *s, SmtpcDelivery *d)
{
    s->idle = FALSE; /* the caller took it off dest->idle */
    disarm(s);
    tx_start(s, d);
}

/* The end of a session. quit: say QUIT first. */
static void
session_drop(SmtpcSession *s, gboolean quit)
{
    if (s->state == ST_DEAD)
        return;
    gboolean was_setup = s->setup;
    if (s->d) {
        /* Never reached with a transaction open (tx_abort clears it);
         * defensive. */
        SmtpcDelivery *d = s->d;
        tx_clear(s);
        smtpc_delivery_fail(d, KR_RCPT_DEFERRED, 451, "4.3.0", s->relay, "session ended");
    }
    tx_clear(s);
    disarm(s);
    close_fd(s);
    if (s->conn && quit)
        send_line(s, "QUIT");
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
    session_unref(s);
}

void
smtpc_sessions_shutdown_all(void)
{
    GList *all = g_list_copy(sessions.head);
    for (GList *l = all; l; l = l->next)
        session_ref(l->data);
    for (GList *l = all; l; l = l->next) {
        SmtpcSession *s = l->data;
        if (s->state == ST_DEAD)
            continue;
        if (s->state == ST_TX)
            tx_abort(s, 451, "4.3.2", "mail system is shutting down");
        else
            session_drop(s, s->state == ST_READY);
    }
    g_list_free_full(all, (GDestroyNotify)session_unref);
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
        tx_abort(s, 451, "4.4.2", "conversation with %s timed out while %s", s->relay,
                 s->waiting_for);
        return;
    case ST_READY: /* idle too long */
        session_drop(s, TRUE);
        return;
    default:
        session_drop(s, FALSE);
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
        tx_abort(s, 451, "4.4.2", "%s with %s while %s", what, s->relay, s->waiting_for);
        return;
    default:
        session_drop(s, FALSE);
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
        tx_reply(s, r);
        return;
    case ST_READY: /* idle: the server says goodbye (421 timeout) */
        g_debug("%s: closing idle session after reply %u", relay_name(s), r->code);
        session_drop(s, FALSE);
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
    session_ref(s);
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
                tx_abort(s, 451, "4.5.0", "host %s sent a malformed reply (%s) while %s",
                         relay_name(s), err->message, s->waiting_for);
            else if (s->state == ST_READY)
                session_drop(s, FALSE);
            else
                addr_error(s, 451, "4.5.0", "host %s sent a malformed reply (%s) while %s",
                           relay_name(s), err->message, s->waiting_for);
            break;
        }
        on_reply(s, &r);
        smtpc_reply_clear(&r);
    }
    session_unref(s);
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
    session_unref(s);
}
