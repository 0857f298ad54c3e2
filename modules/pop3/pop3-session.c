/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   pop3-session.c - one POP3 connection: the command loop and the
 *   AUTHORIZATION, TRANSACTION and UPDATE states (RFC 1939).
 *
 * SYNOPSIS
 *   pop3_session_accept(srv, conn)   greet and serve a new connection
 *   pop3_command_done(s)             an asynchronous command finished
 *   pop3_session_reap(s)             free a dead session once idle
 *   pop3_is_deleted(s, seq)          DELE mark of a message
 *
 * DESCRIPTION
 *   Commands are handled one at a time, in order: a client may pipeline
 *   (RFC 2449 PIPELINING), the replies come in the same order. A command
 *   that must wait (password check, opening the mailbox, reading a
 *   message, QUIT's expunge) pauses the connection's input and resumes it
 *   when done. Store calls and password checks run in worker threads;
 *   at most one per session is in flight (in_job). If the connection dies
 *   meanwhile, the session is freed when that job comes back (reap).
 *
 *   STLS: "+OK", then the TLS handshake; bytes the client sent after STLS
 *   in the same packet are discarded (kr_conn_start_tls), and USER/SASL
 *   state is forgotten.
 *
 *   The maildrop is opened with KR_MAILBOX_EXCLUSIVE: a second session on
 *   the same mailbox gets "-ERR [IN-USE]". QUIT in TRANSACTION expunges
 *   the DELE'd messages (UPDATE); any other end of the connection removes
 *   nothing.
 */
#include "pop3.h"

#include <string.h>

static void process_input(Pop3Session *s);

static void reply(Pop3Session *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
reply(Pop3Session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    kr_conn_printf(s->conn, "%s\r\n", text);
}

static char *
shown(const char *s)
{
    g_autofree char *cut = g_strndup(s ? s : "", 100);
    return g_strescape(cut, NULL);
}

gboolean
pop3_is_deleted(Pop3Session *s, guint32 seq)
{
    return seq >= 1 && seq <= s->n && (s->del[(seq - 1) / 8] & (1u << ((seq - 1) % 8)));
}

/* --- lifetime ------------------------------------------------------------------ */

static void
session_free(Pop3Session *s)
{
    pop3_out_free(s);
    pop3_out_drop_ahead(s);
    if (s->ra_idle)
        g_source_remove(s->ra_idle);
    if (s->user)
        memset(s->user, 0, strlen(s->user));
    g_free(s->user);
    g_free(s->login);
    g_free(s->del);
    g_free(s);
}

static void
close_mb_work(gpointer p)
{
    Pop3Session *s = p;
    pop3_g.ops->close(s->mb);
    s->mb = NULL;
}

static void
close_mb_done(gpointer p)
{
    session_free(p);
}

gboolean
pop3_session_reap(Pop3Session *s)
{
    if (!s->dead || s->in_job)
        return FALSE;
    if (s->timer) {
        g_source_remove(s->timer);
        s->timer = 0;
    }
    if (s->mb) {
        s->in_job = TRUE;
        kr_worker_run(close_mb_work, close_mb_done, s);
    } else {
        session_free(s);
    }
    return TRUE;
}

static void
on_closed(KrConn *conn, KrConnCloseReason why, gpointer ud)
{
    Pop3Session *s = ud;
    if (s->login && s->state != POP3_ST_UPDATE)
        g_message("%s: disconnected: user=<%s>, ip=%s, retr=%u/%" G_GINT64_FORMAT
                  ", del=%u (not removed)",
                  s->srv->name, s->login, kr_conn_peer_ip(conn), s->nretr, s->retr_bytes, s->ndel);
    s->dead = TRUE;
    s->conn = NULL;
    if (s->timer && !s->in_job) {
        g_source_remove(s->timer);
        s->timer = 0;
    }
    pop3_session_reap(s);
}

static void
on_timeout(KrConn *conn, gpointer ud)
{
    kr_conn_printf(conn, "-ERR Disconnected for inactivity.\r\n");
}

void
pop3_command_done(Pop3Session *s)
{
    s->busy = FALSE;
    if (s->dead) {
        pop3_session_reap(s);
        return;
    }
    kr_conn_resume(s->conn);
}

static void
begin_async(Pop3Session *s)
{
    s->busy = TRUE;
    kr_conn_pause(s->conn);
}

/* --- AUTHORIZATION -------------------------------------------------------------- */

static gboolean
plaintext_ok(Pop3Session *s)
{
    if (kr_conn_is_tls(s->conn))
        return TRUE;
    if (!s->srv->conf->allow_plaintext_loopback)
        return FALSE;
    const char *ip = kr_conn_peer_ip(s->conn);
    if (!ip)
        return FALSE;
    return g_str_has_prefix(ip, "127.") || strcmp(ip, "::1") == 0 ||
           g_str_has_prefix(ip, "::ffff:127.");
}

static void
send_capa(Pop3Session *s)
{
    GString *c = g_string_new("+OK Capability list follows\r\n"
                              "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n");
    if (s->state == POP3_ST_AUTH) {
        if (plaintext_ok(s))
            g_string_append(c, "USER\r\nSASL PLAIN\r\n");
        if (s->srv->starttls && !kr_conn_is_tls(s->conn))
            g_string_append(c, "STLS\r\n");
    }
    g_string_append(c, "IMPLEMENTATION kurir\r\n.\r\n");
    kr_conn_write(s->conn, c->str, c->len);
    g_string_free(c, TRUE);
}

typedef struct {
    Pop3Session *s;
    char *user;
    KrMailbox *mb;
    GError *error;
} OpenJob;

static void
open_work(gpointer p)
{
    OpenJob *j = p;
    /* \Recent is an IMAP notion: a POP3 session leaves new mail recent */
    j->mb = pop3_g.ops->open(pop3_g.store->self, j->user, "INBOX",
                             KR_MAILBOX_EXCLUSIVE | KR_MAILBOX_NO_RECENT, &j->error);
}

static void
open_done(gpointer p)
{
    OpenJob *j = p;
    Pop3Session *s = j->s;
    s->in_job = FALSE;
    if (s->dead) {
        if (j->mb)
            s->mb = j->mb; /* closed by the reaper */
    } else if (!j->mb) {
        if (g_error_matches(j->error, KR_STORE_ERROR, KR_STORE_ERROR_IN_USE)) {
            reply(s, "-ERR [IN-USE] Mailbox is locked by another POP3 session.");
            g_message("%s: login refused, mailbox in use: user=<%s>, ip=%s", s->srv->name, j->user,
                      kr_conn_peer_ip(s->conn));
        } else {
            reply(s, "-ERR [SYS/TEMP] Cannot open the mailbox, try again later.");
            g_warning("%s: cannot open the mailbox of %s: %s", s->srv->name, j->user,
                      j->error ? j->error->message : "?");
        }
    } else {
        const KrMailboxOps *ops = pop3_g.ops;
        s->mb = j->mb;
        s->state = POP3_ST_TRANS;
        s->login = g_strdup(j->user);
        s->n = ops->count(s->mb);
        s->del = g_malloc0(s->n / 8 + 1);
        for (guint32 i = 1; i <= s->n; i++)
            s->total += ops->msg(s->mb, i)->size;
        reply(s, "+OK Logged in.");
        g_autofree char *tls = kr_conn_tls_info(s->conn);
        g_message("%s: login: user=<%s>, ip=%s, %s, messages=%u, size=%" G_GINT64_FORMAT,
                  s->srv->name, s->login, kr_conn_peer_ip(s->conn), tls ? tls : "plaintext", s->n,
                  s->total);
    }
    g_clear_error(&j->error);
    g_free(j->user);
    g_free(j);
    pop3_command_done(s);
}

static gboolean
delayed_fail(gpointer p)
{
    Pop3Session *s = p;
    s->timer = 0;
    if (!s->dead)
        reply(s, "-ERR [AUTH] Authentication failed.");
    pop3_command_done(s);
    return G_SOURCE_REMOVE;
}

static void
fail_later(Pop3Session *s)
{
    guint delay = (guint)pop3_g.conf->auth_fail_delay;
    if (delay == 0) {
        delayed_fail(s);
        return;
    }
    /* milliseconds: g_timeout_add_seconds() may fire up to a second early */
    s->timer = g_timeout_add(MIN(delay, G_MAXUINT / 1000) * 1000, delayed_fail, s);
}

static void
auth_done(KrAuthResult result, const char *canon, gpointer ud)
{
    Pop3Session *s = ud;
    s->in_job = FALSE;
    g_autofree char *who = shown(s->user);
    g_clear_pointer(&s->user, g_free);
    if (s->dead) {
        pop3_command_done(s);
        return;
    }
    const char *ip = kr_conn_peer_ip(s->conn);
    switch (result) {
    case KR_AUTH_OK: {
        OpenJob *j = g_new0(OpenJob, 1);
        j->s = s;
        j->user = g_strdup(canon);
        s->in_job = TRUE;
        kr_worker_run(open_work, open_done, j);
        return;
    }
    case KR_AUTH_FAIL:
        pop3_login_failed(ip);
        g_message("%s: login failed: user=<%s>, ip=%s", s->srv->name, who, ip);
        fail_later(s);
        return;
    default:
        reply(s, "-ERR [SYS/TEMP] Temporary authentication failure, try again later.");
        pop3_command_done(s);
        return;
    }
}

static void
start_login(Pop3Session *s, const char *user, const char *pass)
{
    begin_async(s);
    g_free(s->user);
    s->user = g_strdup(user);
    const char *ip = kr_conn_peer_ip(s->conn);
    if (pop3_login_limited(ip)) {
        g_autofree char *who = shown(user);
        g_message("%s: login refused (too many failures): user=<%s>, ip=%s", s->srv->name, who, ip);
        g_clear_pointer(&s->user, g_free);
        fail_later(s);
        return;
    }
    s->in_job = TRUE;
    kr_auth_check_async(user, pass, auth_done, s);
}

static void
sasl_response(Pop3Session *s, const char *line)
{
    s->sasl_wait = FALSE;
    if (strcmp(line, "*") == 0) {
        reply(s, "-ERR Authentication aborted.");
        return;
    }
    g_autofree char *authz = NULL, *authc = NULL, *pass = NULL;
    if (!pop3_sasl_plain(line, &authz, &authc, &pass)) {
        reply(s, "-ERR [AUTH] Invalid AUTH PLAIN response.");
        s->bad++;
        return;
    }
    if (*authz && strcmp(authz, authc) != 0) {
        reply(s, "-ERR [AUTH] Authorization identity must be empty or the same.");
        memset(pass, 0, strlen(pass));
        return;
    }
    start_login(s, authc, pass);
    memset(pass, 0, strlen(pass));
}

static void
cmd_auth_state(Pop3Session *s, Pop3Command *c)
{
    switch (c->id) {
    case POP3_CMD_USER:
        if (!plaintext_ok(s)) {
            reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                     "(SSL/TLS) connections.");
            return;
        }
        g_free(s->user);
        s->user = g_strdup(c->arg);
        reply(s, "+OK");
        return;
    case POP3_CMD_PASS: {
        if (!plaintext_ok(s)) {
            reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                     "(SSL/TLS) connections.");
            return;
        }
        if (!s->user) {
            reply(s, "-ERR No username given.");
            return;
        }
        g_autofree char *user = g_strdup(s->user);
        start_login(s, user, c->arg);
        return;
    }
    case POP3_CMD_AUTH:
        if (!c->arg) {
            reply(s, "+OK\r\nPLAIN\r\n.");
            return;
        }
        if (strcmp(c->arg, "PLAIN") != 0) {
            reply(s, "-ERR Unsupported authentication mechanism.");
            return;
        }
        if (!plaintext_ok(s)) {
            reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                     "(SSL/TLS) connections.");
            return;
        }
        if (c->arg2 && strcmp(c->arg2, "=") != 0) {
            sasl_response(s, c->arg2);
            return;
        }
        s->sasl_wait = TRUE;
        reply(s, "+ ");
        return;
    case POP3_CMD_STLS: {
        if (!s->srv->starttls || kr_conn_is_tls(s->conn) || !s->srv->tls_ctx) {
            reply(s, "-ERR TLS is not available here.");
            return;
        }
        reply(s, "+OK Begin TLS negotiation now.");
        g_autoptr(GError) err = NULL;
        if (!kr_conn_start_tls(s->conn, s->srv->tls_ctx, &err)) {
            g_warning("%s: STLS: %s", s->srv->name, err->message);
            kr_conn_close(s->conn);
        }
        s->stop = TRUE; /* what follows in the buffer was discarded */
        return;
    }
    case POP3_CMD_APOP:
        reply(s, "-ERR APOP is not supported.");
        return;
    default:
        reply(s, "-ERR Unknown command or not allowed before login.");
        s->bad++;
        return;
    }
}

