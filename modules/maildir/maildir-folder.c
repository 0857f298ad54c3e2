/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   maildir-folder.c - shared per-folder state of the Maildir store, and
 *   the directory scan that keeps a folder's index in step with its files.
 *
 * SYNOPSIS
 *   md_folder_key(user, folder, error)   "domain/local[/.folder]"
 *   md_folder_get(key, fds) / md_folder_put(f)
 *                                        find-or-create / release
 *   md_folder_forget(key)                drop cached state (delete, rename)
 *   md_folder_changed(f)                 bump the counter, run watches
 *   md_notify_delivery(md, user, folder) a delivery landed
 *   md_folder_sync(f, fds, force, error) index and directories -> f->idx
 *   md_folder_sync_locked(...)           the same under the index lock
 *   md_file_vsize(fd, size)              size with CRLF line ends
 *   md_name_field(name, key)             ",S=" / ",W=" of a file name
 *
 * DESCRIPTION
 *   One MdFolder per folder directory lives in a process-wide table while
 *   sessions use it, and a while after (up to CACHE_MAX unused folders),
 *   so a new session of a known folder reads only what was appended to
 *   the index since. The directory identity (dev, inode) is checked on
 *   every get: a folder deleted and made anew gets fresh state.
 *
 *   Sync: the index file is caught up first (cheap: stat, read the
 *   tail). The directories new/ and cur/ are read only when their mtimes
 *   differ from those recorded after the last full scan, or when a
 *   delivery in this process said so (dirty), or when the caller forces
 *   it. mtimes are trusted only when at least TRUST_NS old at scan time
 *   (a change within the same clock tick as the scan would otherwise go
 *   unseen). The scan, under the index lock:
 *     - a file whose base name the index does not know: a new message
 *       (UIDs given in file name order); its CRLF size is taken from
 *       ",W=<n>" in the name when the name has it and the stat size
 *       agrees (size <= W <= 2 * size, ",S=" if present == size): the
 *       file is only stat'ed; else the file is read to count bare LFs;
 *     - an index entry whose file is in neither directory: expunged (after
 *       a second look, in case another program was renaming it);
 *     - a file whose location or ":2," flags differ from the index:
 *       flags changed by another program, adopted.
 *   Files whose names contain spaces, control characters or start with
 *   '.', and anything not a regular file (symlinks, directories), are
 *   skipped, never followed.
 *
 *   A missing or damaged index is rebuilt from the files with a new
 *   UIDVALIDITY (> the old one when known); cached-blob files of other
 *   generations (kurir-cache.N, N = the UIDVALIDITY they were made
 *   under) are removed then.
 */
#include "maildir-store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_MAX 32
#define TRUST_NS  (G_GINT64_CONSTANT(2) * 1000000000)

static GMutex table_lock;
static GHashTable *table; /* key -> MdFolder (in_table) */
static GQueue unused;     /* MdFolder with refs == 0, oldest first */

char *
md_folder_key(const char *user, const char *folder, GError **error)
{
    g_autofree char *domain = NULL, *local = NULL;
    if (!maildir_user_split(user, &domain, &local, error))
        return NULL;
    if (folder)
        return g_strdup_printf("%s/%s/.%s", domain, local, folder);
    return g_strdup_printf("%s/%s", domain, local);
}

static void
folder_free(MdFolder *f)
{
    if (f->snap)
        g_array_unref(f->snap);
    md_index_clear(&f->idx);
    g_mutex_clear(&f->lock);
    g_mutex_clear(&f->watch_lock);
    g_list_free(f->watchers);
    g_free(f->key);
    g_free(f);
}

/* Under table_lock. */
static void
table_drop(MdFolder *f)
{
    if (!f->in_table)
        return;
    g_hash_table_remove(table, f->key);
    f->in_table = FALSE;
    if (f->refs == 0) {
        g_queue_remove(&unused, f);
        folder_free(f);
    }
}

