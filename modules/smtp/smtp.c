/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp.c - the SMTP server module (RFC 5321): descriptor, settings and
 *   the "smtp" listener type.
 *
 * DESCRIPTION
 *   Registers the listener type "smtp". The core binds and accepts; each
 *   accepted connection becomes a session (smtp-session.c) that receives
 *   mail and injects it into the pipeline at the listener's entry node
 *   (default "maildrop"). "250 Ok: queued" is sent only when the pipeline
 *   has finished, i.e. after the queue stage made the message durable.
 *
 *   Extensions: PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES,
 *   SMTPUTF8, CHUNKING, STARTTLS, AUTH (PLAIN, LOGIN; only under TLS),
 *   DSN.
 *
 * MODULE SETTINGS (group `smtp`), with defaults
 *   max_message_size = "25M"   largest message (SIZE; checked at MAIL and
 *                              while receiving)
 *   max_recipients   = 1000    RCPTs per message; past it: 452 4.5.3
 *   command_timeout  = "5m"    silence allowed between commands
 *   data_timeout     = "10m"   silence allowed inside DATA/BDAT
 *   trusted_networks = [ "127.0.0.0/8", "::1/128" ]
 *                              clients that may relay without AUTH
 *   auth_fail_delay  = "2s"    pause before answering a failed AUTH
 *   auth_fail_limit  = 10      failed AUTHs per client address per hour;
 *                              past it AUTH is refused (0: no limit)
 *   greet_delay      = "250ms" wait this long before the greeting, except for
 *                              clients in trusted_networks ("0",
 *                              "1s"); a client that talks first is an
 *                              early talker: 554 and disconnect
 *   max_errors       = 20      client errors per session before 421
 *   banner           = "ESMTP kurir"   greeting text after the host name
 *   vrfy             = false   false: VRFY answers 252 for everyone; true:
 *                              250/550 for local addresses
 *
 * LISTENER SETTINGS (entries with type = "smtp"), with defaults
 *   submission = false         MAIL needs AUTH (ports 587/465 style)
 *   auth       = true          offer AUTH (always only under TLS)
 *   entry      = "maildrop"    pipeline node where messages are injected
 *
 * STAGE TYPE "smtp-client" (the SMTP client, remote delivery) and the
 * service "smtp-client" (its shutdown) are registered here too; their
 * node settings are listed in smtp-client.c.
 *
 * SEE ALSO
 *   smtp.h, smtp-parse.h, smtp-client.c, etc/kurir.conf, t/smtp-*.py
 */
#include "smtp.h"
#include "smtp-client.h"
#include <errno.h>

SmtpGlobals smtp_g;

static const KrSetting smtp_settings[] = {
    KR_SETTING("max_message_size", KR_SET_SIZE, SmtpConf, max_message_size, "25M", 1024,
               G_GINT64_CONSTANT(1) << 40, "largest message accepted, in bytes (SIZE)"),
    KR_SETTING("max_recipients", KR_SET_INT, SmtpConf, max_recipients, "1000", 1, 100000,
               "recipients per message; past this RCPT gets 452"),
    KR_SETTING("command_timeout", KR_SET_DURATION, SmtpConf, command_timeout, "5m", 1, 86400,
               "seconds a client may be silent between commands"),
    KR_SETTING("data_timeout", KR_SET_DURATION, SmtpConf, data_timeout, "10m", 1, 86400,
               "seconds a client may be silent during DATA/BDAT"),
    KR_SETTING("trusted_networks", KR_SET_STRLIST, SmtpConf, trusted_networks,
               "127.0.0.0/8,::1/128", 0, 0,
               "CIDR networks whose clients may relay without authenticating"),
    KR_SETTING("auth_fail_delay", KR_SET_DURATION, SmtpConf, auth_fail_delay, "2s", 0, 60,
               "pause before answering a failed AUTH"),
    KR_SETTING("auth_fail_limit", KR_SET_INT, SmtpConf, auth_fail_limit, "10", 0, 1000000,
               "failed AUTHs per client address per hour before AUTH is refused (0: no limit)"),
    KR_SETTING("greet_delay", KR_SET_STRING, SmtpConf, greet_delay, "250ms", 0, 0,
               "wait before the greeting (\"300ms\", \"1s\"); early talkers are refused"),
    KR_SETTING("max_errors", KR_SET_INT, SmtpConf, max_errors, "20", 1, 100000,
               "client errors per session before 421 and disconnect"),
    KR_SETTING("banner", KR_SET_STRING, SmtpConf, banner, "ESMTP kurir", 0, 0,
               "greeting text after the host name"),
    KR_SETTING("vrfy", KR_SET_BOOL, SmtpConf, vrfy, "false", 0, 0,
               "answer VRFY for local addresses (false: 252 for everyone)"),
    KR_SETTING_END,
};

