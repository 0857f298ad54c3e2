/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-search.c - SEARCH and UID SEARCH (RFC 9051 6.4.4) with every
 *   search key, CHARSET UTF-8 / US-ASCII, ESEARCH results (RFC 4731:
 *   RETURN (MIN MAX COUNT ALL); always for IMAP4rev2), MODSEQ (RFC 7162)
 *   and OLDER / YOUNGER (RFC 5032 WITHIN).
 *
 * SYNOPSIS
 *   imap_cmd_search(s)
 *
 * DESCRIPTION
 *   Keys are evaluated per message in the worker, cheapest first: flags,
 *   sizes, dates, UIDs and sequence numbers come from the store's view;
 *   only keys on headers and text open the message file, which GMime
 *   parses once per message (then dropped). String keys match
 *   case-insensitively (Unicode case folding) as substrings of the
 *   decoded text: header values with RFC 2047 words decoded, text parts
 *   decoded from their transfer encoding and charset. BEFORE / ON / SINCE
 *   use the internal date's day in UTC; SENTBEFORE / SENTON / SENTSINCE
 *   the Date: header's day in its own zone (the internal date when there
 *   is none). \Recent is never set: RECENT and NEW match nothing, OLD
 *   everything.
 *
 *   SEARCH without UID sends no expunges (RFC 9051 7.5.1). RETURN (SAVE)
 *   (SEARCHRES) is not offered and refused.
 */
#include "imap-session.h"

#include <gmime/gmime.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    ImapSession *s;
    const KrMailboxMsg *m;
    guint32 seq;
    gint64 now;
    gboolean tried; /* content loaded (or failed) */
    GMimeMessage *gm;
    char *body_text; /* decoded text parts, casefolded */
    gboolean body_done;
} Ctx;

static void
ctx_reset(Ctx *c)
{
    g_clear_object(&c->gm);
    g_clear_pointer(&c->body_text, g_free);
    c->tried = FALSE;
    c->body_done = FALSE;
}

static gboolean
is_content(ImapSearchKeyType t)
{
    switch (t) {
    case IMAP_SK_BCC:
    case IMAP_SK_BODY:
    case IMAP_SK_CC:
    case IMAP_SK_FROM:
    case IMAP_SK_SUBJECT:
    case IMAP_SK_TEXT:
    case IMAP_SK_TO:
    case IMAP_SK_HEADER:
    case IMAP_SK_SENTBEFORE:
    case IMAP_SK_SENTON:
    case IMAP_SK_SENTSINCE:
        return TRUE;
    default:
        return FALSE;
    }
}

/* Does the key (or a child) need the message content? */
static gboolean
needs_content(const ImapSearchKey *k)
{
    if (is_content(k->type))
        return TRUE;
    for (const ImapSearchKey *c = k->child; c; c = c->next)
        if (needs_content(c))
            return TRUE;
    return FALSE;
}

/* Put cheap children of every AND before the ones that read files, and
 * resolve sets; note MODSEQ keys. */
static void
prepare(ImapSearchKey *k, guint32 count, guint32 maxuid, gboolean *modseq)
{
    if (k->type == IMAP_SK_SEQSET)
        imap_seqset_resolve(k->set, count);
    else if (k->type == IMAP_SK_UID)
        imap_seqset_resolve(k->set, maxuid);
    else if (k->type == IMAP_SK_MODSEQ)
        *modseq = TRUE;
    ImapSearchKey *cheap = NULL, **ct = &cheap, *dear = NULL, **dt = &dear;
    for (ImapSearchKey *c = k->child, *next; c; c = next) {
        next = c->next;
        c->next = NULL;
        prepare(c, count, maxuid, modseq);
        if (k->type == IMAP_SK_AND && needs_content(c)) {
            *dt = c;
            dt = &c->next;
        } else {
            *ct = c;
            ct = &c->next;
        }
    }
    *ct = dear;
    k->child = cheap;
}

