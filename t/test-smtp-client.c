/* SPDX-License-Identifier: MIT */
/*
 * test-smtp-client.c - unit tests for the SMTP client's pure parts:
 * modules/smtp/smtp-client-proto.c (reply parsing, EHLO capabilities,
 * MAIL/RCPT formatting with DSN parameters, dot-stuffing, AUTH PLAIN) and
 * modules/smtp/smtp-client-hop.c (next-hop syntax, resolver_override, the
 * order of MX hosts, null MX, our own host among the MX hosts).
 *
 * Paths: /smtp-client/<area>/<case>. The reply reader and the dot-stuffer
 * are checked fed whole and one byte at a time.
 */
#include "testlib.h"
#include <kurir/kurir.h>
#include "smtp/smtp-client.h"
#include <stdlib.h>
#include <string.h>

/* ---- replies ---- */

/* Feed text in chunks of `step` bytes (0: all at once); collect replies
 * as "CODE|ECODE|TEXT" lines; a protocol error adds "BAD". */
static char *
feed_all(const char *text, gsize step)
{
    SmtpcReplyReader rr;
    smtpc_reply_reader_init(&rr, 100, 5);
    GString *out = g_string_new(NULL);
    GString *buf = g_string_new(NULL);
    gsize len = strlen(text), pos = 0;
    while (pos < len || buf->len > 0) {
        if (pos < len) {
            gsize n = step ? MIN(step, len - pos) : len - pos;
            g_string_append_len(buf, text + pos, (gssize)n);
            pos += n;
        }
        gboolean progress = FALSE;
        for (;;) {
            gsize used = 0;
            SmtpcReply r = {0};
            g_autoptr(GError) err = NULL;
            SmtpcReplyStatus st = smtpc_reply_feed(&rr, buf->str, buf->len, &used, &r, &err);
            g_string_erase(buf, 0, (gssize)used);
            if (used)
                progress = TRUE;
            if (st == SMTPC_REPLY_MORE)
                break;
            if (st == SMTPC_REPLY_BAD) {
                g_assert_nonnull(err);
                g_string_append(out, "BAD\n");
                continue;
            }
            g_string_append_printf(out, "%u|%s|%s|%u\n", r.code, r.ecode, r.text, r.n_lines);
            smtpc_reply_clear(&r);
        }
        if (pos >= len && !progress)
            break;
    }
    smtpc_reply_reader_clear(&rr);
    g_string_free(buf, TRUE);
    return g_string_free(out, FALSE);
}

static void
check_reply(const char *in, const char *want)
{
    g_autofree char *whole = feed_all(in, 0);
    g_assert_cmpstr(whole, ==, want);
    g_autofree char *trickle = feed_all(in, 1);
    g_assert_cmpstr(trickle, ==, want);
    g_autofree char *odd = feed_all(in, 7);
    g_assert_cmpstr(odd, ==, want);
}

static void
test_reply_basic(void)
{
    check_reply("220 mx.example ESMTP\r\n", "220||mx.example ESMTP|1\n");
    check_reply("250 2.1.5 Ok\r\n", "250|2.1.5|Ok|1\n");
    check_reply("250\r\n", "250|||1\n");
    check_reply("550 5.1.1 <x@y>: no such user\n", "550|5.1.1|<x@y>: no such user|1\n");
    /* an enhanced code of another class is text */
    check_reply("250 5.1.1 odd\r\n", "250||5.1.1 odd|1\n");
    /* multi-line, pipelined after it */
    check_reply("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n354 go\r\n",
                "250||mx.example\nPIPELINING\nSIZE 1000|3\n354||go|1\n");
    /* controls in the text */
    check_reply("451 4.3.0 a\x01"
                "b\r\n",
                "451|4.3.0|a?b|1\n");
    /* partial line stays */
    g_autofree char *part = feed_all("250 ok\r\n250-more", 0);
    g_assert_cmpstr(part, ==, "250||ok|1\n");
}

