/* SPDX-License-Identifier: MIT */
/*
 * imap-mime-int.h - internals shared by the imap-mime*.c files: the
 * part table, the message handle, the input reader, a bump allocator,
 * and the header-field helpers. Not for use outside imap-mime*.c.
 *
 *   mime_arena_*()          bump allocator for the parsed description
 *   mime_input_*()          bounded reads from an fd or a buffer
 *   mime_field_next()       iterate the fields of a raw header block
 *   mime_unfold()           raw field value -> unfolded, trimmed string
 *   mime_describe()         header block -> ImapBodyPart fields, boundary, CTE
 *   mime_envelope()         header block -> ImapEnvelope
 *   mime_crlf_append()      stored bytes -> wire form (bare LF -> CRLF)
 */
#ifndef KR_IMAP_MIME_INT_H
#define KR_IMAP_MIME_INT_H

#include "imap-mime.h"

G_BEGIN_DECLS

#define MIME_NONE G_MAXUINT32

/* What a node is. A MESSAGE node (message/rfc822 or message/global) has
 * one child: the embedded message, whose header starts at the node's
 * body. A MULTIPART node has its body parts as children. */
enum {
    MIME_LEAF = 0,
    MIME_MULTIPART = 1,
    MIME_MESSAGE = 2,
};

/* Content-Transfer-Encoding as far as BINARY cares. */
enum {
    MIME_CTE_IDENTITY = 0, /* none, 7bit, 8bit, binary */
    MIME_CTE_BASE64 = 1,
    MIME_CTE_QP = 2,
    MIME_CTE_UNKNOWN = 3,
};

/* One entity: the top-level message, a body part, or a message embedded
 * in a message/rfc822 part. Offsets are in the stored file; *_wire sizes
 * count every line end as CRLF; *_lines count LFs. The header runs from
 * hdr_start to body_start (blank line included), the body from
 * body_start to end. Nodes are in pre-order: a child's index is larger
 * than its parent's, a sibling's larger than the one before it. */
typedef struct {
    guint64 hdr_start, body_start, end;
    guint64 hdr_wire, hdr_lines;
    guint64 body_wire, body_lines;
    guint32 parent, first_child, next;
    guint8 kind;
    guint8 cte;
} MimeNode;

typedef struct MimeArena MimeArena;

struct ImapMimeMessage {
    MimeNode *nodes;
    guint32 n_nodes;
    guint64 size;      /* octets in the file */
    guint64 wire_size; /* RFC822.SIZE */
    char *envelope;    /* serialised ENVELOPE, BODY, BODYSTRUCTURE */
    char *body;
    char *bodystructure;
    /* Only for a parsed message (not one loaded from a cache blob): */
    MimeArena *arena;
    ImapBodyPart *parts;        /* parts[i] describes nodes[i] */
    ImapEnvelope **envelope_of; /* per node: the envelope of a message entity, else NULL */
};

/* ---- arena ---- */
MimeArena *mime_arena_new(void);
void mime_arena_free(MimeArena *a);
gpointer mime_arena_alloc(MimeArena *a, gsize size);
char *mime_arena_strndup(MimeArena *a, const char *s, gsize len);

/* ---- input ---- */
/* Size of the input: the buffer length, or fstat of the fd. */
gboolean mime_input_size(const ImapMimeInput *in, guint64 *size_r, GError **error);
/* Exactly len bytes at off (short only at end of file: *got_r). */
gboolean mime_input_read(const ImapMimeInput *in, guint64 off, void *buf, gsize len, gsize *got_r,
                         GError **error);

/* ---- header fields (imap-mime-header.c) ---- */
typedef struct {
    const char *name; /* field name, trailing blanks removed */
    gsize name_len;
    const char *value; /* raw value after the colon, continuation lines included, */
    gsize value_len;   /* final line end excluded */
    const char *raw;   /* the whole field with its final line end */
    gsize raw_len;
    gboolean colon; /* FALSE: a line that is not a field ("garbage") */
} MimeField;

gboolean mime_field_next(const char *h, gsize len, gsize *pos, MimeField *f);
gboolean mime_field_is(const MimeField *f, const char *name);
char *mime_unfold(MimeArena *a, const char *v, gsize len);

/* Fill part's type, subtype, params, id, description, encoding, md5,
 * disposition, language and location from a header block (defaults as
 * RFC 2045: text/plain; charset=us-ascii, or message/rfc822 in a
 * multipart/digest). *boundary_r: the boundary parameter or NULL. */
void mime_describe(MimeArena *a, const char *h, gsize len, gboolean digest, ImapBodyPart *part,
                   const char **boundary_r, guint8 *cte_r);
ImapEnvelope *mime_envelope(MimeArena *a, const char *h, gsize len);

/* ---- addresses (imap-mime-addr.c) ---- */
/* Parse an unfolded address list into ImapAddress entries (groups as
 * start/end markers). Returns the count; *out_r is arena memory. */
guint mime_address_list(MimeArena *a, const char *s, ImapAddress **out_r);

/* ---- wire form ---- */
/* Append in[0..len) to out with every LF not preceded by CR made CRLF;
 * *last_cr carries "the previous byte was CR" across calls. */
void mime_crlf_append(GByteArray *out, const guchar *in, gsize len, gboolean *last_cr);

G_END_DECLS

#endif
