/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   maildir-folders.c - folder-level operations of the Maildir store's
 *   mailbox API: list, create, delete, rename, subscriptions, status,
 *   append.
 *
 * SYNOPSIS
 *   md_list, md_create, md_remove, md_rename, md_subscriptions,
 *   md_subscribe, md_status, md_append    (see kr-store.h)
 *   md_write_tmp(md, fds, msg, ...)       a message file in tmp/
 *
 * DESCRIPTION
 *   Folders are the Maildir++ directories ".NAME" in the user's Maildir
 *   (maildir-path.h): a directory whose name is not a valid folder name
 *   (see maildir_folder_ok), or that is a symlink, is not listed.
 *
 *   Delete first renames ".NAME" to "..deleted.NAME.<unique>" (no longer
 *   a folder to anyone), then removes its files; a crash in between
 *   leaves only an unlisted directory. Rename moves ".FROM" and every
 *   ".FROM.*" child with renameat2(RENAME_NOREPLACE).
 *
 *   Subscriptions: the Courier/Dovecot Maildir++ file "subscriptions"
 *   (one name per line), replaced atomically (tmp + rename) under
 *   flock on "subscriptions.lock".
 *
 *   Append writes tmp/NAME with LF line ends, fsyncs it, sets its mtime
 *   to the internal date, links it into cur/ as
 *   "<unique>,S=<size>,W=<CRLF size>:2,<flags>", fsyncs cur/, and
 *   records it in the index under the lock (so its UID is known at once: APPENDUID).
 */
#include "maildir-deliver.h"
#include "maildir-store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static gboolean
fail_errno(GError **error, int e, const char *what, const char *name)
{
    g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "%s %s: %s", what, name,
                g_strerror(e));
    return FALSE;
}

/* The user's Maildir (INBOX), created if missing. -1 with error. */
static int
open_home(Maildir *md, const char *user, GError **error)
{
    MaildirFds fds;
    if (!md_open_fds(md, user, NULL, TRUE, &fds, error))
        return -1;
    int home = fds.dir;
    fds.dir = -1;
    maildir_fds_close(&fds);
    return home;
}

static gint
name_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the Maildir++ folder directories below home. */
static GPtrArray *
folder_dirs(int home, GError **error)
{
    int fd = openat(home, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        fail_errno(error, errno, "cannot read", "the mail directory");
        return NULL;
    }
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] != '.' || !maildir_folder_ok(de->d_name + 1, NULL))
            continue;
        struct stat st;
        if (fstatat(home, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        g_ptr_array_add(out, g_strdup(de->d_name + 1));
    }
    closedir(d);
    g_ptr_array_sort(out, name_cmp);
    return out;
}

GPtrArray *
md_list(gpointer self, const char *user, GError **error)
{
    int home = open_home(self, user, error);
    if (home < 0)
        return NULL;
    GPtrArray *dirs = folder_dirs(home, error);
    close(home);
    if (!dirs)
        return NULL;
    g_ptr_array_insert(dirs, 0, g_strdup("INBOX"));
    return dirs;
}

static gboolean
real_folder(const char *name, const char **folder_r, GError **error)
{
    if (!md_folder_name(name, folder_r, error))
        return FALSE;
    if (!*folder_r) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME,
                    "INBOX cannot be created, deleted or renamed");
        return FALSE;
    }
    return TRUE;
}

static gboolean
folder_exists(int home, const char *folder)
{
    g_autofree char *dn = g_strconcat(".", folder, NULL);
    struct stat st;
    return fstatat(home, dn, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

gboolean
md_create(gpointer self, const char *user, const char *name, GError **error)
{
    const char *folder;
    if (!real_folder(name, &folder, error))
        return FALSE;
    int home = open_home(self, user, error);
    if (home < 0)
        return FALSE;
    gboolean exists = folder_exists(home, folder);
    close(home);
    if (exists) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_EXISTS, "folder exists");
        return FALSE;
    }
    MaildirFds fds;
    if (!md_open_fds(self, user, folder, TRUE, &fds, error))
        return FALSE;
    maildir_fds_close(&fds);
    return TRUE;
}

/* Remove everything below dirfd (not following symlinks), then nothing
 * else: the caller removes the directory itself. */
