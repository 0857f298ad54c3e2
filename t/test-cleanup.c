/* SPDX-License-Identifier: MIT */
/*
 * test-cleanup.c - the cleanup stage (modules/cleanup). The header texts
 * (cleanup-hdr.c, linked directly) are checked as pure functions: dates,
 * the Received line in its SMTP, TLS+AUTH, IPv6 and local forms, and
 * attribute values that try to break out of the header. The stage itself
 * is loaded by the module loader and driven through the pipeline engine
 * (maildrop -> cleanup) on spooled messages: added Message-ID, Date,
 * Received and (on submission) From, kept existing ones, Return-Path
 * removed, the mail loop limit, and the size limit with the attribute
 * overriding the setting.
 */
#include "testlib.h"
#include "../core/kr-startup.h"
#include "cleanup/cleanup-hdr.h"
#include <time.h>

/* --- pure header texts ------------------------------------------------- */

static void
test_date(void)
{
    g_autofree char *d0 = cleanup_date(0);
    g_assert_cmpstr(d0, ==, "Thu, 1 Jan 1970 00:00:00 +0000");
    g_autofree char *d1 = cleanup_date(1700000000);
    g_assert_cmpstr(d1, ==, "Tue, 14 Nov 2023 22:13:20 +0000");
    g_autofree char *d2 = cleanup_date(951782400); /* leap day 2000 */
    g_assert_cmpstr(d2, ==, "Tue, 29 Feb 2000 00:00:00 +0000");
    /* The local zone and its offset, both signs (POSIX TZ strings: no
     * zone files needed); the weekday and date follow the zone. */
    g_autofree char *old_tz = g_strdup(g_getenv("TZ"));
    g_setenv("TZ", "XST-2", TRUE);
    tzset();
    g_autofree char *d3 = cleanup_date(1700000000);
    g_assert_cmpstr(d3, ==, "Wed, 15 Nov 2023 00:13:20 +0200");
    g_setenv("TZ", "YST+5:30", TRUE);
    tzset();
    g_autofree char *d4 = cleanup_date(0);
    g_assert_cmpstr(d4, ==, "Wed, 31 Dec 1969 18:30:00 -0530");
    if (old_tz)
        g_setenv("TZ", old_tz, TRUE);
    else
        g_unsetenv("TZ");
    tzset();
}

static void
test_received_smtp(void)
{
    CleanupReceived f = {
        .helo = "client.example",
        .client_name = "rdns.example",
        .client_addr = "192.0.2.7",
        .hostname = "mx.example.org",
        .protocol = "ESMTP",
        .queue_id = "1xAbCdEfGhIjKl",
        .rcpt = "bob@example.org",
        .date = 1700000000,
    };
    g_autofree char *r = cleanup_received(&f);
    g_assert_cmpstr(r, ==,
                    "from client.example (rdns.example [192.0.2.7])\n"
                    "\tby mx.example.org (kurir) with ESMTP id 1xAbCdEfGhIjKl\n"
                    "\tfor <bob@example.org>; Tue, 14 Nov 2023 22:13:20 +0000");

    /* TLS + AUTH: comments, and RFC 3848 protocol name; no `for` with
     * several recipients; no name: unknown. */
    f.tls = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)";
    f.auth_user = "alice@example.org";
    f.client_name = NULL;
    f.rcpt = NULL;
    g_autofree char *r2 = cleanup_received(&f);
    g_assert_cmpstr(r2, ==,
                    "from client.example (unknown [192.0.2.7])\n"
                    "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\n"
                    "\t(authenticated as alice@example.org)\n"
                    "\tby mx.example.org (kurir) with ESMTPSA id 1xAbCdEfGhIjKl; "
                    "Tue, 14 Nov 2023 22:13:20 +0000");

    /* A protocol name the server chose is kept. */
    f.protocol = "SMTP";
    f.tls = NULL;
    f.auth_user = NULL;
    g_autofree char *r3 = cleanup_received(&f);
    g_assert_nonnull(strstr(r3, " with SMTP id "));
}

