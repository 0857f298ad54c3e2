/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-parse.c - pure SMTP protocol parsers for the smtp module
 *
 * SYNOPSIS
 *   #include "smtp-parse.h"   (the full list of functions is there)
 *
 *   line framing ....... smtp_line_init(), smtp_line_next()
 *   commands ........... smtp_cmd_parse(), smtp_cmd_name()
 *   MAIL/RCPT .......... smtp_parse_mail(), smtp_parse_rcpt(), smtp_parse_path(),
 *                        smtp_split_path_arg(), smtp_params_split(), smtp_xtext_*()
 *   DATA/BDAT .......... in smtp-parse-data.c
 *   replies ............ smtp_reply_append*(), smtp_parse_error_status(),
 *                        smtp_data_error_status()
 *   AUTH ............... in smtp-parse-auth.c
 *
 * DESCRIPTION
 *   Functions over caller-supplied buffers with explicit lengths and
 *   limits; nothing here reads a socket, allocates per byte, or keeps
 *   global state. Streaming parsers (line reader, DATA, BDAT checker)
 *   keep their state in a small caller-owned struct and give the same
 *   result whether input arrives whole or one byte at a time.
 *
 *   Addresses are data: shell metacharacters, quotes and backslashes in a
 *   local part are kept (or unquoted into SmtpAddress.local) and never
 *   interpreted. Control characters are refused everywhere.
 *
 * DIAGNOSTICS
 *   GError in SMTP_PARSE_ERROR; smtp_parse_error_status() maps it to a
 *   reply. Error texts are fixed and never quote client input.
 *   Programming errors (NULL buffers, bad reply codes) are g_return_if_fail.
 *
 * SEE ALSO
 *   RFC 5321, 6531, 3461, 3030, 1870, 4954, 4616; t/test-smtp-parse.c
 */
#include "smtp-parse.h"
#include <string.h>

G_DEFINE_QUARK(smtp - parse - error - quark, smtp_parse_error)

gboolean
smtp_parse_fail(GError **error, SmtpParseError code, const char *msg)
{
    g_set_error_literal(error, SMTP_PARSE_ERROR, code, msg);
    return FALSE;
}

gboolean
smtp_word_eq(const char *s, gsize len, const char *word)
{
    return strlen(word) == len && g_ascii_strncasecmp(s, word, len) == 0;
}

void
smtp_parse_error_status(const GError *error, SmtpCmd cmd, guint *code_r, const char **enhanced_r)
{
    guint code = 451;
    const char *enh = "4.3.0";

    if (error && error->domain == SMTP_PARSE_ERROR) {
        switch ((SmtpParseError)error->code) {
        case SMTP_PARSE_ERROR_LINE:
            code = 500, enh = "5.5.2";
            break;
        case SMTP_PARSE_ERROR_SYNTAX:
        case SMTP_PARSE_ERROR_AUTH:
            code = 501, enh = "5.5.2";
            break;
        case SMTP_PARSE_ERROR_ADDRESS:
            code = 501, enh = cmd == SMTP_CMD_MAIL ? "5.1.7" : "5.1.3";
            break;
        case SMTP_PARSE_ERROR_NEED_SMTPUTF8:
            code = 553, enh = "5.6.7";
            break;
        case SMTP_PARSE_ERROR_PARAM_UNKNOWN:
            code = 555, enh = "5.5.4";
            break;
        case SMTP_PARSE_ERROR_PARAM:
            code = 501, enh = "5.5.4";
            break;
        }
    }
    *code_r = code;
    *enhanced_r = enh;
}

/* ---- line framing ---- */

void
smtp_line_init(SmtpLineReader *r, gsize max)
{
    g_return_if_fail(max >= 2);
    r->max = max;
    r->skipping = FALSE;
}

