/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-auth.c - the IMAP commands of any state and of the
 *   not-authenticated state: CAPABILITY, LOGOUT, STARTTLS, AUTHENTICATE
 *   PLAIN (with SASL-IR, RFC 4959), LOGIN, ENABLE (RFC 5161), ID (RFC 2971).
 *
 * SYNOPSIS
 *   imap_cmd_capability, imap_cmd_logout, imap_cmd_starttls,
 *   imap_cmd_authenticate, imap_cmd_login, imap_cmd_enable, imap_cmd_id
 *   imap_sasl_response(s, line, len)    AUTHENTICATE's continuation line
 *
 * DESCRIPTION
 *   Passwords are only taken under TLS, or from loopback when the listener
 *   allows it (LOGINDISABLED otherwise, and LOGIN / AUTHENTICATE get NO
 *   [PRIVACYREQUIRED]). Checking runs in a worker (kr_auth_check_async).
 *   A failure is answered after auth_fail_delay with one text for every
 *   cause; after auth_fail_limit failures per hour from an address, its
 *   logins fail unchecked. After a login the reader's limits grow (LITERAL+,
 *   APPEND), and a new user gets the special-use folders.
 *
 *   STARTTLS: the OK goes out in clear, then the handshake; anything the
 *   client pipelined behind STARTTLS is discarded (kr_conn_start_tls).
 */
#include "imap-session.h"

#include <string.h>

void
imap_cmd_capability(ImapSession *s)
{
    g_autoptr(GString) out = g_string_new("* CAPABILITY ");
    imap_capabilities(s, out);
    g_string_append(out, "\r\n");
    imap_write(s, out->str, out->len);
    imap_tagged_done(s, "OK", NULL, "Capability completed.");
}

void
imap_cmd_logout(ImapSession *s)
{
    imap_printf(s, "* BYE Logging out.\r\n");
    imap_tagged(s, "OK", NULL, "Logout completed.");
    if (s->user)
        g_message("%s: logout: user=<%s>, ip=%s", s->srv->name, s->user, kr_conn_peer_ip(s->conn));
    s->state = IMAP_S_LOGOUT;
    s->stop = TRUE;
    kr_conn_close(s->conn);
    imap_command_done(s);
}

void
imap_cmd_starttls(ImapSession *s)
{
    if (kr_conn_is_tls(s->conn)) {
        imap_tagged_done(s, "BAD", NULL, "TLS is already active.");
        return;
    }
    if (!s->srv->starttls || !s->srv->tls_ctx) {
        imap_tagged_done(s, "BAD", NULL, "STARTTLS is not available here.");
        return;
    }
    imap_tagged(s, "OK", NULL, "Begin TLS negotiation now.");
    g_autoptr(GError) err = NULL;
    if (!kr_conn_start_tls(s->conn, s->srv->tls_ctx, &err)) {
        g_warning("%s: STARTTLS: %s", s->srv->name, err->message);
        kr_conn_close(s->conn);
    }
    s->stop = TRUE; /* buffered input was discarded; wait for tls_done */
    imap_command_done(s);
}

/* --- logging in ----------------------------------------------------------------- */

static char *
shown(const char *user)
{
    g_autofree char *cut = g_strndup(user ? user : "", 100);
    return g_strescape(cut, NULL);
}

