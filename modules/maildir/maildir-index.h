/* SPDX-License-Identifier: MIT */
/*
 * maildir-index.h - the per-folder index file of the Maildir store:
 * UIDVALIDITY, next UID, HIGHESTMODSEQ, UID <-> file, flags, keywords,
 * sizes, internal dates, cached-blob locations, and the directory state
 * of the last full scan. See maildir-index.c for the file format.
 *
 *   md_index_init / md_index_clear     an empty in-memory index
 *   md_index_refresh(idx, dirfd, err)  catch up with the file (full load
 *                                      if new or replaced, else the tail)
 *   md_index_find(idx, uid)            entry by UID (binary search)
 *   md_index_find_name(idx, name)      entry by file base name
 *   md_txn_*                           build records to append
 *   md_index_commit(idx, dirfd, txn)   append them (under the lock)
 *   md_index_apply_txn(idx, txn)       apply them in memory only
 *   md_index_write_full(idx, dirfd)    rewrite the file (compaction,
 *                                      rebuild), atomically by rename
 *   md_index_lock(dirfd, err)          the writers' lock (flock), an fd
 *   md_flags_from_info / md_info_from_flags   Maildir ":2," letters
 *
 * Writers hold md_index_lock() (and, in this process, the folder's mutex)
 * and call md_index_refresh() before building records, so their view of
 * UIDs and modseqs is current. Readers take no lock: the file is only
 * appended to (whole lines) or replaced by rename.
 */
#ifndef KR_MAILDIR_INDEX_H
#define KR_MAILDIR_INDEX_H

#include <kurir/kurir.h>
#include <sys/types.h>

#define MD_INDEX_FILE   "kurir-index"
#define MD_INDEX_LOCK   "kurir-index.lock"
#define MD_CACHE_PREFIX "kurir-cache."

typedef struct {
    guint32 uid;
    guint32 flags;    /* KR_FLAG_* */
    guint32 keywords; /* bits: index keywords */
    guint32 cache_len;
    guint64 modseq;
    gint64 size;      /* bytes on disk */
    gint64 vsize;     /* bytes with CRLF line ends */
    gint64 date;      /* internal date, unix seconds */
    gint64 cache_off; /* -1: no blob */
    char *base;       /* GRefString: the file name up to ':' (the guid) */
    char *odd_name;   /* GRefString: the whole file name when it is not
                       * base[:2,letters] in canonical form; else NULL */
    guint in_new : 1; /* file is in new/ (else cur/) */
    guint gone : 1;   /* expunged (removed at the end of a refresh) */
    guint seen : 1;   /* scratch for the directory scan */
} MdEntry;

typedef struct {
    guint32 uidvalidity;
    guint32 nextuid;
    guint64 highestmodseq;
    guint32 cache_gen;
    guint32 recent_uid;  /* first UID no session claimed as \Recent yet */
    GArray *entries;     /* MdEntry, ascending UID */
    GHashTable *by_name; /* base (borrowed from the entry) -> uid */
    GPtrArray *keywords; /* char *, index = bit */
    gint64 new_mtime;    /* ns; 0: must rescan */
    gint64 cur_mtime;
    /* file state */
    gboolean loaded;
    dev_t dev;
    ino_t ino;
    gint64 off;           /* bytes of the file applied */
    guint records;        /* records appended since the last full write */
    guint64 version;      /* bumped on every applied change (process local) */
    guint64 msgs_version; /* bumped when entries change (M, F, X, reset):
                           * what a session's view is built from */
} MdIndex;

typedef enum {
    MD_IDX_OK,
    MD_IDX_MISSING, /* no index file */
    MD_IDX_DAMAGED, /* unparsable: rebuild */
    MD_IDX_IOERR,   /* *error set */
} MdIdxResult;

/* Records to append, built under the lock after a refresh. */
typedef struct {
    GString *text;
    guint32 nextuid;    /* next UID to give */
    guint64 modseq;     /* the modseq of this transaction's changes */
    gboolean need_sync; /* M, X or K: fdatasync before returning */
    guint n;
} MdTxn;

void md_index_init(MdIndex *idx);
void md_index_clear(MdIndex *idx);
/* Forget everything (keeps uidvalidity for the +1 rule of a rebuild). */
void md_index_reset(MdIndex *idx);
MdIdxResult md_index_refresh(MdIndex *idx, int dirfd, GError **error);
MdEntry *md_index_find(MdIndex *idx, guint32 uid);
MdEntry *md_index_find_name(MdIndex *idx, const char *name);
int md_keyword_index(MdIndex *idx, const char *name);

void md_txn_begin(MdTxn *txn, MdIndex *idx);
void md_txn_free(MdTxn *txn);
guint32 md_txn_add(MdTxn *txn, guint32 flags, guint32 kw, gint64 size, gint64 vsize, gint64 date,
                   gboolean in_new, const char *base, const char *odd_name);
void md_txn_flags(MdTxn *txn, const MdEntry *e, guint32 flags, guint32 kw, gboolean in_new,
                  const char *odd_name);
void md_txn_expunge(MdTxn *txn, guint32 uid);
void md_txn_keyword(MdTxn *txn, guint idx, const char *name);
void md_txn_cache(MdTxn *txn, guint32 uid, gint64 off, guint32 len);
void md_txn_dirs(MdTxn *txn, gint64 new_mtime, gint64 cur_mtime);
/* UIDs below uid are claimed as \Recent (R record). */
void md_txn_recent(MdTxn *txn, guint32 uid);

/* Append txn to the file and apply it; caller holds the lock. */
gboolean md_index_commit(MdIndex *idx, int dirfd, MdTxn *txn, GError **error);
/* Apply txn in memory only (a rebuild, written whole afterwards). */
void md_index_apply_txn(MdIndex *idx, MdTxn *txn);
/* Write the whole index to a new file and rename it in place. */
gboolean md_index_write_full(MdIndex *idx, int dirfd, GError **error);
/* Compact when the appended records outnumber the messages (and the
 * cache file, if mostly garbage: md_cache_compact). */
gboolean md_index_maybe_compact(MdIndex *idx, int dirfd, GError **error);
/* maildir-cache.c: under the lock, index fresh: if the cache file is
 * mostly garbage, copy the live blobs into generation cache_gen + 1 and
 * point idx there (TRUE, *old_gen_r set); the caller writes the whole
 * index next. */
gboolean md_cache_compact(MdIndex *idx, int dirfd, guint32 *old_gen_r);

int md_index_lock(int dirfd, GError **error);
void md_index_unlock(int fd);

/* ":2,<letters>" info -> flags and keyword bits; the canonical file name
 * of an entry in cur/ (base:2,letters). */
void md_flags_from_info(const char *info, guint32 *flags_r, guint32 *kw_r);
char *md_cur_name(const char *base, guint32 flags, guint32 kw);
/* The file name of an entry, relative to the folder ("cur/..." or
 * "new/..."), newly allocated. */
char *md_entry_path(const MdEntry *e);
/* Base part of a file name: the bytes before ':' (its length). */
gsize md_base_len(const char *name);

#endif
