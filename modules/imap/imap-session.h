/* SPDX-License-Identifier: MIT */
/*
 * imap-session.h - the IMAP server module's shared types: settings, the
 * listener, one session, worker jobs, and the functions the command files
 * share.
 *
 *   imap.c                   module descriptor, settings, the "imap"
 *                            listener type, failed logins per address
 *   imap-session.c           one connection: reading and framing commands,
 *                            literals, dispatch by state, jobs, replies
 *   imap-session-sync.c      untagged updates (EXISTS, EXPUNGE, VANISHED,
 *                            FETCH FLAGS) from the store's sync()
 *   imap-session-util.c      mailbox names IMAP <-> store, flags, sets
 *   imap-cmd-auth.c          CAPABILITY LOGOUT STARTTLS AUTHENTICATE LOGIN
 *                            ENABLE ID
 *   imap-cmd-mailbox.c       SELECT EXAMINE CREATE DELETE RENAME
 *                            (UN)SUBSCRIBE STATUS NOOP CHECK CLOSE UNSELECT
 *                            EXPUNGE
 *   imap-cmd-list.c          LIST LSUB NAMESPACE
 *   imap-cmd-append.c        APPEND (buffered and streamed literals)
 *   imap-cmd-idle.c          IDLE
 *   imap-cmd-fetch.c         FETCH
 *   imap-cmd-fetch-body.c    ENVELOPE, BODYSTRUCTURE and BODY[section]
 *                            content: the one place that parses MIME
 *   imap-cmd-search.c        SEARCH, ESEARCH
 *   imap-cmd-store.c         STORE COPY MOVE
 *
 * THREADS. Store calls are blocking: a command that needs the store runs
 * a job (imap_job_start): its work function runs in a worker thread with
 * the session's KrMailbox to itself (at most one job per session), then
 * its output and tagged reply are written on the loop. While a job is in
 * flight the loop does not touch s->mb, and reading input is paused.
 * Fields the worker reads (state flags, mb, user) are only changed on the
 * loop while no job is in flight.
 */
#ifndef KR_IMAP_SESSION_H
#define KR_IMAP_SESSION_H

#include <kurir/kurir.h>

#include "imap-bodystruct.h"
#include "imap-date.h"
#include "imap-format.h"
#include "imap-mailbox.h"
#include "imap-parse.h"
#include "imap-seqset.h"

typedef struct {
    char *store;
    gint64 idle_timeout;
    gint64 idle_poll;
    gint64 auth_fail_delay;
    gint64 auth_fail_limit;
    gint64 max_bad_commands;
    gint64 max_literal;
    gint64 max_line;
    gint64 max_command;
    gboolean create_special_use;
} ImapConf;

typedef struct {
    gboolean allow_plaintext_loopback;
} ImapListenerConf;

typedef struct {
    KrListener *l;
    ImapListenerConf *conf;
    const char *name;
    gboolean starttls;
    SSL_CTX *tls_ctx;
} ImapServer;

typedef struct {
    ImapConf *conf;
    const KrStore *store;
    const KrMailboxOps *ops;
    KrFailCount *fails; /* failed logins per client address */
} ImapGlobals;

extern ImapGlobals imap_g;

typedef enum {
    IMAP_S_NOTAUTH,
    IMAP_S_AUTH,
    IMAP_S_SELECTED,
    IMAP_S_LOGOUT,
} ImapSessState;

typedef struct ImapSession ImapSession;
typedef struct ImapJob ImapJob;
typedef struct ImapLit ImapLit;

struct ImapSession {
    ImapServer *srv;
    KrConn *conn;
    ImapReader *rd;
    ImapSessState state;
    gint refs;           /* atomic: the connection, watch notifications */
    gint notify;         /* atomic: the store reported a change (IDLE) */
    gboolean busy;       /* a command is in progress: input paused */
    gboolean in_job;     /* a worker job or auth check is in flight */
    gboolean dead;       /* the connection is gone */
    gboolean reaped;     /* ... and the session is being freed */
    gboolean stop;       /* stop reading buffered input (STARTTLS, LOGOUT) */
    gboolean sasl_wait;  /* AUTHENTICATE: the response line comes next */
    gboolean idling;     /* IDLE: waiting for DONE */
    gboolean idle_again; /* IDLE: a change came while a sync was running */
    gboolean utf8;       /* UTF8=ACCEPT enabled */
    gboolean rev2;       /* IMAP4rev2 enabled */
    gboolean condstore;  /* CONDSTORE enabled (explicitly or by use) */
    gboolean qresync;    /* QRESYNC enabled */
    gboolean readonly;   /* the selected mailbox was EXAMINEd */
    guint bad;           /* bad commands so far */
    guint timer;         /* failed-login delay, output drain */
    ImapJob *drain_job;  /* the job waiting for output to drain */
    guint idle_timer;    /* IDLE: periodic sync */
    char *user;          /* canonical user once logged in */
    ImapCommand *cmd;    /* the command in progress */
    KrMailbox *mb;       /* the selected mailbox */
    char *mailbox;       /* its name (UTF-8, IMAP form) */
    guint64 counter;     /* store change counter at the last sync */
    ImapLit *lit;        /* streamed APPEND literal being received */
};

