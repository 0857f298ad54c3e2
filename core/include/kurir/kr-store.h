/* SPDX-License-Identifier: MIT */
/*
 * kr-store.h - the mailbox API of a mail store: what POP3, IMAP and web
 * mail use to read and change a user's folders.
 *
 * A store module (modules/maildir) registers a KrStore (kr-registry.h)
 * whose `mailbox` member points to a KrMailboxOps vtable. A protocol
 * module finds it by name and checks it is there:
 *
 *     const KrStore *st = kr_store("maildir");
 *     const KrMailboxOps *ops = kr_store_mailbox_ops(st);   // NULL: none
 *
 * USERS AND FOLDERS
 *   `user` is the canonical address "local@domain" (as returned by
 *   kr_auth_check_async). Folder names are UTF-8, hierarchical with the
 *   store's separator (ops->separator, "." for Maildir++); "INBOX" (any
 *   case) is the inbox and always exists. A store refuses names it cannot
 *   hold safely (KR_STORE_ERROR_INVALID_NAME): for Maildir, no "/", no
 *   "..", no control characters, no leading or trailing separator. IMAP
 *   converts modified UTF-7 to UTF-8 before calling.
 *
 * SESSIONS AND THE VIEW
 *   open() returns a KrMailbox: one session's handle on one folder. The
 *   session has a *view*: the folder's messages in UID order as of the
 *   last open()/sync(); message sequence numbers (1-based) index the
 *   view. The view changes only when the session calls sync() (new
 *   messages, expunges and flag changes made by others are reported then,
 *   as IMAP needs), or by the session's own set_flags() (applied at once,
 *   not reported again by sync). A POP3 session simply never syncs: its
 *   view is the maildrop as of login.
 *
 *   Messages have: a UID (strictly ascending, never reused while the
 *   UIDVALIDITY stays the same), flags (KR_FLAG_*), keywords (bit i =
 *   keyword i of keywords(); a store holds at most KR_STORE_MAX_KEYWORDS
 *   per folder), a MODSEQ (RFC 7162: raised by every change of the
 *   message; the folder's HIGHESTMODSEQ is the largest ever given,
 *   expunges included), the size in octets with CRLF line ends
 *   (RFC822.SIZE, POP3 sizes), the internal date, and a guid: a string
 *   unique in the folder, printable ASCII without spaces, that stays the
 *   same for the message's life in that folder, even if the store's index
 *   is rebuilt (and so the UIDVALIDITY changes). POP3 UIDL uses it.
 *
 *   Content: open_content() gives a file descriptor on the stored bytes.
 *   Line ends in the file may be LF or CRLF; readers send them as CRLF
 *   (kr_store_crlf() below converts), and `size` counts them as CRLF.
 *
 *   Cached fields: every message has one opaque blob slot (cache_get /
 *   cache_set) that the store keeps next to its index and drops with the
 *   message, so IMAP can keep ENVELOPE, BODYSTRUCTURE and chosen headers
 *   and never parse a message file twice. The store does not interpret
 *   it; put a version tag in it.
 *
 * CHANGES FROM OTHERS
 *   change_counter(mb) is a cheap, non-blocking number that moves whenever
 *   this process changes the folder (another session, a delivery through
 *   the store). watch(mb, func, ud) calls func(ud) right after such a
 *   change, from whatever thread made it (use g_main_context_invoke or
 *   g_idle_add to get to the loop). Changes made outside the process
 *   (another program writing the Maildir) are found by sync(); an IMAP
 *   IDLE should also sync every few seconds (30 s is plenty) for them.
 *
 * BLOCKING AND THREADS
 *   Calls marked (blocking) do file I/O: make them from a worker thread
 *   (kr_worker_run), never on the event loop. Calls marked (fast) only
 *   read the session's view in memory and may be made on the loop.
 *   The store is thread-safe across sessions: any number of sessions,
 *   deliveries and other processes may work on one folder at once; the
 *   store serializes what must be (a per-folder lock in the process, a
 *   file lock between processes) and readers never see a half-written
 *   index. One KrMailbox, however, is used by one thread at a time: the
 *   caller keeps at most one blocking call per session in flight and
 *   calls the fast getters only while none is. Exception: open_content()
 *   and cache_get() leave the view alone, so the fast getters may be used
 *   while they run (e.g. POP3 reads the next messages ahead while it
 *   answers LIST). Pointers returned by the fast getters stay valid until
 *   the next blocking call on the session that changes the view (sync,
 *   set_flags, expunge, copy).
 *
 * ERRORS
 *   Calls that can fail return FALSE/NULL with a GError in the
 *   KR_STORE_ERROR domain (codes below). KR_STORE_ERROR_FAILED is an I/O
 *   or temporary problem (tell the client to try later);
 *   KR_STORE_ERROR_UIDVALIDITY from sync() means the folder's UIDs were
 *   reset (index lost): the session cannot go on (IMAP: BYE).
 *
 * VERSIONING
 *   KrMailboxOps starts with struct_size; fields are only ever appended
 *   (in the spare slots). A caller checks a field is inside struct_size
 *   (KR_STORE_HAS_OP) before using a field newer than the first version.
 */
