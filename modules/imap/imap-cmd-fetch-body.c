/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-fetch-body.c - what FETCH needs from a message's MIME
 *   structure: ENVELOPE, BODY, BODYSTRUCTURE and section content, with
 *   the description cached in the store so a message is parsed once.
 *   The only place the session code meets the MIME layer (imap-mime.h).
 *
 * SYNOPSIS
 *   imap_msginfo_get(s, uid, &fd, error)     (worker) cached or parsed
 *   imap_msginfo_free(mi)
 *   imap_msginfo_envelope(mi)                "(date subject ...)"
 *   imap_msginfo_body(mi, extended)          BODY / BODYSTRUCTURE text
 *   imap_msginfo_section(s, &mi, uid, fd, sec, &bytes, error)
 *   imap_msginfo_section_size(s, &mi, uid, fd, sec, &size, error)
 *   imap_msginfo_binary()                    BINARY available?
 *
 * DESCRIPTION
 *   The store keeps one opaque blob per message (kr-store.h cache_get /
 *   cache_set). It holds imap_mime_cache_build()'s serialised description
 *   (versioned and checked by imap_mime_cache_load), so FETCH ENVELOPE or
 *   BODYSTRUCTURE of a cached message opens no message file at all, and a
 *   section needs only the file's bytes at known offsets. A blob that does
 *   not load, or a file that changed size since, is parsed again and the
 *   blob replaced. The content fd is opened lazily (*fd < 0: not yet),
 *   and the caller closes it.
 *
 *   Without the MIME layer in the build (IMAP_HAVE_MIME unset, while it
 *   is being written), a fallback describes every message as one
 *   text/plain part and serves [], HEADER and TEXT of the whole message.
 */
#include "imap-session.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#ifdef IMAP_HAVE_MIME
#include "imap-mime.h"
#endif

/* Open the content fd if not yet. */
static gboolean
need_fd(ImapSession *s, guint32 uid, int *fd, GError **error)
{
    if (*fd >= 0)
        return TRUE;
    *fd = imap_g.ops->open_content(s->mb, uid, error);
    return *fd >= 0;
}

#ifdef IMAP_HAVE_MIME

struct ImapMsgInfo {
    ImapMimeMessage *mime;
};

gboolean
imap_msginfo_binary(void)
{
    return TRUE;
}

static ImapMimeMessage *
parse_and_cache(ImapSession *s, guint32 uid, int fd, GError **error)
{
    ImapMimeInput in = IMAP_MIME_INPUT_FD(fd);
    ImapMimeLimits lim = IMAP_MIME_LIMITS_INIT;
    ImapMimeMessage *mime = imap_mime_parse(&in, &lim, error);
    if (!mime)
        return NULL;
    g_autoptr(GBytes) blob = imap_mime_cache_build(mime);
    g_autoptr(GError) e = NULL;
    if (blob && !imap_g.ops->cache_set(s->mb, uid, blob, &e))
        g_debug("%s: %s: cannot cache message %u: %s", s->srv->name, s->user, uid, e->message);
    return mime;
}

ImapMsgInfo *
imap_msginfo_get(ImapSession *s, guint32 uid, int *fd, GError **error)
{
    GBytes *blob = NULL;
    ImapMimeMessage *mime = NULL;
    if (imap_g.ops->cache_get(s->mb, uid, &blob, NULL) && blob) {
        mime = imap_mime_cache_load(blob, NULL);
        g_bytes_unref(blob);
    }
    if (!mime) {
        if (!need_fd(s, uid, fd, error))
            return NULL;
        mime = parse_and_cache(s, uid, *fd, error);
        if (!mime)
            return NULL;
    }
    ImapMsgInfo *mi = g_new0(ImapMsgInfo, 1);
    mi->mime = mime;
    return mi;
}

void
imap_msginfo_free(ImapMsgInfo *mi)
{
    if (!mi)
        return;
    imap_mime_message_free(mi->mime);
    g_free(mi);
}

const char *
imap_msginfo_envelope(const ImapMsgInfo *mi)
{
    return imap_mime_envelope(mi->mime);
}

const char *
imap_msginfo_body(const ImapMsgInfo *mi, gboolean extended)
{
    return extended ? imap_mime_bodystructure(mi->mime) : imap_mime_body(mi->mime);
}

/* A section call failed because the file changed: parse it again. */
static gboolean
reparse(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int fd, GError **error)
{
    ImapMimeMessage *mime = parse_and_cache(s, uid, fd, error);
    if (!mime)
        return FALSE;
    imap_mime_message_free(mi->mime);
    mi->mime = mime;
    return TRUE;
}

gboolean
imap_msginfo_section(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int *fd,
                     const ImapFetchSection *sec, GBytes **out_r, GError **error)
{
    if (!need_fd(s, uid, fd, error))
        return FALSE;
    ImapMimeInput in = IMAP_MIME_INPUT_FD(*fd);
    GError *e = NULL;
    if (imap_mime_section(mi->mime, &in, sec, out_r, &e))
        return TRUE;
    if (!g_error_matches(e, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CHANGED)) {
        g_propagate_error(error, e);
        return FALSE;
    }
    g_error_free(e);
    return reparse(s, mi, uid, *fd, error) && imap_mime_section(mi->mime, &in, sec, out_r, error);
}