/* Untagged-update policy at the end of a job (imap_job.sync). */
typedef enum {
    IMAP_SYNC_NONE,
    IMAP_SYNC_IF_CHANGED, /* sync if this process changed the folder */
    IMAP_SYNC_ALWAYS,     /* NOOP, CHECK, IDLE: also changes by others */
} ImapSyncMode;

typedef void (*ImapJobFunc)(ImapJob *j);

struct ImapJob {
    ImapSession *s;
    ImapCommand *cmd;      /* the session's command (borrowed) */
    ImapJobFunc work;      /* worker thread */
    ImapJobFunc done;      /* loop, after the output is written; NULL: finish */
    GString *out;          /* untagged output, written on the loop */
    GString *tagged;       /* the tagged reply line (imap_job_tagged) */
    ImapSyncMode sync;     /* after work (when !more) */
    gboolean more;         /* call work again once the output has drained */
    gboolean bye;          /* UIDVALIDITY lost: close after writing */
    gboolean keep_command; /* the command goes on afterwards (IDLE) */
    gboolean began;        /* work ran at least once */
    gpointer data;
    GDestroyNotify free_data;
};

/* imap.c */
gboolean imap_login_limited(const char *ip);
void imap_login_failed(const char *ip);

/* imap-session.c */
void imap_session_accept(ImapServer *srv, KrConn *conn);
void imap_session_ref(ImapSession *s);
void imap_session_unref(ImapSession *s);
/* The command in progress is finished: free it, read the next one. */
void imap_command_done(ImapSession *s);
/* Write a tagged reply for the command in progress (text is fixed
 * English, never client data). */
