/* SPDX-License-Identifier: MIT */
/*
 * test-imap-mime.c - the IMAP MIME layer (modules/imap/imap-mime*.c):
 * ENVELOPE / BODY / BODYSTRUCTURE text, FETCH sections and BINARY, the
 * cache blob, limits, malformed and random input; the top-level header
 * sections read from the header alone (the same octets as the full parse).
 *
 * Fixtures are the .eml files in t/data/mime (found through $KURIR_SRCDIR, the
 * current directory or the test binary's location). Expected texts are
 * written from RFC 3501 7.4.2 / RFC 2046 / RFC 3516 and were compared
 * with Dovecot 2.3's answers for the same files; where kurir differs on
 * purpose (see imap-mime.h) the test says so.
 */
#include "testlib.h"

#include "imap/imap-format.h"
#include "imap/imap-mime.h"
#include "imap/imap-parse.h"

#include <fcntl.h>
#include <gmime/gmime.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

static char *
data_dir(void)
{
    const char *src = g_getenv("KURIR_SRCDIR");
    if (src)
        return g_build_filename(src, "t", "data", "mime", NULL);
    if (g_file_test("t/data/mime/mixed.eml", G_FILE_TEST_EXISTS))
        return g_strdup("t/data/mime");
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *dir = exe ? g_path_get_dirname(exe) : g_strdup(".");
    return g_build_filename(dir, "..", "..", "t", "data", "mime", NULL);
}

static char *
fixture_path(const char *name)
{
    g_autofree char *d = data_dir();
    return g_build_filename(d, name, NULL);
}

static GBytes *
fixture(const char *name)
{
    g_autofree char *path = fixture_path(name);
    char *data = NULL;
    gsize len = 0;
    GError *err = NULL;
    if (!g_file_get_contents(path, &data, &len, &err)) {
        g_test_message("%s: %s", path, err->message);
        g_error_free(err);
        g_test_fail();
        return g_bytes_new_static("", 0);
    }
    return g_bytes_new_take(data, len);
}

static ImapMimeMessage *
parse_bytes(GBytes *b, const ImapMimeLimits *lim)
{
    gsize len;
    const guchar *p = g_bytes_get_data(b, &len);
    ImapMimeInput in = IMAP_MIME_INPUT_MEM(p, len);
    GError *err = NULL;
    ImapMimeMessage *m = imap_mime_parse(&in, lim, &err);
    g_assert_no_error(err);
    g_assert_nonnull(m);
    return m;
}

/* Every LF not preceded by CR made CRLF (independent of the module). */
static GBytes *
to_crlf(GBytes *b)
{
    gsize len;
    const char *p = g_bytes_get_data(b, &len);
    GString *s = g_string_sized_new(len + len / 16);
    for (gsize i = 0; i < len; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            g_string_append_c(s, '\r');
        g_string_append_c(s, p[i]);
    }
    return g_string_free_to_bytes(s);
}

static GBytes *
to_lf(GBytes *b)
{
    gsize len;
    const char *p = g_bytes_get_data(b, &len);
    GString *s = g_string_sized_new(len);
    for (gsize i = 0; i < len; i++)
        if (!(p[i] == '\r' && i + 1 < len && p[i + 1] == '\n'))
            g_string_append_c(s, p[i]);
    return g_string_free_to_bytes(s);
}

/* FETCH items -> their sections, through the real command parser. */
static ImapCommand *
fetch_cmd(const char *items)
{
    g_autofree char *wire = g_strdup_printf("a FETCH 1 (%s)", items);
    ImapError perr = {0};
    ImapCommand *c = imap_parse_string(wire, strlen(wire), NULL, &perr);
    if (!c) {
        g_test_message("parse error for %s: %s", wire, perr.text);
        g_test_fail();
    }
    imap_error_clear(&perr);
    return c;
}

/* One section's octets, or NULL and *code_r ("<NO_PART>", ...). */
static GBytes *
sect_try(const ImapMimeMessage *m, GBytes *data, const char *item, const char **code_r)
{
    *code_r = "<BAD ITEM>";
    g_autoptr(ImapCommand) c = fetch_cmd(item);
    if (!c || c->u.fetch.n_sections != 1)
        return NULL;
    gsize len;
    const guchar *p = g_bytes_get_data(data, &len);
    ImapMimeInput in = IMAP_MIME_INPUT_MEM(p, len);
    GBytes *out = NULL;
    GError *err = NULL;
    const ImapFetchSection *s = &c->u.fetch.sections[0];
    if (s->kind == IMAP_SECTION_BINARY_SIZE) {
        guint64 size;
        if (imap_mime_section_size(m, &in, s, &size, &err)) {
            char *t = g_strdup_printf("%" G_GUINT64_FORMAT, size);
            return g_bytes_new_take(t, strlen(t));
        }
    } else if (imap_mime_section(m, &in, s, &out, &err)) {
        return out;
    }
    *code_r = err->code == IMAP_MIME_ERROR_NO_PART       ? "<NO_PART>"
              : err->code == IMAP_MIME_ERROR_UNKNOWN_CTE ? "<UNKNOWN_CTE>"
              : err->code == IMAP_MIME_ERROR_CHANGED     ? "<CHANGED>"
                                                         : "<ERROR>";
    g_error_free(err);
    return NULL;
}

/* One section's octets, or its error as "<NO_PART>", "<UNKNOWN_CTE>", ... */
static GBytes *
sect(const ImapMimeMessage *m, GBytes *data, const char *item)
{
    const char *code;
    GBytes *b = sect_try(m, data, item, &code);
    return b ? b : g_bytes_new_static(code, strlen(code));
}

static gboolean
bytes_has_prefix(GBytes *b, const char *prefix)
{
    gsize len, pl = strlen(prefix);
    const char *p = g_bytes_get_data(b, &len);
    return len >= pl && memcmp(p, prefix, pl) == 0;
}

static gboolean
bytes_has_suffix(GBytes *b, const char *suffix)
{
    gsize len, sl = strlen(suffix);
    const char *p = g_bytes_get_data(b, &len);
    return len >= sl && memcmp(p + len - sl, suffix, sl) == 0;
}

static void
check_sect(const ImapMimeMessage *m, GBytes *data, const char *item, const char *want,
           gssize want_len)
{
    g_autoptr(GBytes) got = sect(m, data, item);
    gsize len;
    const char *p = g_bytes_get_data(got, &len);
    gsize wl = want_len < 0 ? strlen(want) : (gsize)want_len;
    if (len != wl || (wl && memcmp(p, want, wl) != 0)) {
        g_autofree char *g0 = g_strndup(p, len);
        g_autofree char *w0 = g_strndup(want, wl);
        g_autofree char *ge = g_strescape(g0, NULL);
        g_autofree char *we = g_strescape(w0, NULL);
        g_test_message("%s: got \"%s\" want \"%s\"", item, ge, we);
        g_test_fail();
    }
}

/* IMAP syntax: one value (NIL, number, quoted, literal, list). */
static gboolean
imap_value(const char *s, gsize len, gsize *pos, guint depth)
{
    gsize i = *pos;
    if (depth > 200 || i >= len)
        return FALSE;
    if (s[i] == '(') {
        i++;
        gboolean first = TRUE;
        while (i < len && s[i] != ')') {
            if (!first && s[i] == ' ')
                i++;
            if (!imap_value(s, len, &i, depth + 1))
                return FALSE;
            first = FALSE;
        }
        if (i >= len)
            return FALSE;
        *pos = i + 1;
        return TRUE;
    }
    if (s[i] == '"') {
        for (i++; i < len && s[i] != '"'; i++) {
            if (s[i] == '\\')
                i++;
            if (i >= len || s[i] == '\r' || s[i] == '\n')
                return FALSE;
        }
        if (i >= len)
            return FALSE;
        *pos = i + 1;
        return TRUE;
    }
    if (s[i] == '{') {
        guint64 n = 0;
        for (i++; i < len && g_ascii_isdigit(s[i]); i++)
            n = n * 10 + (guint64)(s[i] - '0');
        if (i + 3 > len || s[i] != '}' || s[i + 1] != '\r' || s[i + 2] != '\n' ||
            n > len - (i + 3) || memchr(s + i + 3, '\0', n))
            return FALSE;
        *pos = i + 3 + n;
        return TRUE;
    }
    if (len - i >= 3 && strncmp(s + i, "NIL", 3) == 0) {
        *pos = i + 3;
        return TRUE;
    }
    gsize st = i;
    while (i < len && g_ascii_isdigit(s[i]))
        i++;
    *pos = i;
    return i > st;
}

static gboolean
imap_syntax_ok(const char *s)
{
    gsize pos = 0, len = strlen(s);
    return imap_value(s, len, &pos, 0) && pos == len && s[0] == '(';
}

/* ---- expected texts ---- */

static const char alt_bs[] =
    "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 47 1 NIL NIL NIL NIL)"
    "(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 63 2 NIL NIL NIL NIL) "
    "\"alternative\" (\"boundary\" \"=_alt_boundary\") NIL NIL NIL)";
static const char alt_body[] =
    "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 47 1)"
    "(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 63 2) \"alternative\")";
static const char alt_env[] =
    "(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"Lunch?\" "
    "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
    "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
    "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
    "((\"Bob\" NIL \"bob\" \"example.com\")) NIL NIL NIL \"<B27397-0100000@example.org>\")";

