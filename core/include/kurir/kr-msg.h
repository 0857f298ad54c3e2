/* SPDX-License-Identifier: MIT */
/*
 * kr-msg.h - messages: envelope, recipients, attributes and content.
 *
 * A KrMsg is an opaque, reference-counted handle on one queued message.
 * Its content lives in the queue file (kr-queue.h) and is read through
 * kr_msg_read() — never copied whole into memory. Header edits made by
 * stages (prepend a header, remove one) are kept as envelope records and
 * applied when the content is read, so the received bytes are never
 * rewritten.
 *
 * Ownership: kr_msg_ref()/kr_msg_unref(). A stage borrows the message of
 * its job; it refs it if it keeps it past kr_job_done().
 * Strings returned by getters belong to the message.
 *
 *   envelope   kr_msg_queue_id, kr_msg_sender, kr_msg_set_sender,
 *              kr_msg_add_rcpt, kr_msg_rcpt_count, kr_msg_rcpt
 *   attributes kr_msg_attr, kr_msg_set_attr (persisted in the queue file:
 *              client_addr, client_name, helo, auth_user, protocol, tls,
 *              envid, ret, body, smtputf8, ...)
 *   content    kr_msg_append (spool writing), kr_msg_size, kr_msg_read,
 *              kr_msg_write_to_fd, kr_msg_header, kr_msg_header_count,
 *              kr_msg_prepend_header, kr_msg_remove_header
 */
#ifndef KURIR_KR_MSG_H
#define KURIR_KR_MSG_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define KR_API __attribute__((visibility("default")))

typedef struct KrMsg KrMsg;

/* Recipient delivery state, kept per recipient in the queue file. */
typedef enum {
    KR_RCPT_PENDING = 0, /* not yet (successfully) tried */
    KR_RCPT_DELIVERED,   /* done: delivered or relayed */
    KR_RCPT_DEFERRED,    /* temporary failure, retry at next_try */
    KR_RCPT_FAILED,      /* permanent failure, bounce pending */
    KR_RCPT_BOUNCED,     /* failure reported (bounce queued) or not needed */
    KR_RCPT_EXPANDED,    /* replaced by its expansion (alias, .forward) */
} KrRcptState;

/* RFC 3461 NOTIFY bits; 0 means "not given" (default: FAILURE, DELAY). */
enum {
    KR_NOTIFY_NEVER = 1 << 0,
    KR_NOTIFY_SUCCESS = 1 << 1,
    KR_NOTIFY_FAILURE = 1 << 2,
    KR_NOTIFY_DELAY = 1 << 3,
};

#define KR_DIAG_MAX 400 /* longest diagnostic text kept per recipient */

typedef struct KrRcpt {
    char *address; /* current address (after rewriting) */
    char *orcpt;   /* RFC 3461 ORCPT as "type;address" (decoded), or NULL */
    unsigned notify;
    /* Delivery status, persisted by kr_msg_rcpt_save(). */
    KrRcptState state;
    unsigned attempts;
    gint64 next_try;   /* unix time of the next attempt (DEFERRED) */
    gint64 first_fail; /* unix time of the first temporary failure, 0 if none */
    int code;          /* last SMTP-style reply code (250, 450, 550, ...) */
    char ecode[12];    /* last enhanced status code, "5.1.1" */
    char diag[KR_DIAG_MAX + 1]; /* last diagnostic text */
    /* In-memory attributes for the pipeline (route label, transport,
     * nexthop, user ...): not persisted. Use kr_rcpt_attr(). */
    GHashTable *attrs;
    /* Index in the message and offset of the status slot (core use). */
    unsigned index;
    gint64 slot_off;
} KrRcpt;

KR_API KrMsg *kr_msg_ref(KrMsg *msg);
KR_API void kr_msg_unref(KrMsg *msg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KrMsg, kr_msg_unref)

KR_API const char *kr_msg_queue_id(const KrMsg *msg);
KR_API gint64 kr_msg_arrival(const KrMsg *msg);
/* The envelope sender; "" is the null sender <>. */
KR_API const char *kr_msg_sender(const KrMsg *msg);
KR_API void kr_msg_set_sender(KrMsg *msg, const char *sender);

KR_API KrRcpt *kr_msg_add_rcpt(KrMsg *msg, const char *address);
KR_API guint kr_msg_rcpt_count(const KrMsg *msg);
KR_API KrRcpt *kr_msg_rcpt(const KrMsg *msg, guint i);
/* Persist one recipient's status in place (pwrite + fdatasync).
 * Blocking: call from a worker thread. */
KR_API gboolean kr_msg_rcpt_save(KrMsg *msg, KrRcpt *rcpt, GError **error);
KR_API void kr_rcpt_set_result(KrRcpt *rcpt, KrRcptState state, int code, const char *ecode,
                               const char *diag);
KR_API const char *kr_rcpt_attr(const KrRcpt *rcpt, const char *key);
KR_API void kr_rcpt_set_attr(KrRcpt *rcpt, const char *key, const char *value);

/* Message attributes: short strings, persisted with the envelope.
 * Keys are [a-z0-9_], at most 64 bytes; values at most 4 KiB. */
KR_API const char *kr_msg_attr(const KrMsg *msg, const char *key);
KR_API void kr_msg_set_attr(KrMsg *msg, const char *key, const char *value);

/* --- content ---------------------------------------------------------- */

/* Append received bytes to the spool (before commit only). Writes go to
 * the page cache; durability comes with the commit. */
KR_API gboolean kr_msg_append(KrMsg *msg, const void *data, gsize len, GError **error);
/* Size of the content as read by kr_msg_read (header edits applied). */
KR_API goffset kr_msg_size(KrMsg *msg);
/* Size of the content as received. */
KR_API goffset kr_msg_raw_size(const KrMsg *msg);
/* Read logical content at offset; returns bytes read, 0 at end, -1 on
 * error. Thread-safe for concurrent readers of the same message. */
KR_API gssize kr_msg_read(KrMsg *msg, goffset offset, void *buf, gsize len, GError **error);
/* Write the logical content to fd, prefixed by `prefix` (may be NULL),
 * converting CRLF to LF when `lf` is TRUE. */
KR_API gboolean kr_msg_write_to_fd(KrMsg *msg, int fd, const char *prefix, gboolean lf,
                                   GError **error);

/* Headers of the logical content, parsed once (at most 1000 headers and
 * 256 KiB of header block). Names are compared case-insensitively.
 * kr_msg_header returns the n-th (0-based) value of that name, unfolded
 * and trimmed, or NULL. */
KR_API guint kr_msg_header_count(KrMsg *msg, const char *name);
KR_API const char *kr_msg_header(KrMsg *msg, const char *name, guint n);
/* Add "Name: value" before the existing headers. Value must not contain
 * CR or LF unless followed by whitespace (folding). */
KR_API gboolean kr_msg_prepend_header(KrMsg *msg, const char *name, const char *value,
                                      GError **error);
/* Remove every header called name from the logical content. */
KR_API void kr_msg_remove_header(KrMsg *msg, const char *name);

G_END_DECLS
#endif
