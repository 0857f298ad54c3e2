/* SPDX-License-Identifier: MIT */
/*
 * smtp-client-proto.c - pure protocol pieces of the SMTP client: reply
 * parsing, EHLO capabilities, command formatting, dot-stuffing, AUTH
 * encodings. See smtp-client-proto.h; unit tests in t/test-smtp-client.c.
 */
#include <kurir/kurir.h>
#include "smtp-client-proto.h"
#include "smtp-parse.h"
#include <string.h>

/* ---- replies ---- */

void
smtpc_reply_reader_init(SmtpcReplyReader *r, gsize max_line, guint max_lines)
{
    memset(r, 0, sizeof *r);
    r->max_line = max_line;
    r->max_lines = max_lines;
    r->text = g_string_new(NULL);
}

void
smtpc_reply_reader_clear(SmtpcReplyReader *r)
{
    if (r->text)
        g_string_free(r->text, TRUE);
    r->text = NULL;
}

static void
reader_reset(SmtpcReplyReader *r)
{
    r->code = 0;
    r->n_lines = 0;
    r->ecode[0] = 0;
    g_string_truncate(r->text, 0);
}

void
smtpc_reply_clear(SmtpcReply *reply)
{
    g_free(reply->text);
    memset(reply, 0, sizeof *reply);
}

/* Length of an enhanced status code "c.sss.ddd" at s (followed by a space
 * or the end), 0 if there is none. */
static gsize
ecode_len(const char *s, gsize len)
{
    gsize i = 0;
    if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        gsize n = 0;
        while (i < len && g_ascii_isdigit(s[i]) && n < 4)
            i++, n++;
        if (n == 0 || n > 3)
            return 0;
        if (part == 0) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
    }
    if (i < len && s[i] != ' ')
        return 0;
    return i;
}