#ifndef KURIR_KR_STORE_H
#define KURIR_KR_STORE_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

G_BEGIN_DECLS

/* --- errors ---------------------------------------------------------- */
typedef enum {
    KR_STORE_ERROR_FAILED,       /* I/O or other temporary trouble */
    KR_STORE_ERROR_NOT_FOUND,    /* no such folder */
    KR_STORE_ERROR_EXISTS,       /* folder already exists */
    KR_STORE_ERROR_INVALID_NAME, /* a name the store cannot hold */
    KR_STORE_ERROR_IN_USE,       /* exclusive open: another session has it */
    KR_STORE_ERROR_NO_MESSAGE,   /* the UID is not (or no longer) there */
    KR_STORE_ERROR_LIMIT,        /* too many keywords, too large */
    KR_STORE_ERROR_NOT_SUPPORTED,
    KR_STORE_ERROR_UIDVALIDITY, /* sync: UIDs were reset; end the session */
    KR_STORE_ERROR_READONLY,    /* session opened read-only */
} KrStoreError;

static inline GQuark
kr_store_error_quark(void)
{
    return g_quark_from_static_string("kr-store-error-quark");
}
#define KR_STORE_ERROR (kr_store_error_quark())

/* --- messages -------------------------------------------------------- */
enum {
    KR_FLAG_SEEN = 1 << 0,     /* \Seen     (Maildir S) */
    KR_FLAG_ANSWERED = 1 << 1, /* \Answered (Maildir R) */
    KR_FLAG_FLAGGED = 1 << 2,  /* \Flagged  (Maildir F) */
    KR_FLAG_DELETED = 1 << 3,  /* \Deleted  (Maildir T) */
    KR_FLAG_DRAFT = 1 << 4,    /* \Draft    (Maildir D) */
    KR_FLAG_FORWARDED = 1 << 5, /* $Forwarded (Maildir P, "passed") */
    /* \Recent (RFC 3501): set in a session's view, never stored, never
     * changed by set_flags(). A message is recent in exactly one session:
     * the first non-read-only session to see it (open or sync) claims it;
     * read-only sessions see it recent only if no session claimed it yet,
     * without claiming it. Not part of KR_FLAG_ALL. */
    KR_FLAG_RECENT = 1 << 6
};
#define KR_FLAG_ALL           0x3fu
#define KR_STORE_MAX_KEYWORDS 26

typedef struct KrMailboxMsg {
    guint32 uid;
    guint32 flags;    /* KR_FLAG_* */
    guint32 keywords; /* bit i: keywords(mb)[i] */
    guint32 reserved;
    guint64 modseq;
    gint64 size;          /* octets, line ends counted as CRLF */
    gint64 internal_date; /* unix seconds */
    const char *guid;     /* see above; valid while the message is in the view */
} KrMailboxMsg;

typedef struct KrMailboxStatus {
    guint32 messages;
    guint32 unseen; /* messages without \Seen */
    guint32 deleted;
    guint32 uidvalidity;
    guint32 uidnext;
    guint64 highestmodseq;
    gint64 size; /* sum of message sizes (RFC 8438 STATUS SIZE) */
} KrMailboxStatus;

/* What sync() found since the session's last open/sync. The arrays are
 * owned by the struct: kr_mailbox_changes_clear() frees them. */
typedef struct KrMailboxChanges {
    /* Sequence numbers (in the view before the sync) of expunged
     * messages, descending, so that "* N EXPUNGE" can be sent in this
     * order; and their UIDs, ascending (QRESYNC VANISHED). guint32. */
    GArray *expunged_seqs;
    GArray *expunged_uids;
    /* Sequence numbers (in the view after the sync) whose flags or
     * keywords were changed by someone else, ascending. guint32. */
    GArray *changed_seqs;
    guint32 new_messages;      /* appended at the end of the view */
    guint32 exists;            /* messages in the view now */
    gboolean keywords_changed; /* keywords(mb) grew: resend FLAGS */
} KrMailboxChanges;

static inline void
kr_mailbox_changes_clear(KrMailboxChanges *c)
{
    if (c->expunged_seqs)
        g_array_unref(c->expunged_seqs);
    if (c->expunged_uids)
        g_array_unref(c->expunged_uids);
    if (c->changed_seqs)
        g_array_unref(c->changed_seqs);
    memset(c, 0, sizeof *c);
}

