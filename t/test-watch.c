/* SPDX-License-Identifier: MIT */
/*
 * test-watch.c - files reloaded when they change (core/kr-watch.c): a
 * changed file is loaded anew in a worker and replaces the value; an
 * unchanged one is not loaded; a broken one keeps the old value and is
 * reported once until it changes again; old values live on while a
 * reader holds them; stop waits for a running check; free during a check
 * leaks nothing; the timer checks on its own; kr_watch_same_file.
 */
#include "testlib.h"
#include <kurir/kr-file.h>
#include <kurir/kr-watch.h>
#include <gio/gio.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>

/* from core/kr-internal.h */
void kr_worker_init(guint n_threads);

typedef struct {
    gint ref;
    char *text;
    gboolean exists;
    struct stat st;
} Val;

static gint n_alive, n_loads;
static guint n_reloaded, n_failed, n_stopped;
static char *last_failed;
static Val *last_reloaded;

static Val *
val_new(const char *text, gboolean exists, const struct stat *st)
{
    Val *v = g_new0(Val, 1);
    v->ref = 1;
    v->text = g_strdup(text);
    v->exists = exists;
    if (st)
        v->st = *st;
    g_atomic_int_inc(&n_alive);
    return v;
}

static gpointer
val_ref(gpointer p)
{
    g_atomic_int_inc(&((Val *)p)->ref);
    return p;
}

static void
val_unref(gpointer p)
{
    Val *v = p;
    if (!g_atomic_int_dec_and_test(&v->ref))
        return;
    g_free(v->text);
    g_free(v);
    g_atomic_int_add(&n_alive, -1);
}

/* A file whose text starts with "bad" does not load. */
static gpointer
val_load(const char *path, gpointer ud, GError **error)
{
    g_assert_true(ud == GINT_TO_POINTER(42));
    g_atomic_int_inc(&n_loads);
    struct stat st;
    gsize len;
    GError *err = NULL;
    g_autofree char *buf = kr_file_read_bounded(path, 4096, &st, &len, &err);
    if (!buf && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
        g_error_free(err);
        return val_new("", FALSE, NULL);
    }
    if (!buf) {
        g_propagate_error(error, err);
        return NULL;
    }
    if (g_str_has_prefix(buf, "bad")) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s:1: broken", path);
        return NULL;
    }
    return val_new(buf, TRUE, &st);
}

static const char *watched_path;

static gboolean
val_changed_path(gconstpointer p, gpointer ud)
{
    const Val *v = p;
    struct stat st;
    if (stat(watched_path, &st) < 0)
        return v->exists;
    if (!v->exists)
        return TRUE;
    return !kr_watch_same_file(&st, &v->st);
}

static void
val_reloaded(gpointer p, gpointer ud)
{
    n_reloaded++;
    last_reloaded = p;
}

static void
val_failed(const char *message, gpointer ud)
{
    n_failed++;
    g_free(last_failed);
    last_failed = g_strdup(message);
}

static const KrWatchFuncs funcs = {
    .struct_size = sizeof(KrWatchFuncs),
    .load = val_load,
    .changed = val_changed_path,
    .ref = val_ref,
    .unref = val_unref,
    .reloaded = val_reloaded,
    .failed = val_failed,
};

static gboolean
tick(gpointer p)
{
    return G_SOURCE_CONTINUE;
}

/* Run the loop until *counter reaches want (at most 10 s: a tick wakes
 * the loop, so a callback that never comes fails the test, not hangs it). */