SmtpLineStatus
smtp_line_next(SmtpLineReader *r, const char *buf, gsize len, const char **line_r,
               gsize *line_len_r, gsize *consumed_r, guint *flags_r)
{
    gsize start = 0;
    const char *lf;

    *line_r = NULL;
    *line_len_r = 0;
    *flags_r = 0;
    if (r->skipping) {
        lf = memchr(buf, '\n', len);
        if (!lf) {
            *consumed_r = len;
            return SMTP_LINE_MORE;
        }
        start = (gsize)(lf - buf) + 1;
        r->skipping = FALSE;
    }
    gsize avail = len - start, scan = MIN(avail, r->max);
    /* The LF must lie within the first max octets: line + CRLF <= max. */
    lf = memchr(buf + start, '\n', scan);
    if (lf) {
        gsize n = (gsize)(lf - (buf + start));
        if (n > 0 && lf[-1] == '\r')
            n--;
        else
            *flags_r = SMTP_LINE_BARE_LF;
        *line_r = buf + start;
        *line_len_r = n;
        *consumed_r = (gsize)(lf - buf) + 1;
        return SMTP_LINE_OK;
    }
    if (avail < r->max) {
        *consumed_r = start;
        return SMTP_LINE_MORE;
    }
    lf = memchr(buf + start + scan, '\n', avail - scan);
    if (lf) {
        *consumed_r = (gsize)(lf - buf) + 1;
    } else {
        *consumed_r = len;
        r->skipping = TRUE;
    }
    return SMTP_LINE_TOO_LONG;
}

/* ---- commands ---- */

static const char *const cmd_names[] = {
    [SMTP_CMD_UNKNOWN] = "UNKNOWN", [SMTP_CMD_HELO] = "HELO",         [SMTP_CMD_EHLO] = "EHLO",
    [SMTP_CMD_MAIL] = "MAIL",       [SMTP_CMD_RCPT] = "RCPT",         [SMTP_CMD_DATA] = "DATA",
    [SMTP_CMD_BDAT] = "BDAT",       [SMTP_CMD_RSET] = "RSET",         [SMTP_CMD_NOOP] = "NOOP",
    [SMTP_CMD_QUIT] = "QUIT",       [SMTP_CMD_VRFY] = "VRFY",         [SMTP_CMD_EXPN] = "EXPN",
    [SMTP_CMD_HELP] = "HELP",       [SMTP_CMD_STARTTLS] = "STARTTLS", [SMTP_CMD_AUTH] = "AUTH",
};

const char *
smtp_cmd_name(SmtpCmd cmd)
{
    if ((guint)cmd >= G_N_ELEMENTS(cmd_names))
        return cmd_names[SMTP_CMD_UNKNOWN];
    return cmd_names[cmd];
}

gboolean
smtp_cmd_parse(const char *line, gsize len, SmtpCmdLine *cmd_r, GError **error)
{
    gsize i = 0, end = len;

    memset(cmd_r, 0, sizeof *cmd_r);
    for (gsize j = 0; j < len; j++) {
        guchar c = (guchar)line[j];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_LINE, "Control character in command");
    }
    while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        end--;
    if (end == 0)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_LINE, "Empty command");
    while (i < end && line[i] != ' ')
        i++;
    cmd_r->verb = line;
    cmd_r->verb_len = i;
    while (i < end && line[i] == ' ')
        i++;
    cmd_r->arg = line + i;
    cmd_r->arg_len = end - i;
    cmd_r->cmd = SMTP_CMD_UNKNOWN;
    for (guint c = 1; c < G_N_ELEMENTS(cmd_names); c++) {
        if (strlen(cmd_names[c]) == cmd_r->verb_len &&
            g_ascii_strncasecmp(line, cmd_names[c], cmd_r->verb_len) == 0) {
            cmd_r->cmd = (SmtpCmd)c;
            break;
        }
    }
    return TRUE;
}

/* ---- addresses ---- */

