/* SPDX-License-Identifier: MIT */
/*
 * cleanup.c - the cleanup module: stage type "cleanup", on the receive
 * side between `maildrop` and the queue (`incoming`). It runs while the
 * SMTP client waits, so its refusals reach the client as replies.
 *
 * Stage type "cleanup", no per-node settings.
 * Module settings (the `cleanup` group of kurir.conf):
 *   max_received      more Received: headers than this: refused as a
 *                     mail loop, 554 5.4.6                   (default 50)
 *   max_message_size  largest message (bytes as received; K/M/G), 552
 *                     5.3.4; 0 = no limit. A message attribute
 *                     "max_message_size" (set by the server that
 *                     received it) takes precedence         (default "25M")
 *
 * What it does, in this order:
 *   1. size over the limit              -> reject 552 5.3.4
 *   2. Received count > max_received    -> reject 554 5.4.6 (loop)
 *   3. Return-Path: removed (local delivery adds the real one)
 *   4. Message-ID: <QUEUEID@HOSTNAME> added when missing
 *   5. Date: (arrival time) added when missing
 *   6. From: added when missing on submission (attribute submission=1,
 *      or auth_user set, or a local submission: uid set and no
 *      client_addr): the authenticated user, else the sender
 *   7. Received: prepended (RFC 5321 4.4), built from the attributes the
 *      SMTP server sets: helo, client_name, client_addr, protocol, tls,
 *      auth_user (uid for local submissions); "for <rcpt>" only with a
 *      single recipient. See cleanup-hdr.c for the text.
 * Added headers end up above the original ones: Received first, then
 * From, Date, Message-ID.
 *
 * LINE ENDINGS
 *   cleanup does not normalise line endings; its inputs do. The SMTP
 *   server refuses bare CR and bare LF in DATA and BDAT with 554 5.6.0
 *   (smtp-parse.c: SMTP_DATA_BARE_LF/BARE_CR, smtp_data_error_status), so
 *   SMTP content is CRLF throughout. `sendmail` (modules/queue/sendmail.c)
 *   reads LF or CRLF lines and stores them with CRLF (t/local-e2e.py
 *   checks it end to end). Should LF content arrive anyway, nothing
 *   breaks: headers prepended here take the line ending of the content's
 *   first line (kr-msg.c), and local delivery writes LF files (CRLF -> LF
 *   leaves a bare LF alone).
 *
 * Log: "ID: message-id=<...>" once per message, as postfix does.
 */
#include <kurir/kurir.h>
#include "cleanup-hdr.h"
#include <string.h>

typedef struct {
    gint64 max_received;
    gint64 max_message_size;
} CleanupConf;

static const KrSetting cleanup_settings[] = {
    KR_SETTING("max_received", KR_SET_INT, CleanupConf, max_received, "50", 1, 1000,
               "more Received headers than this: refused as a mail loop"),
    KR_SETTING("max_message_size", KR_SET_SIZE, CleanupConf, max_message_size, "25M", 0, 0,
               "largest message in bytes (0: no limit); the attribute max_message_size wins"),
    KR_SETTING_END,
};

static CleanupConf *conf;

static gint64
cleanup_size_limit(KrMsg *msg)
{
    const char *a = kr_msg_attr(msg, "max_message_size");
    gint64 v;
    if (a && kr_parse_size(a, &v))
        return v;
    return conf->max_message_size;
}

/* Mail from our own users: a submission listener, an authenticated
 * client, or a local submission (sendmail: a uid and no client). */
static gboolean
cleanup_submission(KrMsg *msg)
{
    const char *sub = kr_msg_attr(msg, "submission");
    const char *au = kr_msg_attr(msg, "auth_user");
    const char *uid = kr_msg_attr(msg, "uid");
    return (sub && strcmp(sub, "1") == 0) || (au && *au) ||
           (uid && *uid && !kr_msg_attr(msg, "client_addr"));
}

