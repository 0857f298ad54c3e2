/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-session-util.c - helpers the IMAP command files share: mailbox
 *   names between IMAP and the store, flag arguments, sequence sets
 *   against the session's view, store errors as tagged replies.
 *
 * SYNOPSIS
 *   imap_to_store_name(name)           "Work/v1.2" -> "Work.v1%2E2"
 *   imap_from_store_name(stname)       the inverse
 *   imap_arg_mailbox(s, wire, create)  decoded, checked name or a NO
 *   imap_flags_from_args(flags, &sys, kw)   flag list -> KR_FLAG_* + keywords
 *   imap_set_uids(s, set, uid, uids)   a set -> UIDs of the view
 *   imap_seq_lower_bound(s, uid)       first seq with UID >= uid
 *   imap_job_store_error(j, e, what)   "NO [CODE] text" for a KrStoreError
 *   imap_special_use(name)             "\\Sent" for "Sent", ...
 *
 * NAMES. IMAP names use '/' between levels (IMAP_SEP); the store uses
 * its own separator (ops->separator, "." for Maildir++). A '.' inside
 * an IMAP component (or a '%') is kept by escaping it as "%2E" ("%25")
 * in the store name, so "v1.2" stays one level and every IMAP name has
 * exactly one store name. Only those escapes are decoded back.
 * imap_arg_mailbox applies imap_mailbox_decode (mUTF-7, or UTF-8 once
 * UTF8=ACCEPT / IMAP4rev2 is enabled) and imap_mailbox_check (no "..",
 * no "~", no empty levels, no control characters), so nothing that
 * could leave the user's directory reaches the store, which checks again.
 */
#include "imap-session.h"

#include <string.h>

static char
store_sep(void)
{
    const char *sep = imap_g.ops && imap_g.ops->separator ? imap_g.ops->separator : ".";
    return sep[0] ? sep[0] : '.';
}

char *
imap_to_store_name(const char *name)
{
    if (imap_mailbox_is_inbox(name))
        return g_strdup("INBOX");
    char sep = store_sep();
    GString *out = g_string_sized_new(strlen(name) + 8);
    for (const char *p = name; *p; p++) {
        if (*p == IMAP_SEP)
            g_string_append_c(out, sep);
        else if (*p == '%')
            g_string_append(out, "%25");
        else if (*p == sep)
            g_string_append_printf(out, "%%%02X", (guchar)sep);
        else
            g_string_append_c(out, *p);
    }
    return g_string_free(out, FALSE);
}

char *
imap_from_store_name(const char *stname)
{
    char sep = store_sep();
    char esc[4];
    g_snprintf(esc, sizeof esc, "%%%02X", (guchar)sep);
    GString *out = g_string_sized_new(strlen(stname));
    for (const char *p = stname; *p; p++) {
        if (*p == sep) {
            g_string_append_c(out, IMAP_SEP);
        } else if (*p == '%' && g_ascii_strncasecmp(p, "%25", 3) == 0) {
            g_string_append_c(out, '%');
            p += 2;
        } else if (*p == '%' && g_ascii_strncasecmp(p, esc, 3) == 0) {
            g_string_append_c(out, sep);
            p += 2;
        } else {
            g_string_append_c(out, *p);
        }
    }
    return g_string_free(out, FALSE);
}

char *
imap_arg_mailbox(ImapSession *s, const char *wire, gboolean create)
{
    g_autoptr(GError) e = NULL;
    char *name = imap_mailbox_decode(wire, strlen(wire), imap_utf8_names(s), &e);
    if (name && !imap_mailbox_check(name, create ? IMAP_MAILBOX_CREATE : 0, &e))
        g_clear_pointer(&name, g_free);
    if (!name)
        imap_tagged_done(s, "NO", "CANNOT", e->message);
    return name;
}

static const struct {
    const char *name;
    guint32 flag;
} sysflags[] = {
    {"\\Seen", KR_FLAG_SEEN},       {"\\Answered", KR_FLAG_ANSWERED},
    {"\\Flagged", KR_FLAG_FLAGGED}, {"\\Deleted", KR_FLAG_DELETED},
    {"\\Draft", KR_FLAG_DRAFT},
};