static gboolean
load(Ctx *c)
{
    if (c->tried)
        return c->gm != NULL;
    c->tried = TRUE;
    g_autoptr(GError) e = NULL;
    int fd = imap_g.ops->open_content(c->s->mb, c->m->uid, &e);
    if (fd < 0)
        return FALSE;
    GMimeStream *st = g_mime_stream_fs_new(fd); /* owns fd */
    GMimeParser *p = g_mime_parser_new_with_stream(st);
    c->gm = g_mime_parser_construct_message(p, NULL);
    g_object_unref(p);
    g_object_unref(st);
    return c->gm != NULL;
}

static char *
fold(const char *s)
{
    if (g_utf8_validate(s, -1, NULL))
        return g_utf8_casefold(s, -1);
    return g_ascii_strdown(s, -1);
}

static gboolean
has_text(const char *hay, const char *needle)
{
    if (!*needle)
        return TRUE;
    if (!hay)
        return FALSE;
    g_autofree char *h = fold(hay);
    g_autofree char *n = fold(needle);
    return strstr(h, n) != NULL;
}

static char *
header_text(GMimeHeader *h)
{
    const char *raw = g_mime_header_get_raw_value(h);
    if (!raw)
        return g_strdup("");
    g_autofree char *unfolded = g_mime_utils_header_unfold(raw);
    g_strstrip(unfolded);
    return g_mime_utils_header_decode_text(NULL, unfolded);
}

/* Any header named field (all of them with field NULL) contains str? */
static gboolean
header_has(Ctx *c, const char *field, const char *str)
{
    if (!load(c))
        return FALSE;
    GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(c->gm));
    int n = g_mime_header_list_get_count(hl);
    for (int i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        if (field && g_ascii_strcasecmp(g_mime_header_get_name(h), field) != 0)
            continue;
        g_autofree char *v = header_text(h);
        if (has_text(v, str))
            return TRUE;
    }
    return FALSE;
}

static void
collect_text(GMimeObject *parent, GMimeObject *part, gpointer ud)
{
    GString *out = ud;
    if (!GMIME_IS_TEXT_PART(part) || out->len > 64 * 1024 * 1024)
        return;
    g_autofree char *t = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
    if (t) {
        g_string_append(out, t);
        g_string_append_c(out, '\n');
    }
}

static gboolean
body_has(Ctx *c, const char *str)
{
    if (!load(c))
        return FALSE;
    if (!c->body_done) {
        c->body_done = TRUE;
        GString *all = g_string_new(NULL);
        g_mime_message_foreach(c->gm, collect_text, all);
        c->body_text = fold(all->str);
        g_string_free(all, TRUE);
    }
    if (!*str)
        return TRUE;
    g_autofree char *n = fold(str);
    return strstr(c->body_text, n) != NULL;
}

/* Days since 1970-01-01 of the Date: header (its own zone); or of the
 * internal date in UTC. */
static gint32
sent_day(Ctx *c)
{
    if (load(c)) {
        GDateTime *d = g_mime_message_get_date(c->gm);
        if (d) {
            int y, m, dd;
            g_date_time_get_ymd(d, &y, &m, &dd);
            return imap_days_from_civil(y, m, dd);
        }
    }
    return (gint32)(c->m->internal_date >= 0 ? c->m->internal_date / 86400
                                             : (c->m->internal_date - 86399) / 86400);
}

static gint32
internal_day(const KrMailboxMsg *m)
{
    return (gint32)(m->internal_date >= 0 ? m->internal_date / 86400
                                          : (m->internal_date - 86399) / 86400);
}

static gboolean
keyword_set(Ctx *c, const char *kw)
{
    if (g_ascii_strcasecmp(kw, "$Forwarded") == 0)
        return (c->m->flags & KR_FLAG_FORWARDED) != 0;
    const char *const *kws = imap_g.ops->keywords(c->s->mb);
    for (guint i = 0; kws && kws[i] && i < KR_STORE_MAX_KEYWORDS; i++)
        if (g_ascii_strcasecmp(kws[i], kw) == 0)
            return (c->m->keywords & (1u << i)) != 0;
    return FALSE;
}

