/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-session.c - one SMTP server session: connection life, the input
 *   loop, replies, and the commands that need no transaction.
 *
 * SYNOPSIS
 *   smtp_session_accept(srv, conn)     a new connection: greet (maybe after
 *                                      greet_delay), then serve
 *   smtp_session_ref/unref(s)          reference counting (see smtp.h)
 *   smtp_reply(s, code, ecode, fmt..)  queue a reply
 *   smtp_error(s, code, ecode, fmt..)  queue a reply that counts as an error
 *   smtp_close(s, ecode, text)         421 and close
 *   smtp_session_resume(s)             async work done: read on
 *   smtp_session_timeouts(s, data)     command or data idle timeout
 *   smtp_session_protocol(s, utf8)     "ESMTPSA" etc. (RFC 3848, 6531)
 *   smtp_session_ext(s)                extensions MAIL/RCPT params may use
 *   smtp_session_auth_offered(s)       AUTH in the EHLO reply?
 *
 * DESCRIPTION
 *   Input is processed strictly in order, one command at a time, straight
 *   from the connection's input buffer: a pipelining client gets its
 *   replies in order. Replies go to the connection's output queue, which
 *   is written once the read handler returns (input drained) or when the
 *   session stops for asynchronous work (AUTH check, pipeline run): the
 *   input is then paused and whatever the client pipelined stays in the
 *   buffer until the work is done.
 *
 *   Protocol defences: input before the greeting (with greet_delay > 0)
 *   gets 554 and a disconnect; command lines over 512 octets (AUTH: 12288)
 *   get 500 and are skipped without being buffered; commands pipelined
 *   before EHLO (no PIPELINING offered) get 554 and a disconnect; an HTTP
 *   request gets 421 at once; after max_errors client errors, 421. After
 *   STARTTLS the connection discards everything still buffered in clear
 *   (CVE-2011-0411) and the session starts over, as RFC 3207 requires.
 *
 *   An idle session holds only this struct and the KrConn: the line
 *   reader keeps no buffer of its own, and the transaction, AUTH exchange
 *   and timers exist only while used.
 */
#include "smtp.h"

static GString *reply_buf; /* the event loop is single-threaded */

static void process_input(SmtpSession *s);

/* --- references ---------------------------------------------------------- */

SmtpSession *
smtp_session_ref(SmtpSession *s)
{
    s->ref++;
    return s;
}

void
smtp_session_unref(SmtpSession *s)
{
    if (!s || --s->ref > 0)
        return;
    g_assert(s->conn == NULL && s->timer == 0);
    if (s->tx)
        smtp_tx_free(s->tx);
    smtp_auth_free(s->auth);
    g_free(s->helo_name);
    g_free(s->auth_user);
    g_free(s);
}

static void
unref_notify(gpointer p)
{
    smtp_session_unref(p);
}

/* --- replies --------------------------------------------------------------- */

/* An enhanced code fit for `code`, else "X.0.0" (never a missing reply). */
static const char *
checked_ecode(guint code, const char *e, char fallback[8])
{
    if (!e)
        return NULL;
    gboolean ok = e[0] == (char)('0' + code / 100) && e[1] == '.';
    const char *p = e + 2;
    for (int part = 0; ok && part < 2; part++) {
        const char *st = p;
        while (g_ascii_isdigit(*p))
            p++;
        ok = p > st && p - st <= 3 && *p == (part ? '\0' : '.');
        p += part ? 0 : 1;
    }
    if (ok)
        return e;
    g_snprintf(fallback, 8, "%u.0.0", code / 100);
    return fallback;
}

static void
reply_v(SmtpSession *s, guint code, const char *ecode, const char *fmt, va_list ap)
{
    if (!s->conn)
        return;
    if (code < 200 || code > 599)
        code = code < 200 ? 451 : 554;
    char fb[8];
    ecode = checked_ecode(code, ecode, fb);
    if (!reply_buf)
        reply_buf = g_string_sized_new(256);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    g_string_truncate(reply_buf, 0);
    smtp_reply_append(reply_buf, code, ecode, text);
    kr_conn_write(s->conn, reply_buf->str, reply_buf->len);
    if (reply_buf->allocated_len > 4096) {
        g_string_free(reply_buf, TRUE);
        reply_buf = NULL;
    }
}

