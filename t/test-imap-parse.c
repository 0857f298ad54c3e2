/* SPDX-License-Identifier: MIT */
/*
 * test-imap-parse.c - unit tests for the pure IMAP layer in modules/imap:
 * the incremental reader (literals sync / LITERAL+ / LITERAL- / literal8 /
 * streamed, limits, resync after errors), the command parser (every
 * command, in the forms real clients send), modified UTF-7 and mailbox
 * name safety, sequence sets, dates and the response formatter
 * (strings, flags, status lines, ENVELOPE, BODYSTRUCTURE).
 *
 * Paths: /imap-parse/<area>/<case>. Reader tests run each input fed whole,
 * in 7-byte chunks and one byte at a time, and require the same transcript.
 */
#include "testlib.h"
#include "imap/imap-bodystruct.h"
#include "imap/imap-date.h"
#include "imap/imap-format.h"
#include "imap/imap-mailbox.h"
#include "imap/imap-mutf7.h"
#include "imap/imap-parse.h"
#include "imap/imap-seqset.h"
#include <string.h>
#include <time.h>

#define S(lit) (lit), (sizeof(lit) - 1)

/* ---- reader driver ---- */

typedef struct {
    guint64 reject_over; /* the caller rejects literals bigger than this */
    gboolean parse;      /* append the parse result of each command */
    GPtrArray *raws;     /* keeps raw commands, if set */
} Drive;

static void
escape_into(GString *t, const guchar *p, gsize n)
{
    for (gsize i = 0; i < n; i++) {
        if (p[i] == '\r')
            g_string_append(t, "\\r");
        else if (p[i] == '\n')
            g_string_append(t, "\\n");
        else if (p[i] < 0x20 || p[i] >= 0x7f)
            g_string_append_printf(t, "\\x%02x", p[i]);
        else
            g_string_append_c(t, (char)p[i]);
    }
}

/* Feed `in` in chunks of `chunk` bytes; return a transcript of events. */
static char *
drive(const ImapLimits *lim, const char *in, gsize len, gsize chunk, const Drive *d)
{
    ImapReader *r = imap_reader_new(lim);
    GString *t = g_string_new(NULL);
    GString *stream = g_string_new(NULL);
    gsize off = 0;
    guint guard = 0;
    while (off < len) {
        g_assert_cmpuint(++guard, <, 10 * len + 100); /* always makes progress */
        gsize n = MIN(chunk, len - off), used = 0;
        const guchar *p = (const guchar *)in + off;
        ImapReadStatus st = imap_reader_feed(r, p, n, &used);
        g_assert_cmpuint(used, <=, n);
        off += used;
        switch (st) {
        case IMAP_READ_MORE:
            g_assert_cmpuint(used, ==, n);
            break;
        case IMAP_READ_LITERAL: {
            const ImapLiteralInfo *li = imap_reader_literal(r);
            g_string_append_printf(t, "LIT %" G_GUINT64_FORMAT "%s%s%s #%u %s %s|", li->size,
                                   li->sync ? "" : "+", li->binary ? " bin" : "",
                                   li->streamed ? " stream" : "", li->index,
                                   li->tag ? li->tag : "-", li->command);
            if (d && li->size > d->reject_over) {
                imap_reader_literal_reject(r);
                g_string_append(t, "REJECT|");
            } else {
                gboolean sync = li->sync;
                imap_reader_literal_accept(r);
                if (sync)
                    g_string_append(t, "+ Ready|");
            }
            break;
        }
        case IMAP_READ_LITERAL_DATA: {
            g_assert_cmpuint(used, >, 0);
            g_string_append_len(stream, (const char *)p, (gssize)used);
            const ImapLiteralInfo *li = imap_reader_literal(r);
            if (li->remaining == 0) {
                g_string_append_printf(t, "STREAM #%u=", li->index);
                escape_into(t, (const guchar *)stream->str, stream->len);
                g_string_append_c(t, '|');
                g_string_truncate(stream, 0);
            }
            break;
        }
        case IMAP_READ_COMMAND: {
            ImapRawCommand *raw = imap_reader_take(r);
            gsize bl;
            const guchar *b = g_bytes_get_data(raw->bytes, &bl);
            g_string_append(t, "CMD ");
            escape_into(t, b, bl);
            for (guint i = 0; i < raw->n_streamed; i++)
                g_string_append_printf(t, " @%u#%u", raw->streamed[i].offset,
                                       raw->streamed[i].index);
            if (d && d->parse) {
                ImapError err;
                ImapCommand *cmd = imap_parse(raw, NULL, &err);
                if (cmd)
                    g_string_append_printf(t, " => %s %s", cmd->tag, imap_command_name(cmd->name));
                else {
                    g_string_append(t, " => ");
                    imap_error_format(&err, t);
                    g_string_truncate(t, t->len - 2);
                }
                imap_command_free(cmd);
                imap_error_clear(&err);
            }
            g_string_append_c(t, '|');
            if (d && d->raws)
                g_ptr_array_add(d->raws, raw);
            else
                imap_raw_command_free(raw);
            break;
        }
        case IMAP_READ_ERROR:
            g_string_append(t, "ERR ");
            imap_error_format(imap_reader_error(r), t);
            g_string_truncate(t, t->len - 2);
            g_string_append_c(t, '|');
            break;
        }
    }
    if (!imap_reader_idle(r))
        g_string_append(t, "PENDING|");
    imap_reader_free(r);
    g_string_free(stream, TRUE);
    return g_string_free(t, FALSE);
}

/* The same transcript fed whole, in 7-byte chunks and byte by byte. */
static char *
drive_all(const ImapLimits *lim, const char *in, gsize len, const Drive *d)
{
    char *whole = drive(lim, in, len, len ? len : 1, d);
    g_autofree char *seven = drive(lim, in, len, 7, d);
    g_autofree char *one = drive(lim, in, len, 1, d);
    g_assert_cmpstr(seven, ==, whole);
    g_assert_cmpstr(one, ==, whole);
    return whole;
}

static void
test_reader_lines(void)
{
    static const ImapLimits lim = IMAP_LIMITS_INIT;
    g_autofree char *t = drive_all(&lim, S("a1 NOOP\r\n\r\nA2 CAPABILITY\nA3 LOGOUT\r\n"), NULL);
    /* empty line ignored, bare LF accepted, CR removed */
    g_assert_cmpstr(t, ==, "CMD a1 NOOP|CMD A2 CAPABILITY|CMD A3 LOGOUT|");
    g_autofree char *u = drive_all(&lim, S("A4 NOOP"), NULL);
    g_assert_cmpstr(u, ==, "PENDING|"); /* no line end yet: nothing happens */
}

static void
test_reader_sync_literal(void)
{
    static const ImapLimits lim = IMAP_LIMITS_INIT;
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE};
    g_autofree char *t =
        drive_all(&lim, S("A1 LOGIN {4}\r\nuser {6}\r\np\"a\r\ns\r\nA2 NOOP\r\n"), &d);
    g_assert_cmpstr(t, ==,
                    "LIT 4 #0 A1 LOGIN|+ Ready|LIT 6 #1 A1 LOGIN|+ Ready|"
                    "CMD A1 LOGIN {4}\\r\\nuser {6}\\r\\np\"a\\r\\ns => A1 LOGIN|"
                    "CMD A2 NOOP => A2 NOOP|");
    /* the literal keeps its CRLF and quote: the parser gets them verbatim */
    ImapError err;
    g_autoptr(ImapCommand) c =
        imap_parse_string(S("A1 LOGIN {4}\r\nuser {6}\r\np\"a\r\ns"), NULL, &err);
    g_assert_nonnull(c);
    g_assert_cmpstr(c->u.login.user, ==, "user");
    g_assert_cmpstr(c->u.login.password, ==, "p\"a\r\ns");
}

static void
test_reader_literal_plus_minus(void)
{
    ImapLimits lim = IMAP_LIMITS_INIT;
    lim.max_nonsync = G_MAXUINT64; /* LITERAL+ */
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE};
    g_autofree char *t = drive_all(&lim, S("A1 LOGIN {4+}\r\nuser {4+}\r\npass\r\n"), &d);
    g_assert_cmpstr(t, ==,
                    "LIT 4+ #0 A1 LOGIN|LIT 4+ #1 A1 LOGIN|"
                    "CMD A1 LOGIN {4+}\\r\\nuser {4+}\\r\\npass => A1 LOGIN|");

    /* LITERAL-: up to 4096 fine; 4097 refused with BAD [TOOBIG] and the
     * octets the client sends anyway are skipped, not run as commands */
    lim.max_nonsync = 4096;
    GString *in = g_string_new("A1 APPEND INBOX {4097+}\r\n");
    for (int i = 0; i < 4097 / 9; i++)
        g_string_append(in, "X1 NOOP\r\n");
    while (in->len < 25 + 4097)
        g_string_append_c(in, 'x');
    g_string_append(in, " {3+}\r\nabc\r\nA2 NOOP\r\n");
    g_autofree char *u = drive_all(&lim, in->str, in->len, &d);
    g_assert_cmpstr(u, ==,
                    "ERR A1 BAD [TOOBIG] Non-synchronizing literal too large|"
                    "CMD A2 NOOP => A2 NOOP|");
    g_string_free(in, TRUE);
    g_autofree char *v = drive_all(&lim, S("A1 LOGIN u {4096+}\r\n"), &d);
    g_assert_cmpstr(v, ==, "LIT 4096+ #0 A1 LOGIN|PENDING|");

    /* no LITERAL+ at all: {n+} refused, data skipped */
    lim.max_nonsync = 0;
    g_autofree char *w = drive_all(&lim, S("A1 LOGIN u {2+}\r\nab\r\nA2 NOOP\r\n"), &d);
    g_assert_cmpstr(w, ==,
                    "ERR A1 BAD Non-synchronizing literals are not allowed|"
                    "CMD A2 NOOP => A2 NOOP|");
}

static void
test_reader_oversize(void)
{
    ImapLimits lim = IMAP_LIMITS_INIT;
    lim.max_literal = 1000;
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE};
    /* refused at the announcement, before any octet is read or allocated:
     * sizes beyond memory and beyond 64 bits included */
    g_autofree char *t = drive_all(&lim,
                                   S("A1 APPEND INBOX {1001}\r\n"
                                     "A2 APPEND INBOX {18446744073709551615}\r\n"
                                     "A3 APPEND INBOX {99999999999999999999999}\r\n"
                                     "A4 NOOP\r\n"),
                                   &d);
    g_assert_cmpstr(t, ==,
                    "ERR A1 NO [TOOBIG] Literal too large|ERR A2 NO [TOOBIG] Literal too large|"
                    "ERR A3 NO [TOOBIG] Literal too large|CMD A4 NOOP => A4 NOOP|");
    /* a buffered literal may not push the command past max_command */
    lim.max_literal = G_MAXUINT64;
    lim.max_command = 100;
    g_autofree char *u = drive_all(&lim, S("A1 LOGIN {90}\r\nA2 LOGIN {80}\r\n"), &d);
    g_assert_cmpstr(u, ==,
                    "ERR A1 NO [TOOBIG] Literal too large|LIT 80 #0 A2 LOGIN|+ Ready|"
                    "PENDING|");
    /* the caller's own check (quota, APPENDLIMIT): reject, nothing read */
    Drive q = {.reject_over = 10, .parse = TRUE};
    g_autofree char *v =
        drive_all(&lim, S("A1 APPEND INBOX {11}\r\nA2 APPEND INBOX {1}\r\nx\r\n"), &q);
    g_assert_cmpstr(v, ==,
                    "LIT 11 #0 A1 APPEND|REJECT|LIT 1 #0 A2 APPEND|+ Ready|"
                    "CMD A2 APPEND INBOX {1}\\r\\nx => A2 APPEND|");
    /* a rejected non-sync literal is skipped, and the rest of its command */
    lim.max_nonsync = G_MAXUINT64;
    g_autofree char *w =
        drive_all(&lim, S("A1 APPEND INBOX {11+}\r\nhello world {2+}\r\nab\r\nA2 NOOP\r\n"), &q);
    g_assert_cmpstr(w, ==, "LIT 11+ #0 A1 APPEND|REJECT|CMD A2 NOOP => A2 NOOP|");
}

