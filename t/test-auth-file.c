/* SPDX-License-Identifier: MIT */
/*
 * test-auth-file.c - unit tests for the auth-file module's pure parts:
 * password hashing (modules/auth-file/passwd-hash.c) and the users file
 * (modules/auth-file/users-file.c).
 *
 *   /auth-file/hash/...    yescrypt, argon2id, foreign hashes, bounds,
 *                          locked and garbage hashes, threads
 *   /auth-file/address/... address syntax and canonical form
 *   /auth-file/users/...   parsing good and bad files, garbage input,
 *                          add/del/set-hash round trips, locking,
 *                          reload detection
 */
#include "testlib.h"
#include "auth-file/passwd-hash.h"
#include "auth-file/users-file.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Known-answer hashes made by other implementations. */
#define SHA512_SECRET                                                                              \
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq."    \
    "H91p5hVO1"                                         /* openssl passwd -6 */
#define MD5_SECRET "$1$saltsalt$9xy1btjgzLYfb7hivXtC//" /* openssl passwd -1 */
#define DES_SECRET "abNANd1rDfiNc"                      /* crypt("secret", "ab") */
#define BCRYPT_UU  "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" /* "U*U" */
#define ARGON2I_PASSWORD                                                                           \
    "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
#define ARGON2ID_PASSWORD                                                                          \
    "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"

/* --- helpers ------------------------------------------------------------- */

static char *
write_users(const char *content, gssize len)
{
    g_autofree char *dir = kr_test_tmpdir();
    char *path = g_build_filename(dir, "users", NULL);
    GError *err = NULL;

    g_file_set_contents(path, content, len, &err);
    g_assert_no_error(err);
    return path;
}

static char *
read_all(const char *path)
{
    char *s = NULL;
    GError *err = NULL;

    g_file_get_contents(path, &s, NULL, &err);
    g_assert_no_error(err);
    return s;
}

static char *
hash_or_die(const char *pw, KrPasswdScheme scheme)
{
    GError *err = NULL;
    char *h = kr_passwd_hash(pw, scheme, &err);

    g_assert_no_error(err);
    g_assert_nonnull(h);
    return h;
}

/* --- passwords ----------------------------------------------------------- */

static void
test_hash_yescrypt(void)
{
    g_autofree char *h = hash_or_die("correct horse", KR_PASSWD_YESCRYPT);
    g_autofree char *h2 = hash_or_die("correct horse", KR_PASSWD_YESCRYPT);

    g_assert_true(g_str_has_prefix(h, "$y$"));
    g_assert_true(kr_passwd_hash_usable(h));
    g_assert_true(kr_passwd_verify("correct horse", h));
    g_assert_false(kr_passwd_verify("correct horsE", h));
    g_assert_false(kr_passwd_verify("correct horse ", h));
    g_assert_false(kr_passwd_verify("correct hors", h));
    /* Fresh salt every time. */
    g_assert_cmpstr(h, !=, h2);
    g_assert_true(kr_passwd_verify("correct horse", h2));
}

static void
test_hash_argon2id(void)
{
    g_autofree char *h = hash_or_die("correct horse", KR_PASSWD_ARGON2ID);
    g_autofree char *h2 = hash_or_die("correct horse", KR_PASSWD_ARGON2ID);

    g_assert_true(g_str_has_prefix(h, "$argon2id$v=19$m=19456,t=2,p=1$"));
    g_assert_true(kr_passwd_hash_usable(h));
    g_assert_true(kr_passwd_verify("correct horse", h));
    g_assert_false(kr_passwd_verify("correct horsE", h));
    g_assert_false(kr_passwd_verify("x", h));
    g_assert_cmpstr(h, !=, h2);
    g_assert_true(kr_passwd_verify("correct horse", h2));
}

static void
test_hash_foreign(void)
{
    g_assert_true(kr_passwd_verify("secret", SHA512_SECRET));
    g_assert_false(kr_passwd_verify("Secret", SHA512_SECRET));
    g_assert_true(kr_passwd_verify("U*U", BCRYPT_UU));
    g_assert_false(kr_passwd_verify("U*V", BCRYPT_UU));
    g_assert_true(kr_passwd_verify("password", ARGON2I_PASSWORD));
    g_assert_false(kr_passwd_verify("passwore", ARGON2I_PASSWORD));
    g_assert_true(kr_passwd_verify("password", ARGON2ID_PASSWORD));
    g_assert_false(kr_passwd_verify("passwore", ARGON2ID_PASSWORD));
    /* Legacy methods are refused even with the right password. */
    g_assert_false(kr_passwd_verify("secret", MD5_SECRET));
    g_assert_false(kr_passwd_hash_usable(MD5_SECRET));
    g_assert_false(kr_passwd_verify("secret", DES_SECRET));
    g_assert_false(kr_passwd_hash_usable(DES_SECRET));
}

