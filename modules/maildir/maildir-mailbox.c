/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   maildir-mailbox.c - sessions on a Maildir folder: the session side of
 *   the KrMailboxOps vtable (kr-store.h) and the vtable itself.
 *
 * SYNOPSIS
 *   maildir_mailbox_ops                  the vtable registered by maildir.c
 *   md_folder_name, md_open_fds, md_keywords_bits   helpers for
 *                                        maildir-folders.c
 *   md_session_watch_fire(mb)            run a session's watch
 *
 * DESCRIPTION
 *   A KrMailbox holds the folder's open directories (so a renamed folder
 *   keeps working for the session), a reference on the shared MdFolder,
 *   and its view: KrMailboxMsg copies, each holding a reference on the
 *   message's guid string. Sessions opened on an unchanged folder share
 *   one view array (the folder's snapshot, MdFolder.snap, with its
 *   unseen/deleted/size counts): opening an indexed folder and
 *   get_status() cost no per-message work; a session copies the array
 *   before changing it (set_flags, \Recent bits), and sync() builds a
 *   new one when messages changed. sync() merges the folder's current
 *   entries into the view (both are in UID order) and reports the
 *   differences; set_flags() writes its changes into the view at once so
 *   that sync() reports only other sessions' changes.
 *
 *   \Recent: the index keeps the first UID no session has claimed (R
 *   records). open() and sync() of a session that may write claim
 *   [that, UIDNEXT) under the index lock and set KR_FLAG_RECENT on those
 *   messages in the session's own view, where it stays for the session's
 *   life; a read-only session (and one opened KR_MAILBOX_NO_RECENT,
 *   POP3) marks the unclaimed ones without claiming.
 *   The shared snapshot never carries the bit.
 *
 *   Cached blobs go through the session's MdCache (maildir-cache.c): its
 *   queued blobs are written before every other blocking call but
 *   cache_get/open_content, and at close; sync() also closes its cache
 *   file and drops its read-ahead window.
 *
 *   File operations (rename for flags, unlink for expunge, link/rename for
 *   copy/move) are made under the folder's index lock. A file that is not
 *   where the index says (another program renamed it) triggers a forced
 *   rescan and one more try.
 *
 *   The exclusive lock for POP3 is flock(LOCK_EX | LOCK_NB) on
 *   kurir-maildrop.lock in the folder, held by an fd the session keeps.
 */
#include "maildir-deliver.h"
#include "maildir-store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAILDROP_LOCK "kurir-maildrop.lock"

struct KrMailbox {
    Maildir *md;
    char *user;
    char *folder; /* NULL: INBOX */
    MdFolder *f;
    MaildirFds fds;
    unsigned flags;
    int lock_fd;
    GArray *view;         /* KrMailboxMsg, ascending UID; frees guids when dropped */
    gboolean view_shared; /* view may be another session's too: copy first */
    guint32 uidvalidity, uidnext;
    guint64 highestmodseq;
    guint64 synced_version;      /* f->idx.version the view reflects */
    guint64 synced_msgs_version; /* f->idx.msgs_version the view reflects */
    guint32 unseen, deleted;     /* counts of the view (get_status) */
    guint32 first_unseen;        /* seq of the first without \Seen, 0: none;
                                  * G_MAXUINT32: to be found again */
    gint64 size;
    char **keywords;
    MdCache cache; /* cached blobs: open file, window, unwritten batch */
    KrMailboxWatchFunc watch;
    gpointer watch_ud;
};

/* --- helpers ------------------------------------------------------------ */

gboolean
md_folder_name(const char *name, const char **folder_r, GError **error)
{
    if (!name || g_ascii_strcasecmp(name, "INBOX") == 0) {
        *folder_r = NULL;
        return TRUE;
    }
    GError *e = NULL;
    if (!maildir_folder_ok(name, &e)) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME, "%s", e->message);
        g_error_free(e);
        return FALSE;
    }
    *folder_r = name;
    return TRUE;
}

gboolean
md_open_fds(Maildir *md, const char *user, const char *folder, gboolean create, MaildirFds *fds,
            GError **error)
{
    GError *e = NULL;
    KrStoreResult r = maildir_open(md->mail_dir, user, folder, create, fds, &e);
    if (r == KR_STORE_OK)
        return TRUE;
    int code = KR_STORE_ERROR_FAILED;
    if (r == KR_STORE_PERMFAIL)
        code = KR_STORE_ERROR_INVALID_NAME;
    else if (g_error_matches(e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        code = KR_STORE_ERROR_NOT_FOUND;
    g_set_error(error, KR_STORE_ERROR, code, "%s",
                code == KR_STORE_ERROR_NOT_FOUND ? "no such folder" : e->message);
    g_error_free(e);
    return FALSE;
}

gboolean
md_keywords_bits(MdIndex *idx, MdTxn *txn, const char *const *names, guint32 *bits_r,
                 GError **error)
{
    guint32 bits = 0;
    guint next = idx->keywords->len;
    g_autoptr(GPtrArray) added = g_ptr_array_new();
    for (const char *const *n = names; n && *n; n++) {
        int i = md_keyword_index(idx, *n);
        for (guint j = 0; i < 0 && j < added->len; j++)
            if (g_ascii_strcasecmp(added->pdata[j], *n) == 0)
                i = (int)(idx->keywords->len + j);
        if (i < 0) {
            gboolean ok = **n && strlen(*n) <= 200;
            for (const unsigned char *p = (const unsigned char *)*n; ok && *p; p++)
                ok = *p > 0x20 && *p < 0x7f && *p != '/';
            if (!ok) {
                g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME,
                            "bad keyword \"%.40s\"", *n);
                return FALSE;
            }
            if (next >= KR_STORE_MAX_KEYWORDS) {
                g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_LIMIT,
                            "too many keywords in this folder (at most %d)", KR_STORE_MAX_KEYWORDS);
                return FALSE;
            }
            i = (int)next++;
            md_txn_keyword(txn, (guint)i, *n);
            g_ptr_array_add(added, (gpointer)*n);
        }
        bits |= 1u << i;
    }
    *bits_r = bits;
    return TRUE;
}

