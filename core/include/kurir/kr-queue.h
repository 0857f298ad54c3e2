/* SPDX-License-Identifier: MIT */
/*
 * kr-queue.h - durable queue files and queue directories.
 *
 * DATA_DIR/queue/{maildrop,incoming,active,deferred,hold,corrupt}/ hold
 * one file per message, named by its queue ID. The record format is
 * described in docs/queue-format.md and core/kr-qfile*.c. A file is
 * written under a temporary name (DIR/.tmp-ID), fsync'd, renamed to
 * DIR/ID and the directory fsync'd: a file with a visible name is always
 * complete. Recipient status slots are updated in place.
 *
 * Directory fsyncs are group-committed (kr-sync.h): concurrent commits
 * into one directory share one fsync.
 *
 * Blocking functions (marked B) do disk I/O with fsync: call them from a
 * worker thread (kr-worker.h), never the event loop. kr_msg_commit_async
 * does that for you.
 *
 *   kr_queue_dir_path(dir)             DATA_DIR/queue/<dir>
 *   kr_msg_new_spool(dir, error)       a new message being received
 *   kr_msg_new_spool_spare(dir)        the same from a pooled spare, or NULL
 *   kr_msg_commit(msg, dir, error)     B: write envelope, fsync, rename
 *   kr_msg_commit_async(...)           the same in a worker thread
 *   kr_msg_load(dir, id, error)        parse a queue file (B: reads)
 *   kr_msg_move(msg, dir, error)       B: to another queue dir (durable)
 *   kr_msg_move_lazy(msg, dir, error)  B: the same, but only the new name
 *                                      is made durable (see below)
 *   kr_msg_remove(msg, error)          B: unlink + dir fsync
 *   kr_msg_remove_lazy(msg, error)     B: remove, not synced (see below)
 *   kr_msg_rewrite_envelope(msg, err)  B: rewrite the envelope records
 *   kr_queue_list(dir)                 queue IDs present in dir
 *   kr_queue_sweep_spares()            B: remove spares (.spare-ID) left by
 *                                      an earlier run (the recovery scan)
 *   kr_queue_quarantine(dir, id, why)  B: move a bad file to corrupt/
 */
#ifndef KURIR_KR_QUEUE_H
#define KURIR_KR_QUEUE_H

#include <glib.h>
#include "kr-msg.h"

G_BEGIN_DECLS

typedef enum {
    KR_QUEUE_MAILDROP = 0,
    KR_QUEUE_INCOMING,
    KR_QUEUE_ACTIVE,
    KR_QUEUE_DEFERRED,
    KR_QUEUE_HOLD,
    KR_QUEUE_CORRUPT,
    KR_QUEUE_N_DIRS
} KrQueueDir;

#define KR_QUEUE_ID_LEN 14 /* characters in a queue ID */

KR_API const char *kr_queue_dir_name(KrQueueDir dir);
KR_API char *kr_queue_dir_path(KrQueueDir dir);
/* Parse "incoming" etc.; FALSE if unknown. */
KR_API gboolean kr_queue_dir_from_name(const char *name, KrQueueDir *dir_r);
/* TRUE if id has the shape of a queue ID (safe as a file name). */
KR_API gboolean kr_queue_id_valid(const char *id);
/* Which directory the message's file is in now. */
KR_API KrQueueDir kr_msg_queue_dir(const KrMsg *msg);

KR_API KrMsg *kr_msg_new_spool(KrQueueDir dir, GError **error);
/* The same, but only from a spare file the pool holds (a rename, no
 * inode allocation, no sync): cheap enough for the event loop. NULL, with
 * no error, when the pool is empty; then use kr_msg_new_spool in a worker. */
KR_API KrMsg *kr_msg_new_spool_spare(KrQueueDir dir);
KR_API gboolean kr_msg_commit(KrMsg *msg, KrQueueDir dir, GError **error);
typedef void (*KrCommitFunc)(KrMsg *msg, const GError *error, gpointer user_data);
KR_API void kr_msg_commit_async(KrMsg *msg, KrQueueDir dir, KrCommitFunc done, gpointer user_data);
/* Abandon an uncommitted spool: the temporary file is removed. */
KR_API void kr_msg_discard(KrMsg *msg);

KR_API KrMsg *kr_msg_load(KrQueueDir dir, const char *id, GError **error);
KR_API gboolean kr_msg_move(KrMsg *msg, KrQueueDir dir, GError **error);
KR_API gboolean kr_msg_remove(KrMsg *msg, GError **error);
/* Lazy variants, for when a crash may undo the step without harm:
 * kr_msg_move_lazy makes the new name durable before the old one goes
 * (so the file is never lost) but does not sync the old directory: after
 * a crash the file may be found under the old name, or both (the queue
 * manager's recovery scan keeps the newer). kr_msg_remove_lazy does not
 * make the removal durable: after a crash the file may come back, so its
 * deliveries are repeated (at-least-once). Use it for a file whose every
 * recipient is final, never to drop mail that was not delivered. It may
 * keep the file's inode (emptied, renamed DIR/.spare-ID) for a later
 * kr_msg_new_spool: the message's content cannot be read after it. */
KR_API gboolean kr_msg_move_lazy(KrMsg *msg, KrQueueDir dir, GError **error);
KR_API gboolean kr_msg_remove_lazy(KrMsg *msg, GError **error);
KR_API gboolean kr_msg_rewrite_envelope(KrMsg *msg, GError **error);
/* A new spool holding a copy of msg's logical content, no recipients,
 * for expansions and bounces. Blocking (copies the content). */
KR_API KrMsg *kr_msg_new_copy(KrMsg *msg, KrQueueDir dir, GError **error);

KR_API GPtrArray *kr_queue_list(KrQueueDir dir);
KR_API void kr_queue_quarantine(KrQueueDir dir, const char *id, const char *why);
/* Spares are emptied queue files kept for reuse (kr_msg_remove_lazy),
 * named DIR/.spare-ID; after a restart they belong to no one. Removes
 * them (but never one whose inode a queue file shares while the link
 * count says otherwise: a file system to check) and returns how many.
 * Call at start-up, before any spool is created. */
KR_API guint kr_queue_sweep_spares(void);

G_END_DECLS
#endif
