/* SPDX-License-Identifier: MIT */
/*
 * smtp-parse.h - pure SMTP protocol parsers: no sockets, no global state,
 * every limit explicit. RFC 5321, 6531 (SMTPUTF8), 3461 (DSN), 3030
 * (CHUNKING/BINARYMIME), 1870 (SIZE), 4954 + 4616 (AUTH, PLAIN).
 *
 *   smtp_line_init/next()        frame command lines; over-long and bare-LF lines
 *   smtp_cmd_parse()             verb (case-insensitive) + argument of one line
 *   smtp_cmd_name()              "MAIL", ... for logs
 *   smtp_split_path_arg()        "FROM:<path> params" -> path token + params text
 *   smtp_params_split()          "K=V K2" -> GArray of SmtpParam (pointers into input)
 *   smtp_parse_path()            "<...>" -> SmtpAddress (normalised local@domain)
 *   smtp_check_domain()          domain or [address-literal] syntax (EHLO, ...)
 *   smtp_address_lower_domain()  copy of an address with its domain ASCII-lowercased
 *   smtp_parse_mail/rcpt()       the whole MAIL FROM:/RCPT TO: argument, typed params
 *   smtp_xtext_decode/encode()   RFC 3461 xtext
 *   smtp_data_init/feed()        DATA state machine: dot-unstuffing, CRLF.CRLF,
 *                                bare CR/LF (smuggling), size and line limits
 *   smtp_data_error_status()     reply for a failed DATA
 *   smtp_crlf_check_*()          bare CR/LF checker for BDAT content
 *   smtp_parse_bdat()            "BDAT <size> [LAST]"
 *   smtp_reply_append*()         multi-line reply "250-...\r\n250 ...\r\n"
 *   smtp_parse_auth()            "AUTH mech [initial-response]"
 *   smtp_base64_decode()         strict, bounded base64
 *   smtp_sasl_plain_decode()     authzid NUL authcid NUL passwd
 *   smtp_sasl_text_decode()      base64 -> NUL-free UTF-8 (AUTH LOGIN answers)
 *   smtp_parse_error_status()    reply code + enhanced status for a GError
 *
 * Ownership: functions returning "const char *" + length point into the
 * caller's buffer. char * results and the strings in SmtpAddress,
 * SmtpMailArgs, SmtpRcptArgs and SmtpSaslPlain are owned by the caller
 * and freed with the matching *_clear(). On failure an output struct is
 * left cleared.
 *
 * Errors: SMTP_PARSE_ERROR in domain; messages are short, fixed English
 * text that never echoes client data, so they can go into a reply as-is.
 */
#ifndef KR_SMTP_PARSE_H
#define KR_SMTP_PARSE_H

#include <glib.h>

G_BEGIN_DECLS

/* ---- errors ---- */

#define SMTP_PARSE_ERROR (smtp_parse_error_quark())
GQuark smtp_parse_error_quark(void);

typedef enum {
    SMTP_PARSE_ERROR_LINE,          /* 500 5.5.2 bad command line (controls, empty) */
    SMTP_PARSE_ERROR_SYNTAX,        /* 501 5.5.2 bad argument syntax */
    SMTP_PARSE_ERROR_ADDRESS,       /* 501 5.1.7 (MAIL) / 5.1.3 (RCPT) bad address */
    SMTP_PARSE_ERROR_NEED_SMTPUTF8, /* 553 5.6.7 non-ASCII address without SMTPUTF8 */
    SMTP_PARSE_ERROR_PARAM_UNKNOWN, /* 555 5.5.4 parameter unknown or not offered */
    SMTP_PARSE_ERROR_PARAM,         /* 501 5.5.4 bad or duplicate parameter */
    SMTP_PARSE_ERROR_AUTH,          /* 501 5.5.2 bad AUTH data (base64, PLAIN) */
} SmtpParseError;

/* ---- commands ---- */

typedef enum {
    SMTP_CMD_UNKNOWN = 0,
    SMTP_CMD_HELO,
    SMTP_CMD_EHLO,
    SMTP_CMD_MAIL,
    SMTP_CMD_RCPT,
    SMTP_CMD_DATA,
    SMTP_CMD_BDAT,
    SMTP_CMD_RSET,
    SMTP_CMD_NOOP,
    SMTP_CMD_QUIT,
    SMTP_CMD_VRFY,
    SMTP_CMD_EXPN,
    SMTP_CMD_HELP,
    SMTP_CMD_STARTTLS,
    SMTP_CMD_AUTH,
} SmtpCmd;

