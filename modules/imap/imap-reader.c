/* SPDX-License-Identifier: MIT */
/*
 * imap-reader.c - incremental IMAP command framing: lines and literals,
 * limits checked before anything is allocated, resynchronisation after
 * an error. See imap-parse.h (READER, FLOW, LIMITS).
 *
 *   imap_reader_new, imap_reader_free, imap_reader_set_limits
 *   imap_reader_set_line_mode, imap_reader_feed
 *   imap_reader_literal, imap_reader_literal_accept/reject
 *   imap_reader_take, imap_reader_error, imap_reader_idle
 *   imap_raw_command_new, imap_raw_command_free
 *
 * A line ends with LF (a CR before it is dropped; a bare LF is taken as
 * a line end too). A line announces a literal when it ends, outside a
 * quoted string, with "{n}", "{n+}", "~{n}" or "~{n+}". Lines of one
 * command are stored with CRLF between them, so the parser sees the
 * wire syntax. Empty lines between commands are ignored.
 *
 * After an error the reader discards the rest of the command: the rest of
 * the current line, then, as long as the line ends with a non-synchronising
 * literal, its octets and the line after them. A synchronising literal on a
 * discarded line ends the command there: the client waits for a "+" that
 * never comes and gets the tagged error instead.
 */
#include "imap-lex.h"

#include <string.h>

typedef enum {
    ST_LINE,      /* reading a line of a command */
    ST_LIT_WAIT,  /* literal announced, waiting for accept/reject */
    ST_LITERAL,   /* reading literal octets (buffered or streamed) */
    ST_COMMAND,   /* a whole command is waiting for imap_reader_take */
    ST_SKIP_LINE, /* discarding to the end of a line */
    ST_SKIP_LIT,  /* discarding literal octets */
} State;

#define TAIL_MAX 32

struct ImapReader {
    ImapLimits lim;
    State st;
    GByteArray *buf;  /* the command so far */
    gsize line_start; /* offset of the current line in buf */
    gboolean in_quote, esc;
    gboolean line_mode; /* the next line is raw */
    gboolean raw_line;  /* the current line is raw */
    guint n_literals;
    GArray *streamed; /* ImapStreamedLit */
    ImapLiteralInfo lit;
    char *lit_tag;
    char lit_cmd[16];
    guint64 remaining; /* ST_LITERAL, ST_SKIP_LIT */
    guchar tail[TAIL_MAX];
    guint tail_len;
    ImapError err;
};

ImapReader *
imap_reader_new(const ImapLimits *limits)
{
    static const ImapLimits def = IMAP_LIMITS_INIT;
    ImapReader *r = g_new0(ImapReader, 1);
    r->lim = limits ? *limits : def;
    r->buf = g_byte_array_new();
    r->streamed = g_array_new(FALSE, FALSE, sizeof(ImapStreamedLit));
    return r;
}

void
imap_reader_free(ImapReader *r)
{
    if (!r)
        return;
    g_byte_array_unref(r->buf);
    g_array_free(r->streamed, TRUE);
    g_free(r->lit_tag);
    imap_error_clear(&r->err);
    g_free(r);
}

void
imap_reader_set_limits(ImapReader *r, const ImapLimits *limits)
{
    r->lim = *limits;
}

void
imap_reader_set_line_mode(ImapReader *r)
{
    g_return_if_fail(imap_reader_idle(r));
    r->line_mode = TRUE;
}

gboolean
imap_reader_idle(ImapReader *r)
{
    return r->st == ST_LINE && r->buf->len == 0;
}

static void
reset_command(ImapReader *r)
{
    g_byte_array_set_size(r->buf, 0);
    g_array_set_size(r->streamed, 0);
    r->line_start = 0;
    r->in_quote = r->esc = FALSE;
    r->n_literals = 0;
    r->raw_line = FALSE;
}

/* Tag and command word of the buffered command's first line. */
static void
first_words(ImapReader *r, const char **tag, gsize *tag_len, const char **cmd, gsize *cmd_len)
{
    const char *s = (const char *)r->buf->data;
    gsize len = r->buf->len;
    const char *nl = memchr(s, '\r', len);
    if (nl)
        len = nl - s;
    const char *sp = memchr(s, ' ', len);
    *tag = s;
    *tag_len = sp ? (gsize)(sp - s) : len;
    *cmd = sp ? sp + 1 : s + len;
    const char *e = *cmd;
    while (e < s + len && *e != ' ')
        e++;
    *cmd_len = e - *cmd;
}

