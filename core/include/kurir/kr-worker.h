/* SPDX-License-Identifier: MIT */
/*
 * kr-worker.h - run blocking work (fsync, file I/O, password hashing, DNS)
 * in the core's worker threads, and get the answer back on the event loop.
 *
 *   kr_worker_run(work, done, data)   work(data) in a worker thread, then
 *                                     done(data) on the main loop
 *
 * work must not touch event-loop state; done may. The pool has
 * core.workers threads (default 8), so many commits proceed at once.
 */
#ifndef KURIR_KR_WORKER_H
#define KURIR_KR_WORKER_H

#include <glib.h>

G_BEGIN_DECLS

typedef void (*KrWorkFunc)(gpointer data);

__attribute__((visibility("default"))) void kr_worker_run(KrWorkFunc work, KrWorkFunc done,
                                                          gpointer data);

G_END_DECLS
#endif