static void
test_reply_bad(void)
{
    check_reply("hello there\r\n", "BAD\n");
    check_reply("2500 x\r\n", "BAD\n");
    check_reply("600 x\r\n", "BAD\n");
    check_reply("199 x\r\n", "BAD\n");
    check_reply("25\r\n", "BAD\n");
    check_reply("250-a\r\n251 b\r\n", "BAD\n");
    check_reply("250_x\r\n", "BAD\n");
    /* too many lines (limit 5) */
    check_reply("250-a\r\n250-b\r\n250-c\r\n250-d\r\n250-e\r\n250 f\r\n", "BAD\n");
    /* too long (limit 100 with CRLF) */
    g_autofree char *lng = g_strdup_printf("250 %0200d\r\n", 0);
    SmtpcReplyReader rr;
    smtpc_reply_reader_init(&rr, 100, 5);
    gsize used = 0;
    SmtpcReply r = {0};
    g_autoptr(GError) err = NULL;
    g_assert_cmpint(smtpc_reply_feed(&rr, lng, strlen(lng), &used, &r, &err), ==, SMTPC_REPLY_BAD);
    g_assert_nonnull(err);
    smtpc_reply_reader_clear(&rr);
}

static void
test_reply_status(void)
{
    SmtpcReply r = {.code = 451};
    g_assert_cmpstr(smtpc_reply_status(&r), ==, "4.0.0");
    r.code = 550;
    g_assert_cmpstr(smtpc_reply_status(&r), ==, "5.0.0");
    g_strlcpy(r.ecode, "5.7.1", sizeof r.ecode);
    g_assert_cmpstr(smtpc_reply_status(&r), ==, "5.7.1");
    r.code = 250;
    g_assert_cmpstr(smtpc_reply_status(&r), ==, "2.0.0");
    r.text = (char *)"a\nb";
    g_autofree char *one = smtpc_reply_oneline(&r);
    g_assert_cmpstr(one, ==, "a b");
}

/* ---- EHLO ---- */

static void
test_caps(void)
{
    SmtpcCaps c;
    smtpc_caps_parse("mx.example hello\nPIPELINING\nSIZE 1000\n8BITMIME\nsmtputf8\nDSN\n"
                     "STARTTLS\nAUTH LOGIN PLAIN CRAM-MD5\nCHUNKING\nBINARYMIME\n"
                     "ENHANCEDSTATUSCODES\nX-UNKNOWN 1",
                     &c);
    g_assert_cmphex(c.ext, ==,
                    SMTPC_EXT_PIPELINING | SMTPC_EXT_SIZE | SMTPC_EXT_8BITMIME |
                        SMTPC_EXT_SMTPUTF8 | SMTPC_EXT_DSN | SMTPC_EXT_STARTTLS | SMTPC_EXT_AUTH |
                        SMTPC_EXT_CHUNKING | SMTPC_EXT_BINARYMIME | SMTPC_EXT_ENHANCED);
    g_assert_cmpuint(c.size_max, ==, 1000);
    g_assert_cmphex(c.auth, ==, SMTPC_AUTH_PLAIN | SMTPC_AUTH_LOGIN);
    /* the greeting line is not a keyword; AUTH=LOGIN (old form) */
    smtpc_caps_parse("PIPELINING\nAUTH=LOGIN\nSIZE", &c);
    g_assert_cmphex(c.ext, ==, SMTPC_EXT_AUTH | SMTPC_EXT_SIZE);
    g_assert_cmphex(c.auth, ==, SMTPC_AUTH_LOGIN);
    g_assert_cmpuint(c.size_max, ==, 0);
    smtpc_caps_parse("", &c);
    g_assert_cmphex(c.ext, ==, 0);
}

/* ---- commands ---- */

static void
test_address_ok(void)
{
    gboolean u = TRUE;
    g_assert_true(smtpc_address_ok("a@b.example", FALSE, &u));
    g_assert_false(u);
    g_assert_true(smtpc_address_ok("", TRUE, NULL));
    g_assert_false(smtpc_address_ok("", FALSE, NULL));
    g_assert_true(smtpc_address_ok("\"a b\"@c.example", FALSE, NULL));
    g_assert_false(smtpc_address_ok("a b@c.example", FALSE, NULL));
    g_assert_false(smtpc_address_ok("a@b>\r\nRCPT TO:<x@y", FALSE, NULL));
    g_assert_false(smtpc_address_ok("a<b@c", FALSE, NULL));
    g_assert_false(smtpc_address_ok("\"unterminated@c", FALSE, NULL));
    g_assert_true(smtpc_address_ok("j\xc3\xb6rg@b\xc3\xa4r.example", FALSE, &u));
    g_assert_true(u);
    g_assert_false(smtpc_address_ok("bad\xff@x", FALSE, NULL));
    g_autofree char *lng = g_strnfill(300, 'a');
    g_assert_false(smtpc_address_ok(lng, FALSE, NULL));
}