static void
set_error(ImapReader *r, ImapErrorKind kind, const char *code, const char *text)
{
    const char *tag, *cmd;
    gsize tag_len, cmd_len;
    imap_error_clear(&r->err);
    first_words(r, &tag, &tag_len, &cmd, &cmd_len);
    r->err.kind = kind;
    r->err.tag = imap_tag_valid(tag, tag_len) ? g_strndup(tag, tag_len) : NULL;
    r->err.name = r->err.tag ? imap_cmd_lookup(cmd, cmd_len) : IMAP_CMD_UNKNOWN;
    r->err.code = code;
    r->err.text = text;
}

static void
tail_reset(ImapReader *r)
{
    r->tail_len = 0;
}

static void
tail_add(ImapReader *r, const guchar *d, gsize n)
{
    if (n >= TAIL_MAX) {
        memcpy(r->tail, d + n - TAIL_MAX, TAIL_MAX);
        r->tail_len = TAIL_MAX;
        return;
    }
    if (r->tail_len + n > TAIL_MAX) {
        gsize drop = r->tail_len + n - TAIL_MAX;
        memmove(r->tail, r->tail + drop, r->tail_len - drop);
        r->tail_len -= drop;
    }
    memcpy(r->tail + r->tail_len, d, n);
    r->tail_len += n;
}

/* Go to discarding the rest of the line, remembering its end so far. */
static void
skip_line(ImapReader *r)
{
    tail_reset(r);
    if (r->buf->len > r->line_start)
        tail_add(r, r->buf->data + r->line_start, r->buf->len - r->line_start);
    reset_command(r);
    r->st = ST_SKIP_LINE;
}

/* Does s[0..len) end with a literal announcement? */
static gboolean
announces_literal(const guchar *s, gsize len, guint64 *size, gboolean *sync, gboolean *binary)
{
    if (len < 3 || s[len - 1] != '}')
        return FALSE;
    gsize i = len - 1;
    *sync = TRUE;
    if (s[i - 1] == '+') {
        *sync = FALSE;
        i--;
    }
    gsize end = i;
    while (i > 0 && g_ascii_isdigit(s[i - 1]))
        i--;
    if (i == end || i == 0 || s[i - 1] != '{')
        return FALSE;
    guint64 v = 0;
    for (gsize k = i; k < end; k++) {
        guint d = s[k] - '0';
        if (v > (G_MAXUINT64 - d) / 10) {
            v = G_MAXUINT64;
            break;
        }
        v = v * 10 + d;
    }
    *size = v;
    *binary = i >= 2 && s[i - 2] == '~';
    return TRUE;
}

/* A literal was announced at the end of the current line. */
static ImapReadStatus
literal_announced(ImapReader *r, guint64 size, gboolean sync, gboolean binary)
{
    const char *tag, *cmd;
    gsize tag_len, cmd_len;
    first_words(r, &tag, &tag_len, &cmd, &cmd_len);
    gboolean append = imap_lex_is(cmd, cmd_len, "APPEND");
    gboolean streamed = append && size >= r->lim.stream_min;
    const char *text = NULL, *code = NULL;
    ImapErrorKind kind = IMAP_ERROR_BAD;
    if (binary && !r->lim.literal8) {
        text = "Binary literals are not allowed";
    } else if (!sync && r->lim.max_nonsync == 0) {
        text = "Non-synchronizing literals are not allowed";
    } else if (!sync && size > r->lim.max_nonsync) {
        code = "TOOBIG";
        text = "Non-synchronizing literal too large";
    } else if (size > r->lim.max_literal ||
               (!streamed && size > r->lim.max_command - MIN(r->buf->len, r->lim.max_command))) {
        code = "TOOBIG";
        text = "Literal too large";
        kind = sync ? IMAP_ERROR_NO : IMAP_ERROR_BAD;
    }
    if (text) {
        set_error(r, kind, code, text);
        reset_command(r);
        if (sync) {
            r->st = ST_LINE;
        } else {
            r->st = ST_SKIP_LIT;
            r->remaining = size;
        }
        return IMAP_READ_ERROR;
    }
    /* copy tag and command word out before the buffer may move */
    g_free(r->lit_tag);
    r->lit_tag = imap_tag_valid(tag, tag_len) ? g_strndup(tag, tag_len) : NULL;
    gsize n = MIN(cmd_len, sizeof(r->lit_cmd) - 1);
    for (gsize i = 0; i < n; i++)
        r->lit_cmd[i] = g_ascii_toupper(cmd[i]);
    r->lit_cmd[n] = '\0';
    g_byte_array_append(r->buf, (const guint8 *)"\r\n", 2);
    r->lit = (ImapLiteralInfo){
        .size = size,
        .sync = sync,
        .binary = binary,
        .streamed = streamed,
        .index = r->n_literals++,
        .remaining = size,
        .tag = r->lit_tag,
        .command = r->lit_cmd,
    };
    r->st = ST_LIT_WAIT;
    return IMAP_READ_LITERAL;
}

