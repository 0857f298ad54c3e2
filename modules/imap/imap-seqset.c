/* SPDX-License-Identifier: MIT */
/*
 * imap-seqset.c - IMAP sequence sets: parse, resolve, test, print,
 * compress. See imap-seqset.h.
 *
 *   imap_seqset_new, imap_seqset_free, imap_seqset_copy, imap_seqset_add
 *   imap_seqset_parse, imap_seqset_resolve
 *   imap_seqset_contains, imap_seqset_count, imap_seqset_first/last
 *   imap_seqset_has_star, imap_seqset_format
 *   imap_seqset_compress, imap_seqset_from_array
 *
 * Grammar (RFC 9051): sequence-set = (seq-number / seq-range) *("," ...);
 * seq-number = nz-number / "*"; seq-range = seq-number ":" seq-number;
 * nz-number = digit-nz *DIGIT, at most 4294967295. No spaces, no empty
 * elements, no leading zeros. RFC 5182 adds the whole set "$".
 */
#include "imap-seqset.h"

#include <stdlib.h>
#include <string.h>

ImapSeqSet *
imap_seqset_new(void)
{
    return g_new0(ImapSeqSet, 1);
}

void
imap_seqset_free(ImapSeqSet *set)
{
    if (!set)
        return;
    g_free(set->ranges);
    g_free(set);
}

ImapSeqSet *
imap_seqset_copy(const ImapSeqSet *set)
{
    ImapSeqSet *c = imap_seqset_new();
    c->saved = set->saved;
    c->n = c->alloc = set->n;
    c->ranges = set->n ? g_memdup2(set->ranges, sizeof(ImapSeqRange) * set->n) : NULL;
    return c;
}

void
imap_seqset_add(ImapSeqSet *set, guint32 lo, guint32 hi)
{
    if (set->n == set->alloc) {
        set->alloc = set->alloc ? set->alloc * 2 : 8;
        set->ranges = g_renew(ImapSeqRange, set->ranges, set->alloc);
    }
    set->ranges[set->n].lo = lo;
    set->ranges[set->n].hi = hi;
    set->n++;
}

/* One seq-number at *p: nz-number or '*'. */
static gboolean
parse_number(const char **p, const char *end, guint32 *out)
{
    const char *s = *p;
    if (s < end && *s == '*') {
        *out = IMAP_SEQ_STAR;
        *p = s + 1;
        return TRUE;
    }
    if (s >= end || *s < '1' || *s > '9')
        return FALSE;
    guint64 v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10 + (guint64)(*s - '0');
        if (v > G_MAXUINT32)
            return FALSE;
        s++;
    }
    *out = (guint32)v;
    *p = s;
    return TRUE;
}

ImapSeqSet *
imap_seqset_parse(const char *s, gsize len, gboolean allow_saved)
{
    if (len == 1 && s[0] == '$') {
        if (!allow_saved)
            return NULL;
        ImapSeqSet *set = imap_seqset_new();
        set->saved = TRUE;
        return set;
    }
    const char *p = s, *end = s + len;
    g_autoptr(ImapSeqSet) set = imap_seqset_new();
    for (;;) {
        guint32 lo, hi;
        if (!parse_number(&p, end, &lo))
            return NULL;
        hi = lo;
        if (p < end && *p == ':') {
            p++;
            if (!parse_number(&p, end, &hi))
                return NULL;
        }
        imap_seqset_add(set, lo, hi);
        if (p == end)
            break;
        if (*p != ',')
            return NULL;
        p++;
    }
    return g_steal_pointer(&set);
}

