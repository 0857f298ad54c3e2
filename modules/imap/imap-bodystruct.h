/* SPDX-License-Identifier: MIT */
/*
 * imap-bodystruct.h - ENVELOPE, BODY and BODYSTRUCTURE text from a plain
 * C description of a message, so the IMAP module (or a store's cache)
 * can build it once, e.g. from GMime, and keep the serialised text.
 *
 *   imap_fmt_envelope()        ImapEnvelope -> "(date subject (from) ...)"
 *   imap_fmt_bodystructure()   ImapBodyPart tree -> BODY (extended = FALSE)
 *                              or BODYSTRUCTURE (extended = TRUE) text
 *
 * THE DESCRIPTION. Strings are NUL-terminated; NULL means NIL (or the
 * default named below). Header strings are the raw, unfolded header value
 * (RFC 2047 words left encoded); 8-bit text goes out as a literal unless
 * IMAP_FMT_UTF8 is given (imap-format.h). Nothing is freed or kept.
 *
 *   ImapAddress  one address: display name, source route (adl), local
 *                part (mailbox), domain (host). A group (RFC 5322 3.4) is
 *                a start marker {NULL, NULL, "group name", NULL}, its
 *                members, then an end marker {NULL, NULL, NULL, NULL}
 *                (RFC 3501 7.4.2).
 *   ImapEnvelope an empty address list is NIL. When n_sender or
 *                n_reply_to is 0 the From list is used (RFC 3501 7.4.2).
 *   ImapBodyPart type/subtype (NULL: "text"/"plain"), parameters,
 *                Content-ID, -Description, -Transfer-Encoding (NULL:
 *                "7BIT"), size in octets of the encoded body, lines (for
 *                text/ and message/rfc822 or message/global), and for
 *                BODYSTRUCTURE the MD5, disposition with its parameters,
 *                languages (NULL-terminated) and location. A multipart has
 *                its parts as `children` linked through `next`; a
 *                message/rfc822 (or /global) has `envelope` and its one
 *                body as `children`.
 *
 * Robustness: a multipart without parts and a message/rfc822 without a
 * body get an empty text/plain part, and parts nested deeper than
 * IMAP_BODY_MAX_DEPTH are cut off the same way, so the output is always
 * valid syntax and bounded in recursion.
 */
#ifndef KR_IMAP_BODYSTRUCT_H
#define KR_IMAP_BODYSTRUCT_H

#include <glib.h>

G_BEGIN_DECLS

#define IMAP_BODY_MAX_DEPTH 64

typedef struct {
    const char *name;
    const char *value;
} ImapParam;

typedef struct {
    const char *name;
    const char *adl;
    const char *mailbox;
    const char *host;
} ImapAddress;

typedef struct {
    const char *date;
    const char *subject;
    const ImapAddress *from, *sender, *reply_to, *to, *cc, *bcc;
    guint n_from, n_sender, n_reply_to, n_to, n_cc, n_bcc;
    const char *in_reply_to;
    const char *message_id;
} ImapEnvelope;

typedef struct ImapBodyPart ImapBodyPart;
struct ImapBodyPart {
    const char *type;
    const char *subtype;
    const ImapParam *params;
    guint n_params;
    const char *id;
    const char *description;
    const char *encoding;
    guint64 size;
    guint64 lines;
    const char *md5;
    const char *disposition;
    const ImapParam *disp_params;
    guint n_disp_params;
    const char *const *language;
    const char *location;
    const ImapEnvelope *envelope;
    const ImapBodyPart *children;
    const ImapBodyPart *next;
};

void imap_fmt_envelope(GString *out, const ImapEnvelope *env, guint flags);
void imap_fmt_bodystructure(GString *out, const ImapBodyPart *part, gboolean extended, guint flags);

G_END_DECLS

#endif
