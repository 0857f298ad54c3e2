/* SPDX-License-Identifier: MIT */
/*
 * pop3.h - the POP3 server module's shared types.
 *
 *   pop3.c          module descriptor, settings, the "pop3" listener type,
 *                   failed-login bookkeeping per client address
 *   pop3-session.c  one connection: command loop, AUTHORIZATION (USER/PASS,
 *                   AUTH PLAIN, STLS, CAPA), TRANSACTION and UPDATE states
 *   pop3-output.c   multi-line replies streamed with flow control: LIST,
 *                   UIDL, RETR, TOP (with read-ahead of the next message)
 *   pop3-parse.c    pure protocol parsing and formatting
 */
#ifndef KR_POP3_H
#define KR_POP3_H

#include <kurir/kurir.h>

#include "pop3-parse.h"

typedef struct {
    char *store;
    gint64 idle_timeout;
    gint64 auth_fail_delay;
    gint64 auth_fail_limit;
    gint64 max_bad_commands;
} Pop3Conf;

typedef struct {
    gboolean allow_plaintext_loopback;
} Pop3ListenerConf;

typedef struct {
    KrListener *l;
    Pop3ListenerConf *conf;
    const char *name;
    gboolean starttls;
    SSL_CTX *tls_ctx;
} Pop3Server;

typedef struct {
    Pop3Conf *conf;
    const KrStore *store;
    const KrMailboxOps *ops;
    KrFailCount *fails; /* failed logins per client address */
} Pop3Globals;

extern Pop3Globals pop3_g;

typedef enum {
    POP3_ST_AUTH,  /* AUTHORIZATION */
    POP3_ST_TRANS, /* TRANSACTION */
    POP3_ST_UPDATE,
} Pop3State;

typedef struct Pop3Out Pop3Out;

typedef struct {
    Pop3Server *srv;
    KrConn *conn;
    Pop3State state;
    Pop3Reader rd;
    gboolean busy;      /* a command is in progress (input paused) */
    gboolean in_job;    /* a worker job or auth check is in flight */
    gboolean dead;      /* the connection is gone: free when the job ends */
    gboolean stop;      /* stop reading buffered input (STLS, QUIT) */
    guint timer;        /* delayed reply or output-drain poll */
    guint bad;          /* bad commands so far */
    char *user;         /* USER argument */
    gboolean sasl_wait; /* AUTH PLAIN: the response line comes next */
    char *login;        /* canonical user once logged in */
    /* TRANSACTION */
    KrMailbox *mb;
    guint32 n;   /* messages in the maildrop */
    guint8 *del; /* deletion marks, one bit per message */
    guint32 ndel;
    gint64 total;
    gint64 del_size;
    Pop3Out *out;      /* multi-line reply in progress */
    GQueue pfq;        /* read-ahead: Pop3Ahead, ascending seq */
    gsize pf_bytes;    /* their size */
    guint ra_idle;     /* the next read-ahead batch starts on the next loop turn */
    guint32 pf_last;   /* last message read ahead (queued or being read) */
    gboolean ra_job;   /* the job in flight is a read-ahead */
    gboolean wait_job; /* a command waits for that job to end */
    guint32 nretr;
    gint64 retr_bytes;
} Pop3Session;

/* pop3.c */
gboolean pop3_login_limited(const char *ip);
void pop3_login_failed(const char *ip);

/* pop3-session.c */
void pop3_session_accept(Pop3Server *srv, KrConn *conn);
/* The command in progress is finished: resume reading commands. */
void pop3_command_done(Pop3Session *s);
/* A job or timer ended for a dead session: free it if nothing is left. */
gboolean pop3_session_reap(Pop3Session *s);
gboolean pop3_is_deleted(Pop3Session *s, guint32 seq);

/* pop3-output.c */
void pop3_out_listing(Pop3Session *s, Pop3CmdId what);
void pop3_out_content(Pop3Session *s, guint32 seq, gboolean top, guint lines);
void pop3_out_free(Pop3Session *s);
/* Has message seq been read ahead? */
gboolean pop3_out_ready(Pop3Session *s, guint32 seq);
/* Drop what was read ahead. */
void pop3_out_drop_ahead(Pop3Session *s);
char *pop3_uidl_of(Pop3Session *s, const KrMailboxMsg *m);

#endif
