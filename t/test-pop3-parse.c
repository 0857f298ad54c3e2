/* SPDX-License-Identifier: MIT */
/*
 * test-pop3-parse.c - the pure POP3 functions (modules/pop3/pop3-parse.c):
 * the line reader fed whole and one byte at a time (CRLF, bare LF,
 * too-long lines discarded to their end), command parsing per command
 * (arguments, numbers, errors), AUTH PLAIN decoding, dot-stuffing with
 * LF -> CRLF across chunk boundaries (also random input in random pieces
 * into a plain buffer, against a byte-at-a-time model, with the CRLF size
 * it counts and the 2 * len bound), TOP's line counting, UIDL checks.
 */
#include "testlib.h"
#include "pop3/pop3-parse.h"

#include <string.h>

/* Feed input in pieces of `step` bytes (0: all at once) through the
 * reader; return the lines seen, "<TOO LONG>" for discarded ones. */
static GPtrArray *
read_lines(const char *input, gsize len, gsize step, gsize max)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    Pop3Reader rd = {0};
    GString *buf = g_string_new(NULL);
    gsize fed = 0;
    while (fed < len || buf->len > 0) {
        gsize n = step ? MIN(step, len - fed) : len - fed;
        g_string_append_len(buf, input + fed, (gssize)n);
        fed += n;
        for (;;) {
            const char *line = NULL;
            gsize ll = 0, consumed = 0;
            Pop3Scan r = pop3_reader_next(&rd, buf->str, buf->len, max, &line, &ll, &consumed);
            if (r == POP3_LINE)
                g_ptr_array_add(out, g_strndup(line, ll));
            else if (r == POP3_TOO_LONG)
                g_ptr_array_add(out, g_strdup("<TOO LONG>"));
            g_string_erase(buf, 0, (gssize)consumed);
            if (r == POP3_NEED_MORE)
                break;
        }
        if (fed >= len)
            break;
    }
    g_string_free(buf, TRUE);
    return out;
}

static void
test_reader(void)
{
    GString *in = g_string_new("USER bob\r\nPASS x y\nSTAT\r\n");
    g_string_append(in, "NOOP ");
    for (int i = 0; i < 3000; i++)
        g_string_append_c(in, 'x');
    g_string_append(in, "\r\nLIST 1\r\nRETR");
    for (gsize step = 0; step <= 7; step++) {
        if (step == 2 || step == 5 || step == 6)
            continue;
        g_autoptr(GPtrArray) l = read_lines(in->str, in->len, step, 1024);
        g_assert_cmpuint(l->len, ==, 5);
        g_assert_cmpstr(l->pdata[0], ==, "USER bob");
        g_assert_cmpstr(l->pdata[1], ==, "PASS x y");
        g_assert_cmpstr(l->pdata[2], ==, "STAT");
        g_assert_cmpstr(l->pdata[3], ==, "<TOO LONG>");
        g_assert_cmpstr(l->pdata[4], ==, "LIST 1");
        /* "RETR" without its line end stays pending */
    }
    /* A long line that fits in the buffer at once, and one exactly at max. */
    g_autofree char *exact = g_strnfill(1024, 'a');
    g_autofree char *ln = g_strconcat(exact, "\r\n", exact, "b\r\nX\r\n", NULL);
    g_autoptr(GPtrArray) l2 = read_lines(ln, strlen(ln), 0, 1024);
    g_assert_cmpuint(l2->len, ==, 3);
    g_assert_cmpuint(strlen(l2->pdata[0]), ==, 1024);
    g_assert_cmpstr(l2->pdata[1], ==, "<TOO LONG>");
    g_assert_cmpstr(l2->pdata[2], ==, "X");
    g_autoptr(GPtrArray) l3 = read_lines(ln, strlen(ln), 1, 1024);
    g_assert_cmpuint(l3->len, ==, 3);
    g_assert_cmpuint(strlen(l3->pdata[0]), ==, 1024);
    g_assert_cmpstr(l3->pdata[1], ==, "<TOO LONG>");
    g_string_free(in, TRUE);
}