static void
msg_clear(gpointer p)
{
    KrMailboxMsg *m = p;
    if (m->guid)
        g_ref_string_release((char *)m->guid);
}

static GArray *
view_new(guint n)
{
    GArray *v = g_array_sized_new(FALSE, FALSE, sizeof(KrMailboxMsg), n);
    g_array_set_clear_func(v, msg_clear);
    return v;
}

/* Make the session's view its own before changing it in place. */
static void
view_own(KrMailbox *mb)
{
    if (!mb->view_shared)
        return;
    GArray *old = mb->view;
    GArray *v = view_new(old->len);
    g_array_append_vals(v, old->data, old->len);
    for (guint i = 0; i < v->len; i++) {
        KrMailboxMsg *m = &g_array_index(v, KrMailboxMsg, i);
        m->guid = g_ref_string_acquire((char *)m->guid);
    }
    g_array_unref(old);
    mb->view = v;
    mb->view_shared = FALSE;
}

/* m from e; m->flags keeps only \Recent (a view-only flag) of what it
 * had: m must be initialised. */
static void
msg_from_entry(KrMailboxMsg *m, const MdEntry *e)
{
    m->uid = e->uid;
    m->flags = e->flags | (m->flags & KR_FLAG_RECENT);
    m->keywords = e->keywords;
    m->reserved = 0;
    m->modseq = e->modseq;
    m->size = e->vsize;
    m->internal_date = e->date;
}

static void
take_counters(KrMailbox *mb)
{
    MdIndex *idx = &mb->f->idx;
    mb->uidvalidity = idx->uidvalidity;
    mb->uidnext = idx->nextuid;
    mb->highestmodseq = idx->highestmodseq;
    g_strfreev(mb->keywords);
    mb->keywords = g_new0(char *, idx->keywords->len + 1);
    for (guint i = 0; i < idx->keywords->len; i++)
        mb->keywords[i] = g_strdup(idx->keywords->pdata[i]);
    mb->synced_version = idx->version;
    mb->synced_msgs_version = idx->msgs_version;
}

static void
count_view(GArray *v, guint32 *unseen_r, guint32 *deleted_r, gint64 *size_r,
           guint32 *first_unseen_r)
{
    guint32 unseen = 0, deleted = 0, first = 0;
    gint64 size = 0;
    for (guint i = 0; i < v->len; i++) {
        const KrMailboxMsg *m = &g_array_index(v, KrMailboxMsg, i);
        if (!(m->flags & KR_FLAG_SEEN)) {
            unseen++;
            if (!first)
                first = i + 1;
        }
        deleted += (m->flags & KR_FLAG_DELETED) != 0;
        size += m->size;
    }
    *unseen_r = unseen;
    *deleted_r = deleted;
    *size_r = size;
    *first_unseen_r = first;
}

/* Mark the view's messages with UIDs in [lo, hi) \Recent (copying a
 * shared view first: the bit is this session's alone). */
static void
mark_recent(KrMailbox *mb, guint32 lo, guint32 hi)
{
    if (lo >= hi)
        return;
    guint a = 0, b = mb->view->len;
    while (a < b) {
        guint mid = a + (b - a) / 2;
        if (g_array_index(mb->view, KrMailboxMsg, mid).uid < lo)
            a = mid + 1;
        else
            b = mid;
    }
    for (guint i = a; i < mb->view->len; i++) {
        const KrMailboxMsg *m = &g_array_index(mb->view, KrMailboxMsg, i);
        if (m->uid >= hi)
            break;
        if (!(m->flags & KR_FLAG_RECENT)) {
            view_own(mb);
            for (; i < mb->view->len; i++) {
                KrMailboxMsg *w = &g_array_index(mb->view, KrMailboxMsg, i);
                if (w->uid >= hi)
                    break;
                w->flags |= KR_FLAG_RECENT;
            }
            return;
        }
    }
}

/* Under f->lock, index fresh: the UIDs [*lo_r, *hi_r) this session sees
 * as \Recent now. A session that may write claims them (an R record,
 * under the index lock); a read-only one sees the unclaimed ones
 * without claiming. Trouble writing the claim is logged, not fatal:
 * nothing is recent then. */
