/* SPDX-License-Identifier: MIT */
/*
 * dsn.c - compose an RFC 3464 delivery status notification, by hand
 * (generating MIME is simple; GMime would only add a dependency).
 *
 *   dsn_compose(dsn, orig, rcpts, n, opt, error)   the whole DSN into a spool
 *   dsn_status_fields(out, orig, rcpts, n, opt)    the delivery-status body
 *   dsn_return_wanted(ret)                         RET attribute -> what to return
 *   dsn_status(ecode)                              a valid Status value
 *   dsn_success_action(expanded, relayed)          Action of a success report
 *   dsn_is_success(action)                         delivered/relayed/expanded?
 *
 * The message (RFC 3462 multipart/report, report-type=delivery-status):
 *
 *   From: Mail Delivery System <MAILER-DAEMON@HOST>
 *   To: <sender>   Subject, Date, Message-ID, Auto-Submitted: auto-replied,
 *   MIME-Version, Content-Type: multipart/report; ...; boundary="..."
 *   1. text/plain: what happened, one line per recipient (the wording
 *      depends on opt->kind: failure, delay warning, success (NOTIFY=
 *      SUCCESS), a failed bounce reported to postmaster, or postmaster's
 *      copy of a failure report)
 *   2. message/delivery-status: per-message fields (Reporting-MTA,
 *      Original-Envelope-Id, X-Kurir-Queue-ID, Arrival-Date), then per
 *      recipient (Original-Recipient, Final-Recipient, Action, Status,
 *      Remote-MTA, Diagnostic-Code, Last-Attempt-Date)
 *   3. message/rfc822 (the whole original) or text/rfc822-headers (its
 *      header block): RET=HDRS gives headers; RET=FULL or no RET gives
 *      the whole message unless it is bigger than max_return_size.
 *      Delay warnings and everything to postmaster carry the headers
 *      only; success reports too, unless RET=FULL (and small enough).
 *
 * Success recipients (Action delivered, relayed or expanded) always get
 * Status 2.0.0 and a 250 Diagnostic-Code.
 *
 * Every line ends in CRLF; the original's bare LFs become CRLF while it
 * is copied. The boundary is random (and contains "=_", which cannot
 * appear in quoted-printable or base64 text). Values that go into
 * header-like fields are cut to one line of printable text (control
 * characters become '?'); 8-bit text is declared (charset=utf-8, 8bit).
 */
#include "dsn.h"
#include <gio/gio.h>

#define COPY_CHUNK (64 * 1024)

DsnReturn
dsn_return_wanted(const char *ret)
{
    if (ret && g_ascii_strcasecmp(ret, "HDRS") == 0)
        return DSN_RETURN_HEADERS;
    if (ret && g_ascii_strcasecmp(ret, "FULL") == 0)
        return DSN_RETURN_FULL;
    return DSN_RETURN_DEFAULT;
}

const char *
dsn_status(const char *e)
{
    /* class "." subject "." detail: [45] . 1-3 digits . 1-3 digits */
    if (!e || (e[0] != '4' && e[0] != '5') || e[1] != '.')
        return "5.0.0";
    const char *p = e + 2;
    for (int part = 0; part < 2; part++) {
        int n = 0;
        while (g_ascii_isdigit(*p) && n < 4)
            p++, n++;
        if (n == 0 || n > 3)
            return "5.0.0";
        if (part == 0 && *p++ != '.')
            return "5.0.0";
    }
    return *p ? "5.0.0" : e;
}

const char *
dsn_success_action(gboolean expanded, gboolean relayed)
{
    return expanded ? "expanded" : relayed ? "relayed" : "delivered";
}

gboolean
dsn_is_success(const char *a)
{
    return a && (!strcmp(a, "delivered") || !strcmp(a, "relayed") || !strcmp(a, "expanded"));
}

/* One line of printable text (UTF-8 kept, controls -> '?'). */
static char *
one_line(const char *s)
{
    char *out = g_utf8_make_valid(s ? s : "", -1);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return out;
}

static gboolean
is_8bit(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s >= 0x80)
            return TRUE;
    return FALSE;
}