/* Map an error from this file to the reply to send for command cmd. */
/* Internal to smtp-parse*.c: set error (fixed text) and return FALSE;
 * a case-insensitive match of s[0..len) against a whole word. */
gboolean smtp_parse_fail(GError **error, SmtpParseError code, const char *msg);
gboolean smtp_word_eq(const char *s, gsize len, const char *word);
/* Decimal digits only, no overflow: FALSE otherwise. */
gboolean smtp_parse_u64(const char *s, gsize len, guint64 *v_r);

void smtp_parse_error_status(const GError *error, SmtpCmd cmd, guint *code_r,
                             const char **enhanced_r);

/* ---- line framing ---- */

typedef enum {
    SMTP_LINE_MORE,     /* no complete line yet: drop *consumed_r, read more */
    SMTP_LINE_OK,       /* a line at *line_r, *line_len_r octets (no CRLF) */
    SMTP_LINE_TOO_LONG, /* over the limit: reply 500 5.5.2; the rest of that
                         * line is skipped silently by later calls */
} SmtpLineStatus;

#define SMTP_LINE_BARE_LF 0x1u /* line ended in LF without CR (accepted) */

typedef struct {
    gsize max;         /* octets per line including CRLF (RFC 5321: 512) */
    gboolean skipping; /* inside an over-long line */
} SmtpLineReader;

void smtp_line_init(SmtpLineReader *r, gsize max);
/* Look for the next line at the start of buf. After every call (also on
 * MORE) the caller uses the line, then drops the first *consumed_r bytes
 * of its buffer and keeps the rest; call again until MORE. The line may
 * start after skipped bytes, so use *line_r, not buf. Safe to feed byte
 * by byte; a caller never holds more than max bytes of one line. */
SmtpLineStatus smtp_line_next(SmtpLineReader *r, const char *buf, gsize len, const char **line_r,
                              gsize *line_len_r, gsize *consumed_r, guint *flags_r);

typedef struct {
    SmtpCmd cmd;
    const char *verb; /* as sent */
    gsize verb_len;
    const char *arg; /* after the verb, surrounding spaces trimmed; never NULL */
    gsize arg_len;
} SmtpCmdLine;

/* Split one command line (no CRLF). FALSE (SMTP_PARSE_ERROR_LINE) for an
 * empty line or one holding control characters other than TAB. Unknown
 * verbs give SMTP_CMD_UNKNOWN and TRUE. */
gboolean smtp_cmd_parse(const char *line, gsize len, SmtpCmdLine *cmd_r, GError **error);
const char *smtp_cmd_name(SmtpCmd cmd);

/* ---- addresses ---- */

/* flags for smtp_parse_path() */
#define SMTP_PATH_NULL_OK       0x1u /* "<>" allowed (MAIL) */
#define SMTP_PATH_POSTMASTER_OK 0x2u /* "<postmaster>" allowed (RCPT) */
#define SMTP_PATH_SMTPUTF8      0x4u /* UTF-8 allowed (SMTPUTF8 transaction) */

/* SmtpAddress.flags */
#define SMTP_ADDR_NULL       0x01u /* "<>" */
#define SMTP_ADDR_POSTMASTER 0x02u /* "<postmaster>", no domain */
#define SMTP_ADDR_QUOTED     0x04u /* local part was a quoted string */
#define SMTP_ADDR_LITERAL    0x08u /* domain is an [address literal] */
#define SMTP_ADDR_ROUTE      0x10u /* a source route was given and stripped */
#define SMTP_ADDR_UTF8       0x20u /* contains non-ASCII */

#define SMTP_MAX_LOCAL  64
#define SMTP_MAX_DOMAIN 255
#define SMTP_MAX_PATH   256

typedef struct {
    char *address; /* local@domain, local part as written (quotes kept); "" for <> */
    char *local;   /* local part with quoting removed: data, never to be interpreted */
    char *domain;  /* domain or [literal] as written; NULL for <> and <postmaster> */
    guint flags;   /* SMTP_ADDR_* */
} SmtpAddress;

/* path is exactly the "<...>" token. */
gboolean smtp_parse_path(const char *path, gsize len, guint flags, SmtpAddress *addr_r,
                         GError **error);
