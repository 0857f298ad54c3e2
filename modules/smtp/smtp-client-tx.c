/* SPDX-License-Identifier: MIT */
/*
 * smtp-client-tx.c - one SMTP transaction of the client on a ready
 * session (smtp-client-session.h), and the content pump.
 *
 *   smtpc_tx_start(s, d)         MAIL FROM, RCPT TO, DATA for delivery d
 *   smtpc_tx_reply(s, reply)     the next reply of the transaction
 *   smtpc_tx_abort(s, ...)       a broken transaction: open recipients
 *                                deferred, the session dropped
 *   smtpc_tx_clear(s)            forget the transaction
 *
 * Before anything is sent, what the server cannot take fails: a message
 * over its SIZE limit (552 5.3.4), binary content without BINARYMIME and
 * CHUNKING (554 5.6.3), non-ASCII addresses without SMTPUTF8 (553
 * 5.6.7), an unsendable sender (553 5.1.7). With PIPELINING, MAIL, every
 * RCPT and DATA go out at once (RFC 2920) and the replies are matched in
 * order (the `expect` queue); without it, one command at a time. DSN
 * parameters (RET, ENVID, NOTIFY, ORCPT) go along when DSN is offered;
 * a recipient so accepted gets the attribute dsn_passed (no success
 * report from here: modules/bounce/bounce.c).
 * The reply to each RCPT decides for that recipient; the reply to MAIL
 * or DATA, or to the end of the content, for all recipients still open.
 * After a failed transaction, RSET.
 *
 * The content is read from the queue file in a worker (kr_msg_read,
 * PUMP_CHUNK bytes at a time), dot-stuffed with CRLF line ends (or sent
 * as is after "BDAT <size> LAST" for BINARYMIME) and written to the
 * conn. KrConn has no "output drained" callback, so the pump polls
 * kr_conn_output_pending() every PUMP_POLL_MS while more than PUMP_HIGH
 * bytes wait; data_timeout without progress aborts.
 */
#include "smtp-client-session.h"
#include <string.h>

static void tx_advance(SmtpcSession *s);

static void
send_rcpt(SmtpcSession *s, guint j)
{
    guint k = g_array_index(s->send, guint, j);
    KrRcpt *r = kr_job_rcpt(s->d->sj->job, g_array_index(s->d->rcpts, guint, k));
    GString *cmd = g_string_new(NULL);
    smtpc_rcpt_cmd(cmd, smtpc_rcpt_address(r), (s->caps.ext & SMTPC_EXT_DSN) != 0, r->notify,
                   r->orcpt);
    g_string_truncate(cmd, cmd->len - 2);
    smtpc_sess_send(s, "%s", cmd->str);
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
    /* The server offered DSN and got the NOTIFY: success reports are its
     * business now (the bounce stage sends none; RFC 3461 4.1). */
    if (st == KR_RCPT_DELIVERED && (s->caps.ext & SMTPC_EXT_DSN) && rc->notify)
        kr_rcpt_set_attr(rc, "dsn_passed", "1");
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

void
smtpc_tx_clear(SmtpcSession *s)
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
    smtpc_tx_clear(s);
    s->n_tx++;
    s->state = ST_READY;
    smtpc_sess_disarm(s);
    smtpc_delivery_end(d);
    if (!usable) {
        smtpc_sess_drop(s, TRUE);
        return;
    }
    smtpc_sess_next(s);
}

/* Something broke during the transaction: open recipients are deferred,
 * the session ends. */
void
smtpc_tx_abort(SmtpcSession *s, int code, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *diag = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    SmtpcDelivery *d = s->d;
    smtpc_tx_clear(s);
    s->state = ST_READY;
    smtpc_delivery_fail(d, code >= 500 ? KR_RCPT_FAILED : KR_RCPT_DEFERRED, code, ecode, s->relay,
                        diag);
    smtpc_sess_drop(s, FALSE);
}