static void
iterate_until(guint *counter, guint want)
{
    guint t = g_timeout_add(50, tick, NULL);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (*counter < want && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    g_source_remove(t);
}

/* Run a check that calls back neither reloaded nor failed: give it
 * time to end (it only stats a file). */
static void
check_sync(KrWatch *w)
{
    kr_watch_check(w);
    gint64 deadline = g_get_monotonic_time() + 300 * 1000;
    while (g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, FALSE);
}

static void
put(const char *path, const char *text)
{
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static KrWatch *
setup(const char *path, const char *text)
{
    put(path, text);
    watched_path = path;
    n_loads = 0;
    n_reloaded = n_failed = 0;
    GError *err = NULL;
    Val *v = val_load(path, GINT_TO_POINTER(42), &err);
    g_assert_no_error(err);
    n_loads = 0;
    KrWatch *w = kr_watch_new();
    g_assert_cmpuint(kr_watch_add(w, path, v, &funcs, GINT_TO_POINTER(42)), ==, 0);
    return w;
}

static void
test_reload(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "map", NULL);
    KrWatch *w = setup(path, "one");
    Val *one = kr_watch_get(w, 0);
    g_assert_cmpstr(one->text, ==, "one");

    check_sync(w); /* unchanged: not loaded */
    g_assert_cmpint(n_loads, ==, 0);
    g_assert_cmpuint(n_reloaded, ==, 0);

    put(path, "two");
    kr_watch_check(w);
    iterate_until(&n_reloaded, 1);
    g_assert_cmpuint(n_reloaded, ==, 1);
    g_assert_cmpint(n_loads, ==, 1);
    Val *two = kr_watch_get(w, 0);
    g_assert_cmpstr(two->text, ==, "two");
    g_assert_true(last_reloaded == two);
    /* The old value lives on while we hold it. */
    g_assert_cmpstr(one->text, ==, "one");
    g_assert_cmpint(n_alive, ==, 2);
    val_unref(one);
    g_assert_cmpint(n_alive, ==, 1);
    val_unref(two);

    /* A file that disappears is a change too. */
    g_assert_cmpint(g_unlink(path), ==, 0);
    kr_watch_check(w);
    iterate_until(&n_reloaded, 2);
    Val *gone = kr_watch_get(w, 0);
    g_assert_false(gone->exists);
    val_unref(gone);

    kr_watch_free(w);
    g_assert_cmpint(n_alive, ==, 0);
}

static void
test_broken(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "map", NULL);
    KrWatch *w = setup(path, "good");

    put(path, "bad one");
    kr_watch_check(w);
    iterate_until(&n_failed, 1);
    g_assert_cmpuint(n_failed, ==, 1);
    g_assert_nonnull(strstr(last_failed, ":1: broken"));
    Val *v = kr_watch_get(w, 0);
    g_assert_cmpstr(v->text, ==, "good"); /* the old value stays */
    val_unref(v);

    /* Still the same broken file: neither loaded nor reported again. */
    check_sync(w);
    check_sync(w);
    g_assert_cmpint(n_loads, ==, 1);
    g_assert_cmpuint(n_failed, ==, 1);

    /* Broken differently: reported again. */
    put(path, "bad two!");
    kr_watch_check(w);
    iterate_until(&n_failed, 2);
    g_assert_cmpuint(n_failed, ==, 2);

    /* Fixed: the new value, and a later break is reported afresh. */
    put(path, "fixed");
    kr_watch_check(w);
    iterate_until(&n_reloaded, 1);
    v = kr_watch_get(w, 0);
    g_assert_cmpstr(v->text, ==, "fixed");
    val_unref(v);
    put(path, "bad one");
    kr_watch_check(w);
    iterate_until(&n_failed, 3);
    g_assert_cmpuint(n_failed, ==, 3);

    kr_watch_free(w);
    g_assert_cmpint(n_alive, ==, 0);
}

static void
on_stopped(gpointer token)
{
    g_assert_true(token == GINT_TO_POINTER(7));
    n_stopped++;
}