static void
new_line(ImapReader *r)
{
    r->line_start = r->buf->len;
    r->in_quote = r->esc = FALSE;
    r->st = ST_LINE;
}

static ImapReadStatus
end_of_line(ImapReader *r)
{
    GByteArray *b = r->buf;
    if (r->raw_line) {
        r->raw_line = FALSE;
        r->st = ST_COMMAND;
        return IMAP_READ_COMMAND;
    }
    if (b->len == 0)
        return IMAP_READ_MORE; /* empty line between commands: ignored */
    guint64 size;
    gboolean sync, binary;
    if (!r->in_quote &&
        announces_literal(b->data + r->line_start, b->len - r->line_start, &size, &sync, &binary))
        return literal_announced(r, size, sync, binary);
    r->st = ST_COMMAND;
    return IMAP_READ_COMMAND;
}

/* After a discarded line s[0..len): follow a non-synchronising literal. */
static void
discard_after_line(ImapReader *r, const guchar *s, gsize len)
{
    guint64 size;
    gboolean sync, binary;
    if (len && s[len - 1] == '\r')
        len--;
    if (announces_literal(s, len, &size, &sync, &binary) && !sync) {
        r->st = ST_SKIP_LIT;
        r->remaining = size;
    } else {
        r->st = ST_LINE;
    }
    tail_reset(r);
}

/* ST_LINE: consume up to one line end. */
static ImapReadStatus
read_line(ImapReader *r, const guchar *d, gsize len, gsize *pos)
{
    if (r->buf->len == 0 && !r->raw_line) {
        r->raw_line = r->line_mode;
        r->line_mode = FALSE;
    }
    const guchar *lf = memchr(d + *pos, '\n', len - *pos);
    gsize end = lf ? (gsize)(lf - d) : len;
    gsize n = end - *pos;
    /* room left: the line limit (+1 for the CR of CRLF, dropped at the
     * line end) and the command limit; what fits is kept either way, so
     * the tag is known however the input was split */
    gsize line_room = r->lim.max_line + 1 - MIN(r->buf->len - r->line_start, r->lim.max_line + 1);
    gsize cmd_room = r->lim.max_command + 1 - MIN(r->buf->len, r->lim.max_command + 1);
    gboolean too_long = n > MIN(line_room, cmd_room);
    if (too_long)
        n = MIN(line_room, cmd_room);
    if (!r->raw_line) {
        for (gsize i = *pos; i < *pos + n; i++) {
            guchar c = d[i];
            if (r->esc)
                r->esc = FALSE;
            else if (r->in_quote && c == '\\')
                r->esc = TRUE;
            else if (c == '"')
                r->in_quote = !r->in_quote;
        }
    }
    if (too_long) {
        g_byte_array_append(r->buf, d + *pos, n);
        *pos += n;
        set_error(r, IMAP_ERROR_BAD, NULL,
                  line_room <= cmd_room ? "Command line too long" : "Command too long");
        skip_line(r);
        return IMAP_READ_ERROR;
    }
    g_byte_array_append(r->buf, d + *pos, n);
    *pos = end;
    if (!lf)
        return IMAP_READ_MORE;
    (*pos)++;
    GByteArray *b = r->buf;
    if (b->len > r->line_start && b->data[b->len - 1] == '\r')
        g_byte_array_set_size(b, b->len - 1);
    if (b->len - r->line_start > r->lim.max_line || b->len > r->lim.max_command) {
        set_error(r, IMAP_ERROR_BAD, NULL,
                  b->len - r->line_start > r->lim.max_line ? "Command line too long"
                                                           : "Command too long");
        gsize ls = r->line_start;
        discard_after_line(r, b->data + ls, b->len - ls);
        reset_command(r);
        return IMAP_READ_ERROR;
    }
    return end_of_line(r);
}