void smtp_address_clear(SmtpAddress *addr);
gboolean smtp_check_domain(const char *s, gsize len, gboolean allow_literal, gboolean utf8,
                           GError **error);
char *smtp_address_lower_domain(const char *address);

/* ---- MAIL / RCPT ---- */

/* Extensions offered in EHLO; a parameter of one not offered is unknown
 * (555). Pass 0 after HELO. */
#define SMTP_EXT_SIZE       0x01u
#define SMTP_EXT_8BITMIME   0x02u
#define SMTP_EXT_BINARYMIME 0x04u
#define SMTP_EXT_SMTPUTF8   0x08u
#define SMTP_EXT_DSN        0x10u
#define SMTP_EXT_AUTH       0x20u
#define SMTP_EXT_ALL        0x3fu

typedef struct {
    const char *key; /* esmtp-keyword */
    gsize key_len;
    const char *value; /* NULL when no "=" */
    gsize value_len;
} SmtpParam;

/* arg is "FROM:<...> params" (prefix "FROM:") or "TO:<...> params"; the
 * prefix matches case-insensitively and spaces may follow the colon. */
gboolean smtp_split_path_arg(const char *arg, gsize len, const char *prefix, const char **path_r,
                             gsize *path_len_r, const char **params_r, gsize *params_len_r,
                             GError **error);
/* Returns a GArray of SmtpParam pointing into s, or NULL with error. */
GArray *smtp_params_split(const char *s, gsize len, GError **error);

typedef enum {
    SMTP_BODY_NONE = 0,
    SMTP_BODY_7BIT,
    SMTP_BODY_8BITMIME,
    SMTP_BODY_BINARYMIME,
} SmtpBody;

typedef enum { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS } SmtpRet;

#define SMTP_NOTIFY_NEVER   0x1u
#define SMTP_NOTIFY_SUCCESS 0x2u
#define SMTP_NOTIFY_FAILURE 0x4u
#define SMTP_NOTIFY_DELAY   0x8u

typedef struct {
    SmtpAddress addr;
    gboolean size_given;
    guint64 size;
    SmtpBody body;
    gboolean smtputf8;
    SmtpRet ret;
    char *envid; /* xtext-decoded, NULL if not given */
} SmtpMailArgs;

typedef struct {
    SmtpAddress addr;
    guint notify;     /* SMTP_NOTIFY_*, 0 if not given */
    char *orcpt_type; /* e.g. "rfc822", NULL if no ORCPT */
    char *orcpt_addr; /* xtext-decoded */
} SmtpRcptArgs;

gboolean smtp_parse_mail(const char *arg, gsize len, guint ext, SmtpMailArgs *out, GError **error);
/* smtputf8: the transaction's MAIL carried SMTPUTF8. */
gboolean smtp_parse_rcpt(const char *arg, gsize len, guint ext, gboolean smtputf8,
                         SmtpRcptArgs *out, GError **error);
void smtp_mail_args_clear(SmtpMailArgs *a);
void smtp_rcpt_args_clear(SmtpRcptArgs *a);

/* Decoded result is NUL-terminated, valid UTF-8 without control chars. */
char *smtp_xtext_decode(const char *s, gsize len, GError **error);
void smtp_xtext_encode(GString *out, const char *s, gsize len);

/* ---- DATA ---- */

#define SMTP_DATA_BARE_LF       0x01u /* LF without CR before it */
#define SMTP_DATA_BARE_CR       0x02u /* CR without LF after it */
#define SMTP_DATA_TOO_BIG       0x04u /* more than max_size octets */
#define SMTP_DATA_LINE_TOO_LONG 0x08u /* a line over max_line octets incl. CRLF */
#define SMTP_DATA_8BIT          0x10u /* octets >= 0x80 seen (not an error) */
#define SMTP_DATA_NUL           0x20u /* NUL seen (not an error) */
#define SMTP_DATA_ERRORS                                                                           \
    (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR | SMTP_DATA_TOO_BIG | SMTP_DATA_LINE_TOO_LONG)

#define SMTP_MAX_TEXT_LINE 1000

typedef void (*SmtpDataSink)(const char *data, gsize len, gpointer user_data);

