/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-parse-data.c - pure parsers for message content: DATA and BDAT
 *
 * SYNOPSIS
 *   #include "smtp-parse.h"
 *
 *   smtp_data_init(), smtp_data_feed(), smtp_data_error_status()
 *   smtp_parse_bdat(), smtp_crlf_check_init(), smtp_crlf_check_feed(),
 *   smtp_crlf_check_finish()
 *
 * DESCRIPTION
 *   Streaming: the state lives in a caller-owned struct, and the result
 *   is the same whether input arrives whole or one byte at a time.
 *
 *   DATA: bare CR and bare LF never end a line, so none of the
 *   "SMTP smuggling" sequences (\n.\n, \n.\r\n, \r\n.\n, \r.\r, \r\n.\r,
 *   \r.\r\n) can end the data; they are flagged and the message refused,
 *   while input is consumed up to the real CRLF.CRLF. BDAT chunks are
 *   counted exactly and checked the same way (smtp_crlf_check_*).
 *
 * SEE ALSO
 *   RFC 5321 4.1.1.4 and 4.5.2, RFC 3030; smtp-parse.c; t/test-smtp-parse.c
 */
#include "smtp-parse.h"
#include <string.h>

/* ---- DATA ---- */

/* BOL: at the start of a line; DOT: a leading dot was dropped; DOT_CR:
 * ".\r" at line start, the CR held back; CR: a CR inside a line. A bare
 * CR or LF leaves the parser inside the line, so only CRLF "." CRLF ends. */
enum { DS_BOL, DS_TEXT, DS_CR, DS_DOT, DS_DOT_CR, DS_DONE };

void
smtp_data_init(SmtpDataParser *p, guint64 max_size)
{
    memset(p, 0, sizeof *p);
    p->max_size = max_size;
    p->max_line = SMTP_MAX_TEXT_LINE;
    p->state = DS_BOL;
}

static void
data_count(SmtpDataParser *p, gsize n)
{
    p->size += n;
    p->line_len += n;
    if (p->max_size && p->size > p->max_size)
        p->flags |= SMTP_DATA_TOO_BIG;
    if (p->max_line && p->line_len > p->max_line)
        p->flags |= SMTP_DATA_LINE_TOO_LONG;
}

static void
data_emit(SmtpDataParser *p, const char *s, gsize n, SmtpDataSink sink, gpointer ud)
{
    if (n && sink && !(p->flags & SMTP_DATA_ERRORS))
        sink(s, n, ud);
}

gsize
smtp_data_feed(SmtpDataParser *p, const char *buf, gsize len, SmtpDataSink sink, gpointer user_data,
               gboolean *done_r)
{
    const guchar *s = (const guchar *)buf;
    gsize i = 0, run = 0; /* buf[run..i) is output not yet given to sink */

    while (i < len && p->state != DS_DONE) {
        guchar c = s[i];
        switch (p->state) {
        case DS_BOL:
            if (c == '.') {
                data_emit(p, buf + run, i - run, sink, user_data);
                run = ++i;
                p->state = DS_DOT;
            } else {
                p->state = DS_TEXT;
            }
            break;
        case DS_DOT:
            if (c == '\r') {
                data_emit(p, buf + run, i - run, sink, user_data);
                run = ++i;
                p->state = DS_DOT_CR;
            } else {
                p->state = DS_TEXT; /* ".x" -> "x", "..": "." */
            }
            break;
        case DS_DOT_CR:
            if (c == '\n') {
                run = ++i;
                p->state = DS_DONE;
            } else {
                /* ".\r" + not LF: the held CR is bare; output is off now. */
                p->flags |= SMTP_DATA_BARE_CR;
                data_count(p, 1);
                p->state = DS_TEXT;
            }
            break;
        case DS_TEXT: {
            gsize st = i;
            while (i < len && s[i] != '\r' && s[i] != '\n') {
                if (s[i] >= 0x80)
                    p->flags |= SMTP_DATA_8BIT;
                else if (s[i] == 0)
                    p->flags |= SMTP_DATA_NUL;
                i++;
            }
            data_count(p, i - st);
            if (i == len)
                break;
            data_count(p, 1);
            if (s[i++] == '\r')
                p->state = DS_CR;
            else
                p->flags |= SMTP_DATA_BARE_LF;
            break;
        }
        case DS_CR:
            if (c == '\n') {
                data_count(p, 1);
                p->line_len = 0;
                p->state = DS_BOL;
                i++;
            } else {
                p->flags |= SMTP_DATA_BARE_CR;
                p->state = DS_TEXT;
            }
            break;
        }
    }
    data_emit(p, buf + run, i - run, sink, user_data);
    p->consumed += i;
    *done_r = p->state == DS_DONE;
    return i;
}

gboolean
smtp_data_error_status(guint flags, guint *code_r, const char **enhanced_r, const char **text_r)
{
    if (flags & SMTP_DATA_TOO_BIG) {
        *code_r = 552, *enhanced_r = "5.3.4";
        *text_r = "Message size exceeds fixed maximum message size";
    } else if (flags & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR)) {
        *code_r = 554, *enhanced_r = "5.6.0";
        *text_r = "Message contains bare CR or LF characters";
    } else if (flags & SMTP_DATA_LINE_TOO_LONG) {
        *code_r = 554, *enhanced_r = "5.6.0";
        *text_r = "Message contains lines longer than 998 characters";
    } else {
        return FALSE;
    }
    return TRUE;
}

/* ---- BDAT ---- */

gboolean
smtp_parse_bdat(const char *arg, gsize len, guint64 *size_r, gboolean *last_r, GError **error)
{
    gsize i = 0;

    while (i < len && g_ascii_isdigit(arg[i]))
        i++;
    if (i == 0 || !smtp_parse_u64(arg, i, size_r))
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Bad BDAT chunk size");
    if (i < len && arg[i] != ' ')
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Bad BDAT chunk size");
    while (i < len && arg[i] == ' ')
        i++;
    *last_r = i < len;
    if (i < len && !smtp_word_eq(arg + i, len - i, "LAST"))
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Syntax: BDAT <size> [LAST]");
    return TRUE;
}

void
smtp_crlf_check_init(SmtpCrlfCheck *c, gsize max_line)
{
    memset(c, 0, sizeof *c);
    c->max_line = max_line;
}

void
smtp_crlf_check_feed(SmtpCrlfCheck *c, const char *buf, gsize len)
{
    for (gsize i = 0; i < len; i++) {
        guchar b = (guchar)buf[i];
        if (c->cr && b != '\n')
            c->flags |= SMTP_DATA_BARE_CR;
        if (++c->line_len > c->max_line && c->max_line)
            c->flags |= SMTP_DATA_LINE_TOO_LONG;
        if (b == '\n') {
            if (!c->cr)
                c->flags |= SMTP_DATA_BARE_LF;
            c->line_len = 0;
        } else if (b >= 0x80) {
            c->flags |= SMTP_DATA_8BIT;
        } else if (b == 0) {
            c->flags |= SMTP_DATA_NUL;
        }
        c->cr = b == '\r';
    }
}

guint
smtp_crlf_check_finish(SmtpCrlfCheck *c)
{
    if (c->cr)
        c->flags |= SMTP_DATA_BARE_CR;
    c->cr = FALSE;
    return c->flags;
}