static void
test_commands(void)
{
    static const struct {
        const char *line;
        Pop3CmdId id;
        gboolean ok;
        const char *arg;
        guint32 n1, n2;
        gboolean has_n1;
    } cases[] = {
        {"USER bob@localhost", POP3_CMD_USER, TRUE, "bob@localhost", 0, 0, FALSE},
        {"user bob", POP3_CMD_USER, TRUE, "bob", 0, 0, FALSE},
        {"USER", POP3_CMD_USER, FALSE, NULL, 0, 0, FALSE},
        {"USER a b", POP3_CMD_USER, FALSE, NULL, 0, 0, FALSE},
        {"PASS secret with spaces ", POP3_CMD_PASS, TRUE, "secret with spaces ", 0, 0, FALSE},
        {"PASS", POP3_CMD_PASS, FALSE, NULL, 0, 0, FALSE},
        {"STAT", POP3_CMD_STAT, TRUE, NULL, 0, 0, FALSE},
        {"stat", POP3_CMD_STAT, TRUE, NULL, 0, 0, FALSE},
        {"STAT 1", POP3_CMD_STAT, FALSE, NULL, 0, 0, FALSE},
        {"LIST", POP3_CMD_LIST, TRUE, NULL, 0, 0, FALSE},
        {"LIST 7", POP3_CMD_LIST, TRUE, NULL, 7, 0, TRUE},
        {"LIST -1", POP3_CMD_LIST, FALSE, NULL, 0, 0, FALSE},
        {"LIST 1 2", POP3_CMD_LIST, FALSE, NULL, 0, 0, FALSE},
        {"LIST 99999999999", POP3_CMD_LIST, FALSE, NULL, 0, 0, FALSE},
        {"UIDL 0", POP3_CMD_UIDL, TRUE, NULL, 0, 0, TRUE},
        {"RETR 3", POP3_CMD_RETR, TRUE, NULL, 3, 0, TRUE},
        {"RETR", POP3_CMD_RETR, FALSE, NULL, 0, 0, FALSE},
        {"RETR x", POP3_CMD_RETR, FALSE, NULL, 0, 0, FALSE},
        {"DELE 4294967295", POP3_CMD_DELE, TRUE, NULL, 4294967295u, 0, TRUE},
        {"DELE 4294967296", POP3_CMD_DELE, FALSE, NULL, 0, 0, FALSE},
        {"TOP 2 10", POP3_CMD_TOP, TRUE, NULL, 2, 10, TRUE},
        {"TOP 2 0", POP3_CMD_TOP, TRUE, NULL, 2, 0, TRUE},
        {"TOP 2", POP3_CMD_TOP, FALSE, NULL, 0, 0, FALSE},
        {"TOP 2 x", POP3_CMD_TOP, FALSE, NULL, 0, 0, FALSE},
        {"AUTH", POP3_CMD_AUTH, TRUE, NULL, 0, 0, FALSE},
        {"AUTH plain", POP3_CMD_AUTH, TRUE, "PLAIN", 0, 0, FALSE},
        {"AUTH PLAIN AGJvYgBzZWNyZXQ=", POP3_CMD_AUTH, TRUE, "PLAIN", 0, 0, FALSE},
        {"AUTH PLAIN a b", POP3_CMD_AUTH, FALSE, NULL, 0, 0, FALSE},
        {"CAPA", POP3_CMD_CAPA, TRUE, NULL, 0, 0, FALSE},
        {"STLS", POP3_CMD_STLS, TRUE, NULL, 0, 0, FALSE},
        {"QUIT", POP3_CMD_QUIT, TRUE, NULL, 0, 0, FALSE},
        {"NOOP", POP3_CMD_NOOP, TRUE, NULL, 0, 0, FALSE},
        {"RSET", POP3_CMD_RSET, TRUE, NULL, 0, 0, FALSE},
        {"XYZZY", POP3_CMD_UNKNOWN, FALSE, NULL, 0, 0, FALSE},
        {"", POP3_CMD_UNKNOWN, FALSE, NULL, 0, 0, FALSE},
        {"STATS", POP3_CMD_UNKNOWN, FALSE, NULL, 0, 0, FALSE},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        Pop3Command c;
        gboolean ok = pop3_parse_command(cases[i].line, strlen(cases[i].line), &c);
        g_test_message("%s", cases[i].line);
        g_assert_cmpint(ok, ==, cases[i].ok);
        g_assert_cmpint(c.id, ==, cases[i].id);
        if (ok) {
            g_assert_null(c.error);
            g_assert_cmpstr(c.arg, ==, cases[i].arg);
            g_assert_cmpuint(c.n1, ==, cases[i].n1);
            g_assert_cmpuint(c.n2, ==, cases[i].n2);
            g_assert_cmpint(c.has_n1, ==, cases[i].has_n1);
        } else {
            g_assert_nonnull(c.error);
        }
        pop3_command_clear(&c);
    }
    /* initial response of AUTH kept */
    Pop3Command c;
    g_assert_true(pop3_parse_command("AUTH PLAIN =", 12, &c));
    g_assert_cmpstr(c.arg2, ==, "=");
    pop3_command_clear(&c);
    /* NUL in a line */
    g_assert_false(pop3_parse_command("STAT\0x", 6, &c));
    g_assert_nonnull(c.error);
}