void
smtpc_tx_start(SmtpcSession *s, SmtpcDelivery *d)
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
        smtpc_tx_clear(s);
        smtpc_sess_next(s);
        return;
    }
    if ((s->caps.ext & SMTPC_EXT_SIZE) && s->caps.size_max > 0 &&
        (guint64)sj->size > s->caps.size_max) {
        g_autofree char *diag =
            g_strdup_printf("message size %" G_GINT64_FORMAT
                            " exceeds the size limit %" G_GUINT64_FORMAT " of host %s",
                            (gint64)sj->size, s->caps.size_max, s->cur->host);
        smtpc_delivery_fail(d, KR_RCPT_FAILED, 552, "5.3.4", relay, diag);
        smtpc_tx_clear(s);
        smtpc_sess_next(s);
        return;
    }
    if (binary && (s->caps.ext & (SMTPC_EXT_BINARYMIME | SMTPC_EXT_CHUNKING)) !=
                      (SMTPC_EXT_BINARYMIME | SMTPC_EXT_CHUNKING)) {
        g_autofree char *diag = g_strdup_printf(
            "the message is binary (BINARYMIME) and host %s does not accept that", s->cur->host);
        smtpc_delivery_fail(d, KR_RCPT_FAILED, 554, "5.6.3", relay, diag);
        smtpc_tx_clear(s);
        smtpc_sess_next(s);
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
        smtpc_tx_clear(s);
        smtpc_sess_next(s);
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
    smtpc_sess_send(s, "%s", cmd->str);
    g_string_free(cmd, TRUE);
    g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_MAIL));
    if (s->pipelining) {
        for (; s->next_rcpt < s->n_send; s->next_rcpt++)
            send_rcpt(s, s->next_rcpt);
        if (!s->bdat) {
            smtpc_sess_send(s, "DATA");
            g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_DATA));
            s->data_sent = TRUE;
        }
    }
    smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to MAIL FROM");
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
        smtpc_sess_arm(s, conf_of(s)->data_timeout, "sending the message content");
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
    smtpc_sess_arm(s, conf_of(s)->data_timeout, "waiting for the reply to the end of the content");
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
            smtpc_tx_abort(s, 451, "4.3.0", "cannot read the queue file: %s",
                           op->error ? op->error->message : "read error");
        } else if (op->n == 0 || (s->bdat && op->off >= s->d->sj->size)) {
            if (s->bdat && op->off != s->d->sj->size)
                smtpc_tx_abort(s, 451, "4.3.0", "the message changed size while being sent");
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
            smtpc_sess_arm(s, conf_of(s)->data_timeout, "sending the message content");
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
    smtpc_sess_unref(s);
}

static void
pump_read(SmtpcSession *s)
{
    ReadOp *op = g_new0(ReadOp, 1);
    op->s = smtpc_sess_ref(s);
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
        smtpc_sess_send(s, "BDAT %" G_GINT64_FORMAT " LAST", (gint64)s->d->sj->size);
    smtpc_sess_arm(s, conf_of(s)->data_timeout, "sending the message content");
    pump_read(s);
}

static void
send_rset(SmtpcSession *s)
{
    smtpc_sess_send(s, "RSET");
    g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_RSET));
    smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to RSET");
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
        smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to RCPT TO");
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
            smtpc_sess_send(s, "DATA");
            g_queue_push_tail(&s->expect, GUINT_TO_POINTER(EX_DATA));
            smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for the reply to DATA");
        }
        return;
    }
    if (s->data_ok && !s->content_sent) {
        pump_start(s);
        return;
    }
}

void
smtpc_tx_reply(SmtpcSession *s, const SmtpcReply *r)
{
    if (g_queue_is_empty(&s->expect)) {
        g_autofree char *text = smtpc_reply_oneline(r);
        smtpc_tx_abort(s, 451, "4.5.0", "host %s sent an unexpected reply: %u %s", relay_name(s),
                       r->code, text);
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
        smtpc_sess_arm(s, conf_of(s)->command_timeout, "waiting for pipelined replies");
    else
        smtpc_sess_disarm(s);
    tx_advance(s);
}
