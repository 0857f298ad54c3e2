/* SPDX-License-Identifier: MIT */
/*
 * imap-bodystruct.c - ENVELOPE and BODY/BODYSTRUCTURE serialisation
 * (RFC 3501 7.4.2, RFC 9051 7.5.2). See imap-bodystruct.h.
 *
 *   imap_fmt_envelope, imap_fmt_bodystructure
 */
#include "imap-bodystruct.h"
#include "imap-format.h"

#include <string.h>

static void
sp(GString *out)
{
    g_string_append_c(out, ' ');
}

static void
addresses(GString *out, const ImapAddress *a, guint n, guint flags)
{
    if (n == 0) {
        g_string_append(out, "NIL");
        return;
    }
    g_string_append_c(out, '(');
    for (guint i = 0; i < n; i++) {
        g_string_append_c(out, '(');
        imap_fmt_nstring(out, a[i].name, flags);
        sp(out);
        imap_fmt_nstring(out, a[i].adl, flags);
        sp(out);
        imap_fmt_nstring(out, a[i].mailbox, flags);
        sp(out);
        imap_fmt_nstring(out, a[i].host, flags);
        g_string_append_c(out, ')');
    }
    g_string_append_c(out, ')');
}

void
imap_fmt_envelope(GString *out, const ImapEnvelope *e, guint flags)
{
    g_string_append_c(out, '(');
    imap_fmt_nstring(out, e->date, flags);
    sp(out);
    imap_fmt_nstring(out, e->subject, flags);
    sp(out);
    addresses(out, e->from, e->n_from, flags);
    sp(out);
    if (e->n_sender)
        addresses(out, e->sender, e->n_sender, flags);
    else
        addresses(out, e->from, e->n_from, flags);
    sp(out);
    if (e->n_reply_to)
        addresses(out, e->reply_to, e->n_reply_to, flags);
    else
        addresses(out, e->from, e->n_from, flags);
    sp(out);
    addresses(out, e->to, e->n_to, flags);
    sp(out);
    addresses(out, e->cc, e->n_cc, flags);
    sp(out);
    addresses(out, e->bcc, e->n_bcc, flags);
    sp(out);
    imap_fmt_nstring(out, e->in_reply_to, flags);
    sp(out);
    imap_fmt_nstring(out, e->message_id, flags);
    g_string_append_c(out, ')');
}

static void
params(GString *out, const ImapParam *p, guint n, guint flags)
{
    if (n == 0) {
        g_string_append(out, "NIL");
        return;
    }
    g_string_append_c(out, '(');
    for (guint i = 0; i < n; i++) {
        if (i)
            sp(out);
        imap_fmt_string(out, p[i].name ? p[i].name : "", p[i].name ? strlen(p[i].name) : 0, flags);
        sp(out);
        imap_fmt_string(out, p[i].value ? p[i].value : "", p[i].value ? strlen(p[i].value) : 0,
                        flags);
    }
    g_string_append_c(out, ')');
}

static void
str(GString *out, const char *s, guint flags)
{
    imap_fmt_string(out, s, strlen(s), flags);
}

/* SP body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void
dsp_lang_loc(GString *out, const ImapBodyPart *p, guint flags)
{
    sp(out);
    if (p->disposition) {
        g_string_append_c(out, '(');
        str(out, p->disposition, flags);
        sp(out);
        params(out, p->disp_params, p->n_disp_params, flags);
        g_string_append_c(out, ')');
    } else {
        g_string_append(out, "NIL");
    }
    sp(out);
    guint nl = 0;
    while (p->language && p->language[nl])
        nl++;
    if (nl == 0) {
        g_string_append(out, "NIL");
    } else if (nl == 1) {
        str(out, p->language[0], flags);
    } else {
        g_string_append_c(out, '(');
        for (guint i = 0; i < nl; i++) {
            if (i)
                sp(out);
            str(out, p->language[i], flags);
        }
        g_string_append_c(out, ')');
    }
    sp(out);
    imap_fmt_nstring(out, p->location, flags);
}

static const ImapBodyPart empty_part = {.type = "text", .subtype = "plain"};
static const ImapEnvelope empty_envelope = {0};

static gboolean
is_type(const ImapBodyPart *p, const char *type)
{
    return g_ascii_strcasecmp(p->type ? p->type : "text", type) == 0;
}

static void body(GString *out, const ImapBodyPart *p, gboolean ext, guint flags, guint depth);

static void
body_multipart(GString *out, const ImapBodyPart *p, gboolean ext, guint flags, guint depth)
{
    g_string_append_c(out, '(');
    if (!p->children)
        body(out, &empty_part, ext, flags, depth + 1);
    for (const ImapBodyPart *c = p->children; c; c = c->next)
        body(out, c, ext, flags, depth + 1);
    sp(out);
    str(out, p->subtype ? p->subtype : "mixed", flags);
    if (ext) {
        sp(out);
        params(out, p->params, p->n_params, flags);
        dsp_lang_loc(out, p, flags);
    }
    g_string_append_c(out, ')');
}

static void
body(GString *out, const ImapBodyPart *p, gboolean ext, guint flags, guint depth)
{
    if (depth >= IMAP_BODY_MAX_DEPTH)
        p = &empty_part;
    if (is_type(p, "multipart")) {
        body_multipart(out, p, ext, flags, depth);
        return;
    }
    g_string_append_c(out, '(');
    str(out, p->type ? p->type : "text", flags);
    sp(out);
    str(out, p->subtype ? p->subtype : "plain", flags);
    sp(out);
    params(out, p->params, p->n_params, flags);
    sp(out);
    imap_fmt_nstring(out, p->id, flags);
    sp(out);
    imap_fmt_nstring(out, p->description, flags);
    sp(out);
    str(out, p->encoding ? p->encoding : "7BIT", flags);
    g_string_append_printf(out, " %" G_GUINT64_FORMAT, p->size);
    gboolean msg = is_type(p, "message") && p->subtype &&
                   (g_ascii_strcasecmp(p->subtype, "rfc822") == 0 ||
                    g_ascii_strcasecmp(p->subtype, "global") == 0);
    if (msg) {
        sp(out);
        imap_fmt_envelope(out, p->envelope ? p->envelope : &empty_envelope, flags);
        sp(out);
        body(out, p->children ? p->children : &empty_part, ext, flags, depth + 1);
    }
    if (msg || is_type(p, "text"))
        g_string_append_printf(out, " %" G_GUINT64_FORMAT, p->lines);
    if (ext) {
        sp(out);
        imap_fmt_nstring(out, p->md5, flags);
        dsp_lang_loc(out, p, flags);
    }
    g_string_append_c(out, ')');
}

void
imap_fmt_bodystructure(GString *out, const ImapBodyPart *part, gboolean extended, guint flags)
{
    body(out, part, extended, flags, 0);
}