static void
on_tls_done(KrConn *conn, gboolean ok, gpointer ud)
{
    Pop3Session *s = ud;
    g_clear_pointer(&s->user, g_free);
    s->sasl_wait = FALSE;
    s->stop = FALSE;
}

/* --- TRANSACTION ------------------------------------------------------------------ */

/* The message numbered n, or NULL after an -ERR. */
static const KrMailboxMsg *
message(Pop3Session *s, guint32 n)
{
    if (n == 0 || n > s->n) {
        reply(s, "-ERR There's no message %u.", n);
        return NULL;
    }
    if (pop3_is_deleted(s, n)) {
        reply(s, "-ERR Message %u is deleted.", n);
        return NULL;
    }
    return pop3_g.ops->msg(s->mb, n);
}

typedef struct {
    Pop3Session *s;
    GArray *uids;
    GArray *gone;
    GError *error;
} QuitJob;

static void
quit_work(gpointer p)
{
    QuitJob *j = p;
    const KrMailboxOps *ops = pop3_g.ops;
    if (j->uids->len > 0)
        ops->expunge(j->s->mb, (const guint32 *)j->uids->data, j->uids->len, FALSE, j->gone,
                     &j->error);
    ops->close(j->s->mb);
    j->s->mb = NULL;
}

static void
quit_done(gpointer p)
{
    QuitJob *j = p;
    Pop3Session *s = j->s;
    s->in_job = FALSE;
    if (!s->dead) {
        if (j->error) {
            reply(s, "-ERR [SYS/TEMP] Some deleted messages were not removed.");
            g_warning("%s: %s: expunge: %s", s->srv->name, s->login, j->error->message);
        } else {
            reply(s, "+OK Logging out, messages deleted.");
        }
        g_message("%s: logout: user=<%s>, ip=%s, retr=%u/%" G_GINT64_FORMAT ", del=%u/%u, "
                  "left=%u",
                  s->srv->name, s->login, kr_conn_peer_ip(s->conn), s->nretr, s->retr_bytes,
                  j->gone->len, s->ndel, s->n - s->ndel);
        kr_conn_close(s->conn);
    }
    g_array_unref(j->uids);
    g_array_unref(j->gone);
    g_clear_error(&j->error);
    g_free(j);
    pop3_command_done(s);
}