static void
test_hash_bounds(void)
{
    g_autofree char *max = g_strnfill(KR_PASSWD_MAX, 'a');
    g_autofree char *over = g_strnfill(KR_PASSWD_MAX + 1, 'a');
    g_autofree char *h = hash_or_die(max, KR_PASSWD_YESCRYPT);
    const char *bad[] = {"", "a\nb", "a\rb", "trailing\n", over};
    GError *err = NULL;

    g_autofree char *crypt_max = g_strnfill(511, 'b');
    g_autofree char *hc = hash_or_die(crypt_max, KR_PASSWD_YESCRYPT);
    g_autofree char *ha = hash_or_die(max, KR_PASSWD_ARGON2ID);

    /* Too long for libxcrypt: yescrypt falls back to argon2id. */
    g_assert_true(g_str_has_prefix(h, "$argon2id$"));
    g_assert_true(kr_passwd_verify(max, h));
    g_assert_true(kr_passwd_verify(max, ha));
    g_assert_true(g_str_has_prefix(hc, "$y$"));
    g_assert_true(kr_passwd_verify(crypt_max, hc));
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        char *x = kr_passwd_hash(bad[i], KR_PASSWD_YESCRYPT, &err);
        g_assert_error(err, KR_PASSWD_ERROR, KR_PASSWD_ERROR_INVALID);
        g_assert_null(x);
        g_clear_error(&err);
        x = kr_passwd_hash(bad[i], KR_PASSWD_ARGON2ID, &err);
        g_assert_error(err, KR_PASSWD_ERROR, KR_PASSWD_ERROR_INVALID);
        g_assert_null(x);
        g_clear_error(&err);
    }
    /* One byte over the limit does not verify, even where a prefix would. */
    g_assert_false(kr_passwd_verify(over, h));
    g_assert_false(kr_passwd_verify(NULL, h));
    /* Explicit lengths: an embedded NUL is refused. */
    g_assert_true(kr_passwd_check("ab\0cd", 2, NULL));
    g_assert_false(kr_passwd_check("ab\0cd", 5, &err));
    g_assert_error(err, KR_PASSWD_ERROR, KR_PASSWD_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_false(kr_passwd_check(over, -1, NULL));
    g_assert_true(kr_passwd_check(max, -1, NULL));
    g_assert_false(kr_passwd_hash("x", (KrPasswdScheme)42, &err));
    g_assert_error(err, KR_PASSWD_ERROR, KR_PASSWD_ERROR_SCHEME);
    g_clear_error(&err);
}

static void
test_hash_locked_garbage(void)
{
    g_autofree char *h = hash_or_die("secret", KR_PASSWD_YESCRYPT);
    g_autofree char *locked = g_strconcat("!", h, NULL);
    g_autofree char *star = g_strconcat("*", h, NULL);
    g_autofree char *cut = g_strndup(h, strlen(h) - 1);
    g_autofree char *huge = g_strnfill(5000, '$');
    const char *garbage[] = {
        "",
        "!",
        "*",
        "$y$",
        "$y$j9T$",
        "$argon2id$",
        "$argon2id$v=19$m=,t=2,p=1$c29tZXNhbHQ$CTFh",
        "$argon2id$v=19$m=65536,t=0,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        /* Costs beyond the bounds: refused before any memory is spent. */
        "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=65536,t=100,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=65536,t=2,p=99$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=99999999999999999999999,t=2,p=1$c29tZXNhbHQ$CTFh",
        "$argon2d$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "\xff\xfe garbage",
        huge,
    };

    g_assert_true(kr_passwd_verify("secret", h));
    g_assert_false(kr_passwd_verify("secret", locked));
    g_assert_false(kr_passwd_verify("secret", star));
    g_assert_false(kr_passwd_verify("secret", cut));
    g_assert_false(kr_passwd_verify("secret", NULL));
    g_assert_false(kr_passwd_hash_usable(locked));
    for (gsize i = 0; i < G_N_ELEMENTS(garbage); i++) {
        g_assert_false(kr_passwd_verify("secret", garbage[i]));
        g_assert_false(kr_passwd_verify("password", garbage[i]));
        g_assert_false(kr_passwd_hash_usable(garbage[i]));
    }
    /* The over-cost hash is the reference vector with m raised: the same
     * with m in bounds does verify, so the refusal above is the bound. */
    g_assert_true(kr_passwd_hash_usable(ARGON2ID_PASSWORD));
    g_assert_false(kr_passwd_verify_dummy("secret"));
    g_assert_false(kr_passwd_verify_dummy(""));
}

