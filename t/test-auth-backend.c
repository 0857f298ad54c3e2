/* SPDX-License-Identifier: MIT */
/*
 * test-auth-backend.c - the auth-file module's glue (auth-file.c): the
 * auth backend "file" and the service, loaded by the module loader into
 * a temp DATA_DIR. Users are written with the users-file helpers (linked
 * directly). Checks authenticate (right, wrong, unknown, locked, case),
 * user_exists and kr_local_address_exists following file edits without a
 * reload, a broken file keeping the previous users, the service's start
 * (refuses a broken file) and reload, and authentications in several
 * threads while the file is being replaced.
 */
#include "testlib.h"
#include "../core/kr-startup.h"
#include "../core/kr-registry-private.h"
#include "auth-file/passwd-hash.h"
#include "auth-file/users-file.h"
#include <unistd.h>

static char *users_path;
static const KrAuthBackend *backend;
static const KrService *service;

static void
add_user(const char *addr, const char *password)
{
    GError *err = NULL;
    g_autofree char *hash = kr_passwd_hash(password, KR_PASSWD_YESCRYPT, &err);
    g_assert_no_error(err);
    g_assert_true(kr_users_file_add(users_path, addr, hash, &err));
    g_assert_no_error(err);
}

static KrAuthResult
auth(const char *user, const char *pw, char **canon_r)
{
    char *canon = NULL;
    KrAuthResult r = backend->authenticate(backend->self, user, pw, &canon);
    if (canon_r)
        *canon_r = canon;
    else
        g_free(canon);
    return r;
}

static void
test_missing_file(void)
{
    /* No users file yet: nobody exists, logins fail (not tempfail). */
    g_assert_false(backend->user_exists(backend->self, "bob@localhost"));
    g_assert_cmpint(auth("bob@localhost", "pw", NULL), ==, KR_AUTH_FAIL);
    GError *err = NULL;
    g_assert_true(service->start(service->self, &err));
    g_assert_no_error(err);
}

static void
test_authenticate(void)
{
    add_user("bob@localhost", "correct horse");
    add_user("locked@localhost", "pw");
    GError *err = NULL;
    g_assert_true(kr_users_file_set_hash(users_path, "locked@localhost", "!locked", &err));
    g_assert_no_error(err);

    char *canon = NULL;
    g_assert_cmpint(auth("bob@localhost", "correct horse", &canon), ==, KR_AUTH_OK);
    g_assert_cmpstr(canon, ==, "bob@localhost");
    g_free(canon);
    /* Case of the local part does not matter; the canonical form is
     * the stored one. */
    g_assert_cmpint(auth("BOB@localhost", "correct horse", &canon), ==, KR_AUTH_OK);
    g_assert_cmpstr(canon, ==, "bob@localhost");
    g_free(canon);
    canon = NULL;
    g_assert_cmpint(auth("bob@localhost", "wrong", &canon), ==, KR_AUTH_FAIL);
    g_assert_null(canon);
    g_assert_cmpint(auth("bob@localhost", "", NULL), ==, KR_AUTH_FAIL);
    g_assert_cmpint(auth("nobody@localhost", "correct horse", NULL), ==, KR_AUTH_FAIL);
    g_assert_cmpint(auth("locked@localhost", "pw", NULL), ==, KR_AUTH_FAIL);
    g_assert_cmpint(auth("bob@localhost", NULL, NULL), ==, KR_AUTH_FAIL);
}

static void
test_exists_follows_file(void)
{
    g_assert_true(backend->user_exists(backend->self, "bob@localhost"));
    g_assert_true(kr_local_address_exists("bob@localhost"));
    g_assert_false(kr_local_address_exists("carol@localhost"));
    add_user("carol@localhost", "pw");
    g_assert_true(kr_local_address_exists("carol@localhost"));
    GError *err = NULL;
    g_assert_true(kr_users_file_del(users_path, "carol@localhost", &err));
    g_assert_no_error(err);
    g_assert_false(kr_local_address_exists("carol@localhost"));
    g_assert_true(kr_local_address_exists("bob@localhost"));
}