static void
claim_recent(KrMailbox *mb, guint32 *lo_r, guint32 *hi_r)
{
    MdIndex *idx = &mb->f->idx;
    *lo_r = *hi_r = 0;
    if (idx->recent_uid >= idx->nextuid)
        return;
    if (mb->flags & (KR_MAILBOX_READONLY | KR_MAILBOX_NO_RECENT)) {
        *lo_r = idx->recent_uid;
        *hi_r = idx->nextuid;
        return;
    }
    GError *e = NULL;
    int lk = md_index_lock(mb->fds.dir, &e);
    /* The index file only (the caller synced just before): messages
     * found by a rescan now would be claimed at the next sync. */
    MdIdxResult r = lk >= 0 ? md_index_refresh(idx, mb->fds.dir, &e) : MD_IDX_IOERR;
    gboolean ok = r != MD_IDX_IOERR;
    if (ok && r != MD_IDX_OK)
        ok = md_folder_sync_locked(mb->f, &mb->fds, FALSE, &e); /* rebuild it */
    if (ok && idx->recent_uid < idx->nextuid) {
        guint32 lo = idx->recent_uid, hi = idx->nextuid;
        MdTxn txn;
        md_txn_begin(&txn, idx);
        md_txn_recent(&txn, hi);
        ok = md_index_commit(idx, mb->fds.dir, &txn, &e);
        md_txn_free(&txn);
        if (ok) {
            *lo_r = lo;
            *hi_r = hi;
        }
    }
    md_index_unlock(lk);
    if (!ok) {
        g_message("%s: cannot claim \\Recent messages: %s", mb->f->key, e->message);
        g_error_free(e);
    }
}

/* Write the session's queued cached blobs; trouble is only logged (a
 * cache: they are computed again). */
static void
flush_cache(KrMailbox *mb)
{
    GError *e = NULL;
    if (!md_cache_flush(&mb->cache, mb->f, &mb->fds, &e)) {
        g_debug("%s: cannot write cached blobs: %s", mb->f->key, e->message);
        g_error_free(e);
    }
}

/* Under f->lock: the view is the folder's snapshot, built if the index
 * changed since it was taken. */
static void
view_build(KrMailbox *mb)
{
    MdFolder *f = mb->f;
    MdIndex *idx = &f->idx;
    if (!f->snap || f->snap_version != idx->msgs_version ||
        f->snap_uidvalidity != idx->uidvalidity) {
        GArray *v = view_new(idx->entries->len);
        g_array_set_size(v, idx->entries->len);
        for (guint i = 0; i < idx->entries->len; i++) {
            MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
            KrMailboxMsg *m = &g_array_index(v, KrMailboxMsg, i);
            m->flags = 0;
            msg_from_entry(m, e);
            m->guid = g_ref_string_acquire(e->base);
        }
        if (f->snap)
            g_array_unref(f->snap);
        f->snap = v;
        f->snap_version = idx->msgs_version;
        f->snap_uidvalidity = idx->uidvalidity;
        count_view(v, &f->snap_unseen, &f->snap_deleted, &f->snap_size, &f->snap_first_unseen);
    }
    if (mb->view)
        g_array_unref(mb->view);
    mb->view = g_array_ref(f->snap);
    mb->view_shared = TRUE;
    mb->unseen = f->snap_unseen;
    mb->deleted = f->snap_deleted;
    mb->size = f->snap_size;
    mb->first_unseen = f->snap_first_unseen;
    take_counters(mb);
}

static gboolean
check_writable(KrMailbox *mb, GError **error)
{
    if (!(mb->flags & KR_MAILBOX_READONLY))
        return TRUE;
    g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_READONLY, "folder opened read-only");
    return FALSE;
}

/* Lock the folder (mutex, then index lock) and refresh the index. */
static int
lock_folder(KrMailbox *mb, GError **error)
{
    g_mutex_lock(&mb->f->lock);
    int lk = md_index_lock(mb->fds.dir, error);
    if (lk < 0) {
        g_mutex_unlock(&mb->f->lock);
        return -1;
    }
    if (!md_folder_sync_locked(mb->f, &mb->fds, FALSE, error)) {
        md_index_unlock(lk);
        g_mutex_unlock(&mb->f->lock);
        return -1;
    }
    return lk;
}

static void
unlock_folder(KrMailbox *mb, int lk)
{
    md_index_unlock(lk);
    g_mutex_unlock(&mb->f->lock);
}

/* --- open / close ----------------------------------------------------- */

static KrMailbox *
mb_open(gpointer self, const char *user, const char *name, unsigned flags, GError **error)
{
    Maildir *md = self;
    const char *folder;
    if (!md_folder_name(name, &folder, error))
        return NULL;
    g_autofree char *key = md_folder_key(user, folder, NULL);
    if (!key) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME, "bad user name");
        return NULL;
    }
    KrMailbox *mb = g_new0(KrMailbox, 1);
    mb->md = md;
    mb->user = g_strdup(user);
    mb->folder = g_strdup(folder);
    mb->flags = flags;
    mb->lock_fd = -1;
    mb->fds = (MaildirFds)MAILDIR_FDS_INIT;
    mb->view = view_new(0);
    md_cache_init(&mb->cache);
    if (!md_open_fds(md, user, folder, folder == NULL, &mb->fds, error))
        goto fail;
    if (flags & KR_MAILBOX_EXCLUSIVE) {
        mb->lock_fd =
            openat(mb->fds.dir, MAILDROP_LOCK, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (mb->lock_fd < 0) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot open %s: %s",
                        MAILDROP_LOCK, g_strerror(errno));
            goto fail;
        }
        if (flock(mb->lock_fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            g_set_error(error, KR_STORE_ERROR,
                        e == EWOULDBLOCK ? KR_STORE_ERROR_IN_USE : KR_STORE_ERROR_FAILED, "%s",
                        e == EWOULDBLOCK ? "mailbox in use" : g_strerror(e));
            goto fail;
        }
    }
    mb->f = md_folder_get(key, &mb->fds);
    g_mutex_lock(&mb->f->lock);
    gboolean ok = md_folder_sync(mb->f, &mb->fds, FALSE, error);
    if (ok) {
        guint32 lo, hi;
        claim_recent(mb, &lo, &hi);
        view_build(mb);
        mark_recent(mb, lo, hi);
    }
    g_mutex_unlock(&mb->f->lock);
    if (ok)
        return mb;