/* ST_SKIP_LINE: discard to the line end; follow non-sync literals. */
static ImapReadStatus
skip_to_eol(ImapReader *r, const guchar *d, gsize len, gsize *pos)
{
    const guchar *lf = memchr(d + *pos, '\n', len - *pos);
    gsize end = lf ? (gsize)(lf - d) : len;
    tail_add(r, d + *pos, end - *pos);
    *pos = end;
    if (!lf)
        return IMAP_READ_MORE;
    (*pos)++;
    guchar t[TAIL_MAX];
    gsize tl = r->tail_len;
    memcpy(t, r->tail, tl);
    discard_after_line(r, t, tl);
    return IMAP_READ_MORE;
}

ImapReadStatus
imap_reader_feed(ImapReader *r, const void *data, gsize len, gsize *used_r)
{
    const guchar *d = data;
    gsize pos = 0;
    ImapReadStatus st = IMAP_READ_MORE;
    *used_r = 0;
    g_return_val_if_fail(r->st != ST_COMMAND && r->st != ST_LIT_WAIT, IMAP_READ_ERROR);
    imap_error_clear(&r->err);
    while (pos < len && st == IMAP_READ_MORE) {
        switch (r->st) {
        case ST_LINE:
            st = read_line(r, d, len, &pos);
            break;
        case ST_LITERAL: {
            gsize n = (gsize)MIN((guint64)(len - pos), r->remaining);
            r->remaining -= n;
            r->lit.remaining = r->remaining;
            if (r->lit.streamed) {
                /* a chunk is handed back alone: it is data[0..used) */
                if (pos > 0)
                    goto out;
                pos = n;
                st = IMAP_READ_LITERAL_DATA;
            } else {
                g_byte_array_append(r->buf, d + pos, n);
                pos += n;
            }
            if (r->remaining == 0)
                new_line(r);
            break;
        }
        case ST_SKIP_LINE:
            st = skip_to_eol(r, d, len, &pos);
            break;
        case ST_SKIP_LIT: {
            gsize n = (gsize)MIN((guint64)(len - pos), r->remaining);
            r->remaining -= n;
            pos += n;
            if (r->remaining == 0) {
                tail_reset(r);
                r->st = ST_SKIP_LINE;
            }
            break;
        }
        case ST_LIT_WAIT:
        case ST_COMMAND:
            g_assert_not_reached();
        }
    }
out:
    *used_r = pos;
    return st;
}

const ImapLiteralInfo *
imap_reader_literal(ImapReader *r)
{
    return &r->lit;
}

void
imap_reader_literal_accept(ImapReader *r)
{
    g_return_if_fail(r->st == ST_LIT_WAIT);
    if (r->lit.streamed) {
        ImapStreamedLit s = {r->buf->len, r->lit.index};
        g_array_append_val(r->streamed, s);
    }
    r->remaining = r->lit.size;
    r->st = ST_LITERAL;
    if (r->remaining == 0)
        new_line(r);
}

void
imap_reader_literal_reject(ImapReader *r)
{
    g_return_if_fail(r->st == ST_LIT_WAIT);
    reset_command(r);
    if (r->lit.sync) {
        r->st = ST_LINE;
    } else {
        r->remaining = r->lit.size;
        r->st = ST_SKIP_LIT;
    }
}

ImapRawCommand *
imap_reader_take(ImapReader *r)
{
    g_return_val_if_fail(r->st == ST_COMMAND, NULL);
    ImapRawCommand *raw = g_new0(ImapRawCommand, 1);
    raw->bytes = g_byte_array_free_to_bytes(r->buf);
    r->buf = g_byte_array_new();
    raw->n_streamed = r->streamed->len;
    raw->streamed = (ImapStreamedLit *)g_array_free(r->streamed, raw->n_streamed == 0);
    r->streamed = g_array_new(FALSE, FALSE, sizeof(ImapStreamedLit));
    reset_command(r);
    r->st = ST_LINE;
    return raw;
}

const ImapError *
imap_reader_error(ImapReader *r)
{
    return &r->err;
}

ImapRawCommand *
imap_raw_command_new(const void *data, gsize len)
{
    ImapRawCommand *raw = g_new0(ImapRawCommand, 1);
    raw->bytes = g_bytes_new(data, len);
    return raw;
}

void
imap_raw_command_free(ImapRawCommand *raw)
{
    if (!raw)
        return;
    g_bytes_unref(raw->bytes);
    g_free(raw->streamed);
    g_free(raw);
}
