/* SPDX-License-Identifier: MIT */
/*
 * imap-mime.h - the MIME layer of the IMAP server: parse a stored
 * message once into a table of its parts (byte offsets in the file),
 * describe it as ENVELOPE / BODY / BODYSTRUCTURE, and serve FETCH
 * sections (BODY[...], BINARY[...], BINARY.SIZE[...]) straight from the
 * file. Pure functions; no sockets, no global state but GMime's init.
 *
 *   imap_mime_parse()           message (fd or buffer) -> ImapMimeMessage
 *   imap_mime_parse_envelope()  only the top-level header -> ENVELOPE text
 *   imap_mime_message_free()
 *   imap_mime_envelope()        "(date subject (from) ...)" text
 *   imap_mime_body()            BODY (non-extensible) text
 *   imap_mime_bodystructure()   BODYSTRUCTURE text
 *   imap_mime_size()            octets with CRLF line ends (RFC822.SIZE)
 *   imap_mime_envelope_desc()   the ImapEnvelope behind the text (parsed only)
 *   imap_mime_body_desc()       the ImapBodyPart tree (parsed only)
 *   imap_mime_section()         the octets of a BODY[...] / BINARY[...] section
 *   imap_mime_section_size()    their size (BINARY.SIZE[...]), partial ignored
 *   imap_mime_stream_open()     the same octets in chunks: size first (for the
 *   imap_mime_stream_read()     literal's "{n}"), then read them; for big
 *   imap_mime_stream_free()     sections (BODY[], attachments)
 *   imap_mime_stream_in_memory()  made at open (the input no longer read)?
 *   imap_mime_header_section()  a top-level HEADER / HEADER.FIELDS(.NOT)?
 *   imap_mime_header_stream_open()  ... its octets from the header alone
 *   imap_mime_cache_build()     the handle as a compact, versioned blob
 *   imap_mime_cache_load()      ... and back (no reparse; sections still work)
 *   imap_mime_cache_build_envelope()  an envelope-only blob
 *   imap_mime_cache_text()      ENVELOPE / BODY / BODYSTRUCTURE text straight
 *                               from a blob (bounds checked, no full load)
 *   imap_mime_cache_is_full()   a full blob (not envelope-only)?
 *
 * INPUT. An ImapMimeInput names the stored message: an fd (read with
 * pread, its offset untouched, never closed) or a buffer. Line ends may
 * be LF or CRLF; everything given out is in wire form (each LF not
 * preceded by CR becomes CRLF) and every size counts that way, the same
 * as kr_store_crlf() and the store's RFC822.SIZE.
 *
 * PARSING is done here, not by GMime's parser: one pass over the lines
 * records every entity's header and body offsets, so a section is served
 * from the file's own bytes, and header values stay raw as IMAP wants
 * them (RFC 3501 7.4.2: ENVELOPE and BODYSTRUCTURE strings are not
 * decoded; GMime decodes RFC 2047 words and RFC 2231 parameters and
 * drops source routes, which it must for a mail reader but IMAP must
 * not). GMime (the field's MIME library) decodes base64 and
 * quoted-printable bodies for BINARY. The rules:
 *   - A header ends at the first empty line; the body runs to the end of
 *     the entity. In a multipart, a delimiter is a line "--boundary"
 *     (close: "--boundary--") with only blanks after it; the line end
 *     before a delimiter belongs to the delimiter (RFC 2046 5.1.1), also
 *     after a close delimiter with an empty epilogue. A delimiter of any
 *     enclosing multipart ends every entity inside it (unterminated parts).
 *   - Defaults: text/plain; charset=us-ascii, message/rfc822 inside a
 *     multipart/digest. A multipart without a boundary parameter or
 *     without any delimiter line is described as text/plain (charset
 *     us-ascii) so its text is readable; a message/rfc822 part with an
 *     encoding other than 7bit/8bit/binary is a leaf.
 *   - Limits (ImapMimeLimits): entities nested deeper than max_depth and
 *     entities past max_parts are not split: the rest is opaque content
 *     of the entity that holds it (a multipart or message cut off this
 *     way is described as application/octet-stream). Header bytes kept
 *     for describing are bounded per entity and in total; beyond that a
 *     header still ends where it ends, its fields are just not read.
 *   - Header values: unfolded (line ends removed), blanks trimmed, NUL
 *     bytes dropped, 8-bit bytes kept (the formatter sends them as
 *     literals). The first occurrence of a field counts. Parameters are
 *     as given, quotes removed; RFC 2231 continuations (name*0, name*1*)
 *     are joined into one "name" / "name*" parameter, percent-encoding
 *     kept (as Dovecot does). Addresses: group markers as RFC 3501,
 *     quoted strings unquoted, a missing local part or domain is
 *     "MISSING_MAILBOX" / "MISSING_DOMAIN" (so host is NIL only for group
 *     markers), a lone comment is the display name. Content-MD5 is the md5.
 *
 * SECTIONS follow RFC 3501 6.4.5 / RFC 9051 6.4.5 with ImapFetchSection
 * from imap-parse.h as the parser made it: part numbers, then HEADER,
 * HEADER.FIELDS (names compared without case), HEADER.FIELDS.NOT, TEXT
 * or MIME. HEADER/TEXT after part numbers need a message/rfc822 part;
 * "1" of a non-multipart entity is its body (so "1.1" of a text part is
 * the part itself, as in Dovecot); a part that is not there is
 * IMAP_MIME_ERROR_NO_PART (Dovecot answers it with an empty string).
 * HEADER.FIELDS(.NOT) gives the matching fields as they are, then CRLF.
 * BINARY decodes the part's transfer encoding (base64, quoted-printable;
 * 7bit/8bit/binary/none as is; anything else IMAP_MIME_ERROR_UNKNOWN_CTE
 * -> "NO [UNKNOWN-CTE]"); a multipart, a message part or the whole
 * message ([]) goes as is. The <origin.length> partial is applied here
 * (to the decoded octets for BINARY); an origin past the end gives "".
 *
 * MEMORY. imap_mime_section() returns the whole section in memory; the
 * stream reads a plain range of the file a chunk at a time (so BODY[]
 * of a 60 MiB message never sits in memory whole). HEADER.FIELDS and
 * decoded BINARY are made in memory either way. A partial of a file with
 * bare LF line ends is found by converting from the section's start (a
 * CRLF file seeks straight to it).
 *
 * HEADER ONLY. imap_mime_parse_envelope() reads the message's header and
 * nothing else (a small first read; the fd's size is not asked) and gives
 * the same ENVELOPE text as imap_mime_parse() would: what FETCH ENVELOPE
 * and SEARCH need, at a fraction of the cost of a full parse.
 *
 * The top-level header sections (BODY[HEADER], BODY[HEADER.FIELDS (...)],
 * BODY[HEADER.FIELDS.NOT (...)], RFC822.HEADER: what mail clients list a
 * folder with) need no parse and no handle: imap_mime_header_stream_open()
 * reads the header block alone (8 KiB first, windows doubling; the header
 * ends where a full parse ends it) and gives the same octets, partial
 * applied. A BODY[HEADER] over 256 KiB is read again from the file in
 * chunks; HEADER.FIELDS keeps the header in memory, as the full path does.
 *
 * CACHE. imap_mime_cache_build() gives a blob for the store's per-message
 * cache slot: a magic and version, the three texts and the part table
 * (varints). imap_mime_cache_build_envelope() gives an envelope-only blob
 * (another version octet): imap_mime_cache_text() answers its ENVELOPE
 * only, imap_mime_cache_load() refuses it (IMAP_MIME_ERROR_CACHE), so the
 * caller parses fully and replaces it with a full blob. imap_mime_cache_load() checks it completely
 * (lengths, offsets, tree links) and says IMAP_MIME_ERROR_CACHE for anything it does not trust:
 * then parse again. A loaded handle has no ImapEnvelope / ImapBodyPart (the *_desc getters return
 * NULL). Sections check that the input is still as big as when parsed (IMAP_MIME_ERROR_CHANGED).
 *
 * THREADS. Handles are immutable after parse/load: any number of threads
 * may use one at once. All calls do blocking I/O on fds: worker threads.
 *
 * TEXTS are built with formatter flags 0: 8-bit strings are literals,
 * which are valid with UTF8=ACCEPT too.
 */