static void
test_hash_scheme_names(void)
{
    KrPasswdScheme s = KR_PASSWD_YESCRYPT;

    g_assert_true(kr_passwd_scheme_from_name("argon2id", &s));
    g_assert_cmpint(s, ==, KR_PASSWD_ARGON2ID);
    g_assert_true(kr_passwd_scheme_from_name("YESCRYPT", &s));
    g_assert_cmpint(s, ==, KR_PASSWD_YESCRYPT);
    g_assert_false(kr_passwd_scheme_from_name("md5", &s));
    g_assert_false(kr_passwd_scheme_from_name(NULL, &s));
    g_assert_cmpstr(kr_passwd_scheme_name(KR_PASSWD_ARGON2ID), ==, "argon2id");
    g_assert_cmpstr(kr_passwd_scheme_name(KR_PASSWD_YESCRYPT), ==, "yescrypt");
}

typedef struct {
    const char *yes_hash;
    const char *argon_hash;
    gint right; /* atomic: correct answers */
    gint wrong; /* atomic: incorrect answers */
} VerifyJob;

#define VERIFY_THREADS 8
#define VERIFY_ROUNDS  3

static gpointer
verify_thread(gpointer p)
{
    VerifyJob *j = p;

    for (int r = 0; r < VERIFY_ROUNDS; r++) {
        gboolean ok = kr_passwd_verify("thread pw", j->yes_hash) &&
                      !kr_passwd_verify("thread px", j->yes_hash) &&
                      kr_passwd_verify("thread pw", j->argon_hash) &&
                      !kr_passwd_verify("thread px", j->argon_hash) &&
                      kr_passwd_verify("secret", SHA512_SECRET) &&
                      !kr_passwd_verify_dummy("thread pw");
        /* Hashing concurrently too: every new hash must verify. */
        g_autofree char *h =
            kr_passwd_hash("thread new", r % 2 ? KR_PASSWD_ARGON2ID : KR_PASSWD_YESCRYPT, NULL);
        ok = ok && h && kr_passwd_verify("thread new", h);
        g_atomic_int_inc(ok ? &j->right : &j->wrong);
    }
    return NULL;
}

static void
test_hash_threads(void)
{
    g_autofree char *yh = hash_or_die("thread pw", KR_PASSWD_YESCRYPT);
    g_autofree char *ah = hash_or_die("thread pw", KR_PASSWD_ARGON2ID);
    VerifyJob job = {yh, ah, 0, 0};
    GThread *th[VERIFY_THREADS];

    for (int i = 0; i < VERIFY_THREADS; i++)
        th[i] = g_thread_new("verify", verify_thread, &job);
    for (int i = 0; i < VERIFY_THREADS; i++)
        g_thread_join(th[i]);
    g_assert_cmpint(job.wrong, ==, 0);
    g_assert_cmpint(job.right, ==, VERIFY_THREADS * VERIFY_ROUNDS);
}

/* --- addresses ----------------------------------------------------------- */

