/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile-private.h - queue file internals shared by core/kr-qfile*.c
 *
 * SYNOPSIS
 *   #include "kr-qfile-private.h"
 *
 *   QF_* (layout), REC_* (record types), KrQfileHeader
 *   qf_put16/32/64(p, v), qf_get16/32/64(p)   little-endian, unaligned
 *   kr-qfile-io.c:     kr_qfile_errno_error, kr_qfile_bad, kr_qfile_pwrite_all,
 *                      kr_qfile_rename_noreplace, kr_qfile_path, kr_qfile_tmp_path
 *   kr-qfile-format.c: kr_qfile_crc_init, kr_qfile_crc32,
 *                      kr_qfile_encode_status, kr_qfile_decode_status,
 *                      kr_qfile_encode_header, kr_qfile_decode_header,
 *                      kr_qfile_check_limits, kr_qfile_build_envelope
 *   kr-qfile.c:        kr_qfile_make_id, kr_qfile_adopt_envelope
 *   kr-qfile-spare.c:  kr_qfile_spare_put, kr_qfile_spare_drain,
 *                      kr_qfile_check_full, kr_qfile_keep_as_spare
 *
 * DESCRIPTION
 *   The layout constants of docs/queue-format.md and the helpers the
 *   queue file sources share. Never included outside core/ (libkurir is
 *   built with -fvisibility=hidden, so none of this is exported; what
 *   kr-msg.c and the tests need is in kr-msg-private.h).
 *
 *   A file is [header copy A][header copy B][content][envelope records
 *   I T S A* (H|X)* R* E]; each record is a type byte, a 4-byte length
 *   and the payload; an R record ends in the recipient's status slot
 *   (two QF_STATUS_SIZE copies), which the envelope CRC leaves out.
 *
 * SEE ALSO
 *   kr-qfile.c, kr-msg-private.h, docs/queue-format.md
 */
#ifndef KR_QFILE_PRIVATE_H
#define KR_QFILE_PRIVATE_H

#include "kr-msg-private.h"

#define QF_MAGIC       "KRQ1"
#define QF_VERSION     1
#define QF_HDR_SIZE    64
#define QF_CONTENT_OFF (2 * QF_HDR_SIZE)
#define QF_REC_HDR     5                    /* type (1) + length (4) */
#define QF_REC_MAX     (16 * 1024 * 1024)   /* longest record */
#define QF_ENV_MAX     ((goffset)1 << 30)   /* longest envelope */
#define QF_STATUS_SIZE 464                  /* one status copy */
#define QF_SLOT_SIZE   (2 * QF_STATUS_SIZE) /* a recipient's slot */
#define QF_RCPT_FIXED  12                   /* notify, addr len, orcpt len */
#define QF_NO_ORCPT    0xFFFFFFFFu

enum {
    REC_ID = 'I',
    REC_TIME = 'T',
    REC_SENDER = 'S',
    REC_ATTR = 'A',
    REC_PREPEND = 'H',
    REC_REMOVE = 'X',
    REC_RCPT = 'R',
    REC_END = 'E',
};

/* A decoded file header (one of the two copies). */
typedef struct {
    guint32 gen;
    goffset content_off, content_len, env_off, env_len;
    guint32 env_crc;
} KrQfileHeader;

/* --- little-endian integers ---------------------------------------------- */

static inline void
qf_put16(guint8 *p, guint16 v)
{
    p[0] = (guint8)v;
    p[1] = (guint8)(v >> 8);
}

static inline void
qf_put32(guint8 *p, guint32 v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (guint8)(v >> (8 * i));
}

static inline void
qf_put64(guint8 *p, guint64 v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (guint8)(v >> (8 * i));
}

static inline guint16
qf_get16(const guint8 *p)
{
    return (guint16)(p[0] | p[1] << 8);
}

static inline guint32
qf_get32(const guint8 *p)
{
    return (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
}

static inline guint64
qf_get64(const guint8 *p)
{
    return (guint64)qf_get32(p) | (guint64)qf_get32(p + 4) << 32;
}

/* --- kr-qfile-io.c: errors, I/O, names ------------------------------------ */

/* Set a G_IO_ERROR from errno e ("WHAT PATH: strerror"); returns FALSE. */
gboolean kr_qfile_errno_error(GError **error, int e, const char *what, const char *path);
/* Set G_IO_ERROR_INVALID_DATA with the message; returns FALSE. */
gboolean kr_qfile_bad(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* pwrite all of len bytes at off, retrying on EINTR/short writes. */
gboolean kr_qfile_pwrite_all(int fd, const void *buf, gsize len, goffset off, GError **error);
/* rename(2) that never replaces an existing file (link+unlink where
 * RENAME_NOREPLACE is not supported); 0 or -1 with errno. */
int kr_qfile_rename_noreplace(const char *from, const char *to);
/* DIR/name and the spool name DIR/.tmp-ID (newly allocated). */
char *kr_qfile_path(KrQueueDir dir, const char *name);
char *kr_qfile_tmp_path(const KrMsg *msg);

/* --- kr-qfile-format.c: encoding and decoding ----------------------------- */

/* Build the CRC table (once); call before kr_qfile_crc32. */
void kr_qfile_crc_init(void);
/* CRC-32 (IEEE 802.3, as zlib's crc32): start with 0. */
guint32 kr_qfile_crc32(guint32 crc, const void *data, gsize len);
/* One status copy (QF_STATUS_SIZE bytes) with sequence seq. */
void kr_qfile_encode_status(guint8 *p, const KrRcpt *r, guint32 seq);
/* FALSE if the copy is unreadable. */
gboolean kr_qfile_decode_status(const guint8 *p, KrRcpt *r, guint32 *seq_r);
/* One header copy (QF_HDR_SIZE bytes). */
void kr_qfile_encode_header(guint8 *h, const KrMsg *msg, guint32 gen, goffset env_off,
                            goffset env_len, guint32 env_crc);
/* Check a header copy against a file of size bytes. */
gboolean kr_qfile_decode_header(const guint8 *h, goffset size, KrQfileHeader *fh, GError **error);
/* The bounds of kr-msg-private.h, before writing an envelope. */
gboolean kr_qfile_check_limits(KrMsg *msg, GError **error);
/* Serialise the envelope; slot_offs[i] gets recipient i's slot offset
 * within it. Returns the CRC (slots excluded). */
guint32 kr_qfile_build_envelope(KrMsg *msg, GByteArray *b, gsize *slot_offs);

/* --- kr-qfile.c ------------------------------------------------------------ */

/* A new queue ID (KR_QUEUE_ID_LEN characters and a NUL). */
void kr_qfile_make_id(char out[KR_QUEUE_ID_LEN + 1]);
/* Point every recipient at its slot in a freshly written envelope. */
void kr_qfile_adopt_envelope(KrMsg *msg, goffset env_off, gsize env_len, guint32 crc,
                             const gsize *slot_offs);

/* --- kr-qfile-spare.c: the spare file pool --------------------------------- */

/* Give a reservation back; with fd >= 0, add that spare (fd, path: taken)
 * to the pool. */
void kr_qfile_spare_put(int fd, char *path);
/* Give the disk space spares hold back (the file system is full). */
void kr_qfile_spare_drain(void);
/* kr_qfile_spare_drain if err says the file system is full. */
void kr_qfile_check_full(const GError *err);
/* Keep the removed file path as a spare: TRUE if it was, FALSE if the
 * caller should unlink it instead (*gone_r: path is gone already). */
gboolean kr_qfile_keep_as_spare(KrMsg *msg, const char *path, gboolean *gone_r);

#endif
