/* SPDX-License-Identifier: MIT */
/*
 * smtp.h - private declarations shared by the files of the SMTP server
 * module (smtp.so). Nothing here is seen outside modules/smtp/.
 *
 *   smtp.c           module descriptor, settings, listener type
 *   smtp-session.c   connection life, input loop, replies, simple commands
 *   smtp-envelope.c  MAIL, RCPT, the transaction, recipient policy
 *   smtp-data.c      DATA, BDAT, streaming to the spool, injection
 *   smtp-auth.c      AUTH PLAIN/LOGIN, failure delay and per-IP limit
 *   smtp-relay.c     trusted networks (CIDR lists, IPv4 and IPv6)
 *   smtp-parse.c     pure protocol parsers (see smtp-parse.h)
 *
 * Ownership: a session is reference counted. The connection holds one
 * reference until its closed handler runs (which sets s->conn to NULL);
 * every pending asynchronous operation (greeting timer, auth check, auth
 * failure delay, pipeline run) holds one more, and checks s->conn before
 * touching the connection.
 */
#ifndef KR_SMTP_H
#define KR_SMTP_H

#include <kurir/kurir.h>
#include "smtp-parse.h"

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with CRLF.
 * AUTH lines may be longer (RFC 4954 4: 12288 octets). */
#define SMTP_CMD_LINE_MAX  512
#define SMTP_AUTH_LINE_MAX 12288

/* Configuration errors of this module (code 0). */
#define SMTP_CONF_ERROR (g_quark_from_static_string("smtp-conf-error"))

/* ---- settings ---- */

/* The module's `smtp = { ... }` group. */
typedef struct {
    gint64 max_message_size;
    gint64 max_recipients;
    gint64 command_timeout;
    gint64 data_timeout;
    char **trusted_networks;
    gint64 auth_fail_delay;
    gint64 auth_fail_limit;
    char *greet_delay; /* "0", "500ms", "1s" */
    gint64 max_errors;
    char *banner;
    gboolean vrfy;
} SmtpConf;

/* Settings of one `type = "smtp"` listener entry. */
typedef struct {
    gboolean submission;
    gboolean auth;
    char *entry;
} SmtpListenerConf;

/* Per-listener runtime data (kr_listener_data). */
typedef struct {
    KrListener *l;
    SmtpListenerConf *conf;
    const char *name;
    gboolean starttls; /* STARTTLS offered */
    gboolean implicit; /* TLS from the first byte */
    SSL_CTX *tls_ctx;
} SmtpServer;

/* Module-wide state, set up in init. */
typedef struct {
    SmtpConf *conf;
    guint greet_delay_ms;
    GArray *trusted; /* SmtpNet */
} SmtpGlobals;

extern SmtpGlobals smtp_g;

/* ---- sessions ---- */

typedef enum {
    SS_GREET,   /* waiting to send the greeting */
    SS_COMMAND, /* reading command lines */
    SS_DATA,    /* reading DATA content */
    SS_BDAT,    /* reading a BDAT chunk */
    SS_AUTH,    /* reading an AUTH continuation line */
    SS_BUSY,    /* waiting for async work (auth, pipeline); input paused */
    SS_CLOSING, /* QUIT or fatal error: ignore further input */
} SmtpState;

typedef struct SmtpRcptEntry {
    char *address; /* canonical local@domain */
    char *orcpt;   /* "type;address", or NULL */
    guint notify;  /* KR_NOTIFY_* */
} SmtpRcptEntry;

typedef struct SmtpAuthExchange SmtpAuthExchange;