static void
cmd_quit_trans(Pop3Session *s)
{
    s->state = POP3_ST_UPDATE;
    s->stop = TRUE;
    QuitJob *j = g_new0(QuitJob, 1);
    j->s = s;
    j->uids = g_array_new(FALSE, FALSE, sizeof(guint32));
    j->gone = g_array_new(FALSE, FALSE, sizeof(guint32));
    for (guint32 i = 1; i <= s->n; i++)
        if (pop3_is_deleted(s, i))
            g_array_append_val(j->uids, pop3_g.ops->msg(s->mb, i)->uid);
    begin_async(s);
    s->in_job = TRUE;
    kr_worker_run(quit_work, quit_done, j);
}

static void
cmd_trans_state(Pop3Session *s, Pop3Command *c)
{
    const KrMailboxMsg *m;
    switch (c->id) {
    case POP3_CMD_STAT:
        reply(s, "+OK %u %" G_GINT64_FORMAT, s->n - s->ndel, s->total - s->del_size);
        return;
    case POP3_CMD_LIST:
        if (!c->has_n1) {
            pop3_out_listing(s, POP3_CMD_LIST);
        } else if ((m = message(s, c->n1))) {
            reply(s, "+OK %u %" G_GINT64_FORMAT, c->n1, m->size);
        }
        return;
    case POP3_CMD_UIDL:
        if (!c->has_n1) {
            pop3_out_listing(s, POP3_CMD_UIDL);
        } else if ((m = message(s, c->n1))) {
            g_autofree char *u = pop3_uidl_of(s, m);
            reply(s, "+OK %u %s", c->n1, u);
        }
        return;
    case POP3_CMD_RETR:
        if (message(s, c->n1))
            pop3_out_content(s, c->n1, FALSE, 0);
        return;
    case POP3_CMD_TOP:
        if (message(s, c->n1))
            pop3_out_content(s, c->n1, TRUE, c->n2);
        return;
    case POP3_CMD_DELE:
        if ((m = message(s, c->n1))) {
            guint32 i = c->n1 - 1;
            s->del[i / 8] |= (guint8)(1u << (i % 8));
            s->ndel++;
            s->del_size += m->size;
            reply(s, "+OK Marked to be deleted.");
        }
        return;
    case POP3_CMD_RSET:
        memset(s->del, 0, s->n / 8 + 1);
        s->ndel = 0;
        s->del_size = 0;
        reply(s, "+OK %u messages.", s->n);
        return;
    case POP3_CMD_NOOP:
        reply(s, "+OK");
        return;
    case POP3_CMD_QUIT:
        cmd_quit_trans(s);
        return;
    default:
        reply(s, "-ERR Unknown command or not allowed after login.");
        s->bad++;
        return;
    }
}

