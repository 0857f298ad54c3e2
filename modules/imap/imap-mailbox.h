/* SPDX-License-Identifier: MIT */
/*
 * imap-mailbox.h - IMAP mailbox names: from the wire to UTF-8 and back,
 * the safety rules a store relies on, and LIST pattern matching.
 *
 *   imap_mailbox_decode()      wire name -> UTF-8 (mUTF-7 or UTF-8 mode)
 *   imap_mailbox_encode()      UTF-8 name -> wire name for responses
 *   imap_mailbox_check()       is a decoded name safe to give a store?
 *   imap_mailbox_is_inbox()    "INBOX" (any case)?
 *   imap_list_pattern()        reference + pattern -> one decoded pattern
 *   imap_list_match()          does a LIST pattern ('*', '%') match a name?
 *
 * NAMES. The hierarchy separator in the protocol is '/' (IMAP_SEP), for
 * every store: a store that keeps folders differently (Maildir++ uses
 * ".a.b") maps the components itself and refuses names it cannot hold.
 * Decoded names are UTF-8. Without UTF8=ACCEPT (IMAP4rev1), names on the
 * wire are strict modified UTF-7 (imap-mutf7.h) and 8-bit octets are
 * refused. In UTF-8 mode (UTF8=ACCEPT enabled, RFC 6855, or IMAP4rev2
 * where names are Net-Unicode, RFC 9051 5.1) the wire name is UTF-8
 * taken as is ('&' is just '&'), checked for validity and brought to
 * NFC. In both, a first component equal to "INBOX" in any case becomes
 * "INBOX" ("inbox/Sub" -> "INBOX/Sub").
 *
 * SAFETY (imap_mailbox_check, on the decoded name): 1..IMAP_MAILBOX_MAX
 * bytes of UTF-8; no leading or trailing '/', no empty component ("a//b");
 * no component "." or ".."; no component starting with '~' (home-dir
 * expansion in some stores); each component at most 255 bytes; no
 * control characters (U+0000-U+001F, U+007F-U+009F) nor U+2028/U+2029.
 * With IMAP_MAILBOX_CREATE also no '%' or '*' (LIST wildcards), which
 * the check applies to names a client creates or renames to.
 * Decode first, check second: "&AC4-" (an encoded '.') is already refused
 * by the decoder as non-canonical, and a decoded "a/../b" by the check.
 *
 * Errors: IMAP_MAILBOX_ERROR / IMAP_MAILBOX_ERROR_INVALID; fixed English
 * text, never the name itself, fit for "NO [CANNOT] <text>".
 */
#ifndef KR_IMAP_MAILBOX_H
#define KR_IMAP_MAILBOX_H

#include <glib.h>

G_BEGIN_DECLS

#define IMAP_SEP                   '/'
#define IMAP_SEP_STR               "/"
#define IMAP_MAILBOX_MAX           1024 /* bytes, decoded */
#define IMAP_MAILBOX_COMPONENT_MAX 255

#define IMAP_MAILBOX_ERROR (imap_mailbox_error_quark())
GQuark imap_mailbox_error_quark(void);

typedef enum {
    IMAP_MAILBOX_ERROR_INVALID,
} ImapMailboxError;

typedef enum {
    IMAP_MAILBOX_CREATE = 1 << 0, /* also refuse the LIST wildcards '%' and '*' */
} ImapMailboxCheckFlags;

char *imap_mailbox_decode(const char *wire, gsize len, gboolean utf8_mode, GError **error);
char *imap_mailbox_encode(const char *name, gboolean utf8_mode);
gboolean imap_mailbox_check(const char *name, guint flags, GError **error);
gboolean imap_mailbox_is_inbox(const char *name);
char *imap_list_pattern(const char *reference, const char *pattern);
gboolean imap_list_match(const char *pattern, const char *name);

G_END_DECLS

#endif
