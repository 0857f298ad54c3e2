/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-fetch-body.c - what FETCH needs from a message's MIME
 *   structure: ENVELOPE, BODY, BODYSTRUCTURE and section content, with
 *   the description cached in the store so a message is parsed once.
 *   The only place the session code meets the MIME layer (imap-mime.h).
 *
 * SYNOPSIS
 *   imap_msginfo_get(s, uid, &fd, need, error)  (worker) cached or parsed
 *   imap_msginfo_free(mi)
 *   imap_msginfo_envelope(mi, &len)          "(date subject ...)"
 *   imap_msginfo_body(mi, extended, &len)    BODY / BODYSTRUCTURE text
 *   imap_msginfo_envelope_ref(s, uid, &hold, &text, &len, error)
 *                                            ENVELOPE text for SEARCH
 *   imap_msginfo_stream(s, mi, uid, fd, sec, &size, error)
 *                                            a section's octets, in chunks
 *   imap_msginfo_header_only(sec)            ... one needing no mi (header)
 *   imap_secstream_read(st, buf, len, error), imap_secstream_free(st)
 *   imap_msginfo_section_size(s, mi, uid, fd, sec, &size, error)
 *
 * DESCRIPTION
 *   The store keeps one opaque blob per message (kr-store.h cache_get /
 *   cache_set). It holds imap_mime_cache_build()'s serialised description
 *   (versioned and checked by imap_mime_cache_load), so FETCH ENVELOPE or
 *   BODYSTRUCTURE of a cached message opens no message file at all, and a
 *   section needs only the file's bytes at known offsets. A blob that does
 *   not load, or a file that changed size since, is parsed again and the
 *   blob replaced. The content fd is opened lazily (*fd < 0: not yet),
 *   and the caller closes it; a section stream keeps its own copy of the
 *   fd (none if it was made in memory at open), so it may outlive the call (a big section is sent
 * over several rounds of a FETCH job).
 *
 *   What is parsed depends on what is asked (ImapMsgNeed): for the
 *   ENVELOPE alone (FETCH ENVELOPE, SEARCH on its fields) only the header
 *   is read and an envelope-only blob cached; anything more (BODY,
 *   BODYSTRUCTURE, sections) needs the full description, so an
 *   envelope-only blob is then replaced by a full one (parsed once more).
 *   The top-level header sections (BODY[HEADER], HEADER.FIELDS(.NOT),
 *   RFC822.HEADER: a mail client's folder listing) need neither: they are
 *   read from the header alone (imap_mime_header_stream_open), with no
 *   cache lookup, so listing a folder never parses or caches a message.
 */
#include "imap-session.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "imap-mime.h"

/* Open the content fd if not yet. */
static gboolean
need_fd(ImapSession *s, guint32 uid, int *fd, GError **error)
{
    if (*fd >= 0)
        return TRUE;
    *fd = imap_g.ops->open_content(s->mb, uid, error);
    return *fd >= 0;
}

struct ImapMsgInfo {
    ImapMimeMessage *mime; /* NULL: texts straight from blob */
    GBytes *blob;
    const char *text[3]; /* ... found there once (ImapMimeCacheText order) */
    gsize len[3];
};

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

/* Does the blob's prefix give the texts asked for? They are noted in mi. */
static gboolean
texts_ok(ImapMsgInfo *mi, GBytes *blob, ImapMsgNeed need)
{
    if (!imap_mime_cache_text(blob, IMAP_MIME_CACHE_ENVELOPE, &mi->text[0], &mi->len[0]))
        return FALSE;
    return need == IMAP_MI_ENVELOPE ||
           (imap_mime_cache_text(blob, IMAP_MIME_CACHE_BODY, &mi->text[1], &mi->len[1]) &&
            imap_mime_cache_text(blob, IMAP_MIME_CACHE_BODYSTRUCTURE, &mi->text[2], &mi->len[2]));
}

/* Header-only parse: an envelope-only blob, cached (NULL on error). */
static GBytes *
parse_envelope_and_cache(ImapSession *s, guint32 uid, int fd, GError **error)
{
    ImapMimeInput in = IMAP_MIME_INPUT_FD(fd);
    ImapMimeLimits lim = IMAP_MIME_LIMITS_INIT;
    g_autofree char *env = imap_mime_parse_envelope(&in, &lim, error);
    if (!env)
        return NULL;
    GBytes *blob = imap_mime_cache_build_envelope(env);
    g_autoptr(GError) e = NULL;
    if (!imap_g.ops->cache_set(s->mb, uid, blob, &e))
        g_debug("%s: %s: cannot cache message %u: %s", s->srv->name, s->user, uid, e->message);
    return blob;
}

ImapMsgInfo *
imap_msginfo_get(ImapSession *s, guint32 uid, int *fd, ImapMsgNeed need, GError **error)
{
    GBytes *blob = NULL;
    ImapMimeMessage *mime = NULL;
    if (imap_g.ops->cache_get(s->mb, uid, &blob, NULL) && blob) {
        ImapMsgInfo *mi = g_new0(ImapMsgInfo, 1);
        if (need != IMAP_MI_FULL && texts_ok(mi, blob, need)) {
            mi->blob = blob;
            return mi;
        }
        g_free(mi);
        /* an envelope-only blob does not load: parsed in full below (upgrade) */
        mime = imap_mime_cache_load(blob, NULL);
        g_bytes_unref(blob);
    }
    if (!mime) {
        if (!need_fd(s, uid, fd, error))
            return NULL;
        if (need == IMAP_MI_ENVELOPE) {
            blob = parse_envelope_and_cache(s, uid, *fd, error);
            if (!blob)
                return NULL;
            ImapMsgInfo *mi = g_new0(ImapMsgInfo, 1);
            mi->blob = blob;
            if (!texts_ok(mi, blob, IMAP_MI_ENVELOPE)) { /* cannot be: built just now */
                imap_msginfo_free(mi);
                g_set_error_literal(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "no ENVELOPE");
                return NULL;
            }
            return mi;
        }
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
    if (mi->blob)
        g_bytes_unref(mi->blob);
    g_free(mi);
}

static const char *
text_of(const ImapMsgInfo *mi, ImapMimeCacheText which, gsize *len)
{
    const char *t = NULL;
    if (!mi->mime) {
        g_assert(mi->text[which]); /* found by texts_ok() for what was asked */
        *len = mi->len[which];
        return mi->text[which];
    }
    t = which == IMAP_MIME_CACHE_ENVELOPE ? imap_mime_envelope(mi->mime)
        : which == IMAP_MIME_CACHE_BODY   ? imap_mime_body(mi->mime)
                                          : imap_mime_bodystructure(mi->mime);
    *len = strlen(t);
    return t;
}

const char *
imap_msginfo_envelope(const ImapMsgInfo *mi, gsize *len)
{
    return text_of(mi, IMAP_MIME_CACHE_ENVELOPE, len);
}

const char *
imap_msginfo_body(const ImapMsgInfo *mi, gboolean extended, gsize *len)
{
    return text_of(mi, extended ? IMAP_MIME_CACHE_BODYSTRUCTURE : IMAP_MIME_CACHE_BODY, len);
}

gboolean
imap_msginfo_envelope_ref(ImapSession *s, guint32 uid, GBytes **hold, const char **text, gsize *len,
                          GError **error)
{
    GBytes *blob = NULL;
    if (imap_g.ops->cache_get(s->mb, uid, &blob, NULL) && blob) {
        if (imap_mime_cache_text(blob, IMAP_MIME_CACHE_ENVELOPE, text, len)) {
            *hold = blob;
            return TRUE;
        }
        g_bytes_unref(blob);
    }
    int fd = imap_g.ops->open_content(s->mb, uid, error);
    if (fd < 0)
        return FALSE;
    blob = parse_envelope_and_cache(s, uid, fd, error);
    close(fd);
    if (!blob)
        return FALSE;
    if (!imap_mime_cache_text(blob, IMAP_MIME_CACHE_ENVELOPE, text, len)) {
        g_bytes_unref(blob);
        g_set_error_literal(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "no ENVELOPE");
        return FALSE;
    }
    *hold = blob;
    return TRUE;
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

struct ImapSecStream {
    ImapMimeStream *st;
    ImapMimeInput in;
};

gboolean
imap_msginfo_header_only(const ImapFetchSection *sec)
{
    return imap_mime_header_section(sec);
}

ImapSecStream *
imap_msginfo_stream(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int *fd,
                    const ImapFetchSection *sec, guint64 *size_r, GError **error)
{
    if (!need_fd(s, uid, fd, error))
        return NULL;
    ImapSecStream *ss = g_new0(ImapSecStream, 1);
    if (imap_mime_header_section(sec)) {
        /* made in memory at open (the usual case): no fd of its own */
        ImapMimeInput in = IMAP_MIME_INPUT_FD(*fd);
        ss->st = imap_mime_header_stream_open(&in, sec, size_r, error);
        if (ss->st && imap_mime_stream_in_memory(ss->st)) {
            ss->in.fd = -1;
            return ss;
        }
        g_clear_pointer(&ss->st, imap_mime_stream_free);
        if (error && *error) {
            g_free(ss);
            return NULL;
        }
    }
    ss->in = IMAP_MIME_INPUT_FD(dup(*fd));
    if (ss->in.fd < 0) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "dup: %s", g_strerror(errno));
        g_free(ss);
        return NULL;
    }
    GError *e = NULL;
    if (imap_mime_header_section(sec))
        ss->st = imap_mime_header_stream_open(&ss->in, sec, size_r, &e);
    else
        ss->st = imap_mime_stream_open(mi->mime, &ss->in, sec, size_r, &e);
    if (!ss->st && g_error_matches(e, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CHANGED)) {
        g_clear_error(&e);
        if (reparse(s, mi, uid, *fd, &e))
            ss->st = imap_mime_stream_open(mi->mime, &ss->in, sec, size_r, &e);
    }
    if (!ss->st) {
        g_propagate_error(error, e);
        close(ss->in.fd);
        g_free(ss);
        return NULL;
    }
    return ss;
}

gssize
imap_secstream_read(ImapSecStream *ss, void *buf, gsize len, GError **error)
{
    return imap_mime_stream_read(ss->st, buf, len, error);
}

void
imap_secstream_free(ImapSecStream *ss)
{
    if (!ss)
        return;
    imap_mime_stream_free(ss->st);
    if (ss->in.fd >= 0)
        close(ss->in.fd);
    g_free(ss);
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
