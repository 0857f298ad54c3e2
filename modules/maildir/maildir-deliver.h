/* SPDX-License-Identifier: MIT */
/*
 * maildir-deliver.h - deliver one message into a Maildir, durably.
 *
 *   maildir_host_part(hostname)            the host part of file names
 *   maildir_unique_name(host)              "<sec>.M<usec>P<pid>Q<n>.<host>"
 *   maildir_deliver(mail_dir, host, user, folder, msg, prefix, error)
 *                                          the store's deliver()
 *
 * maildir_deliver writes tmp/NAME (prefix, then the message with CRLF
 * turned into LF), fsyncs it, links it to new/NAME,S=<size on disk>,
 * removes tmp/NAME and fsyncs new/. Blocking: call it from a worker
 * thread. Any number may run at once (names are unique per process by
 * an atomic counter, across processes by pid, across hosts by name).
 *
 * Result: KR_STORE_OK once the file is durable in new/;
 * KR_STORE_TEMPFAIL for every I/O trouble (ENOSPC, EDQUOT, EIO, EACCES,
 * a symlink in the way ...: the queue keeps the message and retries);
 * KR_STORE_PERMFAIL only for a user or folder name that can never be a
 * mailbox (see maildir-path.h). Nothing is left in tmp/ on failure.
 */
#ifndef KR_MAILDIR_DELIVER_H
#define KR_MAILDIR_DELIVER_H

#include <kurir/kurir.h>

char *maildir_host_part(const char *hostname);
char *maildir_unique_name(const char *host);
KrStoreResult maildir_deliver(const char *mail_dir, const char *host, const char *user,
                              const char *folder, KrMsg *msg, const char *prefix, GError **error);

#endif
