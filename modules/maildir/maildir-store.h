/* SPDX-License-Identifier: MIT */
/*
 * maildir-store.h - the Maildir store's mailbox side (kr-store.h),
 * shared between its files.
 *
 *   Maildir                       the store's self (maildir.c)
 *   maildir_mailbox_ops           the KrMailboxOps vtable (maildir-mailbox.c)
 *   md_notify_delivery(md, user, folder)
 *                                 a delivery landed: wake sessions
 *
 *   maildir-folder.c   MdFolder: the process-wide, shared, cached state
 *                      of one folder (its index, change counter,
 *                      watchers), and the directory scan that keeps the
 *                      index in step with the files
 *   maildir-mailbox.c  sessions (KrMailbox): open, view, sync, flags,
 *                      expunge, content, copy/move, cached blobs
 *   maildir-folders.c  folder list, create, delete, rename,
 *                      subscriptions, status, append
 *   maildir-cache.c    a session's cached-blob reads (kept-open file,
 *                      read-ahead window) and batched writes
 *
 * LOCKING (in this order, never two folders at once)
 *   1. MdFolder.lock (GMutex): one thread at a time works on a folder's
 *      in-memory index in this process;
 *   2. kurir-index.lock (flock): one writer at a time per folder across
 *      processes; held while the index is appended to or rewritten and
 *      while files are renamed or removed for it.
 *   The folder table has its own mutex, taken alone and briefly.
 */
#ifndef KR_MAILDIR_STORE_H
#define KR_MAILDIR_STORE_H

#include "maildir-index.h"
#include "maildir-path.h"

typedef struct {
    char *mail_dir; /* DATA_DIR/mail */
    char *host;     /* host part of file names, escaped */
} Maildir;

typedef struct MdFolder MdFolder;

struct MdFolder {
    char *key; /* "domain/local" or "domain/local/.folder" */
    gint refs; /* under the table mutex */
    gboolean in_table;
    GMutex lock;
    MdIndex idx;
    dev_t dev; /* identity of the folder directory */
    ino_t ino;
    gint dirty;      /* atomic: rescan the directories at the next sync */
    guint64 changes; /* atomic: change counter */
    GMutex watch_lock;
    GList *watchers; /* KrMailbox * with a watch set */
    /* Under lock: the view sessions opened at idx.msgs_version ==
     * snap_version share (KrMailboxMsg, holding guid refs; GArray
     * refcounted). Cached-blob and counter records do not change it. */
    GArray *snap;
    guint64 snap_version;
    guint32 snap_uidvalidity;
    guint32 snap_unseen, snap_deleted; /* counts of snap (get_status) */
    guint32 snap_first_unseen;         /* its first message without \Seen */
    gint64 snap_size;
};

extern const KrMailboxOps maildir_mailbox_ops;

/* maildir-cache.c: one session's cached-blob state (see there). Used by
 * one thread at a time, like its session. */
#define MD_CACHE_BLOB_MAX (16u * 1024 * 1024) /* larger: refused / a miss */
typedef struct {
    GArray *pending;         /* blobs set but not written yet, in order */
    GHashTable *pending_pos; /* uid -> index in pending + 1 */
    gsize pending_bytes;
    guint32 uidvalidity; /* of the pending UIDs */
    int fd;              /* kurir-cache.<fd_gen>, read-only; -1 */
    guint32 fd_gen;
    GBytes *win; /* read-ahead window: the file's bytes at win_off */
    gint64 win_off;
    gsize win_size; /* bytes the next window read asks for */
    guint win_hits; /* reads served by the current window */
} MdCache;

void md_cache_init(MdCache *c);
void md_cache_clear(MdCache *c);
void md_cache_forget_file(MdCache *c);
gboolean md_cache_get(MdCache *c, MdFolder *f, const MaildirFds *fds, guint32 uid, GBytes **blob_r);
gboolean md_cache_set(MdCache *c, MdFolder *f, const MaildirFds *fds, guint32 uidvalidity,
                      guint32 uid, GBytes *blob, GError **error);
/* Write the queued blobs (takes f->lock and the index lock). */
gboolean md_cache_flush(MdCache *c, MdFolder *f, const MaildirFds *fds, GError **error);

/* maildir-folder.c */
char *md_folder_key(const char *user, const char *folder, GError **error);
MdFolder *md_folder_get(const char *key, const MaildirFds *fds);
void md_folder_put(MdFolder *f);
/* Forget cached folders whose key is key or starts with key + "." (a
 * folder deleted or renamed): later opens read from disk again. */
void md_folder_forget(const char *key);
void md_folder_changed(MdFolder *f);
void md_notify_delivery(Maildir *md, const char *user, const char *folder);
/* Bring f->idx up to date with the index file and, if they may have
 * changed (or force), the directories. Caller holds f->lock only. */
gboolean md_folder_sync(MdFolder *f, const MaildirFds *fds, gboolean force, GError **error);
/* The same, for a caller that already holds the index lock too: always
 * refreshes, rebuilds if needed, rescans if force or the directories
 * changed. *changed_r (may be NULL) tells whether anything moved. */
gboolean md_folder_sync_locked(MdFolder *f, const MaildirFds *fds, gboolean force, GError **error);
/* Size with CRLF line ends of an open file; -1 on error. size: the
 * file's stat size if known (a short read reaching it is taken as the
 * end, saving the read that would return 0), else -1. */
gint64 md_file_vsize(int fd, gint64 size);
/* The number in ",<key>=<digits>" of a file name's base; -1: none. */
gint64 md_name_field(const char *name, char key);

/* maildir-mailbox.c: helpers shared with maildir-folders.c */
/* Run the watch of session mb (a KrMailbox *); under f->watch_lock. */
void md_session_watch_fire(gpointer mb);
/* INBOX (any case) -> NULL; validates other names. */
gboolean md_folder_name(const char *name, const char **folder_r, GError **error);
/* maildir_open with errors mapped to KR_STORE_ERROR codes. */
gboolean md_open_fds(Maildir *md, const char *user, const char *folder, gboolean create,
                     MaildirFds *fds, GError **error);
/* Keyword names -> bits, adding K records to txn for new ones. */
gboolean md_keywords_bits(MdIndex *idx, MdTxn *txn, const char *const *names, guint32 *bits_r,
                          GError **error);

/* maildir-folders.c */
GPtrArray *md_list(gpointer self, const char *user, GError **error);
gboolean md_create(gpointer self, const char *user, const char *name, GError **error);
gboolean md_remove(gpointer self, const char *user, const char *name, GError **error);
gboolean md_rename(gpointer self, const char *user, const char *from, const char *to,
                   GError **error);
GPtrArray *md_subscriptions(gpointer self, const char *user, GError **error);
gboolean md_subscribe(gpointer self, const char *user, const char *name, gboolean on,
                      GError **error);
gboolean md_status(gpointer self, const char *user, const char *name, KrMailboxStatus *st_r,
                   GError **error);
gboolean md_append(gpointer self, const char *user, const char *name, const KrMailboxAppend *msg,
                   guint32 *uidvalidity_r, guint32 *uid_r, GError **error);
/* Write one message file into tmp/ (LF line ends, fsync'd, mtime =
 * date), returning its name there, size and vsize. */
char *md_write_tmp(Maildir *md, const MaildirFds *fds, const KrMailboxAppend *msg, gint64 *size_r,
                   gint64 *vsize_r, GError **error);

#endif