static gboolean
is_atext(guchar c)
{
    return g_ascii_isalnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Refuse controls (C0, DEL, and C1 in UTF-8); non-ASCII only with utf8
 * and only as valid UTF-8. */
static gboolean
check_bytes(const char *s, gsize len, gboolean utf8, gboolean *has8_r, GError **error)
{
    gboolean has8 = FALSE;

    for (gsize i = 0; i < len; i++) {
        guchar c = (guchar)s[i];
        if (c < 0x20 || c == 0x7f)
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Control character in address");
        if (c >= 0x80)
            has8 = TRUE;
    }
    if (has8) {
        if (!utf8)
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_NEED_SMTPUTF8,
                                   "Non-ASCII address requires SMTPUTF8");
        if (!g_utf8_validate_len(s, len, NULL))
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Invalid UTF-8 in address");
        for (const char *p = s; p < s + len; p = g_utf8_next_char(p)) {
            gunichar u = g_utf8_get_char(p);
            if (u >= 0x80 && u <= 0x9f)
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS,
                                       "Control character in address");
        }
    }
    if (has8_r)
        *has8_r = has8;
    return TRUE;
}

/* A domain name: sub-domain *("." sub-domain), LDH labels (or U-labels
 * with utf8), no leading/trailing hyphen, labels <= 63 octets. */
static gboolean
domain_ok(const char *s, gsize len, gboolean utf8, GError **error)
{
    gsize start = 0;
    gboolean label8 = FALSE;

    if (len == 0)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Empty domain");
    if (len > SMTP_MAX_DOMAIN)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Domain too long");
    for (gsize i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (i == start)
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Empty domain label");
            if (s[start] == '-' || s[i - 1] == '-')
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Bad domain label");
            if (!label8 && i - start > 63)
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Domain label too long");
            start = i + 1;
            label8 = FALSE;
            continue;
        }
        guchar c = (guchar)s[i];
        if (c >= 0x80 && utf8)
            label8 = TRUE;
        else if (!g_ascii_isalnum(c) && c != '-')
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Bad character in domain");
    }
    return TRUE;
}

static gboolean
ipv4_ok(const char *s, gsize len)
{
    gsize i = 0;
    guint parts = 0;

    for (;;) {
        gsize st = i;
        guint v = 0;
        while (i < len && g_ascii_isdigit(s[i]) && i - st < 3)
            v = v * 10 + (guint)(s[i++] - '0');
        if (i == st || v > 255)
            return FALSE;
        if (++parts == 4 || i == len)
            return parts == 4 && i == len;
        if (s[i++] != '.')
            return FALSE;
    }
}

/* RFC 5321 IPv6-addr (full, compressed, with trailing IPv4). */
static gboolean
ipv6_ok(const char *s, gsize len)
{
    guint groups = 0;
    gboolean dc = FALSE;
    gsize i = 0;

    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        dc = TRUE;
        i = 2;
    }
    while (i < len) {
        gsize j = i;
        while (j < len && s[j] != ':')
            j++;
        if (memchr(s + i, '.', j - i)) {
            if (j != len || !ipv4_ok(s + i, j - i))
                return FALSE;
            groups += 2;
            break;
        }
        if (j == i || j - i > 4)
            return FALSE;
        for (gsize k = i; k < j; k++)
            if (!g_ascii_isxdigit(s[k]))
                return FALSE;
        groups++;
        if (j == len)
            break;
        if (j + 1 < len && s[j + 1] == ':') {
            if (dc)
                return FALSE;
            dc = TRUE;
            i = j + 2;
        } else {
            i = j + 1;
            if (i == len)
                return FALSE;
        }
    }
    return dc ? groups <= 7 : groups == 8;
}

/* "[1.2.3.4]" or "[IPv6:...]"; general literals are refused. */
static gboolean
literal_ok(const char *s, gsize len, GError **error)
{
    if (len > SMTP_MAX_DOMAIN)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Domain too long");
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++, len -= 2;
        if (len >= 5 && g_ascii_strncasecmp(s, "IPv6:", 5) == 0) {
            if (ipv6_ok(s + 5, len - 5))
                return TRUE;
        } else if (ipv4_ok(s, len)) {
            return TRUE;
        }
    }
    return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Bad address literal");
}

gboolean
smtp_check_domain(const char *s, gsize len, gboolean allow_literal, gboolean utf8, GError **error)
{
    if (!check_bytes(s, len, utf8, NULL, error))
        return FALSE;
    if (len > 0 && s[0] == '[') {
        if (!allow_literal)
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Address literal not allowed");
        return literal_ok(s, len, error);
    }
    return domain_ok(s, len, utf8, error);
}