static void
test_reader_stream(void)
{
    ImapLimits lim = IMAP_LIMITS_INIT;
    lim.stream_min = 10;
    lim.max_command = 64; /* streamed data does not count */
    GPtrArray *raws = g_ptr_array_new_with_free_func((GDestroyNotify)imap_raw_command_free);
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE, .raws = raws};
    const char in[] = "A1 APPEND {5}\r\nSaved (\\Seen) {100}\r\n"
                      "0123456789012345678901234567890123456789012345678901234567890123456789"
                      "012345678901234567890123456789\r\nA2 NOOP\r\n";
    g_autofree char *t = drive_all(&lim, in, sizeof in - 1, &d);
    g_assert_cmpstr(t, ==,
                    "LIT 5 #0 A1 APPEND|+ Ready|LIT 100 stream #1 A1 APPEND|+ Ready|"
                    "STREAM #1=0123456789012345678901234567890123456789012345678901234567890123"
                    "456789012345678901234567890123456789|"
                    "CMD A1 APPEND {5}\\r\\nSaved (\\Seen) {100}\\r\\n @36#1 => A1 APPEND|"
                    "CMD A2 NOOP => A2 NOOP|");
    /* three runs, two commands each; take the first APPEND */
    g_assert_cmpuint(raws->len, ==, 6);
    ImapError err;
    g_autoptr(ImapCommand) c = imap_parse(raws->pdata[0], NULL, &err);
    g_assert_nonnull(c);
    g_assert_cmpstr(c->u.append.mailbox, ==, "Saved");
    g_assert_cmpuint(c->u.append.n_msgs, ==, 1);
    ImapAppendMsg *m = &c->u.append.msgs[0];
    g_assert_true(m->streamed);
    g_assert_null(m->data);
    g_assert_cmpuint(m->size, ==, 100);
    g_assert_cmpuint(m->literal_index, ==, 1);
    g_assert_cmpstr(m->flags[0], ==, "\\Seen");
    g_ptr_array_free(raws, TRUE);
}

static void
test_reader_too_long(void)
{
    ImapLimits lim = IMAP_LIMITS_INIT;
    lim.max_line = 20;
    lim.max_nonsync = G_MAXUINT64;
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE};
    g_autofree char *t = drive_all(&lim,
                                   S("A1 SEARCH SUBJECT 12345678901234567890\r\n"
                                     "A2 LOGIN 1234567890123456789 {3+}\r\nabc\r\n"
                                     "+bad 12345678901234567890123\r\n"
                                     "A3 LOGIN 1234 123456\r\n"),
                                   &d);
    g_assert_cmpstr(t, ==,
                    "ERR A1 BAD Command line too long|ERR A2 BAD Command line too long|"
                    "ERR * BAD Command line too long|CMD A3 LOGIN 1234 123456 => A3 LOGIN|");
    /* total command size, lines after literals included */
    lim.max_line = 65536;
    lim.max_command = 30;
    g_autofree char *u =
        drive_all(&lim, S("A1 LOGIN {3+}\r\nabc {3+}\r\ndef {3+}\r\nghi\r\nA2 NOOP\r\n"), &d);
    g_assert_cmpstr(u, ==,
                    "LIT 3+ #0 A1 LOGIN|LIT 3+ #1 A1 LOGIN|ERR A1 BAD Command too long|"
                    "CMD A2 NOOP => A2 NOOP|");
}

static void
test_reader_quotes(void)
{
    static const ImapLimits lim = IMAP_LIMITS_INIT;
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE};
    /* "{5}" at the end inside a quoted string is no literal */
    g_autofree char *t = drive_all(&lim, S("A1 LOGIN u \"{5}\"\r\nA2 LOGIN u \"x\\\" {3}\r\n"), &d);
    g_assert_cmpstr(t, ==,
                    "CMD A1 LOGIN u \"{5}\" => A1 LOGIN|"
                    "CMD A2 LOGIN u \"x\\\" {3} => A2 BAD Unterminated quoted string|");
    /* an escaped backslash closes nothing: the quote ends, the literal counts */
    g_autofree char *u = drive_all(&lim, S("A1 LOGIN \"x\\\\\" {1}\r\ny\r\n"), &d);
    g_assert_cmpstr(u, ==,
                    "LIT 1 #0 A1 LOGIN|+ Ready|CMD A1 LOGIN \"x\\\\\" {1}\\r\\ny => A1 LOGIN|");
}

static void
test_reader_line_mode(void)
{
    static const ImapLimits lim = IMAP_LIMITS_INIT;
    ImapReader *r = imap_reader_new(&lim);
    gsize used;
    const char in[] = "dXNlcg{4}\r\n\r\nDONE\r\nA1 NOOP {0}\r\n\r\n";
    const char *p = in;
    imap_reader_set_line_mode(r);
    g_assert_cmpint(imap_reader_feed(r, p, strlen(p), &used), ==, IMAP_READ_COMMAND);
    p += used;
    ImapRawCommand *raw = imap_reader_take(r);
    gsize n;
    const char *b = g_bytes_get_data(raw->bytes, &n);
    g_assert_cmpmem(b, n, "dXNlcg{4}", 9); /* raw: no literal */
    imap_raw_command_free(raw);
    imap_reader_set_line_mode(r); /* an empty SASL response is a line too */
    g_assert_cmpint(imap_reader_feed(r, p, strlen(p), &used), ==, IMAP_READ_COMMAND);
    p += used;
    raw = imap_reader_take(r);
    g_assert_cmpuint(g_bytes_get_size(raw->bytes), ==, 0);
    imap_raw_command_free(raw);
    imap_reader_set_line_mode(r);
    g_assert_cmpint(imap_reader_feed(r, p, strlen(p), &used), ==, IMAP_READ_COMMAND);
    p += used;
    raw = imap_reader_take(r);
    g_assert_true(imap_is_done(g_bytes_get_data(raw->bytes, NULL), g_bytes_get_size(raw->bytes)));
    g_assert_false(imap_is_done((const guchar *)"DONE ", 5));
    imap_raw_command_free(raw);
    /* line mode is one line only: {0} is a literal again */
    g_assert_cmpint(imap_reader_feed(r, p, strlen(p), &used), ==, IMAP_READ_LITERAL);
    g_assert_cmpuint(imap_reader_literal(r)->size, ==, 0);
    imap_reader_literal_accept(r);
    p += used;
    g_assert_cmpint(imap_reader_feed(r, p, strlen(p), &used), ==, IMAP_READ_COMMAND);
    raw = imap_reader_take(r);
    g_assert_cmpmem(g_bytes_get_data(raw->bytes, NULL), g_bytes_get_size(raw->bytes),
                    "A1 NOOP {0}\r\n", 13);
    imap_raw_command_free(raw);
    g_assert_true(imap_reader_idle(r));
    imap_reader_free(r);
}

static void
test_reader_literal8(void)
{
    ImapLimits lim = IMAP_LIMITS_INIT;
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE};
    GPtrArray *raws = g_ptr_array_new_with_free_func((GDestroyNotify)imap_raw_command_free);
    d.raws = raws;
    g_autofree char *t = drive(&lim, S("A1 APPEND INBOX ~{3}\r\na\0b\r\n"), 100, &d);
    g_assert_cmpstr(t, ==,
                    "LIT 3 bin #0 A1 APPEND|+ Ready|"
                    "CMD A1 APPEND INBOX ~{3}\\r\\na\\x00b => A1 APPEND|");
    ImapError err;
    g_autoptr(ImapCommand) c = imap_parse(raws->pdata[0], NULL, &err);
    g_assert_true(c->u.append.msgs[0].binary);
    g_assert_cmpmem(c->u.append.msgs[0].data, c->u.append.msgs[0].size, "a\0b", 3);
    g_ptr_array_free(raws, TRUE);
    lim.literal8 = FALSE;
    g_autofree char *u = drive_all(&lim, S("A1 APPEND INBOX ~{3}\r\nA2 NOOP\r\n"), NULL);
    g_assert_cmpstr(u, ==, "ERR A1 BAD Binary literals are not allowed|CMD A2 NOOP|");
    /* literal8 is for APPEND data only; NUL never goes into a string */
    g_assert_null(imap_parse_string(S("A1 LOGIN ~{1}\r\nx y"), NULL, &err));
    g_assert_cmpstr(err.text, ==, "Binary literal not allowed here");
    imap_error_clear(&err);
    g_assert_null(imap_parse_string(S("A1 LOGIN {3}\r\na\0b y"), NULL, &err));
    g_assert_cmpstr(err.text, ==, "NUL in string");
    imap_error_clear(&err);
}

/* ---- parser ---- */

static ImapCommand *
ok(const char *wire)
{
    ImapError err;
    ImapCommand *c = imap_parse_string(wire, strlen(wire), NULL, &err);
    if (!c)
        g_error("parse failed: %s: %s", wire, err.text);
    g_assert_cmpint(err.kind, ==, IMAP_ERROR_NONE);
    return c;
}

/* Parse must fail; returns the formatted error line without CRLF. */
static char *
bad(const char *wire)
{
    ImapError err;
    const ImapParseOpts opts = {.max_depth = 8, .searchres = FALSE};
    ImapCommand *c = imap_parse_string(wire, strlen(wire), &opts, &err);
    if (c)
        g_error("parse should fail: %s", wire);
    g_assert_cmpint(err.kind, !=, IMAP_ERROR_NONE);
    GString *s = g_string_new(NULL);
    imap_error_format(&err, s);
    g_assert_true(g_str_has_suffix(s->str, "\r\n"));
    g_string_truncate(s, s->len - 2);
    imap_error_clear(&err);
    return g_string_free(s, FALSE);
}

#define BAD_IS(wire, expect)                                                                       \
    do {                                                                                           \
        g_autofree char *e_ = bad(wire);                                                           \
        g_assert_cmpstr(e_, ==, expect);                                                           \
    } while (0)