/* open() flags */
enum {
    KR_MAILBOX_READONLY = 1 << 0,  /* EXAMINE: changes refused */
    KR_MAILBOX_EXCLUSIVE = 1 << 1, /* POP3 maildrop lock: a second exclusive
                                    * open of the folder (in any process)
                                    * fails with KR_STORE_ERROR_IN_USE until
                                    * this session is closed */
    KR_MAILBOX_NO_RECENT = 1 << 2, /* claim no \Recent messages (POP3): the
                                    * session sees them as a read-only one
                                    * does, and leaves them to IMAP */
};

typedef enum {
    KR_FLAGS_ADD,     /* +FLAGS */
    KR_FLAGS_REMOVE,  /* -FLAGS */
    KR_FLAGS_REPLACE, /* FLAGS */
} KrFlagsOp;

/* A message to append. Content: `data`/`len`, or when data is NULL the
 * bytes of `fd` from its current offset to EOF (the store reads it, does
 * not close it). CRLF or LF line ends are both fine. */
typedef struct KrMailboxAppend {
    const void *data;
    gsize len;
    int fd;
    guint32 flags;
    const char *const *keywords; /* NULL-terminated, may be NULL */
    gint64 internal_date;        /* unix seconds; 0: now */
} KrMailboxAppend;

typedef struct KrMailbox KrMailbox; /* one session on one folder (opaque) */
typedef void (*KrMailboxWatchFunc)(gpointer ud);

typedef struct KrMailboxOps {
    uint32_t struct_size;  /* sizeof(KrMailboxOps) the store was built with */
    const char *separator; /* hierarchy separator in folder names, "." */

    /* --- folders (blocking); self is the KrStore's self ---------------- */
    /* Every folder of user, "INBOX" first, then sorted; g_free'd strings
     * in a GPtrArray with a free func. */
    GPtrArray *(*list)(gpointer self, const char *user, GError **error);
    gboolean (*create)(gpointer self, const char *user, const char *name, GError **error);
    /* Delete a folder and its messages (not its children); not INBOX. */
    gboolean (*remove)(gpointer self, const char *user, const char *name, GError **error);
    /* Rename a folder and its children (to must not exist); not INBOX. */
    gboolean (*rename)(gpointer self, const char *user, const char *from, const char *to,
                       GError **error);
    /* Subscribed names (IMAP LSUB); and subscribe (on) / unsubscribe. */
    GPtrArray *(*subscriptions)(gpointer self, const char *user, GError **error);
    gboolean (*subscribe)(gpointer self, const char *user, const char *name, gboolean on,
                          GError **error);
    /* STATUS of a folder without keeping a session. */
    gboolean (*status)(gpointer self, const char *user, const char *name, KrMailboxStatus *st_r,
                       GError **error);
    /* Append one message to a folder (IMAP APPEND, UIDPLUS): durable on
     * TRUE, with its UID and the folder's UIDVALIDITY. */
    gboolean (*append)(gpointer self, const char *user, const char *name,
                       const KrMailboxAppend *msg, guint32 *uidvalidity_r, guint32 *uid_r,
                       GError **error);

    /* --- sessions ------------------------------------------------------ */
    /* (blocking) Open a folder (INBOX is created if missing); the view is
     * the folder now. flags: KR_MAILBOX_*. */
    KrMailbox *(*open)(gpointer self, const char *user, const char *name, unsigned flags,
                       GError **error);
    /* (blocking) End the session; releases an exclusive lock. NULL ok. */
    void (*close)(KrMailbox *mb);
    /* (blocking) Bring the view up to date: pick up deliveries, other
     * sessions' changes and files changed behind the store's back.
     * changes_r may be NULL; else clear it afterwards. */
    gboolean (*sync)(KrMailbox *mb, KrMailboxChanges *changes_r, GError **error);

    /* (fast) The view. seq is 1..count. */
    guint32 (*count)(KrMailbox *mb);
    const KrMailboxMsg *(*msg)(KrMailbox *mb, guint32 seq);
    /* Sequence number of uid in the view, 0 if not there (binary search). */
    guint32 (*seq_of_uid)(KrMailbox *mb, guint32 uid);
    /* UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counts of the view. */
    void (*get_status)(KrMailbox *mb, KrMailboxStatus *st_r);
    /* The folder's keywords (NULL-terminated; index = bit). */
    const char *const *(*keywords)(KrMailbox *mb);
    /* TRUE if opened read-only. */
    gboolean (*readonly)(KrMailbox *mb);

    /* (blocking) A read-only fd on the message's stored bytes, at offset
     * 0; the caller closes it. KR_STORE_ERROR_NO_MESSAGE if it is gone. */
    int (*open_content)(KrMailbox *mb, guint32 uid, GError **error);

    /* (blocking) Change flags and keywords of messages (UIDs in the view;
     * others are skipped). Keywords not yet in the folder are added (at
     * most KR_STORE_MAX_KEYWORDS: KR_STORE_ERROR_LIMIT). With
     * unchanged_since > 0 (CONDSTORE), a message whose modseq is higher
     * is left alone and its UID appended to failed_r (may be NULL). The
     * session's view has the new flags and modseqs on return. */
    gboolean (*set_flags)(KrMailbox *mb, const guint32 *uids, guint n, KrFlagsOp op, guint32 flags,
                          const char *const *keywords, guint64 unchanged_since, GArray *failed_r,
                          GError **error);

    /* (blocking) Remove messages for good. uids NULL: consider every
     * message of the view; with only_deleted, only those with \Deleted
     * (IMAP EXPUNGE / UID EXPUNGE); without, the given ones (POP3 DELE).
     * Expunged UIDs are appended to expunged_r (may be NULL). The view
     * keeps them until the next sync(), which reports them. */
    gboolean (*expunge)(KrMailbox *mb, const guint32 *uids, guint n, gboolean only_deleted,
                        GArray *expunged_r, GError **error);

    /* (blocking) Copy (or move: copy, then expunge from this folder)
     * messages to another folder of the same user (COPY, MOVE,
     * UIDPLUS COPYUID). Flags, keywords and internal date go along. For
     * every message copied, its UID here and its new UID there are
     * appended to src_uids_r and dest_uids_r (guint32; may be NULL). */
    gboolean (*copy)(KrMailbox *mb, const guint32 *uids, guint n, const char *dest, gboolean move,
                     guint32 *dest_uidvalidity_r, GArray *src_uids_r, GArray *dest_uids_r,
                     GError **error);

    /* (blocking) The message's cached blob: *blob_r is NULL when none is
     * stored (or the message is gone). */
    gboolean (*cache_get)(KrMailbox *mb, guint32 uid, GBytes **blob_r, GError **error);
    /* (blocking) Store (replace) the message's blob; NULL removes it.
     * The store may keep a reference to blob (GBytes are immutable) and
     * write it later, at the latest when the session next calls sync,
     * set_flags, expunge, copy or close: cache_get on this session sees
     * it at once, other sessions once it is written. */
    gboolean (*cache_set)(KrMailbox *mb, guint32 uid, GBytes *blob, GError **error);

    /* (fast, any thread) A number that moves on every change to the folder
     * made in this process; compare with the value at the last sync. */
    guint64 (*change_counter)(KrMailbox *mb);
    /* (fast) Call func(ud) after each such change, from the thread that
     * made it; func NULL stops. At most one watch per session; none is
     * called after this returns with NULL, or after close(). */
    void (*watch)(KrMailbox *mb, KrMailboxWatchFunc func, gpointer ud);

    /* (blocking) The session goes quiet: write what cache_set() queued
     * and let go of read buffers and descriptors kept for cache_get();
     * the view stays. Call it when a command that used the cache is done
     * (IMAP: after FETCH and SEARCH), so an idle session holds no more
     * than its view. Trouble is logged, not returned (a cache). */
    void (*release)(KrMailbox *mb);

    /* (fast) Sequence number of the view's first message without \Seen
     * (IMAP's [UNSEEN n] at SELECT), 0 if there is none. Kept with the
     * view's counts: no per-message work on an unchanged folder. */
    guint32 (*first_unseen)(KrMailbox *mb);

    void *spare[14];
} KrMailboxOps;

