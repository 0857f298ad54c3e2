/* SPDX-License-Identifier: MIT */
/*
 * imap-mutf7.h - modified UTF-7 (RFC 3501 section 5.1.3), the IMAP4rev1
 * encoding of international mailbox names, with strict validation.
 *
 *   imap_mutf7_decode()   mUTF-7 -> UTF-8 (NULL + error if not canonical)
 *   imap_mutf7_encode()   UTF-8 -> mUTF-7 (NULL + error if not UTF-8)
 *   imap_mutf7_valid()    is this canonical mUTF-7?
 *
 * Decoding accepts exactly what a correct encoder produces, so every
 * name has one spelling: input is printable US-ASCII (0x20-0x7e) only;
 * "&-" is '&'; a base64 run ("&" modified-base64 "-", ',' for '/', no
 * '=' padding) must hold UTF-16 that decodes to characters that could
 * not be written directly (no printable ASCII: "&AC4-" for '.' or
 * "&AC8-" for '/' are refused), no U+0000, only paired surrogates, no
 * leftover bits (fewer than 6, all zero), and must not directly follow
 * another run ("&AOQ-&APY-" is "&AOQA9g-" spelt twice).
 *
 * Errors: IMAP_MUTF7_ERROR / IMAP_MUTF7_ERROR_INVALID, fixed English text
 * that never echoes the input.
 */
#ifndef KR_IMAP_MUTF7_H
#define KR_IMAP_MUTF7_H

#include <glib.h>

G_BEGIN_DECLS

#define IMAP_MUTF7_ERROR (imap_mutf7_error_quark())
GQuark imap_mutf7_error_quark(void);

typedef enum {
    IMAP_MUTF7_ERROR_INVALID,
} ImapMutf7Error;

char *imap_mutf7_decode(const char *s, gsize len, GError **error);
char *imap_mutf7_encode(const char *utf8, gsize len, GError **error);
gboolean imap_mutf7_valid(const char *s, gsize len);

G_END_DECLS

#endif
