/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   maildir-cache.c - a session's side of the cached blobs (kr-store.h
 *   cache_get / cache_set) of the Maildir store.
 *
 * SYNOPSIS
 *   md_cache_init(c) / md_cache_clear(c)   an empty state / drop it all
 *                                          (pending blobs are lost: flush
 *                                          first)
 *   md_cache_get(c, f, fds, uid, blob_r)   the blob, or NULL
 *   md_cache_set(c, f, fds, uidvalidity, uid, blob, error)
 *                                          store (NULL: remove), batched
 *   md_cache_flush(c, f, fds, error)       write the pending batch
 *   md_cache_forget_file(c)                close the file, drop the window
 *   md_cache_compact(idx, dirfd, old_gen_r)
 *                                          copy the live blobs to a new
 *                                          generation's file (index
 *                                          compaction calls it)
 *
 * DESCRIPTION
 *   Blobs live in kurir-cache.CACHEGEN in the folder, appended at its
 *   end under the index lock; a C record in the index (maildir-index.c)
 *   says where a message's blob is. Bytes once written at an offset are
 *   never rewritten (a new blob for the same message goes to the end),
 *   so a reader may keep what it read.
 *
 *   Reading: the session keeps the cache file open (reopened when the
 *   index's CACHEGEN changes, closed at every sync by the caller) and a
 *   read-ahead window: one pread() of up to WIN_MAX bytes from the blob
 *   wanted, kept as a GBytes; later blobs inside it are handed out as
 *   sub-GBytes of the window (no copy, no system call). Blobs are
 *   written in the order they were set, which for IMAP's FETCH 1:* is
 *   the order they are read again. The window grows (from WIN_MIN,
 *   doubling) while reads go on hitting it and shrinks back when they
 *   do not, so random access reads little more than the blob.
 *
 *   Writing: cache_set() only queues the blob (a reference, no copy).
 *   The queue is written when it holds PENDING_MAX blobs or
 *   PENDING_BYTES bytes, and by the session before any other blocking
 *   call but cache_get/open_content, and at close: one pwrite() of the
 *   batch, one index append of its C records, no fsync (a cache: what a
 *   crash loses is only computed again). cache_get() sees queued blobs.
 *   Queued UIDs belong to the UIDVALIDITY they were set under; if the
 *   index was rebuilt meanwhile, the batch is dropped.
 *
 *   Compaction: blobs replaced, and those of expunged messages, stay in
 *   the file as garbage. When the index is rewritten whole
 *   (md_index_maybe_compact) and the file is over half garbage (and the
 *   garbage over COMPACT_MIN), the live blobs are copied into
 *   kurir-cache.<CACHEGEN + 1> (fdatasync'd), the index written with the
 *   new CACHEGEN and offsets, and then the old file removed. A session
 *   that has the old file open sees the new CACHEGEN at its next read
 *   and reopens; one in another process with the old index still loaded
 *   reads the old file (open: still there for it) or misses.
 *
 *   Everything read from the cache file is untrusted: lengths are
 *   bounded (MD_CACHE_BLOB_MAX), and a short read is a miss, never an
 *   error or a crash. The caller checks the blob's content.
 */
#include "maildir-store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WIN_MIN       (8 * 1024)
#define WIN_MAX       (256 * 1024)
#define PENDING_MAX   512
#define PENDING_BYTES (1024 * 1024)
#define COMPACT_MIN   (1024 * 1024) /* garbage worth a compaction */

typedef struct {
    guint32 uid;
    GBytes *blob; /* NULL: remove */
} Pending;

void
md_cache_init(MdCache *c)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->win_size = WIN_MIN;
}

static void
pending_reset(MdCache *c)
{
    if (!c->pending)
        return;
    for (guint i = 0; i < c->pending->len; i++) {
        Pending *p = &g_array_index(c->pending, Pending, i);
        if (p->blob)
            g_bytes_unref(p->blob);
    }
    g_array_set_size(c->pending, 0);
    g_hash_table_remove_all(c->pending_pos);
    c->pending_bytes = 0;
}

void
md_cache_forget_file(MdCache *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    g_clear_pointer(&c->win, g_bytes_unref);
    c->win_off = 0;
}

void
md_cache_clear(MdCache *c)
{
    pending_reset(c);
    if (c->pending)
        g_array_unref(c->pending);
    if (c->pending_pos)
        g_hash_table_unref(c->pending_pos);
    c->pending = NULL;
    c->pending_pos = NULL;
    md_cache_forget_file(c);
}

static int
open_file(const MaildirFds *fds, guint32 gen, gboolean write)
{
    char name[sizeof MD_CACHE_PREFIX + 12];
    g_snprintf(name, sizeof name, "%s%u", MD_CACHE_PREFIX, gen);
    return openat(fds->dir, name,
                  (write ? O_RDWR | O_CREAT : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
}

/* pread until len bytes or EOF; -1 on error. */
static gssize
pread_full(int fd, char *buf, gsize len, gint64 off)
{
    gsize got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, off + (gint64)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (gsize)n;
    }
    return (gssize)got;
}

gboolean
md_cache_get(MdCache *c, MdFolder *f, const MaildirFds *fds, guint32 uid, GBytes **blob_r)
{
    *blob_r = NULL;
    if (c->pending && c->pending->len) {
        gpointer pos = g_hash_table_lookup(c->pending_pos, GUINT_TO_POINTER(uid));
        if (pos) {
            Pending *p = &g_array_index(c->pending, Pending, GPOINTER_TO_UINT(pos) - 1);
            *blob_r = p->blob ? g_bytes_ref(p->blob) : NULL;
            return TRUE;
        }
    }
    g_mutex_lock(&f->lock);
    MdEntry *e = md_index_find(&f->idx, uid);
    gint64 off = e ? e->cache_off : -1;
    guint32 len = e ? e->cache_len : 0;
    guint32 gen = f->idx.cache_gen;
    g_mutex_unlock(&f->lock);
    if (off < 0 || len == 0 || len > MD_CACHE_BLOB_MAX || off > G_MAXINT64 / 2)
        return TRUE;
    if (c->fd >= 0 && c->fd_gen != gen)
        md_cache_forget_file(c);
    if (c->win) {
        gsize wl = g_bytes_get_size(c->win);
        if (off >= c->win_off && off - c->win_off <= (gint64)wl &&
            (gsize)(off - c->win_off) + len <= wl) {
            *blob_r = g_bytes_new_from_bytes(c->win, (gsize)(off - c->win_off), len);
            c->win_hits++;
            return TRUE;
        }
    }
    if (c->fd < 0) {
        c->fd = open_file(fds, gen, FALSE);
        if (c->fd < 0)
            return TRUE; /* no cache file: a miss */
        c->fd_gen = gen;
    }
    /* A window: bigger while the last one served later reads too. */
    if (c->win) {
        if (c->win_hits > 0)
            c->win_size = MIN(c->win_size * 2, WIN_MAX);
        else
            c->win_size = WIN_MIN;
    }
    gsize want = MAX((gsize)len, c->win_size);
    char *buf = g_malloc(want);
    gssize n = pread_full(c->fd, buf, want, off);
    if (n < (gssize)len) {
        g_free(buf);
        return TRUE; /* truncated or unreadable cache file: a miss */
    }
    if ((gsize)len * 2 > want) {
        /* Mostly this blob: not worth keeping as a window. */
        *blob_r = g_bytes_new_take(buf, len);
        return TRUE;
    }
    g_clear_pointer(&c->win, g_bytes_unref);
    c->win = g_bytes_new_take(buf, (gsize)n);
    c->win_off = off;
    c->win_hits = 0;
    *blob_r = g_bytes_new_from_bytes(c->win, 0, len);
    return TRUE;
}

/* Under f->lock and the index lock, index fresh: append the blobs of
 * c's batch to the cache file and their C records to the index. */
static gboolean
write_batch(MdCache *c, MdFolder *f, const MaildirFds *fds, GError **error)
{
    MdIndex *idx = &f->idx;
    MdTxn txn;
    md_txn_begin(&txn, idx);
    GByteArray *buf = g_byte_array_sized_new((guint)MIN(c->pending_bytes, PENDING_BYTES * 2));
    gboolean ok = TRUE;
    int fd = -1;
    struct stat st = {0};
    if (c->pending_bytes > 0) {
        fd = open_file(fds, idx->cache_gen, TRUE);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot open the cache: %s",
                        fd < 0 ? g_strerror(errno) : "not a file");
            ok = FALSE;
        }
    }
    for (guint i = 0; ok && i < c->pending->len; i++) {
        Pending *p = &g_array_index(c->pending, Pending, i);
        if (!md_index_find(idx, p->uid))
            continue; /* expunged meanwhile */
        if (!p->blob) {
            md_txn_cache(&txn, p->uid, 0, 0);
            continue;
        }
        gsize len;
        const guint8 *data = g_bytes_get_data(p->blob, &len);
        md_txn_cache(&txn, p->uid, (gint64)st.st_size + (gint64)buf->len, (guint32)len);
        g_byte_array_append(buf, data, (guint)len);
    }
    for (gsize done = 0; ok && done < buf->len;) {
        ssize_t n = pwrite(fd, buf->data + done, buf->len - done, st.st_size + (gint64)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot write the cache: %s",
                        n < 0 ? g_strerror(errno) : "no space");
            ok = FALSE;
        }
        done += n > 0 ? (gsize)n : 0;
    }
    if (fd >= 0)
        close(fd);
    g_byte_array_unref(buf);
    if (ok)
        ok = md_index_commit(idx, fds->dir, &txn, error);
    md_txn_free(&txn);
    return ok;
}