static void
test_mail_cmd(void)
{
    GString *s = g_string_new(NULL);
    SmtpcMailParams p = {
        .ext = 0, .size = 1234, .body = "8BITMIME", .ret = "HDRS", .envid = "env 1+2"};
    smtpc_mail_cmd(s, "a@b.example", &p);
    g_assert_cmpstr(s->str, ==, "MAIL FROM:<a@b.example>\r\n");
    g_string_truncate(s, 0);
    p.ext = SMTPC_EXT_SIZE | SMTPC_EXT_8BITMIME | SMTPC_EXT_DSN | SMTPC_EXT_SMTPUTF8;
    p.smtputf8 = TRUE;
    smtpc_mail_cmd(s, "", &p);
    g_assert_cmpstr(s->str, ==,
                    "MAIL FROM:<> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=env+201+2B2\r\n");
    g_string_truncate(s, 0);
    p.body = "BINARYMIME";
    p.ret = "full";
    p.envid = NULL;
    p.smtputf8 = FALSE;
    p.ext |= SMTPC_EXT_BINARYMIME;
    smtpc_mail_cmd(s, "x@y", &p);
    g_assert_cmpstr(s->str, ==, "MAIL FROM:<x@y> SIZE=1234 BODY=BINARYMIME RET=FULL\r\n");
    g_string_free(s, TRUE);
}

static void
test_rcpt_cmd(void)
{
    GString *s = g_string_new(NULL);
    smtpc_rcpt_cmd(s, "a@b", FALSE, KR_NOTIFY_FAILURE, "rfc822;a@b");
    g_assert_cmpstr(s->str, ==, "RCPT TO:<a@b>\r\n");
    g_string_truncate(s, 0);
    smtpc_rcpt_cmd(s, "a@b", TRUE, KR_NOTIFY_FAILURE | KR_NOTIFY_DELAY, "rfc822;o+x=y@b");
    g_assert_cmpstr(s->str, ==, "RCPT TO:<a@b> NOTIFY=FAILURE,DELAY ORCPT=rfc822;o+2Bx+3Dy@b\r\n");
    g_string_truncate(s, 0);
    smtpc_rcpt_cmd(s, "a@b", TRUE, KR_NOTIFY_NEVER, NULL);
    g_assert_cmpstr(s->str, ==, "RCPT TO:<a@b> NOTIFY=NEVER\r\n");
    g_string_truncate(s, 0);
    smtpc_rcpt_cmd(s, "a@b", TRUE, KR_NOTIFY_SUCCESS, "rfc822;");
    g_assert_cmpstr(s->str, ==, "RCPT TO:<a@b> NOTIFY=SUCCESS\r\n");
    g_string_free(s, TRUE);
}

/* ---- content ---- */

static char *
stuff(const char *in, gsize step)
{
    SmtpcDot d;
    smtpc_dot_init(&d);
    GString *out = g_string_new(NULL);
    gsize len = strlen(in);
    for (gsize i = 0; i < len; i += step)
        smtpc_dot_feed(&d, out, in + i, MIN(step, len - i));
    smtpc_dot_finish(&d, out);
    g_assert_cmpuint(d.written, ==, out->len);
    return g_string_free(out, FALSE);
}

static void
check_stuff(const char *in, const char *want)
{
    gsize len = strlen(in);
    g_autofree char *whole = stuff(in, len ? len : 1);
    g_assert_cmpstr(whole, ==, want);
    g_autofree char *trickle = stuff(in, 1);
    g_assert_cmpstr(trickle, ==, want);
    g_autofree char *two = stuff(in, 2);
    g_assert_cmpstr(two, ==, want);
}

static void
test_dot(void)
{
    check_stuff("", ".\r\n");
    check_stuff("a\r\n", "a\r\n.\r\n");
    check_stuff("a", "a\r\n.\r\n");
    check_stuff(".\r\n", "..\r\n.\r\n");
    check_stuff("x\r\n.\r\n.y\r\n", "x\r\n..\r\n..y\r\n.\r\n");
    /* bare LF and bare CR become CRLF, so "\n.\n" cannot end the data early */
    check_stuff("a\n.\nb", "a\r\n..\r\nb\r\n.\r\n");
    check_stuff("a\r.\rb\r", "a\r\n..\r\nb\r\n.\r\n");
    check_stuff("a\r\n\r\n.", "a\r\n\r\n..\r\n.\r\n");
    check_stuff("no dot.here\r\n", "no dot.here\r\n.\r\n");
}