/* Local-part = Dot-string / Quoted-string. Returns octets used (as
 * written); the unquoted form goes to unq. */
static gboolean
parse_local(const char *s, gsize len, gsize *used_r, GString *unq, gboolean *quoted_r,
            GError **error)
{
    gsize i = 0;

    *quoted_r = len > 0 && s[0] == '"';
    if (*quoted_r) {
        for (i = 1; i < len; i++) {
            guchar c = (guchar)s[i];
            if (c == '"')
                break;
            if (c == '\\') {
                /* quoted-pairSMTP = "\" %d32-126 */
                if (i + 1 >= len || (guchar)s[i + 1] < 32 || (guchar)s[i + 1] > 126)
                    return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS,
                                           "Bad quoted local part");
                c = (guchar)s[++i];
            }
            g_string_append_c(unq, (char)c);
        }
        if (i >= len)
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS,
                                   "Unterminated quoted local part");
        i++;
    } else {
        for (;;) {
            gsize st = i;
            while (i < len && (is_atext((guchar)s[i]) || (guchar)s[i] >= 0x80))
                i++;
            if (i == st)
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Bad local part");
            if (i < len && s[i] == '.')
                i++;
            else
                break;
        }
        g_string_append_len(unq, s, (gssize)i);
    }
    if (unq->len == 0)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Empty local part");
    *used_r = i;
    return TRUE;
}

void
smtp_address_clear(SmtpAddress *addr)
{
    g_clear_pointer(&addr->address, g_free);
    g_clear_pointer(&addr->local, g_free);
    g_clear_pointer(&addr->domain, g_free);
    addr->flags = 0;
}

gboolean
smtp_parse_path(const char *path, gsize len, guint flags, SmtpAddress *addr_r, GError **error)
{
    gboolean utf8 = (flags & SMTP_PATH_SMTPUTF8) != 0, has8, quoted;
    gsize i = 0, n, used;

    memset(addr_r, 0, sizeof *addr_r);
    if (len > SMTP_MAX_PATH)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Path too long");
    if (!check_bytes(path, len, utf8, &has8, error))
        return FALSE;
    if (len < 2 || path[0] != '<' || path[len - 1] != '>')
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Address must be in angle brackets");
    const char *in = path + 1;
    n = len - 2;
    if (n == 0) {
        if (!(flags & SMTP_PATH_NULL_OK))
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Null address not allowed");
        addr_r->address = g_strdup("");
        addr_r->local = g_strdup("");
        addr_r->flags = SMTP_ADDR_NULL;
        return TRUE;
    }
    if (in[0] == '@') {
        /* A-d-l ":" : accepted, checked, dropped (RFC 5321 C.). */
        for (;;) {
            gsize st = ++i;
            while (i < n && in[i] != ',' && in[i] != ':')
                i++;
            if (i == n)
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Bad source route");
            if (!domain_ok(in + st, i - st, utf8, error))
                return FALSE;
            if (in[i++] == ':')
                break;
            if (i == n || in[i] != '@')
                return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Bad source route");
        }
        addr_r->flags |= SMTP_ADDR_ROUTE;
        in += i;
        n -= i;
    }
    g_autoptr(GString) unq = g_string_new(NULL);
    if (!parse_local(in, n, &used, unq, &quoted, error))
        return FALSE;
    if (used > SMTP_MAX_LOCAL)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Local part too long");
    if (quoted)
        addr_r->flags |= SMTP_ADDR_QUOTED;
    if (has8)
        addr_r->flags |= SMTP_ADDR_UTF8;
    if (used == n) {
        if (!(flags & SMTP_PATH_POSTMASTER_OK) || quoted || !smtp_word_eq(in, n, "postmaster"))
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Address lacks a domain");
        addr_r->flags |= SMTP_ADDR_POSTMASTER;
        addr_r->address = g_strndup(in, n);
        addr_r->local = g_string_free(g_steal_pointer(&unq), FALSE);
        return TRUE;
    }
    if (in[used] != '@')
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_ADDRESS, "Bad local part");
    const char *dom = in + used + 1;
    gsize dlen = n - used - 1;
    if (dlen > 0 && dom[0] == '[') {
        if (!literal_ok(dom, dlen, error))
            return FALSE;
        addr_r->flags |= SMTP_ADDR_LITERAL;
    } else if (!domain_ok(dom, dlen, utf8, error)) {
        return FALSE;
    }
    addr_r->address = g_strndup(in, n);
    addr_r->local = g_string_free(g_steal_pointer(&unq), FALSE);
    addr_r->domain = g_strndup(dom, dlen);
    return TRUE;
}