static char *
rfc5322_date(gint64 t)
{
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local(t);
    if (!dt)
        return g_strdup("Thu, 01 Jan 1970 00:00:00 +0000");
    /* %a and %b are locale-dependent: spell them out. */
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    gint64 off = g_date_time_get_utc_offset(dt) / G_USEC_PER_SEC;
    char sign = off < 0 ? '-' : '+';
    off = off < 0 ? -off : off;
    return g_strdup_printf(
        "%s, %02d %s %04d %02d:%02d:%02d %c%02d%02d", days[g_date_time_get_day_of_week(dt) - 1],
        g_date_time_get_day_of_month(dt), months[g_date_time_get_month(dt) - 1],
        g_date_time_get_year(dt), g_date_time_get_hour(dt), g_date_time_get_minute(dt),
        g_date_time_get_second(dt), sign, (int)(off / 3600), (int)(off % 3600 / 60));
}

void
dsn_status_fields(GString *out, KrMsg *orig, const DsnRcpt *rcpts, guint n, const DsnOptions *opt)
{
    gint64 now = opt->now ? opt->now : g_get_real_time() / G_USEC_PER_SEC;
    g_autofree char *mta = one_line(opt->reporting_mta);
    g_autofree char *arrival = rfc5322_date(kr_msg_arrival(orig));
    g_autofree char *last = rfc5322_date(now);
    g_string_append_printf(out, "Reporting-MTA: dns; %s\r\n", mta);
    const char *envid = kr_msg_attr(orig, "envid");
    if (envid && *envid) {
        g_autofree char *e = one_line(envid);
        g_string_append_printf(out, "Original-Envelope-Id: %s\r\n", e);
    }
    g_string_append_printf(out, "X-Kurir-Queue-ID: %s\r\n", kr_msg_queue_id(orig));
    g_string_append_printf(out, "Arrival-Date: %s\r\n", arrival);
    for (guint i = 0; i < n; i++) {
        const DsnRcpt *r = &rcpts[i];
        g_autofree char *addr = one_line(r->address);
        g_autofree char *diag = one_line(r->diag && *r->diag ? r->diag : "delivery failed");
        gboolean ok = dsn_is_success(r->action);
        const char *status = ok ? "2.0.0" : dsn_status(r->status);
        g_string_append(out, "\r\n");
        if (r->orcpt && strchr(r->orcpt, ';')) {
            g_autofree char *o = one_line(r->orcpt);
            char *semi = strchr(o, ';');
            *semi = 0;
            g_string_append_printf(out, "Original-Recipient: %s; %s\r\n", g_strstrip(o),
                                   g_strchug(semi + 1));
        }
        g_string_append_printf(out, "Final-Recipient: rfc822; %s\r\n", addr);
        g_string_append_printf(out, "Action: %s\r\n", r->action ? r->action : "failed");
        g_string_append_printf(out, "Status: %s\r\n", status);
        if (r->remote_mta && *r->remote_mta) {
            g_autofree char *rm = one_line(r->remote_mta);
            g_string_append_printf(out, "Remote-MTA: dns; %s\r\n", rm);
        }
        g_string_append_printf(out, "Diagnostic-Code: smtp; %d %s %s\r\n",
                               ok                                 ? 250
                               : r->code >= 200 && r->code <= 599 ? r->code
                               : status[0] == '4'                 ? 451
                                                                  : 550,
                               status, diag);
        g_string_append_printf(out, "Last-Attempt-Date: %s\r\n", last);
    }
}

/* Copies the original, LF -> CRLF, stopping after the header block when
 * headers_only. */
typedef struct {
    KrMsg *dsn;
    GString *buf;
    char prev;        /* last byte copied */
    gboolean at_bol;  /* at the beginning of a line */
    gboolean in_body; /* headers_only: the blank line was seen */
    GError *error;
} Copier;

static gboolean
flush_buf(Copier *c)
{
    if (c->buf->len && !c->error)
        kr_msg_append(c->dsn, c->buf->str, c->buf->len, &c->error);
    g_string_truncate(c->buf, 0);
    return c->error == NULL;
}

static void
copy_bytes(Copier *c, const char *p, gsize n, gboolean headers_only)
{
    for (gsize i = 0; i < n && !c->in_body; i++) {
        char ch = p[i];
        if (ch == '\n') {
            if (c->prev != '\r')
                g_string_append_c(c->buf, '\r');
            g_string_append_c(c->buf, '\n');
            if (headers_only && c->at_bol) {
                c->in_body = TRUE; /* the empty line ends the header block */
                break;
            }
            c->at_bol = TRUE;
        } else {
            if (ch != '\r')
                c->at_bol = FALSE;
            g_string_append_c(c->buf, ch);
        }
        c->prev = ch;
    }
    if (c->buf->len >= COPY_CHUNK)
        flush_buf(c);
}

