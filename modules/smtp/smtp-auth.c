/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-auth.c - SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and
 *   LOGIN mechanisms, checked against the default auth backend.
 *
 * SYNOPSIS
 *   smtp_cmd_auth(s, arg, len)    AUTH mech [initial-response]
 *   smtp_auth_line(s, line, len)  a client answer to a 334 challenge
 *   smtp_auth_free(a)             forget an unfinished exchange
 *   smtp_auth_cleanup()           module shutdown: drop the failure table
 *
 * DESCRIPTION
 *   AUTH is offered and accepted only under TLS (STARTTLS or implicit),
 *   on listeners with auth = true, when an auth backend is loaded; in
 *   clear it gets 538 5.7.11. The password check runs in a worker thread
 *   (kr_auth_check_async) while the session's input is paused.
 *
 *   A failed check is answered with 535 5.7.8 only after auth_fail_delay,
 *   and counted per client address; past auth_fail_limit failures within
 *   an hour that address gets 421 4.7.0 on AUTH and is disconnected. The
 *   answer is the same for an unknown user and a wrong password. "*"
 *   cancels an exchange (501 5.7.0). A PLAIN authorization identity must
 *   be empty or equal to the authentication identity.
 *   Passwords are wiped from memory once handed to the backend; user
 *   names in log lines are escaped.
 */
#include "smtp.h"

struct SmtpAuthExchange {
    SmtpSaslMech mech;
    char *user; /* LOGIN: the user name, once given */
};

/* Failures per client address, in one-hour windows. */
static KrFailCount *failures;

#define FAIL_WINDOW  3600
#define FAIL_MAX_IPS 100000

void
smtp_auth_free(SmtpAuthExchange *a)
{
    if (!a)
        return;
    g_free(a->user);
    g_free(a);
}

void
smtp_auth_cleanup(void)
{
    g_clear_pointer(&failures, kr_failcount_free);
}

static gboolean
over_limit(const char *ip)
{
    return smtp_g.conf->auth_fail_limit > 0 &&
           kr_failcount_exceeded(failures, ip, (guint)smtp_g.conf->auth_fail_limit);
}

static void
record_failure(const char *ip)
{
    if (!failures)
        failures = kr_failcount_new(FAIL_WINDOW, FAIL_MAX_IPS);
    kr_failcount_add(failures, ip);
}

/* --- the check ------------------------------------------------------------ */

typedef struct {
    SmtpSession *s;
    char *user;
} Check;

static gboolean
fail_delay_done(gpointer p)
{
    SmtpSession *s = p;
    s->timer = 0;
    if (!s->conn)
        return G_SOURCE_REMOVE;
    smtp_error(s, 535, "5.7.8", "Error: authentication failed");
    smtp_session_resume(s);
    return G_SOURCE_REMOVE;
}

static void
unref_notify(gpointer p)
{
    smtp_session_unref(p);
}

static void
auth_done(KrAuthResult result, const char *canon, gpointer ud)
{
    Check *c = ud;
    SmtpSession *s = c->s;
    g_autofree char *user = g_strescape(c->user, NULL);
    g_free(c->user);
    g_free(c);
    if (!s->conn) {
        smtp_session_unref(s);
        return;
    }
    const char *ip = kr_conn_peer_ip(s->conn);
    switch (result) {
    case KR_AUTH_OK:
        s->auth_user = g_strdup(canon ? canon : user);
        g_message("AUTH from %s: user=%s ok", ip, s->auth_user);
        smtp_reply(s, 235, "2.7.0", "Authentication successful");
        smtp_session_resume(s);
        break;
    case KR_AUTH_TEMPFAIL:
        g_message("AUTH from %s: user=%s: backend failure", ip, user);
        smtp_reply(s, 454, "4.7.0", "Temporary authentication failure");
        smtp_session_resume(s);
        break;
    case KR_AUTH_FAIL:
    default:
        record_failure(ip);
        s->auth_failures++;
        g_message("AUTH from %s: user=%s: authentication failed", ip, user);
        if (smtp_g.conf->auth_fail_delay > 0) {
            s->timer =
                g_timeout_add_full(G_PRIORITY_DEFAULT, (guint)smtp_g.conf->auth_fail_delay * 1000,
                                   fail_delay_done, smtp_session_ref(s), unref_notify);
        } else {
            smtp_error(s, 535, "5.7.8", "Error: authentication failed");
            smtp_session_resume(s);
        }
        break;
    }
    smtp_session_unref(s);
}

static void
check(SmtpSession *s, const char *user, const char *pass)
{
    g_clear_pointer(&s->auth, smtp_auth_free);
    s->state = SS_BUSY;
    kr_conn_pause(s->conn);
    Check *c = g_new0(Check, 1);
    c->s = smtp_session_ref(s);
    c->user = g_strdup(user);
    kr_auth_check_async(user, pass, auth_done, c);
}