static gboolean
delayed_fail(gpointer p)
{
    ImapSession *s = p;
    s->timer = 0;
    imap_tagged_done(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed.");
    return G_SOURCE_REMOVE;
}

static void
fail_later(ImapSession *s)
{
    guint delay = (guint)imap_g.conf->auth_fail_delay;
    if (delay == 0) {
        delayed_fail(s);
        return;
    }
    s->timer = g_timeout_add_seconds(delay, delayed_fail, s);
}

static const char *const special_folders[] = {"Drafts", "Sent", "Trash", "Junk", "Archive"};

/* (worker) A user with only an INBOX and no subscriptions is new: give
 * them the special-use folders, subscribed. */
static void
welcome_work(ImapJob *j)
{
    const KrMailboxOps *ops = imap_g.ops;
    gpointer self = imap_g.store->self;
    const char *user = j->data;
    if (!imap_g.conf->create_special_use)
        return;
    g_autoptr(GError) e = NULL;
    g_autoptr(GPtrArray) list = ops->list(self, user, &e);
    if (!list) {
        g_warning("%s: %s: cannot list folders: %s", j->s->srv->name, user, e->message);
        return;
    }
    if (list->len > 1)
        return;
    g_autoptr(GPtrArray) subs = ops->subscriptions(self, user, NULL);
    if (!subs || subs->len > 0)
        return;
    for (guint i = 0; i < G_N_ELEMENTS(special_folders); i++) {
        g_autoptr(GError) ce = NULL;
        if (!ops->create(self, user, special_folders[i], &ce) &&
            !g_error_matches(ce, KR_STORE_ERROR, KR_STORE_ERROR_EXISTS)) {
            g_warning("%s: %s: cannot create %s: %s", j->s->srv->name, user, special_folders[i],
                      ce->message);
            continue;
        }
        ops->subscribe(self, user, special_folders[i], TRUE, NULL);
    }
    ops->subscribe(self, user, "INBOX", TRUE, NULL);
}

static void
welcome_done(ImapJob *j)
{
    ImapSession *s = j->s;
    s->user = g_strdup(j->data);
    s->state = IMAP_S_AUTH;
    imap_session_limits(s);
    g_autoptr(GString) caps = g_string_new("CAPABILITY ");
    imap_capabilities(s, caps);
    imap_job_tagged(j, "OK", caps->str, "Logged in.");
    g_autofree char *tls = kr_conn_tls_info(s->conn);
    g_message("%s: login: user=<%s>, ip=%s, %s", s->srv->name, s->user, kr_conn_peer_ip(s->conn),
              tls ? tls : "plaintext");
}

typedef struct {
    ImapSession *s;
    char *user;
} LoginTry;

static void
auth_done(KrAuthResult result, const char *canon, gpointer ud)
{
    LoginTry *t = ud;
    ImapSession *s = t->s;
    g_autofree char *who = shown(t->user);
    g_free(t->user);
    g_free(t);
    s->in_job = FALSE;
    if (s->dead) {
        imap_command_done(s);
        return;
    }
    const char *ip = kr_conn_peer_ip(s->conn);
    switch (result) {
    case KR_AUTH_OK: {
        ImapJob *j = imap_job_new(s, welcome_work, IMAP_SYNC_NONE);
        j->data = g_strdup(canon);
        j->free_data = g_free;
        j->done = welcome_done;
        imap_job_start(j);
        return;
    }
    case KR_AUTH_FAIL:
        imap_login_failed(ip);
        g_message("%s: login failed: user=<%s>, ip=%s", s->srv->name, who, ip);
        fail_later(s);
        return;
    default:
        imap_tagged_done(s, "NO", "UNAVAILABLE",
                         "Temporary authentication failure, try again later.");
        return;
    }
}

static void
start_login(ImapSession *s, const char *user, const char *pass)
{
    imap_begin_busy(s);
    const char *ip = kr_conn_peer_ip(s->conn);
    if (imap_login_limited(ip)) {
        g_autofree char *who = shown(user);
        g_message("%s: login refused (too many failures): user=<%s>, ip=%s", s->srv->name, who, ip);
        fail_later(s);
        return;
    }
    LoginTry *t = g_new0(LoginTry, 1);
    t->s = s;
    t->user = g_strdup(user);
    s->in_job = TRUE;
    kr_auth_check_async(user, pass, auth_done, t);
}

static gboolean
privacy_required(ImapSession *s)
{
    if (imap_plaintext_ok(s))
        return FALSE;
    imap_tagged_done(s, "NO", "PRIVACYREQUIRED",
                     "Plaintext authentication is disallowed without TLS.");
    return TRUE;
}

void
imap_cmd_login(ImapSession *s)
{
    if (privacy_required(s))
        return;
    /* the command may be finished (freed) inside start_login */
    char *pass = s->cmd->u.login.password;
    g_autofree char *user = g_strdup(s->cmd->u.login.user);
    g_autofree char *pw = g_strdup(pass);
    memset(pass, 0, strlen(pass));
    start_login(s, user, pw);
    memset(pw, 0, strlen(pw));
}

/* SASL PLAIN (RFC 4616): base64 of authzid NUL authcid NUL passwd.
 * 0: ok (*authc_r, *pass_r set), 1: malformed, 2: authzid differs. */
static int
parse_plain(const char *b64, gsize len, char **authc_r, char **pass_r)
{
    gboolean ok = len > 0 && len % 4 == 0 && len < 4096;
    for (gsize i = 0; ok && i < len; i++)
        ok = g_ascii_isalnum(b64[i]) || b64[i] == '+' || b64[i] == '/' ||
             (b64[i] == '=' && i + 2 >= len);
    if (!ok)
        return 1;
    g_autofree char *copy = g_strndup(b64, len);
    gsize n = 0;
    guchar *raw = g_base64_decode(copy, &n);
    const char *p = (const char *)raw, *end = p + n;
    const char *z1 = n ? memchr(p, '\0', n) : NULL;
    const char *z2 = z1 ? memchr(z1 + 1, '\0', end - z1 - 1) : NULL;
    int r = 1;
    if (z2 && !memchr(z2 + 1, '\0', end - z2 - 1) && z2 > z1 + 1 &&
        g_utf8_validate(z1 + 1, z2 - z1 - 1, NULL)) {
        if (z1 > p && (z1 - p != z2 - z1 - 1 || memcmp(p, z1 + 1, z1 - p) != 0)) {
            r = 2;
        } else {
            *authc_r = g_strndup(z1 + 1, z2 - z1 - 1);
            *pass_r = g_strndup(z2 + 1, end - z2 - 1);
            r = 0;
        }
    }
    memset(raw, 0, n);
    g_free(raw);
    return r;
}

static void
sasl_plain(ImapSession *s, const char *b64, gsize len)
{
    char *authc = NULL, *pass = NULL;
    switch (parse_plain(b64, len, &authc, &pass)) {
    case 0:
        start_login(s, authc, pass);
        memset(pass, 0, strlen(pass));
        g_free(pass);
        g_free(authc);
        return;
    case 2:
        imap_tagged_done(s, "NO", "AUTHORIZATIONFAILED",
                         "Authorization identity must be empty or the same.");
        return;
    default:
        s->bad++;
        imap_tagged_done(s, "BAD", NULL, "Invalid SASL PLAIN response.");
        return;
    }
}

void
imap_cmd_authenticate(ImapSession *s)
{
    ImapCommand *c = s->cmd;
    if (g_ascii_strcasecmp(c->u.auth.mech, "PLAIN") != 0) {
        imap_tagged_done(s, "NO", "CANNOT", "Unsupported authentication mechanism.");
        return;
    }
    if (privacy_required(s))
        return;
    if (c->u.auth.initial) {
        if (!*c->u.auth.initial) {
            imap_tagged_done(s, "BAD", NULL, "Invalid SASL PLAIN response.");
            return;
        }
        /* the command may be finished (freed) inside sasl_plain */
        g_autofree char *ir = g_strdup(c->u.auth.initial);
        memset(c->u.auth.initial, 0, strlen(c->u.auth.initial));
        sasl_plain(s, ir, strlen(ir));
        memset(ir, 0, strlen(ir));
        return;
    }
    s->sasl_wait = TRUE;
    imap_reader_set_line_mode(s->rd);
    imap_printf(s, "+ \r\n");
}

void
imap_sasl_response(ImapSession *s, const char *line, gsize len)
{
    s->sasl_wait = FALSE;
    if (len == 1 && line[0] == '*') {
        imap_tagged_done(s, "BAD", NULL, "Authentication aborted.");
        return;
    }
    sasl_plain(s, line, len);
}

/* --- ENABLE, ID ---------------------------------------------------------------------- */

void
imap_cmd_enable(ImapSession *s)
{
    g_autoptr(GString) out = g_string_new("* ENABLED");
    for (char **c = s->cmd->u.enable.caps; *c; c++) {
        gboolean *flag = NULL;
        if (g_ascii_strcasecmp(*c, "CONDSTORE") == 0)
            flag = &s->condstore;
        else if (g_ascii_strcasecmp(*c, "QRESYNC") == 0)
            flag = &s->qresync;
        else if (g_ascii_strcasecmp(*c, "UTF8=ACCEPT") == 0)
            flag = &s->utf8;
        else if (g_ascii_strcasecmp(*c, "IMAP4rev2") == 0)
            flag = &s->rev2;
        if (!flag || *flag)
            continue;
        *flag = TRUE;
        if (flag == &s->qresync)
            s->condstore = TRUE;
        g_string_append_c(out, ' ');
        g_string_append(out, *c);
    }
    g_string_append(out, "\r\n");
    imap_write(s, out->str, out->len);
    imap_tagged_done(s, "OK", NULL, "Enabled.");
}

void
imap_cmd_id(ImapSession *s)
{
    if (kr_debug_enabled("imap") && s->cmd->u.id.n_pairs > 0) {
        g_autoptr(GString) d = g_string_new(NULL);
        for (guint i = 0; i < s->cmd->u.id.n_pairs; i++) {
            const char *k = s->cmd->u.id.pairs[2 * i], *v = s->cmd->u.id.pairs[2 * i + 1];
            g_string_append_printf(d, " %.40s=%.80s", k, v ? v : "NIL");
        }
        g_autofree char *esc = g_strescape(d->str, NULL);
        g_debug("%s: client id:%s", s->srv->name, esc);
    }
    imap_printf(s, "* ID (\"name\" \"kurir\" \"version\" \"1.0\")\r\n");
    imap_tagged_done(s, "OK", NULL, "ID completed.");
}