char *
smtp_address_lower_domain(const char *address)
{
    char *r = g_strdup(address);
    char *at = strrchr(r, '@');

    if (at)
        for (char *p = at + 1; *p; p++)
            *p = g_ascii_tolower(*p);
    return r;
}

/* ---- MAIL / RCPT ---- */

gboolean
smtp_split_path_arg(const char *arg, gsize len, const char *prefix, const char **path_r,
                    gsize *path_len_r, const char **params_r, gsize *params_len_r, GError **error)
{
    gsize pl = strlen(prefix), i, start;
    gboolean q = FALSE;

    if (len < pl || g_ascii_strncasecmp(arg, prefix, pl) != 0) {
        g_set_error(error, SMTP_PARSE_ERROR, SMTP_PARSE_ERROR_SYNTAX, "Syntax: %s<address>",
                    prefix);
        return FALSE;
    }
    /* Not RFC 5321, but common: "MAIL FROM: <a@b>". */
    i = pl;
    while (i < len && arg[i] == ' ')
        i++;
    if (i == len || arg[i] != '<')
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Address must be in angle brackets");
    for (start = i++; i < len; i++) {
        if (q) {
            if (arg[i] == '\\' && i + 1 < len)
                i++;
            else if (arg[i] == '"')
                q = FALSE;
        } else if (arg[i] == '"') {
            q = TRUE;
        } else if (arg[i] == '>') {
            break;
        }
    }
    if (i == len)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Unterminated address");
    i++;
    if (i < len && arg[i] != ' ')
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_SYNTAX, "Garbage after address");
    *path_r = arg + start;
    *path_len_r = i - start;
    *params_r = arg + i;
    *params_len_r = len - i;
    return TRUE;
}

GArray *
smtp_params_split(const char *s, gsize len, GError **error)
{
    g_autoptr(GArray) a = g_array_new(FALSE, FALSE, sizeof(SmtpParam));
    gsize i = 0;

    for (;;) {
        SmtpParam p = {0};
        while (i < len && s[i] == ' ')
            i++;
        if (i == len)
            break;
        /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
        p.key = s + i;
        if (!g_ascii_isalnum(s[i])) {
            smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad parameter keyword");
            return NULL;
        }
        while (i < len && (g_ascii_isalnum(s[i]) || s[i] == '-'))
            i++;
        p.key_len = (gsize)(s + i - p.key);
        if (i < len && s[i] == '=') {
            /* esmtp-value = 1*(%d33-60 / %d62-126) */
            p.value = s + ++i;
            while (i < len && (guchar)s[i] >= 33 && (guchar)s[i] <= 126 && s[i] != '=')
                i++;
            p.value_len = (gsize)(s + i - p.value);
            if (p.value_len == 0) {
                smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Empty parameter value");
                return NULL;
            }
        }
        if (i < len && s[i] != ' ') {
            smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad character in parameter");
            return NULL;
        }
        g_array_append_val(a, p);
    }
    return g_steal_pointer(&a);
}

char *
smtp_xtext_decode(const char *s, gsize len, GError **error)
{
    g_autoptr(GString) o = g_string_sized_new(len);

    for (gsize i = 0; i < len; i++) {
        guchar c = (guchar)s[i];
        if (c == '+') {
            int hi = i + 2 < len ? g_ascii_xdigit_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? g_ascii_xdigit_value(s[i + 2]) : -1;
            if (lo < 0) {
                smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad xtext encoding");
                return NULL;
            }
            c = (guchar)(hi << 4 | lo);
            i += 2;
            if (c < 0x20 || c == 0x7f) {
                smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Control character in xtext");
                return NULL;
            }
        } else if (c < 33 || c > 126 || c == '=') {
            smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad xtext character");
            return NULL;
        }
        g_string_append_c(o, (char)c);
    }
    if (!g_utf8_validate_len(o->str, o->len, NULL)) {
        smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Invalid UTF-8 in xtext");
        return NULL;
    }
    return g_string_free(g_steal_pointer(&o), FALSE);
}