void
smtp_reply(SmtpSession *s, guint code, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_v(s, code, ecode, fmt, ap);
    va_end(ap);
}

void
smtp_close(SmtpSession *s, const char *ecode, const char *text)
{
    if (!s->conn)
        return;
    if (s->state != SS_CLOSING)
        smtp_reply(s, 421, ecode, "%s %s", kr_hostname(), text);
    s->state = SS_CLOSING;
    kr_conn_close(s->conn);
}

void
smtp_error(SmtpSession *s, guint code, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_v(s, code, ecode, fmt, ap);
    va_end(ap);
    if (++s->errors >= (guint)smtp_g.conf->max_errors && s->conn) {
        g_message("too many errors from %s, disconnecting", kr_conn_peer_ip(s->conn));
        smtp_close(s, "4.7.0", "Error: too many errors");
    }
}

/* --- session facts ------------------------------------------------------------ */

gboolean
smtp_session_auth_offered(const SmtpSession *s)
{
    return s->srv->conf->auth && s->tls && kr_auth_backend(NULL) != NULL;
}

guint
smtp_session_ext(const SmtpSession *s)
{
    if (!s->ehlo)
        return 0;
    guint ext = SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 | SMTP_EXT_DSN;
    if (smtp_session_auth_offered(s))
        ext |= SMTP_EXT_AUTH;
    return ext;
}

