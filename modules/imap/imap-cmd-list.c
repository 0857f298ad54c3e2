/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-list.c - LIST (RFC 9051, LIST-EXTENDED RFC 5258, LIST-STATUS
 *   RFC 5819, SPECIAL-USE RFC 6154, CHILDREN RFC 3348), LSUB (RFC 3501)
 *   and NAMESPACE (RFC 2342).
 *
 * SYNOPSIS
 *   imap_cmd_list(s)        LIST and LSUB
 *   imap_cmd_namespace(s)   one personal namespace, "" with "/"
 *
 * DESCRIPTION
 *   The store lists the user's folders (and subscriptions) in a worker;
 *   their names become IMAP names (imap_from_store_name), and a tree of
 *   entries is built: each folder, every level above it (which may not
 *   exist: Maildir++ can hold ".a.b" without ".a"), and the subscribed
 *   names. Each entry that matches a pattern is answered once, INBOX
 *   first, then in name order, with \HasChildren / \HasNoChildren, the
 *   special-use attribute of the top-level Drafts, Sent, Trash, Junk and
 *   Archive, \Noselect (IMAP4rev1) or \NonExistent (IMAP4rev2, extended
 *   LIST) for levels that do not exist, \Subscribed when asked for, and
 *   with RETURN (STATUS ...) a STATUS response after each selectable one.
 *
 *   LSUB answers subscribed names; a level above subscribed names that a
 *   '%' pattern stops at is answered with \Noselect (RFC 3501 6.3.9).
 */
#include "imap-session.h"

#include <string.h>

enum {
    E_EXISTS = 1 << 0,     /* a folder */
    E_CHILD = 1 << 1,      /* has folders below it */
    E_SUBSCRIBED = 1 << 2, /* subscribed */
    E_SUBCHILD = 1 << 3,   /* has subscribed names below it */
};

typedef struct {
    GHashTable *entries; /* IMAP name -> GUINT_TO_POINTER(E_*) */
    char **patterns;     /* decoded, reference applied */
} ListData;

static void
list_data_free(gpointer p)
{
    ListData *d = p;
    if (d->entries)
        g_hash_table_unref(d->entries);
    g_strfreev(d->patterns);
    g_free(d);
}

static void
mark(GHashTable *h, const char *name, guint bits, guint parent_bits)
{
    guint cur = GPOINTER_TO_UINT(g_hash_table_lookup(h, name));
    g_hash_table_replace(h, g_strdup(name), GUINT_TO_POINTER(cur | bits));
    g_autofree char *p = g_strdup(name);
    char *slash;
    while ((slash = strrchr(p, IMAP_SEP))) {
        *slash = '\0';
        cur = GPOINTER_TO_UINT(g_hash_table_lookup(h, p));
        g_hash_table_replace(h, g_strdup(p), GUINT_TO_POINTER(cur | parent_bits));
    }
}

static gboolean
load_names(ImapJob *j, GHashTable *h, gboolean subscriptions, GError **e)
{
    const KrMailboxOps *ops = imap_g.ops;
    g_autoptr(GPtrArray) names = subscriptions
                                     ? ops->subscriptions(imap_g.store->self, j->s->user, e)
                                     : ops->list(imap_g.store->self, j->s->user, e);
    if (!names)
        return FALSE;
    for (guint i = 0; i < names->len; i++) {
        g_autofree char *name = imap_from_store_name(names->pdata[i]);
        if (imap_mailbox_is_inbox(name))
            memcpy(name, "INBOX", 5);
        if (!imap_mailbox_check(name, 0, NULL))
            continue;
        if (subscriptions)
            mark(h, name, E_SUBSCRIBED, E_SUBCHILD);
        else
            mark(h, name, E_EXISTS, E_CHILD);
    }
    return TRUE;
}

static gint
name_order(gconstpointer a, gconstpointer b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    gboolean xi = strcmp(x, "INBOX") == 0, yi = strcmp(y, "INBOX") == 0;
    if (xi != yi)
        return xi ? -1 : 1;
    return strcmp(x, y);
}

static gboolean
matches(ListData *d, const char *name)
{
    for (char **p = d->patterns; *p; p++)
        if (imap_list_match(*p, name))
            return TRUE;
    return FALSE;
}

/* LSUB: does a subscribed name below `name` match a pattern itself? */
static gboolean
descendant_matches(ListData *d, GPtrArray *names, const char *name)
{
    gsize len = strlen(name);
    for (guint i = 0; i < names->len; i++) {
        const char *n = names->pdata[i];
        guint bits = GPOINTER_TO_UINT(g_hash_table_lookup(d->entries, n));
        if ((bits & E_SUBSCRIBED) && strncmp(n, name, len) == 0 && n[len] == IMAP_SEP &&
            matches(d, n))
            return TRUE;
    }
    return FALSE;
}