static void
bad_response(SmtpSession *s, const GError *err)
{
    g_clear_pointer(&s->auth, smtp_auth_free);
    s->state = SS_COMMAND;
    smtp_error(s, 501, "5.5.2", "Error: %s", err ? err->message : "bad response");
}

static void
plain_response(SmtpSession *s, const char *b64, gsize len)
{
    g_autoptr(GError) err = NULL;
    char *data = NULL;
    gsize dlen;
    if (!smtp_base64_decode(b64, len, 3 * SMTP_SASL_MAX_FIELD + 2, &data, &dlen, &err)) {
        bad_response(s, err);
        return;
    }
    SmtpSaslPlain p;
    gboolean ok = smtp_sasl_plain_decode(data, dlen, &p, &err);
    memset(data, 0, dlen);
    g_free(data);
    if (!ok) {
        bad_response(s, err);
        return;
    }
    if (p.authzid && strcmp(p.authzid, p.authcid) != 0) {
        /* acting as someone else is not supported: a plain failure */
        check(s, p.authcid, "");
    } else {
        check(s, p.authcid, p.passwd);
    }
    smtp_sasl_plain_clear(&p);
}

static void
login_response(SmtpSession *s, const char *b64, gsize len)
{
    g_autoptr(GError) err = NULL;
    char *text = NULL;
    if (!smtp_sasl_text_decode(b64, len, SMTP_SASL_MAX_FIELD, &text, &err) || !*text) {
        g_free(text);
        bad_response(s, err);
        return;
    }
    if (!s->auth->user) {
        s->auth->user = text;
        s->state = SS_AUTH;
        smtp_reply(s, 334, NULL, "UGFzc3dvcmQ6"); /* "Password:" */
        return;
    }
    g_autofree char *user = g_steal_pointer(&s->auth->user);
    check(s, user, text);
    memset(text, 0, strlen(text));
    g_free(text);
}

void
smtp_auth_line(SmtpSession *s, const char *line, gsize len)
{
    if (len == 1 && line[0] == '*') {
        g_clear_pointer(&s->auth, smtp_auth_free);
        s->state = SS_COMMAND;
        smtp_reply(s, 501, "5.7.0", "Authentication aborted");
        return;
    }
    s->state = SS_COMMAND;
    if (s->auth->mech == SMTP_SASL_PLAIN)
        plain_response(s, line, len);
    else
        login_response(s, line, len);
}

void
smtp_cmd_auth(SmtpSession *s, const char *arg, gsize len)
{
    if (!s->srv->conf->auth || !kr_auth_backend(NULL)) {
        smtp_error(s, 503, "5.5.1", "Error: authentication not enabled");
        return;
    }
    if (!s->tls) {
        smtp_error(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
        return;
    }
    if (!s->ehlo) {
        smtp_error(s, 503, "5.5.1", "Error: send EHLO first");
        return;
    }
    if (s->auth_user) {
        smtp_error(s, 503, "5.5.1", "Error: already authenticated");
        return;
    }
    if (s->tx) {
        smtp_error(s, 503, "5.5.1", "Error: MAIL transaction in progress");
        return;
    }
    if (over_limit(kr_conn_peer_ip(s->conn))) {
        g_message("AUTH from %s refused: too many failures", kr_conn_peer_ip(s->conn));
        smtp_close(s, "4.7.0", "Error: too many failed authentications, try again later");
        return;
    }
    SmtpAuthArgs a;
    g_autoptr(GError) err = NULL;
    if (!smtp_parse_auth(arg, len, &a, &err)) {
        smtp_error(s, 501, "5.5.2", "Error: %s", err->message);
        return;
    }
    if (a.mech == SMTP_SASL_UNKNOWN) {
        smtp_error(s, 504, "5.5.4", "Error: unsupported authentication mechanism");
        return;
    }
    s->auth = g_new0(SmtpAuthExchange, 1);
    s->auth->mech = a.mech;
    if (a.mech == SMTP_SASL_PLAIN) {
        if (a.has_initial) {
            plain_response(s, a.initial, a.initial_len);
        } else {
            s->state = SS_AUTH;
            kr_conn_write(s->conn, "334 \r\n", 6); /* empty challenge */
        }
        return;
    }
    if (a.has_initial && a.initial_len > 0) {
        login_response(s, a.initial, a.initial_len);
    } else {
        s->state = SS_AUTH;
        smtp_reply(s, 334, NULL, "VXNlcm5hbWU6"); /* "Username:" */
    }
}