static gboolean
cleanup_headers(KrJob *job, KrMsg *msg, GError **error)
{
    const char *id = kr_msg_queue_id(msg);
    if (kr_msg_header_count(msg, "Return-Path") > 0)
        kr_msg_remove_header(msg, "Return-Path");

    if (kr_msg_header_count(msg, "Message-ID") == 0) {
        g_autofree char *host = cleanup_comment_text(kr_hostname());
        g_strdelimit(host, " <>()@\\\"", '-');
        g_autofree char *mid = g_strdup_printf("<%s@%s>", id, host);
        if (!kr_msg_prepend_header(msg, "Message-ID", mid, error))
            return FALSE;
        g_message("%s: message-id=%s", id, mid);
    } else {
        g_autofree char *mid = cleanup_comment_text(kr_msg_header(msg, "Message-ID", 0));
        g_message("%s: message-id=%s", id, mid);
    }

    if (kr_msg_header_count(msg, "Date") == 0) {
        g_autofree char *date = cleanup_date(kr_msg_arrival(msg));
        if (!kr_msg_prepend_header(msg, "Date", date, error))
            return FALSE;
    }

    if (cleanup_submission(msg) && kr_msg_header_count(msg, "From") == 0) {
        const char *au = kr_msg_attr(msg, "auth_user");
        const char *who = au && *au ? au : kr_msg_sender(msg);
        if (who && *who) {
            g_autofree char *from = cleanup_comment_text(who);
            if (!kr_msg_prepend_header(msg, "From", from, error))
                return FALSE;
        }
    }

    /* A server without reverse DNS may give the address as the name. */
    const char *addr = kr_msg_attr(msg, "client_addr");
    const char *name = kr_msg_attr(msg, "client_name");
    if (name && addr && g_ascii_strcasecmp(name, addr) == 0)
        name = NULL;
    CleanupReceived f = {
        .helo = kr_msg_attr(msg, "helo"),
        .client_name = name,
        .client_addr = addr,
        .tls = kr_msg_attr(msg, "tls"),
        .auth_user = kr_msg_attr(msg, "auth_user"),
        .uid = kr_msg_attr(msg, "uid"),
        .hostname = kr_hostname(),
        .protocol = kr_msg_attr(msg, "protocol"),
        .queue_id = id,
        .rcpt = kr_job_rcpt_count(job) == 1 ? kr_job_rcpt(job, 0)->address : NULL,
        .date = g_get_real_time() / G_USEC_PER_SEC,
    };
    g_autofree char *received = cleanup_received(&f);
    return kr_msg_prepend_header(msg, "Received", received, error);
}

static void
cleanup_process(KrStage *stage, KrJob *job)
{
    KrMsg *msg = kr_job_msg(job);
    const char *id = kr_msg_queue_id(msg);
    gint64 limit = cleanup_size_limit(msg);
    goffset size = kr_msg_raw_size(msg);
    if (limit > 0 && size > limit) {
        g_message("%s: reject: message too big: %" G_GINT64_FORMAT
                  " bytes, limit %" G_GINT64_FORMAT,
                  id, (gint64)size, limit);
        kr_job_reject(job, 552, "5.3.4", "message too big (limit %" G_GINT64_FORMAT " bytes)",
                      limit);
        return;
    }
    guint hops = kr_msg_header_count(msg, "Received");
    if (hops > (guint)conf->max_received) {
        g_message("%s: reject: mail loop: %u Received headers (max_received %" G_GINT64_FORMAT ")",
                  id, hops, conf->max_received);
        kr_job_reject(job, 554, "5.4.6", "mail loop: too many hops");
        return;
    }
    g_autoptr(GError) err = NULL;
    if (!cleanup_headers(job, msg, &err)) {
        g_warning("%s: cannot edit headers: %s", id, err->message);
        kr_job_defer(job, "4.3.0", "cleanup failed: %s", err->message);
        return;
    }
    kr_job_continue(job);
}

static const KrStageType cleanup_type = {
    .struct_size = sizeof(KrStageType),
    .name = "cleanup",
    .summary = "trace and missing headers, loop and size checks",
    .process = cleanup_process,
};

static gboolean
cleanup_init(KrModule *mod, GError **error)
{
    conf = kr_module_conf(mod);
    return kr_register_stage(mod, &cleanup_type, error);
}

KR_MODULE(cleanup, "cleanup", "0.1", "receive-side cleanup stage", cleanup_settings,
          sizeof(CleanupConf), cleanup_init, NULL);
