/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-data.c - message content: DATA and BDAT (CHUNKING), streaming
 *   into the spool, and injection into the pipeline.
 *
 * SYNOPSIS
 *   smtp_cmd_data(s)               DATA: spool, 354, then SS_DATA
 *   smtp_cmd_bdat(s, arg, len)     BDAT <size> [LAST]: then SS_BDAT
 *   smtp_data_input(s, buf, len)   content octets; returns octets used
 *
 * DESCRIPTION
 *   The spool (queue dir "incoming") is made at DATA or the first BDAT:
 *   from a pooled spare file on the loop when there is one (a rename,
 *   kr_msg_new_spool_spare), else created in a worker thread (input
 *   paused meanwhile, the 354 comes after); content goes to it as it arrives, already
 *   dot-unstuffed, with CRLF line ends as received (writes land in the
 *   page cache; durability comes with the queue stage's commit).
 *
 *   DATA ends only at CRLF "." CRLF. A bare CR or LF anywhere in the
 *   content (SMTP smuggling: "\n.\n", "\r.\r" ...), a line over 1000
 *   octets or more than max_message_size octets make the whole message
 *   refused once the real end arrives (554 5.6.0 / 552 5.3.4); nothing
 *   after a smuggled "end" is ever taken as a command. BDAT chunks are
 *   counted exactly, checked the same way (bare CR/LF, line length,
 *   size) and a failed chunk fails the transaction.
 *
 *   At the end the envelope (sender, recipients with NOTIFY/ORCPT) and the
 *   attributes cleanup and bounces need (client_addr, client_name,
 *   client_port, helo, protocol, tls, auth_user, envid, ret, body,
 *   smtputf8 = "yes", listener, submission = "1", max_message_size) are
 *   set, input is paused, and the message runs
 *   through the pipeline from the listener's entry node. The reply comes
 *   from the job's result: CONTINUE/DISCARD -> 250 "queued as ID" (the
 *   queue stage made it durable), REJECT -> the stage's code, DEFER ->
 *   451. The run holds a session reference, so a client that leaves
 *   meanwhile costs nothing but the reply.
 */
#include "smtp.h"

static void
content_sink(const char *data, gsize len, gpointer ud)
{
    SmtpTx *tx = ud;
    if (!tx->write_error)
        kr_msg_append(tx->msg, data, len, &tx->write_error);
}

/* --- the spool: a spare, or created in a worker --------------------------
 * Creating a file is a metadata operation that can take long (ext4 scans
 * for recently deleted inodes in a busy directory): never on the loop.
 * Renaming a pooled spare allocates nothing and is done on the loop.
 * The session's input is paused meanwhile. */

static void bdat_chunk_done(SmtpSession *s);

static void
bdat_fail(SmtpTx *tx, guint code, const char *ecode, const char *text)
{
    tx->failed = TRUE;
    tx->bdat_fail_code = code;
    tx->bdat_fail_ecode = ecode;
    tx->bdat_fail_text = text;
}

typedef struct {
    SmtpSession *s;
    KrMsg *msg;
    GError *error;
} SpoolJob;

static void
spool_work(gpointer p)
{
    SpoolJob *j = p;
    j->msg = kr_msg_new_spool(KR_QUEUE_INCOMING, &j->error);
}

static void
spool_done(gpointer p)
{
    SpoolJob *j = p;
    SmtpSession *s = j->s;
    SmtpTx *tx = s->tx;
    if (!j->msg)
        g_warning("cannot create a queue file: %s", j->error->message);
    if (!s->conn || !tx) {
        if (j->msg)
            kr_msg_unref(j->msg); /* removes the spool file */
    } else if (tx->bdat) {
        if (j->msg)
            tx->msg = j->msg;
        else
            bdat_fail(tx, 451, "4.3.0", "Error: queue file write error");
        s->state = SS_BDAT;
        smtp_session_timeouts(s, TRUE);
        kr_conn_resume(s->conn);
        if (tx->bdat_left == 0)
            bdat_chunk_done(s);
    } else if (!j->msg) {
        smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
        smtp_session_resume(s);
    } else {
        tx->msg = j->msg;
        smtp_data_init(&tx->dp, (guint64)smtp_g.conf->max_message_size);
        smtp_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
        s->state = SS_DATA;
        smtp_session_timeouts(s, TRUE);
        kr_conn_resume(s->conn);
    }
    g_clear_error(&j->error);
    smtp_session_unref(s);
    g_free(j);
}

static void
new_spool(SmtpSession *s)
{
    SpoolJob *j = g_new0(SpoolJob, 1);
    j->s = smtp_session_ref(s);
    s->state = SS_BUSY;
    kr_conn_pause(s->conn);
    j->msg = kr_msg_new_spool_spare(KR_QUEUE_INCOMING);
    if (j->msg)
        spool_done(j); /* a pooled spare: no thread hop */
    else
        kr_worker_run(spool_work, spool_done, j);
}