gboolean
imap_flags_from_args(char **flags, guint32 *sys_r, GPtrArray *kw)
{
    guint32 sys = 0;
    for (char **f = flags; f && *f; f++) {
        if ((*f)[0] == '\\') {
            guint i;
            for (i = 0; i < G_N_ELEMENTS(sysflags); i++)
                if (g_ascii_strcasecmp(*f, sysflags[i].name) == 0)
                    break;
            if (i == G_N_ELEMENTS(sysflags))
                return FALSE;
            sys |= sysflags[i].flag;
        } else if (g_ascii_strcasecmp(*f, "$Forwarded") == 0) {
            sys |= KR_FLAG_FORWARDED;
        } else {
            gboolean dup = FALSE;
            for (guint i = 0; i < kw->len && !dup; i++)
                dup = g_ascii_strcasecmp(kw->pdata[i], *f) == 0;
            if (!dup)
                g_ptr_array_add(kw, *f);
        }
    }
    g_ptr_array_add(kw, NULL);
    *sys_r = sys;
    return TRUE;
}

guint32
imap_seq_lower_bound(ImapSession *s, guint32 uid)
{
    const KrMailboxOps *ops = imap_g.ops;
    guint32 lo = 1, hi = ops->count(s->mb) + 1;
    while (lo < hi) {
        guint32 mid = lo + (hi - lo) / 2;
        if (ops->msg(s->mb, mid)->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

gboolean
imap_set_uids(ImapSession *s, ImapSeqSet *set, gboolean uid, GArray *uids)
{
    const KrMailboxOps *ops = imap_g.ops;
    guint32 n = ops->count(s->mb);
    if (uid) {
        guint32 max = n ? ops->msg(s->mb, n)->uid : 0;
        imap_seqset_resolve(set, max);
        for (guint i = 0; i < set->n; i++) {
            guint32 seq = imap_seq_lower_bound(s, set->ranges[i].lo);
            for (; seq <= n; seq++) {
                guint32 u = ops->msg(s->mb, seq)->uid;
                if (u > set->ranges[i].hi)
                    break;
                g_array_append_val(uids, u);
            }
        }
        return TRUE;
    }
    imap_seqset_resolve(set, n);
    if (set->n > 0 && (set->ranges[0].lo == 0 || set->ranges[set->n - 1].hi > n))
        return FALSE;
    for (guint i = 0; i < set->n; i++)
        for (guint32 seq = set->ranges[i].lo; seq <= set->ranges[i].hi; seq++) {
            g_array_append_val(uids, ops->msg(s->mb, seq)->uid);
            if (seq == G_MAXUINT32)
                break;
        }
    return TRUE;
}

void
imap_job_store_error(ImapJob *j, const GError *e, const char *what)
{
    const char *code = "UNAVAILABLE", *text = "Temporary failure, try again later";
    if (e && e->domain == KR_STORE_ERROR) {
        switch ((KrStoreError)e->code) {
        case KR_STORE_ERROR_NOT_FOUND:
            code = "NONEXISTENT";
            text = "No such mailbox";
            break;
        case KR_STORE_ERROR_EXISTS:
            code = "ALREADYEXISTS";
            text = "Mailbox already exists";
            break;
        case KR_STORE_ERROR_INVALID_NAME:
            code = "CANNOT";
            text = "Invalid mailbox name";
            break;
        case KR_STORE_ERROR_IN_USE:
            code = "INUSE";
            text = "Mailbox is in use";
            break;
        case KR_STORE_ERROR_NO_MESSAGE:
            code = "EXPUNGEISSUED";
            text = "Some of the messages no longer exist";
            break;
        case KR_STORE_ERROR_LIMIT:
            code = "LIMIT";
            text = "Too many keywords in this mailbox";
            break;
        case KR_STORE_ERROR_NOT_SUPPORTED:
            code = "CANNOT";
            text = "Not supported by this mail store";
            break;
        case KR_STORE_ERROR_READONLY:
            code = NULL;
            text = "Mailbox is read-only";
            break;
        case KR_STORE_ERROR_UIDVALIDITY:
        case KR_STORE_ERROR_FAILED:
        default:
            break;
        }
    }
    if (!e || e->domain != KR_STORE_ERROR || e->code == KR_STORE_ERROR_FAILED ||
        e->code == KR_STORE_ERROR_UIDVALIDITY)
        g_warning("%s: %s: %s: %s", j->s->srv->name, j->s->user ? j->s->user : "-", what,
                  e ? e->message : "failed");
    imap_job_tagged(j, "NO", code, text);
}

const char *
imap_special_use(const char *name)
{
    static const char *const map[][2] = {
        {"Drafts", "\\Drafts"}, {"Sent", "\\Sent"},       {"Trash", "\\Trash"},
        {"Junk", "\\Junk"},     {"Archive", "\\Archive"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(map); i++)
        if (strcmp(name, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}