static void
test_sasl_plain(void)
{
    char *z, *c, *p;
    /* "\0bob\0secret" */
    g_assert_true(pop3_sasl_plain("AGJvYgBzZWNyZXQ=", &z, &c, &p));
    g_assert_cmpstr(z, ==, "");
    g_assert_cmpstr(c, ==, "bob");
    g_assert_cmpstr(p, ==, "secret");
    g_free(z), g_free(c), g_free(p);
    /* "bob\0bob\0pw" */
    g_autofree char *b = g_base64_encode((const guchar *)"bob\0bob\0pw", 10);
    g_assert_true(pop3_sasl_plain(b, &z, &c, &p));
    g_assert_cmpstr(z, ==, "bob");
    g_assert_cmpstr(p, ==, "pw");
    g_free(z), g_free(c), g_free(p);
    /* bad: no NULs, empty user, empty password, junk, extra NUL */
    g_autofree char *b1 = g_base64_encode((const guchar *)"bobsecret", 9);
    g_autofree char *b2 = g_base64_encode((const guchar *)"\0\0pw", 4);
    g_autofree char *b3 = g_base64_encode((const guchar *)"\0bob\0", 5);
    g_autofree char *b4 = g_base64_encode((const guchar *)"\0bob\0p\0w", 8);
    g_assert_false(pop3_sasl_plain(b1, &z, &c, &p));
    g_assert_false(pop3_sasl_plain(b2, &z, &c, &p));
    g_assert_false(pop3_sasl_plain(b3, &z, &c, &p));
    g_assert_false(pop3_sasl_plain(b4, &z, &c, &p));
    g_assert_false(pop3_sasl_plain("not base64!", &z, &c, &p));
    g_assert_false(pop3_sasl_plain("", &z, &c, &p));
    g_assert_false(pop3_sasl_plain("abc", &z, &c, &p));
}

static char *
stuff_all(const char *in, gsize step)
{
    Pop3Stuff st = {0};
    GString *out = g_string_new(NULL);
    gsize len = strlen(in);
    for (gsize i = 0; i < len; i += step ? step : len)
        pop3_stuff(&st, in + i, step ? MIN(step, len - i) : len, out);
    pop3_stuff_end(&st, out);
    return g_string_free(out, FALSE);
}

