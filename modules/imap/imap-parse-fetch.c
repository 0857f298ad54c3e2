/* SPDX-License-Identifier: MIT */
/*
 * imap-parse-fetch.c - FETCH and STORE arguments (RFC 9051 6.4.5/6.4.6,
 * RFC 3501 RFC822.*, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED/
 * UNCHANGEDSINCE), and the name a FETCH reply uses for a section.
 *
 *   imap_parse_fetch_args()     seqset SP (macro / att / "(" atts ")") [SP modifiers]
 *   imap_parse_store_args()     seqset [SP (UNCHANGEDSINCE n)] SP [+-]FLAGS[.SILENT] SP flags
 *   imap_fetch_section_name()   "BODY[1.2.HEADER.FIELDS (From To)]<0>"
 *
 * Macros: ALL = FLAGS INTERNALDATE RFC822.SIZE ENVELOPE; FAST = FLAGS
 * INTERNALDATE RFC822.SIZE; FULL = ALL + BODY. RFC822 is BODY[] (sets
 * \Seen), RFC822.HEADER is BODY.PEEK[HEADER], RFC822.TEXT is BODY[TEXT];
 * each keeps its legacy name for the reply. UID FETCH implies UID, and
 * CHANGEDSINCE implies MODSEQ (RFC 7162 3.1.4.1); VANISHED needs both
 * UID FETCH and CHANGEDSINCE (RFC 7162 3.2.6). A section has at most
 * MAX_PARTS part numbers; MIME needs a part number; BINARY sections take
 * part numbers only.
 */
#include "imap-lex.h"
#include "imap-format.h"

#include <string.h>

#define MAX_PARTS    32
#define MAX_SECTIONS 256

/* Digits, bounded, without the atom check of imap_lex_number ('.' follows). */
static gboolean
digits(ImapLex *lx, guint64 max, guint64 *v)
{
    gsize start = lx->pos;
    guint64 r = 0;
    while (lx->pos < lx->len && g_ascii_isdigit(lx->buf[lx->pos])) {
        guint d = lx->buf[lx->pos++] - '0';
        if (r > (max - d) / 10)
            return imap_lex_fail(lx, NULL, "Number too large");
        r = r * 10 + d;
    }
    if (lx->pos == start)
        return imap_lex_fail(lx, NULL, "Expected a number");
    *v = r;
    return TRUE;
}

/* [A-Za-z0-9.-] word, upper-cased into out (empty if too long). */
static void
word(ImapLex *lx, char *out, gsize outsz)
{
    gsize start = lx->pos;
    while (lx->pos < lx->len && (g_ascii_isalnum(lx->buf[lx->pos]) || lx->buf[lx->pos] == '.'))
        lx->pos++;
    gsize n = lx->pos - start;
    if (n >= outsz)
        n = 0;
    for (gsize i = 0; i < n; i++)
        out[i] = g_ascii_toupper(lx->buf[start + i]);
    out[n] = '\0';
}

static gboolean
field_name_ok(const char *s)
{
    if (!*s)
        return FALSE;
    for (; *s; s++)
        if ((guchar)*s < 33 || (guchar)*s > 126 || *s == ':')
            return FALSE;
    return TRUE;
}

static gboolean
header_list(ImapLex *lx, ImapFetchSection *sec)
{
    g_autoptr(GPtrArray) fields = g_ptr_array_new();
    if (!imap_lex_sp(lx) || !imap_lex_open(lx))
        return FALSE;
    do {
        char *f;
        if (!imap_lex_astring(lx, &f))
            return FALSE;
        if (!field_name_ok(f))
            return imap_lex_fail(lx, NULL, "Invalid header field name");
        g_ptr_array_add(fields, f);
    } while (imap_lex_try_sp(lx));
    if (!imap_lex_close(lx))
        return FALSE;
    return imap_lex_strv(lx, fields, &sec->fields);
}