static void
test_auth_plain(void)
{
    g_autofree char *b = smtpc_auth_plain("user", "pass word");
    gsize n = 0;
    g_autofree guchar *raw = g_base64_decode(b, &n);
    g_assert_cmpuint(n, ==, 15);
    g_assert_cmpmem(raw, n, "\0user\0pass word", 15);
}

/* ---- next hops ---- */

static void
test_target(void)
{
    SmtpcTarget t;
    g_assert_true(smtpc_target_parse("Mail.Example", 25, &t, NULL));
    g_assert_cmpstr(t.host, ==, "mail.example");
    g_assert_cmpuint(t.port, ==, 25);
    g_assert_false(t.no_mx);
    smtpc_target_clear(&t);
    g_assert_true(smtpc_target_parse("[smtp.example]:587", 25, &t, NULL));
    g_assert_cmpstr(t.host, ==, "smtp.example");
    g_assert_cmpuint(t.port, ==, 587);
    g_assert_true(t.no_mx);
    smtpc_target_clear(&t);
    g_assert_true(smtpc_target_parse("relay.example:2525", 25, &t, NULL));
    g_assert_cmpuint(t.port, ==, 2525);
    g_assert_false(t.no_mx);
    smtpc_target_clear(&t);
    g_assert_true(smtpc_target_parse("[192.0.2.1]", 25, &t, NULL));
    g_assert_cmpstr(t.host, ==, "192.0.2.1");
    g_assert_true(t.no_mx);
    smtpc_target_clear(&t);
    g_assert_true(smtpc_target_parse("[::1]:26", 25, &t, NULL));
    g_assert_cmpstr(t.host, ==, "::1");
    g_assert_cmpuint(t.port, ==, 26);
    smtpc_target_clear(&t);
    const char *bad[] = {"",           "[",      "[]",   "a:b:c", "host:0",
                         "host:70000", "host:x", "[h]x", "a b",   "a@b"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        g_assert_false(smtpc_target_parse(bad[i], 25, &t, &err));
        g_assert_nonnull(err);
        g_assert_null(t.host);
    }
}

static void
test_override(void)
{
    char *entries[] = {"Remote.Test = 127.0.0.1:2600", "remote.test = [::1]:2601, 127.0.0.2",
                       "six.test=::1", NULL};
    g_autoptr(GError) err = NULL;
    GHashTable *t = smtpc_override_parse(entries, 25, &err);
    g_assert_no_error(err);
    GPtrArray *l = g_hash_table_lookup(t, "remote.test");
    g_assert_nonnull(l);
    g_assert_cmpuint(l->len, ==, 3);
    SmtpcAddr *a = l->pdata[0];
    g_assert_cmpstr(a->ip, ==, "127.0.0.1");
    g_assert_cmpuint(a->port, ==, 2600);
    g_assert_cmpstr(a->host, ==, "remote.test");
    a = l->pdata[1];
    g_assert_cmpstr(a->ip, ==, "::1");
    g_assert_cmpuint(a->port, ==, 2601);
    g_assert_cmpint(a->sa.ss_family, ==, AF_INET6);
    a = l->pdata[2];
    g_assert_cmpstr(a->ip, ==, "127.0.0.2");
    g_assert_cmpuint(a->port, ==, 25);
    l = g_hash_table_lookup(t, "six.test");
    g_assert_cmpuint(l->len, ==, 1);
    g_assert_cmpuint(((SmtpcAddr *)l->pdata[0])->port, ==, 25);
    g_hash_table_destroy(t);

    char *bad1[] = {"no equals sign", NULL};
    char *bad2[] = {"x.test = mx.example:25", NULL};
    char *bad3[] = {" = 127.0.0.1", NULL};
    char **bads[] = {bad1, bad2, bad3};
    for (guint i = 0; i < G_N_ELEMENTS(bads); i++) {
        g_autoptr(GError) e = NULL;
        g_assert_null(smtpc_override_parse(bads[i], 25, &e));
        g_assert_nonnull(e);
    }
    /* empty list */
    t = smtpc_override_parse(NULL, 25, &err);
    g_assert_nonnull(t);
    g_assert_cmpuint(g_hash_table_size(t), ==, 0);
    g_hash_table_destroy(t);
}