static const char mixed_bs[] =
    "((\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"quoted-printable\" 78 2 NIL NIL "
    "NIL NIL)"
    "(\"application\" \"pdf\" (\"name\" \"report.pdf\") NIL \"The report\" \"base64\" 74 NIL "
    "(\"attachment\" (\"filename\" \"report.pdf\" \"size\" \"24\")) NIL NIL)"
    "(\"image\" \"png\" NIL \"<img1@example.net>\" NIL \"BASE64\" 98 "
    "\"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" NIL) (\"en\" \"de-CH\") "
    "\"http://example.net/ img.png\") "
    "\"mixed\" (\"boundary\" \"----=_NextPart_000_0001\") NIL NIL NIL)";
static const char mixed_env[] =
    "(\"Tue, 1 Jul 2003 10:52:37 +0200\" \"Report attached\" "
    "((\"Doe, John\" NIL \"john.doe\" \"example.net\")) "
    "((\"Doe, John\" NIL \"john.doe\" \"example.net\")) "
    "((\"Doe, John\" NIL \"john.doe\" \"example.net\")) "
    "((NIL NIL \"team\" \"example.net\")) "
    "((\"Mary Smith\" NIL \"mary\" \"x.test\")(\"John Doe\" NIL \"jdoe\" \"one.test\")) NIL "
    "\"<1234@local.machine.example>\" \"<5678.21-Nov-1997@example.net>\")";

/* Dovecot says 367 and 17 for part 2: it gives the CRLF between
 * "--inner--" and "--outer" to part 2; RFC 2046 gives it to the
 * "--outer" delimiter (the inner epilogue is empty). */
static const char nested_bs[] =
    "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 29 1 NIL NIL NIL NIL)"
    "(\"message\" \"rfc822\" NIL NIL \"forwarded message\" \"7BIT\" 365 "
    "(\"Tue, 1 Jul 2003 08:00:00 +0000\" \"Inner one\" ((\"Eve\" NIL \"eve\" \"example.org\")) "
    "((\"Eve\" NIL \"eve\" \"example.org\")) ((\"Eve\" NIL \"eve\" \"example.org\")) "
    "((\"Carol\" NIL \"carol\" \"example.com\")) NIL NIL NIL \"<inner1@example.org>\") "
    "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL)"
    "(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 11 0 NIL NIL NIL NIL) "
    "\"alternative\" (\"boundary\" \"inner\") NIL NIL NIL) 16 NIL NIL NIL NIL)"
    "(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 77 "
    "(NIL \"Inner two\" ((\"Frank\" NIL \"frank\" \"example.org\")) "
    "((\"Frank\" NIL \"frank\" \"example.org\")) ((\"Frank\" NIL \"frank\" \"example.org\")) "
    "NIL NIL NIL NIL NIL) "
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 22 1 NIL NIL NIL NIL) 4 "
    "NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)";

static const char groups_env[] =
    "(\"Thu, 13 Feb 1969 23:32:54 -0330\" NIL ((\"Pete\" NIL \"pete\" \"silly.example\")) "
    "((\"Secretary\" NIL \"sec\" \"silly.example\")) ((NIL NIL \"replies\" \"silly.example\")) "
    "((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a.test\")(NIL NIL \"joe\" "
    "\"where.test\")(\"John\" NIL \"jdoe\" \"one.test\")(NIL NIL NIL NIL)) "
    "((NIL NIL \"Undisclosed recipients\" NIL)(NIL NIL NIL NIL)) "
    "((NIL \"@route.one,@route.two\" \"user\" \"host.test\")(\"Joe Q. Public\" NIL "
    "\"john.q.public\" \"example.com\")) NIL \"<testabcd.1234@silly.example>\")";

static void
check_texts(const char *file, const char *bs, const char *body, const char *env)
{
    g_autoptr(GBytes) b = fixture(file);
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    if (bs)
        g_assert_cmpstr(imap_mime_bodystructure(m), ==, bs);
    if (body)
        g_assert_cmpstr(imap_mime_body(m), ==, body);
    if (env)
        g_assert_cmpstr(imap_mime_envelope(m), ==, env);
    g_autoptr(GBytes) w = to_crlf(b);
    g_assert_cmpuint(imap_mime_size(m), ==, g_bytes_get_size(w));
}

/* ---- tests: structure ---- */

static void
test_alternative(void)
{
    check_texts("alternative.eml", alt_bs, alt_body, alt_env);
}

static void
test_mixed(void)
{
    check_texts("mixed.eml", mixed_bs, NULL, mixed_env);
    g_autoptr(GBytes) b = fixture("mixed.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    /* the C description behind the text */
    const ImapBodyPart *root = imap_mime_body_desc(m);
    g_assert_nonnull(root);
    if (!root || !root->children || !root->children->next)
        return;
    const ImapBodyPart *pdf = root->children->next;
    g_assert_cmpstr(pdf->subtype, ==, "pdf");
    g_assert_cmpstr(pdf->disposition, ==, "attachment");
    g_assert_cmpuint(pdf->n_disp_params, ==, 2);
    const ImapEnvelope *e = imap_mime_envelope_desc(m);
    g_assert_nonnull(e);
    if (e)
        g_assert_cmpuint(e->n_cc, ==, 2);
}

static void
test_nested(void)
{
    check_texts("nested.eml", nested_bs, NULL, NULL);
}

static void
test_digest(void)
{
    /* parts of a multipart/digest are message/rfc822 unless they say */
    g_autoptr(GBytes) b = fixture("digest.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    g_assert_true(
        g_str_has_prefix(imap_mime_bodystructure(m),
                         "((\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 44 (NIL \"one\" "));
    check_sect(m, b, "BODY[1.TEXT]", "first", -1);
    check_sect(m, b, "BODY[1.1]", "first", -1);
    check_sect(m, b, "BODY[2]", "not a message", -1);
}

static void
test_encoded(void)
{
    /* RFC 2047 words stay as sent (RFC 3501 7.4.2), folding is undone */
    g_autoptr(GBytes) b = fixture("encoded.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    g_assert_cmpstr(
        imap_mime_envelope(m), ==,
        "(\"Thu, 3 Jul 2003 12:00:00 +0000\" \"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
        "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\" "
        "((\"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=\" NIL \"keld\" \"dkuug.dk\")) "
        "((\"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=\" NIL \"keld\" \"dkuug.dk\")) "
        "((\"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=\" NIL \"keld\" \"dkuug.dk\")) "
        "((\"=?US-ASCII?Q?Keith_Moore?=\" NIL \"moore\" \"cs.utk.edu\")) NIL NIL NIL NIL)");
    g_assert_cmpstr(imap_mime_bodystructure(m), ==,
                    "(\"text\" \"plain\" (\"name\" \"=?UTF-8?B?w6lsw6k=?=\" \"charset\" \"utf-8\") "
                    "NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL)");
}

static void
test_groups(void)
{
    check_texts("groups.eml", NULL, NULL, groups_env);
}

/* Local part and domain agree with GMime's parser (the second opinion);
 * display names too where nothing is RFC 2047-encoded. */
static void
test_addresses_vs_gmime(void)
{
    static const char *const lists[] = {
        "a@b.c",
        "\"Doe, John\" <j@d.test>, mary@x.test",
        "j@d.test (John Doe)",
        "John Q. Public <jq@p.test>",
        "<@r1,@r2:u@h.test>",
        "\"a\\\"b\" <x@y.test>",
        "user@[1.2.3.4]",
        "grp: a@b.test, \"x y\" <c@d.test>;, e@f.test",
        "first.last@sub.example.com, Second <s@example.com>",
        "Name With Many Words <many@words.test>",
    };
    g_mime_init();
    for (guint i = 0; i < G_N_ELEMENTS(lists); i++) {
        g_autofree char *msg = g_strdup_printf("To: %s\r\nSubject: x\r\n\r\nbody\r\n", lists[i]);
        g_autoptr(GBytes) b = g_bytes_new(msg, strlen(msg));
        g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
        if (!m)
            continue;
        const ImapEnvelope *e = imap_mime_envelope_desc(m);
        InternetAddressList *gl = internet_address_list_parse(NULL, lists[i]);
        g_assert_nonnull(gl);
        if (!gl || !e)
            continue;
        /* flatten GMime's list: groups as start/end like IMAP */
        GPtrArray *flat = g_ptr_array_new();
        for (int k = 0; k < internet_address_list_length(gl); k++) {
            InternetAddress *a = internet_address_list_get_address(gl, k);
            if (INTERNET_ADDRESS_IS_GROUP(a)) {
                g_ptr_array_add(flat, a);
                InternetAddressList *mem =
                    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a));
                for (int j = 0; j < internet_address_list_length(mem); j++)
                    g_ptr_array_add(flat, internet_address_list_get_address(mem, j));
                g_ptr_array_add(flat, NULL);
            } else {
                g_ptr_array_add(flat, a);
            }
        }
        g_assert_cmpuint(e->n_to, ==, flat->len);
        for (guint k = 0; k < MIN(e->n_to, flat->len); k++) {
            const ImapAddress *ia = &e->to[k];
            InternetAddress *ga = flat->pdata[k];
            if (!ga) {
                g_assert_null(ia->mailbox);
                continue;
            }
            if (INTERNET_ADDRESS_IS_GROUP(ga)) {
                g_assert_null(ia->host);
                g_assert_cmpstr(ia->mailbox, ==, internet_address_get_name(ga));
                continue;
            }
            const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ga));
            g_autofree char *mine = g_strdup_printf("%s@%s", ia->mailbox, ia->host);
            if (strchr(ia->mailbox, ' ')) /* GMime keeps the quotes */
                g_test_message("skip quoted local part %s", mine);
            else
                g_assert_cmpstr(mine, ==, addr);
            const char *gname = internet_address_get_name(ga);
            g_assert_cmpstr(ia->name, ==, gname && *gname ? gname : NULL);
        }
        g_ptr_array_free(flat, TRUE);
        g_object_unref(gl);
    }
}

static void
test_address_damage(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"foo", "((NIL NIL \"foo\" \"MISSING_DOMAIN\"))"},
        {"<>", "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))"},
        {"\"local part\"@x.y", "((NIL NIL \"local part\" \"x.y\"))"},
        {"a@b, ,,c@d", "((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))"},
        {"e: ;", "((NIL NIL \"e\" NIL)(NIL NIL NIL NIL))"},
        {"g: a@b", "((NIL NIL \"g\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL))"},
        {">>> @@ <<<", NULL},
        {"Bad <a@b", "((\"Bad\" NIL \"a\" \"b\"))"},
        {"(only a comment)", "NIL"},
        {"x@y (c1) (c2)", "((\"c1\" NIL \"x\" \"y\"))"},
        {"=?utf-8?q?a.b?= <ab@c>", "((\"=?utf-8?q?a.b?=\" NIL \"ab\" \"c\"))"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *msg = g_strdup_printf("From: %s\n\n", cases[i].in);
        g_autoptr(GBytes) b = g_bytes_new(msg, strlen(msg));
        g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
        if (!m)
            continue;
        const char *env = imap_mime_envelope(m);
        g_assert_true(imap_syntax_ok(env));
        if (!cases[i].want)
            continue;
        /* the From list is the third element: after date NIL and subject NIL */
        g_autofree char *want = g_strdup_printf("(NIL NIL %s ", cases[i].want);
        if (!g_str_has_prefix(env, want)) {
            g_test_message("%s: got %s", cases[i].in, env);
            g_test_fail();
        }
    }
}