static void
test_parse_clients(void)
{
    /* what Thunderbird, mutt, isync, Apple Mail and Outlook send */
    static const struct {
        const char *wire;
        ImapCmdName name;
        gboolean uid;
    } cases[] = {
        {"1 capability", IMAP_CMD_CAPABILITY, FALSE},
        {"2 authenticate PLAIN", IMAP_CMD_AUTHENTICATE, FALSE},
        {"3 ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\")", IMAP_CMD_ID, FALSE},
        {"4 enable UTF8=ACCEPT CONDSTORE", IMAP_CMD_ENABLE, FALSE},
        {"5 select \"INBOX\" (CONDSTORE)", IMAP_CMD_SELECT, FALSE},
        {"6 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)", IMAP_CMD_FETCH, TRUE},
        {"7 UID fetch 34 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
         "Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
         "Content-Type Reply-To)])",
         IMAP_CMD_FETCH, TRUE},
        {"8 UID store 34 +FLAGS (\\Seen)", IMAP_CMD_STORE, TRUE},
        {"9 list (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)", IMAP_CMD_LIST, FALSE},
        {"10 UID MOVE 34 \"Trash\"", IMAP_CMD_MOVE, TRUE},
        {"11 IDLE", IMAP_CMD_IDLE, FALSE},
        {"12 UID fetch 34 (UID RFC822.SIZE BODY.PEEK[]<0.10240>)", IMAP_CMD_FETCH, TRUE},
        {"13 lsub \"\" \"*\"", IMAP_CMD_LSUB, FALSE},
        {"14 getquotaroot \"INBOX\"", IMAP_CMD_UNKNOWN, FALSE},
        {"a0001 LOGIN \"user@example.org\" \"p a\\\\ss\"", IMAP_CMD_LOGIN, FALSE},
        {"a0002 LIST \"\" \"\"", IMAP_CMD_LIST, FALSE},
        {"a0004 FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE "
         "FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION "
         "IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL X-ORIGINAL-TO)])",
         IMAP_CMD_FETCH, FALSE},
        {"a0005 UID STORE 1 +FLAGS.SILENT (\\Deleted)", IMAP_CMD_STORE, TRUE},
        {"a0007 STATUS \"INBOX\" (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)", IMAP_CMD_STATUS,
         FALSE},
        {"a0011 UID COPY 1:3 \"Archive\"", IMAP_CMD_COPY, TRUE},
        {"a0012 CLOSE", IMAP_CMD_CLOSE, FALSE},
        {"a0013 LOGOUT", IMAP_CMD_LOGOUT, FALSE},
        {"5 UID FETCH 1:1000000000 (UID FLAGS)", IMAP_CMD_FETCH, TRUE},
        {"9 UID EXPUNGE 3", IMAP_CMD_EXPUNGE, TRUE},
        {"10 UID SEARCH HEADER X-TUID abcd1234", IMAP_CMD_SEARCH, TRUE},
        {"4.2 SELECT INBOX (CONDSTORE)", IMAP_CMD_SELECT, FALSE},
        {"6.2 UID SEARCH 1:* NOT DELETED", IMAP_CMD_SEARCH, TRUE},
        {"7.2 UID FETCH 1:10 (INTERNALDATE UID RFC822.SIZE FLAGS MODSEQ "
         "BODY.PEEK[HEADER.FIELDS (date subject from to cc message-id in-reply-to references "
         "x-priority x-uniform-type-identifier x-universally-unique-identifier)])",
         IMAP_CMD_FETCH, TRUE},
        {"8.2 UID FETCH 1 (BODYSTRUCTURE BODY.PEEK[1]<0.10240>)", IMAP_CMD_FETCH, TRUE},
        {"A002 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=", IMAP_CMD_AUTHENTICATE, FALSE},
        {"A008 NOOP", IMAP_CMD_NOOP, FALSE},
        {"A009 EXPUNGE", IMAP_CMD_EXPUNGE, FALSE},
        {"A010 SEARCH UNSEEN", IMAP_CMD_SEARCH, FALSE},
        {"A011 UID SEARCH SINCE 1-Jan-2024", IMAP_CMD_SEARCH, TRUE},
        {"A012 NAMESPACE", IMAP_CMD_NAMESPACE, FALSE},
        {"A013 CHECK", IMAP_CMD_CHECK, FALSE},
        {"A014 UNSELECT", IMAP_CMD_UNSELECT, FALSE},
        {"A015 STARTTLS", IMAP_CMD_STARTTLS, FALSE},
        {"A016 EXAMINE Drafts", IMAP_CMD_EXAMINE, FALSE},
        {"A017 CREATE \"Work/Projects\"", IMAP_CMD_CREATE, FALSE},
        {"A018 DELETE Junk", IMAP_CMD_DELETE, FALSE},
        {"A019 RENAME Old New", IMAP_CMD_RENAME, FALSE},
        {"A020 SUBSCRIBE Work", IMAP_CMD_SUBSCRIBE, FALSE},
        {"A021 UNSUBSCRIBE Work", IMAP_CMD_UNSUBSCRIBE, FALSE},
        {"A022 MOVE 1:2 Archive", IMAP_CMD_MOVE, FALSE},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        ImapError err;
        ImapCommand *c = imap_parse_string(cases[i].wire, strlen(cases[i].wire), NULL, &err);
        if (cases[i].name == IMAP_CMD_UNKNOWN) {
            g_assert_null(c);
            g_assert_cmpstr(err.tag, ==, "14");
            g_assert_cmpstr(err.text, ==, "Unknown command");
            imap_error_clear(&err);
            continue;
        }
        if (!c)
            g_error("%s: %s", cases[i].wire, err.text);
        g_assert_cmpint(c->name, ==, cases[i].name);
        g_assert_cmpint(c->uid, ==, cases[i].uid);
        g_assert_nonnull(c->tag);
        g_assert_true(g_str_has_prefix(cases[i].wire, c->tag));
        g_assert_cmpuint(cases[i].wire[strlen(c->tag)], ==, ' ');
        imap_command_free(c);
    }
}

static void
test_parse_errors(void)
{
    BAD_IS("", "* BAD Missing or invalid tag");
    BAD_IS("+ NOOP", "* BAD Missing or invalid tag");
    BAD_IS("A*1 NOOP", "* BAD Invalid tag");
    BAD_IS("A1", "* BAD Invalid tag");
    BAD_IS("A1 ", "A1 BAD Missing argument");
    BAD_IS("A1  NOOP", "A1 BAD Missing argument");
    BAD_IS("A1 NOOP extra", "A1 BAD Unexpected extra arguments");
    BAD_IS("A1 NOOP ", "A1 BAD Unexpected extra arguments");
    BAD_IS("A1 FROB", "A1 BAD Unknown command");
    BAD_IS("A1 UID NOOP", "A1 BAD Command has no UID form");
    BAD_IS("A1 UID", "A1 BAD Missing argument");
    BAD_IS("A1 LOGIN user", "A1 BAD Missing argument");
    BAD_IS("A1 LOGIN \"user pass", "A1 BAD Unterminated quoted string");
    BAD_IS("A1 LOGIN \"us\\er\" x", "A1 BAD Invalid escape in quoted string");
    BAD_IS("A1 LOGIN {5}\r\nab", "A1 BAD Literal data missing");
    BAD_IS("A1 LOGIN {2} x", "A1 BAD Literal must end the line");
    BAD_IS("A1 LOGIN \"a\rb\" x", "A1 BAD Invalid character in quoted string");
    BAD_IS("A1 FETCH 0 FLAGS", "A1 BAD Invalid sequence set");
    BAD_IS("A1 FETCH 1,,2 FLAGS", "A1 BAD Invalid sequence set");
    BAD_IS("A1 FETCH 4294967296 FLAGS", "A1 BAD Invalid sequence set");
    BAD_IS("A1 FETCH 1 (FLAGS", "A1 BAD Missing ')'");
    BAD_IS("A1 FETCH 1 FROB", "A1 BAD Unknown FETCH item");
    BAD_IS("A1 FETCH $ FLAGS", "A1 BAD Invalid sequence set"); /* SEARCHRES off */
    BAD_IS("A1 SEARCH FROB", "A1 BAD Unknown search key");
    BAD_IS("A1 SEARCH RETURN (FROB) ALL", "A1 BAD Unknown SEARCH return option");
    BAD_IS("A1 SELECT INBOX (QRESYNC (0 1))", "A1 BAD Number must not be zero");
    BAD_IS("A1 SELECT INBOX (QRESYNC (1 0))", "A1 BAD Invalid mod-sequence");
    BAD_IS("A1 SELECT INBOX (QRESYNC (1 5 1:*))", "A1 BAD Invalid known-uids");
    BAD_IS("A1 SELECT INBOX (CONDSTORE CONDSTORE)", "A1 BAD Unknown or repeated SELECT parameter");
    BAD_IS("A1 STATUS INBOX ()", "A1 BAD Missing argument");
    BAD_IS("A1 STATUS INBOX (FROB)", "A1 BAD Unknown STATUS item");
    BAD_IS("A1 STORE 1 FLAGS (\\Recent)", "A1 BAD \\Recent cannot be set");
    BAD_IS("A1 STORE 1 BOGUS (\\Seen)", "A1 BAD Expected FLAGS");
    BAD_IS("A1 APPEND INBOX \"text\"", "A1 BAD Invalid date-time");
    BAD_IS("A1 APPEND INBOX (\\Seen) abc", "A1 BAD Message must be a literal");
    BAD_IS("A1 APPEND INBOX", "A1 BAD Missing message");
    BAD_IS("A1 APPEND INBOX \"31-Feb-2024 10:00:00 +0000\" {1}\r\nx", "A1 BAD Invalid date-time");
    BAD_IS("A1 LIST (RECURSIVEMATCH) \"\" *",
           "A1 BAD RECURSIVEMATCH needs another selection option");
    BAD_IS("A1 LIST (FROB) \"\" *", "A1 BAD Unknown LIST selection option");
    BAD_IS("A1 LIST \"\" * RETURN (FROB)", "A1 BAD Unknown LIST return option");
    BAD_IS("A1 LSUB \"\" (a b)", "A1 BAD Missing mailbox pattern");
    BAD_IS("A1 CREATE x (USE (Drafts))", "A1 BAD [USEATTR] Invalid special-use attribute");
    BAD_IS("A1 SEARCH CHARSET ISO-8859-1 TEXT x",
           "A1 NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset or invalid text");
    BAD_IS("A1 SEARCH TEXT {2}\r\n\xc3\x28",
           "A1 NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset or invalid text");
    BAD_IS("A1 SEARCH LARGER 9223372036854775808", "A1 BAD Number too large");
    BAD_IS("A1 SEARCH LARGER 12x", "A1 BAD Expected a number");
    BAD_IS("A1 SEARCH BEFORE 30-Feb-2024", "A1 BAD Invalid date");
    BAD_IS("A1 SEARCH HEADER \"Bad:Name\" x", "A1 BAD Invalid header field name");
    BAD_IS("A1 ID (\"a\")", "A1 BAD Missing argument");
    BAD_IS("A1 ID foo", "A1 BAD Expected a string");
    BAD_IS("A1 ID Nothing", "A1 BAD Expected a string or NIL");
    BAD_IS("A1 AUTHENTICATE PLAIN !!", "A1 BAD Invalid initial response");
}

static void
test_parse_resync(void)
{
    /* a malformed command gives BAD; the reader goes on with the next one */
    static const ImapLimits lim = IMAP_LIMITS_INIT;
    Drive d = {.reject_over = G_MAXUINT64, .parse = TRUE};
    g_autofree char *t = drive_all(&lim,
                                   S("A1 FETCH 1 (FLAGS\r\n* NOOP\r\nA2 LOGIN {3}\r\na b\r\n"
                                     "A3 FETCH 1 (\"{2}\r\nA4 NOOP\r\n"),
                                   &d);
    g_assert_cmpstr(
        t, ==,
        "CMD A1 FETCH 1 (FLAGS => A1 BAD Missing ')'|CMD * NOOP => * BAD Missing or invalid tag|"
        "LIT 3 #0 A2 LOGIN|+ Ready|CMD A2 LOGIN {3}\\r\\na b => A2 BAD Missing "
        "argument|CMD A3 FETCH 1 (\"{2} => A3 BAD Unknown FETCH item|"
        "CMD A4 NOOP => A4 NOOP|");
}