static void
test_received_ipv6_and_local(void)
{
    g_autofree char *lit = cleanup_addr_literal("2001:db8::1");
    g_assert_cmpstr(lit, ==, "[IPv6:2001:db8::1]");
    g_autofree char *lit4 = cleanup_addr_literal("127.0.0.1");
    g_assert_cmpstr(lit4, ==, "[127.0.0.1]");

    /* No HELO: the address literal stands in. */
    CleanupReceived f = {
        .client_addr = "::1", .hostname = "h", .queue_id = "Q", .date = 0, .protocol = "ESMTP"};
    g_autofree char *r = cleanup_received(&f);
    g_assert_cmpstr(r, ==,
                    "from [IPv6:::1] (unknown [IPv6:::1])\n"
                    "\tby h (kurir) with ESMTP id Q; Thu, 1 Jan 1970 00:00:00 +0000");

    /* Local submission (sendmail): no client. */
    CleanupReceived l = {.hostname = "h", .queue_id = "Q", .uid = "1000", .rcpt = "a@b", .date = 0};
    g_autofree char *rl = cleanup_received(&l);
    g_assert_cmpstr(rl, ==,
                    "by h (kurir, from userid 1000) with local id Q\n"
                    "\tfor <a@b>; Thu, 1 Jan 1970 00:00:00 +0000");
}

static void
test_received_hostile(void)
{
    /* Attribute values never add a line, end a comment or a clause. */
    CleanupReceived f = {
        .helo = "evil\r\nX-Injected: yes",
        .client_name = "a) (b\\",
        .client_addr = "192.0.2.1]\nX: y",
        .tls = "x)\n(y",
        .auth_user = "u\r\n\tz",
        .hostname = "h;x",
        .protocol = "ESMTP; now",
        .queue_id = "Q<>",
        .rcpt = "a>b@c\n",
        .date = 0,
    };
    g_autofree char *r = cleanup_received(&f);
    /* Only the stage's own folding line breaks, each followed by TAB. */
    for (const char *p = r; *p; p++) {
        g_assert_cmpint(*p, !=, '\r');
        if (*p == '\n')
            g_assert_cmpint(p[1], ==, '\t');
    }
    g_assert_null(strstr(r, "\nX"));
    g_assert_null(strstr(r, "a) (b"));
    /* Exactly one ';' (before the date). */
    g_assert_cmpstr(strchr(r, ';'), ==, strrchr(r, ';'));
    g_autofree char *c = cleanup_comment_text(")(x)\\\x01(");
    g_assert_cmpstr(c, ==, "?(x)???");
    g_autofree char *c2 = cleanup_comment_text("((a) b");
    g_assert_cmpstr(c2, ==, "?(a) b");
    /* Invalid UTF-8 is made valid. */
    g_autofree char *u = cleanup_comment_text("a\xff"
                                              "b");
    g_assert_true(g_utf8_validate(u, -1, NULL));
}

/* --- the stage, through the pipeline ----------------------------------- */

typedef struct {
    GMainLoop *loop;
    KrVerdictKind kind;
    int code;
    char *ecode;
    gboolean done;
} Wait;

static void
job_done(KrMsg *msg, const KrJobResult *r, gpointer ud)
{
    Wait *w = ud;
    w->kind = r->kind;
    w->code = r->code;
    w->ecode = g_strdup(r->ecode);
    w->done = TRUE;
    g_main_loop_quit(w->loop);
}

static KrMsg *
spool(const char *content, const char *const *rcpts)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_assert_no_error(err);
    kr_msg_set_sender(msg, "sender@example.net");
    static const char *const one[] = {"bob@localhost", NULL};
    for (const char *const *r = rcpts ? rcpts : one; *r; r++)
        kr_msg_add_rcpt(msg, *r);
    g_assert_true(kr_msg_append(msg, content, strlen(content), &err));
    g_assert_no_error(err);
    return msg;
}

