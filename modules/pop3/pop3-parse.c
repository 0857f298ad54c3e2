/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   pop3-parse.c - pure POP3 parsing and formatting (RFC 1939, 2449,
 *   5034, 4616): see pop3-parse.h.
 *
 * DESCRIPTION
 *   Nothing here does I/O or keeps global state: input is a buffer and an
 *   explicit limit, output is a struct or a GString. Keywords are
 *   case-insensitive; arguments are separated by single spaces (several
 *   are tolerated); numbers are 1..10 decimal digits. A NUL byte in a
 *   line is a syntax error.
 */
#include "pop3-parse.h"

#include <string.h>

Pop3Scan
pop3_reader_next(Pop3Reader *rd, const char *buf, gsize len, gsize max, const char **line,
                 gsize *line_len, gsize *consumed)
{
    const char *nl = memchr(buf, '\n', len);
    if (rd->discarding) {
        if (!nl) {
            *consumed = len;
            return POP3_NEED_MORE;
        }
        rd->discarding = FALSE;
        *consumed = (gsize)(nl - buf) + 1;
        return POP3_TOO_LONG;
    }
    if (!nl) {
        if (len > max + 1) { /* max bytes and a CR could still be a line */
            rd->discarding = TRUE;
            *consumed = len;
            return POP3_NEED_MORE;
        }
        *consumed = 0;
        return POP3_NEED_MORE;
    }
    gsize ll = (gsize)(nl - buf);
    *consumed = ll + 1;
    if (ll > 0 && buf[ll - 1] == '\r')
        ll--;
    if (ll > max)
        return POP3_TOO_LONG;
    *line = buf;
    *line_len = ll;
    return POP3_LINE;
}

static const struct {
    const char *name;
    Pop3CmdId id;
} commands[] = {
    {"USER", POP3_CMD_USER}, {"PASS", POP3_CMD_PASS}, {"QUIT", POP3_CMD_QUIT},
    {"STAT", POP3_CMD_STAT}, {"LIST", POP3_CMD_LIST}, {"RETR", POP3_CMD_RETR},
    {"DELE", POP3_CMD_DELE}, {"NOOP", POP3_CMD_NOOP}, {"RSET", POP3_CMD_RSET},
    {"TOP", POP3_CMD_TOP},   {"UIDL", POP3_CMD_UIDL}, {"CAPA", POP3_CMD_CAPA},
    {"STLS", POP3_CMD_STLS}, {"AUTH", POP3_CMD_AUTH}, {"APOP", POP3_CMD_APOP},
};

static gboolean
parse_num(const char *s, guint32 *v)
{
    gsize n = strlen(s);
    if (n == 0 || n > 10)
        return FALSE;
    guint64 x = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return FALSE;
        x = x * 10 + (guint64)(*p - '0');
    }
    if (x > G_MAXUINT32)
        return FALSE;
    *v = (guint32)x;
    return TRUE;
}

void
pop3_command_clear(Pop3Command *cmd)
{
    g_free(cmd->arg);
    g_free(cmd->arg2);
    memset(cmd, 0, sizeof *cmd);
}

gboolean
pop3_parse_command(const char *line, gsize len, Pop3Command *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    if (memchr(line, '\0', len)) {
        cmd->error = "NUL byte in command";
        return FALSE;
    }
    gsize kl = 0;
    while (kl < len && line[kl] != ' ')
        kl++;
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++)
        if (strlen(commands[i].name) == kl && g_ascii_strncasecmp(line, commands[i].name, kl) == 0)
            cmd->id = commands[i].id;
    if (cmd->id == POP3_CMD_UNKNOWN) {
        cmd->error = "Unknown command";
        return FALSE;
    }
    /* The rest of the line after the keyword's single space. */
    const char *rest = kl < len ? line + kl + 1 : line + len;
    gsize rlen = (gsize)(line + len - rest);
    g_autofree char *rs = g_strndup(rest, rlen);

    switch (cmd->id) {
    case POP3_CMD_USER:
    case POP3_CMD_PASS:
        /* One argument; for PASS spaces are part of the password. */
        if (rlen == 0) {
            cmd->error = "Missing argument";
            return FALSE;
        }
        if (cmd->id == POP3_CMD_USER && strchr(rs, ' ')) {
            cmd->error = "Too many arguments";
            return FALSE;
        }
        cmd->arg = g_steal_pointer(&rs);
        return TRUE;
    default:
        break;
    }

    g_auto(GStrv) argv = g_strsplit(rs, " ", -1);
    GPtrArray *args = g_ptr_array_new();
    for (char **a = argv; *a; a++)
        if (**a)
            g_ptr_array_add(args, *a);
    guint argc = args->len;
    const char *a1 = argc > 0 ? args->pdata[0] : NULL;
    const char *a2 = argc > 1 ? args->pdata[1] : NULL;
    g_ptr_array_free(args, TRUE);

    switch (cmd->id) {
    case POP3_CMD_QUIT:
    case POP3_CMD_STAT:
    case POP3_CMD_NOOP:
    case POP3_CMD_RSET:
    case POP3_CMD_CAPA:
    case POP3_CMD_STLS:
        if (argc != 0)
            cmd->error = "No arguments expected";
        break;
    case POP3_CMD_LIST:
    case POP3_CMD_UIDL:
        if (argc > 1)
            cmd->error = "Too many arguments";
        else if (argc == 1 && !(cmd->has_n1 = parse_num(a1, &cmd->n1)))
            cmd->error = "Invalid message number";
        break;
    case POP3_CMD_RETR:
    case POP3_CMD_DELE:
        if (argc != 1)
            cmd->error = argc ? "Too many arguments" : "Missing message number";
        else if (!(cmd->has_n1 = parse_num(a1, &cmd->n1)))
            cmd->error = "Invalid message number";
        break;
    case POP3_CMD_TOP:
        if (argc != 2)
            cmd->error = "TOP needs a message number and a line count";
        else if (!(cmd->has_n1 = parse_num(a1, &cmd->n1)))
            cmd->error = "Invalid message number";
        else if (!parse_num(a2, &cmd->n2))
            cmd->error = "Invalid line count";
        break;
    case POP3_CMD_AUTH:
        if (argc > 2)
            cmd->error = "Too many arguments";
        else {
            cmd->arg = a1 ? g_ascii_strup(a1, -1) : NULL;
            cmd->arg2 = g_strdup(a2);
        }
        break;
    case POP3_CMD_APOP:
    default:
        break;
    }
    if (cmd->error) {
        const char *e = cmd->error;
        Pop3CmdId id = cmd->id;
        pop3_command_clear(cmd);
        cmd->id = id;
        cmd->error = e;
        return FALSE;
    }
    return TRUE;
}