fail:
    if (mb->f)
        md_folder_put(mb->f);
    if (mb->lock_fd >= 0)
        close(mb->lock_fd);
    maildir_fds_close(&mb->fds);
    g_array_unref(mb->view);
    g_free(mb->user);
    g_free(mb->folder);
    g_free(mb);
    return NULL;
}

static void
mb_watch(KrMailbox *mb, KrMailboxWatchFunc func, gpointer ud)
{
    MdFolder *f = mb->f;
    g_mutex_lock(&f->watch_lock);
    if (mb->watch)
        f->watchers = g_list_remove(f->watchers, mb);
    mb->watch = func;
    mb->watch_ud = ud;
    if (func)
        f->watchers = g_list_prepend(f->watchers, mb);
    g_mutex_unlock(&f->watch_lock);
}

void
md_session_watch_fire(gpointer p)
{
    KrMailbox *mb = p;
    if (mb->watch)
        mb->watch(mb->watch_ud);
}

static void
mb_close(KrMailbox *mb)
{
    if (!mb)
        return;
    mb_watch(mb, NULL, NULL);
    flush_cache(mb);
    md_cache_clear(&mb->cache);
    md_folder_put(mb->f);
    if (mb->lock_fd >= 0)
        close(mb->lock_fd);
    maildir_fds_close(&mb->fds);
    g_array_unref(mb->view);
    g_strfreev(mb->keywords);
    g_free(mb->user);
    g_free(mb->folder);
    g_free(mb);
}

/* --- sync --------------------------------------------------------------- */

static gboolean
mb_sync(KrMailbox *mb, KrMailboxChanges *ch, GError **error)
{
    if (ch)
        memset(ch, 0, sizeof *ch);
    MdFolder *f = mb->f;
    flush_cache(mb);
    md_cache_forget_file(&mb->cache); /* reopened (maybe a new file) on use */
    g_mutex_lock(&f->lock);
    if (!md_folder_sync(f, &mb->fds, FALSE, error)) {
        g_mutex_unlock(&f->lock);
        return FALSE;
    }
    MdIndex *idx = &f->idx;
    if (idx->uidvalidity != mb->uidvalidity) {
        g_mutex_unlock(&f->lock);
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_UIDVALIDITY,
                    "the folder's UIDs were reset (UIDVALIDITY %u -> %u)", mb->uidvalidity,
                    idx->uidvalidity);
        return FALSE;
    }
    guint32 rlo, rhi;
    claim_recent(mb, &rlo, &rhi);
    if (idx->version == mb->synced_version || idx->msgs_version == mb->synced_msgs_version) {
        /* No message changed (maybe counters, keywords, cached blobs). */
        guint nkw_before = g_strv_length(mb->keywords);
        if (idx->version != mb->synced_version)
            take_counters(mb);
        mark_recent(mb, rlo, rhi);
        g_mutex_unlock(&f->lock);
        if (ch) {
            ch->exists = mb->view->len;
            ch->keywords_changed = g_strv_length(mb->keywords) != nkw_before;
        }
        return TRUE;
    }
    guint nkw_before = g_strv_length(mb->keywords);
    GArray *old = mb->view;
    GArray *view = view_new(idx->entries->len);
    GArray *exp_seqs = NULL, *exp_uids = NULL, *changed = NULL;
    if (ch) {
        exp_seqs = g_array_new(FALSE, FALSE, sizeof(guint32));
        exp_uids = g_array_new(FALSE, FALSE, sizeof(guint32));
        changed = g_array_new(FALSE, FALSE, sizeof(guint32));
    }
    guint i = 0, j = 0;
    guint32 last_old = old->len ? g_array_index(old, KrMailboxMsg, old->len - 1).uid : 0;
    guint32 new_count = 0;
    while (i < old->len || j < idx->entries->len) {
        KrMailboxMsg *o = i < old->len ? &g_array_index(old, KrMailboxMsg, i) : NULL;
        MdEntry *e = j < idx->entries->len ? &g_array_index(idx->entries, MdEntry, j) : NULL;
        if (o && (!e || o->uid < e->uid)) {
            /* expunged */
            if (ch) {
                guint32 seq = i + 1;
                g_array_append_val(exp_seqs, seq);
                g_array_append_val(exp_uids, o->uid);
            }
            i++;
            continue;
        }
        if (o && e && o->uid == e->uid) {
            KrMailboxMsg m = *o;
            m.guid = g_ref_string_acquire((char *)o->guid);
            guint32 oflags = o->flags & ~KR_FLAG_RECENT;
            if (o->modseq != e->modseq || oflags != e->flags || o->keywords != e->keywords) {
                gboolean report = oflags != e->flags || o->keywords != e->keywords;
                msg_from_entry(&m, e);
                if (ch && report) {
                    guint32 seq = view->len + 1;
                    g_array_append_val(changed, seq);
                }
            }
            g_array_append_val(view, m);
            i++;
            j++;
            continue;
        }
        /* e only */
        if (e->uid > last_old) {
            KrMailboxMsg m = {0};
            msg_from_entry(&m, e);
            m.guid = g_ref_string_acquire(e->base);
            g_array_append_val(view, m);
            new_count++;
        }
        j++;
    }
    g_array_unref(old); /* releases its guids if no other session has it */
    mb->view = view;
    mb->view_shared = FALSE;
    take_counters(mb);
    count_view(view, &mb->unseen, &mb->deleted, &mb->size, &mb->first_unseen);
    mark_recent(mb, rlo, rhi);
    g_mutex_unlock(&f->lock);
    if (ch) {
        for (guint a = 0, b = exp_seqs->len; a + 1 < b; a++, b--) {
            guint32 t = g_array_index(exp_seqs, guint32, a);
            g_array_index(exp_seqs, guint32, a) = g_array_index(exp_seqs, guint32, b - 1);
            g_array_index(exp_seqs, guint32, b - 1) = t;
        }
        ch->expunged_seqs = exp_seqs;
        ch->expunged_uids = exp_uids;
        ch->changed_seqs = changed;
        ch->new_messages = new_count;
        ch->exists = view->len;
        ch->keywords_changed = g_strv_length(mb->keywords) != nkw_before;
    }
    return TRUE;
}