void
smtp_xtext_encode(GString *out, const char *s, gsize len)
{
    for (gsize i = 0; i < len; i++) {
        guchar c = (guchar)s[i];
        if (c >= 33 && c <= 126 && c != '+' && c != '=')
            g_string_append_c(out, (char)c);
        else
            g_string_append_printf(out, "+%02X", c);
    }
}

enum { P_SIZE, P_BODY, P_SMTPUTF8, P_RET, P_ENVID, P_AUTH, P_NOTIFY, P_ORCPT };

static const struct {
    const char *name;
    guint ext;
    gboolean rcpt;
    gboolean value; /* a value is required (else forbidden) */
} known_params[] = {
    [P_SIZE] = {"SIZE", SMTP_EXT_SIZE, FALSE, TRUE},
    [P_BODY] = {"BODY", SMTP_EXT_8BITMIME | SMTP_EXT_BINARYMIME, FALSE, TRUE},
    [P_SMTPUTF8] = {"SMTPUTF8", SMTP_EXT_SMTPUTF8, FALSE, FALSE},
    [P_RET] = {"RET", SMTP_EXT_DSN, FALSE, TRUE},
    [P_ENVID] = {"ENVID", SMTP_EXT_DSN, FALSE, TRUE},
    [P_AUTH] = {"AUTH", SMTP_EXT_AUTH, FALSE, TRUE},
    [P_NOTIFY] = {"NOTIFY", SMTP_EXT_DSN, TRUE, TRUE},
    [P_ORCPT] = {"ORCPT", SMTP_EXT_DSN, TRUE, TRUE},
};

/* Index into known_params, or -1 with error. */
static int
param_lookup(const SmtpParam *p, gboolean rcpt, guint ext, guint *seen, GError **error)
{
    for (guint k = 0; k < G_N_ELEMENTS(known_params); k++) {
        if (!smtp_word_eq(p->key, p->key_len, known_params[k].name))
            continue;
        if (known_params[k].rcpt != rcpt || !(ext & known_params[k].ext))
            break;
        if (*seen & (1u << k)) {
            smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Duplicate parameter");
            return -1;
        }
        if (known_params[k].value != (p->value != NULL)) {
            smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM,
                            known_params[k].value ? "Parameter needs a value"
                                                  : "Parameter takes no value");
            return -1;
        }
        *seen |= 1u << k;
        return (int)k;
    }
    smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM_UNKNOWN, "Unsupported parameter");
    return -1;
}

gboolean
smtp_parse_u64(const char *s, gsize len, guint64 *v_r)
{
    guint64 v = 0;

    if (len == 0)
        return FALSE;
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isdigit(s[i]))
            return FALSE;
        guint d = (guint)(s[i] - '0');
        if (v > (G_MAXUINT64 - d) / 10)
            return FALSE;
        v = v * 10 + d;
    }
    *v_r = v;
    return TRUE;
}

void
smtp_mail_args_clear(SmtpMailArgs *a)
{
    smtp_address_clear(&a->addr);
    g_free(a->envid);
    memset(a, 0, sizeof *a);
}

void
smtp_rcpt_args_clear(SmtpRcptArgs *a)
{
    smtp_address_clear(&a->addr);
    g_free(a->orcpt_type);
    g_free(a->orcpt_addr);
    memset(a, 0, sizeof *a);
}