#ifndef KR_IMAP_MIME_H
#define KR_IMAP_MIME_H

#include <glib.h>

#include "imap-bodystruct.h"
#include "imap-parse.h"

G_BEGIN_DECLS

typedef struct {
    int fd;             /* used when data is NULL */
    const guchar *data; /* the message in memory, or NULL */
    gsize len;
} ImapMimeInput;

#define IMAP_MIME_INPUT_FD(fd_)       ((ImapMimeInput){(fd_), NULL, 0})
#define IMAP_MIME_INPUT_MEM(p_, len_) ((ImapMimeInput){-1, (const guchar *)(p_), (len_)})

typedef struct {
    guint max_depth;        /* nesting of entities; at most 60 (default 32) */
    guint max_parts;        /* entities in one message (default 1000) */
    gsize max_header;       /* header bytes read per entity (default 256 KiB) */
    gsize max_header_total; /* ... per message (default 4 MiB) */
} ImapMimeLimits;

#define IMAP_MIME_LIMITS_INIT                                                                      \
    {                                                                                              \
        32, 1000, 262144, 4194304                                                                  \
    }

typedef enum {
    IMAP_MIME_ERROR_IO,          /* reading the input failed */
    IMAP_MIME_ERROR_NO_PART,     /* the section does not exist in this message */
    IMAP_MIME_ERROR_UNKNOWN_CTE, /* BINARY of a part with an unknown encoding */
    IMAP_MIME_ERROR_CACHE,       /* blob not ours, old version or damaged */
    IMAP_MIME_ERROR_CHANGED,     /* input size differs from the parsed one */
} ImapMimeError;