static void
test_8bit(void)
{
    /* raw 8-bit header bytes go out as literals, unchanged */
    g_autoptr(GBytes) b = fixture("8bit.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    g_assert_cmpstr(imap_mime_envelope(m), ==,
                    "(NIL {14}\r\nGr\xfc\xdf"
                    "e aus K\xf6ln (({13}\r\nJ\xc3\xb6rg M\xc3\xbcller NIL \"joerg\" "
                    "\"example.de\")) (({13}\r\nJ\xc3\xb6rg M\xc3\xbcller NIL \"joerg\" "
                    "\"example.de\")) (({13}\r\nJ\xc3\xb6rg M\xc3\xbcller NIL \"joerg\" "
                    "\"example.de\")) (({5}\r\nRen\xc3\xa9 NIL \"rene\" \"example.fr\")) NIL NIL "
                    "NIL NIL)");
    g_assert_cmpstr(imap_mime_bodystructure(m), ==,
                    "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 9 1 NIL NIL NIL "
                    "NIL)");
    /* the description keeps the bytes; UTF-8 mode may quote valid UTF-8 */
    const ImapEnvelope *e = imap_mime_envelope_desc(m);
    if (!e)
        return;
    g_assert_cmpstr(e->subject, ==,
                    "Gr\xfc\xdf"
                    "e aus K\xf6ln");
    g_autoptr(GString) s = g_string_new(NULL);
    imap_fmt_envelope(s, e, IMAP_FMT_UTF8);
    g_assert_nonnull(strstr(s->str, "((\"J\xc3\xb6rg M\xc3\xbcller\" NIL"));
}

static void
test_params_2231(void)
{
    const char *msg = "Content-Type: Text/HTML; Charset=UTF-8; name*0=\"a\"; name*1=\"b c\";\n"
                      " fn*1*=%42; fn*0*=utf-8''%41; odd = unquoted value (comment); x\n"
                      "Content-Disposition: attachment; filename*=us-ascii'en'a%20b\n"
                      "Content-Transfer-Encoding: QUOTED-printable (comment)\n"
                      "\n"
                      "hello\n";
    g_autoptr(GBytes) b = g_bytes_new_static(msg, strlen(msg));
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    /* continuations joined in the order first seen; percent-encoding kept */
    g_assert_cmpstr(imap_mime_bodystructure(m), ==,
                    "(\"Text\" \"HTML\" (\"Charset\" \"UTF-8\" \"name\" \"ab c\" \"fn*\" "
                    "\"utf-8''%41%42\" \"odd\" \"unquoted value\") NIL NIL \"QUOTED-printable\" 7 "
                    "1 NIL (\"attachment\" (\"filename*\" \"us-ascii'en'a%20b\")) NIL NIL)");
}

/* ---- malformed input ---- */

static void
test_malformed(void)
{
    static const struct {
        const char *file, *bs;
    } cases[] = {
        /* multipart without boundary / without delimiters: text/plain so
         * the text stays readable (Dovecot shows an empty part instead) */
        {"noboundary.eml", "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 111 "
                           "5 NIL NIL NIL NIL)"},
        {"nodelim.eml",
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 27 2 NIL NIL NIL NIL)"},
        {"truncated.eml",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL)"
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 21 1 NIL NIL NIL NIL) "
         "\"alternative\" (\"boundary\" \"b\") NIL NIL NIL) \"mixed\" (\"boundary\" \"a\") NIL NIL "
         "NIL)"},
        {"nonl.eml",
         "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL)"
         "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL) "
         "\"mixed\" (\"boundary\" \"q\") NIL NIL NIL)"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++)
        check_texts(cases[i].file, cases[i].bs, NULL, NULL);

    g_autoptr(GBytes) b = fixture("truncated.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (m) {
        check_sect(m, b, "BODY[2.1]", "inner part, cut off\r\n", -1);
        check_sect(m, b, "BODY[2.2]", "<NO_PART>", -1);
        check_sect(m, b, "BODY[1]", "first part", -1);
    }
    g_autoptr(GBytes) n = fixture("nonl.eml");
    g_autoptr(ImapMimeMessage) mn = parse_bytes(n, NULL);
    if (mn) {
        check_sect(mn, n, "BODY[2]", "def", -1);
        check_sect(mn, n, "BODY[1.MIME]", "\r\n", -1);
    }

    /* odd shapes, each must give valid syntax and a full-size BODY[] */
    static const char *const odd[] = {
        "",
        "\n",
        "\r\n\r\n",
        "no header at all, no newline",
        "Subject: header only",
        "Content-Type: multipart/mixed; boundary=x\n\n--x\n--x\n--x--\n",
        "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n--x--",
        "Content-Type: message/rfc822\n\n",
        "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA==\n",
        "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: multipart/mixed; "
        "boundary=x\n\n--x\nhi\n--x--\n--x--\n",
        "Content-Type: /\n\n",
        "Content-Type: text/\n\n",
        "Content-Type: ;;;===\"\n\n",
        "Content-Type: text/plain; a=\"unterminated\n\n",
        "Content-Type: multipart/mixed; boundary=\"\"\n\n--\n",
        "Content-Type: multipart/mixed; boundary=a\n\n--a\r\r\n\r\nx\r\n--a--   \t\r\n",
        " leading continuation\nSubject: s\n\n",
        NULL, /* with_nul */
    };
    static const char with_nul[] =
        "From: (((((\nTo: \"\"\"\"\nCc: <<<<>>>>\nBcc: ::::;;;;\nSubject: \0nul\0\n\nx\0y\n";
    for (guint i = 0; i < G_N_ELEMENTS(odd); i++) {
        g_autoptr(GBytes) ob = i < G_N_ELEMENTS(odd) - 1
                                   ? g_bytes_new(odd[i], strlen(odd[i]))
                                   : g_bytes_new(with_nul, sizeof with_nul - 1);
        g_autoptr(ImapMimeMessage) om = parse_bytes(ob, NULL);
        if (!om)
            continue;
        g_assert_true(imap_syntax_ok(imap_mime_bodystructure(om)));
        g_assert_true(imap_syntax_ok(imap_mime_body(om)));
        g_assert_true(imap_syntax_ok(imap_mime_envelope(om)));
        g_autoptr(GBytes) w = to_crlf(ob);
        g_autoptr(GBytes) all = sect(om, ob, "BODY[]");
        g_assert_true(g_bytes_equal(all, w));
    }
}

/* multipart nested `levels` deep, a text leaf inside */
static GBytes *
deep_multipart(guint levels)
{
    GString *s = g_string_new("Subject: deep\r\n");
    for (guint i = 0; i < levels; i++)
        g_string_append_printf(s, "Content-Type: multipart/mixed; boundary=b%u\r\n\r\n--b%u\r\n", i,
                               i);
    g_string_append(s, "Content-Type: text/plain\r\n\r\nleaf\r\n");
    for (guint i = levels; i-- > 0;)
        g_string_append_printf(s, "--b%u--\r\n", i);
    return g_string_free_to_bytes(s);
}

static guint
count(const char *hay, const char *needle)
{
    guint n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static char *
ones(guint n, const char *suffix)
{
    GString *s = g_string_new("BODY[");
    for (guint i = 0; i < n; i++)
        g_string_append(s, i ? ".1" : "1");
    g_string_append_printf(s, "%s]", suffix);
    return g_string_free(s, FALSE);
}

static void
test_deep(void)
{
    /* 40 levels, limit 32: the entity at depth 32 is opaque */
    g_autoptr(GBytes) b = deep_multipart(40);
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    const char *bs = imap_mime_bodystructure(m);
    g_assert_true(imap_syntax_ok(bs));
    g_assert_cmpuint(count(bs, "\"mixed\""), ==, 32);
    g_assert_cmpuint(count(bs, "\"application\" \"octet-stream\""), ==, 1);
    g_assert_null(strstr(bs, "\"text\""));
    /* the opaque part holds the rest, up to its parent's delimiter */
    g_autofree char *at = ones(32, "");
    g_autoptr(GBytes) opaque = sect(m, b, at);
    g_assert_true(bytes_has_prefix(opaque, "--b32\r\n"));
    g_assert_true(bytes_has_suffix(opaque, "--b32--"));
    g_autofree char *mime = ones(32, ".MIME");
    check_sect(m, b, mime, "Content-Type: multipart/mixed; boundary=b32\r\n\r\n", -1);
    /* with a lower limit: "1" of the opaque part is itself, then nothing */
    ImapMimeLimits lim = IMAP_MIME_LIMITS_INIT;
    lim.max_depth = 5;
    g_autoptr(ImapMimeMessage) m5 = parse_bytes(b, &lim);
    if (m5) {
        g_assert_cmpuint(count(imap_mime_body(m5), "\"mixed\""), ==, 5);
        g_autofree char *p5 = ones(5, ".MIME");
        check_sect(m5, b, p5, "Content-Type: multipart/mixed; boundary=b5\r\n\r\n", -1);
        g_autofree char *p6 = ones(6, "");
        g_autofree char *p5b = ones(5, "");
        g_autoptr(GBytes) s5 = sect(m5, b, p5b);
        g_autoptr(GBytes) s6 = sect(m5, b, p6);
        g_assert_true(g_bytes_equal(s5, s6));
        g_autofree char *p7 = ones(7, "");
        check_sect(m5, b, p7, "<NO_PART>", -1);
    }

    /* message/rfc822 nested 50 deep */
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < 50; i++)
        g_string_append_printf(s, "Subject: level %u\nContent-Type: message/rfc822\n\n", i);
    g_string_append(s, "Subject: last\n\nend\n");
    g_autoptr(GBytes) mb = g_string_free_to_bytes(s);
    g_autoptr(ImapMimeMessage) mm = parse_bytes(mb, NULL);
    if (!mm)
        return;
    const char *mbs = imap_mime_bodystructure(mm);
    g_assert_true(imap_syntax_ok(mbs));
    g_assert_cmpuint(count(mbs, "\"rfc822\""), ==, 32);
    g_assert_cmpuint(count(mbs, "\"octet-stream\""), ==, 1);
    /* the message at depth 32 is described (its envelope), not entered */
    g_assert_nonnull(strstr(mbs, "\"level 32\""));
    g_assert_null(strstr(mbs, "\"level 33\""));
    /* 1.1.1: part 1 of the top message (its body), then into each embedded one */
    check_sect(mm, mb, "BODY[1.HEADER]", "Subject: level 1\r\nContent-Type: message/rfc822\r\n\r\n",
               -1);
    check_sect(mm, mb, "BODY[1.1.HEADER]",
               "Subject: level 2\r\nContent-Type: message/rfc822\r\n\r\n", -1);
}