static gboolean
mail_param(const SmtpParam *p, int k, guint ext, SmtpMailArgs *out, GError **error)
{
    const char *v = p->value;
    gsize vl = p->value_len;

    switch (k) {
    case P_SIZE:
        out->size_given = TRUE;
        if (!smtp_parse_u64(v, vl, &out->size))
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad SIZE value");
        return TRUE;
    case P_BODY:
        if (smtp_word_eq(v, vl, "7BIT"))
            out->body = SMTP_BODY_7BIT;
        else if (smtp_word_eq(v, vl, "8BITMIME") && (ext & SMTP_EXT_8BITMIME))
            out->body = SMTP_BODY_8BITMIME;
        else if (smtp_word_eq(v, vl, "BINARYMIME") && (ext & SMTP_EXT_BINARYMIME))
            out->body = SMTP_BODY_BINARYMIME;
        else
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad BODY value");
        return TRUE;
    case P_SMTPUTF8:
        out->smtputf8 = TRUE;
        return TRUE;
    case P_RET:
        if (smtp_word_eq(v, vl, "FULL"))
            out->ret = SMTP_RET_FULL;
        else if (smtp_word_eq(v, vl, "HDRS"))
            out->ret = SMTP_RET_HDRS;
        else
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad RET value");
        return TRUE;
    case P_ENVID:
        if (vl > 100)
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "ENVID too long");
        out->envid = smtp_xtext_decode(v, vl, error);
        return out->envid != NULL;
    case P_AUTH: {
        /* RFC 4954 AUTH=<> or AUTH=xtext: checked, then ignored. */
        char *a = smtp_xtext_decode(v, vl, error);
        g_free(a);
        return a != NULL;
    }
    }
    g_assert_not_reached();
    return FALSE;
}

gboolean
smtp_parse_mail(const char *arg, gsize len, guint ext, SmtpMailArgs *out, GError **error)
{
    const char *path, *ps;
    gsize pl, psl;
    guint seen = 0;

    memset(out, 0, sizeof *out);
    if (!smtp_split_path_arg(arg, len, "FROM:", &path, &pl, &ps, &psl, error))
        return FALSE;
    g_autoptr(GArray) params = smtp_params_split(ps, psl, error);
    if (!params)
        return FALSE;
    for (guint i = 0; i < params->len; i++) {
        const SmtpParam *p = &g_array_index(params, SmtpParam, i);
        int k = param_lookup(p, FALSE, ext, &seen, error);
        if (k < 0 || !mail_param(p, k, ext, out, error))
            goto fail;
    }
    guint pflags = SMTP_PATH_NULL_OK | (out->smtputf8 ? SMTP_PATH_SMTPUTF8 : 0);
    if (!smtp_parse_path(path, pl, pflags, &out->addr, error))
        goto fail;
    return TRUE;
fail:
    smtp_mail_args_clear(out);
    return FALSE;
}

static gboolean
parse_notify(const char *v, gsize vl, guint *notify_r, GError **error)
{
    guint n = 0;
    gsize i = 0;

    for (;;) {
        gsize st = i;
        while (i < vl && v[i] != ',')
            i++;
        if (smtp_word_eq(v + st, i - st, "NEVER"))
            n |= SMTP_NOTIFY_NEVER;
        else if (smtp_word_eq(v + st, i - st, "SUCCESS"))
            n |= SMTP_NOTIFY_SUCCESS;
        else if (smtp_word_eq(v + st, i - st, "FAILURE"))
            n |= SMTP_NOTIFY_FAILURE;
        else if (smtp_word_eq(v + st, i - st, "DELAY"))
            n |= SMTP_NOTIFY_DELAY;
        else
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad NOTIFY value");
        if (i++ == vl)
            break;
    }
    if ((n & SMTP_NOTIFY_NEVER) && n != SMTP_NOTIFY_NEVER)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "NOTIFY=NEVER must stand alone");
    *notify_r = n;
    return TRUE;
}

static gboolean
parse_orcpt(const char *v, gsize vl, SmtpRcptArgs *out, GError **error)
{
    const char *semi = memchr(v, ';', vl);
    gsize tl = semi ? (gsize)(semi - v) : 0;

    if (vl > 500)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "ORCPT too long");
    if (tl == 0 || tl + 1 == vl)
        return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad ORCPT value");
    for (gsize i = 0; i < tl; i++)
        if (!is_atext((guchar)v[i]))
            return smtp_parse_fail(error, SMTP_PARSE_ERROR_PARAM, "Bad ORCPT address type");
    out->orcpt_addr = smtp_xtext_decode(semi + 1, vl - tl - 1, error);
    if (!out->orcpt_addr)
        return FALSE;
    out->orcpt_type = g_strndup(v, tl);
    return TRUE;
}

