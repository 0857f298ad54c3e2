/* SPDX-License-Identifier: MIT */
/*
 * imap-mutf7.c - modified UTF-7 encode/decode with strict validation.
 * See imap-mutf7.h for the rules.
 *
 *   imap_mutf7_decode, imap_mutf7_encode, imap_mutf7_valid
 */
#include "imap-mutf7.h"

#include <string.h>

G_DEFINE_QUARK(imap - mutf7 - error - quark, imap_mutf7_error)

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

static gboolean
fail(GError **error, const char *why)
{
    g_set_error(error, IMAP_MUTF7_ERROR, IMAP_MUTF7_ERROR_INVALID, "invalid modified UTF-7: %s",
                why);
    return FALSE;
}

/* Decode one base64 run starting after '&' at s[*i]; appends to out. */
static gboolean
decode_run(const unsigned char *s, gsize len, gsize *i, GString *out, GError **error)
{
    guint32 bits = 0;
    guint nbits = 0, units = 0;
    gunichar high = 0;
    gsize p = *i;
    while (p < len && s[p] != '-') {
        int v = b64val(s[p]);
        if (v < 0)
            return fail(error, "bad character in base64 run");
        bits = (bits << 6) | (guint32)v;
        nbits += 6;
        p++;
        if (nbits < 16)
            continue;
        nbits -= 16;
        gunichar u = (bits >> nbits) & 0xffff;
        bits &= (1u << nbits) - 1;
        units++;
        if (high) {
            if (u < 0xdc00 || u > 0xdfff)
                return fail(error, "unpaired surrogate");
            g_string_append_unichar(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
            high = 0;
        } else if (u >= 0xd800 && u <= 0xdbff) {
            high = u;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            return fail(error, "unpaired surrogate");
        } else if (u == 0) {
            return fail(error, "NUL character");
        } else if (u >= 0x20 && u <= 0x7e) {
            return fail(error, "encoded printable ASCII character");
        } else {
            g_string_append_unichar(out, u);
        }
    }
    if (p >= len)
        return fail(error, "unterminated base64 run");
    if (high)
        return fail(error, "unpaired surrogate");
    if (units == 0 || nbits >= 6 || bits != 0)
        return fail(error, "non-canonical base64 run");
    *i = p + 1;
    return TRUE;
}

char *
imap_mutf7_decode(const char *str, gsize len, GError **error)
{
    const unsigned char *s = (const unsigned char *)str;
    g_autoptr(GString) out = g_string_sized_new(len + 8);
    gboolean after_run = FALSE;
    gsize i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x20 || c > 0x7e) {
            fail(error, "character outside printable US-ASCII");
            return NULL;
        }
        if (c != '&') {
            g_string_append_c(out, (char)c);
            i++;
            after_run = FALSE;
            continue;
        }
        i++;
        if (i < len && s[i] == '-') {
            g_string_append_c(out, '&');
            i++;
            after_run = FALSE;
            continue;
        }
        if (after_run) {
            fail(error, "adjacent base64 runs");
            return NULL;
        }
        if (!decode_run(s, len, &i, out, error))
            return NULL;
        after_run = TRUE;
    }
    return g_string_free(g_steal_pointer(&out), FALSE);
}

gboolean
imap_mutf7_valid(const char *s, gsize len)
{
    g_autofree char *d = imap_mutf7_decode(s, len, NULL);
    return d != NULL;
}

static void
flush_run(GString *out, guint32 *bits, guint *nbits)
{
    if (*nbits > 0)
        g_string_append_c(out, b64chars[(*bits << (6 - *nbits)) & 0x3f]);
    g_string_append_c(out, '-');
    *bits = 0;
    *nbits = 0;
}

static void
put_unit(GString *out, guint32 *bits, guint *nbits, guint32 u)
{
    *bits = (*bits << 16) | u;
    *nbits += 16;
    while (*nbits >= 6) {
        *nbits -= 6;
        g_string_append_c(out, b64chars[(*bits >> *nbits) & 0x3f]);
    }
    *bits &= (1u << *nbits) - 1;
}

char *
imap_mutf7_encode(const char *utf8, gsize len, GError **error)
{
    if (!g_utf8_validate_len(utf8, len, NULL)) {
        fail(error, "input is not UTF-8");
        return NULL;
    }
    g_autoptr(GString) out = g_string_sized_new(len + 8);
    gboolean in_run = FALSE;
    guint32 bits = 0;
    guint nbits = 0;
    for (const char *p = utf8; p < utf8 + len; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);
        if (c == 0) {
            fail(error, "NUL character");
            return NULL;
        }
        if (c >= 0x20 && c <= 0x7e) {
            if (in_run) {
                flush_run(out, &bits, &nbits);
                in_run = FALSE;
            }
            g_string_append_c(out, (char)c);
            if (c == '&')
                g_string_append_c(out, '-');
            continue;
        }
        if (!in_run) {
            g_string_append_c(out, '&');
            in_run = TRUE;
        }
        if (c >= 0x10000) {
            c -= 0x10000;
            put_unit(out, &bits, &nbits, 0xd800 + (c >> 10));
            put_unit(out, &bits, &nbits, 0xdc00 + (c & 0x3ff));
        } else {
            put_unit(out, &bits, &nbits, c);
        }
    }
    if (in_run)
        flush_run(out, &bits, &nbits);
    return g_string_free(g_steal_pointer(&out), FALSE);
}