/* --- fast getters ----------------------------------------------------------- */

static guint32
mb_count(KrMailbox *mb)
{
    return mb->view->len;
}

static const KrMailboxMsg *
mb_msg(KrMailbox *mb, guint32 seq)
{
    if (seq == 0 || seq > mb->view->len)
        return NULL;
    return &g_array_index(mb->view, KrMailboxMsg, seq - 1);
}

static guint32
mb_seq_of_uid(KrMailbox *mb, guint32 uid)
{
    guint lo = 0, hi = mb->view->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        guint32 u = g_array_index(mb->view, KrMailboxMsg, mid).uid;
        if (u == uid)
            return mid + 1;
        if (u < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static void
mb_get_status(KrMailbox *mb, KrMailboxStatus *st)
{
    memset(st, 0, sizeof *st);
    st->messages = mb->view->len;
    st->uidvalidity = mb->uidvalidity;
    st->uidnext = mb->uidnext;
    st->highestmodseq = mb->highestmodseq;
    st->unseen = mb->unseen;
    st->deleted = mb->deleted;
    st->size = mb->size;
}

static guint32
mb_first_unseen(KrMailbox *mb)
{
    if (mb->first_unseen == G_MAXUINT32) {
        mb->first_unseen = 0;
        for (guint i = 0; i < mb->view->len; i++)
            if (!(g_array_index(mb->view, KrMailboxMsg, i).flags & KR_FLAG_SEEN)) {
                mb->first_unseen = i + 1;
                break;
            }
    }
    return mb->first_unseen;
}

static const char *const *
mb_keywords(KrMailbox *mb)
{
    return (const char *const *)mb->keywords;
}

static gboolean
mb_readonly(KrMailbox *mb)
{
    return (mb->flags & KR_MAILBOX_READONLY) != 0;
}

static guint64
mb_change_counter(KrMailbox *mb)
{
    return __atomic_load_n(&mb->f->changes, __ATOMIC_SEQ_CST);
}

/* --- content -------------------------------------------------------------------- */

static int
open_entry(KrMailbox *mb, guint32 uid, int *err_r)
{
    MdEntry *e = md_index_find(&mb->f->idx, uid);
    if (!e) {
        *err_r = ENOENT;
        return -2;
    }
    g_autofree char *path = md_entry_path(e);
    int fd = openat(mb->fds.dir, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    *err_r = fd < 0 ? errno : 0;
    return fd;
}

static int
mb_open_content(KrMailbox *mb, guint32 uid, GError **error)
{
    MdFolder *f = mb->f;
    int e = 0;
    g_mutex_lock(&f->lock);
    int fd = open_entry(mb, uid, &e);
    g_mutex_unlock(&f->lock);
    if (fd == -1 && e == ENOENT) {
        /* Renamed or removed behind our back: rescan, try again. */
        g_mutex_lock(&f->lock);
        int lk = md_index_lock(mb->fds.dir, error);
        gboolean ok = lk >= 0 && md_folder_sync_locked(f, &mb->fds, TRUE, error);
        if (ok)
            fd = open_entry(mb, uid, &e);
        md_index_unlock(lk);
        g_mutex_unlock(&f->lock);
        if (!ok)
            return -1;
    }
    if (fd >= 0)
        return fd;
    if (fd == -2 || e == ENOENT)
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_NO_MESSAGE, "message %u is gone", uid);
    else
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot open message %u: %s", uid,
                    g_strerror(e));
    return -1;
}

/* --- flags ------------------------------------------------------------------------ */

/* Rename e's file to its canonical cur/ name for flags/kw. 0 or errno. */
static int
rename_for_flags(KrMailbox *mb, const MdEntry *e, guint32 flags, guint32 kw)
{
    g_autofree char *from = md_entry_path(e);
    g_autofree char *to_name = md_cur_name(e->base, flags, kw);
    g_autofree char *to = g_strconcat("cur/", to_name, NULL);
    if (strcmp(from, to) == 0)
        return 0;
    if (renameat(mb->fds.dir, from, mb->fds.dir, to) < 0)
        return errno;
    return 0;
}

static guint32
apply_op(KrFlagsOp op, guint32 cur, guint32 bits)
{
    switch (op) {
    case KR_FLAGS_ADD:
        return cur | bits;
    case KR_FLAGS_REMOVE:
        return cur & ~bits;
    default:
        return bits;
    }
}

static gboolean
mb_set_flags(KrMailbox *mb, const guint32 *uids, guint n, KrFlagsOp op, guint32 flags,
             const char *const *keywords, guint64 unchanged_since, GArray *failed_r, GError **error)
{
    if (!check_writable(mb, error))
        return FALSE;
    flags &= KR_FLAG_ALL;
    flush_cache(mb);
    int lk = lock_folder(mb, error);
    if (lk < 0)
        return FALSE;
    MdIndex *idx = &mb->f->idx;
    gboolean ok = TRUE;
    g_autoptr(GArray) done = g_array_new(FALSE, FALSE, sizeof(guint32));
    for (int round = 0; round < 2 && ok; round++) {
        MdTxn txn;
        md_txn_begin(&txn, idx);
        guint32 kwbits;
        if (!md_keywords_bits(idx, &txn, keywords, &kwbits, error)) {
            md_txn_free(&txn);
            ok = FALSE;
            break;
        }
        /* K records first, so the bits mean something when applied. */
        gboolean retry = FALSE;
        for (guint i = 0; i < n; i++) {
            MdEntry *e = md_index_find(idx, uids[i]);
            if (!e || !mb_seq_of_uid(mb, uids[i]))
                continue;
            if (unchanged_since && e->modseq > unchanged_since) {
                if (failed_r && round == 0)
                    g_array_append_val(failed_r, e->uid);
                continue;
            }
            guint32 nf = apply_op(op, e->flags, flags);
            guint32 nk = apply_op(op, e->keywords, kwbits);
            if (nf == e->flags && nk == e->keywords)
                continue;
            int err = rename_for_flags(mb, e, nf, nk);
            if (err == ENOENT && round == 0) {
                retry = TRUE;
                continue;
            }
            if (err) {
                g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED,
                            "cannot rename message %u: %s", e->uid, g_strerror(err));
                ok = FALSE;
                break;
            }
            md_txn_flags(&txn, e, nf, nk, FALSE, NULL);
            g_array_append_val(done, e->uid);
        }
        GError *cerr = NULL;
        if (!md_index_commit(idx, mb->fds.dir, &txn, &cerr)) {
            if (ok)
                g_propagate_error(error, cerr);
            else
                g_error_free(cerr);
            ok = FALSE;
        }
        gboolean any = txn.n > 0;
        md_txn_free(&txn);
        if (any)
            md_folder_changed(mb->f);
        if (!ok || !retry)
            break;
        /* Some files were not where the index said: rescan, redo those. */
        if (!md_folder_sync_locked(mb->f, &mb->fds, TRUE, error))
            ok = FALSE;
    }
    if (ok) {
        /* Our own changes go into the view now (sync won't report them). */
        if (done->len)
            view_own(mb);
        for (guint i = 0; i < done->len; i++) {
            guint32 uid = g_array_index(done, guint32, i);
            guint32 seq = mb_seq_of_uid(mb, uid);
            MdEntry *e = md_index_find(idx, uid);
            if (!seq || !e)
                continue;
            KrMailboxMsg *m = &g_array_index(mb->view, KrMailboxMsg, seq - 1);
            mb->unseen -= !(m->flags & KR_FLAG_SEEN);
            mb->deleted -= (m->flags & KR_FLAG_DELETED) != 0;
            msg_from_entry(m, e);
            mb->unseen += !(m->flags & KR_FLAG_SEEN);
            mb->deleted += (m->flags & KR_FLAG_DELETED) != 0;
        }
        if (done->len)
            mb->first_unseen = G_MAXUINT32; /* found again when asked */
        if (idx->keywords->len != g_strv_length(mb->keywords)) {
            /* The view does not have others' changes yet: not synced. */
            guint64 v = mb->synced_version, mv = mb->synced_msgs_version;
            take_counters(mb);
            mb->synced_version = v;
            mb->synced_msgs_version = mv;
        }
        mb->highestmodseq = idx->highestmodseq;
    }
    md_index_maybe_compact(idx, mb->fds.dir, NULL);
    unlock_folder(mb, lk);
    return ok;
}