gboolean
smtp_parse_rcpt(const char *arg, gsize len, guint ext, gboolean smtputf8, SmtpRcptArgs *out,
                GError **error)
{
    const char *path, *ps;
    gsize pl, psl;
    guint seen = 0;

    memset(out, 0, sizeof *out);
    if (!smtp_split_path_arg(arg, len, "TO:", &path, &pl, &ps, &psl, error))
        return FALSE;
    g_autoptr(GArray) params = smtp_params_split(ps, psl, error);
    if (!params)
        return FALSE;
    for (guint i = 0; i < params->len; i++) {
        const SmtpParam *p = &g_array_index(params, SmtpParam, i);
        int k = param_lookup(p, TRUE, ext, &seen, error);
        if (k < 0)
            goto fail;
        if (k == P_NOTIFY && !parse_notify(p->value, p->value_len, &out->notify, error))
            goto fail;
        if (k == P_ORCPT && !parse_orcpt(p->value, p->value_len, out, error))
            goto fail;
    }
    guint pflags = SMTP_PATH_POSTMASTER_OK | (smtputf8 ? SMTP_PATH_SMTPUTF8 : 0);
    if (!smtp_parse_path(path, pl, pflags, &out->addr, error))
        goto fail;
    return TRUE;
fail:
    smtp_rcpt_args_clear(out);
    return FALSE;
}

/* ---- replies ---- */

static gboolean
enhanced_ok(guint code, const char *e)
{
    const char *p = e;

    if (p[0] != (char)('0' + code / 100) || p[1] != '.')
        return FALSE;
    p += 2;
    for (int part = 0; part < 2; part++) {
        const char *st = p;
        while (g_ascii_isdigit(*p))
            p++;
        if (p == st || p - st > 3 || *p != (part ? '\0' : '.'))
            return FALSE;
        p += part ? 0 : 1;
    }
    return TRUE;
}

static void
reply_line(GString *out, guint code, const char *enhanced, const char *text, gsize tlen,
           gboolean last)
{
    g_string_append_printf(out, "%03u", code);
    if (!enhanced && tlen == 0) {
        g_string_append(out, last ? "\r\n" : "-\r\n");
        return;
    }
    g_string_append_c(out, last ? ' ' : '-');
    if (enhanced) {
        g_string_append(out, enhanced);
        if (tlen)
            g_string_append_c(out, ' ');
    }
    for (gsize i = 0; i < tlen; i++) {
        guchar c = (guchar)text[i];
        g_string_append_c(out, c < 0x20 || c == 0x7f ? '?' : (char)c);
    }
    g_string_append(out, "\r\n");
}

void
smtp_reply_append_lines(GString *out, guint code, const char *enhanced, const char *const *lines,
                        gsize n_lines)
{
    g_return_if_fail(code >= 200 && code <= 599);
    g_return_if_fail(!enhanced || enhanced_ok(code, enhanced));
    if (n_lines == 0) {
        reply_line(out, code, enhanced, "", 0, TRUE);
        return;
    }
    for (gsize i = 0; i < n_lines; i++)
        reply_line(out, code, enhanced, lines[i], strlen(lines[i]), i + 1 == n_lines);
}

void
smtp_reply_append(GString *out, guint code, const char *enhanced, const char *text)
{
    g_return_if_fail(code >= 200 && code <= 599);
    g_return_if_fail(!enhanced || enhanced_ok(code, enhanced));
    const char *p = text ? text : "";

    for (;;) {
        const char *nl = strchr(p, '\n');
        gsize n = nl ? (gsize)(nl - p) : strlen(p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        reply_line(out, code, enhanced, p, n, nl == NULL);
        if (!nl)
            break;
        p = nl + 1;
    }
}

void
smtp_reply_appendf(GString *out, guint code, const char *enhanced, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    smtp_reply_append(out, code, enhanced, text);
}