static gboolean
empty_dir(int dirfd, int depth)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return FALSE;
    }
    gboolean ok = TRUE;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd, de->d_name, 0) == 0)
            continue;
        if ((errno == EISDIR || errno == EPERM) && depth < 4) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                ok = empty_dir(sub, depth + 1) && ok;
                close(sub);
            }
            if (unlinkat(dirfd, de->d_name, AT_REMOVEDIR) < 0)
                ok = FALSE;
        } else if (errno != ENOENT) {
            ok = FALSE;
        }
    }
    closedir(d);
    return ok;
}

gboolean
md_remove(gpointer self, const char *user, const char *name, GError **error)
{
    Maildir *md = self;
    const char *folder;
    if (!real_folder(name, &folder, error))
        return FALSE;
    int home = open_home(md, user, error);
    if (home < 0)
        return FALSE;
    g_autofree char *dn = g_strconcat(".", folder, NULL);
    g_autofree char *uniq = maildir_unique_name(md->host);
    g_autofree char *gone = g_strdup_printf("..deleted.%s", uniq);
    gboolean ok = TRUE;
    struct stat st;
    if (fstatat(home, dn, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND, "no such folder");
        ok = FALSE;
    } else if (renameat2(home, dn, home, gone, RENAME_NOREPLACE) < 0) {
        ok = fail_errno(error, errno, "cannot delete folder", folder);
    } else {
        int fd = openat(home, gone, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || !empty_dir(fd, 0) || unlinkat(home, gone, AT_REMOVEDIR) < 0)
            g_warning("%s: could not remove all of deleted folder %s (left as %s)", user, folder,
                      gone);
        if (fd >= 0)
            close(fd);
        fsync(home);
    }
    close(home);
    g_autofree char *key = md_folder_key(user, folder, NULL);
    if (ok && key)
        md_folder_forget(key); /* (children too: they are simply reloaded) */
    return ok;
}

gboolean
md_rename(gpointer self, const char *user, const char *from, const char *to, GError **error)
{
    const char *f, *t;
    if (!real_folder(from, &f, error) || !real_folder(to, &t, error))
        return FALSE;
    gsize fl = strlen(f);
    if (strncmp(t, f, fl) == 0 && (t[fl] == 0 || t[fl] == '.')) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME,
                    "cannot rename a folder into itself");
        return FALSE;
    }
    int home = open_home(self, user, error);
    if (home < 0)
        return FALSE;
    gboolean ok = TRUE;
    GPtrArray *dirs = NULL;
    if (!folder_exists(home, f)) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND, "no such folder");
        ok = FALSE;
    } else if (folder_exists(home, t)) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_EXISTS, "folder exists");
        ok = FALSE;
    } else if (!(dirs = folder_dirs(home, error))) {
        ok = FALSE;
    }
    for (guint i = 0; ok && i < dirs->len; i++) {
        const char *n = dirs->pdata[i];
        if (strncmp(n, f, fl) != 0 || (n[fl] != 0 && n[fl] != '.'))
            continue;
        g_autofree char *src = g_strconcat(".", n, NULL);
        g_autofree char *dst = g_strconcat(".", t, n + fl, NULL);
        if (strlen(dst) > 255 || !maildir_folder_ok(dst + 1, NULL)) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME,
                        "new name too long for %s", n);
            ok = FALSE;
        } else if (renameat2(home, src, home, dst, RENAME_NOREPLACE) < 0) {
            ok = fail_errno(error, errno, "cannot rename folder", n);
        }
    }
    if (dirs)
        g_ptr_array_unref(dirs);
    fsync(home);
    close(home);
    g_autofree char *fkey = md_folder_key(user, f, NULL);
    g_autofree char *tkey = md_folder_key(user, t, NULL);
    if (fkey)
        md_folder_forget(fkey);
    if (tkey)
        md_folder_forget(tkey);
    return ok;
}

/* --- subscriptions --------------------------------------------------------- */

static GPtrArray *
read_subs(int home)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    int fd = openat(home, "subscriptions", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return out;
    GString *s = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0 && s->len < 1024 * 1024)
        g_string_append_len(s, buf, n);
    close(fd);
    g_auto(GStrv) lines = g_strsplit(s->str, "\n", -1);
    g_string_free(s, TRUE);
    for (char **l = lines; *l; l++) {
        g_strstrip(*l);
        if (**l && (g_ascii_strcasecmp(*l, "INBOX") == 0 || maildir_folder_ok(*l, NULL)))
            g_ptr_array_add(out, g_strdup(*l));
    }
    return out;
}

GPtrArray *
md_subscriptions(gpointer self, const char *user, GError **error)
{
    int home = open_home(self, user, error);
    if (home < 0)
        return NULL;
    GPtrArray *out = read_subs(home);
    close(home);
    return out;
}