static GArray *
mxs_of(const char *spec)
{
    /* "10 a, 5 b" */
    GArray *a = smtpc_mx_array();
    g_auto(GStrv) items = g_strsplit(spec, ",", -1);
    for (guint i = 0; items[i]; i++) {
        g_auto(GStrv) f = g_strsplit(g_strstrip(items[i]), " ", 2);
        SmtpcMx m = {.pref = (guint)atoi(f[0]), .name = g_strdup(f[1] ? f[1] : "")};
        g_array_append_val(a, m);
    }
    return a;
}

static char *
names_of(GArray *a)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < a->len; i++)
        g_string_append_printf(s, "%s%s", i ? " " : "", g_array_index(a, SmtpcMx, i).name);
    return g_string_free(s, FALSE);
}

static void
test_mx(void)
{
    /* by preference */
    g_autoptr(GArray) a = mxs_of("20 c.example, 10 a.example, 30 d.example");
    g_assert_cmpint(smtpc_mx_plan(a, "me.example"), ==, SMTPC_MX_OK);
    g_autofree char *n = names_of(a);
    g_assert_cmpstr(n, ==, "a.example c.example d.example");
    /* equal preferences: both orders happen */
    gboolean seen_ab = FALSE, seen_ba = FALSE;
    for (int i = 0; i < 200 && !(seen_ab && seen_ba); i++) {
        g_autoptr(GArray) b = mxs_of("10 b.example, 10 a.example, 5 first.example");
        g_assert_cmpint(smtpc_mx_plan(b, NULL), ==, SMTPC_MX_OK);
        g_autofree char *nb = names_of(b);
        if (!strcmp(nb, "first.example a.example b.example"))
            seen_ab = TRUE;
        else if (!strcmp(nb, "first.example b.example a.example"))
            seen_ba = TRUE;
        else
            g_assert_not_reached();
    }
    g_assert_true(seen_ab && seen_ba);
    /* we are an MX: only better ones */
    g_autoptr(GArray) c = mxs_of("10 a.example, 20 ME.example, 20 b.example, 30 c.example");
    g_assert_cmpint(smtpc_mx_plan(c, "me.example"), ==, SMTPC_MX_OK);
    g_autofree char *nc = names_of(c);
    g_assert_cmpstr(nc, ==, "a.example");
    /* we are the best MX: a loop */
    g_autoptr(GArray) d = mxs_of("10 me.example, 20 b.example");
    g_assert_cmpint(smtpc_mx_plan(d, "me.example"), ==, SMTPC_MX_LOOP);
    /* null MX (RFC 7505) */
    g_autoptr(GArray) e = mxs_of("0 .");
    g_assert_cmpint(smtpc_mx_plan(e, "me.example"), ==, SMTPC_MX_NULL);
    g_autoptr(GArray) f = mxs_of("0");
    g_assert_cmpint(smtpc_mx_plan(f, "me.example"), ==, SMTPC_MX_NULL);
    /* a "." among real ones is skipped */
    g_autoptr(GArray) g = mxs_of("0 ., 10 a.example");
    g_assert_cmpint(smtpc_mx_plan(g, "me.example"), ==, SMTPC_MX_OK);
    g_autofree char *ng = names_of(g);
    g_assert_cmpstr(ng, ==, "a.example");
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/smtp-client/reply/basic", test_reply_basic);
    g_test_add_func("/smtp-client/reply/bad", test_reply_bad);
    g_test_add_func("/smtp-client/reply/status", test_reply_status);
    g_test_add_func("/smtp-client/ehlo/caps", test_caps);
    g_test_add_func("/smtp-client/cmd/address", test_address_ok);
    g_test_add_func("/smtp-client/cmd/mail", test_mail_cmd);
    g_test_add_func("/smtp-client/cmd/rcpt", test_rcpt_cmd);
    g_test_add_func("/smtp-client/content/dot", test_dot);
    g_test_add_func("/smtp-client/auth/plain", test_auth_plain);
    g_test_add_func("/smtp-client/hop/target", test_target);
    g_test_add_func("/smtp-client/hop/override", test_override);
    g_test_add_func("/smtp-client/hop/mx", test_mx);
    return g_test_run();
}
