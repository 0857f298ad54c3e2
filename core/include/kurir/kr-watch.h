/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-watch.h - values loaded from files (maps, aliases tables), reloaded
 *   in a worker when a file changes
 *
 * SYNOPSIS
 *   #include <kurir/kr-watch.h>
 *
 *   KrWatch *kr_watch_new(void);
 *   guint kr_watch_add(KrWatch *w, const char *path, gpointer value,
 *                      const KrWatchFuncs *funcs, gpointer ud);
 *   gpointer kr_watch_get(KrWatch *w, guint i);
 *   void kr_watch_start(KrWatch *w, guint seconds);
 *   void kr_watch_check(KrWatch *w);
 *   void kr_watch_stop(KrWatch *w, void (*done)(gpointer token), gpointer token);
 *   void kr_watch_free(KrWatch *w);
 *   gboolean kr_watch_same_file(const struct stat *a, const struct stat *b);
 *
 * DESCRIPTION
 *   A KrWatch holds one reference-counted value per file, loaded by the
 *   module at start-up (kr_watch_add takes that first value). A check
 *   (kr_watch_check: every `seconds` once started, and on SIGHUP from the
 *   module's KrService.reload) runs in one worker job for all files: a
 *   file whose funcs->changed says so is loaded again with funcs->load;
 *   back on the main loop the new value replaces the old one and
 *   funcs->reloaded runs. A file that fails to load keeps its old value;
 *   funcs->failed reports it once: while stat(2) finds the same broken
 *   file (kr_watch_same_file) it is not loaded again. Only one check runs
 *   at a time; a check asked for meanwhile is dropped.
 *
 *   kr_watch_get returns a new reference (funcs->ref) to the current
 *   value of file i (the index kr_watch_add returned), from any thread;
 *   NULL for a NULL watch. kr_watch_stop ends the checks (a module's
 *   KrService.stop): done(token) runs once no check is running, maybe
 *   before kr_watch_stop returns. kr_watch_free drops the values (after
 *   a check that still runs, if one does).
 *
 *   kr_watch_same_file: the same device, inode, size, mtime and ctime
 *   (nanoseconds), so an edit in place or a rename over the file counts
 *   as a change.
 *
 *   Threads: kr_watch_get from any thread; everything else on the main
 *   loop. funcs->load and funcs->changed run in a worker thread (they may
 *   block); funcs->reloaded and funcs->failed on the main loop.
 *
 * SEE ALSO
 *   kr-worker.h, kr-file.h (kr_file_read_bounded: a load's file and its
 *   stat), modules/aliases/aliases.c, modules/rewrite/rewrite.c
 */
#ifndef KURIR_KR_WATCH_H
#define KURIR_KR_WATCH_H

#include <glib.h>
#include <stdint.h>
#include <sys/stat.h>

G_BEGIN_DECLS

#ifndef KR_API
#define KR_API __attribute__((visibility("default")))
#endif

typedef struct KrWatch KrWatch;

typedef struct KrWatchFuncs {
    uint32_t struct_size; /* sizeof(KrWatchFuncs) */
    /* Worker: the file at path loaded anew; NULL with error set if it
     * cannot be used (the current value stays). */
    gpointer (*load)(const char *path, gpointer ud, GError **error);
    /* Worker: does the file differ from the one value was loaded from? */
    gboolean (*changed)(gconstpointer value, gpointer ud);
    gpointer (*ref)(gpointer value);
    void (*unref)(gpointer value);
    /* Main loop, may be NULL: value is the current one now. */
    void (*reloaded)(gpointer value, gpointer ud);
    /* Main loop, may be NULL: loading failed (message: the error's), the
     * previous value stays. Once per broken version of the file. */
    void (*failed)(const char *message, gpointer ud);
    void *spare[4];
} KrWatchFuncs;

KR_API KrWatch *kr_watch_new(void);
/* Watch path with value (taken: one reference) as its current value;
 * path and funcs are copied (funcs->struct_size bytes of it). Call before
 * kr_watch_start. Returns the file's index. */
KR_API guint kr_watch_add(KrWatch *w, const char *path, gpointer value, const KrWatchFuncs *funcs,
                          gpointer ud);
KR_API gpointer kr_watch_get(KrWatch *w, guint i);
/* Check every `seconds` from now on (until kr_watch_stop). */
KR_API void kr_watch_start(KrWatch *w, guint seconds);
/* Check now, in a worker (unless a check runs or the watch stopped). */
KR_API void kr_watch_check(KrWatch *w);
KR_API void kr_watch_stop(KrWatch *w, void (*done)(gpointer token), gpointer token);
KR_API void kr_watch_free(KrWatch *w);
KR_API gboolean kr_watch_same_file(const struct stat *a, const struct stat *b);

G_END_DECLS
#endif