static gboolean
copy_original(KrMsg *dsn, KrMsg *orig, gboolean headers_only, GError **error)
{
    Copier c = {.dsn = dsn, .buf = g_string_sized_new(COPY_CHUNK + 1024), .at_bol = TRUE};
    g_autofree char *chunk = g_malloc(COPY_CHUNK);
    goffset off = 0;
    for (;;) {
        gssize n = kr_msg_read(orig, off, chunk, COPY_CHUNK, &c.error);
        if (n <= 0 || c.in_body)
            break;
        copy_bytes(&c, chunk, (gsize)n, headers_only);
        off += n;
        if (c.error)
            break;
    }
    /* The part ends with a line end either way. */
    if (!c.error && c.prev != '\n' && !c.in_body)
        g_string_append(c.buf, "\r\n");
    flush_buf(&c);
    g_string_free(c.buf, TRUE);
    if (c.error) {
        g_propagate_error(error, c.error);
        return FALSE;
    }
    return TRUE;
}

static gboolean
append(KrMsg *dsn, GString *s, GError **error)
{
    gboolean ok = kr_msg_append(dsn, s->str, s->len, error);
    g_string_truncate(s, 0);
    return ok;
}

gboolean
dsn_compose(KrMsg *dsn, KrMsg *orig, const DsnRcpt *rcpts, guint n, const DsnOptions *opt,
            GError **error)
{
    gint64 now = opt->now ? opt->now : g_get_real_time() / G_USEC_PER_SEC;
    g_autofree char *host = one_line(opt->reporting_mta);
    g_autofree char *to = one_line(opt->to ? opt->to : kr_msg_sender(orig));
    g_autofree char *date = rfc5322_date(now);
    g_autofree char *boundary = NULL;
    if (opt->boundary) {
        boundary = g_strdup(opt->boundary);
    } else {
        guint32 r1 = g_random_int(), r2 = g_random_int();
        boundary = g_strdup_printf("=_kurir_%s_%08x%08x", kr_msg_queue_id(dsn), r1, r2);
    }
    DsnReturn want = dsn_return_wanted(kr_msg_attr(orig, "ret"));
    goffset size = kr_msg_size(orig);
    gboolean too_big = opt->max_return_size > 0 && size > opt->max_return_size;
    gboolean headers_only = want == DSN_RETURN_HEADERS || too_big ||
                            (opt->kind != DSN_KIND_FAILURE &&
                             !(opt->kind == DSN_KIND_SUCCESS && want == DSN_RETURN_FULL));
    static const char *const subjects[] = {
        [DSN_KIND_FAILURE] = "Undelivered Mail Returned to Sender",
        [DSN_KIND_DELAY] = "Delayed Mail (still being retried)",
        [DSN_KIND_POSTMASTER] = "Undeliverable mail from the null sender",
        [DSN_KIND_COPY] = "Postmaster Copy: Undelivered Mail",
        [DSN_KIND_SUCCESS] = "Successful Mail Delivery Report",
    };

    GString *s = g_string_new(NULL);
    g_string_append_printf(s,
                           "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
                           "To: <%s>\r\n"
                           "Subject: %s\r\n"
                           "Date: %s\r\n"
                           "Message-ID: <%s.dsn@%s>\r\n"
                           "Auto-Submitted: auto-replied\r\n"
                           "MIME-Version: 1.0\r\n"
                           "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                           "\tboundary=\"%s\"\r\n"
                           "\r\n"
                           "This is a MIME-encapsulated message.\r\n"
                           "\r\n",
                           host, to, subjects[opt->kind], date, kr_msg_queue_id(dsn), host,
                           boundary);

    /* 1. For people. */
    GString *text = g_string_new(NULL);
    g_string_append_printf(text, "This is the mail system at host %s.\r\n\r\n", host);
    switch (opt->kind) {
    case DSN_KIND_FAILURE:
        g_string_append_printf(text,
                               "I'm sorry to have to inform you that your message could not\r\n"
                               "be delivered to one or more recipients. %s\r\n\r\n"
                               "For further assistance, please send mail to postmaster.\r\n\r\n",
                               headers_only ? "The headers of the message are attached below."
                                            : "It is attached below.");
        break;
    case DSN_KIND_DELAY:
        g_string_append(text,
                        "####################################################################\r\n"
                        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
                        "####################################################################\r\n"
                        "\r\n"
                        "Your message could not be delivered yet to the recipients below.\r\n"
                        "The mail system keeps trying, and will tell you if it gives up.\r\n"
                        "The headers of the message are attached below.\r\n\r\n");
        break;
    case DSN_KIND_SUCCESS:
        g_string_append_printf(text,
                               "Your message was successfully delivered to the destination(s)\r\n"
                               "listed below. If the message was delivered to a mailbox you\r\n"
                               "will receive no further notifications. Otherwise you may\r\n"
                               "still receive notifications of mail delivery errors from\r\n"
                               "other systems. %s\r\n\r\n",
                               headers_only ? "The headers of the message are attached below."
                                            : "It is attached below.");
        break;
    case DSN_KIND_POSTMASTER: {
        g_autofree char *id = one_line(kr_msg_queue_id(orig));
        g_string_append_printf(text,
                               "A message from the null sender <> (a delivery notification or\r\n"
                               "similar, queue ID %s) could not be delivered. Mail from <> is\r\n"
                               "never returned, so it is reported to you instead; nothing else\r\n"
                               "is sent. Its headers are attached below.\r\n\r\n",
                               id);
        break;
    }
    case DSN_KIND_COPY: {
        g_autofree char *snd = one_line(kr_msg_sender(orig));
        g_string_append_printf(text,
                               "This is a copy of the delivery status notification sent to\r\n"
                               "<%s>. The headers of the undelivered message are attached\r\n"
                               "below.\r\n\r\n",
                               snd);
        break;
    }
    }
    for (guint i = 0; i < n; i++) {
        g_autofree char *a = one_line(rcpts[i].address);
        g_autofree char *d =
            one_line(rcpts[i].diag && *rcpts[i].diag ? rcpts[i].diag : "delivery failed");
        /* "host X said" only for a permanent reply from that host. */
        if (dsn_is_success(rcpts[i].action)) {
            g_string_append_printf(text, "<%s>: %s (%s)\r\n", a, rcpts[i].action, d);
        } else if (rcpts[i].remote_mta && *rcpts[i].remote_mta && rcpts[i].code >= 500 &&
                   rcpts[i].code <= 599 && dsn_status(rcpts[i].status)[0] == '5') {
            g_autofree char *rm = one_line(rcpts[i].remote_mta);
            g_string_append_printf(text, "<%s>: host %s said: %d %s %s\r\n", a, rm, rcpts[i].code,
                                   dsn_status(rcpts[i].status), d);
        } else {
            g_string_append_printf(text, "<%s>: %s (%s)\r\n", a, d, dsn_status(rcpts[i].status));
        }
    }
    if (too_big && want != DSN_RETURN_HEADERS && opt->kind == DSN_KIND_FAILURE)
        g_string_append_printf(text,
                               "\r\nThe message was larger than %" G_GINT64_FORMAT
                               " bytes: only its headers are returned.\r\n",
                               opt->max_return_size);
    gboolean text8 = is_8bit(text->str);
    g_string_append_printf(s,
                           "--%s\r\n"
                           "Content-Description: Notification\r\n"
                           "Content-Type: text/plain; charset=%s\r\n"
                           "Content-Transfer-Encoding: %s\r\n"
                           "\r\n%s\r\n",
                           boundary, text8 ? "utf-8" : "us-ascii", text8 ? "8bit" : "7bit",
                           text->str);
    g_string_free(text, TRUE);

    /* 2. For programs. */
    GString *st = g_string_new(NULL);
    dsn_status_fields(st, orig, rcpts, n, opt);
    g_string_append_printf(s,
                           "--%s\r\n"
                           "Content-Description: Delivery report\r\n"
                           "Content-Type: message/delivery-status\r\n"
                           "%s"
                           "\r\n%s\r\n",
                           boundary, is_8bit(st->str) ? "Content-Transfer-Encoding: 8bit\r\n" : "",
                           st->str);
    g_string_free(st, TRUE);

    /* 3. The original. */
    g_string_append_printf(s,
                           "--%s\r\n"
                           "Content-Description: %s\r\n"
                           "Content-Type: %s\r\n"
                           "Content-Transfer-Encoding: 8bit\r\n"
                           "\r\n",
                           boundary,
                           opt->kind == DSN_KIND_SUCCESS
                               ? (headers_only ? "Message Headers" : "Delivered Message")
                           : headers_only ? "Undelivered Message Headers"
                                          : "Undelivered Message",
                           headers_only ? "text/rfc822-headers" : "message/rfc822");
    gboolean ok = append(dsn, s, error) && copy_original(dsn, orig, headers_only, error);
    if (ok) {
        g_string_append_printf(s, "\r\n--%s--\r\n", boundary);
        ok = append(dsn, s, error);
    }
    g_string_free(s, TRUE);
    return ok;
}
