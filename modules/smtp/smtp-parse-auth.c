/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-parse-auth.c - pure parsers for SMTP AUTH (RFC 4954): the
 *   command's arguments, base64 and the PLAIN / LOGIN responses
 *
 * SYNOPSIS
 *   #include "smtp-parse.h"
 *
 *   smtp_parse_auth(), smtp_base64_decode(), smtp_sasl_plain_clear(),
 *   smtp_sasl_plain_decode(), smtp_sasl_text_decode()
 *
 * DESCRIPTION
 *   Every decoded length is bounded by the caller's maximum; secrets are
 *   wiped by smtp_sasl_plain_clear(). Errors are SMTP_PARSE_ERROR_AUTH
 *   with fixed texts that never quote the client's input.
 *
 * SEE ALSO
 *   RFC 4954, RFC 4616, RFC 4648; smtp-parse.c; t/test-smtp-parse.c
 */
#include "smtp-parse.h"
#include <string.h>

/* ---- AUTH ---- */

static gboolean
is_b64(guchar c)
{
    return g_ascii_isalnum(c) || c == '+' || c == '/' || c == '=';
}

gboolean
smtp_parse_auth(const char *arg, gsize len, SmtpAuthArgs *out, GError **error)
{
    gsize i = 0;

    memset(out, 0, sizeof *out);
    /* sasl-mech = 1*20(UPPER / DIGIT / "-" / "_"), matched case-insensitively */
    while (i < len && arg[i] != ' ') {
        if (!g_ascii_isalnum(arg[i]) && arg[i] != '-' && arg[i] != '_')
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Bad SASL mechanism name");
        i++;
    }
    if (i == 0 || i > 20)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Bad SASL mechanism name");
    out->mech_name = arg;
    out->mech_name_len = i;
    if (smtp_word_eq(arg, i, "PLAIN"))
        out->mech = SMTP_SASL_PLAIN;
    else if (smtp_word_eq(arg, i, "LOGIN"))
        out->mech = SMTP_SASL_LOGIN;
    while (i < len && arg[i] == ' ')
        i++;
    if (i == len)
        return TRUE;
    out->has_initial = TRUE;
    out->initial = arg + i;
    out->initial_len = len - i;
    for (gsize j = i; j < len; j++)
        if (!is_b64((guchar)arg[j]))
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Bad initial response");
    if (out->initial_len == 1 && arg[i] == '=') /* RFC 4954: "=" is empty */
        out->initial_len = 0;
    return TRUE;
}

static int
b64_value(guchar c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

gboolean
smtp_base64_decode(const char *in, gsize len, gsize max_out, char **out_r, gsize *out_len_r,
                   GError **error)
{
    const guchar *s = (const guchar *)in;
    gsize pad = 0, o = 0;

    *out_r = NULL;
    *out_len_r = 0;
    if (len % 4 != 0)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Invalid base64");
    if (len > 0 && s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    gsize olen = len / 4 * 3 - pad;
    if (olen > max_out)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Response too long");
    g_autofree char *out = g_malloc(olen + 1);
    for (gsize q = 0; q < len; q += 4) {
        gboolean lastq = q + 4 == len;
        int v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = b64_value(s[q + j]);
            /* '=' only in the padding positions of the last quantum */
            if (v[j] < 0 && !(lastq && s[q + j] == '=' && j >= 4 - (int)pad))
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Invalid base64");
        }
        out[o++] = (char)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0)
            out[o++] = (char)((v[1] & 0xf) << 4 | v[2] >> 2);
        if (v[3] >= 0)
            out[o++] = (char)((v[2] & 0x3) << 6 | v[3]);
    }
    out[o] = '\0';
    *out_len_r = o;
    *out_r = g_steal_pointer(&out);
    return TRUE;
}

void
smtp_sasl_plain_clear(SmtpSaslPlain *p)
{
    if (p->passwd)
        memset(p->passwd, 0, strlen(p->passwd));
    g_clear_pointer(&p->authzid, g_free);
    g_clear_pointer(&p->authcid, g_free);
    g_clear_pointer(&p->passwd, g_free);
}

gboolean
smtp_sasl_plain_decode(const char *data, gsize len, SmtpSaslPlain *out, GError **error)
{
    const char *end = data + len, *n1, *n2;

    memset(out, 0, sizeof *out);
    n1 = memchr(data, '\0', len);
    n2 = n1 ? memchr(n1 + 1, '\0', (gsize)(end - n1 - 1)) : NULL;
    if (!n2 || memchr(n2 + 1, '\0', (gsize)(end - n2 - 1)))
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Malformed PLAIN response");
    gsize zl = (gsize)(n1 - data), cl = (gsize)(n2 - n1 - 1), pl = (gsize)(end - n2 - 1);
    if (cl == 0 || pl == 0)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Empty PLAIN user name or password");
    if (zl > SMTP_SASL_MAX_FIELD || cl > SMTP_SASL_MAX_FIELD || pl > SMTP_SASL_MAX_FIELD)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "PLAIN field too long");
    if (!g_utf8_validate_len(data, zl, NULL) || !g_utf8_validate_len(n1 + 1, cl, NULL) ||
        !g_utf8_validate_len(n2 + 1, pl, NULL))
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Invalid UTF-8 in PLAIN response");
    out->authzid = zl ? g_strndup(data, zl) : NULL;
    out->authcid = g_strndup(n1 + 1, cl);
    out->passwd = g_strndup(n2 + 1, pl);
    return TRUE;
}

gboolean
smtp_sasl_text_decode(const char *b64, gsize len, gsize max, char **text_r, GError **error)
{
    char *t;
    gsize tl;

    *text_r = NULL;
    if (!smtp_base64_decode(b64, len, max, &t, &tl, error))
        return FALSE;
    if (memchr(t, '\0', tl) || !g_utf8_validate_len(t, tl, NULL)) {
        memset(t, 0, tl);
        g_free(t);
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_AUTH, "Invalid text in response");
    }
    *text_r = t;
    return TRUE;
}