gboolean
md_cache_flush(MdCache *c, MdFolder *f, const MaildirFds *fds, GError **error)
{
    if (!c->pending || c->pending->len == 0)
        return TRUE;
    g_mutex_lock(&f->lock);
    gboolean ok = FALSE;
    int lk = md_index_lock(fds->dir, error);
    /* Only the index file is caught up (appending needs that), not the
     * directories: a rescan is the next sync's business. A missing or
     * damaged index (rebuilt here, with a new UIDVALIDITY) or another
     * UIDVALIDITY (UIDs naming other messages) drops the batch. */
    MdIdxResult r = lk >= 0 ? md_index_refresh(&f->idx, fds->dir, error) : MD_IDX_IOERR;
    if (r == MD_IDX_OK)
        ok = f->idx.uidvalidity != c->uidvalidity || write_batch(c, f, fds, error);
    else if (r != MD_IDX_IOERR)
        ok = md_folder_sync_locked(f, fds, FALSE, error); /* rebuild: not left empty */
    md_index_unlock(lk);
    g_mutex_unlock(&f->lock);
    pending_reset(c);
    return ok;
}

gboolean
md_cache_set(MdCache *c, MdFolder *f, const MaildirFds *fds, guint32 uidvalidity, guint32 uid,
             GBytes *blob, GError **error)
{
    gsize len = blob ? g_bytes_get_size(blob) : 0;
    if (len > MD_CACHE_BLOB_MAX) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_LIMIT,
                    "cached blob too large (%" G_GSIZE_FORMAT " bytes)", len);
        return FALSE;
    }
    if (len == 0)
        blob = NULL;
    if (!c->pending) {
        c->pending = g_array_new(FALSE, FALSE, sizeof(Pending));
        c->pending_pos = g_hash_table_new(NULL, NULL);
    }
    if (c->pending->len && c->uidvalidity != uidvalidity && !md_cache_flush(c, f, fds, error))
        return FALSE;
    c->uidvalidity = uidvalidity;
    gpointer pos = g_hash_table_lookup(c->pending_pos, GUINT_TO_POINTER(uid));
    if (pos) {
        Pending *p = &g_array_index(c->pending, Pending, GPOINTER_TO_UINT(pos) - 1);
        if (p->blob) {
            c->pending_bytes -= g_bytes_get_size(p->blob);
            g_bytes_unref(p->blob);
        }
        p->blob = blob ? g_bytes_ref(blob) : NULL;
    } else {
        Pending p = {uid, blob ? g_bytes_ref(blob) : NULL};
        g_array_append_val(c->pending, p);
        g_hash_table_insert(c->pending_pos, GUINT_TO_POINTER(uid),
                            GUINT_TO_POINTER(c->pending->len));
    }
    c->pending_bytes += len;
    if (c->pending->len >= PENDING_MAX || c->pending_bytes >= PENDING_BYTES)
        return md_cache_flush(c, f, fds, error);
    return TRUE;
}