static void
test_stuff(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\nb\n", "a\r\nb\r\n.\r\n"},
        {"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
        {".x\n..\n.\nmid.dot\n", "..x\r\n...\r\n..\r\nmid.dot\r\n.\r\n"},
        {"no end", "no end\r\n.\r\n"},
        {"cr end\r", "cr end\r\n.\r\n"},
        {"", ".\r\n"},
        {"\n.\n", "\r\n..\r\n.\r\n"},
        {"a\rb\n", "a\rb\r\n.\r\n"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++)
        for (gsize step = 0; step <= 3; step++) {
            g_autofree char *got = stuff_all(cases[i].in, step);
            g_assert_cmpstr(got, ==, cases[i].out);
        }
}

/* The wire form one byte at a time; *crlf_r: the input's CRLF size. */
static GString *
stuff_model(const char *in, gsize len, guint64 *crlf_r)
{
    GString *out = g_string_new(NULL);
    gboolean bol = TRUE;
    char prev = 0;
    guint64 crlf = 0;
    for (gsize i = 0; i < len; i++) {
        char c = in[i];
        if (bol && c == '.')
            g_string_append_c(out, '.');
        if (c == '\n' && prev != '\r') {
            g_string_append_c(out, '\r');
            crlf++;
        }
        g_string_append_c(out, c);
        crlf++;
        bol = c == '\n';
        prev = c;
    }
    if (!bol)
        g_string_append(out, prev == '\r' ? "\n" : "\r\n");
    g_string_append(out, ".\r\n");
    *crlf_r = crlf;
    return out;
}

static void
test_stuff_random(void)
{
    static const char alphabet[] = ".\r\nab";
    for (int iter = 0; iter < 3000; iter++) {
        gsize len = (gsize)g_test_rand_int_range(0, 120);
        char *in = g_malloc(len + 1);
        for (gsize i = 0; i < len; i++)
            in[i] = alphabet[g_test_rand_int_range(0, 5)];
        guint64 want_crlf;
        g_autoptr(GString) want = stuff_model(in, len, &want_crlf);
        /* room for exactly the promised bound, with a guard byte after it */
        char *out = g_malloc(2 * len + POP3_STUFF_END_MAX + 1);
        Pop3Stuff st = {0};
        gsize n = 0, i = 0;
        while (i < len) {
            gsize piece = (gsize)g_test_rand_int_range(1, 9); /* not inside MIN() */
            piece = MIN(piece, len - i);
            out[n + 2 * piece] = 'G';
            gsize w = pop3_stuff_buf(&st, in + i, piece, out + n);
            g_assert_cmpuint(w, <=, 2 * piece);
            g_assert_cmpint(out[n + 2 * piece], ==, 'G');
            n += w;
            i += piece;
        }
        g_assert_cmpuint(st.crlf, ==, want_crlf);
        n += pop3_stuff_end_buf(&st, out + n);
        g_assert_cmpmem(out, n, want->str, want->len);
        /* the GString form agrees */
        Pop3Stuff st2 = {0};
        g_autoptr(GString) gs = g_string_new(NULL);
        pop3_stuff(&st2, in, len, gs);
        pop3_stuff_end(&st2, gs);
        g_assert_cmpmem(gs->str, gs->len, want->str, want->len);
        g_assert_cmpuint(st2.crlf, ==, want_crlf);
        g_free(out);
        g_free(in);
    }
}

static char *
top_all(const char *in, guint lines, gsize step)
{
    Pop3Top t;
    pop3_top_init(&t, lines);
    GString *out = g_string_new(NULL);
    gsize len = strlen(in);
    for (gsize i = 0; i < len && !t.done; i += step ? step : len) {
        gsize n = step ? MIN(step, len - i) : len;
        gsize take = pop3_top_take(&t, in + i, n);
        g_string_append_len(out, in + i, (gssize)take);
    }
    return g_string_free(out, FALSE);
}

static void
test_top(void)
{
    const char *m = "A: 1\nB: 2\n\nl1\nl2\nl3\n";
    const char *mc = "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n";
    for (gsize step = 0; step <= 4; step++) {
        g_autofree char *t0 = top_all(m, 0, step);
        g_assert_cmpstr(t0, ==, "A: 1\nB: 2\n\n");
        g_autofree char *t2 = top_all(m, 2, step);
        g_assert_cmpstr(t2, ==, "A: 1\nB: 2\n\nl1\nl2\n");
        g_autofree char *t9 = top_all(m, 9, step);
        g_assert_cmpstr(t9, ==, m);
        g_autofree char *c1 = top_all(mc, 1, step);
        g_assert_cmpstr(c1, ==, "A: 1\r\nB: 2\r\n\r\nl1\r\n");
        g_autofree char *h = top_all("A: 1\nB: 2\n", 0, step); /* no body */
        g_assert_cmpstr(h, ==, "A: 1\nB: 2\n");
    }
}

static void
test_uidl(void)
{
    g_assert_true(pop3_uidl_ok("1700000000.M1P2Q3.host,S=100"));
    g_assert_true(pop3_uidl_ok("~"));
    g_assert_false(pop3_uidl_ok(""));
    g_assert_false(pop3_uidl_ok("has space"));
    g_assert_false(pop3_uidl_ok("tab\t"));
    g_assert_false(pop3_uidl_ok("\xc3\xa9"));
    g_autofree char *l70 = g_strnfill(70, 'x');
    g_autofree char *l71 = g_strnfill(71, 'x');
    g_assert_true(pop3_uidl_ok(l70));
    g_assert_false(pop3_uidl_ok(l71));
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/pop3-parse/reader", test_reader);
    g_test_add_func("/pop3-parse/commands", test_commands);
    g_test_add_func("/pop3-parse/sasl-plain", test_sasl_plain);
    g_test_add_func("/pop3-parse/stuff", test_stuff);
    g_test_add_func("/pop3-parse/stuff-random", test_stuff_random);
    g_test_add_func("/pop3-parse/top", test_top);
    g_test_add_func("/pop3-parse/uidl", test_uidl);
    return g_test_run();
}
