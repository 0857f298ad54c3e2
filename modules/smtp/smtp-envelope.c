/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-envelope.c - the mail transaction: MAIL, RCPT, VRFY and the
 *   recipient policy (local users, relay control).
 *
 * SYNOPSIS
 *   smtp_cmd_mail(s, arg, len)   MAIL FROM:<path> [SIZE= BODY= SMTPUTF8
 *                                RET= ENVID= AUTH=]
 *   smtp_cmd_rcpt(s, arg, len)   RCPT TO:<path> [NOTIFY= ORCPT=]
 *   smtp_cmd_vrfy(s, arg, len)   VRFY (252 unless smtp.vrfy is on)
 *   smtp_tx_free(tx)             free a transaction (and its spool)
 *   smtp_tx_reset(s)             end the session's transaction, if any
 *
 * DESCRIPTION
 *   Recipient policy, in order (RFC 5321, 6531, 3461):
 *     - past max_recipients RCPTs: 452 4.5.3 (the client sends the rest
 *       in another transaction);
 *     - a domain served here: <postmaster> and postmaster@ are always
 *       accepted (RFC 5321 4.5.1); anyone else must be known to an auth
 *       backend or address verifier, else 550 5.1.1 at RCPT time, so no
 *       bounce is ever sent to a forged sender (no backscatter);
 *     - any other domain (or an address literal): relaying, allowed only
 *       to an authenticated client or one in trusted_networks, else
 *       554 5.7.1 Relay access denied. Never an open relay.
 *   Addresses are parsed by smtp-parse.c (syntax per RFC 5321/6531:
 *   control characters never pass) and kept as data: they only ever go
 *   into length-prefixed queue records, never to a shell.
 *   A recipient given twice is accepted twice but recorded once.
 */
#include "smtp.h"

static void
rcpt_entry_free(gpointer p)
{
    SmtpRcptEntry *e = p;
    g_free(e->address);
    g_free(e->orcpt);
    g_free(e);
}

void
smtp_tx_free(SmtpTx *tx)
{
    if (!tx)
        return;
    smtp_mail_args_clear(&tx->mail);
    g_free(tx->sender);
    if (tx->rcpts)
        g_ptr_array_unref(tx->rcpts);
    if (tx->seen)
        g_hash_table_unref(tx->seen);
    if (tx->msg)
        kr_msg_unref(tx->msg); /* an uncommitted spool file is removed */
    g_clear_error(&tx->write_error);
    g_free(tx);
}

void
smtp_tx_reset(SmtpSession *s)
{
    g_clear_pointer(&s->tx, smtp_tx_free);
}

static void
parse_failed(SmtpSession *s, SmtpCmd cmd, const GError *err)
{
    guint code;
    const char *ecode;
    smtp_parse_error_status(err, cmd, &code, &ecode);
    smtp_error(s, code, ecode, "Error: %s", err->message);
}

