/* SPDX-License-Identifier: MIT */
/*
 * smtp-client-session.h - the SMTP client's session object, shared by
 * smtp-client-session.c (connection, set-up, events, life) and
 * smtp-client-tx.c (transactions, content pump). Private to those two.
 *
 * Lifetime: a session holds one reference while alive (dropped in
 * smtpc_sess_drop), its connection one until the conn's closed handler,
 * each worker operation one (smtpc_sess_ref/unref).
 */
#ifndef KR_SMTP_CLIENT_SESSION_H
#define KR_SMTP_CLIENT_SESSION_H

#include "smtp-client.h"

#define REPLY_LINE_MAX  4096
#define REPLY_LINES_MAX 200
#define PUMP_CHUNK      (128 * 1024)
#define PUMP_HIGH       (256 * 1024)
#define PUMP_POLL_MS    10

typedef enum {
    ST_RESOLVE,
    ST_CONNECT,
    ST_GREETING,
    ST_EHLO,
    ST_HELO,
    ST_STARTTLS,
    ST_TLS,
    ST_AUTH,       /* waiting for 235 */
    ST_AUTH_LOGIN, /* waiting for the 334 user name prompt */
    ST_AUTH_PASS,  /* waiting for the 334 password prompt */
    ST_READY,      /* set up, no transaction (idle or about to start one) */
    ST_TX,
    ST_DEAD,
} SessState;

typedef enum { EX_MAIL, EX_RCPT, EX_DATA, EX_DOT, EX_IGNORE, EX_RSET } Expect;

struct SmtpcSession {
    GList link; /* in `sessions` */
    int refs;
    SmtpcDest *dest;
    SmtpcNode *node;
    SessState state;
    gboolean setup; /* counted in dest->n_setup */
    gboolean idle;  /* in dest->idle */
    GPtrArray *addrs;
    guint addr_i;
    SmtpcAddr *cur;
    gboolean no_tls;      /* the current address without STARTTLS */
    gboolean retry_plain; /* connect to the current address again, without STARTTLS */
    int fd;
    guint fd_watch;
    KrConn *conn;
    guint timer;
    const char *waiting_for;
    SmtpcReplyReader rr;
    SmtpcCaps caps;
    gboolean tls;
    char *relay; /* "host[ip]:port" */
    int err_code;
    char err_ecode[12];
    char *err_diag;
    guint n_tx;
    /* the transaction */
    SmtpcDelivery *d;
    guint tx_gen;
    GQueue expect; /* GUINT_TO_POINTER(Expect | index << 8) */
    guint n_send;  /* recipients to send (indexes in `send`) */
    GArray *send;  /* guint: indexes into d->rcpts */
    guint next_rcpt;
    guint n_accepted;
    gboolean *accepted; /* per index into d->rcpts */
    gboolean mail_failed, data_sent, data_ok, data_failed, content_sent, final_reply, ignored;
    gboolean pipelining, bdat;
    /* the content pump */
    goffset off;
    SmtpcDot dot;
    gboolean reading;
    guint pump_timer;
    gsize pump_last_pending;
};

/* smtp-client-session.c */
SmtpcSession *smtpc_sess_ref(SmtpcSession *s);
void smtpc_sess_unref(SmtpcSession *s);
/* The one timer of a session: what it waits for (for the diagnostic). */
void smtpc_sess_arm(SmtpcSession *s, gint64 seconds, const char *what);
void smtpc_sess_disarm(SmtpcSession *s);
/* Send one command line (CRLF added; logged with core.debug smtp). */
void smtpc_sess_send(SmtpcSession *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* The end of a session (quit: say QUIT first). */
void smtpc_sess_drop(SmtpcSession *s, gboolean quit);
/* After a transaction: the next waiting delivery, idle, or QUIT. */
void smtpc_sess_next(SmtpcSession *s);

/* smtp-client-tx.c */
void smtpc_tx_start(SmtpcSession *s, SmtpcDelivery *d);
void smtpc_tx_reply(SmtpcSession *s, const SmtpcReply *r);
void smtpc_tx_abort(SmtpcSession *s, int code, const char *ecode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
void smtpc_tx_clear(SmtpcSession *s);

static inline const SmtpcConf *
conf_of(SmtpcSession *s)
{
    return s->node->conf;
}

static inline const char *
relay_name(SmtpcSession *s)
{
    return s->relay ? s->relay : s->dest->target.host;
}

#endif
