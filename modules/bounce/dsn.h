/* SPDX-License-Identifier: MIT */
/*
 * dsn.h - composing RFC 3464 delivery status notifications (see dsn.c).
 */
#ifndef BOUNCE_DSN_H
#define BOUNCE_DSN_H

#include <kurir/kurir.h>

typedef enum {
    DSN_RETURN_DEFAULT, /* no RET given: the full message if small enough */
    DSN_RETURN_FULL,
    DSN_RETURN_HEADERS,
} DsnReturn;

/* What the notification is about, and for whom. */
typedef enum {
    DSN_KIND_FAILURE = 0, /* to the sender: these recipients failed */
    DSN_KIND_DELAY,       /* to the sender: still trying (a warning only) */
    DSN_KIND_POSTMASTER,  /* to postmaster: mail from <> (a bounce) failed */
    DSN_KIND_COPY,        /* to postmaster: a copy of a failure report */
    DSN_KIND_SUCCESS,     /* to the sender: delivered, relayed or expanded
                           * (NOTIFY=SUCCESS); headers only unless RET=FULL */
} DsnKind;

typedef struct {
    const char *reporting_mta; /* host name for Reporting-MTA and From */
    gint64 max_return_size;    /* larger messages: headers only */
    gint64 now;                /* unix time of the report (0: now) */
    const char *boundary;      /* MIME boundary (NULL: made up) */
    DsnKind kind;              /* subject and text; DELAY, POSTMASTER and
                                * COPY return the headers only */
    const char *to;            /* To: address (NULL: the original's sender) */
} DsnOptions;

/* One recipient to report. */
typedef struct {
    const char *address;    /* Final-Recipient */
    const char *orcpt;      /* "type;address" or NULL */
    const char *action;     /* "failed", "delayed", ... */
    const char *status;     /* "5.1.1" */
    int code;               /* 550, 0 if unknown */
    const char *diag;       /* diagnostic text */
    const char *remote_mta; /* or NULL */
} DsnRcpt;

/* The Action of a success report (RFC 3464 2.3.3): "expanded" for an
 * alias or list expansion, "relayed" for a hand-over to a server that
 * could not take the NOTIFY on, else "delivered". */
const char *dsn_success_action(gboolean expanded, gboolean relayed);
/* Is action one of the success actions (Status 2.0.0)? */
gboolean dsn_is_success(const char *action);
/* What RET asks for, from the message's "ret" attribute. */
DsnReturn dsn_return_wanted(const char *ret_attr);
/* A Status value for a recipient: its enhanced code if it has the form
 * class.subject.detail with class 4 or 5, else 5.0.0. */
const char *dsn_status(const char *ecode);
/* Write the whole DSN about orig's recipients into dsn (an uncommitted
 * spool): headers, text part, delivery-status part, and the original
 * message or its headers. CRLF line endings throughout. Blocking (reads
 * orig's content). The caller sets the DSN's envelope (sender <>). */
gboolean dsn_compose(KrMsg *dsn, KrMsg *orig, const DsnRcpt *rcpts, guint n_rcpts,
                     const DsnOptions *opt, GError **error);
/* Only the message/delivery-status body (for the tests). */
void dsn_status_fields(GString *out, KrMsg *orig, const DsnRcpt *rcpts, guint n_rcpts,
                       const DsnOptions *opt);

#endif
