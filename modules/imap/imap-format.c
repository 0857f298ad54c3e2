/* SPDX-License-Identifier: MIT */
/*
 * imap-format.c - IMAP response building blocks. See imap-format.h.
 *
 *   imap_fmt_astring, imap_fmt_string, imap_fmt_nstring
 *   imap_fmt_literal, imap_fmt_literal_header, imap_fmt_mailbox
 *   imap_fmt_flags, imap_fmt_flag_ok, imap_fmt_u64, imap_fmt_status, imap_fmt_text
 */
#include "imap-format.h"
#include "imap-lex.h"
#include "imap-mailbox.h"

#include <string.h>

#define MAX_ESCAPES 4

static gboolean
quotable(const char *s, gsize len, guint flags, guint *escapes_r)
{
    if (len > IMAP_FMT_QUOTED_MAX)
        return FALSE;
    guint escapes = 0;
    gboolean eight = FALSE;
    for (gsize i = 0; i < len; i++) {
        guchar c = (guchar)s[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return FALSE;
        if ((c == '"' || c == '\\') && ++escapes > MAX_ESCAPES)
            return FALSE;
        if (c >= 0x80)
            eight = TRUE;
    }
    if (eight && (!(flags & IMAP_FMT_UTF8) || !g_utf8_validate_len(s, len, NULL)))
        return FALSE;
    *escapes_r = escapes;
    return TRUE;
}

void
imap_fmt_literal_header(GString *out, guint64 len, gboolean binary)
{
    g_string_append_len(out, binary ? "~{" : "{", binary ? 2 : 1);
    imap_fmt_u64(out, len);
    g_string_append_len(out, "}\r\n", 3);
}

void
imap_fmt_literal(GString *out, const void *data, gsize len, gboolean binary)
{
    imap_fmt_literal_header(out, len, binary);
    g_string_append_len(out, data, (gssize)len);
}

void
imap_fmt_string(GString *out, const char *s, gsize len, guint flags)
{
    guint escapes = 0;
    if (!quotable(s, len, flags, &escapes)) {
        imap_fmt_literal(out, s, len, FALSE);
        return;
    }
    g_string_append_c(out, '"');
    if (escapes == 0) {
        g_string_append_len(out, s, (gssize)len);
    } else {
        for (gsize i = 0; i < len; i++) {
            if (s[i] == '"' || s[i] == '\\')
                g_string_append_c(out, '\\');
            g_string_append_c(out, s[i]);
        }
    }
    g_string_append_c(out, '"');
}

void
imap_fmt_astring(GString *out, const char *s, gsize len, guint flags)
{
    gboolean atom = len > 0 && len <= IMAP_FMT_QUOTED_MAX && !imap_lex_is(s, len, "NIL");
    for (gsize i = 0; atom && i < len; i++)
        atom = imap_is_astring_char((guchar)s[i]);
    if (atom)
        g_string_append_len(out, s, (gssize)len);
    else
        imap_fmt_string(out, s, len, flags);
}

void
imap_fmt_nstring(GString *out, const char *s, guint flags)
{
    if (!s)
        g_string_append(out, "NIL");
    else
        imap_fmt_string(out, s, strlen(s), flags);
}

void
imap_fmt_mailbox(GString *out, const char *name, gboolean utf8_mode)
{
    g_autofree char *w = imap_mailbox_encode(name, utf8_mode);
    imap_fmt_astring(out, w, strlen(w), utf8_mode ? IMAP_FMT_UTF8 : 0);
}

static gboolean
flag_ok(const char *f)
{
    if (strcmp(f, "\\*") == 0) /* flag-perm, for PERMANENTFLAGS */
        return TRUE;
    if (*f == '\\')
        f++;
    if (!*f)
        return FALSE;
    for (; *f; f++)
        if (!imap_is_atom_char((guchar)*f))
            return FALSE;
    return TRUE;
}

gboolean
imap_fmt_flag_ok(const char *flag)
{
    return flag_ok(flag);
}

void
imap_fmt_u64(GString *out, guint64 v)
{
    char buf[20];
    guint n = sizeof buf;
    do {
        buf[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    imap_put(out, buf + n, sizeof buf - n);
}

void
imap_fmt_flags(GString *out, const char *const *flags, gssize n)
{
    gboolean first = TRUE;
    g_string_append_c(out, '(');
    for (gssize i = 0; flags && (n < 0 ? flags[i] != NULL : i < n); i++) {
        if (!flag_ok(flags[i]))
            continue;
        if (!first)
            g_string_append_c(out, ' ');
        g_string_append(out, flags[i]);
        first = FALSE;
    }
    g_string_append_c(out, ')');
}

void
imap_fmt_text(GString *out, const char *text)
{
    for (const guchar *p = (const guchar *)text; *p; p++)
        g_string_append_c(out, *p < 0x20 || *p == 0x7f ? ' ' : (char)*p);
}

void
imap_fmt_status(GString *out, const char *tag, const char *status, const char *code,
                const char *text)
{
    g_string_append(out, tag ? tag : "*");
    g_string_append_c(out, ' ');
    g_string_append(out, status);
    if (code) {
        g_string_append(out, " [");
        imap_fmt_text(out, code);
        g_string_append_c(out, ']');
    }
    g_string_append_c(out, ' ');
    imap_fmt_text(out, text && *text ? text : "Completed");
    g_string_append(out, "\r\n");
}