static void
test_parse_auth_login(void)
{
    g_autoptr(ImapCommand) a = ok("A1 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=");
    g_assert_cmpstr(a->u.auth.mech, ==, "PLAIN");
    g_assert_cmpstr(a->u.auth.initial, ==, "dXNlcgB1c2VyAHBhc3M=");
    g_autoptr(ImapCommand) b = ok("A1 authenticate plain =");
    g_assert_cmpstr(b->u.auth.initial, ==, ""); /* "=": empty initial response */
    g_autoptr(ImapCommand) c = ok("A1 AUTHENTICATE PLAIN");
    g_assert_null(c->u.auth.initial);
    g_autoptr(ImapCommand) d = ok("A1 LOGIN bob \"s3 \\\"cr\\\\et\"");
    g_assert_cmpstr(d->u.login.user, ==, "bob");
    g_assert_cmpstr(d->u.login.password, ==, "s3 \"cr\\et");
    g_autoptr(ImapCommand) e = ok("A1 LOGIN {3+}\r\nbob {0}\r\n");
    g_assert_cmpstr(e->u.login.user, ==, "bob");
    g_assert_cmpstr(e->u.login.password, ==, "");
    g_autoptr(ImapCommand) f = ok("A1 LOGIN a]b \"\xc3\xa9t\xc3\xa9\"");
    g_assert_cmpstr(f->u.login.user, ==, "a]b"); /* ']' is an ASTRING-CHAR */
    g_assert_cmpstr(f->u.login.password, ==, "\xc3\xa9t\xc3\xa9");
    g_autoptr(ImapCommand) g = ok("A1 ENABLE QRESYNC UTF8=ACCEPT");
    g_assert_cmpstr(g->u.enable.caps[0], ==, "QRESYNC");
    g_assert_cmpstr(g->u.enable.caps[1], ==, "UTF8=ACCEPT");
    g_assert_null(g->u.enable.caps[2]);
    g_autoptr(ImapCommand) h = ok("A1 ID (\"name\" \"Mac OS X Mail\" \"os\" NIL)");
    g_assert_cmpuint(h->u.id.n_pairs, ==, 2);
    g_assert_cmpstr(h->u.id.pairs[1], ==, "Mac OS X Mail");
    g_assert_cmpstr(h->u.id.pairs[2], ==, "os");
    g_assert_null(h->u.id.pairs[3]);
    g_autoptr(ImapCommand) i = ok("A1 ID NIL");
    g_assert_cmpuint(i->u.id.n_pairs, ==, 0);
    g_assert_cmpuint(imap_command_states(IMAP_CMD_LOGIN), ==, IMAP_STATE_NOTAUTH);
    g_assert_cmpuint(imap_command_states(IMAP_CMD_FETCH), ==, IMAP_STATE_SELECTED);
    g_assert_cmpstr(imap_command_name(IMAP_CMD_UNSUBSCRIBE), ==, "UNSUBSCRIBE");
}

static void
test_parse_select(void)
{
    g_autoptr(ImapCommand) a = ok("A1 SELECT \"INBOX\"");
    g_assert_cmpstr(a->u.select.mailbox, ==, "INBOX");
    g_assert_false(a->u.select.condstore);
    g_assert_false(a->u.select.qresync);
    g_autoptr(ImapCommand) b =
        ok("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))");
    g_assert_true(b->u.select.qresync);
    g_assert_cmpuint(b->u.select.uidvalidity, ==, 67890007);
    g_assert_cmpuint(b->u.select.modseq, ==, G_GUINT64_CONSTANT(20050715194045000));
    g_assert_cmpuint(b->u.select.known_uids->n, ==, 3);
    g_assert_null(b->u.select.match_seqs);
    g_autoptr(ImapCommand) c = ok("B02 EXAMINE Sent (CONDSTORE QRESYNC (67890007 90060115194045000 "
                                  "1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,"
                                  "29973,29976,29979:29997)))");
    g_assert_true(c->u.select.condstore);
    g_assert_cmpuint(c->u.select.match_seqs->n, ==, 4);
    g_assert_cmpuint(c->u.select.match_uids->n, ==, 7);
    g_assert_cmpuint(c->u.select.match_uids->ranges[6].hi, ==, 29997);
    g_autoptr(ImapCommand) d = ok("A1 SELECT x (QRESYNC (1 2 (1 2)))");
    g_assert_null(d->u.select.known_uids);
    g_assert_nonnull(d->u.select.match_seqs);
    g_autoptr(ImapCommand) e = ok("A1 CREATE Archive/2026 (USE (\\Archive))");
    g_assert_cmpstr(e->u.create.mailbox, ==, "Archive/2026");
    g_assert_cmpstr(e->u.create.use[0], ==, "\\Archive");
    g_autoptr(ImapCommand) f = ok("A1 RENAME \"Old Name\" {8}\r\nNew/Name");
    g_assert_cmpstr(f->u.rename.from, ==, "Old Name");
    g_assert_cmpstr(f->u.rename.to, ==, "New/Name");
    g_autoptr(ImapCommand) g = ok("A1 STATUS Entw&APw-rfe (UIDNEXT MESSAGES HIGHESTMODSEQ SIZE)");
    g_assert_cmpstr(g->u.status.mailbox, ==, "Entw&APw-rfe");
    g_assert_cmpuint(g->u.status.items, ==,
                     IMAP_STATUS_UIDNEXT | IMAP_STATUS_MESSAGES | IMAP_STATUS_HIGHESTMODSEQ |
                         IMAP_STATUS_SIZE);
}

static void
test_parse_list(void)
{
    g_autoptr(ImapCommand) a = ok("A1 LIST \"\" %");
    g_assert_false(a->u.list.extended);
    g_assert_cmpstr(a->u.list.reference, ==, "");
    g_assert_cmpstr(a->u.list.patterns[0], ==, "%");
    g_assert_null(a->u.list.patterns[1]);
    g_autoptr(ImapCommand) b = ok("A1 LIST (SUBSCRIBED RECURSIVEMATCH) Work/ (* INBOX/%) "
                                  "RETURN (CHILDREN STATUS (MESSAGES UNSEEN) SPECIAL-USE)");
    g_assert_true(b->u.list.extended);
    g_assert_cmpuint(b->u.list.select, ==, IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_RECURSIVEMATCH);
    g_assert_cmpstr(b->u.list.reference, ==, "Work/");
    g_assert_cmpstr(b->u.list.patterns[1], ==, "INBOX/%");
    g_assert_cmpuint(b->u.list.ret, ==,
                     IMAP_LIST_RET_CHILDREN | IMAP_LIST_RET_STATUS | IMAP_LIST_RET_SPECIAL_USE);
    g_assert_cmpuint(b->u.list.status, ==, IMAP_STATUS_MESSAGES | IMAP_STATUS_UNSEEN);
    g_autoptr(ImapCommand) c = ok("A1 LIST () \"\" \"*\" RETURN ()");
    g_assert_true(c->u.list.extended);
    g_assert_cmpuint(c->u.list.select | c->u.list.ret, ==, 0);
    g_autoptr(ImapCommand) d = ok("A1 LSUB \"\" Lists/]x*");
    g_assert_cmpstr(d->u.list.patterns[0], ==, "Lists/]x*");
}

static void
test_parse_append(void)
{
    g_autoptr(ImapCommand) a =
        ok("A1 APPEND \"Sent\" (\\Seen $MDNSent) \"26-Nov-2026 08:11:05 +0100\" {5}\r\nhello");
    ImapAppendMsg *m = &a->u.append.msgs[0];
    g_assert_cmpstr(a->u.append.mailbox, ==, "Sent");
    g_assert_cmpstr(m->flags[0], ==, "\\Seen");
    g_assert_cmpstr(m->flags[1], ==, "$MDNSent");
    g_assert_null(m->flags[2]);
    g_assert_true(m->has_date);
    g_assert_cmpint(m->date, ==, 1795680665 - 3600);
    g_assert_cmpint(m->tz_minutes, ==, 60);
    g_assert_cmpmem(m->data, m->size, "hello", 5);
    g_assert_false(m->binary);
    g_autoptr(ImapCommand) b = ok("A1 APPEND INBOX {0+}\r\n");
    g_assert_null(b->u.append.msgs[0].flags);
    g_assert_false(b->u.append.msgs[0].has_date);
    g_assert_cmpuint(b->u.append.msgs[0].size, ==, 0);
    g_autoptr(ImapCommand) c =
        ok("A1 APPEND INBOX (\\seen) {1}\r\na \" 1-Feb-1994 21:52:25 -0800\" {2}\r\nbc");
    g_assert_cmpuint(c->u.append.n_msgs, ==, 2);                 /* MULTIAPPEND */
    g_assert_cmpstr(c->u.append.msgs[0].flags[0], ==, "\\Seen"); /* canonical case */
    g_assert_cmpint(c->u.append.msgs[1].date, ==, 760168345);
    g_assert_cmpint(c->u.append.msgs[1].tz_minutes, ==, -480);
    g_assert_cmpmem(c->u.append.msgs[1].data, c->u.append.msgs[1].size, "bc", 2);
    g_assert_cmpuint(c->u.append.msgs[1].literal_index, ==, 1);
}

static int
key_count(const ImapSearchKey *k)
{
    int n = 0;
    for (; k; k = k->next)
        n++;
    return n;
}

static void
test_parse_search(void)
{
    g_autoptr(ImapCommand) a = ok("A1 UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 "
                                  "OR (FROM \"alice\" SINCE \"1-Feb-2026\") NOT SUBJECT {6}\r\n"
                                  "\xc3\xa9t\xc3\xa9! 1:5,9 UID 3:* LARGER 1000 SMALLER 2000000 "
                                  "HEADER List-Id <x.y> KEYWORD $Junk UNKEYWORD NonJunk "
                                  "MODSEQ \"/flags/\\\\draft\" all 620162338 YOUNGER 3600");
    ImapSearchArgs *s = &a->u.search;
    g_assert_true(s->esearch);
    g_assert_cmpuint(s->ret, ==, IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_COUNT);
    g_assert_cmpstr(s->charset, ==, "UTF-8");
    g_assert_cmpint(s->key->type, ==, IMAP_SK_AND);
    g_assert_cmpint(key_count(s->key->child), ==, 10);
    const ImapSearchKey *k = s->key->child;
    g_assert_cmpint(k->type, ==, IMAP_SK_OR);
    g_assert_cmpint(k->child->type, ==, IMAP_SK_AND);
    g_assert_cmpint(k->child->child->type, ==, IMAP_SK_FROM);
    g_assert_cmpstr(k->child->child->str, ==, "alice");
    g_assert_cmpint(k->child->child->next->type, ==, IMAP_SK_SINCE);
    g_assert_cmpint(k->child->child->next->date, ==, imap_days_from_civil(2026, 2, 1));
    g_assert_cmpint(k->child->next->type, ==, IMAP_SK_NOT);
    g_assert_cmpint(k->child->next->child->type, ==, IMAP_SK_SUBJECT);
    g_assert_cmpstr(k->child->next->child->str, ==, "\xc3\xa9t\xc3\xa9!");
    g_assert_null(k->child->next->next); /* OR has exactly two */
    k = k->next;
    g_assert_cmpint(k->type, ==, IMAP_SK_SEQSET);
    g_assert_cmpuint(k->set->n, ==, 2);
    k = k->next;
    g_assert_cmpint(k->type, ==, IMAP_SK_UID);
    g_assert_true(imap_seqset_has_star(k->set));
    k = k->next;
    g_assert_cmpint(k->type, ==, IMAP_SK_LARGER);
    g_assert_cmpuint(k->number, ==, 1000);
    k = k->next->next;
    g_assert_cmpint(k->type, ==, IMAP_SK_HEADER);
    g_assert_cmpstr(k->field, ==, "List-Id");
    g_assert_cmpstr(k->str, ==, "<x.y>");
    k = k->next;
    g_assert_cmpint(k->type, ==, IMAP_SK_KEYWORD);
    g_assert_cmpstr(k->str, ==, "$Junk");
    k = k->next->next;
    g_assert_cmpint(k->type, ==, IMAP_SK_MODSEQ);
    g_assert_cmpstr(k->field, ==, "/flags/\\draft");
    g_assert_cmpstr(k->str, ==, "ALL");
    g_assert_cmpuint(k->number, ==, 620162338);
    g_assert_cmpint(k->next->type, ==, IMAP_SK_YOUNGER);
    g_assert_cmpuint(k->next->number, ==, 3600);

    g_autoptr(ImapCommand) b = ok("A1 SEARCH RETURN () $");
    g_assert_cmpuint(b->u.search.ret, ==, IMAP_SEARCH_RET_ALL);
    g_assert_true(b->u.search.key->child->set->saved);
    g_autoptr(ImapCommand) c = ok("A1 search unseen not deleted or flagged answered");
    g_assert_false(c->u.search.esearch);
    g_assert_null(c->u.search.charset);
    g_assert_cmpint(key_count(c->u.search.key->child), ==, 3);
    g_assert_cmpint(c->u.search.key->child->next->next->child->next->type, ==, IMAP_SK_ANSWERED);
    g_autoptr(ImapCommand) d = ok("A1 SEARCH CHARSET us-ascii BODY return");
    g_assert_cmpstr(d->u.search.key->child->str, ==, "return");
    /* nesting: 8 levels pass with max_depth 8, 9 do not, whatever the form */
    BAD_IS("A1 SEARCH ((((((((((ALL))))))))))", "A1 BAD [LIMIT] Too deeply nested");
    BAD_IS("A1 SEARCH NOT NOT NOT NOT NOT NOT NOT NOT NOT ALL", "A1 BAD [LIMIT] Too deeply nested");
    BAD_IS("A1 SEARCH OR OR OR OR OR OR OR OR OR ALL ALL ALL ALL ALL ALL ALL ALL ALL ALL",
           "A1 BAD [LIMIT] Too deeply nested");
    ImapParseOpts o8 = {.max_depth = 8};
    ImapError err;
    g_autoptr(ImapCommand) e =
        imap_parse_string(S("A1 SEARCH NOT NOT NOT NOT NOT NOT NOT NOT ALL"), &o8, &err);
    g_assert_nonnull(e);
    /* the default limit holds against a 64 KiB line of parentheses */
    GString *deep = g_string_new("A1 SEARCH ");
    for (int i = 0; i < 30000; i++)
        g_string_append_c(deep, '(');
    g_assert_null(imap_parse_string(deep->str, deep->len, NULL, &err));
    g_assert_cmpstr(err.code, ==, "LIMIT");
    imap_error_clear(&err);
    g_string_free(deep, TRUE);
}