static void
test_many_parts(void)
{
    GString *s = g_string_new("Content-Type: multipart/mixed; boundary=p\n\n");
    for (guint i = 1; i <= 1500; i++)
        g_string_append_printf(s, "--p\n\npart %u\n", i);
    g_string_append(s, "--p--\n");
    g_autoptr(GBytes) b = g_string_free_to_bytes(s);
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    /* 1000 entities: the message and 999 parts; the rest is opaque */
    g_assert_cmpuint(count(imap_mime_body(m), "(\"text\""), ==, 999);
    check_sect(m, b, "BODY[999]", "part 999", -1);
    check_sect(m, b, "BODY[1000]", "<NO_PART>", -1);
    g_autoptr(GBytes) w = to_crlf(b);
    g_assert_cmpuint(imap_mime_size(m), ==, g_bytes_get_size(w));

    ImapMimeLimits lim = IMAP_MIME_LIMITS_INIT;
    lim.max_parts = 4;
    g_autoptr(ImapMimeMessage) m4 = parse_bytes(b, &lim);
    if (!m4)
        return;
    g_assert_cmpuint(count(imap_mime_body(m4), "(\"text\""), ==, 3);
    check_sect(m4, b, "BODY[3]", "part 3", -1);
    check_sect(m4, b, "BODY[4]", "<NO_PART>", -1);
    /* the multipart's own size still covers everything */
    g_assert_cmpuint(imap_mime_size(m4), ==, g_bytes_get_size(w));
}

static void
test_header_limits(void)
{
    /* a header larger than max_header: its fields past the limit are
     * not read, but the header still ends at its empty line */
    GString *s = g_string_new("Subject: kept\n");
    for (guint i = 0; i < 2000; i++)
        g_string_append_printf(s, "X-Filler-%u: %0100u\n", i, i);
    g_string_append(s, "From: late@example.com\n\nbody\n");
    g_autoptr(GBytes) b = g_string_free_to_bytes(s);
    ImapMimeLimits lim = IMAP_MIME_LIMITS_INIT;
    lim.max_header = 4096;
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, &lim);
    if (!m)
        return;
    g_assert_true(g_str_has_prefix(imap_mime_envelope(m), "(NIL \"kept\" NIL "));
    check_sect(m, b, "BODY[TEXT]", "body\r\n", -1);
    /* sections read the file, not the kept copy */
    check_sect(m, b, "BODY[HEADER.FIELDS (From)]", "From: late@example.com\r\n\r\n", -1);

    /* a line longer than the reader's window, in a header and a body */
    GString *l = g_string_new("Subject: ");
    for (guint i = 0; i < 200000; i++)
        g_string_append_c(l, 'a' + i % 26);
    g_string_append(l, "\nContent-Type: multipart/mixed; boundary=z\n\n--z\n\n");
    for (guint i = 0; i < 150000; i++)
        g_string_append_c(l, i % 1000 == 999 ? ' ' : 'x');
    g_string_append(l, "\n--z--\n");
    g_autoptr(GBytes) lb = g_string_free_to_bytes(l);
    g_autoptr(ImapMimeMessage) lm = parse_bytes(lb, NULL);
    if (!lm)
        return;
    g_assert_true(g_str_has_suffix(imap_mime_bodystructure(lm),
                                   "150000 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"z\") "
                                   "NIL NIL NIL)"));
}

/* ---- sections ---- */

