/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-watch.c - values loaded from files, reloaded in a worker when a
 *   file changes
 *
 * SYNOPSIS
 *   #include <kurir/kr-watch.h>
 *
 *   kr_watch_new, kr_watch_add, kr_watch_get, kr_watch_start,
 *   kr_watch_check, kr_watch_stop, kr_watch_free, kr_watch_same_file
 *
 * DESCRIPTION
 *   See kr-watch.h. A check takes a reference to every file's value and
 *   a copy of what it knows about the file's broken version under the
 *   lock, hands them to one worker job (CheckOp) and applies the results
 *   on the main loop: the new value is swapped in under the lock, the old
 *   one unreferenced outside it (readers in other threads may still hold
 *   it). `busy` keeps checks from overlapping; stop and free wait for the
 *   check that runs.
 *
 * SEE ALSO
 *   kurir/kr-watch.h, t/test-watch.c
 */
#include "kr-internal.h"
#include <kurir/kr-watch.h>
#include <kurir/kr-worker.h>

typedef struct {
    char *path;
    KrWatchFuncs f;
    gpointer ud;
    gpointer value;  /* under KrWatch.lock */
    struct stat bad; /* a file that failed to load (reported once) */
    gboolean bad_valid;
} WatchFile;

struct KrWatch {
    GMutex lock;
    GPtrArray *files; /* WatchFile * */
    guint timer;
    gboolean busy, stopping, free_pending;
    void (*stop_done)(gpointer token);
    gpointer stop_token;
};

/* One file's part of a check. */
typedef struct {
    WatchFile *file;
    gpointer old, fresh;
    char *error;
    struct stat bad;
    gboolean bad_valid;
} CheckItem;

typedef struct {
    KrWatch *w;
    guint n;
    CheckItem items[];
} CheckOp;

gboolean
kr_watch_same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void
file_free(gpointer p)
{
    WatchFile *f = p;
    if (f->value)
        f->f.unref(f->value);
    g_free(f->path);
    g_free(f);
}

KrWatch *
kr_watch_new(void)
{
    KrWatch *w = g_new0(KrWatch, 1);
    g_mutex_init(&w->lock);
    w->files = g_ptr_array_new_with_free_func(file_free);
    return w;
}

guint
kr_watch_add(KrWatch *w, const char *path, gpointer value, const KrWatchFuncs *funcs, gpointer ud)
{
    g_return_val_if_fail(w && path && funcs, 0);
    g_return_val_if_fail(funcs->struct_size >= G_STRUCT_OFFSET(KrWatchFuncs, reloaded), 0);
    g_return_val_if_fail(funcs->load && funcs->changed && funcs->ref && funcs->unref, 0);
    WatchFile *f = g_new0(WatchFile, 1);
    memcpy(&f->f, funcs, MIN(funcs->struct_size, sizeof f->f));
    f->f.struct_size = sizeof f->f;
    f->path = g_strdup(path);
    f->ud = ud;
    f->value = value;
    g_mutex_lock(&w->lock);
    g_ptr_array_add(w->files, f);
    guint i = w->files->len - 1;
    g_mutex_unlock(&w->lock);
    return i;
}

gpointer
kr_watch_get(KrWatch *w, guint i)
{
    if (!w)
        return NULL;
    g_mutex_lock(&w->lock);
    gpointer v = NULL;
    if (i < w->files->len) {
        WatchFile *f = w->files->pdata[i];
        v = f->value ? f->f.ref(f->value) : NULL;
    }
    g_mutex_unlock(&w->lock);
    return v;
}

static void
check_work(gpointer p)
{
    CheckOp *op = p;
    for (guint i = 0; i < op->n; i++) {
        CheckItem *it = &op->items[i];
        WatchFile *f = it->file;
        if (!it->old || !f->f.changed(it->old, f->ud))
            continue;
        struct stat st;
        gboolean have = stat(f->path, &st) == 0;
        if (have && it->bad_valid && kr_watch_same_file(&st, &it->bad))
            continue; /* still the broken file: reported already */
        GError *err = NULL;
        it->fresh = f->f.load(f->path, f->ud, &err);
        if (!it->fresh) {
            it->error = g_strdup(err ? err->message : "cannot load");
            g_clear_error(&err);
            it->bad_valid = have;
            if (have)
                it->bad = st;
        }
    }
}

static void
watch_destroy(KrWatch *w)
{
    if (w->timer)
        g_source_remove(w->timer);
    g_ptr_array_unref(w->files);
    g_mutex_clear(&w->lock);
    g_free(w);
}

static void
check_done(gpointer p)
{
    CheckOp *op = p;
    KrWatch *w = op->w;
    for (guint i = 0; i < op->n; i++) {
        CheckItem *it = &op->items[i];
        WatchFile *f = it->file;
        if (it->fresh) {
            f->bad_valid = FALSE;
            g_mutex_lock(&w->lock);
            gpointer old = f->value;
            f->value = it->fresh;
            g_mutex_unlock(&w->lock);
            if (old)
                f->f.unref(old);
            if (f->f.reloaded)
                f->f.reloaded(it->fresh, f->ud);
        } else if (it->error) {
            /* Keep the old value; the broken file is reported once. */
            f->bad = it->bad;
            f->bad_valid = it->bad_valid;
            if (f->f.failed)
                f->f.failed(it->error, f->ud);
        }
        if (it->old)
            f->f.unref(it->old);
        g_free(it->error);
    }
    g_free(op);
    w->busy = FALSE;
    if (w->free_pending) {
        watch_destroy(w);
        return;
    }
    if (w->stopping && w->stop_done) {
        void (*done)(gpointer) = w->stop_done;
        w->stop_done = NULL;
        done(w->stop_token);
    }
}

void
kr_watch_check(KrWatch *w)
{
    g_return_if_fail(w);
    if (w->busy || w->stopping || w->files->len == 0)
        return;
    guint n = w->files->len;
    CheckOp *op = g_malloc0(sizeof *op + n * sizeof(CheckItem));
    op->w = w;
    op->n = n;
    g_mutex_lock(&w->lock);
    for (guint i = 0; i < n; i++) {
        WatchFile *f = w->files->pdata[i];
        CheckItem *it = &op->items[i];
        it->file = f;
        it->old = f->value ? f->f.ref(f->value) : NULL;
        it->bad = f->bad;
        it->bad_valid = f->bad_valid;
    }
    g_mutex_unlock(&w->lock);
    w->busy = TRUE;
    kr_worker_run(check_work, check_done, op);
}

static gboolean
on_timer(gpointer p)
{
    kr_watch_check(p);
    return G_SOURCE_CONTINUE;
}

void
kr_watch_start(KrWatch *w, guint seconds)
{
    g_return_if_fail(w && seconds > 0);
    if (w->timer)
        g_source_remove(w->timer);
    w->timer = g_timeout_add_seconds(seconds, on_timer, w);
}

void
kr_watch_stop(KrWatch *w, void (*done)(gpointer token), gpointer token)
{
    g_return_if_fail(w && done);
    w->stopping = TRUE;
    if (w->timer)
        g_source_remove(w->timer);
    w->timer = 0;
    if (!w->busy) {
        done(token);
        return;
    }
    w->stop_done = done;
    w->stop_token = token;
}

void
kr_watch_free(KrWatch *w)
{
    if (!w)
        return;
    if (w->busy) {
        /* The running check's done callback frees it. */
        w->stopping = TRUE;
        w->free_pending = TRUE;
        w->stop_done = NULL;
        if (w->timer)
            g_source_remove(w->timer);
        w->timer = 0;
        return;
    }
    watch_destroy(w);
}
