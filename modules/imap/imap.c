/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap.c - the IMAP server module (IMAP4rev1 RFC 3501 and IMAP4rev2
 *   RFC 9051, both advertised): descriptor, settings, the "imap"
 *   listener type, and failed-login limits per client address.
 *
 * DESCRIPTION
 *   Each accepted connection is a session (imap-session.c) speaking the
 *   pure protocol layer (imap-parse.h: reader, parser, formatter) over a
 *   KrConn. Users log in with LOGIN or AUTHENTICATE PLAIN (SASL-IR) via
 *   the auth backend registry, then work on their folders through the
 *   mail store's mailbox API (kr-store.h); every store call runs in a
 *   worker thread. Extensions: IDLE, UIDPLUS, MOVE, LITERAL+/LITERAL-,
 *   NAMESPACE, SPECIAL-USE, UNSELECT, ENABLE, CONDSTORE, QRESYNC, ID,
 *   SASL-IR, CHILDREN, ESEARCH, LIST-EXTENDED, LIST-STATUS, STATUS=SIZE,
 *   APPENDLIMIT, UTF8=ACCEPT, WITHIN, BINARY.
 *
 *   Plaintext logins are accepted only under TLS (STARTTLS, or an
 *   "implicit" listener) or, if the listener allows it, from loopback;
 *   otherwise the capability list says LOGINDISABLED. A failed login is
 *   answered after auth_fail_delay, with the same text whether or not
 *   the user exists; after auth_fail_limit failures in an hour from one
 *   address, logins from it fail unchecked.
 *
 *   New users (only an INBOX, no subscriptions) get the special-use
 *   folders Drafts, Sent, Trash, Junk and Archive at their first login,
 *   subscribed, when create_special_use is on.
 *
 * MODULE SETTINGS (group `imap`), with defaults
 *   store              = "maildir"  mail store (registered by a module)
 *   idle_timeout       = "30m"      silence allowed, IDLE included
 *                                   (RFC 9051: at least 30 minutes)
 *   idle_poll          = "30s"      while in IDLE, how often to look for
 *                                   changes made outside this process
 *   auth_fail_delay    = "2s"       pause before answering a failed login
 *   auth_fail_limit    = 10         failed logins per client address per
 *                                   hour before logins are refused (0: none)
 *   max_bad_commands   = 20         invalid commands before disconnecting
 *   max_literal        = "64M"      largest APPEND message (APPENDLIMIT)
 *   max_line           = "64K"      longest command line, literals excluded
 *   max_command        = "1M"       largest command, buffered literals included
 *                                   (APPEND data over 64K goes to a file)
 *   create_special_use = true       create Drafts, Sent, Trash, Junk,
 *                                   Archive for new users
 *
 * LISTENER SETTINGS (entries with type = "imap"), with defaults
 *   allow_plaintext_loopback = false   accept LOGIN and AUTHENTICATE PLAIN
 *                                      without TLS from 127.0.0.0/8, ::1
 *
 * SEE ALSO
 *   imap-session.h, imap-parse.h, kr-store.h, etc/kurir.conf, t/imap-*.py
 */
#include "imap-session.h"

#include <gmime/gmime.h>

ImapGlobals imap_g;