static int
range_cmp(const void *a, const void *b)
{
    const ImapSeqRange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

void
imap_seqset_resolve(ImapSeqSet *set, guint32 star)
{
    guint w = 0;
    for (guint i = 0; i < set->n; i++) {
        guint32 lo = set->ranges[i].lo, hi = set->ranges[i].hi;
        if (lo == IMAP_SEQ_STAR || hi == IMAP_SEQ_STAR) {
            if (star == 0)
                continue; /* '*' in an empty mailbox names nothing */
            if (lo == IMAP_SEQ_STAR)
                lo = star;
            if (hi == IMAP_SEQ_STAR)
                hi = star;
        }
        if (lo > hi) {
            guint32 t = lo;
            lo = hi;
            hi = t;
        }
        set->ranges[w].lo = lo;
        set->ranges[w].hi = hi;
        w++;
    }
    set->n = w;
    if (set->n < 2)
        return;
    qsort(set->ranges, set->n, sizeof(ImapSeqRange), range_cmp);
    w = 0;
    for (guint i = 1; i < set->n; i++) {
        ImapSeqRange *cur = &set->ranges[w];
        const ImapSeqRange *nx = &set->ranges[i];
        if (cur->hi == G_MAXUINT32 || nx->lo <= cur->hi + 1) {
            if (nx->hi > cur->hi)
                cur->hi = nx->hi;
        } else {
            set->ranges[++w] = *nx;
        }
    }
    set->n = w + 1;
}

gboolean
imap_seqset_contains(const ImapSeqSet *set, guint32 n)
{
    guint a = 0, b = set->n;
    while (a < b) {
        guint m = a + (b - a) / 2;
        if (n < set->ranges[m].lo)
            b = m;
        else if (n > set->ranges[m].hi)
            a = m + 1;
        else
            return TRUE;
    }
    return FALSE;
}

guint64
imap_seqset_count(const ImapSeqSet *set)
{
    guint64 c = 0;
    for (guint i = 0; i < set->n; i++)
        c += (guint64)set->ranges[i].hi - set->ranges[i].lo + 1;
    return c;
}

guint32
imap_seqset_first(const ImapSeqSet *set)
{
    return set->n ? set->ranges[0].lo : 0;
}

guint32
imap_seqset_last(const ImapSeqSet *set)
{
    return set->n ? set->ranges[set->n - 1].hi : 0;
}

gboolean
imap_seqset_has_star(const ImapSeqSet *set)
{
    for (guint i = 0; i < set->n; i++)
        if (set->ranges[i].lo == IMAP_SEQ_STAR || set->ranges[i].hi == IMAP_SEQ_STAR)
            return TRUE;
    return FALSE;
}

static void
put_number(GString *out, guint32 v)
{
    if (v == IMAP_SEQ_STAR)
        g_string_append_c(out, '*');
    else
        g_string_append_printf(out, "%u", v);
}

void
imap_seqset_format(const ImapSeqSet *set, GString *out)
{
    if (set->saved) {
        g_string_append_c(out, '$');
        return;
    }
    for (guint i = 0; i < set->n; i++) {
        if (i)
            g_string_append_c(out, ',');
        put_number(out, set->ranges[i].lo);
        if (set->ranges[i].hi != set->ranges[i].lo) {
            g_string_append_c(out, ':');
            put_number(out, set->ranges[i].hi);
        }
    }
}

static int
u32_cmp(const void *a, const void *b)
{
    guint32 x = *(const guint32 *)a, y = *(const guint32 *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

ImapSeqSet *
imap_seqset_from_array(const guint32 *nums, gsize n)
{
    ImapSeqSet *set = imap_seqset_new();
    if (n == 0)
        return set;
    guint32 *v = g_memdup2(nums, n * sizeof(guint32));
    gboolean sorted = TRUE;
    for (gsize i = 1; i < n && sorted; i++)
        sorted = v[i - 1] <= v[i];
    if (!sorted)
        qsort(v, n, sizeof(guint32), u32_cmp);
    gsize i = 0;
    while (i < n && v[i] == 0) /* 0 is no message number or UID */
        i++;
    while (i < n) {
        guint32 lo = v[i], hi = v[i];
        i++;
        while (i < n && (v[i] == hi || (hi != G_MAXUINT32 && v[i] == hi + 1)))
            hi = v[i++];
        imap_seqset_add(set, lo, hi);
    }
    g_free(v);
    return set;
}

void
imap_seqset_compress(const guint32 *nums, gsize n, GString *out)
{
    g_autoptr(ImapSeqSet) set = imap_seqset_from_array(nums, n);
    imap_seqset_format(set, out);
}