/* "[" section-spec "]" */
static gboolean
section(ImapLex *lx, ImapFetchSection *sec)
{
    guint32 parts[MAX_PARTS];
    guint n = 0;
    if (!imap_lex_char(lx, '['))
        return FALSE;
    gboolean want_text = TRUE;
    if (g_ascii_isdigit(imap_lex_peek(lx))) {
        want_text = FALSE;
        for (;;) {
            guint64 v;
            if (!digits(lx, G_MAXUINT32, &v))
                return FALSE;
            if (v == 0)
                return imap_lex_fail(lx, NULL, "Invalid section part");
            if (n == MAX_PARTS)
                return imap_lex_fail(lx, "LIMIT", "Section nested too deeply");
            parts[n++] = (guint32)v;
            if (imap_lex_peek(lx) != '.')
                break;
            lx->pos++;
            if (!g_ascii_isdigit(imap_lex_peek(lx))) {
                want_text = TRUE;
                break;
            }
        }
    }
    sec->n_part = n;
    if (n) {
        sec->part = imap_arena_new0(lx->arena, guint32, n);
        memcpy(sec->part, parts, n * sizeof(guint32));
    }
    if (want_text && imap_lex_peek(lx) != ']') {
        char kw[24];
        if (sec->kind != IMAP_SECTION_BODY)
            return imap_lex_fail(lx, NULL, "Invalid BINARY section");
        word(lx, kw, sizeof kw);
        if (strcmp(kw, "HEADER") == 0)
            sec->text = IMAP_SECTION_HEADER;
        else if (strcmp(kw, "HEADER.FIELDS") == 0)
            sec->text = IMAP_SECTION_HEADER_FIELDS;
        else if (strcmp(kw, "HEADER.FIELDS.NOT") == 0)
            sec->text = IMAP_SECTION_HEADER_FIELDS_NOT;
        else if (strcmp(kw, "TEXT") == 0)
            sec->text = IMAP_SECTION_TEXT;
        else if (strcmp(kw, "MIME") == 0 && n > 0)
            sec->text = IMAP_SECTION_MIME;
        else
            return imap_lex_fail(lx, NULL, "Invalid section");
        if ((sec->text == IMAP_SECTION_HEADER_FIELDS ||
             sec->text == IMAP_SECTION_HEADER_FIELDS_NOT) &&
            !header_list(lx, sec))
            return FALSE;
    } else if (want_text && n > 0) {
        return imap_lex_fail(lx, NULL, "Invalid section"); /* "[1.]" */
    }
    return imap_lex_char(lx, ']');
}

/* "<" number64 "." nz-number64 ">" (RFC 9051) */
static gboolean
partial(ImapLex *lx, ImapFetchSection *sec)
{
    if (imap_lex_peek(lx) != '<')
        return TRUE;
    if (sec->kind == IMAP_SECTION_BINARY_SIZE)
        return imap_lex_fail(lx, NULL, "BINARY.SIZE takes no partial");
    lx->pos++;
    if (!digits(lx, G_MAXINT64, &sec->offset) || !imap_lex_char(lx, '.') ||
        !digits(lx, G_MAXINT64, &sec->length) || !imap_lex_char(lx, '>'))
        return FALSE;
    if (sec->length == 0)
        return imap_lex_fail(lx, NULL, "Invalid partial length");
    sec->partial = TRUE;
    return TRUE;
}

static gboolean
add_section(ImapLex *lx, GArray *secs, ImapFetchSection *sec, gboolean has_section)
{
    if (secs->len >= MAX_SECTIONS)
        return imap_lex_fail(lx, "LIMIT", "Too many FETCH items");
    if (has_section && (!section(lx, sec) || !partial(lx, sec)))
        return FALSE;
    g_array_append_val(secs, *sec);
    return TRUE;
}