static gboolean
match(Ctx *c, const ImapSearchKey *k)
{
    const KrMailboxMsg *m = c->m;
    switch (k->type) {
    case IMAP_SK_AND:
        for (const ImapSearchKey *x = k->child; x; x = x->next)
            if (!match(c, x))
                return FALSE;
        return TRUE;
    case IMAP_SK_OR:
        return match(c, k->child) || (k->child->next && match(c, k->child->next));
    case IMAP_SK_NOT:
        return !match(c, k->child);
    case IMAP_SK_ALL:
    case IMAP_SK_OLD:
        return TRUE;
    case IMAP_SK_NEW:
    case IMAP_SK_RECENT:
        return FALSE;
    case IMAP_SK_ANSWERED:
        return (m->flags & KR_FLAG_ANSWERED) != 0;
    case IMAP_SK_DELETED:
        return (m->flags & KR_FLAG_DELETED) != 0;
    case IMAP_SK_DRAFT:
        return (m->flags & KR_FLAG_DRAFT) != 0;
    case IMAP_SK_FLAGGED:
        return (m->flags & KR_FLAG_FLAGGED) != 0;
    case IMAP_SK_SEEN:
        return (m->flags & KR_FLAG_SEEN) != 0;
    case IMAP_SK_UNANSWERED:
        return !(m->flags & KR_FLAG_ANSWERED);
    case IMAP_SK_UNDELETED:
        return !(m->flags & KR_FLAG_DELETED);
    case IMAP_SK_UNDRAFT:
        return !(m->flags & KR_FLAG_DRAFT);
    case IMAP_SK_UNFLAGGED:
        return !(m->flags & KR_FLAG_FLAGGED);
    case IMAP_SK_UNSEEN:
        return !(m->flags & KR_FLAG_SEEN);
    case IMAP_SK_KEYWORD:
        return keyword_set(c, k->str);
    case IMAP_SK_UNKEYWORD:
        return !keyword_set(c, k->str);
    case IMAP_SK_BCC:
        return header_has(c, "Bcc", k->str);
    case IMAP_SK_CC:
        return header_has(c, "Cc", k->str);
    case IMAP_SK_FROM:
        return header_has(c, "From", k->str);
    case IMAP_SK_TO:
        return header_has(c, "To", k->str);
    case IMAP_SK_SUBJECT:
        return header_has(c, "Subject", k->str);
    case IMAP_SK_HEADER:
        return header_has(c, k->field, k->str);
    case IMAP_SK_BODY:
        return body_has(c, k->str);
    case IMAP_SK_TEXT:
        return header_has(c, NULL, k->str) || body_has(c, k->str);
    case IMAP_SK_BEFORE:
        return internal_day(m) < k->date;
    case IMAP_SK_ON:
        return internal_day(m) == k->date;
    case IMAP_SK_SINCE:
        return internal_day(m) >= k->date;
    case IMAP_SK_SENTBEFORE:
        return sent_day(c) < k->date;
    case IMAP_SK_SENTON:
        return sent_day(c) == k->date;
    case IMAP_SK_SENTSINCE:
        return sent_day(c) >= k->date;
    case IMAP_SK_LARGER:
        return (guint64)m->size > k->number;
    case IMAP_SK_SMALLER:
        return (guint64)m->size < k->number;
    case IMAP_SK_UID:
        return imap_seqset_contains(k->set, m->uid);
    case IMAP_SK_SEQSET:
        return imap_seqset_contains(k->set, c->seq);
    case IMAP_SK_MODSEQ:
        return m->modseq >= k->number;
    case IMAP_SK_OLDER:
        return c->now - m->internal_date >= (gint64)k->number;
    case IMAP_SK_YOUNGER:
        return c->now - m->internal_date <= (gint64)k->number;
    }
    return FALSE;
}