SmtpcReplyStatus
smtpc_reply_feed(SmtpcReplyReader *r, const char *buf, gsize len, gsize *consumed_r,
                 SmtpcReply *reply_r, GError **error)
{
    gsize off = 0;
    *consumed_r = 0;
    for (;;) {
        gsize avail = len - off;
        const char *line = buf + off;
        const char *nl = memchr(line, '\n', MIN(avail, r->max_line));
        if (!nl) {
            *consumed_r = off;
            if (avail >= r->max_line) {
                g_set_error(error, SMTPC_ERROR, 0, "reply line longer than %zu octets",
                            r->max_line);
                reader_reset(r);
                return SMTPC_REPLY_BAD;
            }
            return SMTPC_REPLY_MORE;
        }
        gsize n = (gsize)(nl - line);
        off += n + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n < 3 || !g_ascii_isdigit(line[0]) || line[0] < '2' || line[0] > '5' ||
            !g_ascii_isdigit(line[1]) || line[1] > '5' || !g_ascii_isdigit(line[2]) ||
            (n > 3 && line[3] != ' ' && line[3] != '-')) {
            *consumed_r = off;
            g_set_error(error, SMTPC_ERROR, 0, "malformed reply line");
            reader_reset(r);
            return SMTPC_REPLY_BAD;
        }
        guint code = (guint)((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
        if (r->n_lines > 0 && code != r->code) {
            *consumed_r = off;
            g_set_error(error, SMTPC_ERROR, 0, "reply code changed inside a multi-line reply");
            reader_reset(r);
            return SMTPC_REPLY_BAD;
        }
        if (r->n_lines >= r->max_lines) {
            *consumed_r = off;
            g_set_error(error, SMTPC_ERROR, 0, "reply longer than %u lines", r->max_lines);
            reader_reset(r);
            return SMTPC_REPLY_BAD;
        }
        r->code = code;
        gboolean last = n == 3 || line[3] == ' ';
        const char *t = n > 4 ? line + 4 : "";
        gsize tl = n > 4 ? n - 4 : 0;
        gsize el = ecode_len(t, tl);
        if (el > 0 && t[0] == line[0]) {
            if (r->n_lines == 0) {
                memcpy(r->ecode, t, el);
                r->ecode[el] = 0;
            }
            t += el;
            tl -= el;
            while (tl > 0 && *t == ' ')
                t++, tl--;
        }
        if (r->n_lines > 0)
            g_string_append_c(r->text, '\n');
        for (gsize i = 0; i < tl; i++) {
            guchar c = (guchar)t[i];
            g_string_append_c(r->text, c < 0x20 || c == 0x7f ? '?' : (char)c);
        }
        r->n_lines++;
        if (last) {
            *consumed_r = off;
            reply_r->code = r->code;
            g_strlcpy(reply_r->ecode, r->ecode, sizeof reply_r->ecode);
            reply_r->n_lines = r->n_lines;
            reply_r->text = g_strndup(r->text->str, r->text->len);
            reader_reset(r);
            return SMTPC_REPLY_DONE;
        }
    }
}

char *
smtpc_reply_oneline(const SmtpcReply *reply)
{
    char *s = g_strdup(reply->text ? reply->text : "");
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return s;
}

const char *
smtpc_reply_status(const SmtpcReply *reply)
{
    char cls = (char)('0' + reply->code / 100);
    if (reply->ecode[0] == cls)
        return reply->ecode;
    return cls == '2' ? "2.0.0" : cls == '4' ? "4.0.0" : "5.0.0";
}

/* ---- EHLO ---- */

void
smtpc_caps_parse(const char *text, SmtpcCaps *caps)
{
    memset(caps, 0, sizeof *caps);
    g_auto(GStrv) lines = g_strsplit(text ? text : "", "\n", -1);
    for (guint i = 1; lines[0] && lines[i]; i++) { /* line 0: "host greeting" */
        g_auto(GStrv) w = g_strsplit_set(g_strstrip(lines[i]), " =", -1);
        if (!w[0] || !*w[0])
            continue;
        const char *k = w[0];
        if (!g_ascii_strcasecmp(k, "PIPELINING"))
            caps->ext |= SMTPC_EXT_PIPELINING;
        else if (!g_ascii_strcasecmp(k, "8BITMIME"))
            caps->ext |= SMTPC_EXT_8BITMIME;
        else if (!g_ascii_strcasecmp(k, "SMTPUTF8"))
            caps->ext |= SMTPC_EXT_SMTPUTF8;
        else if (!g_ascii_strcasecmp(k, "DSN"))
            caps->ext |= SMTPC_EXT_DSN;
        else if (!g_ascii_strcasecmp(k, "STARTTLS"))
            caps->ext |= SMTPC_EXT_STARTTLS;
        else if (!g_ascii_strcasecmp(k, "CHUNKING"))
            caps->ext |= SMTPC_EXT_CHUNKING;
        else if (!g_ascii_strcasecmp(k, "BINARYMIME"))
            caps->ext |= SMTPC_EXT_BINARYMIME;
        else if (!g_ascii_strcasecmp(k, "ENHANCEDSTATUSCODES"))
            caps->ext |= SMTPC_EXT_ENHANCED;
        else if (!g_ascii_strcasecmp(k, "SIZE")) {
            caps->ext |= SMTPC_EXT_SIZE;
            if (w[1] && *w[1]) {
                char *end = NULL;
                guint64 v = g_ascii_strtoull(w[1], &end, 10);
                if (end && !*end)
                    caps->size_max = v;
            }
        } else if (!g_ascii_strcasecmp(k, "AUTH")) {
            caps->ext |= SMTPC_EXT_AUTH;
            for (guint j = 1; w[j]; j++) {
                if (!g_ascii_strcasecmp(w[j], "PLAIN"))
                    caps->auth |= SMTPC_AUTH_PLAIN;
                else if (!g_ascii_strcasecmp(w[j], "LOGIN"))
                    caps->auth |= SMTPC_AUTH_LOGIN;
            }
        }
    }
}

/* ---- commands ---- */

gboolean
smtpc_address_ok(const char *addr, gboolean null_ok, gboolean *utf8_r)
{
    gboolean quoted = FALSE, utf8 = FALSE;
    gsize n = strlen(addr);
    if (utf8_r)
        *utf8_r = FALSE;
    if (n == 0)
        return null_ok;
    if (n > 254 || !g_utf8_validate(addr, (gssize)n, NULL))
        return FALSE;
    for (gsize i = 0; i < n; i++) {
        guchar c = (guchar)addr[i];
        if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
            return FALSE;
        if (c >= 0x80)
            utf8 = TRUE;
        if (c == '"')
            quoted = !quoted;
        else if (c == '\\' && quoted && i + 1 < n)
            i++;
        else if (c == ' ' && !quoted)
            return FALSE;
    }
    if (quoted)
        return FALSE;
    if (utf8_r)
        *utf8_r = utf8;
    return TRUE;
}

static gboolean
is_ascii(const char *s)
{
    for (; *s; s++)
        if ((guchar)*s >= 0x80)
            return FALSE;
    return TRUE;
}

void
smtpc_mail_cmd(GString *out, const char *sender, const SmtpcMailParams *p)
{
    g_string_append_printf(out, "MAIL FROM:<%s>", sender);
    if ((p->ext & SMTPC_EXT_SIZE) && p->size > 0)
        g_string_append_printf(out, " SIZE=%" G_GUINT64_FORMAT, p->size);
    if (p->body && !g_ascii_strcasecmp(p->body, "8BITMIME") && (p->ext & SMTPC_EXT_8BITMIME))
        g_string_append(out, " BODY=8BITMIME");
    else if (p->body && !g_ascii_strcasecmp(p->body, "BINARYMIME") &&
             (p->ext & SMTPC_EXT_BINARYMIME))
        g_string_append(out, " BODY=BINARYMIME");
    else if (p->body && !g_ascii_strcasecmp(p->body, "7BIT") && (p->ext & SMTPC_EXT_8BITMIME))
        g_string_append(out, " BODY=7BIT");
    if (p->smtputf8 && (p->ext & SMTPC_EXT_SMTPUTF8))
        g_string_append(out, " SMTPUTF8");
    if (p->ext & SMTPC_EXT_DSN) {
        if (p->ret && !g_ascii_strcasecmp(p->ret, "FULL"))
            g_string_append(out, " RET=FULL");
        else if (p->ret && !g_ascii_strcasecmp(p->ret, "HDRS"))
            g_string_append(out, " RET=HDRS");
        if (p->envid && *p->envid && is_ascii(p->envid) && strlen(p->envid) <= 100) {
            g_string_append(out, " ENVID=");
            smtp_xtext_encode(out, p->envid, strlen(p->envid));
        }
    }
    g_string_append(out, "\r\n");
}

void
smtpc_rcpt_cmd(GString *out, const char *rcpt, gboolean dsn, unsigned notify, const char *orcpt)
{
    g_string_append_printf(out, "RCPT TO:<%s>", rcpt);
    if (dsn && notify) {
        if (notify & KR_NOTIFY_NEVER) {
            g_string_append(out, " NOTIFY=NEVER");
        } else {
            const char *sep = " NOTIFY=";
            static const struct {
                unsigned bit;
                const char *name;
            } names[] = {{KR_NOTIFY_SUCCESS, "SUCCESS"},
                         {KR_NOTIFY_FAILURE, "FAILURE"},
                         {KR_NOTIFY_DELAY, "DELAY"}};
            for (guint i = 0; i < G_N_ELEMENTS(names); i++)
                if (notify & names[i].bit) {
                    g_string_append_printf(out, "%s%s", sep, names[i].name);
                    sep = ",";
                }
        }
    }
    const char *semi = orcpt ? strchr(orcpt, ';') : NULL;
    if (dsn && semi && semi > orcpt && semi[1] && is_ascii(orcpt) && strlen(orcpt) <= 500) {
        g_string_append(out, " ORCPT=");
        g_string_append_len(out, orcpt, semi - orcpt);
        g_string_append_c(out, ';');
        smtp_xtext_encode(out, semi + 1, strlen(semi + 1));
    }
    g_string_append(out, "\r\n");
}

/* ---- content ---- */

void
smtpc_dot_init(SmtpcDot *d)
{
    d->bol = TRUE;
    d->cr = FALSE;
    d->written = 0;
}

void
smtpc_dot_feed(SmtpcDot *d, GString *out, const char *buf, gsize len)
{
    gsize before = out->len;
    gsize i = 0;
    while (i < len) {
        char c = buf[i];
        if (d->cr) {
            /* CR LF, or a bare CR: either way a line end. */
            g_string_append(out, "\r\n");
            d->cr = FALSE;
            d->bol = TRUE;
            if (c == '\n') {
                i++;
                continue;
            }
        }
        if (c == '\r') {
            d->cr = TRUE;
            i++;
            continue;
        }
        if (c == '\n') {
            g_string_append(out, "\r\n");
            d->bol = TRUE;
            i++;
            continue;
        }
        if (d->bol && c == '.')
            g_string_append_c(out, '.');
        /* copy the rest of the line in one go */
        gsize j = i;
        while (j < len && buf[j] != '\r' && buf[j] != '\n')
            j++;
        g_string_append_len(out, buf + i, (gssize)(j - i));
        d->bol = FALSE;
        i = j;
    }
    d->written += out->len - before;
}

void
smtpc_dot_finish(SmtpcDot *d, GString *out)
{
    gsize before = out->len;
    if (d->cr) {
        g_string_append(out, "\r\n");
        d->cr = FALSE;
        d->bol = TRUE;
    }
    if (!d->bol)
        g_string_append(out, "\r\n");
    g_string_append(out, ".\r\n");
    d->bol = TRUE;
    d->written += out->len - before;
}

/* ---- AUTH ---- */

char *
smtpc_auth_plain(const char *user, const char *password)
{
    gsize ul = strlen(user), pl = strlen(password);
    gsize n = 1 + ul + 1 + pl;
    char *raw = g_malloc(n);
    raw[0] = 0;
    memcpy(raw + 1, user, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, password, pl);
    char *b64 = g_base64_encode((const guchar *)raw, n);
    memset(raw, 0, n);
    g_free(raw);
    return b64;
}