/* --- expunge ----------------------------------------------------------------------- */

static gboolean
mb_expunge(KrMailbox *mb, const guint32 *uids, guint n, gboolean only_deleted, GArray *expunged_r,
           GError **error)
{
    if (!check_writable(mb, error))
        return FALSE;
    flush_cache(mb);
    g_autoptr(GArray) want = g_array_new(FALSE, FALSE, sizeof(guint32));
    if (uids) {
        g_array_append_vals(want, uids, n);
    } else {
        for (guint i = 0; i < mb->view->len; i++)
            g_array_append_val(want, g_array_index(mb->view, KrMailboxMsg, i).uid);
    }
    int lk = lock_folder(mb, error);
    if (lk < 0)
        return FALSE;
    MdIndex *idx = &mb->f->idx;
    gboolean ok = TRUE;
    for (int round = 0; round < 2 && ok; round++) {
        MdTxn txn;
        md_txn_begin(&txn, idx);
        g_autoptr(GArray) retry = g_array_new(FALSE, FALSE, sizeof(guint32));
        for (guint i = 0; i < want->len; i++) {
            guint32 uid = g_array_index(want, guint32, i);
            MdEntry *e = md_index_find(idx, uid);
            if (!e || (only_deleted && !(e->flags & KR_FLAG_DELETED)))
                continue;
            g_autofree char *path = md_entry_path(e);
            if (unlinkat(mb->fds.dir, path, 0) < 0) {
                if (errno == ENOENT && round == 0) {
                    g_array_append_val(retry, uid);
                    continue;
                }
                if (errno != ENOENT) {
                    g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED,
                                "cannot remove message %u: %s", uid, g_strerror(errno));
                    ok = FALSE;
                    break;
                }
            }
            md_txn_expunge(&txn, uid);
            if (expunged_r)
                g_array_append_val(expunged_r, uid);
        }
        if (txn.n > 0 && fsync(mb->fds.cur) < 0) {
            /* best effort: the files are gone from the names anyway */
        }
        GError *cerr = NULL;
        if (!md_index_commit(idx, mb->fds.dir, &txn, &cerr)) {
            if (ok)
                g_propagate_error(error, cerr);
            else
                g_error_free(cerr);
            ok = FALSE;
        }
        gboolean any = txn.n > 0;
        md_txn_free(&txn);
        if (any)
            md_folder_changed(mb->f);
        if (!ok || retry->len == 0)
            break;
        /* Not where the index said: a rescan finds the new names (or
         * notes them gone, which we then report as expunged too). */
        GArray *before = g_array_new(FALSE, FALSE, sizeof(guint32));
        for (guint i = 0; i < retry->len; i++)
            if (md_index_find(idx, g_array_index(retry, guint32, i)))
                g_array_append_val(before, g_array_index(retry, guint32, i));
        if (!md_folder_sync_locked(mb->f, &mb->fds, TRUE, error))
            ok = FALSE;
        for (guint i = 0; ok && i < before->len; i++) {
            guint32 uid = g_array_index(before, guint32, i);
            if (!md_index_find(idx, uid) && expunged_r)
                g_array_append_val(expunged_r, uid);
        }
        g_array_unref(before);
        g_array_set_size(want, 0);
        g_array_append_vals(want, retry->data, retry->len);
    }
    md_index_maybe_compact(idx, mb->fds.dir, NULL);
    unlock_folder(mb, lk);
    return ok;
}