static void
run(KrMsg *msg, Wait *w)
{
    *w = (Wait){.loop = g_main_loop_new(NULL, FALSE)};
    GError *err = NULL;
    g_assert_true(kr_pipeline_run("maildrop", msg, NULL, job_done, w, &err));
    g_assert_no_error(err);
    if (!w->done)
        g_main_loop_run(w->loop);
    g_main_loop_unref(w->loop);
}

static char *
logical(KrMsg *msg)
{
    GString *s = g_string_new(NULL);
    char buf[4096];
    GError *err = NULL;
    for (goffset off = 0;;) {
        gssize n = kr_msg_read(msg, off, buf, sizeof buf, &err);
        g_assert_no_error(err);
        if (n <= 0)
            break;
        g_string_append_len(s, buf, n);
        off += n;
    }
    return g_string_free(s, FALSE);
}

static void
smtp_attrs(KrMsg *msg)
{
    kr_msg_set_attr(msg, "client_addr", "192.0.2.7");
    kr_msg_set_attr(msg, "client_name", "rdns.example");
    kr_msg_set_attr(msg, "helo", "client.example");
    kr_msg_set_attr(msg, "protocol", "ESMTP");
}

static void
test_stage_adds(void)
{
    g_autoptr(KrMsg) msg = spool("Subject: hi\r\nReturn-Path: <forged@x>\r\n\r\nbody\r\n", NULL);
    smtp_attrs(msg);
    Wait w;
    run(msg, &w);
    g_assert_cmpint(w.kind, ==, KR_VERDICT_CONTINUE);
    g_free(w.ecode);

    g_autofree char *mid = g_strdup_printf("<%s@mx.test>", kr_msg_queue_id(msg));
    g_assert_cmpstr(kr_msg_header(msg, "Message-ID", 0), ==, mid);
    g_assert_cmpuint(kr_msg_header_count(msg, "Date"), ==, 1);
    g_autofree char *date = cleanup_date(kr_msg_arrival(msg));
    g_assert_cmpstr(kr_msg_header(msg, "Date", 0), ==, date);
    g_assert_cmpuint(kr_msg_header_count(msg, "Return-Path"), ==, 0);
    g_assert_cmpuint(kr_msg_header_count(msg, "From"), ==, 0); /* not a submission */
    g_assert_cmpuint(kr_msg_header_count(msg, "Received"), ==, 1);
    const char *rcv = kr_msg_header(msg, "Received", 0);
    g_autofree char *want =
        g_strdup_printf("from client.example (rdns.example [192.0.2.7])\tby mx.test (kurir) "
                        "with ESMTP id %s\tfor <bob@localhost>; ",
                        kr_msg_queue_id(msg));
    g_assert_true(g_str_has_prefix(rcv, want));

    /* The logical content: Received on top, CRLF throughout, the
     * original Return-Path gone, the body untouched. */
    g_autofree char *c = logical(msg);
    g_assert_true(g_str_has_prefix(c, "Received: from client.example (rdns.example "
                                      "[192.0.2.7])\r\n\tby mx.test (kurir) with ESMTP id "));
    g_assert_null(strstr(c, "Return-Path"));
    g_assert_nonnull(strstr(c, "\r\nDate: "));
    g_assert_nonnull(strstr(c, "\r\nMessage-ID: <"));
    g_assert_true(g_str_has_suffix(c, "\r\nSubject: hi\r\n\r\nbody\r\n"));
    for (const char *p = c; (p = strchr(p, '\n')); p++)
        g_assert_cmpint(p[-1], ==, '\r');
}

