/* SPDX-License-Identifier: MIT */
/*
 * pop3-parse.h - pure POP3 protocol functions (no I/O, no globals), so
 * they can be unit-tested whole and one byte at a time.
 *
 *   pop3_reader_next(rd, buf, len, max, &line, &line_len, &consumed)
 *                            next command line from client input
 *   pop3_parse_command(line, len, &cmd)
 *                            keyword and arguments, checked per command
 *   pop3_sasl_plain(b64, &authz, &authc, &pass)
 *                            decode an AUTH PLAIN response (RFC 4616)
 *   pop3_stuff(st, in, len, out)
 *                            stored content -> wire: LF -> CRLF, dot-stuffing
 *   pop3_stuff_end(st, out)  end of a multi-line reply (CRLF if needed, ".")
 *   pop3_stuff_buf(st, in, len, out), pop3_stuff_end_buf(st, out)
 *                            the same into a plain buffer (no GString)
 *   pop3_top_take(t, in, len, &done)
 *                            how much of the content TOP sends
 *   pop3_uidl_ok(s)          is s usable as a UIDL (RFC 1939: 1..70 chars
 *                            0x21..0x7E)?
 */
#ifndef KR_POP3_PARSE_H
#define KR_POP3_PARSE_H

#include <glib.h>

/* Longest command line accepted (RFC 2449 says 255 octets with CRLF; a
 * little more tolerance for long passwords and AUTH responses). */
#define POP3_MAX_LINE      1024
#define POP3_MAX_AUTH_LINE 8192

typedef enum {
    POP3_NEED_MORE, /* no complete line yet */
    POP3_LINE,      /* *line, *line_len (without CRLF/LF) */
    POP3_TOO_LONG,  /* a line longer than max was discarded (reported once,
                     * when its end arrived) */
} Pop3Scan;

typedef struct {
    gboolean discarding; /* inside a too-long line */
} Pop3Reader;

/* Look at client input buf[0..len). Always sets *consumed (bytes to
 * consume now, possibly 0). A line ends with LF (CRLF or bare LF). While
 * discarding a too-long line every byte is consumed. */
Pop3Scan pop3_reader_next(Pop3Reader *rd, const char *buf, gsize len, gsize max, const char **line,
                          gsize *line_len, gsize *consumed);

typedef enum {
    POP3_CMD_UNKNOWN = 0,
    POP3_CMD_USER,
    POP3_CMD_PASS,
    POP3_CMD_QUIT,
    POP3_CMD_STAT,
    POP3_CMD_LIST,
    POP3_CMD_RETR,
    POP3_CMD_DELE,
    POP3_CMD_NOOP,
    POP3_CMD_RSET,
    POP3_CMD_TOP,
    POP3_CMD_UIDL,
    POP3_CMD_CAPA,
    POP3_CMD_STLS,
    POP3_CMD_AUTH,
    POP3_CMD_APOP,
} Pop3CmdId;

typedef struct {
    Pop3CmdId id;
    char *arg;  /* USER/PASS: the rest of the line; AUTH: mechanism */
    char *arg2; /* AUTH: initial response, or NULL */
    guint32 n1; /* message number (LIST, RETR, DELE, TOP, UIDL) */
    guint32 n2; /* TOP: lines */
    gboolean has_n1;
    const char *error; /* static text of the syntax error, or NULL */
} Pop3Command;

/* Parse one line. FALSE with cmd->error set (or id UNKNOWN) on a syntax
 * error; the strings in cmd are newly allocated: pop3_command_clear(). */
gboolean pop3_parse_command(const char *line, gsize len, Pop3Command *cmd);
void pop3_command_clear(Pop3Command *cmd);

/* AUTH PLAIN: base64 of "authzid NUL authcid NUL password". */
gboolean pop3_sasl_plain(const char *b64, char **authz_r, char **authc_r, char **pass_r);

typedef struct {
    gboolean mid_line; /* not at the beginning of a line */
    gboolean last_cr;  /* previous byte was CR */
    guint64 crlf;      /* input so far, counted with CRLF line ends (the
                        * store's message size): no dots, no final "." */
} Pop3Stuff;

/* At most 2 * len bytes are produced by len bytes of input, at most
 * POP3_STUFF_END_MAX by the end. */
#define POP3_STUFF_END_MAX 5

void pop3_stuff(Pop3Stuff *st, const char *in, gsize len, GString *out);
void pop3_stuff_end(Pop3Stuff *st, GString *out);
/* out has room for 2 * len bytes; returns the bytes written. */
gsize pop3_stuff_buf(Pop3Stuff *st, const char *in, gsize len, char *out);
/* out has room for POP3_STUFF_END_MAX bytes; returns the bytes written. */
gsize pop3_stuff_end_buf(Pop3Stuff *st, char *out);

typedef struct {
    guint lines; /* body lines wanted */
    guint sent;  /* body lines sent */
    gboolean in_body;
    gboolean line_empty; /* the current line has had no byte but CR */
    gboolean done;
} Pop3Top;

void pop3_top_init(Pop3Top *t, guint lines);
/* Bytes of in[0..len) to send; sets t->done when the limit is reached. */
gsize pop3_top_take(Pop3Top *t, const char *in, gsize len);

gboolean pop3_uidl_ok(const char *s);

#endif
