/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   pop3.c - the POP3 server module (RFC 1939, RFC 2449 CAPA and response
 *   codes, RFC 2595 STLS, RFC 5034 SASL): descriptor, settings, the
 *   "pop3" listener type, and failed-login limits per client address.
 *
 * DESCRIPTION
 *   Each accepted connection is a session (pop3-session.c). Users log in
 *   with USER/PASS or AUTH PLAIN through the auth backend registry (the
 *   same users as SMTP submission; "user" means user@<default domain>),
 *   then read their INBOX through the mail store's mailbox API
 *   (kr-store.h) under the store's exclusive maildrop lock ([IN-USE] for
 *   a second session). Messages marked with DELE are removed at QUIT
 *   only (UPDATE state); a dropped connection removes nothing. The
 *   maildrop is the INBOX as it was at login: mail delivered meanwhile
 *   appears in the next session. UIDL is the message's store guid (its
 *   Maildir file name), stable across sessions, restarts and index
 *   rebuilds.
 *
 *   Plaintext logins (USER/PASS, AUTH PLAIN) are only accepted under TLS
 *   (STLS, or a "implicit" listener), or from a loopback address when the
 *   listener allows it. A failed login is answered after auth_fail_delay
 *   with the same text whether or not the user exists; after
 *   auth_fail_limit failures in an hour from one address, logins from it
 *   fail without being checked.
 *
 * MODULE SETTINGS (group `pop3`), with defaults
 *   store            = "maildir"  mail store (registered by a module)
 *   idle_timeout     = "10m"      silence allowed (RFC 1939: >= 10 min)
 *   auth_fail_delay  = "2s"       pause before answering a failed login
 *   auth_fail_limit  = 10         failed logins per client address per
 *                                 hour before logins are refused (0: no
 *                                 limit)
 *   max_bad_commands = 20         unknown/invalid commands before the
 *                                 connection is closed
 *
 * LISTENER SETTINGS (entries with type = "pop3"), with defaults
 *   allow_plaintext_loopback = false   accept USER/PASS and AUTH PLAIN
 *                                      without TLS from 127.0.0.0/8, ::1
 *
 * SEE ALSO
 *   pop3.h, pop3-parse.h, kr-store.h, etc/kurir.conf, t/pop3-*.py
 */
#include "pop3.h"

Pop3Globals pop3_g;

static const KrSetting pop3_settings[] = {
    KR_SETTING("store", KR_SET_STRING, Pop3Conf, store, "maildir", 0, 0,
               "mail store (registered by a module) holding the mailboxes"),
    KR_SETTING("idle_timeout", KR_SET_DURATION, Pop3Conf, idle_timeout, "10m", 60, 86400,
               "seconds a client may be silent (RFC 1939: at least 10 minutes)"),
    KR_SETTING("auth_fail_delay", KR_SET_DURATION, Pop3Conf, auth_fail_delay, "2s", 0, 60,
               "pause before answering a failed login"),
    KR_SETTING("auth_fail_limit", KR_SET_INT, Pop3Conf, auth_fail_limit, "10", 0, 1000000,
               "failed logins per client address per hour before logins are refused (0: no "
               "limit)"),
    KR_SETTING("max_bad_commands", KR_SET_INT, Pop3Conf, max_bad_commands, "20", 1, 100000,
               "unknown or invalid commands before the connection is closed"),
    KR_SETTING_END,
};

static const KrSetting listener_settings[] = {
    KR_SETTING("allow_plaintext_loopback", KR_SET_BOOL, Pop3ListenerConf, allow_plaintext_loopback,
               "false", 0, 0, "accept plaintext logins without TLS from loopback addresses"),
    KR_SETTING_END,
};

/* --- failed logins per address ---------------------------------------------- */

#define FAIL_WINDOW 3600
#define FAIL_MAX_IPS 100000

gboolean
pop3_login_limited(const char *ip)
{
    gint64 limit = pop3_g.conf->auth_fail_limit;
    return limit > 0 && kr_failcount_exceeded(pop3_g.fails, ip, (guint)limit);
}

void
pop3_login_failed(const char *ip)
{
    kr_failcount_add(pop3_g.fails, ip);
}

/* --- the listener type ------------------------------------------------------ */

static gboolean
listener_create(KrListener *l, GError **error)
{
    if (!pop3_g.ops) {
        const KrStore *st = kr_store(pop3_g.conf->store);
        const KrMailboxOps *ops = kr_store_mailbox_ops(st);
        if (!ops || !KR_STORE_HAS_OP(ops, expunge)) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND, "pop3: store '%s' %s",
                        pop3_g.conf->store,
                        st ? "has no mailbox API" : "is not registered (module not loaded?)");
            return FALSE;
        }
        pop3_g.store = st;
        pop3_g.ops = ops;
    }
    Pop3Server *srv = g_new0(Pop3Server, 1);
    srv->l = l;
    srv->conf = kr_listener_conf(l);
    srv->name = kr_listener_name(l);
    srv->starttls = g_strcmp0(kr_listener_tls_mode(l), "starttls") == 0;
    srv->tls_ctx = kr_listener_tls_ctx(l);
    kr_listener_set_data(l, srv);
    return TRUE;
}

static void
listener_accept(KrListener *l, KrConn *conn)
{
    pop3_session_accept(kr_listener_data(l), conn);
}

static void
listener_overload(KrListener *l, KrConn *conn, const char *why)
{
    kr_conn_printf(conn, "-ERR [SYS/TEMP] %s, try again later\r\n", why);
}

static void
listener_destroy(KrListener *l)
{
    g_free(kr_listener_data(l));
    kr_listener_set_data(l, NULL);
}

static const KrListenerType pop3_listener = {
    .struct_size = sizeof(KrListenerType),
    .name = "pop3",
    .summary = "POP3 server (RFC 1939): STLS, implicit TLS, SASL PLAIN",
    .settings = listener_settings,
    .conf_size = sizeof(Pop3ListenerConf),
    .create = listener_create,
    .accept = listener_accept,
    .overload = listener_overload,
    .destroy = listener_destroy,
};

/* --- module --------------------------------------------------------------------- */

static gboolean
pop3_init(KrModule *mod, GError **error)
{
    pop3_g.conf = kr_module_conf(mod);
    pop3_g.fails = kr_failcount_new(FAIL_WINDOW, FAIL_MAX_IPS);
    return kr_register_listener(mod, &pop3_listener, error);
}

static void
pop3_fini(KrModule *mod)
{
    g_clear_pointer(&pop3_g.fails, kr_failcount_free);
}

KR_MODULE(pop3, "pop3", "1.0", "POP3 server: USER/PASS, SASL PLAIN, STLS, UIDL, TOP", pop3_settings,
          sizeof(Pop3Conf), pop3_init, pop3_fini);
