/* SPDX-License-Identifier: MIT */
/*
 * smtp-client-proto.h - the SMTP client's pure protocol pieces: no
 * sockets, no global state, every limit explicit (RFC 5321, 1869, 2920,
 * 3207, 3461, 4954, 1870, 3030, 6531).
 *
 *   smtpc_reply_reader_init/clear()  assemble (multi-line) replies
 *   smtpc_reply_feed()               one reply from a buffer, or MORE/BAD
 *   smtpc_reply_clear()              free a reply's text
 *   smtpc_caps_parse()               EHLO reply -> extensions, SIZE, AUTH
 *   smtpc_address_ok()               may this envelope address be sent
 *   smtpc_mail_cmd() / rcpt_cmd()    MAIL FROM / RCPT TO with parameters
 *   smtpc_dot_init/feed/finish()     dot-stuffing with CRLF line ends
 *   smtpc_auth_plain()               AUTH PLAIN initial response
 *   smtpc_reply_status()             enhanced status for a reply
 *
 * Replies are parsed strictly: every line is "DDD-text" or "DDD text" (or
 * just "DDD"), first digit 2-5, the same code on every line, at most
 * max_line octets per line and max_lines lines. Anything else is a
 * protocol error (the caller defers and drops the connection). Lines may
 * end in CRLF or a bare LF. Control characters in the text become '?'.
 *
 * Ownership: SmtpcReply.text is owned by the reply (smtpc_reply_clear).
 */
#ifndef KR_SMTP_CLIENT_PROTO_H
#define KR_SMTP_CLIENT_PROTO_H

#include <glib.h>

G_BEGIN_DECLS

#define SMTPC_ERROR (g_quark_from_static_string("smtp-client-error"))

/* ---- replies ---- */

typedef struct {
    guint code;     /* 200..599 */
    char ecode[16]; /* enhanced status code from the first line, "" if none */
    char *text;     /* lines (without code and enhanced code) joined by '\n' */
    guint n_lines;
} SmtpcReply;

typedef enum {
    SMTPC_REPLY_MORE, /* no complete reply yet: keep the rest, read more */
    SMTPC_REPLY_DONE, /* *reply_r filled */
    SMTPC_REPLY_BAD,  /* protocol error, error set */
} SmtpcReplyStatus;

typedef struct {
    gsize max_line;  /* octets per line including CRLF */
    guint max_lines; /* lines per reply */
    /* private */
    guint code;
    guint n_lines;
    char ecode[16];
    GString *text;
} SmtpcReplyReader;

void smtpc_reply_reader_init(SmtpcReplyReader *r, gsize max_line, guint max_lines);
void smtpc_reply_reader_clear(SmtpcReplyReader *r);
/* Consume complete lines at the start of buf. After every call the caller
 * drops the first *consumed_r bytes. DONE: one whole reply in *reply_r;
 * call again for a pipelined next one. */
SmtpcReplyStatus smtpc_reply_feed(SmtpcReplyReader *r, const char *buf, gsize len,
                                  gsize *consumed_r, SmtpcReply *reply_r, GError **error);
void smtpc_reply_clear(SmtpcReply *reply);
/* The text on one line ('\n' -> ' '), for logs and diagnostics. */
char *smtpc_reply_oneline(const SmtpcReply *reply);
/* Enhanced status for the reply: its own if it has one of the same class
 * as the code, else "4.0.0" / "5.0.0" / "2.0.0". */
const char *smtpc_reply_status(const SmtpcReply *reply);

/* ---- EHLO ---- */

#define SMTPC_EXT_PIPELINING 0x001u
#define SMTPC_EXT_SIZE       0x002u
#define SMTPC_EXT_8BITMIME   0x004u
#define SMTPC_EXT_SMTPUTF8   0x008u
#define SMTPC_EXT_DSN        0x010u
#define SMTPC_EXT_STARTTLS   0x020u
#define SMTPC_EXT_AUTH       0x040u
#define SMTPC_EXT_CHUNKING   0x080u
#define SMTPC_EXT_BINARYMIME 0x100u
#define SMTPC_EXT_ENHANCED   0x200u

#define SMTPC_AUTH_PLAIN 0x1u
#define SMTPC_AUTH_LOGIN 0x2u

typedef struct {
    guint ext;        /* SMTPC_EXT_* */
    guint64 size_max; /* SIZE limit, 0: none given */
    guint auth;       /* SMTPC_AUTH_* offered */
} SmtpcCaps;

/* From the text of a 250 reply to EHLO (the first line is the greeting). */
void smtpc_caps_parse(const char *text, SmtpcCaps *caps_r);

/* ---- commands ---- */

/* TRUE if addr ("" = null sender allowed when null_ok) can be sent inside
 * <...>: no control characters, no spaces outside quotes, no < >, at most
 * 254 octets; non-ASCII sets *utf8_r. */
gboolean smtpc_address_ok(const char *addr, gboolean null_ok, gboolean *utf8_r);

typedef struct {
    guint ext;         /* what the server offered */
    guint64 size;      /* message size (0: unknown) */
    const char *body;  /* "7BIT", "8BITMIME", "BINARYMIME" or NULL */
    gboolean smtputf8; /* send SMTPUTF8 */
    const char *ret;   /* "FULL", "HDRS" or NULL */
    const char *envid; /* or NULL */
} SmtpcMailParams;

/* "MAIL FROM:<sender> [SIZE=] [BODY=] [SMTPUTF8] [RET=] [ENVID=]\r\n";
 * parameters only for extensions in p->ext. */
void smtpc_mail_cmd(GString *out, const char *sender, const SmtpcMailParams *p);
/* notify: KR_NOTIFY_* bits (0: none); orcpt "type;address" or NULL. DSN
 * parameters only when dsn is TRUE. */
void smtpc_rcpt_cmd(GString *out, const char *rcpt, gboolean dsn, unsigned notify,
                    const char *orcpt);

/* ---- content ---- */

typedef struct {
    gboolean bol;    /* at the beginning of a line */
    gboolean cr;     /* the last byte was a CR not yet written */
    guint64 written; /* octets appended */
} SmtpcDot;

void smtpc_dot_init(SmtpcDot *d);
/* Append buf to out with CRLF line ends (bare CR and bare LF become
 * CRLF) and a '.' doubled at the start of each line. */
void smtpc_dot_feed(SmtpcDot *d, GString *out, const char *buf, gsize len);
/* End the content: a line end if needed, then ".\r\n". */
void smtpc_dot_finish(SmtpcDot *d, GString *out);

/* ---- AUTH ---- */

/* base64("\0user\0password") for AUTH PLAIN. */
char *smtpc_auth_plain(const char *user, const char *password);

G_END_DECLS

#endif