static void
test_stop(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "map", NULL);
    KrWatch *w = setup(path, "one");
    n_stopped = 0;

    put(path, "two");
    kr_watch_check(w);
    kr_watch_stop(w, on_stopped, GINT_TO_POINTER(7));
    /* A check was running: done only once it finished (on the loop). */
    g_assert_cmpuint(n_stopped, ==, 0);
    iterate_until(&n_stopped, 1);
    g_assert_cmpuint(n_stopped, ==, 1);
    g_assert_cmpuint(n_reloaded, ==, 1);

    /* Stopped: no more checks. */
    put(path, "three");
    kr_watch_check(w);
    gint64 until = g_get_monotonic_time() + 300 * 1000;
    while (g_get_monotonic_time() < until)
        g_main_context_iteration(NULL, FALSE);
    g_assert_cmpint(n_loads, ==, 1);
    kr_watch_free(w);

    /* Stop when idle: done before kr_watch_stop returns. */
    w = setup(path, "four");
    n_stopped = 0;
    kr_watch_stop(w, on_stopped, GINT_TO_POINTER(7));
    g_assert_cmpuint(n_stopped, ==, 1);
    kr_watch_free(w);
    g_assert_cmpint(n_alive, ==, 0);
}

static void
test_free_busy(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "map", NULL);
    KrWatch *w = setup(path, "one");
    put(path, "two");
    kr_watch_check(w);
    kr_watch_free(w); /* the check still runs: it frees the watch */
    guint t = g_timeout_add(50, tick, NULL);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (g_atomic_int_get(&n_alive) > 0 && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    g_source_remove(t);
    g_assert_cmpint(n_alive, ==, 0);
    g_assert_cmpuint(n_reloaded, ==, 1);
}

static void
test_timer(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "map", NULL);
    KrWatch *w = setup(path, "one");
    kr_watch_start(w, 1);
    put(path, "two");
    iterate_until(&n_reloaded, 1);
    g_assert_cmpuint(n_reloaded, ==, 1);
    Val *v = kr_watch_get(w, 0);
    g_assert_cmpstr(v->text, ==, "two");
    val_unref(v);
    n_stopped = 0;
    kr_watch_stop(w, on_stopped, GINT_TO_POINTER(7));
    iterate_until(&n_stopped, 1);
    kr_watch_free(w);
    g_assert_cmpint(n_alive, ==, 0);
}

static void
test_get(void)
{
    g_assert_null(kr_watch_get(NULL, 0));
    KrWatch *w = kr_watch_new();
    g_assert_null(kr_watch_get(w, 0));
    kr_watch_check(w); /* no files: nothing to do */
    kr_watch_free(w);
}

static void
test_same_file(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "f", NULL);
    put(path, "abc");
    struct stat a, b;
    g_assert_cmpint(stat(path, &a), ==, 0);
    g_assert_cmpint(stat(path, &b), ==, 0);
    g_assert_true(kr_watch_same_file(&a, &b));
    /* Only the mtime's nanoseconds differ. */
    struct timespec ts[2] = {a.st_atim, a.st_mtim};
    ts[1].tv_nsec = (ts[1].tv_nsec + 1) % 1000000000;
    g_assert_cmpint(utimensat(AT_FDCWD, path, ts, 0), ==, 0);
    g_assert_cmpint(stat(path, &b), ==, 0);
    g_assert_false(kr_watch_same_file(&a, &b));
    /* Same size and times, another inode. */
    b = a;
    b.st_ino++;
    g_assert_false(kr_watch_same_file(&a, &b));
    b = a;
    b.st_size++;
    g_assert_false(kr_watch_same_file(&a, &b));
    b = a;
    b.st_ctim.tv_sec++;
    g_assert_false(kr_watch_same_file(&a, &b));
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    kr_worker_init(2);
    g_test_add_func("/watch/same-file", test_same_file);
    g_test_add_func("/watch/get", test_get);
    g_test_add_func("/watch/reload", test_reload);
    g_test_add_func("/watch/broken", test_broken);
    g_test_add_func("/watch/stop", test_stop);
    g_test_add_func("/watch/free-busy", test_free_busy);
    g_test_add_func("/watch/timer", test_timer);
    int r = g_test_run();
    g_free(last_failed);
    return r;
}