static void
test_broken_file(void)
{
    /* The module logs a warning about the broken file: not fatal here. */
    GLogLevelFlags old = g_log_set_always_fatal(G_LOG_FATAL_MASK);
    g_autofree char *good = NULL;
    g_assert_true(g_file_get_contents(users_path, &good, NULL, NULL));
    g_autofree char *tmp = g_strconcat(users_path, ".x", NULL);
    g_autofree char *bad = g_strconcat(good, "this line is broken\n", NULL);
    g_assert_true(g_file_set_contents(tmp, bad, -1, NULL));
    g_assert_cmpint(rename(tmp, users_path), ==, 0);

    /* The previous table stays in use. */
    g_assert_true(kr_local_address_exists("bob@localhost"));
    g_assert_cmpint(auth("bob@localhost", "correct horse", NULL), ==, KR_AUTH_OK);
    /* A daemon starting on it refuses to. */
    GError *err = NULL;
    g_assert_false(service->start(service->self, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "users:3: ")); /* FILE:LINE */
    g_clear_error(&err);

    /* Fixed: picked up without a reload. */
    g_autofree char *fixed = g_strconcat(good, "dave@localhost:!\n", NULL);
    g_assert_true(g_file_set_contents(tmp, fixed, -1, NULL));
    g_assert_cmpint(rename(tmp, users_path), ==, 0);
    g_assert_true(kr_local_address_exists("dave@localhost"));
    g_assert_true(service->start(service->self, &err));
    g_assert_no_error(err);
    service->reload(service->self);
    g_assert_true(kr_local_address_exists("dave@localhost"));
    g_log_set_always_fatal(old);
}

/* --- threads ----------------------------------------------------------- */

static gpointer
auth_loop(gpointer unused)
{
    for (int i = 0; i < 6; i++) {
        char *canon = NULL;
        KrAuthResult r = auth("bob@localhost", "correct horse", &canon);
        if (r != KR_AUTH_OK)
            g_error("authentication failed in thread: %d", r);
        if (g_strcmp0(canon, "bob@localhost") != 0)
            g_error("bad canonical name %s", canon);
        g_free(canon);
    }
    return NULL;
}

static void
test_threads(void)
{
    GThread *th[6];
    for (int i = 0; i < 6; i++)
        th[i] = g_thread_new("auth", auth_loop, NULL);
    /* Meanwhile, keep replacing the file (each add/del is a new inode). */
    for (int i = 0; i < 30; i++) {
        g_autofree char *addr = g_strdup_printf("churn%d@localhost", i);
        GError *err = NULL;
        g_assert_true(kr_users_file_add(users_path, addr, "!", &err));
        g_assert_no_error(err);
        g_assert_true(kr_local_address_exists(addr));
    }
    for (int i = 0; i < 6; i++)
        g_thread_join(th[i]);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    char *data_dir = kr_test_tmpdir();
    users_path = g_build_filename(data_dir, "users", NULL);
    g_autofree char *mpath = g_build_filename(kr_test_build_dir(), "modules", NULL);
    KrStartupOpts o = {
        .config_text = "core = { domains = [ \"localhost\" ]; };\n"
                       "modules = [ \"auth-file\" ];\n"
                       "auth-file = { users_file = \"users\"; scheme = \"yescrypt\"; };\n"
                       "pipeline = { maildrop = { type = \"maildrop\"; }; };\n",
        .data_dir = data_dir,
        .module_path = mpath,
    };
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    if (!kr_startup(&o, errors)) {
        for (guint i = 0; i < errors->len; i++)
            g_printerr("%s\n", (char *)errors->pdata[i]);
        g_error("start-up failed");
    }
    backend = kr_auth_backend("file");
    g_assert_nonnull(backend);
    g_assert_true(kr_auth_backend(NULL) == backend);
    g_autoptr(GPtrArray) svcs = kr_registry_services();
    for (guint i = 0; i < svcs->len; i++)
        if (g_str_equal(((const KrService *)svcs->pdata[i])->name, "auth-file"))
            service = svcs->pdata[i];
    g_assert_nonnull(service);

    g_test_add_func("/auth-backend/missing-file", test_missing_file);
    g_test_add_func("/auth-backend/authenticate", test_authenticate);
    g_test_add_func("/auth-backend/exists-follows-file", test_exists_follows_file);
    g_test_add_func("/auth-backend/broken-file", test_broken_file);
    g_test_add_func("/auth-backend/threads", test_threads);
    int rc = g_test_run();
    kr_shutdown_modules();
    g_free(data_dir);
    return rc;
}
