/* SPDX-License-Identifier: MIT */
/*
 * imap-format.h - building IMAP responses: strings in the right form,
 * flag lists, mailbox names, literals and status lines.
 *
 *   imap_fmt_astring()        atom when safe, else quoted or literal
 *   imap_fmt_string()         quoted when safe, else literal
 *   imap_fmt_nstring()        NIL for NULL, else imap_fmt_string
 *   imap_fmt_literal()        "{n}\r\n" + data; "~{n}\r\n" + data (literal8)
 *   imap_fmt_literal_header() "{n}\r\n" alone, for data streamed after it
 *   imap_fmt_mailbox()        UTF-8 name -> wire (mUTF-7 unless UTF-8 mode) astring
 *   imap_fmt_flags()          "(\Seen $Forwarded \*)"; invalid flags are left out
 *   imap_fmt_u64()            a number in decimal (no printf)
 *   imap_put(), imap_putc()   append to a GString, inline when it has room
 *   imap_fmt_status()         "TAG OK [CODE] text\r\n" ("*" for a NULL tag)
 *   imap_fmt_text()           human text with CR, LF and controls made spaces
 *
 * CHOOSING THE FORM. A string goes quoted when it has no CR, LF or NUL,
 * is at most IMAP_FMT_QUOTED_MAX bytes, has at most 4 characters that
 * need a backslash ('"' and '\'), and is 7-bit -- or valid UTF-8 with
 * IMAP_FMT_UTF8 (UTF8=ACCEPT enabled / IMAP4rev2). Otherwise it goes as a
 * literal, which holds anything but NUL; data with NUL (BINARY) must use
 * literal8. An astring is an atom when it is 1..IMAP_FMT_QUOTED_MAX
 * ASTRING-CHARs and not "NIL" (in any case), so no reader can take it
 * for NIL.
 */
#ifndef KR_IMAP_FORMAT_H
#define KR_IMAP_FORMAT_H

#include <glib.h>
#include <string.h>

G_BEGIN_DECLS

#define IMAP_FMT_QUOTED_MAX 4096

enum {
    IMAP_FMT_UTF8 = 1 << 0, /* UTF-8 may go in quoted strings */
};

void imap_fmt_astring(GString *out, const char *s, gsize len, guint flags);
void imap_fmt_string(GString *out, const char *s, gsize len, guint flags);
void imap_fmt_nstring(GString *out, const char *s, guint flags);
void imap_fmt_literal(GString *out, const void *data, gsize len, gboolean binary);
void imap_fmt_literal_header(GString *out, guint64 len, gboolean binary);
void imap_fmt_mailbox(GString *out, const char *name, gboolean utf8_mode);
void imap_fmt_flags(GString *out, const char *const *flags, gssize n);
/* Is this a flag imap_fmt_flags() would send (an atom, or \ + atom)? */
gboolean imap_fmt_flag_ok(const char *flag);
void imap_fmt_u64(GString *out, guint64 v);

/* g_string_append_len() without the call when the string has room (the
 * per-message FETCH output is many small pieces). */
static inline void
imap_put(GString *out, const char *s, gsize n)
{
    if (out->len + n < out->allocated_len) {
        memcpy(out->str + out->len, s, n);
        out->len += n;
        out->str[out->len] = '\0';
    } else {
        g_string_append_len(out, s, (gssize)n);
    }
}

#define imap_putc(out, c) g_string_append_c(out, c)
void imap_fmt_status(GString *out, const char *tag, const char *status, const char *code,
                     const char *text);
void imap_fmt_text(GString *out, const char *text);

G_END_DECLS

#endif