static void
test_address_valid(void)
{
    g_autofree char *local64 = g_strnfill(64, 'l');
    g_autofree char *local65 = g_strnfill(65, 'l');
    g_autofree char *label63 = g_strnfill(63, 'd');
    g_autofree char *label64 = g_strnfill(64, 'd');
    g_autofree char *ok64 = g_strconcat(local64, "@example.org", NULL);
    g_autofree char *bad65 = g_strconcat(local65, "@example.org", NULL);
    g_autofree char *ok63 = g_strconcat("a@", label63, ".org", NULL);
    g_autofree char *bad64 = g_strconcat("a@", label64, ".org", NULL);
    /* 4 labels of 63 + 3 dots = 255 > 253; 3 x 63 + 61 + 3 = 253 */
    g_autofree char *d61 = g_strnfill(61, 'e');
    g_autofree char *dom253 = g_strjoin(".", label63, label63, label63, d61, NULL);
    g_autofree char *dom255 = g_strjoin(".", label63, label63, label63, label63, NULL);
    g_autofree char *ok253 = g_strconcat("a@", dom253, NULL);
    g_autofree char *bad255 = g_strconcat("a@", dom255, NULL);
    const char *good[] = {
        "alice@example.org",
        "a@b",
        "first.last+tag@sub.example.co.uk",
        "!#$%&'*+=?^_`{|}~-@x-y.z",
        "j\xc3\xbcrgen@m\xc3\xbcnchen.de",
        "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe4\xb8\xad\xe5\x9b\xbd",
        ok64,
        ok63,
        ok253,
    };
    const char *bad[] = {
        "",
        "alice",
        "@example.org",
        "alice@",
        "a@b@c",
        "a:b@c",
        "a/b@c",
        "a@b/c",
        "a b@c",
        "a@b c",
        "a\t@c",
        "a\x7f@c",
        ".a@b",
        "a.@b",
        "a..b@c",
        "a@.b",
        "a@b.",
        "a@b..c",
        "a@-b.c",
        "a@b-.c",
        "a@b_c",
        "a\"b@c",
        "a\xff@b",
        "a\xc3@b", /* truncated UTF-8 */
        "a\xc0\xaf"
        "b@c",             /* overlong '/' */
        "a\xc2\x85@b",     /* NEL, a C1 control */
        "a\xc2\xa0@b",     /* no-break space */
        "a\xe2\x80\x8b@b", /* zero-width space */
        "a\xed\xa0\x80@b", /* surrogate */
        bad65,
        bad64,
        bad255,
    };
    GError *err = NULL;

    g_assert_cmpuint(strlen(dom253), ==, 253);
    for (gsize i = 0; i < G_N_ELEMENTS(good); i++) {
        if (!kr_users_address_valid(good[i], &err))
            g_error("good address %zu refused: %s", i, err->message);
    }
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        if (kr_users_address_valid(bad[i], &err))
            g_error("bad address %zu (%s) accepted", i, bad[i]);
        g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_ADDRESS);
        g_clear_error(&err);
    }
    g_assert_false(kr_users_address_valid(NULL, &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_ADDRESS);
    g_clear_error(&err);
}

static void
test_address_canon(void)
{
    g_autofree char *c = kr_users_address_canon("Alice.Smith@Example.ORG", NULL);
    g_autofree char *u = kr_users_address_canon("J\xc3\x9cRGEN@M\xc3\x9cNCHEN.DE", NULL);
    GError *err = NULL;
    char *bad;

    g_assert_cmpstr(c, ==, "alice.smith@example.org");
    /* Only ASCII is lowercased: U+00DC stays as it is. */
    g_assert_cmpstr(u, ==, "j\xc3\x9crgen@m\xc3\x9cnchen.de");
    bad = kr_users_address_canon("no at sign", &err);
    g_assert_null(bad);
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_ADDRESS);
    g_clear_error(&err);
}

/* --- users file: parsing ------------------------------------------------- */

static void
test_users_parse_good(void)
{
    const char *content = "# kurir users\n"
                          "\n"
                          "   \t\n"
                          "  # indented comment with : and @ and \x01 bytes\n"
                          "Alice@Example.ORG:$y$j9T$abc$def\n"
                          "bob@example.org:" SHA512_SECRET ":quota=100M,note=x=y,empty=\n"
                          "j\xc3\xbcrgen@m\xc3\xbcnchen.de:!locked\n"
                          "carol@example.net:*"; /* no final LF */
    g_autofree char *path = write_users(content, -1);
    GError *err = NULL;
    g_autoptr(KrUsersTable) t = kr_users_load(path, &err);
    const KrUserEntry *e;

    g_assert_no_error(err);
    g_assert_nonnull(t);
    g_assert_cmpuint(kr_users_count(t), ==, 4);

    e = kr_users_nth(t, 0);
    g_assert_cmpstr(e->address, ==, "alice@example.org");
    g_assert_cmpstr(e->hash, ==, "$y$j9T$abc$def");
    g_assert_cmpuint(e->line, ==, 5);
    g_assert_null(e->attrs[0]);
    g_assert_true(kr_users_lookup(t, "alice@example.org") == e);
    g_assert_true(kr_users_lookup(t, "ALICE@EXAMPLE.org") == e);
    g_assert_null(kr_users_lookup(t, "alice@example.com"));
    g_assert_null(kr_users_lookup(t, "alice"));
    g_assert_null(kr_users_lookup(t, NULL));

    e = kr_users_lookup(t, "Bob@Example.Org");
    g_assert_nonnull(e);
    g_assert_true(e == kr_users_nth(t, 1));
    g_assert_cmpuint(e->line, ==, 6);
    g_assert_true(kr_passwd_verify("secret", e->hash));
    g_assert_cmpstr(kr_user_attr(e, "quota"), ==, "100M");
    g_assert_cmpstr(kr_user_attr(e, "note"), ==, "x=y");
    g_assert_cmpstr(kr_user_attr(e, "empty"), ==, "");
    g_assert_null(kr_user_attr(e, "quot"));
    g_assert_null(kr_user_attr(e, "missing"));

    e = kr_users_lookup(t, "J\xc3\xbcrgen@M\xc3\xbcnchen.DE");
    g_assert_nonnull(e);
    g_assert_cmpuint(e->line, ==, 7);
    g_assert_false(kr_passwd_verify("secret", e->hash));

    e = kr_users_nth(t, 3);
    g_assert_cmpstr(e->address, ==, "carol@example.net");
    g_assert_cmpstr(e->hash, ==, "*");
    g_assert_cmpuint(e->line, ==, 8);
    g_assert_null(kr_users_nth(t, 4));
}

