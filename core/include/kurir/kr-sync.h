/* SPDX-License-Identifier: MIT */
/*
 * kr-sync.h - the durability barrier: group commit of directory fsyncs.
 *
 * A new name (rename, link, create) is durable only once its directory
 * has been fsync'd. When many workers add names to one directory at
 * once (queue commits into incoming/, deliveries into one Maildir's
 * new/), one fsync of the directory covers every name added before it
 * started. kr_sync_dir lets concurrent callers share it: a caller that
 * arrives while an fsync of that directory is running waits for the
 * NEXT one (which will cover its change), and one of the waiters runs
 * it for all of them (classic group commit). The caller's own change is
 * durable when the call returns TRUE; with N callers at once the
 * directory costs about one device flush per N.
 *
 *   kr_sync_dir(dirfd, error)        B: fsync the directory, shared with
 *                                    concurrent callers for the same one
 *   kr_sync_dir_path(path, error)    B: the same by path (the core keeps
 *                                    a descriptor per path open)
 *   kr_sync_stats(&calls, &fsyncs)   how many kr_sync_dir* calls and how
 *                                    many fsyncs they cost (tests, bench)
 *
 * Blocking (B): call from a worker thread (kr-worker.h), never the event
 * loop. A failed fsync is reported to every caller it should have
 * covered (and, conservatively, to those waiting for a later one).
 * Directories are told apart by device and inode, so different
 * descriptors (or paths) of one directory share its fsyncs.
 */
#ifndef KURIR_KR_SYNC_H
#define KURIR_KR_SYNC_H

#include <glib.h>

G_BEGIN_DECLS

__attribute__((visibility("default"))) gboolean kr_sync_dir(int dirfd, GError **error);
__attribute__((visibility("default"))) gboolean kr_sync_dir_path(const char *path, GError **error);
__attribute__((visibility("default"))) void kr_sync_stats(guint64 *calls_r, guint64 *fsyncs_r);

G_END_DECLS
#endif