static const struct {
    const char *name;
    guint item;
} simple_atts[] = {
    {"FLAGS", IMAP_FETCH_FLAGS},
    {"INTERNALDATE", IMAP_FETCH_INTERNALDATE},
    {"RFC822.SIZE", IMAP_FETCH_RFC822_SIZE},
    {"ENVELOPE", IMAP_FETCH_ENVELOPE},
    {"BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE},
    {"UID", IMAP_FETCH_UID},
    {"MODSEQ", IMAP_FETCH_MODSEQ},
};

static gboolean
fetch_att(ImapLex *lx, ImapFetchArgs *a, GArray *secs)
{
    char kw[24];
    word(lx, kw, sizeof kw);
    for (guint i = 0; i < G_N_ELEMENTS(simple_atts); i++)
        if (strcmp(kw, simple_atts[i].name) == 0) {
            a->items |= simple_atts[i].item;
            return TRUE;
        }
    ImapFetchSection sec = {0};
    gboolean bracket = imap_lex_peek(lx) == '[';
    if (strcmp(kw, "BODY") == 0) {
        if (!bracket) {
            a->items |= IMAP_FETCH_BODY;
            return TRUE;
        }
        return add_section(lx, secs, &sec, TRUE);
    }
    if (strcmp(kw, "BODY.PEEK") == 0 || strcmp(kw, "BINARY") == 0 ||
        strcmp(kw, "BINARY.PEEK") == 0 || strcmp(kw, "BINARY.SIZE") == 0) {
        if (!bracket)
            return imap_lex_fail(lx, NULL, "Missing section");
        sec.peek = strstr(kw, ".PEEK") != NULL;
        sec.kind = kw[1] == 'O'                     ? IMAP_SECTION_BODY
                   : strcmp(kw, "BINARY.SIZE") == 0 ? IMAP_SECTION_BINARY_SIZE
                                                    : IMAP_SECTION_BINARY;
        return add_section(lx, secs, &sec, TRUE);
    }
    if (strcmp(kw, "RFC822") == 0) {
        sec.legacy = "RFC822";
    } else if (strcmp(kw, "RFC822.HEADER") == 0) {
        sec.legacy = "RFC822.HEADER";
        sec.peek = TRUE;
        sec.text = IMAP_SECTION_HEADER;
    } else if (strcmp(kw, "RFC822.TEXT") == 0) {
        sec.legacy = "RFC822.TEXT";
        sec.text = IMAP_SECTION_TEXT;
    } else {
        return imap_lex_fail(lx, NULL, "Unknown FETCH item");
    }
    return add_section(lx, secs, &sec, FALSE);
}

static gboolean
fetch_modifiers(ImapLex *lx, ImapFetchArgs *a)
{
    if (!imap_lex_open(lx))
        return FALSE;
    do {
        char kw[16];
        if (!imap_lex_keyword(lx, kw, sizeof kw))
            return FALSE;
        if (strcmp(kw, "CHANGEDSINCE") == 0 && !a->changedsince_set) {
            if (!imap_lex_sp(lx) || !imap_lex_modseq(lx, TRUE, &a->changedsince))
                return FALSE;
            a->changedsince_set = TRUE;
        } else if (strcmp(kw, "VANISHED") == 0 && !a->vanished) {
            a->vanished = TRUE;
        } else {
            return imap_lex_fail(lx, NULL, "Unknown or repeated FETCH modifier");
        }
    } while (imap_lex_try_sp(lx));
    return imap_lex_close(lx);
}

gboolean
imap_parse_fetch_args(ImapLex *lx, ImapCommand *cmd)
{
    ImapFetchArgs *a = &cmd->u.fetch;
    g_autoptr(GArray) secs = g_array_new(FALSE, TRUE, sizeof(ImapFetchSection));
    if (!imap_lex_sp(lx) || !imap_lex_seqset(lx, &a->set) || !imap_lex_sp(lx))
        return FALSE;
    if (imap_lex_peek(lx) == '(') {
        if (!imap_lex_open(lx))
            return FALSE;
        do {
            if (!fetch_att(lx, a, secs))
                return FALSE;
        } while (imap_lex_try_sp(lx));
        if (!imap_lex_close(lx))
            return FALSE;
    } else {
        gsize save = lx->pos;
        char kw[8];
        word(lx, kw, sizeof kw);
        guint fast = IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_RFC822_SIZE;
        if (strcmp(kw, "FAST") == 0)
            a->items = fast;
        else if (strcmp(kw, "ALL") == 0)
            a->items = fast | IMAP_FETCH_ENVELOPE;
        else if (strcmp(kw, "FULL") == 0)
            a->items = fast | IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY;
        else {
            lx->pos = save;
            if (!fetch_att(lx, a, secs))
                return FALSE;
        }
    }
    if (imap_lex_try_sp(lx) && !fetch_modifiers(lx, a))
        return FALSE;
    if (a->vanished && (!cmd->uid || !a->changedsince_set))
        return imap_lex_fail(lx, NULL, "VANISHED needs UID FETCH and CHANGEDSINCE");
    if (cmd->uid)
        a->items |= IMAP_FETCH_UID;
    if (a->changedsince_set)
        a->items |= IMAP_FETCH_MODSEQ;
    a->n_sections = secs->len;
    if (secs->len) {
        a->sections = imap_arena_new0(lx->arena, ImapFetchSection, secs->len);
        memcpy(a->sections, secs->data, secs->len * sizeof(ImapFetchSection));
    }
    return TRUE;
}

gboolean
imap_parse_store_args(ImapLex *lx, ImapCommand *cmd)
{
    ImapStoreArgs *a = &cmd->u.store;
    if (!imap_lex_sp(lx) || !imap_lex_seqset(lx, &a->set) || !imap_lex_sp(lx))
        return FALSE;
    if (imap_lex_peek(lx) == '(') {
        char kw[16];
        if (!imap_lex_open(lx) || !imap_lex_keyword(lx, kw, sizeof kw))
            return FALSE;
        if (strcmp(kw, "UNCHANGEDSINCE") != 0)
            return imap_lex_fail(lx, NULL, "Unknown STORE modifier");
        if (!imap_lex_sp(lx) || !imap_lex_modseq(lx, TRUE, &a->unchangedsince) ||
            !imap_lex_close(lx) || !imap_lex_sp(lx))
            return FALSE;
        a->unchangedsince_set = TRUE;
    }
    int c = imap_lex_peek(lx);
    if (c == '+' || c == '-') {
        a->op = c == '+' ? IMAP_STORE_ADD : IMAP_STORE_REMOVE;
        lx->pos++;
    }
    char kw[16];
    word(lx, kw, sizeof kw);
    if (strcmp(kw, "FLAGS.SILENT") == 0)
        a->silent = TRUE;
    else if (strcmp(kw, "FLAGS") != 0)
        return imap_lex_fail(lx, NULL, "Expected FLAGS");
    if (!imap_lex_sp(lx))
        return FALSE;
    if (imap_lex_peek(lx) == '(')
        return imap_lex_flag_list(lx, FALSE, &a->flags);
    g_autoptr(GPtrArray) flags = g_ptr_array_new();
    do {
        char *f;
        if (!imap_lex_flag(lx, FALSE, &f))
            return FALSE;
        g_ptr_array_add(flags, f);
    } while (imap_lex_try_sp(lx));
    return imap_lex_strv(lx, flags, &a->flags);
}

void
imap_fetch_section_name(const ImapFetchSection *sec, GString *out)
{
    static const char *const texts[] = {"",     "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
                                        "TEXT", "MIME"};
    if (sec->legacy) {
        g_string_append(out, sec->legacy);
        return;
    }
    g_string_append(out, sec->kind == IMAP_SECTION_BODY     ? "BODY["
                         : sec->kind == IMAP_SECTION_BINARY ? "BINARY["
                                                            : "BINARY.SIZE[");
    for (guint i = 0; i < sec->n_part; i++)
        g_string_append_printf(out, i ? ".%u" : "%u", sec->part[i]);
    if (sec->text != IMAP_SECTION_ALL) {
        if (sec->n_part)
            g_string_append_c(out, '.');
        g_string_append(out, texts[sec->text]);
    }
    if (sec->fields) {
        g_string_append(out, " (");
        for (char **f = sec->fields; *f; f++) {
            if (f != sec->fields)
                g_string_append_c(out, ' ');
            imap_fmt_astring(out, *f, strlen(*f), 0);
        }
        g_string_append_c(out, ')');
    }
    g_string_append_c(out, ']');
    if (sec->partial)
        g_string_append_printf(out, "<%" G_GUINT64_FORMAT ">", sec->offset);
}
