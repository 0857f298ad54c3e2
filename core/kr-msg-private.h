/* SPDX-License-Identifier: MIT */
/*
 * kr-msg-private.h - the KrMsg structure, shared by kr-msg.c (the object,
 * headers, logical content) and kr-qfile*.c (the queue file format, whose
 * own internals are in kr-qfile-private.h). Never included outside core/.
 *
 * Locking: `lock` guards the lazily built header index and content map
 * (so kr_msg_read/kr_msg_header may run in several threads at once).
 * Everything else follows the usual rule: one thread changes a message
 * at a time (the event loop, or the worker it handed the message to).
 */
#ifndef KR_MSG_PRIVATE_H
#define KR_MSG_PRIVATE_H

#include "kr-internal.h"

/* Bounds shared by the writer and the (untrusting) reader. */
#define KR_MSG_MAX_RCPTS        100000
#define KR_MSG_MAX_ATTRS        10000
#define KR_MSG_MAX_EDITS        10000
#define KR_MSG_MAX_ADDR         65536 /* bytes in one address or ORCPT */
#define KR_MSG_ATTR_KEY_MAX     64
#define KR_MSG_ATTR_VALUE_MAX   4096
#define KR_MSG_HDR_NAME_MAX     256
#define KR_MSG_HDR_VALUE_MAX    65536
#define KR_MSG_MAX_HEADERS      1000 /* parsed from the content */
#define KR_MSG_MAX_HEADER_BLOCK (256 * 1024)

/* A recipient as allocated by the core: the public part first, so a
 * KrRcpt * is also a KrRcptPriv *. */
typedef struct {
    KrRcpt pub;
    /* Status slot: two copies, the live one has the higher sequence. */
    guint32 slot_seq; /* sequence of the live copy */
    int slot_live;    /* 0 or 1 */
} KrRcptPriv;

/* A header edit, applied in order at read time. */
typedef struct {
    gboolean remove; /* remove every header called name, else prepend */
    char *name;
    char *value;    /* as given (prepend only) */
    char *unfolded; /* value unfolded and trimmed (prepend only) */
} KrHdrEdit;

/* A header of the stored content. */
typedef struct {
    char *name;
    char *value;   /* unfolded, trimmed */
    goffset start; /* raw content offsets of the whole field, incl. EOL */
    goffset end;
} KrHdr;

typedef struct KrContentMap KrContentMap;

struct KrMsg {
    gint refcount;
    char id[KR_QUEUE_ID_LEN + 1];
    gint64 arrival;
    char *sender;
    GPtrArray *rcpts;  /* KrRcptPriv * */
    GHashTable *attrs; /* char * -> char * */
    GPtrArray *edits;  /* KrHdrEdit * */

    /* The file. */
    int fd;
    KrQueueDir dir;      /* where the file is (spool: where .tmp-ID is) */
    gboolean committed;  /* visible as DIR/ID */
    gboolean gone;       /* discarded or removed */
    gboolean readonly;   /* opened read-only: status saves fail */
    goffset content_off; /* file offset of the content */
    goffset raw_size;    /* content length */
    goffset env_off;     /* live envelope (committed files) */
    goffset env_len;
    guint32 env_crc;
    guint32 gen;         /* highest header generation seen */
    int live_hdr;        /* header copy (0/1) that points at the live envelope */
    GError *write_error; /* sticky spool write error */
    char *spare_path;    /* removed by kr_msg_remove_lazy, kept as a spare */

    /* Lazily built views of the content, under lock. */
    GMutex lock;
    gboolean hdrs_parsed;
    gboolean hdrs_open; /* parse ran into the end of the content */
    GPtrArray *hdrs;    /* KrHdr * */
    gboolean crlf;      /* content's first line ends in CRLF */
    KrContentMap *map;
};

/* kr-msg.c */
KrMsg *kr_msg_alloc(void);
gboolean kr_msg_attr_key_ok(const char *key);
gboolean kr_msg_hdr_name_ok(const char *name, gsize len);
gboolean kr_msg_hdr_value_ok(const char *value, gsize len);
/* Append an edit (takes nothing; copies). FALSE if over the limit. */
gboolean kr_msg_push_edit(KrMsg *msg, gboolean remove, const char *name, const char *value);
KrRcpt *kr_msg_push_rcpt(KrMsg *msg, const char *address, gsize len);
/* Forget the parsed headers / content map (content or edits changed). */
void kr_msg_content_changed(KrMsg *msg);

/* kr-qfile.c */
/* Close the file; unlink DIR/.tmp-ID if the spool was never committed. */
void kr_qfile_release(KrMsg *msg);
/* kr-qfile-spare.c: spare files in this process's pool (tests). */
KR_INTERNAL guint kr_qfile_spares(void);
/* kr-qfile-io.c: pread the whole of len bytes at off, retrying on EINTR/short reads. */
gboolean kr_qfile_pread_all(int fd, void *buf, gsize len, goffset off, GError **error);

#endif