gboolean
imap_msginfo_section_size(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int *fd,
                          const ImapFetchSection *sec, guint64 *size_r, GError **error)
{
    if (!need_fd(s, uid, fd, error))
        return FALSE;
    ImapMimeInput in = IMAP_MIME_INPUT_FD(*fd);
    GError *e = NULL;
    if (imap_mime_section_size(mi->mime, &in, sec, size_r, &e))
        return TRUE;
    if (!g_error_matches(e, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CHANGED)) {
        g_propagate_error(error, e);
        return FALSE;
    }
    g_error_free(e);
    return reparse(s, mi, uid, *fd, error) &&
           imap_mime_section_size(mi->mime, &in, sec, size_r, error);
}

gboolean
imap_msginfo_no_part(const GError *e)
{
    return g_error_matches(e, IMAP_MIME_ERROR, IMAP_MIME_ERROR_NO_PART);
}

gboolean
imap_msginfo_unknown_cte(const GError *e)
{
    return g_error_matches(e, IMAP_MIME_ERROR, IMAP_MIME_ERROR_UNKNOWN_CTE);
}

#else /* !IMAP_HAVE_MIME: the fallback */

struct ImapMsgInfo {
    char *body;
    char *bodystructure;
};

gboolean
imap_msginfo_binary(void)
{
    return FALSE;
}

ImapMsgInfo *
imap_msginfo_get(ImapSession *s, guint32 uid, int *fd, GError **error)
{
    guint32 seq = imap_g.ops->seq_of_uid(s->mb, uid);
    const KrMailboxMsg *m = seq ? imap_g.ops->msg(s->mb, seq) : NULL;
    ImapMsgInfo *mi = g_new0(ImapMsgInfo, 1);
    ImapBodyPart part = {.size = m ? (guint64)m->size : 0};
    GString *b = g_string_new(NULL);
    imap_fmt_bodystructure(b, &part, FALSE, 0);
    mi->body = g_string_free(b, FALSE);
    b = g_string_new(NULL);
    imap_fmt_bodystructure(b, &part, TRUE, 0);
    mi->bodystructure = g_string_free(b, FALSE);
    return mi;
}

void
imap_msginfo_free(ImapMsgInfo *mi)
{
    if (!mi)
        return;
    g_free(mi->body);
    g_free(mi->bodystructure);
    g_free(mi);
}

const char *
imap_msginfo_envelope(const ImapMsgInfo *mi)
{
    return "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";
}

const char *
imap_msginfo_body(const ImapMsgInfo *mi, gboolean extended)
{
    return extended ? mi->bodystructure : mi->body;
}

static GQuark
fallback_quark(void)
{
    return g_quark_from_static_string("imap-fallback-mime");
}

gboolean
imap_msginfo_section(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int *fd,
                     const ImapFetchSection *sec, GBytes **out_r, GError **error)
{
    if (sec->n_part > 0 || sec->kind != IMAP_SECTION_BODY ||
        (sec->text != IMAP_SECTION_ALL && sec->text != IMAP_SECTION_HEADER &&
         sec->text != IMAP_SECTION_TEXT)) {
        g_set_error(error, fallback_quark(), 1, "no such part");
        return FALSE;
    }
    if (!need_fd(s, uid, fd, error))
        return FALSE;
    GString *all = g_string_new(NULL);
    gboolean last_cr = FALSE;
    char buf[65536];
    ssize_t n;
    gint64 off = 0;
    while ((n = pread(*fd, buf, sizeof buf, off)) > 0) {
        kr_store_crlf(buf, (gsize)n, all, &last_cr);
        off += n;
    }
    const char *end = strstr(all->str, "\r\n\r\n");
    gsize hdr = end ? (gsize)(end - all->str) + 4 : all->len;
    gsize from = sec->text == IMAP_SECTION_TEXT ? hdr : 0;
    gsize to = sec->text == IMAP_SECTION_HEADER ? hdr : all->len;
    if (sec->partial) {
        from = MIN(to, from + (gsize)MIN(sec->offset, (guint64)G_MAXSIZE / 2));
        to = MIN(to, from + (gsize)MIN(sec->length, (guint64)G_MAXSIZE / 2));
    }
    *out_r = g_bytes_new(all->str + from, to - from);
    g_string_free(all, TRUE);
    return TRUE;
}

gboolean
imap_msginfo_section_size(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int *fd,
                          const ImapFetchSection *sec, guint64 *size_r, GError **error)
{
    g_set_error(error, fallback_quark(), 1, "no such part");
    return FALSE;
}

gboolean
imap_msginfo_no_part(const GError *e)
{
    return e && e->domain == fallback_quark();
}

gboolean
imap_msginfo_unknown_cte(const GError *e)
{
    return FALSE;
}

#endif