/* --- copy / move ------------------------------------------------------------------- */

typedef struct {
    guint32 src_uid;
    char *src_path;
    char *tmp_name; /* name in dest tmp/ (copy) */
    guint32 flags;
    GPtrArray *kwnames;
    gint64 size, vsize, date;
    GBytes *blob;
} CopyItem;

static void
copy_item_clear(CopyItem *c)
{
    g_free(c->src_path);
    g_free(c->tmp_name);
    if (c->kwnames)
        g_ptr_array_unref(c->kwnames);
    if (c->blob)
        g_bytes_unref(c->blob);
}

static gboolean mb_cache_get(KrMailbox *mb, guint32 uid, GBytes **blob_r, GError **error);

static gboolean
mb_copy(KrMailbox *mb, const guint32 *uids, guint n, const char *dest, gboolean move,
        guint32 *dest_uidvalidity_r, GArray *src_uids_r, GArray *dest_uids_r, GError **error)
{
    if (move && !check_writable(mb, error))
        return FALSE;
    const char *dfolder;
    if (!md_folder_name(dest, &dfolder, error))
        return FALSE;
    if (g_strcmp0(dfolder, mb->folder) == 0 && move) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME,
                    "cannot move messages to the folder they are in");
        return FALSE;
    }
    flush_cache(mb);
    /* 1. What to copy, from the source (its lock only). */
    GArray *items = g_array_new(FALSE, TRUE, sizeof(CopyItem));
    g_array_set_clear_func(items, (GDestroyNotify)copy_item_clear);
    g_mutex_lock(&mb->f->lock);
    MdIndex *sidx = &mb->f->idx;
    for (guint i = 0; i < n; i++) {
        MdEntry *e = md_index_find(sidx, uids[i]);
        if (!e || !mb_seq_of_uid(mb, uids[i]))
            continue;
        CopyItem c = {.src_uid = e->uid,
                      .flags = e->flags,
                      .size = e->size,
                      .vsize = e->vsize,
                      .date = e->date};
        c.src_path = md_entry_path(e);
        c.kwnames = g_ptr_array_new_with_free_func(g_free);
        for (guint k = 0; k < sidx->keywords->len; k++)
            if (e->keywords & (1u << k))
                g_ptr_array_add(c.kwnames, g_strdup(sidx->keywords->pdata[k]));
        g_ptr_array_add(c.kwnames, NULL);
        g_array_append_val(items, c);
    }
    g_mutex_unlock(&mb->f->lock);
    for (guint i = 0; i < items->len; i++) {
        CopyItem *c = &g_array_index(items, CopyItem, i);
        mb_cache_get(mb, c->src_uid, &c->blob, NULL);
    }

    /* 2. Into the destination, under its locks. */
    MaildirFds dfds;
    if (!md_open_fds(mb->md, mb->user, dfolder, dfolder == NULL, &dfds, error)) {
        g_array_unref(items);
        return FALSE;
    }
    g_autofree char *dkey = md_folder_key(mb->user, dfolder, NULL);
    MdFolder *df = md_folder_get(dkey, &dfds);
    g_mutex_lock(&df->lock);
    gboolean ok = FALSE;
    int lk = md_index_lock(dfds.dir, error);
    g_autoptr(GArray) moved = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_autoptr(GArray) new_uids = g_array_new(FALSE, FALSE, sizeof(guint32));
    guint32 dvalidity = 0;
    if (lk >= 0 && md_folder_sync_locked(df, &dfds, FALSE, error)) {
        MdIndex *didx = &df->idx;
        MdTxn txn;
        md_txn_begin(&txn, didx);
        ok = TRUE;
        /* Keywords first: the file names need the destination's letters. */
        guint32 *kwbits = g_new0(guint32, items->len + 1);
        for (guint i = 0; ok && i < items->len; i++) {
            CopyItem *c = &g_array_index(items, CopyItem, i);
            ok = md_keywords_bits(didx, &txn, (const char *const *)c->kwnames->pdata, &kwbits[i],
                                  error);
            if (ok && txn.n > 0) {
                /* apply K records now so later lookups see them */
                ok = md_index_commit(didx, dfds.dir, &txn, error);
                md_txn_free(&txn);
                md_txn_begin(&txn, didx);
            }
        }
        for (guint i = 0; ok && i < items->len; i++) {
            CopyItem *c = &g_array_index(items, CopyItem, i);
            g_autofree char *uniq = maildir_unique_name(mb->md->host);
            g_autofree char *base = g_strdup_printf("%s,S=%" G_GINT64_FORMAT ",W=%" G_GINT64_FORMAT,
                                                    uniq, c->size, c->vsize);
            g_autofree char *name = md_cur_name(base, c->flags, kwbits[i]);
            int r;
            if (move)
                r = renameat2(mb->fds.dir, c->src_path, dfds.cur, name, RENAME_NOREPLACE);
            else
                r = linkat(mb->fds.dir, c->src_path, dfds.cur, name, 0);
            if (r < 0) {
                if (errno == ENOENT)
                    continue; /* expunged meanwhile: not copied */
                g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED,
                            "cannot copy message %u: %s", c->src_uid, g_strerror(errno));
                ok = FALSE;
                break;
            }
            guint32 uid = md_txn_add(&txn, c->flags, kwbits[i], c->size, c->vsize, c->date, FALSE,
                                     base, NULL);
            g_array_append_val(new_uids, uid);
            g_array_append_val(moved, c->src_uid);
        }
        g_free(kwbits);
        if (txn.n > 0 && fsync(dfds.cur) < 0) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot fsync: %s",
                        g_strerror(errno));
            ok = FALSE;
        }
        GError *cerr = NULL;
        if (!md_index_commit(didx, dfds.dir, &txn, &cerr)) {
            if (ok)
                g_propagate_error(error, cerr);
            else
                g_error_free(cerr);
            ok = FALSE;
        }
        if (txn.n > 0)
            md_folder_changed(df);
        md_txn_free(&txn);
        dvalidity = didx->uidvalidity;
        if (dest_uidvalidity_r)
            *dest_uidvalidity_r = didx->uidvalidity;
    }
    if (lk >= 0)
        md_index_unlock(lk);
    g_mutex_unlock(&df->lock);

    /* 3. Cached blobs go along (best effort). */
    if (moved->len > 0) {
        MdCache dc;
        md_cache_init(&dc);
        for (guint i = 0, k = 0; i < items->len && k < moved->len; i++) {
            CopyItem *c = &g_array_index(items, CopyItem, i);
            if (c->src_uid != g_array_index(moved, guint32, k))
                continue;
            if (c->blob)
                md_cache_set(&dc, df, &dfds, dvalidity, g_array_index(new_uids, guint32, k),
                             c->blob, NULL);
            k++;
        }
        md_cache_flush(&dc, df, &dfds, NULL);
        md_cache_clear(&dc);
    }
    md_folder_put(df);
    maildir_fds_close(&dfds);

    /* 4. A move takes the messages out of the source. */
    if (move && moved->len > 0) {
        GError *xerr = NULL;
        int slk = lock_folder(mb, &xerr);
        if (slk >= 0) {
            MdTxn txn;
            md_txn_begin(&txn, &mb->f->idx);
            for (guint i = 0; i < moved->len; i++)
                if (md_index_find(&mb->f->idx, g_array_index(moved, guint32, i)))
                    md_txn_expunge(&txn, g_array_index(moved, guint32, i));
            if (!md_index_commit(&mb->f->idx, mb->fds.dir, &txn, &xerr))
                g_warning("%s: %s", mb->f->key, xerr->message);
            if (txn.n > 0)
                md_folder_changed(mb->f);
            md_txn_free(&txn);
            unlock_folder(mb, slk);
        }
        g_clear_error(&xerr);
    }
    if (src_uids_r)
        g_array_append_vals(src_uids_r, moved->data, moved->len);
    if (dest_uids_r)
        g_array_append_vals(dest_uids_r, new_uids->data, new_uids->len);
    g_array_unref(items);
    return ok;
}