static void
test_parse_fetch(void)
{
    g_autoptr(ImapCommand) a = ok("A1 FETCH 1:* ALL");
    g_assert_cmpuint(a->u.fetch.items, ==,
                     IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_RFC822_SIZE |
                         IMAP_FETCH_ENVELOPE);
    g_autoptr(ImapCommand) b = ok("A1 FETCH 2 full");
    g_assert_true(b->u.fetch.items & IMAP_FETCH_BODY);
    g_assert_false(b->u.fetch.items & IMAP_FETCH_UID);
    g_autoptr(ImapCommand) c = ok("A1 UID FETCH 5 FAST");
    g_assert_cmpuint(c->u.fetch.items, ==,
                     IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_RFC822_SIZE |
                         IMAP_FETCH_UID);
    g_autoptr(ImapCommand) d =
        ok("A1 FETCH 1 (BODY[] BODY.PEEK[1.2.HEADER.FIELDS.NOT (Received \"X-Spam\")]<10.20> "
           "BINARY.PEEK[3]<0.100> BINARY.SIZE[1.1] BODY[2.MIME] BODY[TEXT] RFC822 RFC822.HEADER "
           "RFC822.TEXT BODY BODYSTRUCTURE ENVELOPE MODSEQ)");
    ImapFetchArgs *f = &d->u.fetch;
    g_assert_cmpuint(f->items, ==,
                     IMAP_FETCH_BODY | IMAP_FETCH_BODYSTRUCTURE | IMAP_FETCH_ENVELOPE |
                         IMAP_FETCH_MODSEQ);
    g_assert_cmpuint(f->n_sections, ==, 9);
    static const char *const names[] = {
        "BODY[]",       "BODY[1.2.HEADER.FIELDS.NOT (Received X-Spam)]<10>",
        "BINARY[3]<0>", "BINARY.SIZE[1.1]",
        "BODY[2.MIME]", "BODY[TEXT]",
        "RFC822",       "RFC822.HEADER",
        "RFC822.TEXT"};
    for (guint i = 0; i < 9; i++) {
        g_autoptr(GString) n = g_string_new(NULL);
        imap_fetch_section_name(&f->sections[i], n);
        g_assert_cmpstr(n->str, ==, names[i]);
    }
    g_assert_false(f->sections[0].peek); /* BODY[] sets \Seen */
    g_assert_true(f->sections[1].peek);
    g_assert_cmpuint(f->sections[1].n_part, ==, 2);
    g_assert_cmpint(f->sections[1].text, ==, IMAP_SECTION_HEADER_FIELDS_NOT);
    g_assert_cmpstr(f->sections[1].fields[1], ==, "X-Spam");
    g_assert_cmpuint(f->sections[1].offset, ==, 10);
    g_assert_cmpuint(f->sections[1].length, ==, 20);
    g_assert_cmpint(f->sections[2].kind, ==, IMAP_SECTION_BINARY);
    g_assert_cmpint(f->sections[3].kind, ==, IMAP_SECTION_BINARY_SIZE);
    g_assert_true(f->sections[7].peek); /* RFC822.HEADER is a peek */
    g_assert_cmpint(f->sections[7].text, ==, IMAP_SECTION_HEADER);
    g_assert_false(f->sections[8].peek); /* RFC822.TEXT sets \Seen */
    g_assert_cmpint(f->sections[8].text, ==, IMAP_SECTION_TEXT);
    g_assert_null(f->sections[5].legacy);

    g_autoptr(ImapCommand) e = ok("A03 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)");
    g_assert_true(e->u.fetch.vanished);
    g_assert_cmpuint(e->u.fetch.changedsince, ==, 12345);
    g_assert_cmpuint(e->u.fetch.items, ==, IMAP_FETCH_FLAGS | IMAP_FETCH_UID | IMAP_FETCH_MODSEQ);
    BAD_IS("A1 FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)",
           "A1 BAD VANISHED needs UID FETCH and CHANGEDSINCE");
    BAD_IS("A1 UID FETCH 1 (FLAGS) (VANISHED)", "A1 BAD VANISHED needs UID FETCH and CHANGEDSINCE");
    BAD_IS("A1 FETCH 1 BODY[MIME]", "A1 BAD Invalid section");
    BAD_IS("A1 FETCH 1 BODY[1.]", "A1 BAD Invalid section");
    BAD_IS("A1 FETCH 1 BODY[0]", "A1 BAD Invalid section part");
    BAD_IS("A1 FETCH 1 BINARY[HEADER]", "A1 BAD Invalid BINARY section");
    BAD_IS("A1 FETCH 1 BINARY.SIZE[1]<0.1>", "A1 BAD BINARY.SIZE takes no partial");
    BAD_IS("A1 FETCH 1 BODY[]<0.0>", "A1 BAD Invalid partial length");
    BAD_IS("A1 FETCH 1 BODY.PEEK", "A1 BAD Missing section");
    BAD_IS("A1 FETCH 1 BODY[HEADER.FIELDS ()]", "A1 BAD Missing argument");
    BAD_IS("A1 FETCH 1 (ALL)", "A1 BAD Unknown FETCH item"); /* macros stand alone */
}

static void
test_parse_store_copy(void)
{
    g_autoptr(ImapCommand) a = ok("A1 STORE 2:4 -FLAGS.SILENT \\Deleted \\flagged $Label1");
    g_assert_cmpint(a->u.store.op, ==, IMAP_STORE_REMOVE);
    g_assert_true(a->u.store.silent);
    g_assert_cmpstr(a->u.store.flags[0], ==, "\\Deleted");
    g_assert_cmpstr(a->u.store.flags[1], ==, "\\Flagged");
    g_assert_cmpstr(a->u.store.flags[2], ==, "$Label1");
    g_assert_null(a->u.store.flags[3]);
    g_autoptr(ImapCommand) b = ok("A1 UID STORE 7 (UNCHANGEDSINCE 320162338) FLAGS ()");
    g_assert_cmpint(b->u.store.op, ==, IMAP_STORE_SET);
    g_assert_true(b->u.store.unchangedsince_set);
    g_assert_cmpuint(b->u.store.unchangedsince, ==, 320162338);
    g_assert_null(b->u.store.flags[0]);
    g_autoptr(ImapCommand) c = ok("A1 UID COPY 1:3,7 {7}\r\nArchiv\xc3");
    g_assert_cmpstr(c->u.copy.mailbox, ==, "Archiv\xc3"); /* still encoded; decode rejects */
    g_assert_cmpuint(c->u.copy.set->n, ==, 2);
    g_autoptr(ImapCommand) d = ok("A1 EXPUNGE");
    g_assert_null(d->u.expunge.set);
    g_autoptr(ImapCommand) e = ok("A1 UID EXPUNGE 3000:3002");
    g_assert_cmpuint(e->u.expunge.set->ranges[0].lo, ==, 3000);
}

/* ---- mUTF-7 and mailbox names ---- */