#define IMAP_MIME_ERROR (imap_mime_error_quark())
GQuark imap_mime_error_quark(void);

typedef struct ImapMimeMessage ImapMimeMessage;

ImapMimeMessage *imap_mime_parse(const ImapMimeInput *in, const ImapMimeLimits *limits,
                                 GError **error);
/* The ENVELOPE text of the top-level header (g_free it); NULL on a read error. */
char *imap_mime_parse_envelope(const ImapMimeInput *in, const ImapMimeLimits *limits,
                               GError **error);
void imap_mime_message_free(ImapMimeMessage *msg);

const char *imap_mime_envelope(const ImapMimeMessage *msg);
const char *imap_mime_body(const ImapMimeMessage *msg);
const char *imap_mime_bodystructure(const ImapMimeMessage *msg);
guint64 imap_mime_size(const ImapMimeMessage *msg);
const ImapEnvelope *imap_mime_envelope_desc(const ImapMimeMessage *msg);
const ImapBodyPart *imap_mime_body_desc(const ImapMimeMessage *msg);

/* sec->kind BODY or BINARY: the octets (partial applied) in *out_r.
 * BINARY_SIZE: the decoded size as decimal text is NOT given; use
 * imap_mime_section_size(). */
gboolean imap_mime_section(const ImapMimeMessage *msg, const ImapMimeInput *in,
                           const ImapFetchSection *sec, GBytes **out_r, GError **error);
/* Size of the section without its partial: BINARY / BINARY_SIZE decoded,
 * BODY in wire form. */
gboolean imap_mime_section_size(const ImapMimeMessage *msg, const ImapMimeInput *in,
                                const ImapFetchSection *sec, guint64 *size_r, GError **error);

/* A section as a stream: *size_r is what the reads will give in all
 * (partial applied). A plain range of the file is read as it is asked
 * for (CHUNK at a time, never the whole section); HEADER.FIELDS and
 * decoded BINARY are made in memory at open. read() returns the octets
 * put in buf (at most len), 0 at the end, -1 with error set;
 * IMAP_MIME_ERROR_CHANGED if the file shrank meanwhile. `in` (the fd or
 * buffer) must stay valid until free. */
typedef struct ImapMimeStream ImapMimeStream;
ImapMimeStream *imap_mime_stream_open(const ImapMimeMessage *msg, const ImapMimeInput *in,
                                      const ImapFetchSection *sec, guint64 *size_r, GError **error);
gssize imap_mime_stream_read(ImapMimeStream *st, void *buf, gsize len, GError **error);
void imap_mime_stream_free(ImapMimeStream *st);
/* The octets were made at open (HEADER.FIELDS, decoded BINARY, a small
 * header): read() no longer touches the input. */
gboolean imap_mime_stream_in_memory(const ImapMimeStream *st);

/* BODY[HEADER], BODY[HEADER.FIELDS (...)] or BODY[HEADER.FIELDS.NOT (...)]
 * of the top-level message (no part number), PEEK or not? */
gboolean imap_mime_header_section(const ImapFetchSection *sec);
/* Such a section from the header alone (no parse, no handle): the same
 * octets as imap_mime_stream_open() of a parsed message gives. */
ImapMimeStream *imap_mime_header_stream_open(const ImapMimeInput *in, const ImapFetchSection *sec,
                                             guint64 *size_r, GError **error);

GBytes *imap_mime_cache_build(const ImapMimeMessage *msg);
GBytes *imap_mime_cache_build_envelope(const char *envelope);
ImapMimeMessage *imap_mime_cache_load(GBytes *blob, GError **error);
gboolean imap_mime_cache_is_full(GBytes *blob);

/* One text of a blob without loading it: *text points into the blob (not
 * NUL-terminated), *len octets. FALSE if the blob is not ours or its
 * prefix is damaged. Only the prefix is checked, not the part table. */
typedef enum {
    IMAP_MIME_CACHE_ENVELOPE,
    IMAP_MIME_CACHE_BODY,
    IMAP_MIME_CACHE_BODYSTRUCTURE,
} ImapMimeCacheText;
gboolean imap_mime_cache_text(GBytes *blob, ImapMimeCacheText which, const char **text, gsize *len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapMimeMessage, imap_mime_message_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapMimeStream, imap_mime_stream_free)

G_END_DECLS

#endif