/* --- cached blobs ------------------------------------------------------------------- */

static void
mb_release(KrMailbox *mb)
{
    flush_cache(mb);
    md_cache_forget_file(&mb->cache);
}

static gboolean
mb_cache_get(KrMailbox *mb, guint32 uid, GBytes **blob_r, GError **error)
{
    return md_cache_get(&mb->cache, mb->f, &mb->fds, uid, blob_r);
}

static gboolean
mb_cache_set(KrMailbox *mb, guint32 uid, GBytes *blob, GError **error)
{
    return md_cache_set(&mb->cache, mb->f, &mb->fds, mb->uidvalidity, uid, blob, error);
}

const KrMailboxOps maildir_mailbox_ops = {
    .struct_size = sizeof(KrMailboxOps),
    .separator = ".",
    .list = md_list,
    .create = md_create,
    .remove = md_remove,
    .rename = md_rename,
    .subscriptions = md_subscriptions,
    .subscribe = md_subscribe,
    .status = md_status,
    .append = md_append,
    .open = mb_open,
    .close = mb_close,
    .sync = mb_sync,
    .count = mb_count,
    .msg = mb_msg,
    .seq_of_uid = mb_seq_of_uid,
    .get_status = mb_get_status,
    .keywords = mb_keywords,
    .readonly = mb_readonly,
    .open_content = mb_open_content,
    .set_flags = mb_set_flags,
    .expunge = mb_expunge,
    .copy = mb_copy,
    .cache_get = mb_cache_get,
    .cache_set = mb_cache_set,
    .change_counter = mb_change_counter,
    .watch = mb_watch,
    .release = mb_release,
    .first_unseen = mb_first_unseen,
};