static const KrSetting imap_settings[] = {
    KR_SETTING("store", KR_SET_STRING, ImapConf, store, "maildir", 0, 0,
               "mail store (registered by a module) holding the mailboxes"),
    KR_SETTING("idle_timeout", KR_SET_DURATION, ImapConf, idle_timeout, "30m", 10, 86400,
               "seconds a client may be silent, IDLE included (RFC 9051: at least 30 minutes)"),
    KR_SETTING("idle_poll", KR_SET_DURATION, ImapConf, idle_poll, "30s", 1, 3600,
               "while in IDLE, how often to look for changes made outside this process"),
    KR_SETTING("auth_fail_delay", KR_SET_DURATION, ImapConf, auth_fail_delay, "2s", 0, 60,
               "pause before answering a failed login"),
    KR_SETTING("auth_fail_limit", KR_SET_INT, ImapConf, auth_fail_limit, "10", 0, 1000000,
               "failed logins per client address per hour before logins are refused (0: no "
               "limit)"),
    KR_SETTING("max_bad_commands", KR_SET_INT, ImapConf, max_bad_commands, "20", 1, 100000,
               "invalid commands before the connection is closed"),
    KR_SETTING("max_literal", KR_SET_SIZE, ImapConf, max_literal, "64M", 1024,
               G_GINT64_CONSTANT(4294967295), "largest message APPEND accepts (APPENDLIMIT)"),
    KR_SETTING("max_line", KR_SET_SIZE, ImapConf, max_line, "64K", 1024, 16777216,
               "longest command line, literals excluded"),
    KR_SETTING("max_command", KR_SET_SIZE, ImapConf, max_command, "1M", 4096, 268435456,
               "largest command with its buffered literals"),
    KR_SETTING("create_special_use", KR_SET_BOOL, ImapConf, create_special_use, "true", 0, 0,
               "create Drafts, Sent, Trash, Junk and Archive for new users"),
    KR_SETTING_END,
};

static const KrSetting listener_settings[] = {
    KR_SETTING("allow_plaintext_loopback", KR_SET_BOOL, ImapListenerConf, allow_plaintext_loopback,
               "false", 0, 0, "accept plaintext logins without TLS from loopback addresses"),
    KR_SETTING_END,
};

/* --- failed logins per address ---------------------------------------------- */

#define FAIL_WINDOW 3600
#define FAIL_MAX_IPS 100000

gboolean
imap_login_limited(const char *ip)
{
    gint64 limit = imap_g.conf->auth_fail_limit;
    return limit > 0 && kr_failcount_exceeded(imap_g.fails, ip, (guint)limit);
}

void
imap_login_failed(const char *ip)
{
    kr_failcount_add(imap_g.fails, ip);
}

/* --- the listener type ------------------------------------------------------ */

static gboolean
listener_create(KrListener *l, GError **error)
{
    if (!imap_g.ops) {
        const KrStore *st = kr_store(imap_g.conf->store);
        const KrMailboxOps *ops = kr_store_mailbox_ops(st);
        if (!ops || !KR_STORE_HAS_OP(ops, watch)) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND, "imap: store '%s' %s",
                        imap_g.conf->store,
                        st ? "has no (complete) mailbox API"
                           : "is not registered (module not loaded?)");
            return FALSE;
        }
        imap_g.store = st;
        imap_g.ops = ops;
    }
    ImapServer *srv = g_new0(ImapServer, 1);
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
    imap_session_accept(kr_listener_data(l), conn);
}

static void
listener_overload(KrListener *l, KrConn *conn, const char *why)
{
    kr_conn_printf(conn, "* BYE [UNAVAILABLE] %s, try again later\r\n", why);
}

static void
listener_destroy(KrListener *l)
{
    g_free(kr_listener_data(l));
    kr_listener_set_data(l, NULL);
}

static const KrListenerType imap_listener = {
    .struct_size = sizeof(KrListenerType),
    .name = "imap",
    .summary = "IMAP server (IMAP4rev1, IMAP4rev2): STARTTLS, implicit TLS, IDLE, CONDSTORE",
    .settings = listener_settings,
    .conf_size = sizeof(ImapListenerConf),
    .create = listener_create,
    .accept = listener_accept,
    .overload = listener_overload,
    .destroy = listener_destroy,
};

/* --- module --------------------------------------------------------------------- */

static gboolean
imap_init(KrModule *mod, GError **error)
{
    imap_g.conf = kr_module_conf(mod);
    g_mime_init();
    imap_g.fails = kr_failcount_new(FAIL_WINDOW, FAIL_MAX_IPS);
    return kr_register_listener(mod, &imap_listener, error);
}

static void
imap_fini(KrModule *mod)
{
    g_clear_pointer(&imap_g.fails, kr_failcount_free);
    g_mime_shutdown();
}

KR_MODULE(imap, "imap", "1.0", "IMAP server: IMAP4rev1 and IMAP4rev2 over the mail store",
          imap_settings, sizeof(ImapConf), imap_init, imap_fini);