void
smtp_cmd_mail(SmtpSession *s, const char *arg, gsize len)
{
    if (!s->helo) {
        smtp_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return;
    }
    if (s->tx) {
        smtp_error(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (s->srv->conf->submission && !s->auth_user) {
        smtp_error(s, 530, "5.7.0", "Authentication required");
        return;
    }
    SmtpMailArgs m;
    g_autoptr(GError) err = NULL;
    if (!smtp_parse_mail(arg, len, smtp_session_ext(s), &m, &err)) {
        parse_failed(s, SMTP_CMD_MAIL, err);
        return;
    }
    if (m.size_given && m.size > (guint64)smtp_g.conf->max_message_size) {
        smtp_mail_args_clear(&m);
        smtp_reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        return;
    }
    SmtpTx *tx = g_new0(SmtpTx, 1);
    tx->mail = m;
    tx->sender = (m.addr.flags & SMTP_ADDR_NULL) ? g_strdup("") : kr_addr_canon(m.addr.address);
    tx->rcpts = g_ptr_array_new_with_free_func(rcpt_entry_free);
    s->tx = tx;
    smtp_reply(s, 250, "2.1.0", "Ok");
}

/* NOQUEUE log line for a refused recipient. */
static void
log_reject(SmtpSession *s, guint code, const char *ecode, const char *why, const char *rcpt)
{
    g_autofree char *r = g_strescape(rcpt, NULL);
    g_autofree char *f = g_strescape(s->tx->sender, NULL);
    g_message("NOQUEUE: reject: RCPT from %s: %u %s %s; from=<%s> to=<%s>",
              kr_conn_peer_ip(s->conn), code, ecode, why, f, r);
}

void
smtp_cmd_rcpt(SmtpSession *s, const char *arg, gsize len)
{
    SmtpTx *tx = s->tx;
    if (!tx) {
        smtp_error(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (tx->bdat) {
        smtp_error(s, 503, "5.5.1", "Error: RCPT after BDAT");
        return;
    }
    SmtpRcptArgs r;
    g_autoptr(GError) err = NULL;
    if (!smtp_parse_rcpt(arg, len, smtp_session_ext(s), tx->mail.smtputf8, &r, &err)) {
        parse_failed(s, SMTP_CMD_RCPT, err);
        return;
    }
    if (tx->rcpt_tries >= (guint)smtp_g.conf->max_recipients) {
        smtp_rcpt_args_clear(&r);
        smtp_reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    g_autofree char *canon = NULL;
    gboolean local, postmaster = g_ascii_strcasecmp(r.addr.local, "postmaster") == 0;
    if (r.addr.flags & SMTP_ADDR_POSTMASTER) {
        canon = g_strconcat("postmaster@", kr_default_domain(), NULL);
        local = TRUE;
    } else {
        local = !(r.addr.flags & SMTP_ADDR_LITERAL) && kr_domain_is_local(r.addr.domain);
        canon = kr_addr_canon(r.addr.address);
        if (local && postmaster) {
            g_free(canon);
            g_autofree char *dom = g_utf8_strdown(r.addr.domain, -1);
            canon = g_strconcat("postmaster@", dom, NULL);
        }
    }
    if (local && !postmaster && !kr_local_address_exists(canon)) {
        log_reject(s, 550, "5.1.1", "User unknown", canon);
        smtp_error(s, 550, "5.1.1", "<%s>: Recipient address rejected: User unknown",
                   r.addr.address);
        smtp_rcpt_args_clear(&r);
        return;
    }
    if (!local && !s->auth_user && !s->trusted) {
        log_reject(s, 554, "5.7.1", "Relay access denied", canon);
        smtp_error(s, 554, "5.7.1", "<%s>: Relay access denied", r.addr.address);
        smtp_rcpt_args_clear(&r);
        return;
    }
    tx->rcpt_tries++;
    if (!tx->seen)
        tx->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (g_hash_table_add(tx->seen, g_strdup(canon))) {
        SmtpRcptEntry *e = g_new0(SmtpRcptEntry, 1);
        e->address = g_steal_pointer(&canon);
        if (r.orcpt_type)
            e->orcpt = g_strconcat(r.orcpt_type, ";", r.orcpt_addr, NULL);
        e->notify = (r.notify & SMTP_NOTIFY_NEVER ? KR_NOTIFY_NEVER : 0) |
                    (r.notify & SMTP_NOTIFY_SUCCESS ? KR_NOTIFY_SUCCESS : 0) |
                    (r.notify & SMTP_NOTIFY_FAILURE ? KR_NOTIFY_FAILURE : 0) |
                    (r.notify & SMTP_NOTIFY_DELAY ? KR_NOTIFY_DELAY : 0);
        g_ptr_array_add(tx->rcpts, e);
    }
    smtp_rcpt_args_clear(&r);
    smtp_reply(s, 250, "2.1.5", "Ok");
}

void
smtp_cmd_vrfy(SmtpSession *s, const char *arg, gsize len)
{
    if (len == 0) {
        smtp_error(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    if (!smtp_g.conf->vrfy) {
        smtp_reply(s, 252, "2.0.0",
                   "Cannot VRFY user, but will accept message and attempt "
                   "delivery");
        return;
    }
    /* "<a@b>", "a@b" or "user" */
    g_autofree char *path =
        arg[0] == '<' ? g_strndup(arg, len) : g_strdup_printf("<%.*s>", (int)len, arg);
    SmtpAddress a;
    g_autoptr(GError) err = NULL;
    if (!smtp_parse_path(path, strlen(path), SMTP_PATH_POSTMASTER_OK | SMTP_PATH_SMTPUTF8, &a,
                         &err)) {
        if (arg[0] != '<' && !memchr(arg, '@', len) && g_utf8_validate_len(arg, len, NULL)) {
            /* a bare user name: try the default domain */
            g_autofree char *p2 = g_strdup_printf("<%.*s@%s>", (int)len, arg, kr_default_domain());
            g_clear_error(&err);
            if (!smtp_parse_path(p2, strlen(p2), SMTP_PATH_SMTPUTF8, &a, &err)) {
                parse_failed(s, SMTP_CMD_VRFY, err);
                return;
            }
        } else {
            parse_failed(s, SMTP_CMD_VRFY, err);
            return;
        }
    }
    gboolean local =
        a.domain ? !(a.flags & SMTP_ADDR_LITERAL) && kr_domain_is_local(a.domain) : TRUE;
    g_autofree char *canon = kr_addr_canon(a.address);
    if (!local)
        smtp_reply(s, 252, "2.0.0", "Cannot VRFY remote user");
    else if (g_ascii_strcasecmp(a.local, "postmaster") == 0 || kr_local_address_exists(canon))
        smtp_reply(s, 250, "2.1.5", "<%s>", canon);
    else
        smtp_error(s, 550, "5.1.1", "<%s>: Recipient address rejected: User unknown", canon);
    smtp_address_clear(&a);
}