MdFolder *
md_folder_get(const char *key, const MaildirFds *fds)
{
    struct stat st;
    gboolean have_id = fstat(fds->dir, &st) == 0;
    g_mutex_lock(&table_lock);
    if (!table)
        table = g_hash_table_new(g_str_hash, g_str_equal);
    MdFolder *f = g_hash_table_lookup(table, key);
    if (f && have_id && (f->dev != st.st_dev || f->ino != st.st_ino)) {
        table_drop(f); /* another directory by that name now */
        f = NULL;
    }
    if (!f) {
        f = g_new0(MdFolder, 1);
        f->key = g_strdup(key);
        g_mutex_init(&f->lock);
        g_mutex_init(&f->watch_lock);
        md_index_init(&f->idx);
        if (have_id) {
            f->dev = st.st_dev;
            f->ino = st.st_ino;
        }
        f->in_table = TRUE;
        g_hash_table_insert(table, f->key, f);
    } else if (f->refs == 0) {
        g_queue_remove(&unused, f);
    }
    f->refs++;
    g_mutex_unlock(&table_lock);
    return f;
}

void
md_folder_put(MdFolder *f)
{
    if (!f)
        return;
    g_mutex_lock(&table_lock);
    if (--f->refs == 0) {
        if (!f->in_table) {
            folder_free(f);
        } else {
            g_queue_push_tail(&unused, f);
            while (unused.length > CACHE_MAX)
                table_drop(g_queue_peek_head(&unused));
        }
    }
    g_mutex_unlock(&table_lock);
}

void
md_folder_forget(const char *key)
{
    g_mutex_lock(&table_lock);
    if (table) {
        g_autofree char *prefix = g_strconcat(key, ".", NULL);
        GHashTableIter it;
        gpointer k, v;
        GPtrArray *drop = g_ptr_array_new();
        g_hash_table_iter_init(&it, table);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (strcmp(k, key) == 0 || g_str_has_prefix(k, prefix))
                g_ptr_array_add(drop, v);
        for (guint i = 0; i < drop->len; i++)
            table_drop(drop->pdata[i]);
        g_ptr_array_free(drop, TRUE);
    }
    g_mutex_unlock(&table_lock);
}

void
md_folder_changed(MdFolder *f)
{
    __atomic_add_fetch(&f->changes, 1, __ATOMIC_SEQ_CST);
    g_mutex_lock(&f->watch_lock);
    for (GList *l = f->watchers; l; l = l->next)
        md_session_watch_fire(l->data);
    g_mutex_unlock(&f->watch_lock);
}

void
md_notify_delivery(Maildir *md, const char *user, const char *folder)
{
    if (folder && g_ascii_strcasecmp(folder, "INBOX") == 0)
        folder = NULL;
    g_autofree char *key = md_folder_key(user, folder, NULL);
    if (!key)
        return;
    MdFolder *f = NULL;
    g_mutex_lock(&table_lock);
    if (table && (f = g_hash_table_lookup(table, key))) {
        if (f->refs == 0)
            g_queue_remove(&unused, f);
        f->refs++;
    }
    g_mutex_unlock(&table_lock);
    if (!f)
        return;
    g_atomic_int_set(&f->dirty, 1);
    md_folder_changed(f);
    md_folder_put(f);
}

/* --- sizes ------------------------------------------------------------------ */

gint64
md_file_vsize(int fd, gint64 size)
{
    char buf[65536];
    gint64 total = 0, bare = 0;
    gboolean last_cr = FALSE;
    gint64 off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        const char *p = buf, *end = buf + n;
        while (p < end) {
            const char *nl = memchr(p, '\n', (gsize)(end - p));
            if (!nl)
                break;
            gboolean cr = nl > buf ? nl[-1] == '\r' : last_cr;
            if (!cr)
                bare++;
            p = nl + 1;
        }
        last_cr = buf[n - 1] == '\r';
        total += n;
        off += n;
        /* A short read of a regular file is its end. */
        if (size >= 0 && off >= size && (gsize)n < sizeof buf)
            break;
    }
    return total + bare;
}

/* --- directory scan ----------------------------------------------------------- */

typedef struct {
    char *name;
    gboolean in_new;
} ScanFile;

static gint64
mtime_ns(const struct stat *st)
{
    return (gint64)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static gboolean
name_usable(const char *n)
{
    if (n[0] == '.' || n[0] == ':' || n[0] == 0)
        return FALSE;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return FALSE;
    return TRUE;
}

/* Append the usable names in dirfd to out. FALSE with error. */
static gboolean
read_names(int dirfd, gboolean in_new, GArray *out, GError **error)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot read %s/: %s",
                    in_new ? "new" : "cur", g_strerror(errno));
        if (fd >= 0)
            close(fd);
        return FALSE;
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        if (!name_usable(de->d_name))
            continue;
        ScanFile sf = {g_strdup(de->d_name), in_new};
        g_array_append_val(out, sf);
    }
    closedir(d);
    return TRUE;
}