/* The mailbox ops of a KrStore (kr-registry.h), or NULL if it has none. */
#define kr_store_mailbox_ops(st)                                                                   \
    ((st) && (st)->struct_size >= offsetof(KrStore, mailbox) + sizeof(void *) ? (st)->mailbox      \
                                                                              : NULL)

#define KR_STORE_HAS_OP(ops, field)                                                                \
    ((ops) && (ops)->struct_size >= offsetof(KrMailboxOps, field) + sizeof((ops)->field) &&        \
     (ops)->field)

/* --- helpers --------------------------------------------------------- */

/* Convert stored content to wire form: every LF not preceded by CR gets
 * one; *last_cr carries "the previous chunk ended in CR" between calls
 * (start with FALSE). Appends to out. */
static inline void
kr_store_crlf(const char *in, gsize len, GString *out, gboolean *last_cr)
{
    gsize start = 0;
    for (gsize i = 0; i < len; i++) {
        if (in[i] != '\n')
            continue;
        gboolean cr = i > 0 ? in[i - 1] == '\r' : *last_cr;
        if (!cr) {
            g_string_append_len(out, in + start, (gssize)(i - start));
            g_string_append_c(out, '\r');
            start = i;
        }
    }
    g_string_append_len(out, in + start, (gssize)(len - start));
    if (len > 0)
        *last_cr = in[len - 1] == '\r';
}

G_END_DECLS
#endif