static void
search_work(ImapJob *j)
{
    ImapSession *s = j->s;
    ImapSearchArgs *a = &j->cmd->u.search;
    const KrMailboxOps *ops = imap_g.ops;
    gboolean uid = j->cmd->uid;
    guint32 n = ops->count(s->mb);
    gboolean modseq = FALSE;
    prepare(a->key, n, n ? ops->msg(s->mb, n)->uid : 0, &modseq);
    g_autoptr(GArray) hits = g_array_new(FALSE, FALSE, sizeof(guint32));
    guint64 maxmod = 0;
    Ctx c = {.s = s, .now = g_get_real_time() / G_USEC_PER_SEC};
    for (guint32 seq = 1; seq <= n; seq++) {
        c.m = ops->msg(s->mb, seq);
        c.seq = seq;
        if (match(&c, a->key)) {
            guint32 v = uid ? c.m->uid : seq;
            g_array_append_val(hits, v);
            maxmod = MAX(maxmod, c.m->modseq);
        }
        ctx_reset(&c);
    }
    GString *out = j->out;
    gboolean esearch = a->esearch || s->rev2;
    guint ret = a->esearch ? a->ret : IMAP_SEARCH_RET_ALL;
    if (ret == 0)
        ret = IMAP_SEARCH_RET_ALL;
    if (!esearch) {
        g_string_append(out, "* SEARCH");
        for (guint i = 0; i < hits->len; i++)
            g_string_append_printf(out, " %u", g_array_index(hits, guint32, i));
        if (modseq && hits->len)
            g_string_append_printf(out, " (MODSEQ %" G_GUINT64_FORMAT ")", maxmod);
        g_string_append(out, "\r\n");
    } else {
        g_string_append(out, "* ESEARCH (TAG ");
        imap_fmt_string(out, j->cmd->tag, strlen(j->cmd->tag), 0);
        g_string_append_c(out, ')');
        if (uid)
            g_string_append(out, " UID");
        if (hits->len) {
            guint32 *h = (guint32 *)hits->data;
            if (ret & IMAP_SEARCH_RET_MIN)
                g_string_append_printf(out, " MIN %u", h[0]);
            if (ret & IMAP_SEARCH_RET_MAX)
                g_string_append_printf(out, " MAX %u", h[hits->len - 1]);
        }
        if (ret & IMAP_SEARCH_RET_COUNT)
            g_string_append_printf(out, " COUNT %u", hits->len);
        if ((ret & IMAP_SEARCH_RET_ALL) && hits->len) {
            g_string_append(out, " ALL ");
            imap_seqset_compress((const guint32 *)hits->data, hits->len, out);
        }
        if (modseq && hits->len)
            g_string_append_printf(out, " MODSEQ %" G_GUINT64_FORMAT, maxmod);
        g_string_append(out, "\r\n");
    }
    imap_job_tagged(j, "OK", NULL, "SEARCH completed.");
}

static gboolean
uses_modseq(const ImapSearchKey *k)
{
    if (k->type == IMAP_SK_MODSEQ)
        return TRUE;
    for (const ImapSearchKey *c = k->child; c; c = c->next)
        if (uses_modseq(c))
            return TRUE;
    return FALSE;
}

void
imap_cmd_search(ImapSession *s)
{
    ImapSearchArgs *a = &s->cmd->u.search;
    if (a->charset && g_ascii_strcasecmp(a->charset, "UTF-8") != 0 &&
        g_ascii_strcasecmp(a->charset, "US-ASCII") != 0) {
        imap_tagged_done(s, "NO", "BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset.");
        return;
    }
    if (a->ret & IMAP_SEARCH_RET_SAVE) {
        imap_tagged_done(s, "BAD", NULL, "SEARCHRES is not supported.");
        return;
    }
    if (uses_modseq(a->key))
        s->condstore = TRUE;
    imap_job_start(
        imap_job_new(s, search_work, s->cmd->uid ? IMAP_SYNC_IF_CHANGED : IMAP_SYNC_NONE));
}