/* --- the command loop -------------------------------------------------------------- */

static void
handle_line(Pop3Session *s, const char *line, gsize len)
{
    if (s->sasl_wait) {
        g_autofree char *l = g_strndup(line, len);
        sasl_response(s, l);
        memset(l, 0, len);
        return;
    }
    Pop3Command c;
    if (!pop3_parse_command(line, len, &c)) {
        reply(s, "-ERR %s.", c.error ? c.error : "Syntax error");
        s->bad++;
        return;
    }
    if (c.id == POP3_CMD_CAPA) {
        send_capa(s);
    } else if (c.id == POP3_CMD_QUIT && s->state == POP3_ST_AUTH) {
        reply(s, "+OK Bye.");
        s->stop = TRUE;
        kr_conn_close(s->conn);
    } else if (s->state == POP3_ST_AUTH) {
        cmd_auth_state(s, &c);
    } else {
        cmd_trans_state(s, &c);
    }
    if (c.arg && c.id == POP3_CMD_PASS)
        memset(c.arg, 0, strlen(c.arg));
    pop3_command_clear(&c);
}

/* Does this command need the mailbox while a read-ahead job has it? */
static gboolean
must_wait(Pop3Session *s, const char *line, gsize len)
{
    if (s->state != POP3_ST_TRANS)
        return FALSE;
    Pop3Command c;
    if (!pop3_parse_command(line, len, &c))
        return FALSE;
    gboolean wait = c.id == POP3_CMD_TOP || c.id == POP3_CMD_QUIT ||
                    (c.id == POP3_CMD_RETR && !pop3_out_ready(s, c.n1));
    pop3_command_clear(&c);
    return wait;
}