static const KrSetting listener_settings[] = {
    KR_SETTING("submission", KR_SET_BOOL, SmtpListenerConf, submission, "false", 0, 0,
               "message submission: MAIL needs AUTH"),
    KR_SETTING("auth", KR_SET_BOOL, SmtpListenerConf, auth, "true", 0, 0,
               "offer AUTH (only ever under TLS)"),
    KR_SETTING("entry", KR_SET_STRING, SmtpListenerConf, entry, "maildrop", 0, 0,
               "pipeline node where received messages are injected"),
    KR_SETTING_END,
};

/* "0", "250ms", "1s", "2" (seconds) -> milliseconds. */
static gboolean
parse_ms(const char *text, guint *ms_r)
{
    gint64 v;
    if (!text)
        return FALSE;
    if (g_str_has_suffix(text, "ms")) {
        g_autofree char *num = g_strndup(text, strlen(text) - 2);
        char *end = NULL;
        errno = 0;
        guint64 n = g_ascii_strtoull(num, &end, 10);
        if (!*num || *end || errno || n > 600000)
            return FALSE;
        *ms_r = (guint)n;
        return TRUE;
    }
    if (!kr_parse_duration(text, &v) || v < 0 || v > 600)
        return FALSE;
    *ms_r = (guint)(v * 1000);
    return TRUE;
}

/* --- the listener type ----------------------------------------------- */

static gboolean
listener_create(KrListener *l, GError **error)
{
    SmtpListenerConf *c = kr_listener_conf(l);
    if (!c->entry || !kr_pipeline_has_node(c->entry)) {
        g_set_error(error, SMTP_CONF_ERROR, 0, "entry '%s' is not a node of the pipeline",
                    c->entry ? c->entry : "");
        return FALSE;
    }
    SmtpServer *srv = g_new0(SmtpServer, 1);
    srv->l = l;
    srv->conf = c;
    srv->name = kr_listener_name(l);
    const char *mode = kr_listener_tls_mode(l);
    srv->starttls = g_strcmp0(mode, "starttls") == 0;
    srv->implicit = g_strcmp0(mode, "implicit") == 0;
    srv->tls_ctx = kr_listener_tls_ctx(l);
    kr_listener_set_data(l, srv);
    return TRUE;
}

static void
listener_accept(KrListener *l, KrConn *conn)
{
    smtp_session_accept(kr_listener_data(l), conn);
}

static void
listener_overload(KrListener *l, KrConn *conn, const char *why)
{
    kr_conn_printf(conn, "421 4.7.0 %s Error: %s, try again later\r\n", kr_hostname(), why);
}

static void
listener_destroy(KrListener *l)
{
    g_free(kr_listener_data(l));
    kr_listener_set_data(l, NULL);
}

static const KrListenerType smtp_listener = {
    .struct_size = sizeof(KrListenerType),
    .name = "smtp",
    .summary = "SMTP server (RFC 5321): receive, submission, SMTPS",
    .settings = listener_settings,
    .conf_size = sizeof(SmtpListenerConf),
    .create = listener_create,
    .accept = listener_accept,
    .overload = listener_overload,
    .destroy = listener_destroy,
};

/* --- module ---------------------------------------------------------------- */

static gboolean
smtp_init(KrModule *mod, GError **error)
{
    smtp_g.conf = kr_module_conf(mod);
    if (!parse_ms(smtp_g.conf->greet_delay, &smtp_g.greet_delay_ms)) {
        g_set_error(error, SMTP_CONF_ERROR, 0,
                    "smtp.greet_delay: '%s' is not a delay (\"0\", \"300ms\", \"1s\"; at most "
                    "10m)",
                    smtp_g.conf->greet_delay ? smtp_g.conf->greet_delay : "");
        return FALSE;
    }
    smtp_g.trusted = g_array_new(FALSE, FALSE, sizeof(SmtpNet));
    if (!smtp_nets_parse(smtp_g.conf->trusted_networks, smtp_g.trusted, error)) {
        g_prefix_error(error, "smtp: ");
        return FALSE;
    }
    return kr_register_listener(mod, &smtp_listener, error) &&
           kr_register_stage(mod, &smtp_client_stage, error) &&
           kr_register_service(mod, &smtp_client_service, error);
}

static void
smtp_fini(KrModule *mod)
{
    smtp_auth_cleanup();
    if (smtp_g.trusted)
        g_array_unref(smtp_g.trusted);
    smtp_g.trusted = NULL;
}

KR_MODULE(smtp, "smtp", "1.0", "SMTP server: ESMTP, STARTTLS, AUTH, submission", smtp_settings,
          sizeof(SmtpConf), smtp_init, smtp_fini);