static void
scan_files_free(GArray *a)
{
    for (guint i = 0; i < a->len; i++)
        g_free(g_array_index(a, ScanFile, i).name);
    g_array_unref(a);
}

static gint
scan_cmp(gconstpointer a, gconstpointer b)
{
    return strverscmp(((const ScanFile *)a)->name, ((const ScanFile *)b)->name);
}

/* Flags, keywords and odd name of a file as found in a directory. */
static void
file_state(const ScanFile *sf, guint32 *flags_r, guint32 *kw_r, char **odd_r)
{
    const char *colon = strchr(sf->name, ':');
    md_flags_from_info(colon, flags_r, kw_r);
    gsize bl = md_base_len(sf->name);
    *odd_r = NULL;
    if (sf->in_new) {
        if (colon)
            *odd_r = g_strdup(sf->name);
        return;
    }
    g_autofree char *base = g_strndup(sf->name, bl);
    g_autofree char *canon = md_cur_name(base, *flags_r, *kw_r);
    if (strcmp(canon, sf->name) != 0)
        *odd_r = g_strdup(sf->name);
}

/* The value of ",<key>=<digits>" in the base of a file name (before
 * ':'; Maildir++ ",S=" and ",W="), -1 if absent or not a sane number
 * (1 to 15 digits, no sign, ending at ',' or the end of the base). */
gint64
md_name_field(const char *name, char key)
{
    gsize bl = md_base_len(name);
    char pat[4] = {',', key, '=', 0};
    for (const char *p = name; (p = g_strstr_len(p, (gssize)(bl - (gsize)(p - name)), pat)); p++) {
        const char *d = p + 3;
        gint64 v = 0;
        int n = 0;
        while (d < name + bl && g_ascii_isdigit(*d) && n < 16) {
            v = v * 10 + (*d - '0');
            d++;
            n++;
        }
        if (n >= 1 && n <= 15 && (d == name + bl || *d == ','))
            return v;
    }
    return -1;
}

/* A new file: stat and size it; FALSE to skip it (vanished, not a
 * regular file). The CRLF size comes from ",W=" in the name when it is
 * there and agrees with the file (its stat size, and ",S=" if given:
 * size <= W <= 2 * size, since W adds at most one CR per byte);
 * otherwise the file is read (md_file_vsize). */