typedef struct {
    const char *content;
    gssize len; /* -1: NUL-terminated */
    guint line;
    const char *why;
} BadFile;

static void
test_users_parse_bad(void)
{
    g_autofree char *long_hash = g_strnfill(KR_USERS_MAX_LINE - 4, 'h');
    g_autofree char *long_ok = g_strconcat("a@b:", long_hash, "\n", NULL);
    g_autofree char *long_bad = g_strconcat("# ok\nc@d:h\na@b:h", long_hash, "\n", NULL);
    g_autofree char *local65 = g_strnfill(65, 'l');
    g_autofree char *bad65 = g_strconcat(local65, "@b:h\n", NULL);
    const BadFile bad[] = {
        {"alice@example.com\n", -1, 1, "missing ':'"},
        {"# c\n\nalice@example.com:$y$x\nbob@exa mple.com:h\n", -1, 4, "blank in domain"},
        {"a@b:h\nx@y:h\nA@B:h2\n", -1, 3, "duplicate user a@b (first on line 1)"},
        {"a@b:h\x01x\n", -1, 1, "control character 0x01 in column 6"},
        {"a\0b@c:h\n", 8, 1, "control character 0x00 in column 2"},
        {"a@b:h\r\n", -1, 1, "control character 0x0d"},
        {"a@b:h\t\n", -1, 1, "control character 0x09"},
        {"a/b@c:h\n", -1, 1, "character '/' not allowed in local part"},
        {"a:b@c:h\n", -1, 1, "bad address \"a\": no '@'"},
        {" a@b:h\n", -1, 1, "blank in local part"},
        {"a@b@c:h\n", -1, 1, "more than one '@'"},
        {"a..b@c:h\n", -1, 1, "misplaced '.'"},
        {"a@-b.c:h\n", -1, 1, "starts with '-'"},
        {"a@b-.c:h\n", -1, 1, "ends with '-'"},
        {"a@b..c:h\n", -1, 1, "empty label"},
        {"a@b.:h\n", -1, 1, "empty label"},
        {"\xff@b:h\n", -1, 1, "bad or disallowed UTF-8 in local part"},
        {"a\xc2\xa0@b:h\n", -1, 1, "bad or disallowed UTF-8 in local part"},
        {"a@b:\n", -1, 1, "empty password hash"},
        {"a@b:h h\n", -1, 1, "blank in password hash"},
        {"a@b:h\xc3\xa9\n", -1, 1, "non-ASCII byte in password hash"},
        {"a@b:h:\n", -1, 1, "empty attribute list"},
        {"a@b:h:x\n", -1, 1, "attribute \"x\" has no '='"},
        {"a@b:h:K=1\n", -1, 1, "bad attribute key \"K\""},
        {"a@b:h:=1\n", -1, 1, "bad attribute key \"\""},
        {"a@b:h:k=1,,j=2\n", -1, 1, "empty attribute"},
        {"a@b:h:k=1,\n", -1, 1, "empty attribute"},
        {"a@b:h:k=1,k=2\n", -1, 1, "attribute \"k\" given twice"},
        {"a@b:h:k=a b\n", -1, 1, "bad character in the value of attribute \"k\""},
        {"a@b:h:k=1:z\n", -1, 1, "too many ':'-separated fields"},
        {bad65, -1, 1, "local part longer than 64 bytes"},
        {long_bad, -1, 3, "line too long (4097 bytes, at most 4096)"},
    };
    GError *err = NULL;
    KrUsersTable *t;

    /* The longest line allowed is fine. */
    {
        g_autofree char *path = write_users(long_ok, -1);
        g_autoptr(KrUsersTable) ok = kr_users_load(path, &err);
        g_assert_no_error(err);
        g_assert_cmpuint(strlen(long_ok), ==, KR_USERS_MAX_LINE + 1);
        g_assert_cmpstr(kr_users_lookup(ok, "a@b")->hash, ==, long_hash);
    }
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *path = write_users(bad[i].content, bad[i].len);
        g_autofree char *prefix = g_strdup_printf("%s:%u: ", path, bad[i].line);
        t = kr_users_load(path, &err);
        if (t)
            g_error("bad file %zu accepted", i);
        g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_PARSE);
        if (!g_str_has_prefix(err->message, prefix) || !strstr(err->message, bad[i].why))
            g_error("bad file %zu: got \"%s\", want \"%s...%s\"", i, err->message, prefix,
                    bad[i].why);
        g_clear_error(&err);
    }
}

