/* SPDX-License-Identifier: MIT */
/*
 * kr-sync.c - group commit of directory fsyncs (see kr-sync.h).
 *
 *   kr_sync_dir(dirfd, error)       public: fsync shared by concurrent callers
 *   kr_sync_dir_path(path, error)   public: the same by path (cached fds)
 *   kr_sync_stats(&calls, &fsyncs)  public: counters
 *
 * One DirSync per directory (device, inode) that has callers: a mutex,
 * a condition, and generation counters. `started` counts fsyncs begun,
 * `done` the last one finished. A caller needs an fsync that starts
 * after its call: generation started + 1. While one is running, callers
 * wait; when it ends, one of those still short becomes the leader and
 * runs the next generation, which covers every waiter. The entry goes
 * away when its last user leaves, so thousands of mailboxes do not pile
 * up entries.
 *
 * Errors: `err_gen` is the latest generation whose fsync failed, `err`
 * its errno; a caller whose generation is <= err_gen when it finds its
 * fsync done gets the error (it may be from a later generation: failing
 * more callers than strictly needed is safe, the reverse is not).
 */
#include "kr-internal.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    dev_t dev;
    ino_t ino;
} DirKey;

typedef struct {
    DirKey key;
    GMutex lock;
    GCond cond;
    guint64 started, done, err_gen;
    int err;
    gboolean running;
    guint users;
} DirSync;

typedef struct {
    int fd;
    dev_t dev;
    ino_t ino;
} PathFd;

static GMutex table_lock;
static GHashTable *table;   /* DirKey * -> DirSync * */
static GHashTable *by_path; /* path -> PathFd * */
static guint64 n_calls, n_fsyncs;

static guint
key_hash(gconstpointer p)
{
    const DirKey *k = p;
    return (guint)(k->ino ^ (k->ino >> 32) ^ (k->dev * 2654435761u));
}

static gboolean
key_equal(gconstpointer a, gconstpointer b)
{
    const DirKey *x = a, *y = b;
    return x->dev == y->dev && x->ino == y->ino;
}

static DirSync *
dir_get(const struct stat *st)
{
    DirKey k = {st->st_dev, st->st_ino};
    g_mutex_lock(&table_lock);
    if (!table)
        table = g_hash_table_new(key_hash, key_equal);
    DirSync *d = g_hash_table_lookup(table, &k);
    if (!d) {
        d = g_new0(DirSync, 1);
        d->key = k;
        g_mutex_init(&d->lock);
        g_cond_init(&d->cond);
        g_hash_table_insert(table, &d->key, d);
    }
    d->users++;
    n_calls++;
    g_mutex_unlock(&table_lock);
    return d;
}

static void
dir_put(DirSync *d)
{
    g_mutex_lock(&table_lock);
    if (--d->users == 0) {
        /* Nobody else can find it now: no one holds d->lock. */
        g_hash_table_remove(table, &d->key);
        g_mutex_clear(&d->lock);
        g_cond_clear(&d->cond);
        g_free(d);
    }
    g_mutex_unlock(&table_lock);
}

gboolean
kr_sync_dir(int dirfd, GError **error)
{
    struct stat st;
    if (fstat(dirfd, &st) != 0) {
        int e = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "fstat directory: %s",
                    g_strerror(e));
        return FALSE;
    }
    DirSync *d = dir_get(&st);
    g_mutex_lock(&d->lock);
    guint64 mine = d->started + 1;
    while (d->done < mine) {
        if (d->running) {
            g_cond_wait(&d->cond, &d->lock);
            continue;
        }
        /* Lead: this fsync starts after every waiter's change. */
        d->running = TRUE;
        guint64 gen = ++d->started;
        g_mutex_unlock(&d->lock);
        int r, e = 0;
        do
            r = fsync(dirfd);
        while (r != 0 && errno == EINTR);
        if (r != 0)
            e = errno;
        g_mutex_lock(&table_lock);
        n_fsyncs++;
        g_mutex_unlock(&table_lock);
        g_mutex_lock(&d->lock);
        d->running = FALSE;
        d->done = gen;
        if (e) {
            d->err_gen = gen;
            d->err = e;
        }
        g_cond_broadcast(&d->cond);
    }
    int e = d->err_gen >= mine ? d->err : 0;
    g_mutex_unlock(&d->lock);
    dir_put(d);
    if (e) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "fsync directory: %s",
                    g_strerror(e));
        return FALSE;
    }
    return TRUE;
}

static void
pathfd_free(gpointer p)
{
    PathFd *pf = p;
    close(pf->fd);
    g_free(pf);
}

/* A descriptor of the directory now at path (-1 and errno if none): the
 * cached one, kept while the path names the same directory, dup'ed so
 * that a concurrent replacement cannot close it under the caller, who
 * closes the copy. */
static int
path_fd(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    g_mutex_lock(&table_lock);
    if (!by_path)
        by_path = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, pathfd_free);
    PathFd *pf = g_hash_table_lookup(by_path, path);
    if (!pf || pf->dev != st.st_dev || pf->ino != st.st_ino) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            g_mutex_unlock(&table_lock);
            errno = e;
            return -1;
        }
        struct stat fst;
        if (fstat(fd, &fst) != 0) {
            int e = errno;
            close(fd);
            g_mutex_unlock(&table_lock);
            errno = e;
            return -1;
        }
        pf = g_new(PathFd, 1);
        pf->fd = fd;
        pf->dev = fst.st_dev;
        pf->ino = fst.st_ino;
        g_hash_table_replace(by_path, g_strdup(path), pf);
    }
    int fd = fcntl(pf->fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    g_mutex_unlock(&table_lock);
    errno = e;
    return fd;
}

gboolean
kr_sync_dir_path(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, FALSE);
    int fd = path_fd(path);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "open %s: %s", path,
                    g_strerror(e));
        return FALSE;
    }
    GError *err = NULL;
    gboolean ok = kr_sync_dir(fd, &err);
    close(fd);
    if (!ok)
        g_propagate_prefixed_error(error, err, "%s: ", path);
    return ok;
}

void
kr_sync_stats(guint64 *calls_r, guint64 *fsyncs_r)
{
    g_mutex_lock(&table_lock);
    if (calls_r)
        *calls_r = n_calls;
    if (fsyncs_r)
        *fsyncs_r = n_fsyncs;
    g_mutex_unlock(&table_lock);
}