const char *
smtp_session_protocol(const SmtpSession *s, gboolean utf8)
{
    static const char *const names[2][2][2] = {
        /* [utf8][tls][auth] */
        {{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
        {{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}},
    };
    if (!s->ehlo)
        return "SMTP";
    return names[utf8 ? 1 : 0][s->tls ? 1 : 0][s->auth_user ? 1 : 0];
}

void
smtp_session_timeouts(SmtpSession *s, gboolean data)
{
    if (s->conn)
        kr_conn_set_timeout(
            s->conn, (guint)(data ? smtp_g.conf->data_timeout : smtp_g.conf->command_timeout));
}

void
smtp_session_resume(SmtpSession *s)
{
    if (!s->conn || s->state == SS_CLOSING)
        return;
    s->state = SS_COMMAND;
    smtp_session_timeouts(s, FALSE);
    kr_conn_resume(s->conn); /* redelivers pipelined input, if any */
}

/* --- simple commands ------------------------------------------------------------ */

static void
cmd_helo(SmtpSession *s, gboolean ehlo, const char *arg, gsize len)
{
    if (len == 0 || len > 255) {
        smtp_error(s, 501, "5.5.4", "Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
        return;
    }
    smtp_tx_reset(s);
    g_free(s->helo_name);
    s->helo_name = g_strndup(arg, len);
    s->helo = TRUE;
    s->ehlo = ehlo;
    if (!ehlo) {
        smtp_reply(s, 250, NULL, "%s", kr_hostname());
        return;
    }
    char size[48];
    g_snprintf(size, sizeof size, "SIZE %" G_GINT64_FORMAT, smtp_g.conf->max_message_size);
    const char *lines[12];
    gsize n = 0;
    lines[n++] = kr_hostname();
    lines[n++] = "PIPELINING";
    lines[n++] = size;
    lines[n++] = "8BITMIME";
    lines[n++] = "ENHANCEDSTATUSCODES";
    lines[n++] = "SMTPUTF8";
    lines[n++] = "CHUNKING";
    lines[n++] = "DSN";
    if (s->srv->starttls && !s->tls && s->srv->tls_ctx)
        lines[n++] = "STARTTLS";
    if (smtp_session_auth_offered(s))
        lines[n++] = "AUTH PLAIN LOGIN";
    if (!reply_buf)
        reply_buf = g_string_sized_new(256);
    g_string_truncate(reply_buf, 0);
    smtp_reply_append_lines(reply_buf, 250, NULL, lines, n);
    kr_conn_write(s->conn, reply_buf->str, reply_buf->len);
}

static void
cmd_starttls(SmtpSession *s, gsize arg_len)
{
    if (s->tls) {
        smtp_error(s, 503, "5.5.1", "Error: TLS already active");
        return;
    }
    if (!s->srv->starttls || !s->srv->tls_ctx) {
        smtp_error(s, 502, "5.5.1", "Error: command not implemented");
        return;
    }
    if (arg_len) {
        smtp_error(s, 501, "5.5.4", "Syntax: STARTTLS");
        return;
    }
    smtp_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* RFC 3207 4.2: forget everything learnt in clear. */
    smtp_tx_reset(s);
    s->helo = s->ehlo = FALSE;
    g_clear_pointer(&s->helo_name, g_free);
    g_clear_pointer(&s->auth_user, g_free);
    g_autoptr(GError) err = NULL;
    if (!kr_conn_start_tls(s->conn, s->srv->tls_ctx, &err)) {
        g_message("STARTTLS from %s failed: %s", kr_conn_peer_ip(s->conn), err->message);
        s->state = SS_CLOSING;
        kr_conn_close(s->conn);
        return;
    }
    s->state = SS_BUSY; /* until tls_done; buffered input is gone */
}

static void
cmd_help(SmtpSession *s)
{
    smtp_reply(s, 214, "2.0.0",
               "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS "
               "AUTH\nSee RFC 5321");
}

static gboolean
looks_like_http(const SmtpCmdLine *c)
{
    static const char *const verbs[] = {"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"};
    if (c->verb_len > 0 && c->verb[c->verb_len - 1] == ':')
        return TRUE; /* "Host:", "User-Agent:" ... */
    for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++)
        if (strlen(verbs[i]) == c->verb_len && memcmp(c->verb, verbs[i], c->verb_len) == 0)
            return TRUE;
    return FALSE;
}

static void
handle_command(SmtpSession *s, const char *line, gsize len, gboolean more_input)
{
    SmtpCmdLine c;
    g_autoptr(GError) err = NULL;
    if (!smtp_cmd_parse(line, len, &c, &err)) {
        smtp_error(s, 500, "5.5.2", "Error: %s", err->message);
        return;
    }
    if (c.cmd != SMTP_CMD_AUTH && len + 2 > SMTP_CMD_LINE_MAX) {
        smtp_error(s, 500, "5.5.2", "Error: line too long");
        return;
    }
    if (c.cmd == SMTP_CMD_UNKNOWN && looks_like_http(&c)) {
        g_message("HTTP request from %s, disconnecting", kr_conn_peer_ip(s->conn));
        smtp_close(s, "4.7.0", "Error: this is an SMTP server");
        return;
    }
    if (more_input && !s->ehlo) {
        /* RFC 2920: only a client that saw PIPELINING may send ahead. */
        g_message("improper pipelining from %s (before EHLO), disconnecting",
                  kr_conn_peer_ip(s->conn));
        smtp_reply(s, 554, "5.5.0", "Error: improper use of SMTP command pipelining");
        s->state = SS_CLOSING;
        kr_conn_close(s->conn);
        return;
    }
    switch (c.cmd) {
    case SMTP_CMD_HELO:
    case SMTP_CMD_EHLO:
        cmd_helo(s, c.cmd == SMTP_CMD_EHLO, c.arg, c.arg_len);
        break;
    case SMTP_CMD_MAIL:
        smtp_cmd_mail(s, c.arg, c.arg_len);
        break;
    case SMTP_CMD_RCPT:
        smtp_cmd_rcpt(s, c.arg, c.arg_len);
        break;
    case SMTP_CMD_DATA:
        if (c.arg_len)
            smtp_error(s, 501, "5.5.4", "Syntax: DATA");
        else
            smtp_cmd_data(s);
        break;
    case SMTP_CMD_BDAT:
        smtp_cmd_bdat(s, c.arg, c.arg_len);
        break;
    case SMTP_CMD_RSET:
        smtp_tx_reset(s);
        smtp_reply(s, 250, "2.0.0", "Ok");
        break;
    case SMTP_CMD_NOOP:
        smtp_reply(s, 250, "2.0.0", "Ok");
        break;
    case SMTP_CMD_QUIT:
        smtp_reply(s, 221, "2.0.0", "Bye");
        s->state = SS_CLOSING;
        kr_conn_close(s->conn);
        break;
    case SMTP_CMD_VRFY:
        smtp_cmd_vrfy(s, c.arg, c.arg_len);
        break;
    case SMTP_CMD_EXPN:
        smtp_reply(s, 502, "5.5.1", "Error: EXPN not available");
        break;
    case SMTP_CMD_HELP:
        cmd_help(s);
        break;
    case SMTP_CMD_STARTTLS:
        cmd_starttls(s, c.arg_len);
        break;
    case SMTP_CMD_AUTH:
        smtp_cmd_auth(s, c.arg, c.arg_len);
        break;
    case SMTP_CMD_UNKNOWN:
    default:
        smtp_error(s, 502, "5.5.2", "Error: command not recognized");
        break;
    }
}

/* --- input ------------------------------------------------------------------------ */

static void
early_talker(SmtpSession *s)
{
    g_message("early talker %s (input before the greeting), disconnecting",
              kr_conn_peer_ip(s->conn));
    if (s->timer) {
        g_source_remove(s->timer); /* drops the timer's reference */
        s->timer = 0;
    }
    smtp_reply(s, 554, "5.5.0", "%s Error: SMTP protocol violation (input before greeting)",
               kr_hostname());
    s->state = SS_CLOSING;
    kr_conn_close(s->conn);
}

/* One line in command or AUTH state. Returns FALSE when no full line. */
static gboolean
next_line(SmtpSession *s, const char *buf, gsize len)
{
    const char *line;
    gsize line_len, used;
    guint flags;
    SmtpLineStatus st = smtp_line_next(&s->lr, buf, len, &line, &line_len, &used, &flags);
    if (st == SMTP_LINE_MORE) {
        if (used)
            kr_conn_consume(s->conn, used);
        return FALSE;
    }
    if (st == SMTP_LINE_TOO_LONG) {
        kr_conn_consume(s->conn, used);
        if (s->state == SS_AUTH) {
            g_clear_pointer(&s->auth, smtp_auth_free);
            s->state = SS_COMMAND;
        }
        smtp_error(s, 500, "5.5.2", "Error: line too long");
        return TRUE;
    }
    /* Copy the line out, so the buffer may change under the command
     * (STARTTLS discards it). At most SMTP_AUTH_LINE_MAX octets. */
    char copy[SMTP_AUTH_LINE_MAX + 1];
    memcpy(copy, line, line_len);
    copy[line_len] = '\0';
    kr_conn_consume(s->conn, used);
    if (s->state == SS_AUTH)
        smtp_auth_line(s, copy, line_len);
    else
        handle_command(s, copy, line_len, len > used);
    memset(copy, 0, line_len); /* may hold a password */
    return TRUE;
}

static void
process_input(SmtpSession *s)
{
    while (s->conn) {
        gsize len;
        const char *buf = kr_conn_input(s->conn, &len);
        switch (s->state) {
        case SS_GREET:
            if (len > 0)
                early_talker(s);
            return;
        case SS_CLOSING:
            if (len)
                kr_conn_consume(s->conn, len);
            return;
        case SS_BUSY:
            return;
        case SS_DATA:
        case SS_BDAT:
            if (len == 0)
                return;
            kr_conn_consume(s->conn, smtp_data_input(s, buf, len));
            break;
        case SS_COMMAND:
        case SS_AUTH:
            if (len == 0 || !next_line(s, buf, len))
                return;
            break;
        }
    }
}

static void
greet(SmtpSession *s)
{
    s->state = SS_COMMAND;
    smtp_reply(s, 220, NULL, "%s %s", kr_hostname(), smtp_g.conf->banner);
}

static gboolean
greet_timer(gpointer p)
{
    SmtpSession *s = p;
    s->timer = 0;
    if (!s->conn)
        return G_SOURCE_REMOVE;
    gsize len;
    kr_conn_input(s->conn, &len);
    if (len > 0)
        early_talker(s);
    else
        greet(s);
    return G_SOURCE_REMOVE;
}

/* --- connection handlers --------------------------------------------------------- */

static void
on_read(KrConn *conn, gpointer ud)
{
    process_input(ud);
}

static void
on_timeout(KrConn *conn, gpointer ud)
{
    SmtpSession *s = ud;
    g_message("timeout after %s from %s",
              s->state == SS_DATA || s->state == SS_BDAT ? "DATA" : "command",
              kr_conn_peer_ip(conn));
    smtp_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", kr_hostname());
    s->state = SS_CLOSING;
}

static void
on_tls_done(KrConn *conn, gboolean ok, gpointer ud)
{
    SmtpSession *s = ud;
    if (!ok) {
        g_debug("STARTTLS handshake with %s failed", kr_conn_peer_ip(conn));
        s->state = SS_CLOSING;
        return;
    }
    s->tls = TRUE;
    if (kr_debug_enabled(G_LOG_DOMAIN)) {
        g_autofree char *info = kr_conn_tls_info(conn);
        g_debug("STARTTLS from %s: %s", kr_conn_peer_ip(conn), info);
    }
    s->state = SS_COMMAND;
    smtp_session_timeouts(s, FALSE);
    /* nothing is buffered (the plaintext was discarded); read on */
}

static void
on_closed(KrConn *conn, KrConnCloseReason why, gpointer ud)
{
    SmtpSession *s = ud;
    g_debug("disconnect from %s (%s)", kr_conn_peer_ip(conn),
            why == KR_CONN_CLOSED_EOF       ? "eof"
            : why == KR_CONN_CLOSED_ERROR   ? "error"
            : why == KR_CONN_CLOSED_TIMEOUT ? "timeout"
            : why == KR_CONN_CLOSED_LOCAL   ? "closed"
                                            : "shutdown");
    if (s->tx && s->tx->msg && s->state != SS_BUSY)
        g_message("%s: lost connection with %s during %s", kr_msg_queue_id(s->tx->msg),
                  kr_conn_peer_ip(conn), s->tx->bdat ? "BDAT" : "DATA");
    s->conn = NULL;
    s->state = SS_CLOSING;
    if (s->timer) {
        g_source_remove(s->timer);
        s->timer = 0;
    }
    if (s->tx) {
        smtp_tx_free(s->tx);
        s->tx = NULL;
    }
    g_clear_pointer(&s->auth, smtp_auth_free);
    smtp_session_unref(s);
}

static const KrConnHandlers session_handlers = {
    .read = on_read,
    .timeout = on_timeout,
    .tls_done = on_tls_done,
    .closed = on_closed,
};

void
smtp_session_accept(SmtpServer *srv, KrConn *conn)
{
    SmtpSession *s = g_new0(SmtpSession, 1);
    s->ref = 1;
    s->conn = conn;
    s->srv = srv;
    s->tls = kr_conn_is_tls(conn);
    s->trusted = smtp_nets_match(smtp_g.trusted, kr_conn_peer_ip(conn));
    s->state = SS_GREET;
    smtp_line_init(&s->lr, SMTP_AUTH_LINE_MAX);
    g_debug("connect from %s port %u on %s%s", kr_conn_peer_ip(conn), kr_conn_peer_port(conn),
            srv->name, s->trusted ? " (trusted network)" : "");
    kr_conn_set_handlers(conn, &session_handlers, s);
    smtp_session_timeouts(s, FALSE);
    /* Clients in trusted_networks (local submitters) are not made to wait. */
    if (smtp_g.greet_delay_ms > 0 && !s->trusted)
        s->timer = g_timeout_add_full(G_PRIORITY_DEFAULT, smtp_g.greet_delay_ms, greet_timer,
                                      smtp_session_ref(s), unref_notify);
    else
        greet(s);
}
