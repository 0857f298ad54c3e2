/* SPDX-License-Identifier: MIT */
/*
 * sendmail-addr.c - addresses for the sendmail command: pull the
 * addr-specs out of To/Cc/Bcc header values (sendmail -t) and check
 * envelope addresses. Pure functions over strings, unit-tested in
 * t/test-sendmail-addr.c.
 *
 *   sendmail_parse_address_list(value, out)   RFC 5322 address-list ->
 *                                             addr-specs (display names,
 *                                             comments, groups dropped)
 *   sendmail_address_ok(addr)                 acceptable envelope address
 *
 * The parser takes an unfolded header value. It understands quoted
 * strings, nested comments with quoted pairs, angle addresses (an
 * obsolete source route "<@a,@b:user@c>" is dropped), groups
 * ("undisclosed-recipients:;") and empty list elements. Whitespace
 * around '.' and '@' in a bare addr-spec is dropped (obsolete syntax);
 * words separated by spaces without angle brackets ("John Doe j@x") are
 * an error, as are unbalanced quotes, comments and brackets.
 */
#include "queue.h"

static gboolean
is_atext(unsigned char c)
{
    return g_ascii_isalnum(c) || c >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Skip a comment starting at *p == '('; FALSE if unterminated. */
static gboolean
skip_comment(const char **pp)
{
    const char *p = *pp;
    int depth = 0;
    for (; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        else if (*p == '(')
            depth++;
        else if (*p == ')' && --depth == 0) {
            *pp = p + 1;
            return TRUE;
        }
    }
    return FALSE;
}

/* Copy a quoted string starting at *p == '"' (quotes included). */
static gboolean
copy_quoted(const char **pp, GString *out)
{
    const char *p = *pp;
    g_string_append_c(out, '"');
    for (p++; *p; p++) {
        if (*p == '\\' && p[1]) {
            g_string_append_c(out, *p++);
            g_string_append_c(out, *p);
        } else if (*p == '"') {
            g_string_append_c(out, '"');
            *pp = p + 1;
            return TRUE;
        } else {
            g_string_append_c(out, *p);
        }
    }
    return FALSE;
}

/* An addr-spec collected with single spaces where whitespace was: drop
 * the spaces next to '.' and '@'; any other space is an error. */
static gboolean
finish_spec(GString *cur, GPtrArray *out)
{
    GString *s = g_string_new(NULL);
    gboolean ok = TRUE, quoted = FALSE;
    for (gsize i = 0; i < cur->len; i++) {
        char c = cur->str[i];
        if (c == '"' && (i == 0 || cur->str[i - 1] != '\\'))
            quoted = !quoted;
        if (c == ' ' && !quoted) {
            char prev = s->len ? s->str[s->len - 1] : '.';
            char next = i + 1 < cur->len ? cur->str[i + 1] : '.';
            if (prev == '.' || prev == '@' || next == '.' || next == '@' || next == ' ')
                continue;
            ok = FALSE;
            break;
        }
        g_string_append_c(s, c);
    }
    if (ok && s->len > 0)
        g_ptr_array_add(out, g_string_free(s, FALSE));
    else
        g_string_free(s, TRUE);
    g_string_truncate(cur, 0);
    return ok;
}

/* The inside of <...>: drop comments, whitespace and a source route. */
static gboolean
angle_spec(const char *start, const char *end, GPtrArray *out)
{
    g_autofree char *inner = g_strndup(start, (gsize)(end - start));
    const char *p = inner;
    while (g_ascii_isspace(*p))
        p++;
    if (*p == '@') { /* obsolete route: @a,@b:user@c */
        const char *colon = strchr(p, ':');
        if (!colon)
            return FALSE;
        p = colon + 1;
    }
    g_autoptr(GString) cur = g_string_new(NULL);
    while (*p) {
        if (*p == '(') {
            if (!skip_comment(&p))
                return FALSE;
        } else if (*p == '"') {
            if (!copy_quoted(&p, cur))
                return FALSE;
        } else if (g_ascii_isspace(*p)) {
            if (cur->len && cur->str[cur->len - 1] != ' ')
                g_string_append_c(cur, ' ');
            p++;
        } else {
            g_string_append_c(cur, *p++);
        }
    }
    while (cur->len && cur->str[cur->len - 1] == ' ')
        g_string_truncate(cur, cur->len - 1);
    if (cur->len == 0)
        return TRUE; /* "<>": nobody */
    return finish_spec(cur, out);
}

gboolean
sendmail_parse_address_list(const char *value, GPtrArray *out)
{
    g_autoptr(GString) cur = g_string_new(NULL);
    gboolean in_group = FALSE, had_angle = FALSE;
    const char *p = value;
    for (;;) {
        char c = *p;
        if (c == '(') {
            if (!skip_comment(&p))
                return FALSE;
            continue;
        }
        if (c == '"') {
            if (had_angle || !copy_quoted(&p, cur))
                return FALSE;
            continue;
        }
        if (c == '<') {
            /* The words before were a display name. */
            const char *q = p + 1;
            gboolean quoted = FALSE;
            for (; *q && (quoted || *q != '>'); q++) {
                if (*q == '\\' && q[1])
                    q++;
                else if (*q == '"')
                    quoted = !quoted;
            }
            if (*q != '>' || had_angle || !angle_spec(p + 1, q, out))
                return FALSE;
            had_angle = TRUE;
            g_string_truncate(cur, 0);
            p = q + 1;
            continue;
        }
        if (c == ':' && !in_group && !had_angle) {
            in_group = TRUE; /* cur was the group's display name */
            g_string_truncate(cur, 0);
            p++;
            continue;
        }
        if (c == ',' || c == ';' || c == '\0') {
            while (cur->len && cur->str[cur->len - 1] == ' ')
                g_string_truncate(cur, cur->len - 1);
            if (!had_angle && cur->len && !finish_spec(cur, out))
                return FALSE;
            g_string_truncate(cur, 0);
            had_angle = FALSE;
            if (c == ';') {
                if (!in_group)
                    return FALSE;
                in_group = FALSE;
            }
            if (c == '\0')
                return TRUE; /* an unclosed group is tolerated */
            p++;
            continue;
        }
        if (g_ascii_isspace(c)) {
            if (cur->len && cur->str[cur->len - 1] != ' ')
                g_string_append_c(cur, ' ');
            p++;
            continue;
        }
        if (c == '>' || had_angle)
            return FALSE; /* stray '>' or text after <addr> */
        g_string_append_c(cur, c);
        p++;
    }
}

static gboolean
dot_atom_ok(const char *s, gsize len)
{
    if (len == 0 || s[0] == '.' || s[len - 1] == '.')
        return FALSE;
    for (gsize i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return FALSE;
        } else if (!is_atext((unsigned char)s[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
quoted_local_ok(const char *s, gsize len)
{
    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return FALSE;
    for (gsize i = 1; i + 1 < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            if (++i + 1 >= len)
                return FALSE;
        } else if (c == '"') {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
domain_ok(const char *d, gsize len)
{
    if (len == 0 || len > 255)
        return FALSE;
    if (d[0] == '[') /* address literal */
        return len > 2 && d[len - 1] == ']' && !memchr(d + 1, '[', len - 2) &&
               !memchr(d + 1, ']', len - 2) && !memchr(d, '\\', len);
    gsize label = 0;
    for (gsize i = 0; i < len; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (label == 0)
                return FALSE;
            label = 0;
        } else if (g_ascii_isalnum(c) || c == '-' || c == '_' || c >= 0x80) {
            if (++label > 63)
                return FALSE;
        } else {
            return FALSE;
        }
    }
    return label > 0;
}

gboolean
sendmail_address_ok(const char *addr)
{
    if (!addr || !*addr)
        return FALSE;
    gsize len = strlen(addr);
    if (len > 320 || !g_utf8_validate(addr, (gssize)len, NULL))
        return FALSE;
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return FALSE;
    const char *at = strrchr(addr, '@');
    gsize llen = at ? (gsize)(at - addr) : len;
    if (llen == 0 || llen > 64)
        return FALSE;
    if (!dot_atom_ok(addr, llen) && !quoted_local_ok(addr, llen))
        return FALSE;
    return !at || domain_ok(at + 1, len - llen - 1);
}