gboolean
pop3_sasl_plain(const char *b64, char **authz_r, char **authc_r, char **pass_r)
{
    gsize n = strlen(b64);
    if (n == 0 || n % 4 != 0)
        return FALSE;
    for (const char *p = b64; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '+' && *p != '/' && *p != '=')
            return FALSE;
    gsize len;
    guchar *raw = g_base64_decode(b64, &len);
    if (!raw)
        return FALSE;
    const char *s = (const char *)raw;
    const char *z1 = memchr(s, '\0', len);
    const char *z2 = z1 ? memchr(z1 + 1, '\0', len - (gsize)(z1 + 1 - s)) : NULL;
    gboolean ok = z1 && z2 && z2 > z1 + 1 && z2 + 1 < s + len &&
                  !memchr(z2 + 1, '\0', len - (gsize)(z2 + 1 - s));
    if (ok) {
        *authz_r = g_strndup(s, (gsize)(z1 - s));
        *authc_r = g_strndup(z1 + 1, (gsize)(z2 - z1 - 1));
        *pass_r = g_strndup(z2 + 1, len - (gsize)(z2 + 1 - s));
    }
    memset(raw, 0, len);
    g_free(raw);
    return ok;
}

gsize
pop3_stuff_buf(Pop3Stuff *st, const char *in, gsize len, char *out)
{
    const char *p = in, *end = in + len;
    char *o = out;
    while (p < end) {
        if (!st->mid_line && *p == '.')
            *o++ = '.';
        const char *nl = memchr(p, '\n', (gsize)(end - p));
        if (!nl) {
            memcpy(o, p, (gsize)(end - p));
            o += end - p;
            st->mid_line = TRUE;
            st->last_cr = end[-1] == '\r';
            break;
        }
        /* the byte before this LF in the stream */
        gboolean cr = nl > in ? nl[-1] == '\r' : st->last_cr;
        memcpy(o, p, (gsize)(nl - p));
        o += nl - p;
        if (!cr) {
            *o++ = '\r';
            st->crlf++;
        }
        *o++ = '\n';
        st->mid_line = FALSE;
        st->last_cr = FALSE;
        p = nl + 1;
    }
    st->crlf += len;
    return (gsize)(o - out);
}

gsize
pop3_stuff_end_buf(Pop3Stuff *st, char *out)
{
    char *o = out;
    if (st->mid_line) {
        if (!st->last_cr)
            *o++ = '\r';
        *o++ = '\n';
    }
    memcpy(o, ".\r\n", 3);
    o += 3;
    st->mid_line = FALSE;
    st->last_cr = FALSE;
    return (gsize)(o - out);
}

void
pop3_stuff(Pop3Stuff *st, const char *in, gsize len, GString *out)
{
    gsize old = out->len;
    g_string_set_size(out, old + 2 * len);
    g_string_truncate(out, old + pop3_stuff_buf(st, in, len, out->str + old));
}

void
pop3_stuff_end(Pop3Stuff *st, GString *out)
{
    char end[POP3_STUFF_END_MAX];
    g_string_append_len(out, end, (gssize)pop3_stuff_end_buf(st, end));
}

void
pop3_top_init(Pop3Top *t, guint lines)
{
    memset(t, 0, sizeof *t);
    t->lines = lines;
    t->line_empty = TRUE;
}

gsize
pop3_top_take(Pop3Top *t, const char *in, gsize len)
{
    if (t->done)
        return 0;
    for (gsize i = 0; i < len; i++) {
        char c = in[i];
        if (c != '\n') {
            if (c != '\r')
                t->line_empty = FALSE;
            continue;
        }
        /* end of a line */
        if (!t->in_body) {
            if (t->line_empty) {
                t->in_body = TRUE; /* the blank line after the header */
                if (t->lines == 0) {
                    t->done = TRUE;
                    return i + 1;
                }
            }
        } else if (++t->sent >= t->lines) {
            t->done = TRUE;
            return i + 1;
        }
        t->line_empty = TRUE;
    }
    return len;
}

gboolean
pop3_uidl_ok(const char *s)
{
    gsize n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x21 || *p > 0x7e)
            return FALSE;
    return n >= 1 && n <= 70;
}