gboolean
md_subscribe(gpointer self, const char *user, const char *name, gboolean on, GError **error)
{
    const char *folder;
    if (!md_folder_name(name, &folder, error))
        return FALSE;
    const char *canon = folder ? folder : "INBOX";
    int home = open_home(self, user, error);
    if (home < 0)
        return FALSE;
    int lk = openat(home, "subscriptions.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lk < 0 || flock(lk, LOCK_EX) < 0) {
        if (lk >= 0)
            close(lk);
        close(home);
        return fail_errno(error, errno, "cannot lock", "subscriptions");
    }
    g_autoptr(GPtrArray) subs = read_subs(home);
    gboolean have = FALSE;
    for (guint i = 0; i < subs->len; i++)
        if (strcmp(subs->pdata[i], canon) == 0) {
            have = TRUE;
            if (!on)
                g_ptr_array_remove_index(subs, i--);
        }
    gboolean ok = TRUE;
    if (have != on) {
        if (on)
            g_ptr_array_add(subs, g_strdup(canon));
        GString *s = g_string_new(NULL);
        for (guint i = 0; i < subs->len; i++)
            g_string_append_printf(s, "%s\n", (char *)subs->pdata[i]);
        int fd = openat(home, "subscriptions.tmp",
                        O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, s->str, s->len) != (ssize_t)s->len || fsync(fd) < 0 ||
            renameat(home, "subscriptions.tmp", home, "subscriptions") < 0)
            ok = fail_errno(error, errno, "cannot write", "subscriptions");
        if (fd >= 0)
            close(fd);
        g_string_free(s, TRUE);
    }
    close(lk);
    close(home);
    return ok;
}

/* --- status ------------------------------------------------------------------ */

gboolean
md_status(gpointer self, const char *user, const char *name, KrMailboxStatus *st, GError **error)
{
    const char *folder;
    if (!md_folder_name(name, &folder, error))
        return FALSE;
    MaildirFds fds;
    if (!md_open_fds(self, user, folder, folder == NULL, &fds, error))
        return FALSE;
    g_autofree char *key = md_folder_key(user, folder, NULL);
    MdFolder *f = md_folder_get(key, &fds);
    g_mutex_lock(&f->lock);
    gboolean ok = md_folder_sync(f, &fds, FALSE, error);
    if (ok) {
        MdIndex *idx = &f->idx;
        memset(st, 0, sizeof *st);
        st->messages = idx->entries->len;
        st->uidvalidity = idx->uidvalidity;
        st->uidnext = idx->nextuid;
        st->highestmodseq = idx->highestmodseq;
        /* The sessions' shared view, when current, has the counts. */
        gboolean snap = f->snap && f->snap_version == idx->msgs_version &&
                        f->snap_uidvalidity == idx->uidvalidity;
        if (snap) {
            st->unseen = f->snap_unseen;
            st->deleted = f->snap_deleted;
            st->size = f->snap_size;
        }
        for (guint i = 0; !snap && i < idx->entries->len; i++) {
            MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
            if (!(e->flags & KR_FLAG_SEEN))
                st->unseen++;
            if (e->flags & KR_FLAG_DELETED)
                st->deleted++;
            st->size += e->vsize;
        }
    }
    g_mutex_unlock(&f->lock);
    md_folder_put(f);
    maildir_fds_close(&fds);
    return ok;
}

/* --- append -------------------------------------------------------------------- */

static gboolean
write_all(int fd, const char *p, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return FALSE;
        p += n;
        len -= (gsize)n;
    }
    return TRUE;
}

/* CRLF -> LF, counting bare LFs for the vsize. *pending_cr: the last
 * chunk ended in CR (not yet written). */
static gboolean
write_lf(int fd, const char *in, gsize len, gboolean *pending_cr, gint64 *size, gint64 *lines)
{
    GString *out = g_string_sized_new(len + 1);
    for (gsize i = 0; i < len; i++) {
        char c = in[i];
        if (*pending_cr) {
            *pending_cr = FALSE;
            if (c != '\n')
                g_string_append_c(out, '\r');
        }
        if (c == '\r') {
            *pending_cr = TRUE;
            continue;
        }
        if (c == '\n')
            (*lines)++;
        g_string_append_c(out, c);
    }
    gboolean ok = write_all(fd, out->str, out->len);
    *size += (gint64)out->len;
    g_string_free(out, TRUE);
    return ok;
}