static void
test_mutf7(void)
{
    static const struct {
        const char *utf8, *mutf7;
    } rt[] = {
        {"INBOX", "INBOX"},
        {"Entw\xc3\xbcrfe", "Entw&APw-rfe"},
        {"&", "&-"},
        {"A&B", "A&-B"},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-"},
        {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
         "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
        {"\xf0\x9f\x98\x80", "&2D3eAA-"},
        {"\xc3\xa4\xc3\xb6", "&AOQA9g-"},
        {"\xc3\xa4&", "&AOQ-&-"},
        {"", ""},
    };
    for (guint i = 0; i < G_N_ELEMENTS(rt); i++) {
        g_autofree char *e = imap_mutf7_encode(rt[i].utf8, strlen(rt[i].utf8), NULL);
        g_assert_cmpstr(e, ==, rt[i].mutf7);
        g_autofree char *d = imap_mutf7_decode(rt[i].mutf7, strlen(rt[i].mutf7), NULL);
        g_assert_cmpstr(d, ==, rt[i].utf8);
    }
    static const char *const invalid[] = {
        "&AC4-",       /* '.' must not be encoded */
        "&AC8-",       /* '/' */
        "&AC4ALg-",    /* ".." */
        "&AEE-",       /* 'A' */
        "&",           /* unterminated */
        "&AOQ",        /* unterminated */
        "a&Jjo!-",     /* bad base64 character */
        "&AOQ-&APY-",  /* adjacent runs: canonical is &AOQA9g- */
        "&2D0-",       /* unpaired high surrogate */
        "&3gA-",       /* unpaired low surrogate */
        "&AAA-",       /* U+0000 */
        "&AOR-",       /* leftover bits not zero */
        "&AOQA-",      /* a whole needless base64 character */
        "&A-",         /* fewer than 16 bits */
        "&AOQ=-",      /* '=' padding */
        "caf\xc3\xa9", /* 8-bit octets */
        "a\tb",        /* control character */
    };
    for (guint i = 0; i < G_N_ELEMENTS(invalid); i++) {
        GError *err = NULL;
        char *d = imap_mutf7_decode(invalid[i], strlen(invalid[i]), &err);
        if (d)
            g_error("accepted %s as %s", invalid[i], d);
        g_assert_error(err, IMAP_MUTF7_ERROR, IMAP_MUTF7_ERROR_INVALID);
        g_error_free(err);
        g_assert_false(imap_mutf7_valid(invalid[i], strlen(invalid[i])));
    }
    g_assert_true(imap_mutf7_valid(S("&AOQA9g-")));
    GError *err = NULL;
    g_assert_null(imap_mutf7_encode(S("\xc3\x28"), &err));
    g_assert_error(err, IMAP_MUTF7_ERROR, IMAP_MUTF7_ERROR_INVALID);
    g_error_free(err);
    /* control characters encode (the name check refuses them later) */
    g_autofree char *ctl = imap_mutf7_encode(S("\x01"), NULL);
    g_assert_cmpstr(ctl, ==, "&AAE-");
}

static char *
dec(const char *wire, gboolean utf8)
{
    return imap_mailbox_decode(wire, strlen(wire), utf8, NULL);
}

static gboolean
name_ok(const char *name, guint flags)
{
    GError *err = NULL;
    gboolean r = imap_mailbox_check(name, flags, &err);
    if (!r) {
        g_assert_error(err, IMAP_MAILBOX_ERROR, IMAP_MAILBOX_ERROR_INVALID);
        if (strlen(name) > 2)
            g_assert_null(strstr(err->message, name)); /* never echoes the name */
        g_error_free(err);
    }
    return r;
}

static void
test_mailbox_names(void)
{
    g_autofree char *a = dec("Entw&APw-rfe", FALSE);
    g_assert_cmpstr(a, ==, "Entw\xc3\xbcrfe");
    g_autofree char *b = dec("Entw\xc3\xbcrfe", FALSE);
    g_assert_null(b); /* raw 8-bit without UTF8=ACCEPT */
    g_autofree char *c = dec("Entw\xc3\xbcrfe", TRUE);
    g_assert_cmpstr(c, ==, "Entw\xc3\xbcrfe");
    g_autofree char *d = dec("&AOQ-", TRUE);
    g_assert_cmpstr(d, ==, "&AOQ-"); /* UTF-8 mode: '&' is just '&' */
    g_autofree char *e = dec("e\xcc\x81t\xc3\xa9", TRUE);
    g_assert_cmpstr(e, ==, "\xc3\xa9t\xc3\xa9"); /* NFC */
    g_autofree char *f = dec("\xc3\x28", TRUE);
    g_assert_null(f);
    g_autofree char *g = dec("inbox", FALSE);
    g_assert_cmpstr(g, ==, "INBOX");
    g_autofree char *h = dec("InBoX/Sub", TRUE);
    g_assert_cmpstr(h, ==, "INBOX/Sub");
    g_autofree char *i = dec("inboxes", FALSE);
    g_assert_cmpstr(i, ==, "inboxes");
    g_autofree char *j = imap_mailbox_encode("Entw\xc3\xbcrfe", FALSE);
    g_assert_cmpstr(j, ==, "Entw&APw-rfe");
    g_autofree char *k = imap_mailbox_encode("Entw\xc3\xbcrfe", TRUE);
    g_assert_cmpstr(k, ==, "Entw\xc3\xbcrfe");
    g_assert_true(imap_mailbox_is_inbox("iNbOx"));
    g_assert_false(imap_mailbox_is_inbox("INBOX/a"));

    static const char *const good[] = {"INBOX", "Sent", "Work/Projects/2026", "a.b",
                                       "a..b",  ".x/y", "Entw\xc3\xbcrfe",    "x~"};
    for (guint n = 0; n < G_N_ELEMENTS(good); n++)
        g_assert_true(name_ok(good[n], IMAP_MAILBOX_CREATE));
    static const char *const evil[] = {"",       "..",    ".",         "a/../b",        "a/./b",
                                       "/etc",   "a/",    "a//b",      "~root",         "a/~b",
                                       "a\x01b", "a\x7f", "a\xc2\x85", "a\xe2\x80\xa8", "\xc3\x28"};
    for (guint n = 0; n < G_N_ELEMENTS(evil); n++)
        g_assert_false(name_ok(evil[n], 0));
    g_assert_true(name_ok("a*b%", 0));
    g_assert_false(name_ok("a*b", IMAP_MAILBOX_CREATE));
    g_assert_false(name_ok("a%", IMAP_MAILBOX_CREATE));
    g_autofree char *longc = g_strnfill(256, 'x');
    g_assert_false(name_ok(longc, 0));
    longc[255] = '\0';
    g_assert_true(name_ok(longc, 0));
    GString *longn = g_string_new(NULL);
    while (longn->len <= IMAP_MAILBOX_MAX)
        g_string_append(longn, "abcdefgh/");
    g_string_append_c(longn, 'x');
    g_assert_false(name_ok(longn->str, 0));
    g_string_free(longn, TRUE);

    /* tricks: encoded '.', '/' and controls never get past decode + check */
    static const char *const tricks[] = {"&AC4ALg-", "a/&AC4ALg-/b", "&AC8-etc",
                                         "x&AAE-",   "&AIU-",        "~&AC8-"};
    for (guint n = 0; n < G_N_ELEMENTS(tricks); n++) {
        g_autofree char *t = dec(tricks[n], FALSE);
        g_assert_true(t == NULL || !name_ok(t, 0));
    }
    g_autofree char *u = dec("a/../b", TRUE);
    g_assert_nonnull(u);           /* decoding is only about the encoding ... */
    g_assert_false(name_ok(u, 0)); /* ... the check refuses it */
}

static void
test_list_match(void)
{
    g_assert_true(imap_list_match("*", "Work/Projects"));
    g_assert_true(imap_list_match("%", "Work"));
    g_assert_false(imap_list_match("%", "Work/Projects"));
    g_assert_true(imap_list_match("Work/%", "Work/Projects"));
    g_assert_false(imap_list_match("Work/%", "Work/Projects/2026"));
    g_assert_true(imap_list_match("Work/*", "Work/Projects/2026"));
    g_assert_false(imap_list_match("Work/*", "Work"));
    g_assert_true(imap_list_match("%/%", "a/b"));
    g_assert_false(imap_list_match("%/%", "a"));
    g_assert_true(imap_list_match("inbox", "INBOX"));
    g_assert_true(imap_list_match("Inbox/%", "INBOX/Sub"));
    g_assert_false(imap_list_match("inbox/sub", "INBOX/Sub")); /* only INBOX folds */
    g_assert_false(imap_list_match("work", "Work"));
    g_assert_true(imap_list_match("*o*o*o*x", "oooooooooooooooooooooooooooooooooooooox"));
    g_assert_false(imap_list_match("*o*o*o*x", "ooooooooooooooooooooooooooooooooooooooo"));
    g_assert_true(imap_list_match("", ""));
    g_assert_false(imap_list_match("", "INBOX"));
    g_autofree char *p = imap_list_pattern("Work/", "%");
    g_assert_cmpstr(p, ==, "Work/%");
    g_autofree char *q = imap_list_pattern("Work/", "/abs");
    g_assert_cmpstr(q, ==, "/abs");
    g_autofree char *r = imap_list_pattern("", "*");
    g_assert_cmpstr(r, ==, "*");
}

/* ---- sequence sets ---- */

static char *
seq_str(const ImapSeqSet *s)
{
    GString *o = g_string_new(NULL);
    imap_seqset_format(s, o);
    return g_string_free(o, FALSE);
}

static void
test_seqset(void)
{
    static const struct {
        const char *in, *raw, *resolved; /* resolved with '*' = 10 */
        guint64 count;
    } good[] = {
        {"1", "1", "1", 1},
        {"1:*", "1:*", "1:10", 10},
        {"*", "*", "10", 1},
        {"*:4", "*:4", "4:10", 7},
        {"5:2,*,1:3", "5:2,*,1:3", "1:5,10", 6},
        {"1:3,4:6,8", "1:3,4:6,8", "1:6,8", 7},
        {"7,7,7", "7,7,7", "7", 1},
        {"4294967295", "4294967295", "4294967295", 1},
        {"4294967290:4294967295,1", "4294967290:4294967295,1", "1,4294967290:4294967295", 7},
        {"12:15", "12:15", "12:15", 4},
    };
    for (guint i = 0; i < G_N_ELEMENTS(good); i++) {
        g_autoptr(ImapSeqSet) s = imap_seqset_parse(good[i].in, strlen(good[i].in), FALSE);
        g_assert_nonnull(s);
        g_autofree char *raw = seq_str(s);
        g_assert_cmpstr(raw, ==, good[i].raw);
        imap_seqset_resolve(s, 10);
        g_autofree char *res = seq_str(s);
        g_assert_cmpstr(res, ==, good[i].resolved);
        g_assert_cmpuint(imap_seqset_count(s), ==, good[i].count);
    }
    static const char *const badv[] = {"",   "0",   "01",  "1:",    ":1",    "1,,2",
                                       "1,", ",1",  "a",   "1 2",   "1:2:3", "4294967296",
                                       "$",  "$,1", "1:0", "*:*:*", "-1"};
    for (guint i = 0; i < G_N_ELEMENTS(badv); i++)
        g_assert_null(imap_seqset_parse(badv[i], strlen(badv[i]), FALSE));
    g_autoptr(ImapSeqSet) dollar = imap_seqset_parse("$", 1, TRUE);
    g_assert_true(dollar->saved);
    g_assert_cmpuint(dollar->n, ==, 0);
    g_assert_null(imap_seqset_parse("$,1", 3, TRUE));

    g_autoptr(ImapSeqSet) s = imap_seqset_parse(S("2:4,8,10:12,100"), FALSE);
    imap_seqset_resolve(s, 1000);
    static const guint32 in[] = {2, 3, 4, 8, 10, 11, 12, 100};
    static const guint32 out[] = {1, 5, 7, 9, 13, 99, 101, G_MAXUINT32};
    for (guint i = 0; i < G_N_ELEMENTS(in); i++)
        g_assert_true(imap_seqset_contains(s, in[i]));
    for (guint i = 0; i < G_N_ELEMENTS(out); i++)
        g_assert_false(imap_seqset_contains(s, out[i]));
    g_assert_cmpuint(imap_seqset_first(s), ==, 2);
    g_assert_cmpuint(imap_seqset_last(s), ==, 100);
    /* '*' in an empty mailbox names nothing */
    g_autoptr(ImapSeqSet) e = imap_seqset_parse(S("1:*,5"), FALSE);
    imap_seqset_resolve(e, 0);
    g_autofree char *es = seq_str(e);
    g_assert_cmpstr(es, ==, "5");
    g_autoptr(ImapSeqSet) c = imap_seqset_copy(s);
    g_assert_cmpuint(c->n, ==, s->n);
    g_assert_true(c->ranges != s->ranges);
}

static void
test_seqset_compress(void)
{
    static const guint32 a[] = {5, 1, 2, 3, 9, 10, 7, 3, 0};
    g_autoptr(GString) o = g_string_new(NULL);
    imap_seqset_compress(a, G_N_ELEMENTS(a), o);
    g_assert_cmpstr(o->str, ==, "1:3,5,7,9:10"); /* sorted, deduplicated, 0 dropped */
    g_string_truncate(o, 0);
    imap_seqset_compress(a, 0, o);
    g_assert_cmpstr(o->str, ==, "");
    static const guint32 b[] = {G_MAXUINT32, G_MAXUINT32 - 1, 1};
    g_string_truncate(o, 0);
    imap_seqset_compress(b, 3, o);
    g_assert_cmpstr(o->str, ==, "1,4294967294:4294967295");
    guint32 many[1000];
    for (guint i = 0; i < 1000; i++)
        many[i] = i < 500 ? i + 1 : i + 2; /* 1..500, 502..1001 */
    g_string_truncate(o, 0);
    imap_seqset_compress(many, 1000, o);
    g_assert_cmpstr(o->str, ==, "1:500,502:1001");
    g_autoptr(ImapSeqSet) back = imap_seqset_parse(o->str, o->len, FALSE);
    imap_seqset_resolve(back, 5000);
    g_assert_cmpuint(imap_seqset_count(back), ==, 1000);
    g_assert_false(imap_seqset_contains(back, 501));
}

/* ---- dates ---- */

static void
test_dates(void)
{
    gint32 days;
    g_assert_true(imap_date_parse(S("1-Feb-1994"), &days));
    g_assert_cmpint(days, ==, imap_days_from_civil(1994, 2, 1));
    g_assert_cmpint(imap_days_from_civil(1970, 1, 1), ==, 0);
    g_assert_cmpint(imap_days_from_civil(2026, 11, 26), ==, 1795680665 / 86400);
    g_assert_true(imap_date_parse(S("29-feb-2024"), &days));
    static const char *const bad_dates[] = {"29-Feb-2023", "32-Jan-2000", "0-Jan-2000",
                                            "1-Foo-2000",  "1-Feb-94",    "1 Feb 1994",
                                            "1-Feb-1994x", "-Feb-1994",   "100-Feb-1994"};
    for (guint i = 0; i < G_N_ELEMENTS(bad_dates); i++)
        g_assert_false(imap_date_parse(bad_dates[i], strlen(bad_dates[i]), &days));
    int y, m, d;
    imap_civil_from_days(imap_days_from_civil(2000, 2, 29), &y, &m, &d);
    g_assert_cmpint(y * 10000 + m * 100 + d, ==, 20000229);

    gint64 t;
    int tz;
    g_assert_true(imap_datetime_parse(S("26-Nov-2026 08:11:05 +0000"), &t, &tz));
    g_assert_cmpint(t, ==, 1795680665);
    g_assert_cmpint(tz, ==, 0);
    g_assert_true(imap_datetime_parse(S(" 1-Feb-1994 21:52:25 -0800"), &t, &tz));
    g_assert_cmpint(t, ==, 760168345);
    g_assert_true(imap_datetime_parse(S("01-Feb-1994 21:52:25 -0800"), &t, &tz));
    g_assert_cmpint(t, ==, 760168345);
    static const char *const bad_dt[] = {"26-Nov-2026 24:00:00 +0000", "26-Nov-2026 08:60:00 +0000",
                                         "26-Nov-2026 08:11:05 +2400", "26-Nov-2026 08:11:05 0000",
                                         "26-Nov-2026 08:11:05",       "26-Nov-2026 8:11:05 +0000",
                                         "26-Nov-2026 08:11:05 +00000"};
    for (guint i = 0; i < G_N_ELEMENTS(bad_dt); i++)
        g_assert_false(imap_datetime_parse(bad_dt[i], strlen(bad_dt[i]), &t, &tz));

    g_autoptr(GString) o = g_string_new(NULL);
    imap_datetime_format(o, 1795680665, 0);
    g_assert_cmpstr(o->str, ==, "\"26-Nov-2026 08:11:05 +0000\"");
    g_string_truncate(o, 0);
    imap_datetime_format(o, 760168345, -480);
    g_assert_cmpstr(o->str, ==, "\"01-Feb-1994 21:52:25 -0800\"");
    g_string_truncate(o, 0);
    imap_datetime_format(o, 1795680665, 5 * 60 + 30); /* +0530: next day? no, 13:41 */
    g_assert_cmpstr(o->str, ==, "\"26-Nov-2026 13:41:05 +0530\"");
    g_string_truncate(o, 0);
    imap_datetime_format(o, -1, 0);
    g_assert_cmpstr(o->str, ==, "\"31-Dec-1969 23:59:59 +0000\"");
    /* round trip through parse */
    g_string_truncate(o, 0);
    imap_datetime_format(o, 1700000000, -150);
    g_assert_true(imap_datetime_parse(o->str + 1, o->len - 2, &t, &tz));
    g_assert_cmpint(t, ==, 1700000000);
    g_assert_cmpint(tz, ==, -150);
    /* the server's zone from TZ, DST included */
    g_setenv("TZ", "XXX-5:30", TRUE);
    tzset();
    g_assert_cmpint(imap_local_tz(1795680665), ==, 330);
    g_setenv("TZ", "EST5EDT,M3.2.0,M11.1.0", TRUE);
    tzset();
    g_assert_cmpint(imap_local_tz(1767600000), ==, -300); /* 2026-01-05 */
    g_assert_cmpint(imap_local_tz(1783684800), ==, -240); /* 2026-07-10 */
    g_setenv("TZ", "UTC", TRUE);
    tzset();
    g_assert_cmpint(imap_local_tz(1795680665), ==, 0);
    g_string_truncate(o, 0);
    imap_datetime_format(o, 1783684800, -240);
    g_assert_cmpstr(o->str, ==, "\"10-Jul-2026 08:00:00 -0400\"");
}

/* ---- formatter ---- */

static char *
fmt_astring(const char *s, gsize len, guint flags)
{
    GString *o = g_string_new(NULL);
    imap_fmt_astring(o, s, len, flags);
    return g_string_free(o, FALSE);
}

static void
test_format_strings(void)
{
    static const struct {
        const char *in;
        guint flags;
        const char *out;
    } cases[] = {
        {"INBOX", 0, "INBOX"},
        {"a]b", 0, "a]b"},
        {"", 0, "\"\""},
        {"NIL", 0, "\"NIL\""},
        {"nil", 0, "\"nil\""},
        {"My Folder", 0, "\"My Folder\""},
        {"50%", 0, "\"50%\""},
        {"a\"b\\c", 0, "\"a\\\"b\\\\c\""},
        {"\"\"\"\"", 0, "\"\\\"\\\"\\\"\\\"\""},
        {"\"\"\"\"\"", 0, "{5}\r\n\"\"\"\"\""},
        {"line\r\n", 0, "{6}\r\nline\r\n"},
        {"caf\xc3\xa9", 0, "{5}\r\ncaf\xc3\xa9"},
        {"caf\xc3\xa9", IMAP_FMT_UTF8, "\"caf\xc3\xa9\""},
        {"caf\xc3", IMAP_FMT_UTF8, "{4}\r\ncaf\xc3"},
        {"(x)", 0, "\"(x)\""},
        {"{3}", 0, "\"{3}\""},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *o = fmt_astring(cases[i].in, strlen(cases[i].in), cases[i].flags);
        g_assert_cmpstr(o, ==, cases[i].out);
    }
    g_autofree char *big = g_strnfill(IMAP_FMT_QUOTED_MAX + 1, 'a');
    g_autofree char *o1 = fmt_astring(big, strlen(big), 0);
    g_assert_true(g_str_has_prefix(o1, "{4097}\r\naaa"));
    g_assert_cmpuint(strlen(o1), ==, 4097 + 8);
    big[IMAP_FMT_QUOTED_MAX] = '\0';
    g_autofree char *o2 = fmt_astring(big, strlen(big), 0);
    g_assert_cmpuint(strlen(o2), ==, 4096); /* atom */

    g_autoptr(GString) o = g_string_new(NULL);
    imap_fmt_string(o, S("INBOX"), 0);
    g_assert_cmpstr(o->str, ==, "\"INBOX\""); /* string: never an atom */
    g_string_truncate(o, 0);
    imap_fmt_nstring(o, NULL, 0);
    g_string_append_c(o, ' ');
    imap_fmt_nstring(o, "NIL", 0);
    g_assert_cmpstr(o->str, ==, "NIL \"NIL\"");
    g_string_truncate(o, 0);
    imap_fmt_literal(o, "a\0b", 3, TRUE);
    g_assert_cmpmem(o->str, o->len, "~{3}\r\na\0b", 9);
    g_string_truncate(o, 0);
    imap_fmt_literal_header(o, G_GUINT64_CONSTANT(5000000000), FALSE);
    g_assert_cmpstr(o->str, ==, "{5000000000}\r\n");
    g_string_truncate(o, 0);
    imap_fmt_mailbox(o, "Entw\xc3\xbcrfe", FALSE);
    g_string_append_c(o, ' ');
    imap_fmt_mailbox(o, "Entw\xc3\xbcrfe", TRUE);
    g_string_append_c(o, ' ');
    imap_fmt_mailbox(o, "A & B", FALSE);
    g_assert_cmpstr(o->str, ==, "Entw&APw-rfe \"Entw\xc3\xbcrfe\" \"A &- B\"");
}

static void
test_format_flags_status(void)
{
    g_autoptr(GString) o = g_string_new(NULL);
    const char *flags[] = {"\\Seen", "$Forwarded", "bad flag", "\\",  "",
                           "x(",     "Junk",       "*",        "\\*", NULL};
    imap_fmt_flags(o, flags, -1);
    g_assert_cmpstr(o->str, ==, "(\\Seen $Forwarded Junk \\*)");
    g_string_truncate(o, 0);
    imap_fmt_flags(o, flags, 1);
    g_string_append_c(o, ' ');
    imap_fmt_flags(o, NULL, -1);
    g_assert_cmpstr(o->str, ==, "(\\Seen) ()");
    g_string_truncate(o, 0);
    imap_fmt_status(o, "A1", "OK", "READ-WRITE", "SELECT completed");
    imap_fmt_status(o, NULL, "NO", NULL, "evil\r\n* OK injected");
    imap_fmt_status(o, "A2", "BAD", "TOOBIG", "");
    g_assert_cmpstr(o->str, ==,
                    "A1 OK [READ-WRITE] SELECT completed\r\n"
                    "* NO evil  * OK injected\r\n"
                    "A2 BAD [TOOBIG] Completed\r\n");
    ImapError err = {.kind = IMAP_ERROR_NO,
                     .tag = g_strdup("t9"),
                     .code = "TOOBIG",
                     .text = "Literal too large"};
    g_string_truncate(o, 0);
    imap_error_format(&err, o);
    imap_error_clear(&err);
    g_assert_null(err.tag);
    imap_error_format(&err, o);
    g_assert_cmpstr(o->str, ==, "t9 NO [TOOBIG] Literal too large\r\n* BAD Invalid command\r\n");
}

static void
test_format_envelope(void)
{
    const ImapAddress from[] = {{"Alice Example", NULL, "alice", "example.org"}};
    const ImapAddress to[] = {{NULL, NULL, "team", NULL},
                              {"B\xc3\xb6"
                               "b",
                               NULL, "bob", "example.net"},
                              {NULL, "@relay.example", "carol", "example.com"},
                              {NULL, NULL, NULL, NULL}};
    const ImapEnvelope env = {
        .date = "Thu, 26 Nov 2026 08:11:05 +0000",
        .subject = "Re: \"quoted\" =?UTF-8?Q?caf=C3=A9?=",
        .from = from,
        .n_from = 1,
        .to = to,
        .n_to = 4,
        .message_id = "<1@example.org>",
    };
    g_autoptr(GString) o = g_string_new(NULL);
    imap_fmt_envelope(o, &env, 0);
    g_assert_cmpstr(o->str, ==,
                    "(\"Thu, 26 Nov 2026 08:11:05 +0000\" "
                    "\"Re: \\\"quoted\\\" =?UTF-8?Q?caf=C3=A9?=\" "
                    "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
                    "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
                    "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
                    "((NIL NIL \"team\" NIL)({4}\r\nB\xc3\xb6"
                    "b NIL \"bob\" \"example.net\")"
                    "(NIL \"@relay.example\" \"carol\" \"example.com\")(NIL NIL NIL NIL)) "
                    "NIL NIL NIL \"<1@example.org>\")");
    const ImapEnvelope empty = {0};
    g_string_truncate(o, 0);
    imap_fmt_envelope(o, &empty, IMAP_FMT_UTF8);
    g_assert_cmpstr(o->str, ==, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
}

static void
test_format_bodystructure(void)
{
    const ImapParam cs[] = {{"charset", "utf-8"}};
    const ImapParam fn[] = {{"filename", "r\xc3\xa9sum\xc3\xa9.pdf"}};
    const char *const langs[] = {"en", "de", NULL};
    ImapBodyPart pdf = {.type = "application",
                        .subtype = "pdf",
                        .encoding = "base64",
                        .size = 4096,
                        .disposition = "attachment",
                        .disp_params = fn,
                        .n_disp_params = 1};
    ImapBodyPart text = {.type = "text",
                         .subtype = "plain",
                         .params = cs,
                         .n_params = 1,
                         .encoding = "quoted-printable",
                         .size = 1234,
                         .lines = 40,
                         .language = langs,
                         .next = &pdf};
    ImapBodyPart mixed = {.type = "multipart", .subtype = "mixed", .children = &text};
    g_autoptr(GString) o = g_string_new(NULL);
    imap_fmt_bodystructure(o, &mixed, FALSE, 0);
    g_assert_cmpstr(o->str, ==,
                    "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" "
                    "1234 40)(\"application\" \"pdf\" NIL NIL NIL \"base64\" 4096) \"mixed\")");
    g_string_truncate(o, 0);
    imap_fmt_bodystructure(o, &mixed, TRUE, 0);
    g_assert_cmpstr(o->str, ==,
                    "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" "
                    "1234 40 NIL NIL (\"en\" \"de\") NIL)"
                    "(\"application\" \"pdf\" NIL NIL NIL \"base64\" 4096 NIL "
                    "(\"attachment\" (\"filename\" {12}\r\nr\xc3\xa9sum\xc3\xa9.pdf)) NIL NIL) "
                    "\"mixed\" NIL NIL NIL NIL)");

    /* message/rfc822 carries envelope, body and lines */
    const ImapAddress from[] = {{NULL, NULL, "a", "b.example"}};
    const ImapEnvelope env = {.subject = "inner", .from = from, .n_from = 1};
    ImapBodyPart inner = {.size = 5, .lines = 1};
    ImapBodyPart msg = {.type = "message",
                        .subtype = "RFC822",
                        .size = 300,
                        .lines = 12,
                        .envelope = &env,
                        .children = &inner};
    g_string_truncate(o, 0);
    imap_fmt_bodystructure(o, &msg, FALSE, 0);
    g_assert_cmpstr(
        o->str, ==,
        "(\"message\" \"RFC822\" NIL NIL NIL \"7BIT\" 300 "
        "(NIL \"inner\" ((NIL NIL \"a\" \"b.example\")) ((NIL NIL \"a\" \"b.example\")) "
        "((NIL NIL \"a\" \"b.example\")) NIL NIL NIL NIL NIL) "
        "(\"text\" \"plain\" NIL NIL NIL \"7BIT\" 5 1) 12)");

    /* an empty multipart still yields valid syntax; depth is bounded */
    ImapBodyPart emptym = {.type = "multipart", .subtype = "alternative"};
    g_string_truncate(o, 0);
    imap_fmt_bodystructure(o, &emptym, FALSE, 0);
    g_assert_cmpstr(o->str, ==, "((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 0 0) \"alternative\")");
    ImapBodyPart chain[200];
    for (int i = 0; i < 200; i++)
        chain[i] = (ImapBodyPart){
            .type = "multipart", .subtype = "mixed", .children = i < 199 ? &chain[i + 1] : NULL};
    g_string_truncate(o, 0);
    imap_fmt_bodystructure(o, &chain[0], TRUE, 0);
    int depth = 0, maxd = 0;
    for (const char *p = o->str; *p; p++) {
        if (*p == '(') {
            depth++;
            maxd = MAX(maxd, depth);
        } else if (*p == ')')
            depth--;
        g_assert_cmpint(depth, >=, 0);
    }
    g_assert_cmpint(depth, ==, 0);
    g_assert_cmpint(maxd, <=, IMAP_BODY_MAX_DEPTH + 1);
    g_assert_cmpint(maxd, >=, IMAP_BODY_MAX_DEPTH - 1);
}

/* ---- fuzz: mutated real commands through reader and parser ---- */

static const char *const fuzz_seeds[] = {
    "A1 LOGIN {4}\r\nuser {4+}\r\npass\r\n",
    "A2 APPEND Sent (\\Seen) \"26-Nov-2026 08:11:05 +0100\" {30}\r\n"
    "Subject: x\r\n\r\nhello world\r\n\r\n",
    "A3 UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100>) "
    "(CHANGEDSINCE 5 VANISHED)\r\n",
    "A4 SEARCH RETURN (MIN) CHARSET UTF-8 OR (FROM a SINCE 1-Feb-2026) NOT SUBJECT {3}\r\n"
    "abc UID 1:5\r\n",
    "A5 SELECT INBOX (QRESYNC (1 2 1:9 (1,3 4,9)))\r\n",
    "A6 LIST (SUBSCRIBED) \"\" (* %) RETURN (STATUS (MESSAGES))\r\n",
    "A7 STORE 1:3 +FLAGS.SILENT (\\Deleted $x)\r\nA8 ID (\"a\" NIL)\r\n",
    "A9 APPEND INBOX ~{3+}\r\nx@y\r\n",
};

static void
test_fuzz(void)
{
    static const char interesting[] = " ()[]{}<>\"\\*%~+$:,.\r\n0123456789AZ\x80\xff";
    ImapLimits lim = IMAP_LIMITS_INIT;
    lim.max_line = 120;
    lim.max_command = 300;
    lim.max_literal = 200;
    lim.max_nonsync = 50;
    lim.stream_min = 20;
    Drive d = {.reject_over = 150, .parse = TRUE};
    GRand *rnd = g_rand_new_with_seed(20261126);
    guint commands = 0;
    for (int iter = 0; iter < 1500; iter++) {
        const char *seed = fuzz_seeds[g_rand_int_range(rnd, 0, G_N_ELEMENTS(fuzz_seeds))];
        GString *m = g_string_new(seed);
        for (gsize i = 0; i < m->len; i++)
            if (m->str[i] == '@')
                m->str[i] = '\0'; /* '@' in a seed stands for NUL */
        int muts = g_rand_int_range(rnd, 1, 4);
        for (int k = 0; k < muts && m->len > 0; k++) {
            gsize at = (gsize)g_rand_int_range(rnd, 0, (gint32)m->len);
            char c = interesting[g_rand_int_range(rnd, 0, sizeof interesting - 1)];
            switch (g_rand_int_range(rnd, 0, 4)) {
            case 0:
                m->str[at] = c;
                break;
            case 1:
                g_string_insert_c(m, (gssize)at, c);
                break;
            case 2:
                g_string_erase(m, (gssize)at, 1);
                break;
            default:
                g_string_insert_len(m, (gssize)at, m->str + at, (gssize)MIN(m->len - at, 40));
                break;
            }
        }
        g_autofree char *t = drive_all(&lim, m->str, m->len, &d);
        for (const char *p = t; (p = strstr(p, "CMD ")); p += 4)
            commands++;
        /* the parser alone, on any bytes (no framing), must not misbehave */
        ImapError err;
        ImapCommand *c = imap_parse_string(m->str, m->len, NULL, &err);
        g_assert_true((c != NULL) == (err.kind == IMAP_ERROR_NONE));
        if (c)
            g_assert_nonnull(c->tag);
        imap_command_free(c);
        imap_error_clear(&err);
        g_string_free(m, TRUE);
    }
    g_assert_cmpuint(commands, >, 1000); /* most mutants still frame as commands */
    g_rand_free(rnd);
}

static void
test_reader_set_limits(void)
{
    ImapLimits lim = IMAP_LIMITS_INIT; /* before login: LITERAL- size */
    ImapReader *r = imap_reader_new(&lim);
    gsize used;
    const char big[] = "A1 APPEND INBOX {5000+}\r\n";
    g_assert_cmpint(imap_reader_feed(r, big, strlen(big), &used), ==, IMAP_READ_ERROR);
    g_assert_cmpstr(imap_reader_error(r)->code, ==, "TOOBIG");
    g_assert_cmpint(imap_reader_error(r)->name, ==, IMAP_CMD_APPEND);
    /* the 5000 octets it still sends are skipped */
    g_autofree char *junk = g_strnfill(5000, 'x');
    g_assert_cmpint(imap_reader_feed(r, junk, 5000, &used), ==, IMAP_READ_MORE);
    g_assert_cmpuint(used, ==, 5000);
    g_assert_cmpint(imap_reader_feed(r, "\r\n", 2, &used), ==, IMAP_READ_MORE);
    g_assert_true(imap_reader_idle(r));
    lim.max_nonsync = G_MAXUINT64; /* after login, LITERAL+ */
    lim.stream_min = 4096;
    imap_reader_set_limits(r, &lim);
    g_assert_cmpint(imap_reader_feed(r, big, strlen(big), &used), ==, IMAP_READ_LITERAL);
    g_assert_true(imap_reader_literal(r)->streamed); /* APPEND >= stream_min */
    g_assert_cmpstr(imap_reader_literal(r)->tag, ==, "A1");
    imap_reader_literal_accept(r);
    g_assert_cmpint(imap_reader_feed(r, junk, 5000, &used), ==, IMAP_READ_LITERAL_DATA);
    g_assert_cmpuint(used, ==, 5000);
    g_assert_cmpuint(imap_reader_literal(r)->remaining, ==, 0);
    g_assert_cmpint(imap_reader_feed(r, "\r\n", 2, &used), ==, IMAP_READ_COMMAND);
    ImapRawCommand *raw = imap_reader_take(r);
    g_assert_cmpuint(raw->n_streamed, ==, 1);
    imap_raw_command_free(raw);
    imap_reader_free(r);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/imap-parse/reader/lines", test_reader_lines);
    g_test_add_func("/imap-parse/reader/sync-literal", test_reader_sync_literal);
    g_test_add_func("/imap-parse/reader/literal-plus-minus", test_reader_literal_plus_minus);
    g_test_add_func("/imap-parse/reader/oversize", test_reader_oversize);
    g_test_add_func("/imap-parse/reader/stream", test_reader_stream);
    g_test_add_func("/imap-parse/reader/too-long", test_reader_too_long);
    g_test_add_func("/imap-parse/reader/quotes", test_reader_quotes);
    g_test_add_func("/imap-parse/reader/line-mode", test_reader_line_mode);
    g_test_add_func("/imap-parse/reader/literal8", test_reader_literal8);
    g_test_add_func("/imap-parse/reader/set-limits", test_reader_set_limits);
    g_test_add_func("/imap-parse/reader/fuzz", test_fuzz);
    g_test_add_func("/imap-parse/parse/clients", test_parse_clients);
    g_test_add_func("/imap-parse/parse/errors", test_parse_errors);
    g_test_add_func("/imap-parse/parse/resync", test_parse_resync);
    g_test_add_func("/imap-parse/parse/auth-login-enable-id", test_parse_auth_login);
    g_test_add_func("/imap-parse/parse/select-create-status", test_parse_select);
    g_test_add_func("/imap-parse/parse/list", test_parse_list);
    g_test_add_func("/imap-parse/parse/append", test_parse_append);
    g_test_add_func("/imap-parse/parse/search", test_parse_search);
    g_test_add_func("/imap-parse/parse/fetch", test_parse_fetch);
    g_test_add_func("/imap-parse/parse/store-copy-expunge", test_parse_store_copy);
    g_test_add_func("/imap-parse/mutf7", test_mutf7);
    g_test_add_func("/imap-parse/mailbox/names", test_mailbox_names);
    g_test_add_func("/imap-parse/mailbox/list-match", test_list_match);
    g_test_add_func("/imap-parse/seqset/parse-resolve", test_seqset);
    g_test_add_func("/imap-parse/seqset/compress", test_seqset_compress);
    g_test_add_func("/imap-parse/dates", test_dates);
    g_test_add_func("/imap-parse/format/strings", test_format_strings);
    g_test_add_func("/imap-parse/format/flags-status", test_format_flags_status);
    g_test_add_func("/imap-parse/format/envelope", test_format_envelope);
    g_test_add_func("/imap-parse/format/bodystructure", test_format_bodystructure);
    return g_test_run();
}