static void
test_users_load_errors(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *missing = g_build_filename(dir, "nope", NULL);
    g_autofree char *fifo = g_build_filename(dir, "fifo", NULL);
    GError *err = NULL;

    g_assert_null(kr_users_load(missing, &err));
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_NOENT);
    g_assert_nonnull(strstr(err->message, missing));
    g_clear_error(&err);

    g_assert_null(kr_users_load(dir, &err));
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL);
    g_clear_error(&err);

    /* A FIFO must not block the loader. */
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    g_assert_null(kr_users_load(fifo, &err));
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL);
    g_clear_error(&err);
}

/* Loads whatever is at path: either a table whose entries are all sane,
 * or a parse error naming the file and a line. */
static void
check_garbage(const char *path)
{
    GError *err = NULL;
    g_autoptr(KrUsersTable) t = kr_users_load(path, &err);
    g_autofree char *prefix = g_strconcat(path, ":", NULL);

    if (!t) {
        g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_PARSE);
        g_assert_true(g_str_has_prefix(err->message, prefix));
        g_assert_true(g_utf8_validate(err->message, -1, NULL));
        g_clear_error(&err);
        return;
    }
    for (guint i = 0; i < kr_users_count(t); i++) {
        const KrUserEntry *e = kr_users_nth(t, i);
        g_assert_true(kr_users_address_valid(e->address, NULL));
        g_assert_true(kr_users_lookup(t, e->address) == e);
        g_assert_null(strchr(e->hash, ':'));
    }
}

static void
test_users_garbage(void)
{
    static const char alphabet[] = "ab.@:#=,- \t\n\r\x01\x7f\x80\xc3\xbc\xff";
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "users", NULL);
    GRand *rand = g_rand_new_with_seed(20240501);
    guint loaded = 0, refused = 0;

    /* Every byte value after a good prefix, and alone. */
    for (int c = 0; c < 256; c++) {
        char line[] = {'a', '@', 'b', ':', 'h', (char)c, '\n', (char)c};
        g_assert_true(g_file_set_contents(path, line, sizeof line, NULL));
        check_garbage(path);
    }
    for (int round = 0; round < 400; round++) {
        gsize len = (gsize)g_rand_int_range(rand, 0, round < 380 ? 300 : 9000);
        g_autofree char *buf = g_malloc(len + 1);
        for (gsize i = 0; i < len; i++)
            buf[i] = round % 2 ? (char)g_rand_int_range(rand, 0, 256)
                               : alphabet[g_rand_int_range(rand, 0, sizeof alphabet - 1)];
        g_assert_true(g_file_set_contents(path, buf, (gssize)len, NULL));
        {
            KrUsersTable *t = kr_users_load(path, NULL);
            if (t)
                loaded++;
            else
                refused++;
            kr_users_free(t);
        }
        check_garbage(path);
    }
    /* Both outcomes were exercised. */
    g_assert_cmpuint(loaded, >, 0);
    g_assert_cmpuint(refused, >, 0);
    g_rand_free(rand);
}

/* --- users file: editing ------------------------------------------------- */

static mode_t
file_mode(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st.st_mode & 07777;
}