void
smtp_cmd_data(SmtpSession *s)
{
    SmtpTx *tx = s->tx;
    if (!tx) {
        smtp_error(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (tx->bdat) {
        smtp_error(s, 503, "5.5.1", "Error: DATA after BDAT");
        return;
    }
    if (tx->rcpts->len == 0) {
        smtp_error(s, 554, "5.5.1", "Error: no valid recipients");
        return;
    }
    new_spool(s); /* then 354 */
}

/* --- the end: injection ------------------------------------------------- */

static void
inject_done(KrMsg *msg, const KrJobResult *res, gpointer ud)
{
    SmtpSession *s = ud;
    const char *id = kr_msg_queue_id(msg);
    if (!s->conn) {
        g_message("%s: client left before the reply", id);
        smtp_session_unref(s);
        return;
    }
    switch (res->kind) {
    case KR_VERDICT_REJECT:
        g_message("%s: reject: %d %s %s (stage %s); from %s", id, res->code,
                  res->ecode ? res->ecode : "", res->text ? res->text : "",
                  res->stage ? res->stage : "?", kr_conn_peer_ip(s->conn));
        smtp_reply(s, res->code >= 400 && res->code <= 599 ? (guint)res->code : 554,
                   res->ecode ? res->ecode : "5.7.1", "%s",
                   res->text && *res->text ? res->text : "Error: message refused");
        break;
    case KR_VERDICT_DEFER:
        g_message("%s: deferred: %s %s (stage %s); from %s", id, res->ecode ? res->ecode : "",
                  res->text ? res->text : "", res->stage ? res->stage : "?",
                  kr_conn_peer_ip(s->conn));
        smtp_reply(s, 451, res->ecode && res->ecode[0] == '4' ? res->ecode : "4.3.0", "%s",
                   res->text && *res->text ? res->text : "Error: try again later");
        break;
    case KR_VERDICT_CONTINUE:
    case KR_VERDICT_ROUTE:
    case KR_VERDICT_DISCARD:
    default:
        smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", id);
        break;
    }
    smtp_tx_reset(s);
    smtp_session_resume(s);
    smtp_session_unref(s);
}

static void
set_attr(KrMsg *msg, const char *key, const char *value)
{
    if (value && *value)
        kr_msg_set_attr(msg, key, value);
}

static void
finish_message(SmtpSession *s)
{
    SmtpTx *tx = s->tx;
    KrMsg *msg = tx->msg;
    if (tx->write_error) {
        g_warning("%s: queue file write error: %s", kr_msg_queue_id(msg), tx->write_error->message);
        smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
        smtp_tx_reset(s);
        s->state = SS_COMMAND;
        smtp_session_timeouts(s, FALSE);
        return;
    }
    kr_msg_set_sender(msg, tx->sender);
    for (guint i = 0; i < tx->rcpts->len; i++) {
        SmtpRcptEntry *e = tx->rcpts->pdata[i];
        KrRcpt *r = kr_msg_add_rcpt(msg, e->address);
        r->notify = e->notify;
        if (e->orcpt)
            r->orcpt = g_strdup(e->orcpt);
    }
    const char *ip = kr_conn_peer_ip(s->conn);
    char port[8];
    g_snprintf(port, sizeof port, "%u", kr_conn_peer_port(s->conn));
    set_attr(msg, "client_addr", ip);
    set_attr(msg, "client_name", ip);
    set_attr(msg, "client_port", port);
    set_attr(msg, "helo", s->helo_name);
    set_attr(msg, "protocol", smtp_session_protocol(s, tx->mail.smtputf8));
    set_attr(msg, "listener", s->srv->name);
    if (s->srv->conf->submission)
        set_attr(msg, "submission", "1");
    char maxsize[24];
    g_snprintf(maxsize, sizeof maxsize, "%" G_GINT64_FORMAT, smtp_g.conf->max_message_size);
    set_attr(msg, "max_message_size", maxsize); /* cleanup's limit follows ours */
    if (s->tls) {
        g_autofree char *info = kr_conn_tls_info(s->conn);
        set_attr(msg, "tls", info);
    }
    set_attr(msg, "auth_user", s->auth_user);
    set_attr(msg, "envid", tx->mail.envid);
    set_attr(msg, "ret",
             tx->mail.ret == SMTP_RET_FULL   ? "FULL"
             : tx->mail.ret == SMTP_RET_HDRS ? "HDRS"
                                             : NULL);
    set_attr(msg, "body",
             tx->mail.body == SMTP_BODY_7BIT         ? "7BIT"
             : tx->mail.body == SMTP_BODY_8BITMIME   ? "8BITMIME"
             : tx->mail.body == SMTP_BODY_BINARYMIME ? "BINARYMIME"
                                                     : NULL);
    if (tx->mail.smtputf8)
        set_attr(msg, "smtputf8", "yes");
    if (s->auth_user)
        g_message("%s: client=%s, sasl_username=%s", kr_msg_queue_id(msg), ip, s->auth_user);
    else
        g_message("%s: client=%s", kr_msg_queue_id(msg), ip);

    s->state = SS_BUSY;
    kr_conn_pause(s->conn);
    g_autoptr(GError) err = NULL;
    if (!kr_pipeline_run(s->srv->conf->entry, msg, NULL, inject_done, smtp_session_ref(s), &err)) {
        smtp_session_unref(s);
        g_warning("%s: cannot start the pipeline: %s", kr_msg_queue_id(msg), err->message);
        smtp_reply(s, 451, "4.3.0", "Error: internal error, try again later");
        smtp_tx_reset(s);
        smtp_session_resume(s);
    }
}

/* Content refused: reply, forget the transaction, back to commands. */
static void
content_refused(SmtpSession *s, guint code, const char *ecode, const char *text)
{
    if (s->tx && s->tx->msg)
        g_message("%s: reject: %s from %s: %u %s %s", kr_msg_queue_id(s->tx->msg),
                  s->tx->bdat ? "BDAT" : "DATA", kr_conn_peer_ip(s->conn), code, ecode, text);
    smtp_reply(s, code, ecode, "%s", text);
    smtp_tx_reset(s);
    s->state = SS_COMMAND;
    smtp_session_timeouts(s, FALSE);
}

static void
data_done(SmtpSession *s)
{
    guint code;
    const char *ecode, *text;
    if (smtp_data_error_status(s->tx->dp.flags, &code, &ecode, &text)) {
        content_refused(s, code, ecode, text);
        return;
    }
    finish_message(s);
}

/* --- BDAT --------------------------------------------------------------------- */

static void
bdat_chunk_done(SmtpSession *s)
{
    SmtpTx *tx = s->tx;
    guint code;
    const char *ecode, *text;
    if (tx->failed) {
        /* the error was decided at the BDAT command; reply now */
        guint fc = tx->bdat_fail_code;
        const char *fe = tx->bdat_fail_ecode, *ft = tx->bdat_fail_text;
        smtp_reply(s, fc, fe, "%s", ft);
        smtp_tx_reset(s);
        s->state = SS_COMMAND;
        smtp_session_timeouts(s, FALSE);
        return;
    }
    guint flags = tx->bdat_last ? smtp_crlf_check_finish(&tx->cc) : tx->cc.flags;
    if (smtp_data_error_status(flags & SMTP_DATA_ERRORS, &code, &ecode, &text)) {
        content_refused(s, code, ecode, text);
        return;
    }
    if (!tx->bdat_last) {
        smtp_reply(s, 250, "2.0.0", "%" G_GUINT64_FORMAT " octets received", tx->bdat_size);
        s->state = SS_COMMAND;
        smtp_session_timeouts(s, FALSE);
        return;
    }
    finish_message(s);
}

void
smtp_cmd_bdat(SmtpSession *s, const char *arg, gsize len)
{
    guint64 size;
    gboolean last;
    g_autoptr(GError) err = NULL;
    if (!smtp_parse_bdat(arg, len, &size, &last, &err)) {
        /* the chunk length is unknown: we cannot find the next command */
        smtp_reply(s, 501, "5.5.4", "Error: %s", err->message);
        smtp_close(s, "4.7.0", "Error: lost synchronization");
        return;
    }
    SmtpTx *tx = s->tx;
    if (!tx) {
        /* read and drop the chunk, then answer */
        tx = s->tx = g_new0(SmtpTx, 1);
        tx->rcpts = g_ptr_array_new();
        bdat_fail(tx, 503, "5.5.1", "Error: need MAIL command");
    } else if (tx->msg && !tx->bdat) {
        bdat_fail(tx, 503, "5.5.1", "Error: BDAT after DATA");
    } else if (tx->rcpts->len == 0) {
        bdat_fail(tx, 554, "5.5.1", "Error: no valid recipients");
    } else if (tx->bdat_size + size > (guint64)smtp_g.conf->max_message_size ||
               tx->bdat_size + size < tx->bdat_size) {
        bdat_fail(tx, 552, "5.3.4", "Message size exceeds fixed maximum message size");
    } else if (!tx->bdat) {
        tx->bdat = TRUE;
        smtp_crlf_check_init(&tx->cc, SMTP_MAX_TEXT_LINE);
        tx->bdat_left = size;
        tx->bdat_last = last;
        new_spool(s); /* then SS_BDAT */
        return;
    }
    tx->bdat_left = size;
    tx->bdat_last = last;
    s->state = SS_BDAT;
    smtp_session_timeouts(s, TRUE);
    if (size == 0)
        bdat_chunk_done(s);
}

/* --- input ---------------------------------------------------------------- */

gsize
smtp_data_input(SmtpSession *s, const char *buf, gsize len)
{
    SmtpTx *tx = s->tx;
    if (s->state == SS_DATA) {
        gboolean done = FALSE;
        gsize n = smtp_data_feed(&tx->dp, buf, len, content_sink, tx, &done);
        if (done)
            data_done(s);
        return n;
    }
    /* SS_BDAT */
    gsize n = (gsize)MIN((guint64)len, tx->bdat_left);
    if (!tx->failed) {
        smtp_crlf_check_feed(&tx->cc, buf, n);
        if (!(tx->cc.flags & SMTP_DATA_ERRORS))
            content_sink(buf, n, tx);
    }
    tx->bdat_left -= n;
    tx->bdat_size += n;
    if (tx->bdat_left == 0)
        bdat_chunk_done(s);
    return n;
}