void imap_tagged(ImapSession *s, const char *status, const char *code, const char *text);
void imap_tagged_done(ImapSession *s, const char *status, const char *code, const char *text);
void imap_write(ImapSession *s, const char *data, gsize len);
void imap_printf(ImapSession *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Run work(j) in a worker, then write j->out and j->tagged on the loop.
 * The session is busy until the job ends. */
ImapJob *imap_job_new(ImapSession *s, ImapJobFunc work, ImapSyncMode sync);
void imap_job_start(ImapJob *j);
void imap_job_tagged(ImapJob *j, const char *status, const char *code, const char *text);
/* A session-only job (no command): IDLE's syncs. */
void imap_begin_busy(ImapSession *s);
gboolean imap_plaintext_ok(ImapSession *s);
void imap_capabilities(ImapSession *s, GString *out);
/* Output formatting flags for the session (IMAP_FMT_UTF8). */
guint imap_fmt_flags_of(ImapSession *s);
gboolean imap_utf8_names(ImapSession *s);

/* imap-session-sync.c (worker thread) */
void imap_sync_updates(ImapSession *s, GString *out, gboolean *bye_r);
/* "FLAGS (...)" item of a message; \Recent unless IMAP4rev2 is enabled. */
void imap_msg_flags(ImapSession *s, GString *out, const KrMailboxMsg *m);
/* Messages of the view with \Recent (KR_FLAG_RECENT). */
guint32 imap_recent_count(KrMailbox *mb);
/* "* FLAGS (...)" and "* OK [PERMANENTFLAGS (...)]" lines. */
void imap_flags_lines(ImapSession *s, GString *out);

/* imap-session-util.c */
/* IMAP name (UTF-8, '/' separated) <-> the store's folder name. */
char *imap_to_store_name(const char *name);
char *imap_from_store_name(const char *stname);
/* Decode and check a mailbox argument; NULL after a tagged NO. */
char *imap_arg_mailbox(ImapSession *s, const char *wire, gboolean create);
/* IMAP flag list -> store flags and keywords (NULL-terminated, into the
 * command's lifetime array kw). FALSE for an unknown system flag. */
gboolean imap_flags_from_args(char **flags, guint32 *sys_r, GPtrArray *kw);
/* Resolve a sequence set (seq numbers, or UIDs if uid) against the view:
 * the UIDs of the messages it names, ascending, into uids. FALSE if a
 * sequence number is out of range. */
gboolean imap_set_uids(ImapSession *s, ImapSeqSet *set, gboolean uid, GArray *uids);
/* First sequence number whose UID is >= uid (count + 1 if none). */
guint32 imap_seq_lower_bound(ImapSession *s, guint32 uid);
/* Tagged NO for a store error (maps codes to response codes). */
void imap_job_store_error(ImapJob *j, const GError *e, const char *what);
const char *imap_special_use(const char *name);

/* imap-cmd-fetch-body.c (worker): a message's MIME description */
typedef struct ImapMsgInfo ImapMsgInfo;
typedef enum {
    IMAP_MI_ENVELOPE, /* only the ENVELOPE text: header-only parse */
    IMAP_MI_TEXTS,    /* ENVELOPE, BODY, BODYSTRUCTURE texts (no sections) */
    IMAP_MI_FULL,     /* the part table too (sections) */
} ImapMsgNeed;
/* From the store's cache, or parsed (opening *fd if < 0) and cached.
 * Only what need says may be asked of it afterwards; a cached blob is
 * not loaded whole unless the part table is needed. */
ImapMsgInfo *imap_msginfo_get(ImapSession *s, guint32 uid, int *fd, ImapMsgNeed need,
                              GError **error);
void imap_msginfo_free(ImapMsgInfo *mi);
/* The texts, *len octets (not NUL-terminated). */
const char *imap_msginfo_envelope(const ImapMsgInfo *mi, gsize *len);
const char *imap_msginfo_body(const ImapMsgInfo *mi, gboolean extended, gsize *len);
/* The ENVELOPE text of a message (cached, or its header parsed and
 * cached), for SEARCH: *text (*len octets) lives in *hold (unref it). */
gboolean imap_msginfo_envelope_ref(ImapSession *s, guint32 uid, GBytes **hold, const char **text,
                                   gsize *len, GError **error);
/* A BODY[...] / BINARY[...] section (partial applied) as a stream of
 * *size_r octets; it keeps its own fd and may outlive mi. A top-level
 * header section (imap_msginfo_header_only) needs no mi (may be NULL):
 * it is read from the message's header alone. */
typedef struct ImapSecStream ImapSecStream;
gboolean imap_msginfo_header_only(const ImapFetchSection *sec);
ImapSecStream *imap_msginfo_stream(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int *fd,
                                   const ImapFetchSection *sec, guint64 *size_r, GError **error);
/* Octets read into buf (0: the end), -1 with error. */
gssize imap_secstream_read(ImapSecStream *st, void *buf, gsize len, GError **error);
void imap_secstream_free(ImapSecStream *st);
gboolean imap_msginfo_section_size(ImapSession *s, ImapMsgInfo *mi, guint32 uid, int *fd,
                                   const ImapFetchSection *sec, guint64 *size_r, GError **error);
gboolean imap_msginfo_no_part(const GError *e);
gboolean imap_msginfo_unknown_cte(const GError *e);

/* imap-cmd-*.c: command handlers (the command is s->cmd) */
void imap_cmd_capability(ImapSession *s);
void imap_cmd_logout(ImapSession *s);
void imap_cmd_starttls(ImapSession *s);
void imap_cmd_authenticate(ImapSession *s);
void imap_cmd_login(ImapSession *s);
void imap_sasl_response(ImapSession *s, const char *line, gsize len);
void imap_cmd_enable(ImapSession *s);
void imap_cmd_id(ImapSession *s);
void imap_cmd_select(ImapSession *s);
void imap_cmd_create(ImapSession *s);
void imap_cmd_delete(ImapSession *s);
void imap_cmd_rename(ImapSession *s);
void imap_cmd_subscribe(ImapSession *s);
void imap_cmd_status(ImapSession *s);
void imap_cmd_noop(ImapSession *s);
void imap_cmd_close(ImapSession *s);
void imap_cmd_expunge(ImapSession *s);
void imap_cmd_list(ImapSession *s);
void imap_cmd_namespace(ImapSession *s);
void imap_cmd_append(ImapSession *s);
void imap_cmd_idle(ImapSession *s);
void imap_idle_line(ImapSession *s, const char *line, gsize len);
void imap_idle_stop(ImapSession *s);
void imap_cmd_fetch(ImapSession *s);
void imap_cmd_search(ImapSession *s);
void imap_cmd_store(ImapSession *s);
void imap_cmd_copy(ImapSession *s);

/* imap-cmd-append.c: streamed literals */
void imap_lit_begin(ImapSession *s, const ImapLiteralInfo *info);
void imap_lit_data(ImapSession *s, const void *data, gsize len, gboolean last);
void imap_lit_free(ImapLit *lit);

/* imap-cmd-mailbox.c: shared with LIST-STATUS and QRESYNC FETCH */
/* (worker) RECENT is counted in the folder stname (the view if selected). */
void imap_status_items(ImapSession *s, GString *out, guint items, const KrMailboxStatus *st,
                       const char *stname);
/* (worker) The UIDs of known (resolved; NULL: 1:UIDNEXT-1) missing from the view. */
void imap_vanished(ImapSession *s, ImapSeqSet *known, GString *out);

/* imap-session.c */
/* (worker) Stop watching and close the selected mailbox. */
void imap_close_mailbox_work(ImapSession *s);
/* Reader limits for the session's state (after login). */
void imap_session_limits(ImapSession *s);

#endif