static void
list_work(ImapJob *j)
{
    ImapSession *s = j->s;
    ListData *d = j->data;
    ImapListArgs *a = &j->cmd->u.list;
    gboolean lsub = j->cmd->name == IMAP_CMD_LSUB;
    gboolean sel_sub = (a->select & IMAP_LIST_SEL_SUBSCRIBED) != 0;
    gboolean want_subs = lsub || sel_sub || (a->ret & IMAP_LIST_RET_SUBSCRIBED);
    gboolean new_style = a->extended || s->rev2;
    const char *word = lsub ? "LSUB" : "LIST";
    g_autoptr(GError) e = NULL;
    d->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (!load_names(j, d->entries, FALSE, &e) ||
        (want_subs && !load_names(j, d->entries, TRUE, &e))) {
        imap_job_store_error(j, e, "list");
        return;
    }
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, d->entries);
    while (g_hash_table_iter_next(&it, &key, NULL))
        g_ptr_array_add(names, key);
    g_ptr_array_sort(names, name_order);
    GString *out = j->out;
    for (guint i = 0; i < names->len; i++) {
        const char *name = names->pdata[i];
        guint bits = GPOINTER_TO_UINT(g_hash_table_lookup(d->entries, name));
        gboolean exists = (bits & E_EXISTS) != 0;
        gboolean noselect_level = FALSE, childinfo = FALSE;
        if (!matches(d, name))
            continue;
        if (lsub) {
            if (!(bits & E_SUBSCRIBED)) {
                if (!(bits & E_SUBCHILD) || descendant_matches(d, names, name))
                    continue;
                noselect_level = TRUE;
            }
        } else if (sel_sub) {
            if (!(bits & E_SUBSCRIBED)) {
                if (!(a->select & IMAP_LIST_SEL_RECURSIVEMATCH) || !(bits & E_SUBCHILD))
                    continue;
            }
            childinfo = (a->select & IMAP_LIST_SEL_RECURSIVEMATCH) && (bits & E_SUBCHILD);
        } else if (!(bits & (E_EXISTS | E_CHILD))) {
            continue;
        }
        const char *special = exists ? imap_special_use(name) : NULL;
        if ((a->select & IMAP_LIST_SEL_SPECIAL_USE) && !special)
            continue;
        /* attributes */
        GPtrArray *attrs = g_ptr_array_new();
        if (lsub) {
            if (noselect_level)
                g_ptr_array_add(attrs, "\\Noselect");
        } else {
            if (!exists)
                g_ptr_array_add(attrs, new_style ? "\\NonExistent" : "\\Noselect");
            g_ptr_array_add(attrs, (bits & E_CHILD) ? "\\HasChildren" : "\\HasNoChildren");
            if ((bits & E_SUBSCRIBED) && (sel_sub || (a->ret & IMAP_LIST_RET_SUBSCRIBED)))
                g_ptr_array_add(attrs, "\\Subscribed");
            if (special)
                g_ptr_array_add(attrs, (gpointer)special);
        }
        g_string_append_printf(out, "* %s (", word);
        for (guint k = 0; k < attrs->len; k++)
            g_string_append_printf(out, "%s%s", k ? " " : "", (char *)attrs->pdata[k]);
        g_ptr_array_unref(attrs);
        g_string_append(out, ") \"/\" ");
        imap_fmt_mailbox(out, name, imap_utf8_names(s));
        if (childinfo)
            g_string_append(out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        g_string_append(out, "\r\n");
        if ((a->ret & IMAP_LIST_RET_STATUS) && exists) {
            KrMailboxStatus st;
            g_autofree char *stname = imap_to_store_name(name);
            if (imap_g.ops->status(imap_g.store->self, s->user, stname, &st, NULL)) {
                g_string_append(out, "* STATUS ");
                imap_fmt_mailbox(out, name, imap_utf8_names(s));
                g_string_append_c(out, ' ');
                imap_status_items(s, out, a->status, &st, stname);
                g_string_append(out, "\r\n");
            }
        }
    }
    imap_job_tagged(j, "OK", NULL, lsub ? "LSUB completed." : "LIST completed.");
}

void
imap_cmd_list(ImapSession *s)
{
    ImapListArgs *a = &s->cmd->u.list;
    gboolean utf8 = imap_utf8_names(s);
    const char *word = s->cmd->name == IMAP_CMD_LSUB ? "LSUB" : "LIST";
    /* LIST "" "": the hierarchy separator and root */
    if (a->patterns[0] && !a->patterns[1] && !a->patterns[0][0] && !a->select) {
        imap_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n", word);
        imap_tagged_done(s, "OK", NULL, "LIST completed.");
        return;
    }
    g_autofree char *ref = imap_mailbox_decode(a->reference, strlen(a->reference), utf8, NULL);
    GPtrArray *pats = g_ptr_array_new();
    for (char **p = a->patterns; *p; p++) {
        if (!**p || !ref)
            continue;
        g_autofree char *dec = imap_mailbox_decode(*p, strlen(*p), utf8, NULL);
        if (dec)
            g_ptr_array_add(pats, imap_list_pattern(ref, dec));
    }
    g_ptr_array_add(pats, NULL);
    if (a->ret & IMAP_LIST_RET_STATUS && (a->status & IMAP_STATUS_HIGHESTMODSEQ))
        s->condstore = TRUE;
    ListData *d = g_new0(ListData, 1);
    d->patterns = (char **)g_ptr_array_free(pats, FALSE);
    ImapJob *j = imap_job_new(s, list_work, IMAP_SYNC_IF_CHANGED);
    j->data = d;
    j->free_data = list_data_free;
    imap_job_start(j);
}

void
imap_cmd_namespace(ImapSession *s)
{
    imap_printf(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    imap_tagged_done(s, "OK", NULL, "NAMESPACE completed.");
}
