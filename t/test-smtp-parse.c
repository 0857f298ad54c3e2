/* SPDX-License-Identifier: MIT */
/*
 * test-smtp-parse.c - unit tests for modules/smtp/smtp-parse.c: command
 * lines and framing, MAIL/RCPT paths and ESMTP parameters, xtext, the
 * DATA state machine (dot-unstuffing, the six SMTP smuggling sequences,
 * limits, trickle feeding), BDAT, replies and AUTH decoding.
 *
 * Paths: /smtp-parse/<area>/<case>. Streaming parsers are checked fed
 * whole, in odd-sized chunks and one byte at a time.
 */
#include "testlib.h"
#include "smtp/smtp-parse.h"
#include <string.h>

#define S(lit) (lit), (sizeof(lit) - 1)

/* ---- commands ---- */

static void
test_cmd_verbs(void)
{
    static const struct {
        const char *line;
        SmtpCmd cmd;
        const char *arg;
    } cases[] = {
        {"HELO client.example", SMTP_CMD_HELO, "client.example"},
        {"ehlo client.example", SMTP_CMD_EHLO, "client.example"},
        {"MAIL FROM:<a@b.example>", SMTP_CMD_MAIL, "FROM:<a@b.example>"},
        {"rcpt TO:<c@d.example>", SMTP_CMD_RCPT, "TO:<c@d.example>"},
        {"DATA", SMTP_CMD_DATA, ""},
        {"BDAT 100 LAST", SMTP_CMD_BDAT, "100 LAST"},
        {"RsEt", SMTP_CMD_RSET, ""},
        {"NOOP hello", SMTP_CMD_NOOP, "hello"},
        {"QUIT  ", SMTP_CMD_QUIT, ""},
        {"VRFY user", SMTP_CMD_VRFY, "user"},
        {"EXPN list", SMTP_CMD_EXPN, "list"},
        {"HELP", SMTP_CMD_HELP, ""},
        {"STARTTLS", SMTP_CMD_STARTTLS, ""},
        {"AUTH PLAIN", SMTP_CMD_AUTH, "PLAIN"},
        {"MAIL   FROM:<x@y>  ", SMTP_CMD_MAIL, "FROM:<x@y>"},
        {"XYZZY plugh", SMTP_CMD_UNKNOWN, "plugh"},
        {"MAILFROM:<x@y>", SMTP_CMD_UNKNOWN, ""},
        {"DAT", SMTP_CMD_UNKNOWN, ""},
        {"DATAX", SMTP_CMD_UNKNOWN, ""},
        {"GET / HTTP/1.0", SMTP_CMD_UNKNOWN, "/ HTTP/1.0"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        SmtpCmdLine c;
        GError *err = NULL;
        g_test_message("%s", cases[i].line);
        g_assert_true(smtp_cmd_parse(cases[i].line, strlen(cases[i].line), &c, &err));
        g_assert_no_error(err);
        g_assert_cmpint(c.cmd, ==, cases[i].cmd);
        g_assert_cmpmem(c.arg, c.arg_len, cases[i].arg, strlen(cases[i].arg));
        g_assert_true(c.verb == cases[i].line);
    }
    /* smtp_cmd_name round-trips every verb */
    for (SmtpCmd c = SMTP_CMD_HELO; c <= SMTP_CMD_AUTH; c++) {
        const char *name = smtp_cmd_name(c);
        SmtpCmdLine l;
        g_assert_true(smtp_cmd_parse(name, strlen(name), &l, NULL));
        g_assert_cmpint(l.cmd, ==, c);
    }
    g_assert_cmpstr(smtp_cmd_name((SmtpCmd)999), ==, "UNKNOWN");
}

static void
test_cmd_bad_lines(void)
{
    static const struct {
        const char *line;
        gsize len;
    } cases[] = {
        {S("")},         {S("   ")},       {S("NOOP\rRSET")}, {S("MAIL FROM:<a@b>\x01")},
        {S("NO\x7fOP")}, {S("HELO a\0b")},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        SmtpCmdLine c;
        GError *err = NULL;
        g_assert_false(smtp_cmd_parse(cases[i].line, cases[i].len, &c, &err));
        g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_LINE);
        guint code;
        const char *enh;
        smtp_parse_error_status(err, SMTP_CMD_UNKNOWN, &code, &enh);
        g_assert_cmpuint(code, ==, 500);
        g_assert_cmpstr(enh, ==, "5.5.2");
        g_clear_error(&err);
    }
    /* TAB is not a control we refuse */
    SmtpCmdLine c;
    g_assert_true(smtp_cmd_parse(S("NOOP a\tb"), &c, NULL));
    g_assert_cmpmem(c.arg, c.arg_len, "a\tb", 3);
}

/* ---- line framing ---- */

/* Runs input through a reader in chunks of `chunk` bytes; returns one
 * string per event: "OK:line", "LF:line" (bare LF) or "TOO_LONG". */
static GPtrArray *
run_lines(const char *in, gsize len, gsize chunk, gsize max)
{
    GPtrArray *ev = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GString) buf = g_string_new(NULL);
    SmtpLineReader r;

    smtp_line_init(&r, max);
    for (gsize off = 0; off < len; off += chunk) {
        g_string_append_len(buf, in + off, (gssize)MIN(chunk, len - off));
        for (;;) {
            const char *line;
            gsize ll, used;
            guint flags;
            SmtpLineStatus st = smtp_line_next(&r, buf->str, buf->len, &line, &ll, &used, &flags);
            g_assert_cmpuint(used, <=, buf->len);
            if (st == SMTP_LINE_OK) {
                g_assert_true(line >= buf->str && line + ll <= buf->str + used);
                g_ptr_array_add(ev,
                                g_strdup_printf("%s:%.*s", flags & SMTP_LINE_BARE_LF ? "LF" : "OK",
                                                (int)ll, line));
            } else if (st == SMTP_LINE_TOO_LONG) {
                g_assert_null(line);
                g_ptr_array_add(ev, g_strdup("TOO_LONG"));
            }
            g_string_erase(buf, 0, (gssize)used);
            if (st == SMTP_LINE_MORE)
                break;
        }
    }
    /* whatever is left is an incomplete line, never more than max */
    g_assert_cmpuint(buf->len, <, max);
    return ev;
}

static void
assert_events(GPtrArray *ev, const char *const *want)
{
    guint n = g_strv_length((char **)want);
    for (guint i = 0; i < MIN(ev->len, n); i++)
        g_assert_cmpstr(ev->pdata[i], ==, want[i]);
    g_assert_cmpuint(ev->len, ==, n);
}

static void
test_line_basic(void)
{
    static const char in[] = "EHLO x\r\nNOOP\nMAIL FROM:<a@b>\r\n\r\nQUIT\r\npartial";
    const char *const want[] = {"OK:EHLO x", "LF:NOOP", "OK:MAIL FROM:<a@b>",
                                "OK:",       "OK:QUIT", NULL};
    for (gsize chunk = 1; chunk <= sizeof in; chunk++) {
        g_autoptr(GPtrArray) ev = run_lines(in, sizeof in - 1, chunk, 512);
        assert_events(ev, want);
    }
}

static void
test_line_limit(void)
{
    /* 510 octets + CRLF = 512: fits; 511 + CRLF = 513: too long; the
     * 512-octet line ending in a bare LF fits. */
    g_autoptr(GString) in = g_string_new(NULL);
    g_autofree char *a510 = g_strnfill(510, 'a');
    g_autofree char *b511 = g_strnfill(511, 'b');
    g_string_append_printf(in, "%s\r\n%s\r\n%s\nNOOP\r\n", a510, b511, b511);
    g_autofree char *ok = g_strdup_printf("OK:%s", a510);
    g_autofree char *lf = g_strdup_printf("LF:%s", b511);
    const char *const want[] = {ok, "TOO_LONG", lf, "OK:NOOP", NULL};
    for (gsize chunk = 1; chunk < 1100; chunk = chunk * 3 + 1) {
        g_autoptr(GPtrArray) ev = run_lines(in->str, in->len, chunk, 512);
        assert_events(ev, want);
    }
}

static void
test_line_huge(void)
{
    /* 1 MB without CRLF: reported once, skipped, and the next command is
     * framed normally. A CR in the middle must not end the skip. */
    gsize big = 1024 * 1024;
    g_autoptr(GString) in = g_string_sized_new(big + 64);
    g_string_append(in, "MAIL FROM:<");
    while (in->len < big)
        g_string_append_c(in, in->len == big / 2 ? '\r' : 'x');
    g_string_append(in, ">\r\nRSET\r\nNOOP\r\n");
    const char *const want[] = {"TOO_LONG", "OK:RSET", "OK:NOOP", NULL};
    const gsize chunks[] = {in->len, 65536, 4096, 511, 1};
    for (guint i = 0; i < G_N_ELEMENTS(chunks); i++) {
        g_autoptr(GPtrArray) ev = run_lines(in->str, in->len, chunks[i], 512);
        assert_events(ev, want);
    }
}

