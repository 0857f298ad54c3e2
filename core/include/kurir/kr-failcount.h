/* SPDX-License-Identifier: MIT */
/*
 * kr-failcount.h - counting failures per key (a client address) in fixed
 * time windows, for "too many failed logins from this address" limits.
 * Shared by the protocol modules (SMTP AUTH, POP3, IMAP).
 *
 *   kr_failcount_new(window_s, max_keys)   a counter; window in seconds
 *   kr_failcount_free(fc)
 *   kr_failcount_add(fc, key)              one more failure for key
 *   kr_failcount_exceeded(fc, key, limit)  TRUE if key has at least limit
 *                                          failures in its current window
 *                                          (limit 0: never)
 *
 * A key's window starts at its first failure and lasts window_s seconds;
 * the next failure after that starts a new window. The table never holds
 * more than max_keys keys: expired ones are dropped first, and a full
 * table of fresh keys stops counting new keys (it never grows without
 * bound). Not thread-safe: use it from the event loop.
 */
#ifndef KURIR_KR_FAILCOUNT_H
#define KURIR_KR_FAILCOUNT_H

#include <glib.h>

G_BEGIN_DECLS

typedef struct KrFailCount KrFailCount;

__attribute__((visibility("default"))) KrFailCount *kr_failcount_new(guint window_s,
                                                                     guint max_keys);
__attribute__((visibility("default"))) void kr_failcount_free(KrFailCount *fc);
__attribute__((visibility("default"))) void kr_failcount_add(KrFailCount *fc, const char *key);
__attribute__((visibility("default"))) gboolean
kr_failcount_exceeded(KrFailCount *fc, const char *key, guint limit);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(KrFailCount, kr_failcount_free)

G_END_DECLS
#endif