/* One mail transaction: MAIL .. end of data. */
typedef struct {
    SmtpMailArgs mail;
    char *sender;      /* canonical, "" for <> */
    GPtrArray *rcpts;  /* SmtpRcptEntry * */
    GHashTable *seen;  /* canonical address set (duplicates) */
    guint rcpt_tries;  /* RCPTs accepted, duplicates included */
    KrMsg *msg;        /* spool, from DATA/BDAT on */
    SmtpDataParser dp; /* DATA */
    SmtpCrlfCheck cc;  /* BDAT */
    guint64 bdat_left; /* octets of the current chunk still to read */
    guint64 bdat_size; /* octets received in all chunks */
    gboolean bdat_last;
    gboolean bdat;   /* the transaction uses BDAT */
    gboolean failed; /* BDAT refused: read and drop the chunk, then reply */
    guint bdat_fail_code;
    const char *bdat_fail_ecode, *bdat_fail_text; /* static strings */
    GError *write_error;
} SmtpTx;

typedef struct SmtpSession {
    gint ref;
    KrConn *conn; /* NULL once closed */
    SmtpServer *srv;
    SmtpState state;
    SmtpLineReader lr;
    guint errors;
    guint auth_failures;
    guint timer; /* greeting or auth-failure delay */
    gboolean ehlo : 1;
    gboolean helo : 1;
    gboolean tls : 1;
    gboolean trusted : 1;
    gboolean relay_ok : 1;
    char *helo_name;
    char *auth_user;
    SmtpTx *tx;
    SmtpAuthExchange *auth;
} SmtpSession;

/* smtp-session.c */
void smtp_session_accept(SmtpServer *srv, KrConn *conn);
SmtpSession *smtp_session_ref(SmtpSession *s);
void smtp_session_unref(SmtpSession *s);
/* Queue a reply (written when the input is drained or the loop turns). */
void smtp_reply(SmtpSession *s, guint code, const char *ecode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* A reply that counts as a client error; past max_errors: 421 and close. */
void smtp_error(SmtpSession *s, guint code, const char *ecode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* Reply 421 and close the connection. */
void smtp_close(SmtpSession *s, const char *ecode, const char *text);
/* Async work is done: back to command mode and read pipelined input. */
void smtp_session_resume(SmtpSession *s);
/* Set the idle timeout for the command or data phase. */
void smtp_session_timeouts(SmtpSession *s, gboolean data);
/* "ESMTPSA" etc. for the current session (transaction's SMTPUTF8). */
const char *smtp_session_protocol(const SmtpSession *s, gboolean utf8);
/* Extensions (SMTP_EXT_*) that MAIL/RCPT parameters may use. */
guint smtp_session_ext(const SmtpSession *s);
gboolean smtp_session_auth_offered(const SmtpSession *s);

/* smtp-envelope.c */
void smtp_cmd_mail(SmtpSession *s, const char *arg, gsize len);
void smtp_cmd_rcpt(SmtpSession *s, const char *arg, gsize len);
void smtp_cmd_vrfy(SmtpSession *s, const char *arg, gsize len);
void smtp_tx_free(SmtpTx *tx);
void smtp_tx_reset(SmtpSession *s);

/* smtp-data.c */
void smtp_cmd_data(SmtpSession *s);
void smtp_cmd_bdat(SmtpSession *s, const char *arg, gsize len);
/* Feed input in SS_DATA / SS_BDAT; returns octets used. */
gsize smtp_data_input(SmtpSession *s, const char *buf, gsize len);

/* smtp-auth.c */
void smtp_cmd_auth(SmtpSession *s, const char *arg, gsize len);
/* A line in SS_AUTH (no CRLF). */
void smtp_auth_line(SmtpSession *s, const char *line, gsize len);
void smtp_auth_free(SmtpAuthExchange *a);
void smtp_auth_cleanup(void);

/* smtp-relay.c */
typedef struct {
    int family; /* AF_INET or AF_INET6 */
    guint8 addr[16];
    guint prefix;
} SmtpNet;
/* Parse "10.0.0.0/8", "::1", "2001:db8::/32" into nets; FALSE with error. */
gboolean smtp_nets_parse(char **list, GArray *nets, GError **error);
/* TRUE if ip (text, as from kr_conn_peer_ip) is in one of nets. */
gboolean smtp_nets_match(const GArray *nets, const char *ip);

#endif