/* ---- addresses ---- */

typedef struct {
    const char *path;
    gsize len; /* 0: strlen */
    guint flags;
    const char *address, *local, *domain;
    guint aflags;
} AddrCase;

static void
test_address_valid(void)
{
    const guint U = SMTP_PATH_SMTPUTF8;
    const AddrCase cases[] = {
        {"<a@b.example>", 0, 0, "a@b.example", "a", "b.example", 0},
        {"<First.Last@Example.COM>", 0, 0, "First.Last@Example.COM", "First.Last", "Example.COM",
         0},
        {"<\"a b\"@x.org>", 0, 0, "\"a b\"@x.org", "a b", "x.org", SMTP_ADDR_QUOTED},
        {"<\"a\\\"b\\\\c\"@x.org>", 0, 0, "\"a\\\"b\\\\c\"@x.org", "a\"b\\c", "x.org",
         SMTP_ADDR_QUOTED},
        {"<\"a@b>c\"@x.org>", 0, 0, "\"a@b>c\"@x.org", "a@b>c", "x.org", SMTP_ADDR_QUOTED},
        {"<@r1.example,@r2.example:u@d.example>", 0, 0, "u@d.example", "u", "d.example",
         SMTP_ADDR_ROUTE},
        {"<@r1.example:u@d.example>", 0, 0, "u@d.example", "u", "d.example", SMTP_ADDR_ROUTE},
        {"<u@[192.0.2.1]>", 0, 0, "u@[192.0.2.1]", "u", "[192.0.2.1]", SMTP_ADDR_LITERAL},
        {"<u@[IPv6:2001:db8::1]>", 0, 0, "u@[IPv6:2001:db8::1]", "u", "[IPv6:2001:db8::1]",
         SMTP_ADDR_LITERAL},
        {"<u@[ipv6:::ffff:192.0.2.1]>", 0, 0, "u@[ipv6:::ffff:192.0.2.1]", "u",
         "[ipv6:::ffff:192.0.2.1]", SMTP_ADDR_LITERAL},
        {"<u@[IPv6:1:2:3:4:5:6:7:8]>", 0, 0, "u@[IPv6:1:2:3:4:5:6:7:8]", "u",
         "[IPv6:1:2:3:4:5:6:7:8]", SMTP_ADDR_LITERAL},
        {"<u@[IPv6:::]>", 0, 0, "u@[IPv6:::]", "u", "[IPv6:::]", SMTP_ADDR_LITERAL},
        /* shell metacharacters are plain atext: kept as data */
        {"<|/bin/sh$HOME`id`&{x}~'!#%*+=?^_@x.example>", 0, 0,
         "|/bin/sh$HOME`id`&{x}~'!#%*+=?^_@x.example", "|/bin/sh$HOME`id`&{x}~'!#%*+=?^_",
         "x.example", 0},
        {"<\"$(reboot); rm -rf /\"@x.example>", 0, 0, "\"$(reboot); rm -rf /\"@x.example",
         "$(reboot); rm -rf /", "x.example", SMTP_ADDR_QUOTED},
        {"<δοκιμή@παράδειγμα.δοκιμή>", 0, U, "δοκιμή@παράδειγμα.δοκιμή", "δοκιμή",
         "παράδειγμα.δοκιμή", SMTP_ADDR_UTF8},
        {"<\"δ x\"@x.example>", 0, U, "\"δ x\"@x.example", "δ x", "x.example",
         SMTP_ADDR_UTF8 | SMTP_ADDR_QUOTED},
        {"<Postmaster>", 0, SMTP_PATH_POSTMASTER_OK, "Postmaster", "Postmaster", NULL,
         SMTP_ADDR_POSTMASTER},
        {"<postmaster@x.example>", 0, 0, "postmaster@x.example", "postmaster", "x.example", 0},
        {"<>", 0, SMTP_PATH_NULL_OK, "", "", NULL, SMTP_ADDR_NULL},
        {"<a-b.c_d@x-y.z9.example>", 0, 0, "a-b.c_d@x-y.z9.example", "a-b.c_d", "x-y.z9.example",
         0},
        {"<a@localhost>", 0, 0, "a@localhost", "a", "localhost", 0},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        const AddrCase *c = &cases[i];
        SmtpAddress a;
        GError *err = NULL;
        g_test_message("%s", c->path);
        gboolean ok =
            smtp_parse_path(c->path, c->len ? c->len : strlen(c->path), c->flags, &a, &err);
        g_assert_no_error(err);
        g_assert_true(ok);
        g_assert_cmpstr(a.address, ==, c->address);
        g_assert_cmpstr(a.local, ==, c->local);
        g_assert_cmpstr(a.domain, ==, c->domain);
        g_assert_cmphex(a.flags, ==, c->aflags);
        smtp_address_clear(&a);
        g_assert_null(a.address);
    }
}