static void
process_input(Pop3Session *s)
{
    while (!s->busy && !s->dead && !s->stop) {
        gsize len, consumed, ll = 0;
        const char *buf = kr_conn_input(s->conn, &len), *line = NULL;
        if (len == 0)
            break;
        gsize max = s->sasl_wait ? POP3_MAX_AUTH_LINE : POP3_MAX_LINE;
        Pop3Scan r = pop3_reader_next(&s->rd, buf, len, max, &line, &ll, &consumed);
        if (r == POP3_NEED_MORE) {
            kr_conn_consume(s->conn, consumed);
            break;
        }
        if (r == POP3_LINE && s->in_job && must_wait(s, line, ll)) {
            /* A read-ahead is using the mailbox: this command runs when
             * it is back (the line stays in the buffer). */
            s->wait_job = TRUE;
            begin_async(s);
            break;
        }
        g_autofree char *copy = r == POP3_LINE ? g_strndup(line, ll) : NULL;
        kr_conn_consume(s->conn, consumed);
        if (r == POP3_TOO_LONG) {
            s->sasl_wait = FALSE;
            reply(s, "-ERR Line too long.");
            s->bad++;
        } else {
            handle_line(s, copy, ll);
            if (copy)
                memset(copy, 0, ll);
        }
        if (s->bad >= (guint)pop3_g.conf->max_bad_commands && !s->dead) {
            reply(s, "-ERR Too many bad commands, closing.");
            s->stop = TRUE;
            kr_conn_close(s->conn);
        }
    }
}

static void
on_read(KrConn *conn, gpointer ud)
{
    Pop3Session *s = ud;
    process_input(s);
}

static const KrConnHandlers handlers = {
    .read = on_read,
    .timeout = on_timeout,
    .tls_done = on_tls_done,
    .closed = on_closed,
};

void
pop3_session_accept(Pop3Server *srv, KrConn *conn)
{
    Pop3Session *s = g_new0(Pop3Session, 1);
    s->srv = srv;
    s->conn = conn;
    s->state = POP3_ST_AUTH;
    kr_conn_set_handlers(conn, &handlers, s);
    kr_conn_set_timeout(conn, (guint)pop3_g.conf->idle_timeout);
    kr_conn_printf(conn, "+OK %s POP3 server ready.\r\n", kr_hostname());
}
