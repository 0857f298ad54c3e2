/* SPDX-License-Identifier: MIT */
/*
 * imap-mailbox.c - mailbox names: decode/encode, safety check, LIST
 * patterns. See imap-mailbox.h for the rules.
 *
 *   imap_mailbox_decode, imap_mailbox_encode, imap_mailbox_check
 *   imap_mailbox_is_inbox, imap_list_pattern, imap_list_match
 */
#include "imap-mailbox.h"
#include "imap-mutf7.h"

#include <string.h>

G_DEFINE_QUARK(imap - mailbox - error - quark, imap_mailbox_error)

static gboolean
fail(GError **error, const char *why)
{
    g_set_error_literal(error, IMAP_MAILBOX_ERROR, IMAP_MAILBOX_ERROR_INVALID, why);
    return FALSE;
}

/* Does the first component of s (length len) spell INBOX in any case? */
static gboolean
first_is_inbox(const char *s, gsize len)
{
    return len >= 5 && g_ascii_strncasecmp(s, "INBOX", 5) == 0 && (len == 5 || s[5] == IMAP_SEP);
}

gboolean
imap_mailbox_is_inbox(const char *name)
{
    return g_ascii_strcasecmp(name, "INBOX") == 0;
}

char *
imap_mailbox_decode(const char *wire, gsize len, gboolean utf8_mode, GError **error)
{
    char *name;
    if (memchr(wire, '\0', len)) {
        fail(error, "Mailbox name contains NUL");
        return NULL;
    }
    if (utf8_mode) {
        if (!g_utf8_validate_len(wire, len, NULL)) {
            fail(error, "Mailbox name is not valid UTF-8");
            return NULL;
        }
        name = g_utf8_normalize(wire, (gssize)len, G_NORMALIZE_NFC);
        if (!name) {
            fail(error, "Mailbox name is not valid UTF-8");
            return NULL;
        }
    } else {
        GError *e = NULL;
        name = imap_mutf7_decode(wire, len, &e);
        if (!name) {
            g_error_free(e);
            fail(error, "Mailbox name is not valid modified UTF-7");
            return NULL;
        }
    }
    if (first_is_inbox(name, strlen(name)))
        memcpy(name, "INBOX", 5);
    return name;
}

char *
imap_mailbox_encode(const char *name, gboolean utf8_mode)
{
    if (utf8_mode)
        return g_strdup(name);
    char *w = imap_mutf7_encode(name, strlen(name), NULL);
    return w ? w : g_strdup(""); /* only for invalid UTF-8, which a store never holds */
}

static gboolean
bad_char(gunichar c)
{
    return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029;
}

gboolean
imap_mailbox_check(const char *name, guint flags, GError **error)
{
    gsize len = strlen(name);
    if (len == 0)
        return fail(error, "Mailbox name is empty");
    if (len > IMAP_MAILBOX_MAX)
        return fail(error, "Mailbox name is too long");
    if (!g_utf8_validate_len(name, len, NULL))
        return fail(error, "Mailbox name is not valid UTF-8");
    if (name[0] == IMAP_SEP)
        return fail(error, "Mailbox name starts with the hierarchy separator");
    if (name[len - 1] == IMAP_SEP)
        return fail(error, "Mailbox name ends with the hierarchy separator");
    for (const char *p = name; *p; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);
        if (bad_char(c))
            return fail(error, "Mailbox name contains a control character");
        if ((flags & IMAP_MAILBOX_CREATE) && (c == '%' || c == '*'))
            return fail(error, "Mailbox name contains a wildcard character");
    }
    const char *comp = name;
    for (;;) {
        const char *end = strchr(comp, IMAP_SEP);
        gsize clen = end ? (gsize)(end - comp) : strlen(comp);
        if (clen == 0)
            return fail(error, "Mailbox name has an empty component");
        if ((clen == 1 && comp[0] == '.') || (clen == 2 && comp[0] == '.' && comp[1] == '.'))
            return fail(error, "Mailbox name has a '.' or '..' component");
        if (comp[0] == '~')
            return fail(error, "Mailbox name component starts with '~'");
        if (clen > IMAP_MAILBOX_COMPONENT_MAX)
            return fail(error, "Mailbox name component is too long");
        if (!end)
            break;
        comp = end + 1;
    }
    return TRUE;
}

char *
imap_list_pattern(const char *reference, const char *pattern)
{
    if (!reference || !*reference || pattern[0] == IMAP_SEP)
        return g_strdup(pattern);
    return g_strconcat(reference, pattern, NULL);
}

gboolean
imap_list_match(const char *pattern, const char *name)
{
    gsize m = strlen(pattern), k = strlen(name);
    /* The INBOX part of a name matches case-insensitively. */
    gsize fold = first_is_inbox(name, k) ? 5 : 0;
    g_autofree guint8 *cur = g_new0(guint8, k + 1);
    g_autofree guint8 *nxt = g_new0(guint8, k + 1);
    cur[0] = 1;
    for (gsize i = 0; i < m; i++) {
        char c = pattern[i];
        if (c == '*' || c == '%') {
            nxt[0] = cur[0];
            for (gsize j = 1; j <= k; j++)
                nxt[j] = cur[j] || (nxt[j - 1] && (c == '*' || name[j - 1] != IMAP_SEP));
        } else {
            nxt[0] = 0;
            for (gsize j = 1; j <= k; j++) {
                char n = name[j - 1];
                gboolean eq = j - 1 < fold ? g_ascii_tolower(c) == g_ascii_tolower(n) : c == n;
                nxt[j] = cur[j - 1] && eq;
            }
        }
        guint8 *t = cur;
        cur = nxt;
        nxt = t;
    }
    return cur[k] != 0;
}
