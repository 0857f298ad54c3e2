/* SPDX-License-Identifier: MIT */
/*
 * kr-failcount.c - failures per key in fixed windows (see kr-failcount.h).
 */
#include "kr-internal.h"
#include <kurir/kr-failcount.h>

typedef struct {
    gint64 start; /* monotonic seconds of the window's first failure */
    guint count;
} Rec;

struct KrFailCount {
    GHashTable *recs; /* key -> Rec */
    gint64 window;
    guint max_keys;
};

static gint64
now_s(void)
{
    return g_get_monotonic_time() / G_USEC_PER_SEC;
}

KrFailCount *
kr_failcount_new(guint window_s, guint max_keys)
{
    KrFailCount *fc = g_new0(KrFailCount, 1);
    fc->recs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    fc->window = window_s ? window_s : 1;
    fc->max_keys = max_keys ? max_keys : 1;
    return fc;
}

void
kr_failcount_free(KrFailCount *fc)
{
    if (!fc)
        return;
    g_hash_table_unref(fc->recs);
    g_free(fc);
}

static gboolean
expired(gpointer key, gpointer value, gpointer fc_)
{
    KrFailCount *fc = fc_;
    return now_s() - ((Rec *)value)->start >= fc->window;
}

void
kr_failcount_add(KrFailCount *fc, const char *key)
{
    if (!fc || !key)
        return;
    gint64 now = now_s();
    Rec *r = g_hash_table_lookup(fc->recs, key);
    if (!r) {
        if (g_hash_table_size(fc->recs) >= fc->max_keys)
            g_hash_table_foreach_remove(fc->recs, expired, fc);
        if (g_hash_table_size(fc->recs) >= fc->max_keys)
            return; /* full of fresh keys: do not grow without bound */
        r = g_new0(Rec, 1);
        r->start = now;
        g_hash_table_insert(fc->recs, g_strdup(key), r);
    } else if (now - r->start >= fc->window) {
        r->start = now;
        r->count = 0;
    }
    r->count++;
}

gboolean
kr_failcount_exceeded(KrFailCount *fc, const char *key, guint limit)
{
    if (!fc || !key || limit == 0)
        return FALSE;
    Rec *r = g_hash_table_lookup(fc->recs, key);
    return r && now_s() - r->start < fc->window && r->count >= limit;
}