static gboolean
size_new_file(const MaildirFds *fds, const ScanFile *sf, gint64 *size_r, gint64 *vsize_r,
              gint64 *date_r)
{
    int sub = sf->in_new ? fds->new_ : fds->cur;
    struct stat st;
    gint64 w = md_name_field(sf->name, 'W');
    if (w >= 0) {
        /* Names written by kurir (and Dovecot): stat only, no open. */
        if (fstatat(sub, sf->name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            return FALSE;
        gint64 sz = md_name_field(sf->name, 'S');
        if (w >= st.st_size && w <= 2 * (gint64)st.st_size && (sz < 0 || sz == st.st_size)) {
            *size_r = st.st_size;
            *date_r = st.st_mtim.tv_sec;
            *vsize_r = w;
            return TRUE;
        }
        /* The name contradicts the file: read it. */
    }
    int fd = openat(sub, sf->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return FALSE;
    gboolean ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (ok) {
        *size_r = st.st_size;
        *date_r = st.st_mtim.tv_sec;
        *vsize_r = md_file_vsize(fd, st.st_size);
        ok = *vsize_r >= 0;
    }
    close(fd);
    return ok;
}

/* Does a file with this base exist in new/ or cur/ now? */
static gboolean
base_present(GArray *files, const char *base)
{
    gsize bl = strlen(base);
    for (guint i = 0; i < files->len; i++) {
        const char *n = g_array_index(files, ScanFile, i).name;
        if (strncmp(n, base, bl) == 0 && (n[bl] == 0 || n[bl] == ':'))
            return TRUE;
    }
    return FALSE;
}

/* Read both directories and record the differences in a transaction;
 * commits it (or, with in_memory, only applies it). */
static gboolean
scan(MdFolder *f, const MaildirFds *fds, gboolean in_memory, gboolean *changed_r, GError **error)
{
    MdIndex *idx = &f->idx;
    struct stat nst, cst;
    if (fstat(fds->new_, &nst) < 0 || fstat(fds->cur, &cst) < 0) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot stat new/, cur/: %s",
                    g_strerror(errno));
        return FALSE;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    gint64 now_ns = (gint64)now.tv_sec * 1000000000 + now.tv_nsec;

    GArray *files = g_array_new(FALSE, FALSE, sizeof(ScanFile));
    if (!read_names(fds->new_, TRUE, files, error) || !read_names(fds->cur, FALSE, files, error)) {
        scan_files_free(files);
        return FALSE;
    }
    for (guint i = 0; i < idx->entries->len; i++)
        g_array_index(idx->entries, MdEntry, i).seen = FALSE;

    MdTxn txn;
    md_txn_begin(&txn, idx);
    GArray *fresh = g_array_new(FALSE, FALSE, sizeof(ScanFile));
    for (guint i = 0; i < files->len; i++) {
        ScanFile *sf = &g_array_index(files, ScanFile, i);
        MdEntry *e = md_index_find_name(idx, sf->name);
        if (!e) {
            /* A second file with the same base is ignored below too. */
            g_array_append_val(fresh, *sf);
            continue;
        }
        if (e->seen)
            continue; /* same base in new/ and cur/: mid-move, take the first */
        e->seen = TRUE;
        guint32 flags, kw;
        g_autofree char *odd = NULL;
        file_state(sf, &flags, &kw, &odd);
        if (sf->in_new) {
            /* new/ carries no flags: keep the index's (none, normally). */
            flags = e->flags;
            kw = e->keywords;
        }
        if ((gboolean)e->in_new != sf->in_new || e->flags != flags || e->keywords != kw ||
            g_strcmp0(e->odd_name, odd) != 0)
            md_txn_flags(&txn, e, flags, kw, sf->in_new, odd);
    }
    /* Missing files: look again before calling them expunged. */
    GArray *again = NULL;
    for (guint i = 0; i < idx->entries->len; i++) {
        MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
        if (e->seen)
            continue;
        if (!again) {
            again = g_array_new(FALSE, FALSE, sizeof(ScanFile));
            if (!read_names(fds->new_, TRUE, again, NULL) ||
                !read_names(fds->cur, FALSE, again, NULL))
                g_array_set_size(again, 0);
        }
        if (!base_present(again, e->base))
            md_txn_expunge(&txn, e->uid);
    }
    if (again)
        scan_files_free(again);

    g_array_sort(fresh, scan_cmp);
    typedef struct {
        const ScanFile *sf;
        char *base, *odd;
        guint32 flags, kw;
        gint64 size, vsize, date;
    } Fresh;
    GArray *adds = g_array_new(FALSE, FALSE, sizeof(Fresh));
    GHashTable *added = g_hash_table_new(g_str_hash, g_str_equal);
    guint32 kw_used = 0;
    for (guint i = 0; i < fresh->len; i++) {
        Fresh a = {.sf = &g_array_index(fresh, ScanFile, i)};
        a.base = g_strndup(a.sf->name, md_base_len(a.sf->name));
        if (g_hash_table_contains(added, a.base) ||
            !size_new_file(fds, a.sf, &a.size, &a.vsize, &a.date)) {
            g_free(a.base);
            continue;
        }
        file_state(a.sf, &a.flags, &a.kw, &a.odd);
        if (a.sf->in_new)
            a.flags = a.kw = 0;
        kw_used |= a.kw;
        g_hash_table_add(added, a.base);
        g_array_append_val(adds, a);
    }
    /* Keyword letters the index has no name for get placeholder names. */
    for (guint k = idx->keywords->len; k < KR_STORE_MAX_KEYWORDS; k++)
        if (kw_used >> k) {
            g_autofree char *kn = g_strdup_printf("$maildir_%c", 'a' + k);
            md_txn_keyword(&txn, k, kn);
        }
    for (guint i = 0; i < adds->len; i++) {
        Fresh *a = &g_array_index(adds, Fresh, i);
        md_txn_add(&txn, a->flags, a->kw, a->size, a->vsize, a->date, a->sf->in_new, a->base,
                   a->odd);
        g_free(a->base);
        g_free(a->odd);
    }
    g_array_unref(adds);
    g_hash_table_unref(added);
    g_array_unref(fresh); /* names belong to files */
    scan_files_free(files);

    gint64 nm = mtime_ns(&nst), cm = mtime_ns(&cst);
    if (nm > now_ns - TRUST_NS || cm > now_ns - TRUST_NS)
        nm = cm = 0; /* too recent to trust: scan again next time */
    if (changed_r)
        *changed_r = txn.n > 0;
    if (nm != idx->new_mtime || cm != idx->cur_mtime)
        md_txn_dirs(&txn, nm, cm);

    gboolean ok = TRUE;
    if (in_memory)
        md_index_apply_txn(idx, &txn);
    else
        ok = md_index_commit(idx, fds->dir, &txn, error);
    md_txn_free(&txn);
    return ok;
}

/* Remove the cache files of other generations than keep: after a
 * rebuild nothing refers to them (a session still reading one keeps its
 * open file). */
static void
drop_old_caches(const MaildirFds *fds, guint32 keep)
{
    int fd = openat(fds->dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    char name[sizeof MD_CACHE_PREFIX + 12];
    g_snprintf(name, sizeof name, "%s%u", MD_CACHE_PREFIX, keep);
    GPtrArray *drop = g_ptr_array_new_with_free_func(g_free);
    struct dirent *de;
    while ((de = readdir(d)))
        if (g_str_has_prefix(de->d_name, MD_CACHE_PREFIX) && strcmp(de->d_name, name) != 0)
            g_ptr_array_add(drop, g_strdup(de->d_name));
    closedir(d);
    for (guint i = 0; i < drop->len; i++)
        unlinkat(fds->dir, drop->pdata[i], 0);
    g_ptr_array_unref(drop);
}

/* Rebuild the index from the files (it is missing or damaged). */
static gboolean
rebuild(MdFolder *f, const MaildirFds *fds, GError **error)
{
    MdIndex *idx = &f->idx;
    guint32 old = idx->uidvalidity;
    md_index_reset(idx);
    guint32 v = (guint32)time(NULL);
    idx->uidvalidity = v > old ? v : old + 1;
    idx->cache_gen = idx->uidvalidity;
    idx->loaded = TRUE;
    if (!scan(f, fds, TRUE, NULL, error) || !md_index_write_full(idx, fds->dir, error)) {
        md_index_reset(idx);
        idx->uidvalidity = old;
        return FALSE;
    }
    drop_old_caches(fds, idx->cache_gen);
    if (old != 0)
        g_message("%s: index rebuilt from %u files, uidvalidity %u", f->key, idx->entries->len,
                  idx->uidvalidity);
    else
        g_debug("%s: index created from %u files, uidvalidity %u", f->key, idx->entries->len,
                idx->uidvalidity);
    return TRUE;
}

static gboolean
dirs_unchanged(MdFolder *f, const MaildirFds *fds)
{
    struct stat nst, cst;
    if (f->idx.new_mtime == 0 || fstat(fds->new_, &nst) < 0 || fstat(fds->cur, &cst) < 0)
        return FALSE;
    return mtime_ns(&nst) == f->idx.new_mtime && mtime_ns(&cst) == f->idx.cur_mtime;
}

gboolean
md_folder_sync_locked(MdFolder *f, const MaildirFds *fds, gboolean force, GError **error)
{
    MdIdxResult r = md_index_refresh(&f->idx, fds->dir, error);
    if (r == MD_IDX_IOERR)
        return FALSE;
    if (r == MD_IDX_DAMAGED)
        g_warning("%s: %s is damaged; rebuilding it from the files", f->key, MD_INDEX_FILE);
    gboolean changed = FALSE;
    g_atomic_int_set(&f->dirty, 0);
    if (r != MD_IDX_OK) {
        if (!rebuild(f, fds, error))
            return FALSE;
        changed = TRUE;
    } else if (force || !dirs_unchanged(f, fds)) {
        if (!scan(f, fds, FALSE, &changed, error))
            return FALSE;
        GError *cerr = NULL;
        if (!md_index_maybe_compact(&f->idx, fds->dir, &cerr)) {
            g_warning("%s: %s", f->key, cerr->message);
            g_error_free(cerr);
        }
    }
    if (changed)
        md_folder_changed(f);
    return TRUE;
}

gboolean
md_folder_sync(MdFolder *f, const MaildirFds *fds, gboolean force, GError **error)
{
    MdIdxResult r = md_index_refresh(&f->idx, fds->dir, error);
    if (r == MD_IDX_IOERR)
        return FALSE;
    if (r == MD_IDX_OK && !force && !g_atomic_int_get(&f->dirty) && dirs_unchanged(f, fds))
        return TRUE;
    int lk = md_index_lock(fds->dir, error);
    if (lk < 0)
        return FALSE;
    gboolean ok = md_folder_sync_locked(f, fds, force, error);
    md_index_unlock(lk);
    return ok;
}