static void
test_stage_keeps(void)
{
    static const char *const two[] = {"a@localhost", "b@localhost", NULL};
    g_autoptr(KrMsg) msg = spool("Message-ID: <orig@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                                 "From: someone@x\r\n\r\nbody\r\n",
                                 two);
    smtp_attrs(msg);
    kr_msg_set_attr(msg, "auth_user", "alice@localhost");
    kr_msg_set_attr(msg, "client_name", "192.0.2.7"); /* no reverse DNS */
    Wait w;
    run(msg, &w);
    g_assert_cmpint(w.kind, ==, KR_VERDICT_CONTINUE);
    g_free(w.ecode);
    g_assert_cmpuint(kr_msg_header_count(msg, "Message-ID"), ==, 1);
    g_assert_cmpstr(kr_msg_header(msg, "Message-ID", 0), ==, "<orig@x>");
    g_assert_cmpuint(kr_msg_header_count(msg, "Date"), ==, 1);
    g_assert_cmpstr(kr_msg_header(msg, "From", 0), ==, "someone@x");
    g_assert_cmpuint(kr_msg_header_count(msg, "From"), ==, 1);
    const char *rcv = kr_msg_header(msg, "Received", 0);
    g_assert_true(g_str_has_prefix(rcv, "from client.example (unknown [192.0.2.7])"));
    g_assert_nonnull(strstr(rcv, "(authenticated as alice@localhost)"));
    g_assert_nonnull(strstr(rcv, " with ESMTPA id "));
    g_assert_null(strstr(rcv, " for <")); /* two recipients */
}

static void
test_stage_submission_from(void)
{
    /* Authenticated: From is the user. */
    g_autoptr(KrMsg) m1 = spool("Subject: s\r\n\r\nx\r\n", NULL);
    smtp_attrs(m1);
    kr_msg_set_attr(m1, "auth_user", "alice@localhost");
    Wait w;
    run(m1, &w);
    g_free(w.ecode);
    g_assert_cmpstr(kr_msg_header(m1, "From", 0), ==, "alice@localhost");

    /* Submission flag without auth (sendmail): From is the sender. */
    g_autoptr(KrMsg) m2 = spool("Subject: s\r\n\r\nx\r\n", NULL);
    kr_msg_set_attr(m2, "submission", "1");
    kr_msg_set_attr(m2, "uid", "1000");
    run(m2, &w);
    g_free(w.ecode);
    g_assert_cmpstr(kr_msg_header(m2, "From", 0), ==, "sender@example.net");
    g_assert_true(g_str_has_prefix(kr_msg_header(m2, "Received", 0),
                                   "by mx.test (kurir, from userid 1000) with local id "));

    /* A local submission (uid, no client) without the flag: From added. */
    g_autoptr(KrMsg) m3 = spool("Subject: s\r\n\r\nx\r\n", NULL);
    kr_msg_set_attr(m3, "uid", "1000");
    kr_msg_set_attr(m3, "protocol", "sendmail");
    run(m3, &w);
    g_free(w.ecode);
    g_assert_cmpstr(kr_msg_header(m3, "From", 0), ==, "sender@example.net");
    g_assert_nonnull(strstr(kr_msg_header(m3, "Received", 0), ") with sendmail id "));

    /* A relayed message (client, no submission, no auth): no From. */
    g_autoptr(KrMsg) m4 = spool("Subject: s\r\n\r\nx\r\n", NULL);
    smtp_attrs(m4);
    kr_msg_set_attr(m4, "uid", "1000"); /* ignored with a client address */
    run(m4, &w);
    g_free(w.ecode);
    g_assert_cmpuint(kr_msg_header_count(m4, "From"), ==, 0);
}

static void
test_stage_loop(void)
{
    /* max_received = 3 in this test's config. */
    GString *h = g_string_new(NULL);
    for (int i = 0; i < 3; i++)
        g_string_append_printf(h, "Received: from hop%d by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
                               i);
    g_autofree char *ok_text = g_strconcat(h->str, "\r\nbody\r\n", NULL);
    g_autoptr(KrMsg) ok = spool(ok_text, NULL);
    Wait w;
    run(ok, &w);
    g_assert_cmpint(w.kind, ==, KR_VERDICT_CONTINUE);
    g_free(w.ecode);
    g_assert_cmpuint(kr_msg_header_count(ok, "Received"), ==, 4);

    g_string_append(h, "Received: from hop3 by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n");
    g_autofree char *loop_text = g_strconcat(h->str, "\r\nbody\r\n", NULL);
    g_string_free(h, TRUE);
    g_autoptr(KrMsg) loop = spool(loop_text, NULL);
    run(loop, &w);
    g_assert_cmpint(w.kind, ==, KR_VERDICT_REJECT);
    g_assert_cmpint(w.code, ==, 554);
    g_assert_cmpstr(w.ecode, ==, "5.4.6");
    g_free(w.ecode);
    g_assert_cmpuint(kr_msg_header_count(loop, "Received"), ==, 4); /* nothing added */
}