char *
md_write_tmp(Maildir *md, const MaildirFds *fds, const KrMailboxAppend *msg, gint64 *size_r,
             gint64 *vsize_r, GError **error)
{
    char *name = maildir_unique_name(md->host);
    int fd = openat(fds->tmp, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fail_errno(error, errno, "cannot create", "tmp file");
        g_free(name);
        return NULL;
    }
    gboolean ok = TRUE, pending_cr = FALSE;
    gint64 size = 0, lines = 0;
    if (msg->data) {
        ok = write_lf(fd, msg->data, msg->len, &pending_cr, &size, &lines);
    } else {
        char buf[65536];
        ssize_t n;
        while (ok && (n = read(msg->fd, buf, sizeof buf)) != 0) {
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                ok = FALSE;
                break;
            }
            ok = write_lf(fd, buf, (gsize)n, &pending_cr, &size, &lines);
        }
    }
    if (ok && pending_cr) {
        ok = write_all(fd, "\r", 1);
        size++;
    }
    gint64 date = msg->internal_date > 0 ? msg->internal_date : g_get_real_time() / 1000000;
    struct timespec ts[2] = {{date, 0}, {date, 0}};
    if (ok)
        ok = fsync(fd) == 0 && futimens(fd, ts) == 0;
    int e = errno;
    if (close(fd) < 0 && ok) {
        ok = FALSE;
        e = errno;
    }
    if (!ok) {
        unlinkat(fds->tmp, name, 0);
        fail_errno(error, e ? e : EIO, "cannot write", "tmp file");
        g_free(name);
        return NULL;
    }
    *size_r = size;
    *vsize_r = size + lines;
    return name;
}

gboolean
md_append(gpointer self, const char *user, const char *name, const KrMailboxAppend *msg,
          guint32 *uidvalidity_r, guint32 *uid_r, GError **error)
{
    Maildir *md = self;
    const char *folder;
    if (!md_folder_name(name, &folder, error))
        return FALSE;
    MaildirFds fds;
    if (!md_open_fds(md, user, folder, folder == NULL, &fds, error))
        return FALSE;
    gint64 size, vsize;
    g_autofree char *tmp = md_write_tmp(md, &fds, msg, &size, &vsize, error);
    if (!tmp) {
        maildir_fds_close(&fds);
        return FALSE;
    }
    g_autofree char *key = md_folder_key(user, folder, NULL);
    MdFolder *f = md_folder_get(key, &fds);
    g_mutex_lock(&f->lock);
    gboolean ok = FALSE;
    int lk = md_index_lock(fds.dir, error);
    if (lk >= 0 && md_folder_sync_locked(f, &fds, FALSE, error)) {
        MdIndex *idx = &f->idx;
        MdTxn txn;
        md_txn_begin(&txn, idx);
        guint32 kw;
        if (md_keywords_bits(idx, &txn, msg->keywords, &kw, error)) {
            g_autofree char *base =
                g_strdup_printf("%s,S=%" G_GINT64_FORMAT ",W=%" G_GINT64_FORMAT, tmp, size, vsize);
            g_autofree char *final = md_cur_name(base, msg->flags & KR_FLAG_ALL, kw);
            gint64 date = msg->internal_date > 0 ? msg->internal_date : g_get_real_time() / 1000000;
            if (linkat(fds.tmp, tmp, fds.cur, final, 0) < 0) {
                fail_errno(error, errno, "cannot link into", "cur/");
            } else if (fsync(fds.cur) < 0) {
                fail_errno(error, errno, "cannot fsync", "cur/");
                unlinkat(fds.cur, final, 0);
            } else {
                guint32 uid = md_txn_add(&txn, msg->flags & KR_FLAG_ALL, kw, size, vsize, date,
                                         FALSE, base, NULL);
                ok = md_index_commit(idx, fds.dir, &txn, error);
                if (ok) {
                    if (uid_r)
                        *uid_r = uid;
                    if (uidvalidity_r)
                        *uidvalidity_r = idx->uidvalidity;
                    md_folder_changed(f);
                }
                /* On failure the file stays: the next scan indexes it. */
            }
        }
        md_txn_free(&txn);
    }
    unlinkat(fds.tmp, tmp, 0);
    if (lk >= 0)
        md_index_unlock(lk);
    g_mutex_unlock(&f->lock);
    md_folder_put(f);
    maildir_fds_close(&fds);
    return ok;
}