static void
test_address_limits(void)
{
    SmtpAddress a;
    GError *err = NULL;
    g_autofree char *l64 = g_strnfill(64, 'l');
    g_autofree char *l65 = g_strnfill(65, 'l');
    g_autofree char *lab63 = g_strnfill(63, 'd');
    g_autofree char *lab64 = g_strnfill(64, 'd');

    g_autofree char *p1 = g_strdup_printf("<%s@x.example>", l64);
    g_assert_true(smtp_parse_path(p1, strlen(p1), 0, &a, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(a.local, ==, l64);
    smtp_address_clear(&a);

    g_autofree char *p2 = g_strdup_printf("<%s@x.example>", l65);
    g_assert_false(smtp_parse_path(p2, strlen(p2), 0, &a, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_ADDRESS);
    g_assert_null(a.address);
    g_clear_error(&err);

    g_autofree char *p3 = g_strdup_printf("<u@%s.example>", lab63);
    g_assert_true(smtp_parse_path(p3, strlen(p3), 0, &a, NULL));
    smtp_address_clear(&a);
    g_autofree char *p4 = g_strdup_printf("<u@%s.example>", lab64);
    g_assert_false(smtp_parse_path(p4, strlen(p4), 0, &a, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_ADDRESS);
    g_clear_error(&err);

    /* whole path: 256 octets with the brackets fit, 257 do not */
    g_autoptr(GString) dom = g_string_new(NULL);
    while (dom->len < 260)
        g_string_append(dom, "abcdefghi.");
    g_string_truncate(dom, 256 - strlen("<u@>") - 1);
    g_string_append_c(dom, 'z');
    g_autofree char *p5 = g_strdup_printf("<u@%s>", dom->str);
    g_assert_cmpuint(strlen(p5), ==, 256);
    g_assert_true(smtp_parse_path(p5, strlen(p5), 0, &a, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(strlen(a.domain), ==, 252);
    smtp_address_clear(&a);
    g_autofree char *p6 = g_strdup_printf("<uu@%s>", dom->str);
    g_assert_false(smtp_parse_path(p6, strlen(p6), 0, &a, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_ADDRESS);
    g_clear_error(&err);
}

static void
test_address_invalid(void)
{
    const guint U = SMTP_PATH_SMTPUTF8;
    const struct {
        const char *path;
        gsize len;
        guint flags;
        SmtpParseError code;
    } cases[] = {
        {S("<a\x01"
           "b@x.example>"),
         U, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@x.example\x7f>"), U, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a\0b@x.example>"), U, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@x.example\r\nRCPT TO:<b@y>"), U, SMTP_PARSE_ERROR_ADDRESS},
        {S("<\"a\tb\"@x.example>"), U, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a\xc2\x85"
           "b@x.example>"),
         U, SMTP_PARSE_ERROR_ADDRESS},                                /* C1 control NEL */
        {S("<\xc3\x28@x.example>"), U, SMTP_PARSE_ERROR_ADDRESS},     /* bad UTF-8 */
        {S("<\xc0\xaf@x.example>"), U, SMTP_PARSE_ERROR_ADDRESS},     /* overlong */
        {S("<\xed\xa0\x80@x.example>"), U, SMTP_PARSE_ERROR_ADDRESS}, /* surrogate */
        {S("<a@x.\xff>"), U, SMTP_PARSE_ERROR_ADDRESS},
        {S("<δ@x.example>"), 0, SMTP_PARSE_ERROR_NEED_SMTPUTF8},
        {S("<a@παράδειγμα.example>"), 0, SMTP_PARSE_ERROR_NEED_SMTPUTF8},
        {S("<>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<postmaster>"), SMTP_PATH_NULL_OK, SMTP_PARSE_ERROR_ADDRESS},
        {S("<\"postmaster\">"), SMTP_PATH_POSTMASTER_OK, SMTP_PARSE_ERROR_ADDRESS},
        {S("<postmasterx>"), SMTP_PATH_POSTMASTER_OK, SMTP_PARSE_ERROR_ADDRESS},
        {S("<user>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a..b@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<.a@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a.@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a b@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a(b)@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a\"b\"@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<\"\"@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<\"abc@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<\"a\\"), 0, SMTP_PARSE_ERROR_SYNTAX},
        {S("<a@b@x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@-x.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@x-.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@x..example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@x.example.>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@x_y.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[1.2.3]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[256.1.1.1]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[1.2.3.4.5]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[1.2.3.0004]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[IPv6:1::2::3]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[IPv6:1:2:3:4:5:6:7]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[IPv6:1:2:3:4:5:6:7:8:9]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[IPv6:12345::1]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[IPv6:1:]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[IPv6::1]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[IPv6:g::1]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[1.2.3.4]x>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<a@[x-tag:foo]>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<@a.example:>"), SMTP_PATH_NULL_OK, SMTP_PARSE_ERROR_ADDRESS},
        {S("<@a.example,b.example:u@d.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<@a_b:u@d.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("<@a.example u@d.example>"), 0, SMTP_PARSE_ERROR_ADDRESS},
        {S("a@x.example"), 0, SMTP_PARSE_ERROR_SYNTAX},
        {S("<a@x.example"), 0, SMTP_PARSE_ERROR_SYNTAX},
        {S("<"), SMTP_PATH_NULL_OK, SMTP_PARSE_ERROR_SYNTAX},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        SmtpAddress a;
        GError *err = NULL;
        g_autofree char *shown = g_strescape(cases[i].path, NULL);
        g_test_message("%s", shown);
        g_assert_false(smtp_parse_path(cases[i].path, cases[i].len, cases[i].flags, &a, &err));
        g_assert_error(err, SMTP_PARSE_ERROR, (gint)cases[i].code);
        g_assert_null(a.address);
        g_assert_null(a.local);
        /* the error text is safe to put in a reply */
        for (const char *m = err->message; *m; m++)
            g_assert_true(*m >= 0x20 && *m < 0x7f);
        g_clear_error(&err);
    }
}

static void
test_address_lower_domain(void)
{
    g_autofree char *a = smtp_address_lower_domain("Mixed.Case@EXAMPLE.Com");
    g_autofree char *b = smtp_address_lower_domain("\"A@B\"@X.EXAMPLE");
    g_autofree char *c = smtp_address_lower_domain("Postmaster");
    g_autofree char *d = smtp_address_lower_domain("U@[IPv6:2001:DB8::1]");
    g_assert_cmpstr(a, ==, "Mixed.Case@example.com");
    g_assert_cmpstr(b, ==, "\"A@B\"@x.example");
    g_assert_cmpstr(c, ==, "Postmaster");
    g_assert_cmpstr(d, ==, "U@[ipv6:2001:db8::1]");
}

static void
test_domain_check(void)
{
    GError *err = NULL;
    g_assert_true(smtp_check_domain(S("mail.example.com"), FALSE, FALSE, NULL));
    g_assert_true(smtp_check_domain(S("[192.0.2.7]"), TRUE, FALSE, NULL));
    g_assert_true(smtp_check_domain(S("[IPv6:::1]"), TRUE, FALSE, NULL));
    g_assert_true(smtp_check_domain(S("bücher.example"), FALSE, TRUE, NULL));
    g_assert_false(smtp_check_domain(S("[192.0.2.7]"), FALSE, FALSE, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_ADDRESS);
    g_clear_error(&err);
    g_assert_false(smtp_check_domain(S("bücher.example"), FALSE, FALSE, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_NEED_SMTPUTF8);
    g_clear_error(&err);
    g_assert_false(smtp_check_domain(S("user-pc_1"), TRUE, TRUE, NULL));
    g_assert_false(smtp_check_domain(S(""), TRUE, TRUE, NULL));
    g_assert_false(smtp_check_domain(S("a\nb"), TRUE, TRUE, NULL));
}

/* ---- ESMTP parameters, xtext ---- */

static void
test_params_split(void)
{
    GError *err = NULL;
    g_autoptr(GArray) a = smtp_params_split(S("  SIZE=10 BODY=8BITMIME  SMTPUTF8 X-Y=a+2B "), &err);
    g_assert_no_error(err);
    g_assert_nonnull(a);
    g_assert_cmpuint(a->len, ==, 4);
    const SmtpParam *p = (const SmtpParam *)(void *)a->data;
    g_assert_cmpmem(p[0].key, p[0].key_len, "SIZE", 4);
    g_assert_cmpmem(p[0].value, p[0].value_len, "10", 2);
    g_assert_cmpmem(p[1].value, p[1].value_len, "8BITMIME", 8);
    g_assert_cmpmem(p[2].key, p[2].key_len, "SMTPUTF8", 8);
    g_assert_null(p[2].value);
    g_assert_cmpmem(p[3].key, p[3].key_len, "X-Y", 3);
    g_assert_cmpmem(p[3].value, p[3].value_len, "a+2B", 4);

    g_autoptr(GArray) e = smtp_params_split(S(""), &err);
    g_assert_no_error(err);
    g_assert_cmpuint(e->len, ==, 0);

    static const char *const bad[] = {"=x",     "-A=1",  "A=",     "A=b=c",
                                      "A=\x01", "A\x7f", "A=b\tc", "A=\xc3\xa9"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_null(smtp_params_split(bad[i], strlen(bad[i]), &err));
        g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_PARAM);
        g_clear_error(&err);
    }
}

static void
test_xtext(void)
{
    GError *err = NULL;
    g_autofree char *a = smtp_xtext_decode(S("a+2Bb+3Dc+2b"), &err);
    g_assert_no_error(err);
    g_assert_cmpstr(a, ==, "a+b=c+");
    g_autofree char *u = smtp_xtext_decode(S("+C3+A9"), &err);
    g_assert_cmpstr(u, ==, "é");

    static const char *const bad[] = {"+4",  "+",      "+ZZ", "a=b", "a b",
                                      "+00", "+0D+0A", "+FF", "+7F"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_null(smtp_xtext_decode(bad[i], strlen(bad[i]), &err));
        g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_PARAM);
        g_clear_error(&err);
    }

    static const char orig[] = "user+tag=x é@example.org";
    g_autoptr(GString) enc = g_string_new(NULL);
    smtp_xtext_encode(enc, orig, strlen(orig));
    g_assert_cmpstr(enc->str, ==, "user+2Btag+3Dx+20+C3+A9@example.org");
    g_autofree char *back = smtp_xtext_decode(enc->str, enc->len, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(back, ==, orig);
}

static void
test_mail(void)
{
    SmtpMailArgs m;
    GError *err = NULL;

    g_assert_true(
        smtp_parse_mail(S("FROM:<a@b.example> SIZE=12345 BODY=8BITMIME"), SMTP_EXT_ALL, &m, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(m.addr.address, ==, "a@b.example");
    g_assert_true(m.size_given);
    g_assert_cmpuint(m.size, ==, 12345);
    g_assert_cmpint(m.body, ==, SMTP_BODY_8BITMIME);
    g_assert_false(m.smtputf8);
    g_assert_cmpint(m.ret, ==, SMTP_RET_NONE);
    g_assert_null(m.envid);
    smtp_mail_args_clear(&m);

    /* lowercase prefix, space after the colon, null sender, DSN */
    g_assert_true(
        smtp_parse_mail(S("from: <> ret=hdrs ENVID=QQ+2B1 body=7bit"), SMTP_EXT_ALL, &m, &err));
    g_assert_no_error(err);
    g_assert_true(m.addr.flags & SMTP_ADDR_NULL);
    g_assert_cmpstr(m.addr.address, ==, "");
    g_assert_false(m.size_given);
    g_assert_cmpint(m.ret, ==, SMTP_RET_HDRS);
    g_assert_cmpstr(m.envid, ==, "QQ+1");
    g_assert_cmpint(m.body, ==, SMTP_BODY_7BIT);
    smtp_mail_args_clear(&m);

    /* SMTPUTF8 allows a UTF-8 sender; AUTH= is accepted and ignored */
    g_assert_true(smtp_parse_mail(S("FROM:<δ@x.example> SMTPUTF8 AUTH=<> RET=FULL "
                                    "SIZE=18446744073709551615"),
                                  SMTP_EXT_ALL, &m, &err));
    g_assert_no_error(err);
    g_assert_true(m.smtputf8);
    g_assert_true(m.addr.flags & SMTP_ADDR_UTF8);
    g_assert_cmpint(m.ret, ==, SMTP_RET_FULL);
    g_assert_cmpuint(m.size, ==, G_MAXUINT64);
    smtp_mail_args_clear(&m);

    g_assert_true(smtp_parse_mail(S("FROM:<a@b> BODY=BINARYMIME"), SMTP_EXT_BINARYMIME, &m, &err));
    g_assert_cmpint(m.body, ==, SMTP_BODY_BINARYMIME);
    smtp_mail_args_clear(&m);

    g_assert_true(smtp_parse_mail(S("FROM:<\"a>b c\"@x.example> SIZE=1"), SMTP_EXT_ALL, &m, &err));
    g_assert_cmpstr(m.addr.local, ==, "a>b c");
    g_assert_cmpuint(m.size, ==, 1);
    smtp_mail_args_clear(&m);

    const struct {
        const char *arg;
        guint ext;
        SmtpParseError code;
        guint reply;
        const char *enh;
    } bad[] = {
        {"FROM:<a@b> FOO=1", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM_UNKNOWN, 555, "5.5.4"},
        {"FROM:<a@b> SIZE=1", 0, SMTP_PARSE_ERROR_PARAM_UNKNOWN, 555, "5.5.4"},
        {"FROM:<a@b> NOTIFY=NEVER", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM_UNKNOWN, 555, "5.5.4"},
        {"FROM:<a@b> SMTPUTF8", SMTP_EXT_ALL & ~SMTP_EXT_SMTPUTF8, SMTP_PARSE_ERROR_PARAM_UNKNOWN,
         555, "5.5.4"},
        {"FROM:<a@b> SIZE=1 size=2", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"FROM:<a@b> SIZE=18446744073709551616", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501,
         "5.5.4"},
        {"FROM:<a@b> SIZE=-1", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"FROM:<a@b> SIZE", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"FROM:<a@b> SMTPUTF8=yes", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"FROM:<a@b> BODY=BINARYMIME", SMTP_EXT_ALL & ~SMTP_EXT_BINARYMIME, SMTP_PARSE_ERROR_PARAM,
         501, "5.5.4"},
        {"FROM:<a@b> BODY=9BIT", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"FROM:<a@b> RET=BOTH", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"FROM:<a@b> ENVID=a+ZZ", SMTP_EXT_ALL, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"FROM:<δ@x.example>", SMTP_EXT_ALL, SMTP_PARSE_ERROR_NEED_SMTPUTF8, 553, "5.6.7"},
        {"FROM:<a@b..c>", SMTP_EXT_ALL, SMTP_PARSE_ERROR_ADDRESS, 501, "5.1.7"},
        {"FROM:a@b", SMTP_EXT_ALL, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
        {"FROM<a@b>", SMTP_EXT_ALL, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
        {"TO:<a@b>", SMTP_EXT_ALL, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
        {"FROM:<a@b>SIZE=1", SMTP_EXT_ALL, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
        {"FROM:<a@b", SMTP_EXT_ALL, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
        {"FROM:", SMTP_EXT_ALL, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        guint code;
        const char *enh;
        g_test_message("%s", bad[i].arg);
        g_assert_false(smtp_parse_mail(bad[i].arg, strlen(bad[i].arg), bad[i].ext, &m, &err));
        g_assert_error(err, SMTP_PARSE_ERROR, (gint)bad[i].code);
        g_assert_null(m.addr.address);
        g_assert_null(m.envid);
        smtp_parse_error_status(err, SMTP_CMD_MAIL, &code, &enh);
        g_assert_cmpuint(code, ==, bad[i].reply);
        g_assert_cmpstr(enh, ==, bad[i].enh);
        g_clear_error(&err);
    }

    /* ENVID: 100 octets of xtext fit, 101 do not */
    g_autofree char *x100 = g_strnfill(100, 'e');
    g_autofree char *e100 = g_strdup_printf("FROM:<a@b> ENVID=%s", x100);
    g_autofree char *e101 = g_strdup_printf("FROM:<a@b> ENVID=%se", x100);
    g_assert_true(smtp_parse_mail(e100, strlen(e100), SMTP_EXT_ALL, &m, &err));
    g_assert_cmpstr(m.envid, ==, x100);
    smtp_mail_args_clear(&m);
    g_assert_false(smtp_parse_mail(e101, strlen(e101), SMTP_EXT_ALL, &m, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_PARAM);
    g_clear_error(&err);
}

static void
test_rcpt(void)
{
    SmtpRcptArgs r;
    GError *err = NULL;

    g_assert_true(smtp_parse_rcpt(S("TO:<c@d.example> NOTIFY=SUCCESS,delay ORCPT=rfc822;c+40d"),
                                  SMTP_EXT_ALL, FALSE, &r, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(r.addr.address, ==, "c@d.example");
    g_assert_cmphex(r.notify, ==, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY);
    g_assert_cmpstr(r.orcpt_type, ==, "rfc822");
    g_assert_cmpstr(r.orcpt_addr, ==, "c@d");
    smtp_rcpt_args_clear(&r);

    g_assert_true(
        smtp_parse_rcpt(S("to: <Postmaster> NOTIFY=NEVER"), SMTP_EXT_ALL, FALSE, &r, &err));
    g_assert_no_error(err);
    g_assert_true(r.addr.flags & SMTP_ADDR_POSTMASTER);
    g_assert_cmphex(r.notify, ==, SMTP_NOTIFY_NEVER);
    g_assert_null(r.orcpt_type);
    smtp_rcpt_args_clear(&r);

    g_assert_true(smtp_parse_rcpt(S("TO:<@hop.example:δ@x.example>"), 0, TRUE, &r, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(r.addr.address, ==, "δ@x.example");
    g_assert_cmphex(r.addr.flags, ==, SMTP_ADDR_ROUTE | SMTP_ADDR_UTF8);
    g_assert_cmphex(r.notify, ==, 0);
    smtp_rcpt_args_clear(&r);

    const struct {
        const char *arg;
        gboolean utf8;
        SmtpParseError code;
        guint reply;
        const char *enh;
    } bad[] = {
        {"TO:<>", FALSE, SMTP_PARSE_ERROR_ADDRESS, 501, "5.1.3"},
        {"TO:<δ@x.example>", FALSE, SMTP_PARSE_ERROR_NEED_SMTPUTF8, 553, "5.6.7"},
        {"TO:<a@b> SIZE=1", FALSE, SMTP_PARSE_ERROR_PARAM_UNKNOWN, 555, "5.5.4"},
        {"TO:<a@b> NOTIFY=NEVER,SUCCESS", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b> NOTIFY=SUCCESS,", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b> NOTIFY=SOMETIMES", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b> NOTIFY=DELAY NOTIFY=DELAY", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b> ORCPT=rfc822", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b> ORCPT=rfc822;", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b> ORCPT=;a@b", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b> ORCPT=rfc822;a+0Ab", FALSE, SMTP_PARSE_ERROR_PARAM, 501, "5.5.4"},
        {"TO:<a@b", FALSE, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
        {"FROM:<a@b>", FALSE, SMTP_PARSE_ERROR_SYNTAX, 501, "5.5.2"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        guint code;
        const char *enh;
        g_test_message("%s", bad[i].arg);
        g_assert_false(
            smtp_parse_rcpt(bad[i].arg, strlen(bad[i].arg), SMTP_EXT_ALL, bad[i].utf8, &r, &err));
        g_assert_error(err, SMTP_PARSE_ERROR, (gint)bad[i].code);
        g_assert_null(r.addr.address);
        g_assert_null(r.orcpt_addr);
        smtp_parse_error_status(err, SMTP_CMD_RCPT, &code, &enh);
        g_assert_cmpuint(code, ==, bad[i].reply);
        g_assert_cmpstr(enh, ==, bad[i].enh);
        g_clear_error(&err);
    }
    /* DSN parameters on RCPT need DSN offered */
    g_assert_false(
        smtp_parse_rcpt(S("TO:<a@b> NOTIFY=NEVER"), SMTP_EXT_ALL & ~SMTP_EXT_DSN, FALSE, &r, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_PARAM_UNKNOWN);
    g_clear_error(&err);
}

/* ---- DATA ---- */

typedef struct {
    GString *out;
    guint calls;
} Sink;

static void
sink_cb(const char *data, gsize len, gpointer ud)
{
    Sink *s = ud;
    g_assert_cmpuint(len, >, 0);
    g_string_append_len(s->out, data, (gssize)len);
    s->calls++;
}

typedef struct {
    GString *out;
    guint calls;
    guint flags;
    guint64 size;
    gsize consumed; /* bytes consumed when done, or len if never done */
    gboolean done;
} DataRun;

static void
data_run_clear(DataRun *r)
{
    g_string_free(r->out, TRUE);
}

/* Feeds in[0..len) in chunks; stops handing in bytes once done. */
static DataRun
run_data(const char *in, gsize len, gsize chunk, guint64 max_size, gsize max_line)
{
    SmtpDataParser p;
    Sink s = {g_string_new(NULL), 0};
    DataRun r = {0};
    gsize off = 0;

    smtp_data_init(&p, max_size);
    p.max_line = max_line;
    while (off < len && !r.done) {
        gsize n = MIN(chunk, len - off);
        gsize used = smtp_data_feed(&p, in + off, n, sink_cb, &s, &r.done);
        g_assert_cmpuint(used, <=, n);
        if (!r.done)
            g_assert_cmpuint(used, ==, n);
        off += used;
    }
    g_assert_cmpuint(p.consumed, ==, off);
    if (r.done) {
        /* once done, nothing more is taken */
        gboolean d2 = FALSE;
        g_assert_cmpuint(smtp_data_feed(&p, "x\r\n", 3, sink_cb, &s, &d2), ==, 0);
        g_assert_true(d2);
    }
    r.out = s.out;
    r.calls = s.calls;
    r.flags = p.flags;
    r.size = p.size;
    r.consumed = off;
    return r;
}

/* Whole, odd chunks and byte-by-byte must agree on everything. */
static DataRun
run_data_all(const char *in, gsize len, guint64 max_size, gsize max_line)
{
    DataRun whole = run_data(in, len, len ? len : 1, max_size, max_line);
    const gsize chunks[] = {1, 2, 3, 7, 64};
    for (guint i = 0; i < G_N_ELEMENTS(chunks); i++) {
        DataRun r = run_data(in, len, chunks[i], max_size, max_line);
        if (!(whole.flags & SMTP_DATA_ERRORS)) {
            g_assert_cmpmem(r.out->str, r.out->len, whole.out->str, whole.out->len);
        } else {
            /* after an error the output is cut short, at a point that
             * depends on chunking; both are prefixes of the content */
            const GString *a = r.out->len < whole.out->len ? r.out : whole.out;
            const GString *b = a == r.out ? whole.out : r.out;
            g_assert_cmpmem(a->str, a->len, b->str, a->len);
        }
        g_assert_cmphex(r.flags, ==, whole.flags);
        g_assert_cmpuint(r.size, ==, whole.size);
        g_assert_cmpuint(r.consumed, ==, whole.consumed);
        g_assert_cmpint(r.done, ==, whole.done);
        data_run_clear(&r);
    }
    return whole;
}

static void
test_data_basic(void)
{
    static const char in[] = "Subject: hi\r\n"
                             "\r\n"
                             "Hello\r\n"
                             "..leading dot\r\n"
                             ".x\r\n"
                             "...\r\n"
                             " .\r\n"
                             "a.\r\n"
                             "\r\n"
                             ".\r\n"
                             "QUIT\r\n";
    static const char want[] = "Subject: hi\r\n"
                               "\r\n"
                               "Hello\r\n"
                               ".leading dot\r\n"
                               "x\r\n"
                               "..\r\n"
                               " .\r\n"
                               "a.\r\n"
                               "\r\n";
    DataRun r = run_data_all(S(in), 0, SMTP_MAX_TEXT_LINE);
    g_assert_true(r.done);
    g_assert_cmpmem(r.out->str, r.out->len, want, sizeof want - 1);
    g_assert_cmphex(r.flags, ==, 0);
    g_assert_cmpuint(r.size, ==, sizeof want - 1);
    g_assert_cmpuint(r.consumed, ==, sizeof in - 1 - strlen("QUIT\r\n"));
    guint code;
    const char *enh, *text;
    g_assert_false(smtp_data_error_status(r.flags, &code, &enh, &text));
    data_run_clear(&r);

    /* batching: one sink call for a message fed whole */
    DataRun w = run_data(S("a\r\nb\r\nc\r\n.\r\n"), 1 << 20, 0, 1000);
    g_assert_cmpuint(w.calls, ==, 1);
    g_assert_cmpstr(w.out->str, ==, "a\r\nb\r\nc\r\n");
    data_run_clear(&w);
}

static void
test_data_empty(void)
{
    DataRun r = run_data_all(S(".\r\nRSET\r\n"), 0, SMTP_MAX_TEXT_LINE);
    g_assert_true(r.done);
    g_assert_cmpuint(r.out->len, ==, 0);
    g_assert_cmpuint(r.calls, ==, 0);
    g_assert_cmpuint(r.consumed, ==, 3);
    g_assert_cmpuint(r.size, ==, 0);
    data_run_clear(&r);

    /* an empty line then the terminator: content is one CRLF */
    DataRun e = run_data_all(S("\r\n.\r\n"), 0, SMTP_MAX_TEXT_LINE);
    g_assert_true(e.done);
    g_assert_cmpstr(e.out->str, ==, "\r\n");
    g_assert_cmpuint(e.consumed, ==, 5);
    data_run_clear(&e);

    /* no terminator yet: not done, everything consumed */
    DataRun n = run_data_all(S("a\r\n.\r"), 0, SMTP_MAX_TEXT_LINE);
    g_assert_false(n.done);
    g_assert_cmpuint(n.consumed, ==, 5);
    g_assert_cmpstr(n.out->str, ==, "a\r\n");
    data_run_clear(&n);
}

static void
test_data_smuggling(void)
{
    static const struct {
        const char *seq;
        guint flag;
    } variants[] = {
        {"\n.\n", SMTP_DATA_BARE_LF},   {"\n.\r\n", SMTP_DATA_BARE_LF},
        {"\r\n.\n", SMTP_DATA_BARE_LF}, {"\r.\r", SMTP_DATA_BARE_CR},
        {"\r\n.\r", SMTP_DATA_BARE_CR}, {"\r.\r\n", SMTP_DATA_BARE_CR},
    };
    static const char *const prefixes[] = {"", "Subject: t\r\n\r\nbody", "body\r\n"};
    static const char smuggled[] = "MAIL FROM:<evil@x.example>\r\n"
                                   "RCPT TO:<victim@y.example>\r\n"
                                   "DATA\r\n"
                                   "From: spoofed\r\n";
    for (guint v = 0; v < G_N_ELEMENTS(variants); v++) {
        for (guint p = 0; p < G_N_ELEMENTS(prefixes); p++) {
            g_autoptr(GString) in = g_string_new(prefixes[p]);
            g_string_append(in, variants[v].seq);
            g_string_append(in, smuggled);
            gsize end = in->len + 5;
            g_string_append(in, "\r\n.\r\nNOOP\r\n");
            g_autofree char *shown = g_strescape(in->str, NULL);
            g_test_message("%s", shown);

            DataRun r = run_data_all(in->str, in->len, 0, SMTP_MAX_TEXT_LINE);
            g_assert_true(r.done);
            g_assert_cmpuint(r.consumed, ==, end);
            g_assert_cmphex(r.flags & SMTP_DATA_ERRORS, ==, variants[v].flag);
            guint code;
            const char *enh, *text;
            g_assert_true(smtp_data_error_status(r.flags, &code, &enh, &text));
            g_assert_cmpuint(code, ==, 554);
            g_assert_cmpstr(enh, ==, "5.6.0");
            /* nothing from the smuggled part reaches the sink */
            g_assert_null(g_strstr_len(r.out->str, (gssize)r.out->len, "MAIL FROM"));
            data_run_clear(&r);

            /* the sequence alone (plus what follows) must never end DATA */
            g_autoptr(GString) alone = g_string_new(prefixes[p]);
            g_string_append(alone, variants[v].seq);
            g_string_append(alone, smuggled);
            DataRun a = run_data_all(alone->str, alone->len, 0, SMTP_MAX_TEXT_LINE);
            g_assert_false(a.done);
            g_assert_cmpuint(a.consumed, ==, alone->len);
            data_run_clear(&a);
        }
    }
}

static void
test_data_bare(void)
{
    static const struct {
        const char *in;
        guint flags;
    } cases[] = {
        {"a\nb\r\n.\r\n", SMTP_DATA_BARE_LF}, {"a\rb\r\n.\r\n", SMTP_DATA_BARE_CR},
        {"a\r\r\n.\r\n", SMTP_DATA_BARE_CR},  {"\n.\r\n.\r\n", SMTP_DATA_BARE_LF},
        {".\n.\r\n.\r\n", SMTP_DATA_BARE_LF}, {".\r.\r\n.\r\n", SMTP_DATA_BARE_CR},
        {".\r\r\n.\r\n", SMTP_DATA_BARE_CR},  {"a\r\n.\rX\r\n.\r\n", SMTP_DATA_BARE_CR},
        {"a\n\r\n.\r\n", SMTP_DATA_BARE_LF},  {"a\r\n\r\r\n.\r\n", SMTP_DATA_BARE_CR},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *shown = g_strescape(cases[i].in, NULL);
        g_test_message("%s", shown);
        DataRun r = run_data_all(cases[i].in, strlen(cases[i].in), 0, SMTP_MAX_TEXT_LINE);
        g_assert_true(r.done);
        g_assert_cmpuint(r.consumed, ==, strlen(cases[i].in));
        g_assert_cmphex(r.flags, ==, cases[i].flags);
        data_run_clear(&r);
    }

    /* after an error the sink gets nothing more: output is a prefix of
     * what came before the bad byte */
    static const char in[] = "good line\r\nbad\nline\r\nmore\r\n.\r\n";
    DataRun r = run_data(S(in), 1, 0, SMTP_MAX_TEXT_LINE);
    g_assert_true(r.done);
    g_assert_cmpuint(r.out->len, <=, strlen("good line\r\nbad"));
    g_assert_true(g_str_has_prefix("good line\r\nbad", r.out->str));
    data_run_clear(&r);
}

static void
test_data_size_limit(void)
{
    /* content "0123456789\r\n" is 12 octets */
    static const char in[] = "0123456789\r\n.\r\nQUIT\r\n";
    DataRun ok = run_data_all(S(in), 12, SMTP_MAX_TEXT_LINE);
    g_assert_true(ok.done);
    g_assert_cmphex(ok.flags, ==, 0);
    g_assert_cmpuint(ok.size, ==, 12);
    data_run_clear(&ok);

    DataRun big = run_data_all(S(in), 11, SMTP_MAX_TEXT_LINE);
    g_assert_true(big.done);
    g_assert_cmphex(big.flags, ==, SMTP_DATA_TOO_BIG);
    g_assert_cmpuint(big.size, ==, 12);
    g_assert_cmpuint(big.consumed, ==, sizeof in - 1 - strlen("QUIT\r\n"));
    guint code;
    const char *enh, *text;
    g_assert_true(smtp_data_error_status(big.flags, &code, &enh, &text));
    g_assert_cmpuint(code, ==, 552);
    g_assert_cmpstr(enh, ==, "5.3.4");
    data_run_clear(&big);

    /* dot-stuffing does not count towards the size */
    DataRun st = run_data_all(S("..ab\r\n.\r\n"), 5, SMTP_MAX_TEXT_LINE);
    g_assert_cmphex(st.flags, ==, 0);
    g_assert_cmpuint(st.size, ==, 5);
    data_run_clear(&st);
}

static void
test_data_long_line(void)
{
    g_autofree char *l998 = g_strnfill(998, 'x');
    g_autofree char *l999 = g_strnfill(999, 'y');
    g_autofree char *ok = g_strdup_printf("%s\r\n.%s\r\n.\r\n", l998, l998);
    g_autofree char *bad = g_strdup_printf("short\r\n%s\r\nshort\r\n.\r\n", l999);

    DataRun a = run_data_all(ok, strlen(ok), 0, SMTP_MAX_TEXT_LINE);
    g_assert_true(a.done);
    g_assert_cmphex(a.flags, ==, 0);
    g_assert_cmpuint(a.size, ==, 2 * 1000);
    data_run_clear(&a);

    DataRun b = run_data_all(bad, strlen(bad), 0, SMTP_MAX_TEXT_LINE);
    g_assert_true(b.done);
    g_assert_cmphex(b.flags, ==, SMTP_DATA_LINE_TOO_LONG);
    g_assert_cmpuint(b.consumed, ==, strlen(bad));
    guint code;
    const char *enh, *text;
    g_assert_true(smtp_data_error_status(b.flags, &code, &enh, &text));
    g_assert_cmpuint(code, ==, 554);
    data_run_clear(&b);

    /* max_line = 0 turns the check off */
    DataRun c = run_data_all(bad, strlen(bad), 0, 0);
    g_assert_cmphex(c.flags, ==, 0);
    g_assert_cmpuint(c.out->len, ==, strlen(bad) - 3);
    data_run_clear(&c);
}

static void
test_data_trickle(void)
{
    /* A message with every feature at once; run_data_all compares fed
     * whole, in chunks and byte by byte. 8-bit and NUL are noted only. */
    g_autoptr(GString) in = g_string_new(NULL);
    g_autoptr(GString) want = g_string_new(NULL);
    for (int i = 0; i < 50; i++) {
        g_string_append_printf(in, "line %d\r\n..dot %d\r\n\r\n.\r\n", i, i);
        g_string_append_printf(want, "line %d\r\n.dot %d\r\n\r\n", i, i);
        in->str[in->len - 3] = 'z';
        g_string_append(want, "z\r\n");
    }
    g_string_append(in, "caf\xc3\xa9 x\r\n");
    g_string_append_len(in, "nul\0\r\n", 6);
    g_string_append(want, "caf\xc3\xa9 x\r\n");
    g_string_append_len(want, "nul\0\r\n", 6);
    gsize end = in->len + 3;
    g_string_append(in, ".\r\nMAIL FROM:<next@x.example>\r\n");

    DataRun r = run_data_all(in->str, in->len, 0, SMTP_MAX_TEXT_LINE);
    g_assert_true(r.done);
    g_assert_cmpmem(r.out->str, r.out->len, want->str, want->len);
    g_assert_cmphex(r.flags, ==, SMTP_DATA_8BIT | SMTP_DATA_NUL);
    g_assert_cmpuint(r.consumed, ==, end);
    g_assert_cmpuint(r.size, ==, want->len);
    data_run_clear(&r);
}

static void
test_data_pipelined(void)
{
    /* The terminator split over two feeds: the held CR never leaks into
     * the content, and the commands after it are left for the caller. */
    SmtpDataParser p;
    Sink s = {g_string_new(NULL), 0};
    gboolean done = FALSE;

    smtp_data_init(&p, 0);
    g_assert_cmpuint(smtp_data_feed(&p, S("body\r\n.\r"), sink_cb, &s, &done), ==, 8);
    g_assert_false(done);
    g_assert_cmpuint(smtp_data_feed(&p, S("\nRSET\r\nQUIT\r\n"), sink_cb, &s, &done), ==, 1);
    g_assert_true(done);
    g_assert_cmpstr(s.out->str, ==, "body\r\n");
    g_assert_cmpuint(p.consumed, ==, 9);
    g_assert_cmpuint(p.size, ==, 6);
    g_string_free(s.out, TRUE);

    /* a NULL sink only counts */
    smtp_data_init(&p, 0);
    g_assert_cmpuint(smtp_data_feed(&p, S("abc\r\n.\r\nX"), NULL, NULL, &done), ==, 8);
    g_assert_true(done);
    g_assert_cmpuint(p.size, ==, 5);
}

static void
test_data_random(void)
{
    /* Random soup of 'a', '.', CR and LF against a reference: DATA ends
     * right after the first CRLF "." CRLF (counting an implicit CRLF
     * before the data), bare CR/LF flags follow the raw bytes, and clean
     * content is the lines with one leading dot removed. */
    static const char alphabet[] = {'a', '.', '\r', '\n', '\r', '\n'};
    for (guint iter = 0; iter < 3000; iter++) {
        g_autoptr(GString) in = g_string_new(NULL);
        guint n = (guint)g_test_rand_int_range(0, 24);
        for (guint i = 0; i < n; i++)
            g_string_append_c(in, alphabet[g_test_rand_int_range(0, sizeof alphabet)]);
        g_string_append(in, "\r\n.\r\n");

        g_autoptr(GString) pre = g_string_new("\r\n");
        g_string_append_len(pre, in->str, (gssize)in->len);
        const char *t = g_strstr_len(pre->str, (gssize)pre->len, "\r\n.\r\n");
        gsize end = (gsize)(t - pre->str) + 3; /* in `in` coordinates */
        gsize clen = end - 3;
        guint flags = 0;
        for (gsize i = 0; i < clen; i++) {
            if (in->str[i] == '\n' && (i == 0 || in->str[i - 1] != '\r'))
                flags |= SMTP_DATA_BARE_LF;
            if (in->str[i] == '\r' && in->str[i + 1] != '\n')
                flags |= SMTP_DATA_BARE_CR;
        }
        g_autofree char *shown = g_strescape(in->str, NULL);
        g_test_message("%s", shown);

        DataRun r = run_data_all(in->str, in->len, 0, 0);
        g_assert_true(r.done);
        g_assert_cmpuint(r.consumed, ==, end);
        g_assert_cmphex(r.flags, ==, flags);
        if (!flags) {
            g_autoptr(GString) want = g_string_new(NULL);
            for (gsize i = 0; i < clen; i++)
                if (!(in->str[i] == '.' && (i == 0 || in->str[i - 1] == '\n')))
                    g_string_append_c(want, in->str[i]);
            g_assert_cmpmem(r.out->str, r.out->len, want->str, want->len);
            g_assert_cmpuint(r.size, ==, want->len);
        }
        data_run_clear(&r);
    }
}

/* ---- BDAT ---- */

static void
test_bdat_args(void)
{
    static const struct {
        const char *arg;
        guint64 size;
        gboolean last;
    } good[] = {
        {"1000", 1000, FALSE},
        {"0 LAST", 0, TRUE},
        {"42 last", 42, TRUE},
        {"007  LAST", 7, TRUE},
        {"18446744073709551615 LAST", G_MAXUINT64, TRUE},
    };
    for (guint i = 0; i < G_N_ELEMENTS(good); i++) {
        guint64 size = 1;
        gboolean last = !good[i].last;
        GError *err = NULL;
        g_assert_true(smtp_parse_bdat(good[i].arg, strlen(good[i].arg), &size, &last, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(size, ==, good[i].size);
        g_assert_cmpint(last, ==, good[i].last);
    }
    static const char *const bad[] = {"",
                                      "LAST",
                                      "-1",
                                      "+1",
                                      "1 FIRST",
                                      "10LAST",
                                      "10 LAST x",
                                      "1.5",
                                      "0x10",
                                      "10 LASTER",
                                      "18446744073709551616"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        guint64 size;
        gboolean last;
        GError *err = NULL;
        g_test_message("%s", bad[i]);
        g_assert_false(smtp_parse_bdat(bad[i], strlen(bad[i]), &size, &last, &err));
        g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_SYNTAX);
        g_clear_error(&err);
    }
}

static guint
crlf_split(const char *in, gsize len, gsize at, gsize max_line)
{
    SmtpCrlfCheck c;
    smtp_crlf_check_init(&c, max_line);
    smtp_crlf_check_feed(&c, in, at);
    smtp_crlf_check_feed(&c, in + at, len - at);
    return smtp_crlf_check_finish(&c);
}

static void
test_bdat_crlf(void)
{
    static const struct {
        const char *in;
        guint flags;
    } cases[] = {
        {"a\r\nb\r\n", 0},
        {"", 0},
        {"\r\n\r\n", 0},
        {"a\nb\r\n", SMTP_DATA_BARE_LF},
        {"\n", SMTP_DATA_BARE_LF},
        {"a\rb\r\n", SMTP_DATA_BARE_CR},
        {"a\r\r\n", SMTP_DATA_BARE_CR},
        {"a\r\n\r", SMTP_DATA_BARE_CR}, /* trailing CR at the end of LAST */
        {"a\r\n.\n", SMTP_DATA_BARE_LF},
        {"\xc3\xa9\r\n", SMTP_DATA_8BIT},
        {"a\r\n\n\r", SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        gsize len = strlen(cases[i].in);
        /* every split point, so CR LF across chunk boundaries is covered */
        for (gsize at = 0; at <= len; at++)
            g_assert_cmphex(crlf_split(cases[i].in, len, at, 1000), ==, cases[i].flags);
    }
    g_autofree char *l998 = g_strnfill(998, 'x');
    g_autofree char *ok = g_strdup_printf("%s\r\n%s\r\n", l998, l998);
    g_autofree char *bad = g_strdup_printf("%sx\r\n", l998);
    g_assert_cmphex(crlf_split(ok, strlen(ok), 999, 1000), ==, 0);
    g_assert_cmphex(crlf_split(bad, strlen(bad), 999, 1000), ==, SMTP_DATA_LINE_TOO_LONG);
    g_assert_cmphex(crlf_split(bad, strlen(bad), 999, 0), ==, 0);
    g_assert_cmphex(crlf_split(S("a\0b\r\n"), 2, 1000), ==, SMTP_DATA_NUL);
}

/* ---- replies ---- */

static void
test_reply(void)
{
    g_autoptr(GString) out = g_string_new(NULL);

    smtp_reply_append(out, 250, "2.1.0", "Ok");
    g_assert_cmpstr(out->str, ==, "250 2.1.0 Ok\r\n");

    g_string_truncate(out, 0);
    const char *const ehlo[] = {"mx.example Hello", "PIPELINING", "SIZE 10240000", "SMTPUTF8"};
    smtp_reply_append_lines(out, 250, NULL, ehlo, G_N_ELEMENTS(ehlo));
    g_assert_cmpstr(out->str, ==,
                    "250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                    "250 SMTPUTF8\r\n");

    g_string_truncate(out, 0);
    smtp_reply_append(out, 554, "5.7.1", "first\nsecond\r\nthird");
    g_assert_cmpstr(out->str, ==, "554-5.7.1 first\r\n554-5.7.1 second\r\n554 5.7.1 third\r\n");

    /* control characters from echoed client data cannot break the reply */
    g_string_truncate(out, 0);
    smtp_reply_appendf(out, 501, "5.1.3", "Bad <%s> %d", "a\rb\x01\x7f", 7);
    g_assert_cmpstr(out->str, ==,
                    "501 5.1.3 Bad <a?b?"
                    "?> 7\r\n");

    g_string_truncate(out, 0);
    smtp_reply_append(out, 221, "2.0.0", NULL);
    smtp_reply_append(out, 220, NULL, "mx.example ESMTP");
    smtp_reply_append_lines(out, 354, NULL, NULL, 0);
    g_assert_cmpstr(out->str, ==, "221 2.0.0\r\n220 mx.example ESMTP\r\n354\r\n");

    g_string_truncate(out, 0);
    const char *const two[] = {"", "x"};
    smtp_reply_append_lines(out, 250, "2.0.0", two, 2);
    g_assert_cmpstr(out->str, ==, "250-2.0.0\r\n250 2.0.0 x\r\n");

    /* programming errors: wrong class, malformed code, bad reply code */
    g_string_truncate(out, 0);
    g_test_expect_message(NULL, G_LOG_LEVEL_CRITICAL, "*enhanced_ok*");
    smtp_reply_append(out, 250, "5.1.0", "x");
    g_test_expect_message(NULL, G_LOG_LEVEL_CRITICAL, "*enhanced_ok*");
    smtp_reply_append(out, 250, "2.1", "x");
    g_test_expect_message(NULL, G_LOG_LEVEL_CRITICAL, "*enhanced_ok*");
    smtp_reply_append(out, 250, "2.1.1000", "x");
    g_test_expect_message(NULL, G_LOG_LEVEL_CRITICAL, "*code*");
    smtp_reply_append(out, 99, NULL, "x");
    g_test_assert_expected_messages();
    g_assert_cmpuint(out->len, ==, 0);
}

/* ---- AUTH ---- */

static void
test_auth_parse(void)
{
    SmtpAuthArgs a;
    GError *err = NULL;

    g_assert_true(smtp_parse_auth(S("PLAIN"), &a, &err));
    g_assert_cmpint(a.mech, ==, SMTP_SASL_PLAIN);
    g_assert_false(a.has_initial);

    g_assert_true(smtp_parse_auth(S("plain AGFsaWNlAHNlY3JldA=="), &a, &err));
    g_assert_cmpint(a.mech, ==, SMTP_SASL_PLAIN);
    g_assert_true(a.has_initial);
    g_assert_cmpmem(a.initial, a.initial_len, "AGFsaWNlAHNlY3JldA==", 20);

    g_assert_true(smtp_parse_auth(S("LOGIN ="), &a, &err));
    g_assert_cmpint(a.mech, ==, SMTP_SASL_LOGIN);
    g_assert_true(a.has_initial);
    g_assert_cmpuint(a.initial_len, ==, 0);

    g_assert_true(smtp_parse_auth(S("CRAM-MD5"), &a, &err));
    g_assert_cmpint(a.mech, ==, SMTP_SASL_UNKNOWN);
    g_assert_cmpmem(a.mech_name, a.mech_name_len, "CRAM-MD5", 8);
    g_assert_no_error(err);

    static const char *const bad[] = {"", "PL@IN", "ABCDEFGHIJKLMNOPQRSTU", "PLAIN a b",
                                      "PLAIN a\x01"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_false(smtp_parse_auth(bad[i], strlen(bad[i]), &a, &err));
        g_assert_nonnull(err);
        g_assert_true(err->domain == SMTP_PARSE_ERROR);
        g_clear_error(&err);
    }
}

static void
test_auth_base64(void)
{
    char *out;
    gsize n;
    GError *err = NULL;

    g_assert_true(smtp_base64_decode(S("AGFsaWNlAHNlY3JldA=="), 100, &out, &n, &err));
    g_assert_no_error(err);
    g_assert_cmpmem(out, n, "\0alice\0secret", 13);
    g_assert_cmpint(out[n], ==, 0);
    g_free(out);

    static const struct {
        const char *b64, *plain;
    } good[] = {{"", ""}, {"YQ==", "a"}, {"YWI=", "ab"}, {"YWJj", "abc"}, {"+/+/", "\xfb\xff\xbf"}};
    for (guint i = 0; i < G_N_ELEMENTS(good); i++) {
        g_assert_true(smtp_base64_decode(good[i].b64, strlen(good[i].b64), 3, &out, &n, &err));
        g_assert_cmpmem(out, n, good[i].plain, strlen(good[i].plain));
        g_free(out);
    }
    /* the bound is exact: 3 octets fit in 3, not in 2 */
    g_assert_false(smtp_base64_decode(S("YWJj"), 2, &out, &n, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_AUTH);
    g_assert_null(out);
    g_clear_error(&err);

    static const char *const bad[] = {"abc",      "YQ=",  "Y===", "=YWJ",   "YW=j",
                                      "YQ==YWJj", "YW!j", "YW j", "YWJj\n", "YWJjZGVm\r\n"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_test_message("%s", bad[i]);
        g_assert_false(smtp_base64_decode(bad[i], strlen(bad[i]), 100, &out, &n, &err));
        g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_AUTH);
        g_clear_error(&err);
    }
}

static void
test_auth_plain(void)
{
    SmtpSaslPlain p;
    GError *err = NULL;
    char *raw;
    gsize n;

    /* AUTH PLAIN initial response, decoded end to end */
    g_assert_true(smtp_base64_decode(S("AGFsaWNlAHNlY3JldA=="), 1024, &raw, &n, &err));
    g_assert_true(smtp_sasl_plain_decode(raw, n, &p, &err));
    g_assert_no_error(err);
    g_assert_null(p.authzid);
    g_assert_cmpstr(p.authcid, ==, "alice");
    g_assert_cmpstr(p.passwd, ==, "secret");
    smtp_sasl_plain_clear(&p);
    g_assert_null(p.passwd);
    g_free(raw);

    g_assert_true(smtp_sasl_plain_decode(S("admin\0b\xc3\xb6"
                                           "b\0p\xc3\xa4ss word"),
                                         &p, &err));
    g_assert_cmpstr(p.authzid, ==, "admin");
    g_assert_cmpstr(p.authcid, ==,
                    "b\xc3\xb6"
                    "b");
    g_assert_cmpstr(p.passwd, ==, "p\xc3\xa4ss word");
    smtp_sasl_plain_clear(&p);

    g_autofree char *f255 = g_strnfill(255, 'u');
    g_autofree char *f256 = g_strnfill(256, 'u');
    g_autoptr(GString) ok = g_string_new(f255);
    g_string_append_c(ok, '\0');
    g_string_append(ok, f255);
    g_string_append_c(ok, '\0');
    g_string_append(ok, f255);
    g_assert_true(smtp_sasl_plain_decode(ok->str, ok->len, &p, &err));
    g_assert_cmpuint(strlen(p.passwd), ==, 255);
    smtp_sasl_plain_clear(&p);
    g_autoptr(GString) big = g_string_new(NULL);
    g_string_append_c(big, '\0');
    g_string_append(big, f256);
    g_string_append_len(big, "\0pw", 3);

    const struct {
        const char *d;
        gsize len;
    } bad[] = {
        {S("alicesecret")},     {S("\0alicesecret")},   {S("\0alice\0sec\0ret")},
        {S("\0alice\0")},       {S("\0\0secret")},      {S("")},
        {S("\0al\xffice\0pw")}, {S("\xc3\0alice\0pw")}, {S("\0alice\0p\xc3")},
        {big->str, big->len},
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_false(smtp_sasl_plain_decode(bad[i].d, bad[i].len, &p, &err));
        g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_AUTH);
        g_assert_null(p.authcid);
        g_assert_null(p.passwd);
        g_clear_error(&err);
    }
}

static void
test_auth_text(void)
{
    char *t;
    GError *err = NULL;

    g_assert_true(smtp_sasl_text_decode(S("YWxpY2U="), 255, &t, &err)); /* "alice" */
    g_assert_no_error(err);
    g_assert_cmpstr(t, ==, "alice");
    g_free(t);
    g_assert_false(smtp_sasl_text_decode(S("YQBi"), 255, &t, &err)); /* "a\0b" */
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_AUTH);
    g_assert_null(t);
    g_clear_error(&err);
    g_assert_false(smtp_sasl_text_decode(S("/w=="), 255, &t, &err)); /* "\xff" */
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_AUTH);
    g_clear_error(&err);
    g_assert_false(smtp_sasl_text_decode(S("YWxpY2U="), 4, &t, &err));
    g_assert_error(err, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_AUTH);
    g_clear_error(&err);
}

static void
test_error_status(void)
{
    guint code;
    const char *enh;
    g_autoptr(GError) e = g_error_new_literal(G_FILE_ERROR, 0, "x");
    smtp_parse_error_status(e, SMTP_CMD_MAIL, &code, &enh);
    g_assert_cmpuint(code, ==, 451);
    g_assert_cmpstr(enh, ==, "4.3.0");
    g_autoptr(GError) a = g_error_new_literal(SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_AUTH, "x");
    smtp_parse_error_status(a, SMTP_CMD_AUTH, &code, &enh);
    g_assert_cmpuint(code, ==, 501);
    g_assert_cmpstr(enh, ==, "5.5.2");
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/smtp-parse/cmd/verbs", test_cmd_verbs);
    g_test_add_func("/smtp-parse/cmd/bad-lines", test_cmd_bad_lines);
    g_test_add_func("/smtp-parse/line/basic", test_line_basic);
    g_test_add_func("/smtp-parse/line/limit", test_line_limit);
    g_test_add_func("/smtp-parse/line/huge", test_line_huge);
    g_test_add_func("/smtp-parse/address/valid", test_address_valid);
    g_test_add_func("/smtp-parse/address/limits", test_address_limits);
    g_test_add_func("/smtp-parse/address/invalid", test_address_invalid);
    g_test_add_func("/smtp-parse/address/lower-domain", test_address_lower_domain);
    g_test_add_func("/smtp-parse/address/domain", test_domain_check);
    g_test_add_func("/smtp-parse/params/split", test_params_split);
    g_test_add_func("/smtp-parse/params/xtext", test_xtext);
    g_test_add_func("/smtp-parse/mail", test_mail);
    g_test_add_func("/smtp-parse/rcpt", test_rcpt);
    g_test_add_func("/smtp-parse/data/basic", test_data_basic);
    g_test_add_func("/smtp-parse/data/empty", test_data_empty);
    g_test_add_func("/smtp-parse/data/smuggling", test_data_smuggling);
    g_test_add_func("/smtp-parse/data/bare", test_data_bare);
    g_test_add_func("/smtp-parse/data/size-limit", test_data_size_limit);
    g_test_add_func("/smtp-parse/data/long-line", test_data_long_line);
    g_test_add_func("/smtp-parse/data/trickle", test_data_trickle);
    g_test_add_func("/smtp-parse/data/pipelined", test_data_pipelined);
    g_test_add_func("/smtp-parse/data/random", test_data_random);
    g_test_add_func("/smtp-parse/bdat/args", test_bdat_args);
    g_test_add_func("/smtp-parse/bdat/crlf", test_bdat_crlf);
    g_test_add_func("/smtp-parse/reply", test_reply);
    g_test_add_func("/smtp-parse/auth/parse", test_auth_parse);
    g_test_add_func("/smtp-parse/auth/base64", test_auth_base64);
    g_test_add_func("/smtp-parse/auth/plain", test_auth_plain);
    g_test_add_func("/smtp-parse/auth/text", test_auth_text);
    g_test_add_func("/smtp-parse/error-status", test_error_status);
    return g_test_run();
}