static void
test_sections_nested(void)
{
    g_autoptr(GBytes) b = fixture("nested.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    const char *inner_hdr = "From: Eve <eve@example.org>\r\n"
                            "To: Carol <carol@example.com>\r\n"
                            "Subject: Inner one\r\n"
                            "Date: Tue, 1 Jul 2003 08:00:00 +0000\r\n"
                            "Message-ID: <inner1@example.org>\r\n"
                            "MIME-Version: 1.0\r\n"
                            "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n";
    const char *inner_text = "--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                             "plain text\r\n--inner\r\nContent-Type: text/html; charset=utf-8\r\n"
                             "\r\n<b>html</b>\r\n--inner--";
    check_sect(m, b, "BODY.PEEK[2.HEADER]", inner_hdr, -1);
    check_sect(m, b, "BODY.PEEK[2.TEXT]", inner_text, -1);
    g_autofree char *whole = g_strconcat(inner_hdr, inner_text, NULL);
    check_sect(m, b, "BODY[2]", whole, -1);
    check_sect(m, b, "BODY[2.MIME]",
               "Content-Type: message/rfc822\r\nContent-Description: forwarded message\r\n\r\n",
               -1);
    check_sect(m, b, "BODY[2.1]", "plain text", -1);
    check_sect(m, b, "BODY[2.1.MIME]", "Content-Type: text/plain; charset=utf-8\r\n\r\n", -1);
    check_sect(m, b, "BODY[2.2]", "<b>html</b>", -1);
    check_sect(m, b, "BODY[2.HEADER.FIELDS (subject MESSAGE-id)]",
               "Subject: Inner one\r\nMessage-ID: <inner1@example.org>\r\n\r\n", -1);
    /* a single-part embedded message: 3.1 is its body, 3.1.MIME its header */
    check_sect(m, b, "BODY[3.1]", "Just text,\r\ntwo lines.", -1);
    check_sect(m, b, "BODY[3.1.MIME]",
               "From: Frank <frank@example.org>\r\nSubject: Inner two\r\n\r\n", -1);
    check_sect(m, b, "BODY[3.TEXT]", "Just text,\r\ntwo lines.", -1);
    /* a text part's "1" is itself (as in Dovecot); absent parts */
    check_sect(m, b, "BODY[1.1]", "See the forwarded messages.\r\n", -1);
    check_sect(m, b, "BODY[1]", "See the forwarded messages.\r\n", -1);
    check_sect(m, b, "BODY[1.HEADER]", "<NO_PART>", -1);
    check_sect(m, b, "BODY[1.1.1]", "<NO_PART>", -1);
    check_sect(m, b, "BODY[4]", "<NO_PART>", -1);
    check_sect(m, b, "BODY[3.2]", "<NO_PART>", -1);
    check_sect(m, b, "BODY[2.3]", "<NO_PART>", -1);
    /* the whole message and its halves */
    g_autoptr(GBytes) all = sect(m, b, "BODY[]");
    g_assert_true(g_bytes_equal(all, b));
    g_autoptr(GBytes) h = sect(m, b, "BODY[HEADER]");
    g_autoptr(GBytes) t = sect(m, b, "BODY[TEXT]");
    g_assert_cmpuint(g_bytes_get_size(h) + g_bytes_get_size(t), ==, g_bytes_get_size(b));
    g_assert_true(bytes_has_suffix(h, "boundary=outer\r\n\r\n"));
    check_sect(m, b, "RFC822.HEADER", g_bytes_get_data(h, NULL), (gssize)g_bytes_get_size(h));
}

static void
test_sections_single(void)
{
    /* a message that is not multipart: part 1 is its body, 1.MIME its header */
    g_autoptr(GBytes) b = fixture("groups.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    check_sect(m, b, "BODY[1]", "Testing.\r\n", -1);
    check_sect(m, b, "BODY[TEXT]", "Testing.\r\n", -1);
    g_autoptr(GBytes) h = sect(m, b, "BODY[HEADER]");
    g_autoptr(GBytes) mime = sect(m, b, "BODY[1.MIME]");
    g_assert_true(g_bytes_equal(h, mime));
    check_sect(m, b, "BODY[2]", "<NO_PART>", -1);
    check_sect(m, b, "BODY[1.2]", "<NO_PART>", -1);
}

static void
test_header_fields(void)
{
    g_autoptr(GBytes) b = fixture("headers.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    /* names match without case; every occurrence, folding as it was */
    check_sect(m, b, "BODY.PEEK[HEADER.FIELDS (subject X-FOLDED From x-empty)]",
               "Subject: first subject\r\n"
               "X-Folded: part one\r\n\tpart two\r\n\t part three\r\n"
               "from: Lower Case <lower@example.com>\r\n"
               "X-Empty:\r\n"
               "Subject : obsolete spacing\r\n\r\n",
               -1);
    check_sect(m, b, "BODY.PEEK[HEADER.FIELDS.NOT (Subject received x-trailing)]",
               "X-Folded: part one\r\n\tpart two\r\n\t part three\r\n"
               "from: Lower Case <lower@example.com>\r\n"
               "X-Empty:\r\n"
               "TO: upper@example.com\r\n\r\n",
               -1);
    check_sect(m, b, "BODY.PEEK[HEADER.FIELDS (nothing)]", "\r\n", -1);
    check_sect(m, b, "BODY.PEEK[HEADER.FIELDS (X-Trailing)]",
               "X-Trailing:   value with trailing spaces   \r\n\r\n", -1);
    /* partials: of the wire form; past the end is empty */
    check_sect(m, b, "BODY.PEEK[TEXT]<5.100>", "line 1\r\nBody line 2\r\n", -1);
    check_sect(m, b, "BODY.PEEK[TEXT]<0.4>", "Body", -1);
    check_sect(m, b, "BODY.PEEK[]<300.10>", "", -1);
    check_sect(m, b, "BODY.PEEK[HEADER.FIELDS (TO)]<2.6>", ": uppe", -1);
    /* the first Subject is the envelope's (Dovecot takes the last) */
    g_assert_true(g_str_has_prefix(imap_mime_envelope(m), "(NIL \"first subject\" "));
    guint64 size = 0;
    g_autoptr(ImapCommand) c = fetch_cmd("BODY[HEADER.FIELDS (TO)]");
    ImapMimeInput in = IMAP_MIME_INPUT_MEM(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
    if (c) {
        g_assert_true(imap_mime_section_size(m, &in, &c->u.fetch.sections[0], &size, NULL));
        g_assert_cmpuint(size, ==, strlen("TO: upper@example.com\r\n\r\n"));
    }
}

static void
test_binary(void)
{
    g_autoptr(GBytes) b = fixture("binary.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    char bytes[65];
    for (int i = 0; i < 65; i++)
        bytes[i] = (char)i;
    check_sect(m, b, "BINARY.PEEK[1]", bytes, 65);
    check_sect(m, b, "BINARY.SIZE[1]", "65", -1);
    check_sect(m, b, "BINARY.PEEK[1]<60.10>", "<=>?@", -1);
    check_sect(m, b, "BINARY.PEEK[1]<0.3>", "\0\1\2", 3);
    /* quoted-printable: soft breaks joined, hard breaks CRLF */
    check_sect(m, b, "BINARY[2]", "caf\xc3\xa9 line joined\r\nsecond line\r\nwith encoded CRLF",
               -1);
    check_sect(m, b, "BINARY.SIZE[2]", "49", -1);
    check_sect(m, b, "BINARY[3]", "<UNKNOWN_CTE>", -1);
    check_sect(m, b, "BINARY.SIZE[3]", "<UNKNOWN_CTE>", -1);
    check_sect(m, b, "BINARY[4]", "caf\xc3\xa9", -1);
    check_sect(m, b, "BINARY.SIZE[4]", "5", -1);
    check_sect(m, b, "BINARY[5]", "<NO_PART>", -1);
    /* the encoded form is still there as BODY */
    check_sect(m, b, "BODY[3]", "whatever", -1);
    g_autoptr(GBytes) all = sect(m, b, "BINARY[]");
    g_assert_true(g_bytes_equal(all, b));

    g_autoptr(GBytes) mx = fixture("mixed.eml");
    g_autoptr(ImapMimeMessage) mm = parse_bytes(mx, NULL);
    if (!mm)
        return;
    check_sect(mm, mx, "BINARY[1]",
               "Hello, \r\nhere is the report: caf\xe9 = coffee. This line is soft broken.", -1);
    check_sect(mm, mx, "BINARY[2]",
               "%PDF-1.4\n%\xc7\xec\x8f\xa2\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n", -1);
    check_sect(mm, mx, "BINARY.SIZE[2]", "54", -1);
    check_sect(mm, mx, "BINARY.SIZE[3]", "70", -1);
    check_sect(mm, mx, "BINARY[3]<0.8>", "\x89PNG\r\n\x1a\n", 8);

    /* LF-only storage: QP hard breaks still come out as CRLF, base64 exact */
    g_autoptr(GBytes) lf = to_lf(b);
    g_autoptr(ImapMimeMessage) ml = parse_bytes(lf, NULL);
    if (!ml)
        return;
    check_sect(ml, lf, "BINARY[1]", bytes, 65);
    check_sect(ml, lf, "BINARY[2]", "caf\xc3\xa9 line joined\r\nsecond line\r\nwith encoded CRLF",
               -1);
}

/* ---- LF vs CRLF, fd vs memory, cache ---- */

static const char *const all_fixtures[] = {
    "8bit.eml",    "alternative.eml", "binary.eml",    "digest.eml", "encoded.eml",
    "groups.eml",  "headers.eml",     "mixed.eml",     "nested.eml", "noboundary.eml",
    "nodelim.eml", "nonl.eml",        "truncated.eml",
};

static const char *const probe_items[] = {
    "BODY[]",
    "BODY[HEADER]",
    "BODY[TEXT]",
    "BODY[1]",
    "BODY[1.MIME]",
    "BODY[2]",
    "BODY[2.MIME]",
    "BODY[2.HEADER]",
    "BODY[2.TEXT]",
    "BODY[2.1]",
    "BODY[3]",
    "BODY[3.1]",
    "BODY[1]<3.7>",
    "BINARY[1]",
    "BINARY[2]",
    "BINARY[2]<1.5>",
    "BINARY.SIZE[1]",
    "BINARY.SIZE[2]",
    "BODY[HEADER.FIELDS (From Subject)]",
    "BODY[HEADER.FIELDS.NOT (From)]",
    "BODY[2.1.MIME]",
    "BODY[4]",
    "BINARY[3]",
};

static void
same_answers(const ImapMimeMessage *a, GBytes *da, const ImapMimeMessage *b, GBytes *db,
             const char *what)
{
    for (guint i = 0; i < G_N_ELEMENTS(probe_items); i++) {
        g_autoptr(GBytes) x = sect(a, da, probe_items[i]);
        g_autoptr(GBytes) y = sect(b, db, probe_items[i]);
        if (!g_bytes_equal(x, y)) {
            g_test_message("%s: %s differs", what, probe_items[i]);
            g_test_fail();
        }
    }
}

/* A section through the stream API, `chunk` octets a read. */
static GBytes *
stream_all(const ImapMimeMessage *m, GBytes *data, const char *item, gsize chunk)
{
    g_autoptr(ImapCommand) c = fetch_cmd(item);
    if (!c || c->u.fetch.n_sections != 1)
        return NULL;
    ImapMimeInput in = IMAP_MIME_INPUT_MEM(g_bytes_get_data(data, NULL), g_bytes_get_size(data));
    guint64 size = 0;
    g_autoptr(ImapMimeStream) st =
        imap_mime_stream_open(m, &in, &c->u.fetch.sections[0], &size, NULL);
    if (!st)
        return NULL;
    GByteArray *out = g_byte_array_new();
    guchar *buf = g_malloc(chunk);
    gssize n;
    while ((n = imap_mime_stream_read(st, buf, chunk, NULL)) > 0)
        g_byte_array_append(out, buf, (guint)n);
    g_free(buf);
    g_assert_cmpint(n, ==, 0);
    g_assert_cmpuint(out->len, ==, size);
    return g_byte_array_free_to_bytes(out);
}

static void
same_streamed(const ImapMimeMessage *m, GBytes *data, const char *what)
{
    for (guint i = 0; i < G_N_ELEMENTS(probe_items); i++) {
        if (g_str_has_prefix(probe_items[i], "BINARY.SIZE"))
            continue; /* a number, not octets to stream */
        const char *code;
        g_autoptr(GBytes) whole = sect_try(m, data, probe_items[i], &code);
        g_autoptr(GBytes) s1 = stream_all(m, data, probe_items[i], 1);
        g_autoptr(GBytes) s7 = stream_all(m, data, probe_items[i], 7);
        if (!whole) {
            g_assert_null(s1);
            continue;
        }
        if (!s1 || !s7 || !g_bytes_equal(whole, s1) || !g_bytes_equal(whole, s7)) {
            g_test_message("%s: streamed %s differs", what, probe_items[i]);
            g_test_fail();
        }
    }
}

static void
test_lf_crlf(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(all_fixtures); i++) {
        g_autoptr(GBytes) b = fixture(all_fixtures[i]);
        g_autoptr(GBytes) lf = to_lf(b);
        g_autoptr(GBytes) crlf = to_crlf(b);
        g_autoptr(ImapMimeMessage) ml = parse_bytes(lf, NULL);
        g_autoptr(ImapMimeMessage) mc = parse_bytes(crlf, NULL);
        if (!ml || !mc)
            continue;
        g_assert_cmpstr(imap_mime_bodystructure(ml), ==, imap_mime_bodystructure(mc));
        g_assert_cmpstr(imap_mime_envelope(ml), ==, imap_mime_envelope(mc));
        g_assert_cmpuint(imap_mime_size(ml), ==, g_bytes_get_size(crlf));
        g_assert_cmpuint(imap_mime_size(mc), ==, g_bytes_get_size(crlf));
        same_answers(ml, lf, mc, crlf, all_fixtures[i]);
        same_streamed(ml, lf, all_fixtures[i]);
        same_streamed(mc, crlf, all_fixtures[i]);
        g_autoptr(GBytes) whole = sect(ml, lf, "BODY[]");
        g_assert_true(g_bytes_equal(whole, crlf));
    }
}

static void
test_fd_input(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    for (guint i = 0; i < G_N_ELEMENTS(all_fixtures); i++) {
        g_autoptr(GBytes) b = fixture(all_fixtures[i]);
        g_autofree char *path = fixture_path(all_fixtures[i]);
        int fd = open(path, O_RDONLY);
        g_assert_cmpint(fd, >=, 0);
        if (fd < 0)
            continue;
        ImapMimeInput in = IMAP_MIME_INPUT_FD(fd);
        GError *err = NULL;
        g_autoptr(ImapMimeMessage) mf = imap_mime_parse(&in, NULL, &err);
        g_assert_no_error(err);
        g_autoptr(ImapMimeMessage) mm = parse_bytes(b, NULL);
        if (mf && mm) {
            g_assert_cmpstr(imap_mime_bodystructure(mf), ==, imap_mime_bodystructure(mm));
            g_assert_cmpstr(imap_mime_envelope(mf), ==, imap_mime_envelope(mm));
            /* sections read through the fd */
            g_autoptr(ImapCommand) c = fetch_cmd("BODY[TEXT]");
            GBytes *viafd = NULL;
            if (c && imap_mime_section(mf, &in, &c->u.fetch.sections[0], &viafd, &err)) {
                g_autoptr(GBytes) viamem = sect(mm, b, "BODY[TEXT]");
                g_assert_true(g_bytes_equal(viafd, viamem));
                g_bytes_unref(viafd);
            }
            g_assert_no_error(err);
            g_assert_cmpint(lseek(fd, 0, SEEK_CUR), ==, 0); /* pread only */
        }
        close(fd);
    }
    /* a big file through the fd window: long lines, many chunks */
    GString *s = g_string_new("Content-Type: multipart/mixed; boundary=w\n\n");
    for (guint p = 0; p < 3; p++) {
        g_string_append(s, "--w\nContent-Type: text/plain\n\n");
        for (guint i = 0; i < 30000; i++)
            g_string_append(s, (i % 7) ? "0123456789abcdef\n" : "x");
    }
    for (guint i = 0; i < 100000; i++)
        g_string_append_c(s, 'L');
    g_string_append(s, "\n--w--\n");
    g_autoptr(GBytes) big = g_string_free_to_bytes(s);
    g_autofree char *bp = g_build_filename(dir, "big.eml", NULL);
    g_assert_true(
        g_file_set_contents(bp, g_bytes_get_data(big, NULL), g_bytes_get_size(big), NULL));
    int fd = open(bp, O_RDONLY);
    ImapMimeInput in = IMAP_MIME_INPUT_FD(fd);
    g_autoptr(ImapMimeMessage) mf = imap_mime_parse(&in, NULL, NULL);
    g_autoptr(ImapMimeMessage) mm = parse_bytes(big, NULL);
    g_assert_nonnull(mf);
    if (mf && mm) {
        g_assert_cmpstr(imap_mime_bodystructure(mf), ==, imap_mime_bodystructure(mm));
        /* streamed in odd chunks: the same octets as in one piece */
        g_autoptr(GBytes) s3 = stream_all(mm, big, "BODY[3]<99999.300001>", 4093);
        g_autoptr(GBytes) w3 = sect(mm, big, "BODY[3]<99999.300001>");
        g_assert_nonnull(s3);
        if (s3)
            g_assert_true(g_bytes_equal(s3, w3));
        g_autoptr(ImapCommand) c = fetch_cmd("BODY[3]<100000.70000>");
        GBytes *viafd = NULL;
        if (c && imap_mime_section(mf, &in, &c->u.fetch.sections[0], &viafd, NULL)) {
            g_autoptr(GBytes) viamem = sect(mm, big, "BODY[3]<100000.70000>");
            g_assert_cmpuint(g_bytes_get_size(viafd), ==, 70000);
            g_assert_true(g_bytes_equal(viafd, viamem));
            g_bytes_unref(viafd);
        }
    }
    close(fd);
}

/* ---- top-level header sections from the header alone ---- */

static const char *const header_items[] = {
    "BODY[HEADER]",
    "RFC822.HEADER",
    "BODY.PEEK[HEADER]<0.10>",
    "BODY.PEEK[HEADER]<7.8195>",
    "BODY.PEEK[HEADER]<8190.9>",
    "BODY.PEEK[HEADER]<300000.5>",
    "BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)]",
    "BODY.PEEK[HEADER.FIELDS (subject X-FOLDED from x-empty x-long)]",
    "BODY.PEEK[HEADER.FIELDS (nothing)]",
    "BODY.PEEK[HEADER.FIELDS (received)]<3.40>",
    "BODY[HEADER.FIELDS.NOT (Subject Received x-long)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (from)]<1.1>",
};

/* Header-only octets of item through in, read `chunk` octets at a time;
 * NULL (and a failure) if it cannot be opened. */
static GBytes *
header_only(const ImapMimeInput *in, const char *item, gsize chunk)
{
    g_autoptr(ImapCommand) c = fetch_cmd(item);
    if (!c || c->u.fetch.n_sections != 1)
        return NULL;
    const ImapFetchSection *sec = &c->u.fetch.sections[0];
    g_assert_true(imap_mime_header_section(sec));
    guint64 size = 0;
    GError *err = NULL;
    g_autoptr(ImapMimeStream) st = imap_mime_header_stream_open(in, sec, &size, &err);
    g_assert_no_error(err);
    if (!st)
        return NULL;
    GByteArray *out = g_byte_array_new();
    guchar *buf = g_malloc(chunk);
    gssize n;
    while ((n = imap_mime_stream_read(st, buf, chunk, &err)) > 0)
        g_byte_array_append(out, buf, (guint)n);
    g_free(buf);
    g_assert_no_error(err);
    g_assert_cmpint(n, ==, 0);
    g_assert_cmpuint(out->len, ==, size);
    return g_byte_array_free_to_bytes(out);
}

/* Every header item of msg: header-only (buffer and fd, in odd chunks)
 * byte for byte what the full parse's section gives. */
static void
same_as_full(const char *dir, GBytes *msg, const char *what)
{
    g_autoptr(ImapMimeMessage) m = parse_bytes(msg, NULL);
    g_autofree char *path = g_build_filename(dir, "hdr.eml", NULL);
    g_assert_true(g_file_set_contents(path, g_bytes_get_data(msg, NULL),
                                      (gssize)g_bytes_get_size(msg), NULL));
    int fd = open(path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    ImapMimeInput inm = IMAP_MIME_INPUT_MEM(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg));
    ImapMimeInput inf = IMAP_MIME_INPUT_FD(fd);
    for (guint i = 0; m && i < G_N_ELEMENTS(header_items); i++) {
        g_autoptr(GBytes) full = sect(m, msg, header_items[i]);
        g_autoptr(GBytes) hm = header_only(&inm, header_items[i], 65536);
        g_autoptr(GBytes) hf = header_only(&inf, header_items[i], 4093);
        g_autoptr(GBytes) h1 = header_only(&inf, header_items[i], 1);
        if (!hm || !hf || !h1 || !g_bytes_equal(full, hm) || !g_bytes_equal(full, hf) ||
            !g_bytes_equal(full, h1)) {
            g_test_message("%s: %s differs from the full parse's", what, header_items[i]);
            g_test_fail();
        }
    }
    g_assert_cmpint(lseek(fd, 0, SEEK_CUR), ==, 0); /* pread only */
    close(fd);
}

/* A header of about `size` octets (LF or CRLF lines, a folded field,
 * the listed fields twice), then `tail`. */
static GBytes *
big_header(gsize size, const char *nl, const char *tail)
{
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "From: a@example.com%sSubject: big%s", nl, nl);
    for (guint i = 0; s->len < size; i++)
        g_string_append_printf(s, "Received: from h%u by mx%s\tid %u;%s", i, nl, i, nl);
    g_string_append_printf(s, "X-Long: %s%sSUBJECT: second%s", "v", nl, nl);
    g_string_append(s, tail);
    return g_string_free_to_bytes(s);
}

static void
test_header_only(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    for (guint i = 0; i < G_N_ELEMENTS(all_fixtures); i++) {
        g_autoptr(GBytes) b = fixture(all_fixtures[i]);
        same_as_full(dir, b, all_fixtures[i]);
        g_autoptr(GBytes) c = to_crlf(b);
        same_as_full(dir, c, all_fixtures[i]);
    }
    static const char *const small[] = {
        "", /* empty file */
        "\n",
        "\r\n",
        "\r",
        "\n\nbody\n",
        "Subject: no blank line, no line end",
        "Subject: no blank line\n",
        "Subject: no body\r\nFrom: x@y\r\n\r\n",
        "Subject: LF only\nFrom: x@y\n\tfolded\n\nbody\n",
        "Subject: mixed\r\nFrom: x@y\n\r\nbody\r\n",
        "Subject: cr not lf\r\r\nFrom: x@y\r\n\r\nbody\n",
        "Subject: cr line\n\r\rFrom: x@y\n\nbody\n",
        " leading continuation\nSubject: s\n  folded\n\tagain\nfrom : spaced\n\nbody\n",
        "garbage line\nSubject: s\nsubject: dup\nSUBJECT: dup2\n\nbody\n",
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nSubject: inner\n\nx\n--b--\n",
    };
    for (guint i = 0; i < G_N_ELEMENTS(small); i++) {
        g_autoptr(GBytes) b = g_bytes_new_static(small[i], strlen(small[i]));
        same_as_full(dir, b, small[i]);
    }
    /* the empty line around the read windows' edges (8 KiB, then 16 and
     * 32 more), "\r" as a window's last octet included */
    static const gsize edges[] = {8192, 8192 + 16384, 8192 + 16384 + 32768};
    for (guint e = 0; e < G_N_ELEMENTS(edges); e++) {
        for (gsize d = 0; d < 6; d++) {
            for (guint crlf = 0; crlf < 2; crlf++) {
                const char *nl = crlf ? "\r\n" : "\n";
                GString *s = g_string_new("Subject: edge\n");
                if (crlf)
                    g_string_assign(s, "Subject: edge\r\n");
                gsize want = edges[e] - 3 + d; /* where the empty line starts */
                while (s->len + 12 < want)
                    g_string_append_printf(s, "X-Pad: %s", nl);
                g_string_append(s, "X: ");
                while (s->len + strlen(nl) < want)
                    g_string_append_c(s, 'p');
                g_string_append_printf(s, "%s%sbody%s", nl, nl, nl);
                g_autoptr(GBytes) b = g_string_free_to_bytes(s);
                g_autofree char *what =
                    g_strdup_printf("edge %zu+%zu %s", edges[e], d, crlf ? "CRLF" : "LF");
                same_as_full(dir, b, what);
            }
        }
    }
    /* headers bigger than the first window, than 64 KiB, and than what
     * BODY[HEADER] keeps in memory (read again from the file) */
    static const gsize sizes[] = {9000, 70000, 300000};
    for (guint i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autoptr(GBytes) lf = big_header(sizes[i], "\n", "\nbody\n");
        g_autoptr(GBytes) cr = big_header(sizes[i], "\r\n", "\r\nbody\r\n");
        g_autoptr(GBytes) nb = big_header(sizes[i], "\n", ""); /* no blank line, no body */
        same_as_full(dir, lf, "big LF");
        same_as_full(dir, cr, "big CRLF");
        same_as_full(dir, nb, "big, no body");
    }
    /* HEADER.FIELDS of a header over 16 MiB (a file with no blank line):
     * refused with an error, not filtered in memory; BODY[HEADER] of it
     * still streams */
    {
        g_autoptr(GBytes) huge = big_header(17 * 1024 * 1024, "\n", "");
        ImapMimeInput hin =
            IMAP_MIME_INPUT_MEM(g_bytes_get_data(huge, NULL), g_bytes_get_size(huge));
        g_autoptr(ImapCommand) hc = fetch_cmd("BODY.PEEK[HEADER.FIELDS (SUBJECT)]");
        guint64 hsize = 0;
        GError *herr = NULL;
        ImapMimeStream *hst =
            imap_mime_header_stream_open(&hin, &hc->u.fetch.sections[0], &hsize, &herr);
        g_assert_null(hst);
        g_assert_error(herr, IMAP_MIME_ERROR, IMAP_MIME_ERROR_IO);
        g_clear_error(&herr);
        g_autoptr(GBytes) whole = header_only(&hin, "BODY.PEEK[HEADER]", 1 << 20);
        g_assert_nonnull(whole);
        g_assert_cmpuint(g_bytes_get_size(whole), >, 17 * 1024 * 1024);
    }
    /* expected octets written out, so both paths cannot be wrong alike */
    static const char folded[] = "Subject: a\n\tb\nFrom: x@y\nsubject: c\nTo: t@u\n\nbody\n";
    g_autoptr(GBytes) fb = g_bytes_new_static(folded, strlen(folded));
    ImapMimeInput in = IMAP_MIME_INPUT_MEM(folded, strlen(folded));
    struct {
        const char *item, *want;
    } want[] = {
        {"BODY[HEADER]", "Subject: a\r\n\tb\r\nFrom: x@y\r\nsubject: c\r\nTo: t@u\r\n\r\n"},
        {"BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "Subject: a\r\n\tb\r\nsubject: c\r\n\r\n"},
        {"BODY.PEEK[HEADER.FIELDS.NOT (subject to)]", "From: x@y\r\n\r\n"},
        {"BODY.PEEK[HEADER.FIELDS (Subject)]<3.9>", "ject: a\r\n"},
        {"BODY.PEEK[HEADER]<45.100>", "u\r\n\r\n"},
        {"BODY.PEEK[HEADER]<50.1>", ""},
    };
    for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
        g_autoptr(GBytes) got = header_only(&in, want[i].item, 3);
        g_assert_nonnull(got);
        if (got)
            g_assert_cmpmem(g_bytes_get_data(got, NULL), g_bytes_get_size(got), want[i].want,
                            strlen(want[i].want));
    }
    same_as_full(dir, fb, "folded");
    /* which sections go this way: top-level header ones only */
    static const struct {
        const char *item;
        gboolean yes;
    } which[] = {
        {"BODY[HEADER]", TRUE},
        {"BODY.PEEK[HEADER.FIELDS (a)]", TRUE},
        {"BODY[HEADER.FIELDS.NOT (a)]<1.2>", TRUE},
        {"RFC822.HEADER", TRUE},
        {"BODY[2.HEADER]", FALSE},
        {"BODY[1.HEADER.FIELDS (a)]", FALSE},
        {"BODY[TEXT]", FALSE},
        {"BODY[]", FALSE},
        {"BODY[1.MIME]", FALSE},
        {"RFC822", FALSE},
        {"BINARY[]", FALSE},
        {"BINARY.SIZE[1]", FALSE},
    };
    for (guint i = 0; i < G_N_ELEMENTS(which); i++) {
        g_autoptr(ImapCommand) c = fetch_cmd(which[i].item);
        if (c)
            g_assert_cmpint(imap_mime_header_section(&c->u.fetch.sections[0]), ==, which[i].yes);
    }
}

static void
test_cache(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(all_fixtures); i++) {
        g_autoptr(GBytes) b = fixture(all_fixtures[i]);
        g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
        if (!m)
            continue;
        g_autoptr(GBytes) blob = imap_mime_cache_build(m);
        GError *err = NULL;
        g_autoptr(ImapMimeMessage) c = imap_mime_cache_load(blob, &err);
        g_assert_no_error(err);
        if (!c)
            continue;
        g_assert_cmpstr(imap_mime_envelope(c), ==, imap_mime_envelope(m));
        g_assert_cmpstr(imap_mime_body(c), ==, imap_mime_body(m));
        g_assert_cmpstr(imap_mime_bodystructure(c), ==, imap_mime_bodystructure(m));
        g_assert_cmpuint(imap_mime_size(c), ==, imap_mime_size(m));
        g_assert_null(imap_mime_body_desc(c));
        g_assert_null(imap_mime_envelope_desc(c));
        same_answers(m, b, c, b, all_fixtures[i]);
        /* the blob is the compact part, the texts are most of it */
        g_assert_cmpuint(g_bytes_get_size(blob), <,
                         strlen(imap_mime_bodystructure(m)) * 2 + strlen(imap_mime_envelope(m)) +
                             64);

        /* every truncation and every single-octet change: an error or a
         * handle that only reads inside the message */
        gsize len;
        const guchar *p = g_bytes_get_data(blob, &len);
        for (gsize cut = 0; cut < len; cut++) {
            g_autoptr(GBytes) t = g_bytes_new(p, cut);
            g_autoptr(ImapMimeMessage) bad = imap_mime_cache_load(t, &err);
            g_assert_null(bad);
            g_assert_error(err, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CACHE);
            g_clear_error(&err);
        }
        guchar *copy = g_memdup2(p, len);
        for (gsize k = 0; k < len; k++) {
            guchar old = copy[k];
            copy[k] ^= (guchar)(1u << (k % 8));
            g_autoptr(GBytes) t = g_bytes_new_static(copy, len);
            g_autoptr(ImapMimeMessage) odd = imap_mime_cache_load(t, NULL);
            if (odd) {
                for (guint j = 0; j < G_N_ELEMENTS(probe_items); j++)
                    g_bytes_unref(sect(odd, b, probe_items[j]));
            }
            copy[k] = old;
        }
        g_free(copy);
    }
    /* another version, another magic */
    g_autoptr(GBytes) b = fixture("alternative.eml");
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    g_autoptr(GBytes) blob = imap_mime_cache_build(m);
    guchar *v = g_memdup2(g_bytes_get_data(blob, NULL), g_bytes_get_size(blob));
    v[3]++;
    g_autoptr(GBytes) vb = g_bytes_new_take(v, g_bytes_get_size(blob));
    GError *err = NULL;
    g_assert_null(imap_mime_cache_load(vb, &err));
    g_assert_error(err, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CACHE);
    g_clear_error(&err);
    g_assert_null(imap_mime_cache_load(NULL, &err));
    g_clear_error(&err);
    /* the file changed size since: sections refuse */
    g_autoptr(ImapMimeMessage) c = imap_mime_cache_load(blob, NULL);
    g_autoptr(GBytes) shorter = g_bytes_new_from_bytes(b, 0, g_bytes_get_size(b) - 1);
    if (c)
        check_sect(c, shorter, "BODY[1]", "<CHANGED>", -1);
}

/* The header-only parse gives the full parse's ENVELOPE, from memory and
 * through an fd (small first window, long header lines, headers past the
 * window); the envelope-only blob answers the ENVELOPE only and does not
 * load, so a caller upgrades it to a full blob. */
static void
envelope_only_case(const char *dir, const char *name, GBytes *b)
{
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    gsize len;
    const guchar *p = g_bytes_get_data(b, &len);
    ImapMimeInput mem = IMAP_MIME_INPUT_MEM(p, len);
    GError *err = NULL;
    g_autofree char *em = imap_mime_parse_envelope(&mem, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(em, ==, imap_mime_envelope(m));
    g_autofree char *path = g_build_filename(dir, "env.eml", NULL);
    g_assert_true(g_file_set_contents(path, (const char *)p, (gssize)len, NULL));
    int fd = open(path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    ImapMimeInput in = IMAP_MIME_INPUT_FD(fd);
    g_autofree char *ef = imap_mime_parse_envelope(&in, NULL, &err);
    g_assert_no_error(err);
    if (g_strcmp0(ef, imap_mime_envelope(m)) != 0) {
        g_test_message("%s: fd envelope %s, full parse %s", name, ef, imap_mime_envelope(m));
        g_test_fail();
    }
    g_assert_cmpint(lseek(fd, 0, SEEK_CUR), ==, 0);
    close(fd);

    g_autoptr(GBytes) blob = imap_mime_cache_build_envelope(em);
    const char *t = NULL;
    gsize tl = 0;
    g_assert_true(imap_mime_cache_text(blob, IMAP_MIME_CACHE_ENVELOPE, &t, &tl));
    g_assert_cmpmem(t, tl, em, strlen(em));
    g_assert_false(imap_mime_cache_text(blob, IMAP_MIME_CACHE_BODY, &t, &tl));
    g_assert_false(imap_mime_cache_text(blob, IMAP_MIME_CACHE_BODYSTRUCTURE, &t, &tl));
    g_assert_false(imap_mime_cache_is_full(blob));
    g_assert_null(imap_mime_cache_load(blob, &err));
    g_assert_error(err, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CACHE);
    g_clear_error(&err);
    /* the upgrade: the full blob replaces it and answers everything */
    g_autoptr(GBytes) full = imap_mime_cache_build(m);
    g_assert_true(imap_mime_cache_is_full(full));
    g_assert_true(imap_mime_cache_text(full, IMAP_MIME_CACHE_ENVELOPE, &t, &tl));
    g_assert_cmpmem(t, tl, em, strlen(em));
    g_assert_true(imap_mime_cache_text(full, IMAP_MIME_CACHE_BODYSTRUCTURE, &t, &tl));
    /* every truncation of the envelope-only blob is refused, none crashes */
    const guchar *bp = g_bytes_get_data(blob, &len);
    for (gsize cut = 0; cut < len; cut += cut < 64 || cut + 64 > len ? 1 : 97) {
        g_autoptr(GBytes) tb = g_bytes_new(bp, cut);
        g_assert_false(imap_mime_cache_text(tb, IMAP_MIME_CACHE_ENVELOPE, &t, &tl));
        g_assert_null(imap_mime_cache_load(tb, NULL));
    }
}

static void
test_envelope_only(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    for (guint i = 0; i < G_N_ELEMENTS(all_fixtures); i++) {
        g_autoptr(GBytes) b = fixture(all_fixtures[i]);
        envelope_only_case(dir, all_fixtures[i], b);
    }
    /* a header longer than the first window, a Subject line longer than
     * the full window, bare LF and CRLF, no body, no blank line */
    const char *const ends[] = {"\n", "\r\n"};
    for (guint e = 0; e < 2; e++) {
        GString *s = g_string_new(NULL);
        g_string_append_printf(s, "From: A <a@example.org>%s", ends[e]);
        for (guint i = 0; i < 400; i++)
            g_string_append_printf(s, "X-Filler-%u: %s%s", i, "0123456789abcdefghij", ends[e]);
        g_string_append(s, "Subject: ");
        for (guint i = 0; i < 70000; i++)
            g_string_append_c(s, (char)('a' + i % 26));
        g_string_append_printf(s, "%sTo: b@example.org%s%sbody%s", ends[e], ends[e], ends[e],
                               ends[e]);
        g_autoptr(GBytes) b = g_string_free_to_bytes(s);
        envelope_only_case(dir, "long header", b);
    }
    /* header ends and long lines around the window sizes (8 KiB, doubled up
     * to 64 KiB): the fd parse cuts exactly where the full parse cuts */
    const gsize sublens[] = {10, 8000, 9000, 17000, 40000, 65530, 65540, 70000};
    for (guint i = 0; i < G_N_ELEMENTS(sublens); i++) {
        for (gsize pad = 8180; pad < 8200; pad += 3) {
            GString *s = g_string_new("From: c@d.example\n");
            while (s->len < pad - 8)
                g_string_append(s, "X-P: y\n");
            g_string_append(s, "Subject: ");
            for (gsize k = 0; k < sublens[i]; k++)
                g_string_append_c(s, (char)('A' + k % 26));
            g_string_append(s, "\nTo: e@f.example\n\nbody\n");
            g_autoptr(GBytes) b = g_string_free_to_bytes(s);
            envelope_only_case(dir, "window edges", b);
        }
    }
    const char *const small[] = {"", "Subject: x", "Subject: x\n", "\nbody\n",
                                 "Subject: y\r\nFrom: c@d\r\n\r\n"};
    for (guint i = 0; i < G_N_ELEMENTS(small); i++) {
        g_autoptr(GBytes) b = g_bytes_new_static(small[i], strlen(small[i]));
        envelope_only_case(dir, small[i], b);
    }
    /* a Subject that differs between the header and the body: the header's */
    static const char two[] = "Subject: head\n\nSubject: body\n";
    ImapMimeInput in = IMAP_MIME_INPUT_MEM(two, sizeof two - 1);
    g_autofree char *env = imap_mime_parse_envelope(&in, NULL, NULL);
    g_assert_nonnull(strstr(env, "\"head\""));
    g_assert_null(strstr(env, "body"));
}

/* ---- random and damaged input ---- */

static void
check_invariants(GBytes *b, const char *what)
{
    g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
    if (!m)
        return;
    gboolean ok = imap_syntax_ok(imap_mime_bodystructure(m)) && imap_syntax_ok(imap_mime_body(m)) &&
                  imap_syntax_ok(imap_mime_envelope(m));
    g_autoptr(GBytes) w = to_crlf(b);
    g_autoptr(GBytes) all = sect(m, b, "BODY[]");
    g_autoptr(GBytes) h = sect(m, b, "BODY[HEADER]");
    g_autoptr(GBytes) t = sect(m, b, "BODY[TEXT]");
    ok = ok && g_bytes_equal(all, w) && imap_mime_size(m) == g_bytes_get_size(w) &&
         g_bytes_get_size(h) + g_bytes_get_size(t) == g_bytes_get_size(w);
    /* every part's MIME header and body lie inside the message */
    const char *wd = g_bytes_get_data(w, NULL);
    gsize wl = g_bytes_get_size(w);
    static const char *const items[] = {"BODY[1]",   "BODY[1.MIME]", "BODY[2]",     "BODY[2.1]",
                                        "BODY[1.1]", "BODY[2.MIME]", "BODY[3.TEXT]"};
    for (guint i = 0; i < G_N_ELEMENTS(items); i++) {
        const char *code;
        g_autoptr(GBytes) s = sect_try(m, b, items[i], &code);
        gsize sl = s ? g_bytes_get_size(s) : 0;
        if (sl && !memmem(wd, wl, g_bytes_get_data(s, NULL), sl))
            ok = FALSE;
        if (!s && strcmp(code, "<NO_PART>") != 0)
            ok = FALSE;
    }
    for (guint i = 0; i < G_N_ELEMENTS(probe_items); i++)
        g_bytes_unref(sect(m, b, probe_items[i]));
    g_autoptr(GBytes) blob = imap_mime_cache_build(m);
    g_autoptr(ImapMimeMessage) c = imap_mime_cache_load(blob, NULL);
    ok = ok && c && strcmp(imap_mime_bodystructure(c), imap_mime_bodystructure(m)) == 0;
    if (!ok) {
        g_test_message("%s: invariant broken; structure %s", what, imap_mime_bodystructure(m));
        g_test_fail();
    }
}

static void
test_garbage(void)
{
    GRand *r = g_rand_new_with_seed(20240501);
    /* random octets, with line ends and boundary-looking lines mixed in */
    for (guint n = 0; n < 200; n++) {
        GString *s = g_string_new(n % 2 ? "Content-Type: multipart/mixed; boundary=r\n\n" : "");
        guint len = g_rand_int_range(r, 0, 3000);
        while (s->len < len) {
            switch (g_rand_int_range(r, 0, 8)) {
            case 0:
                g_string_append(s, "\n--r\n");
                break;
            case 1:
                g_string_append(s, "\r\n");
                break;
            case 2:
                g_string_append(s, "\nContent-Type: message/rfc822\n\n");
                break;
            case 3:
                g_string_append(s, "\nContent-Type: multipart/alternative; boundary=\"r\"\n\n");
                break;
            default:
                g_string_append_c(s, (char)g_rand_int_range(r, 0, 256));
            }
        }
        g_autoptr(GBytes) b = g_string_free_to_bytes(s);
        check_invariants(b, "random");
    }
    /* fixtures with octets deleted, duplicated or flipped */
    for (guint n = 0; n < 300; n++) {
        g_autoptr(GBytes) f = fixture(all_fixtures[n % G_N_ELEMENTS(all_fixtures)]);
        gsize len;
        const char *p = g_bytes_get_data(f, &len);
        GString *s = g_string_new_len(p, (gssize)len);
        for (guint k = 0; k < 4 && s->len > 2; k++) {
            guint at = g_rand_int_range(r, 0, (gint32)s->len);
            switch (g_rand_int_range(r, 0, 3)) {
            case 0: {
                gsize cut = (gsize)g_rand_int_range(r, 1, 40);
                g_string_erase(s, at, (gssize)MIN(cut, s->len - at));
                break;
            }
            case 1:
                g_string_insert_len(s, at, s->str, MIN((gssize)at, 60));
                break;
            default:
                s->str[at] ^= (char)g_rand_int_range(r, 1, 256);
            }
        }
        g_autoptr(GBytes) b = g_string_free_to_bytes(s);
        check_invariants(b, all_fixtures[n % G_N_ELEMENTS(all_fixtures)]);
    }
    g_rand_free(r);
}

/* ---- threads ---- */

static gpointer
thread_work(gpointer data)
{
    GPtrArray *want = data;
    for (guint round = 0; round < 20; round++)
        for (guint i = 0; i < G_N_ELEMENTS(all_fixtures); i++) {
            g_autoptr(GBytes) b = fixture(all_fixtures[i]);
            ImapMimeInput in = IMAP_MIME_INPUT_MEM(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
            g_autoptr(ImapMimeMessage) m = imap_mime_parse(&in, NULL, NULL);
            if (!m || strcmp(imap_mime_bodystructure(m), want->pdata[i]) != 0)
                return GINT_TO_POINTER(1);
            g_autoptr(GBytes) x = sect(m, b, "BINARY[1]");
        }
    return NULL;
}

static void
test_threads(void)
{
    GPtrArray *want = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < G_N_ELEMENTS(all_fixtures); i++) {
        g_autoptr(GBytes) b = fixture(all_fixtures[i]);
        g_autoptr(ImapMimeMessage) m = parse_bytes(b, NULL);
        g_ptr_array_add(want, g_strdup(m ? imap_mime_bodystructure(m) : ""));
    }
    GThread *t[8];
    for (guint i = 0; i < G_N_ELEMENTS(t); i++)
        t[i] = g_thread_new("mime", thread_work, want);
    for (guint i = 0; i < G_N_ELEMENTS(t); i++)
        g_assert_null(g_thread_join(t[i]));
    g_ptr_array_free(want, TRUE);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/imap-mime/alternative", test_alternative);
    g_test_add_func("/imap-mime/mixed-attachments", test_mixed);
    g_test_add_func("/imap-mime/nested-rfc822", test_nested);
    g_test_add_func("/imap-mime/digest", test_digest);
    g_test_add_func("/imap-mime/rfc2047-raw", test_encoded);
    g_test_add_func("/imap-mime/groups", test_groups);
    g_test_add_func("/imap-mime/addresses-vs-gmime", test_addresses_vs_gmime);
    g_test_add_func("/imap-mime/address-damage", test_address_damage);
    g_test_add_func("/imap-mime/8bit-headers", test_8bit);
    g_test_add_func("/imap-mime/params-rfc2231", test_params_2231);
    g_test_add_func("/imap-mime/malformed", test_malformed);
    g_test_add_func("/imap-mime/deep-nesting", test_deep);
    g_test_add_func("/imap-mime/many-parts", test_many_parts);
    g_test_add_func("/imap-mime/header-limits", test_header_limits);
    g_test_add_func("/imap-mime/sections-nested", test_sections_nested);
    g_test_add_func("/imap-mime/sections-single", test_sections_single);
    g_test_add_func("/imap-mime/header-fields", test_header_fields);
    g_test_add_func("/imap-mime/binary", test_binary);
    g_test_add_func("/imap-mime/lf-vs-crlf", test_lf_crlf);
    g_test_add_func("/imap-mime/fd-input", test_fd_input);
    g_test_add_func("/imap-mime/header-only", test_header_only);
    g_test_add_func("/imap-mime/cache", test_cache);
    g_test_add_func("/imap-mime/envelope-only", test_envelope_only);
    g_test_add_func("/imap-mime/garbage", test_garbage);
    g_test_add_func("/imap-mime/threads", test_threads);
    return g_test_run();
}