typedef struct {
    guint flags;      /* SMTP_DATA_* */
    guint64 size;     /* message octets: unstuffed, terminator excluded */
    guint64 consumed; /* raw octets consumed, terminator included */
    guint64 max_size; /* 0: unlimited */
    gsize max_line;   /* SMTP_MAX_TEXT_LINE after init; 0: unlimited */
    /* private */
    gsize line_len;
    guint state;
} SmtpDataParser;

void smtp_data_init(SmtpDataParser *p, guint64 max_size);
/* Consume raw bytes after the 354 reply. Returns the bytes used: all of
 * len, or fewer when the terminating CRLF.CRLF ended in buf (*done_r then
 * TRUE; what follows is pipelined commands). sink (may be NULL) gets the
 * content in runs, dot-unstuffed, byte-exact. Once an error flag is set
 * the sink is no longer called, but input is consumed up to the real
 * terminator so the session stays in sync; the message must then be
 * refused (smtp_data_error_status). Bare CR/LF never end the data. */
gsize smtp_data_feed(SmtpDataParser *p, const char *buf, gsize len, SmtpDataSink sink,
                     gpointer user_data, gboolean *done_r);
/* FALSE if flags hold no error; else the reply to give. */
gboolean smtp_data_error_status(guint flags, guint *code_r, const char **enhanced_r,
                                const char **text_r);

/* ---- BDAT ---- */

/* Parse "<size> [LAST]". On FALSE the chunk length is unknown: reply 501
 * and close the connection, since the chunk bytes cannot be skipped. The
 * size is not bounded here beyond guint64; compare against your limit and
 * still read (and discard) the chunk. */
gboolean smtp_parse_bdat(const char *arg, gsize len, guint64 *size_r, gboolean *last_r,
                         GError **error);

typedef struct {
    guint flags;    /* SMTP_DATA_BARE_LF/BARE_CR/LINE_TOO_LONG/8BIT/NUL */
    gsize max_line; /* 0: unlimited */
    /* private */
    gsize line_len;
    gboolean cr;
} SmtpCrlfCheck;

void smtp_crlf_check_init(SmtpCrlfCheck *c, gsize max_line);
void smtp_crlf_check_feed(SmtpCrlfCheck *c, const char *buf, gsize len);
/* After the LAST chunk: a trailing CR is bare. Returns the flags. */
guint smtp_crlf_check_finish(SmtpCrlfCheck *c);

/* ---- replies ---- */

/* Append "CODE-ENH line\r\n" ... "CODE ENH last\r\n". enhanced may be NULL
 * (greeting, EHLO lines). Control characters in text become '?'. */
void smtp_reply_append_lines(GString *out, guint code, const char *enhanced,
                             const char *const *lines, gsize n_lines);
/* text is split into lines at '\n'. */
void smtp_reply_append(GString *out, guint code, const char *enhanced, const char *text);
void smtp_reply_appendf(GString *out, guint code, const char *enhanced, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

/* ---- AUTH ---- */

typedef enum { SMTP_SASL_UNKNOWN = 0, SMTP_SASL_PLAIN, SMTP_SASL_LOGIN } SmtpSaslMech;

#define SMTP_SASL_MAX_FIELD 255 /* RFC 4616 field limit */

typedef struct {
    SmtpSaslMech mech; /* UNKNOWN: reply 504 5.5.4 */
    const char *mech_name;
    gsize mech_name_len;
    gboolean has_initial;
    const char *initial; /* base64; empty when sent as "=" */
    gsize initial_len;
} SmtpAuthArgs;

gboolean smtp_parse_auth(const char *arg, gsize len, SmtpAuthArgs *out, GError **error);
/* Strict base64 (padding required, no whitespace); result NUL-terminated,
 * at most max_out octets. */
gboolean smtp_base64_decode(const char *in, gsize len, gsize max_out, char **out_r,
                            gsize *out_len_r, GError **error);

typedef struct {
    char *authzid; /* NULL when empty */
    char *authcid;
    char *passwd; /* wiped by smtp_sasl_plain_clear() */
} SmtpSaslPlain;

/* data is the decoded PLAIN message. */
gboolean smtp_sasl_plain_decode(const char *data, gsize len, SmtpSaslPlain *out, GError **error);
void smtp_sasl_plain_clear(SmtpSaslPlain *p);
/* base64 -> UTF-8 text without NUL, at most max octets (AUTH LOGIN). */
gboolean smtp_sasl_text_decode(const char *b64, gsize len, gsize max, char **text_r,
                               GError **error);

G_END_DECLS

#endif