/* --- compaction ------------------------------------------------------------ */

gboolean
md_cache_compact(MdIndex *idx, int dirfd, guint32 *old_gen_r)
{
    char name[sizeof MD_CACHE_PREFIX + 12];
    g_snprintf(name, sizeof name, "%s%u", MD_CACHE_PREFIX, idx->cache_gen);
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0)
        return FALSE;
    guint64 live = 0;
    for (guint i = 0; i < idx->entries->len; i++) {
        const MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
        if (e->cache_off >= 0)
            live += e->cache_len;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (guint64)st.st_size <= 2 * live ||
        (guint64)st.st_size - live < COMPACT_MIN) {
        close(fd);
        return FALSE;
    }
    guint32 gen = idx->cache_gen + 1;
    char nname[sizeof MD_CACHE_PREFIX + 12];
    g_snprintf(nname, sizeof nname, "%s%u", MD_CACHE_PREFIX, gen);
    int nfd = openat(dirfd, nname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (nfd < 0) {
        close(fd);
        return FALSE;
    }
    /* New offsets (-1: blob unreadable, dropped), applied only if all
     * went well. */
    gint64 *offs = g_new(gint64, idx->entries->len ? idx->entries->len : 1);
    GByteArray *buf = g_byte_array_sized_new(PENDING_BYTES + MD_CACHE_BLOB_MAX / 16);
    gint64 out = 0;
    gboolean ok = TRUE;
    for (guint i = 0; ok && i <= idx->entries->len; i++) {
        gboolean last = i == idx->entries->len;
        if (!last) {
            const MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
            offs[i] = -1;
            if (e->cache_off < 0 || e->cache_len == 0 || e->cache_len > MD_CACHE_BLOB_MAX ||
                e->cache_off > st.st_size - (gint64)e->cache_len)
                continue;
            guint at = buf->len;
            g_byte_array_set_size(buf, at + e->cache_len);
            if (pread_full(fd, (char *)buf->data + at, e->cache_len, e->cache_off) !=
                (gssize)e->cache_len) {
                g_byte_array_set_size(buf, at);
                continue;
            }
            offs[i] = out + at;
        }
        if (buf->len > 0 && (last || buf->len >= PENDING_BYTES)) {
            for (gsize done = 0; ok && done < buf->len;) {
                ssize_t n = write(nfd, buf->data + done, buf->len - done);
                if (n < 0 && errno == EINTR)
                    continue;
                ok = n > 0;
                done += ok ? (gsize)n : 0;
            }
            out += buf->len;
            g_byte_array_set_size(buf, 0);
        }
    }
    /* The index about to point here must not outlive the data. */
    ok = ok && fdatasync(nfd) == 0;
    close(nfd);
    close(fd);
    g_byte_array_unref(buf);
    if (!ok) {
        unlinkat(dirfd, nname, 0);
        g_free(offs);
        return FALSE;
    }
    for (guint i = 0; i < idx->entries->len; i++) {
        MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
        e->cache_off = offs[i];
        if (offs[i] < 0)
            e->cache_len = 0;
    }
    g_free(offs);
    *old_gen_r = idx->cache_gen;
    idx->cache_gen = gen;
    return TRUE;
}