static void
test_stage_size(void)
{
    /* max_message_size = "1K" in this test's config. */
    GString *big = g_string_new("Subject: big\r\n\r\n");
    while (big->len <= 1024)
        g_string_append(big, "0123456789012345678901234567890123456789\r\n");
    g_autoptr(KrMsg) m1 = spool(big->str, NULL);
    Wait w;
    run(m1, &w);
    g_assert_cmpint(w.kind, ==, KR_VERDICT_REJECT);
    g_assert_cmpint(w.code, ==, 552);
    g_assert_cmpstr(w.ecode, ==, "5.3.4");
    g_free(w.ecode);

    /* The receiving server's own limit (attribute) wins. */
    g_autoptr(KrMsg) m2 = spool(big->str, NULL);
    kr_msg_set_attr(m2, "max_message_size", "10K");
    run(m2, &w);
    g_assert_cmpint(w.kind, ==, KR_VERDICT_CONTINUE);
    g_free(w.ecode);

    /* Exactly at the limit passes. */
    g_string_truncate(big, 1024);
    g_autoptr(KrMsg) m3 = spool(big->str, NULL);
    run(m3, &w);
    g_assert_cmpint(w.kind, ==, KR_VERDICT_CONTINUE);
    g_free(w.ecode);
    g_string_free(big, TRUE);
}

int
main(int argc, char **argv)
{
    g_setenv("TZ", "UTC", TRUE);
    kr_test_init(&argc, &argv);
    char *data_dir = kr_test_tmpdir();
    g_autofree char *mpath = g_build_filename(kr_test_build_dir(), "modules", NULL);
    KrStartupOpts o = {
        .config_text = "core = { hostname = \"mx.test\"; domains = [ \"localhost\" ]; };\n"
                       "modules = [ \"cleanup\" ];\n"
                       "cleanup = { max_received = 3; max_message_size = \"1K\"; };\n"
                       "pipeline = { maildrop = { type = \"maildrop\"; next = \"cleanup\"; };\n"
                       "             cleanup = { type = \"cleanup\"; }; };\n",
        .data_dir = data_dir,
        .module_path = mpath,
    };
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    if (!kr_startup(&o, errors)) {
        for (guint i = 0; i < errors->len; i++)
            g_printerr("%s\n", (char *)errors->pdata[i]);
        g_error("start-up failed");
    }
    GError *err = NULL;
    if (!kr_queue_init_dirs(&err))
        g_error("%s", err->message);

    g_test_add_func("/cleanup/hdr/date", test_date);
    g_test_add_func("/cleanup/hdr/received-smtp", test_received_smtp);
    g_test_add_func("/cleanup/hdr/received-ipv6-local", test_received_ipv6_and_local);
    g_test_add_func("/cleanup/hdr/received-hostile", test_received_hostile);
    g_test_add_func("/cleanup/stage/adds", test_stage_adds);
    g_test_add_func("/cleanup/stage/keeps", test_stage_keeps);
    g_test_add_func("/cleanup/stage/submission-from", test_stage_submission_from);
    g_test_add_func("/cleanup/stage/loop", test_stage_loop);
    g_test_add_func("/cleanup/stage/size", test_stage_size);
    int rc = g_test_run();
    kr_shutdown_modules();
    g_free(data_dir);
    return rc;
}