static void
test_users_roundtrip(void)
{
    const char *orig = "# users of example.org\n"
                       "bob@example.org:OLD:quota=10,x=y\n"
                       "\n";
    g_autofree char *path = write_users(orig, -1);
    g_autofree char *tmp = g_strconcat(path, ".tmp", NULL);
    g_autofree char *lock = g_strconcat(path, ".lock", NULL);
    g_autofree char *ah = hash_or_die("alice pw", KR_PASSWD_YESCRYPT);
    g_autofree char *bh = hash_or_die("bob pw", KR_PASSWD_ARGON2ID);
    g_autofree char *before = NULL, *after = NULL;
    GError *err = NULL;
    KrUsersTable *t;
    const KrUserEntry *e;

    g_assert_cmpint(chmod(path, 0644), ==, 0);

    g_assert_true(kr_users_file_add(path, "Alice@Example.ORG", ah, &err));
    g_assert_no_error(err);
    g_assert_cmpint(file_mode(path), ==, 0600);
    g_assert_cmpint(file_mode(lock), ==, 0600);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    before = read_all(path);
    g_assert_true(g_str_has_prefix(before, orig)); /* comment and blank line kept */
    g_assert_true(g_str_has_suffix(before, "\n"));
    g_assert_nonnull(strstr(before, "\n\nalice@example.org:$y$")); /* canonical, appended */
    t = kr_users_load(path, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(kr_users_count(t), ==, 2);
    e = kr_users_lookup(t, "alice@example.org");
    g_assert_nonnull(e);
    g_assert_true(kr_passwd_verify("alice pw", e->hash));
    g_assert_false(kr_passwd_verify("bob pw", e->hash));
    kr_users_free(t);

    /* A duplicate, in any case, is refused and changes nothing. */
    g_assert_false(kr_users_file_add(path, "ALICE@example.org", bh, &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_EXISTS);
    g_assert_nonnull(strstr(err->message, ":4: "));
    g_clear_error(&err);
    after = read_all(path);
    g_assert_cmpstr(before, ==, after);
    g_clear_pointer(&after, g_free);

    /* Bad arguments change nothing either. */
    g_assert_false(kr_users_file_add(path, "carol", bh, &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_ADDRESS);
    g_clear_error(&err);
    g_assert_false(kr_users_file_add(path, "carol@example.org", "a:b", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_HASH);
    g_clear_error(&err);
    g_assert_false(kr_users_file_add(path, "carol@example.org", "a\nevil@x:h", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_HASH);
    g_clear_error(&err);
    g_assert_false(kr_users_file_set_hash(path, "bob@example.org", "", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_HASH);
    g_clear_error(&err);
    after = read_all(path);
    g_assert_cmpstr(before, ==, after);
    g_clear_pointer(&after, g_free);

    /* Password change keeps the address as written and the attributes. */
    g_assert_true(kr_users_file_set_hash(path, "BOB@example.org", bh, &err));
    g_assert_no_error(err);
    after = read_all(path);
    {
        g_autofree char *want = g_strdup_printf("\nbob@example.org:%s:quota=10,x=y\n", bh);
        g_assert_nonnull(strstr(after, want));
        g_assert_null(strstr(after, "OLD"));
    }
    g_clear_pointer(&after, g_free);
    t = kr_users_load(path, &err);
    g_assert_no_error(err);
    e = kr_users_lookup(t, "bob@example.org");
    g_assert_true(kr_passwd_verify("bob pw", e->hash));
    g_assert_cmpstr(kr_user_attr(e, "quota"), ==, "10");
    g_assert_cmpuint(e->line, ==, 2);
    kr_users_free(t);

    /* Delete. */
    g_assert_true(kr_users_file_del(path, "alice@EXAMPLE.org", &err));
    g_assert_no_error(err);
    t = kr_users_load(path, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(kr_users_count(t), ==, 1);
    g_assert_null(kr_users_lookup(t, "alice@example.org"));
    g_assert_nonnull(kr_users_lookup(t, "bob@example.org"));
    kr_users_free(t);
    after = read_all(path);
    g_assert_true(g_str_has_prefix(after, "# users of example.org\nbob@example.org:"));
    g_clear_pointer(&after, g_free);

    g_assert_false(kr_users_file_del(path, "alice@example.org", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_false(kr_users_file_set_hash(path, "alice@example.org", ah, &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_assert_cmpint(file_mode(path), ==, 0600);
}

static void
test_users_new_file(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "users", NULL);
    g_autofree char *content = NULL;
    GError *err = NULL;
    mode_t old = umask(0);

    /* del / set_hash do not create a missing file. */
    g_assert_false(kr_users_file_del(path, "a@b", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_false(kr_users_file_set_hash(path, "a@b", "h", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));

    /* add does, 0600 even with umask 0. */
    g_assert_true(kr_users_file_add(path, "A@B", "h1", &err));
    g_assert_no_error(err);
    umask(old);
    g_assert_cmpint(file_mode(path), ==, 0600);
    content = read_all(path);
    g_assert_cmpstr(content, ==, "a@b:h1\n");
}

static void
test_users_refuse_broken(void)
{
    const char *broken = "a@b:h\nthis line is broken\n";
    g_autofree char *path = write_users(broken, -1);
    g_autofree char *after = NULL;
    GError *err = NULL;

    g_assert_false(kr_users_file_add(path, "c@d", "h", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_PARSE);
    g_assert_nonnull(strstr(err->message, ":2: "));
    g_clear_error(&err);
    g_assert_false(kr_users_file_del(path, "a@b", &err));
    g_assert_error(err, KR_USERS_ERROR, KR_USERS_ERROR_PARSE);
    g_clear_error(&err);
    after = read_all(path);
    g_assert_cmpstr(after, ==, broken);
}

static void
test_users_changed(void)
{
    g_autofree char *path = write_users("a@b:h\n", -1);
    GError *err = NULL;
    KrUsersTable *t = kr_users_load(path, &err);

    g_assert_no_error(err);
    g_assert_false(kr_users_changed(t));
    g_assert_true(kr_users_file_add(path, "c@d", "h", &err));
    g_assert_no_error(err);
    g_assert_true(kr_users_changed(t));
    g_assert_null(kr_users_lookup(t, "c@d"));
    kr_users_free(t);

    t = kr_users_load(path, &err);
    g_assert_no_error(err);
    g_assert_false(kr_users_changed(t));
    g_assert_nonnull(kr_users_lookup(t, "c@d"));
    g_assert_cmpint(unlink(path), ==, 0);
    g_assert_true(kr_users_changed(t));
    kr_users_free(t);
}

typedef struct {
    const char *path;
    int id;
    gint failures; /* atomic, shared */
} AddJob;

#define ADD_THREADS 6
#define ADD_EACH    8

static gpointer
add_thread(gpointer p)
{
    AddJob *j = p;

    for (int i = 0; i < ADD_EACH; i++) {
        g_autofree char *addr = g_strdup_printf("u%d-%d@example.org", j->id, i);
        g_autofree char *hash = g_strdup_printf("hash-%d-%d", j->id, i);
        if (!kr_users_file_add(j->path, addr, hash, NULL))
            g_atomic_int_inc(&j->failures);
    }
    return NULL;
}

static void
test_users_concurrent_add(void)
{
    g_autofree char *path = write_users("# start\n", -1);
    AddJob jobs[ADD_THREADS];
    GThread *th[ADD_THREADS];
    gint failures = 0;
    GError *err = NULL;
    g_autoptr(KrUsersTable) t = NULL;

    for (int i = 0; i < ADD_THREADS; i++) {
        jobs[i] = (AddJob){path, i, 0};
        th[i] = g_thread_new("add", add_thread, &jobs[i]);
    }
    for (int i = 0; i < ADD_THREADS; i++) {
        g_thread_join(th[i]);
        failures += jobs[i].failures;
    }
    g_assert_cmpint(failures, ==, 0);
    t = kr_users_load(path, &err);
    g_assert_no_error(err);
    /* Without the lock, concurrent read-modify-write loses updates. */
    g_assert_cmpuint(kr_users_count(t), ==, ADD_THREADS * ADD_EACH);
    for (int i = 0; i < ADD_THREADS; i++) {
        for (int k = 0; k < ADD_EACH; k++) {
            g_autofree char *addr = g_strdup_printf("u%d-%d@example.org", i, k);
            g_autofree char *hash = g_strdup_printf("hash-%d-%d", i, k);
            const KrUserEntry *e = kr_users_lookup(t, addr);
            g_assert_nonnull(e);
            g_assert_cmpstr(e->hash, ==, hash);
        }
    }
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/auth-file/hash/yescrypt", test_hash_yescrypt);
    g_test_add_func("/auth-file/hash/argon2id", test_hash_argon2id);
    g_test_add_func("/auth-file/hash/foreign", test_hash_foreign);
    g_test_add_func("/auth-file/hash/bounds", test_hash_bounds);
    g_test_add_func("/auth-file/hash/locked-garbage", test_hash_locked_garbage);
    g_test_add_func("/auth-file/hash/scheme-names", test_hash_scheme_names);
    g_test_add_func("/auth-file/hash/threads", test_hash_threads);
    g_test_add_func("/auth-file/address/valid", test_address_valid);
    g_test_add_func("/auth-file/address/canon", test_address_canon);
    g_test_add_func("/auth-file/users/parse-good", test_users_parse_good);
    g_test_add_func("/auth-file/users/parse-bad", test_users_parse_bad);
    g_test_add_func("/auth-file/users/load-errors", test_users_load_errors);
    g_test_add_func("/auth-file/users/garbage", test_users_garbage);
    g_test_add_func("/auth-file/users/roundtrip", test_users_roundtrip);
    g_test_add_func("/auth-file/users/new-file", test_users_new_file);
    g_test_add_func("/auth-file/users/refuse-broken", test_users_refuse_broken);
    g_test_add_func("/auth-file/users/changed", test_users_changed);
    g_test_add_func("/auth-file/users/concurrent-add", test_users_concurrent_add);
    return g_test_run();
}
