/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-session.c - one IMAP connection: framing commands and literals
 *   with the protocol reader, dispatch by session state, worker jobs,
 *   replies, and the session's lifetime.
 *
 * SYNOPSIS
 *   imap_session_accept(srv, conn)      greet and serve a new connection
 *   imap_session_ref/unref(s)           the session lives while referenced
 *   imap_command_done(s)                the command in progress is finished
 *   imap_tagged(s, status, code, text)  "TAG OK [CODE] text"
 *   imap_tagged_done(...)               the same, then imap_command_done
 *   imap_write(s, data, len), imap_printf(s, fmt, ...)   raw output
 *   imap_job_new/start/tagged(...)      run a command's store work in a worker
 *   imap_begin_busy(s)                  pause input for a session-only job
 *   imap_plaintext_ok(s)                may a password be sent here?
 *   imap_capabilities(s, out)           the capability list for the state
 *   imap_fmt_flags_of(s), imap_utf8_names(s)
 *
 * DESCRIPTION
 *   Commands run one at a time, in order; a client may pipeline. A
 *   command that needs the store pauses input and runs a job: work() in a
 *   worker thread (with the session's mailbox to itself), then on the loop
 *   its untagged output, the untagged updates sync() found, and the tagged
 *   reply. A job that produces a lot (FETCH) sets `more`: its output is
 *   queued, and work() runs again at once while the connection's queue is
 *   below HIGH_WATER (the next part is made while this one is sent), else
 *   once it has drained below LOW_WATER, so a large reply never sits in
 *   memory whole.
 *
 *   Literals: the reader checks every announced size against the limits
 *   before anything is allocated; before login the limits are small (no
 *   APPEND, non-synchronising literals up to 4096 octets: LITERAL-),
 *   after login LITERAL+ and APPEND up to max_literal, the large ones
 *   streamed to a file (imap-cmd-append.c).
 *
 *   If the connection dies while a job is in flight, the session is
 *   freed when the job comes back: the selected mailbox is closed in a
 *   worker, then the last reference goes.
 */
#include "imap-session.h"

#include <string.h>

#define LOW_WATER  (256 * 1024)
#define HIGH_WATER (2 * LOW_WATER) /* queued output under which the next part is made at once */

static void process_input(ImapSession *s);
static void reap(ImapSession *s);

/* --- output ------------------------------------------------------------------ */

void
imap_write(ImapSession *s, const char *data, gsize len)
{
    if (!s->dead && len > 0)
        kr_conn_write(s->conn, data, len);
}

void
imap_printf(ImapSession *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    imap_write(s, text, strlen(text));
}

void
imap_tagged(ImapSession *s, const char *status, const char *code, const char *text)
{
    g_autoptr(GString) out = g_string_new(NULL);
    imap_fmt_status(out, s->cmd ? s->cmd->tag : NULL, status, code, text);
    imap_write(s, out->str, out->len);
}

void
imap_tagged_done(ImapSession *s, const char *status, const char *code, const char *text)
{
    imap_tagged(s, status, code, text);
    imap_command_done(s);
}

guint
imap_fmt_flags_of(ImapSession *s)
{
    return s->utf8 || s->rev2 ? IMAP_FMT_UTF8 : 0;
}

gboolean
imap_utf8_names(ImapSession *s)
{
    return s->utf8 || s->rev2;
}

gboolean
imap_plaintext_ok(ImapSession *s)
{
    if (kr_conn_is_tls(s->conn))
        return TRUE;
    if (!s->srv->conf->allow_plaintext_loopback)
        return FALSE;
    const char *ip = kr_conn_peer_ip(s->conn);
    if (!ip)
        return FALSE;
    return g_str_has_prefix(ip, "127.") || strcmp(ip, "::1") == 0 ||
           g_str_has_prefix(ip, "::ffff:127.");
}

void
imap_capabilities(ImapSession *s, GString *out)
{
    g_string_append(out, "IMAP4rev1 IMAP4rev2");
    if (s->state == IMAP_S_NOTAUTH) {
        if (s->srv->starttls && s->srv->tls_ctx && !kr_conn_is_tls(s->conn))
            g_string_append(out, " STARTTLS");
        if (imap_plaintext_ok(s))
            g_string_append(out, " AUTH=PLAIN");
        else
            g_string_append(out, " LOGINDISABLED");
        g_string_append(out, " SASL-IR ID ENABLE IDLE LITERAL-");
        return;
    }
    g_string_append_printf(out,
                           " ID ENABLE IDLE LITERAL+ NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN"
                           " SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH CONDSTORE QRESYNC"
                           " STATUS=SIZE APPENDLIMIT=%" G_GINT64_FORMAT
                           " UTF8=ACCEPT WITHIN BINARY",
                           imap_g.conf->max_literal);
}

/* --- reader limits --------------------------------------------------------------- */

static void
set_limits(ImapSession *s)
{
    ImapLimits lim = IMAP_LIMITS_INIT;
    if (s->state == IMAP_S_NOTAUTH) {
        /* Before login: small commands only, nothing streamed, no APPEND. */
        lim.max_line = 8192;
        lim.max_command = 16384;
        lim.max_literal = 8192;
        lim.max_nonsync = 4096; /* LITERAL- */
        lim.stream_min = G_MAXUINT64;
        lim.literal8 = FALSE;
    } else {
        lim.max_line = (gsize)imap_g.conf->max_line;
        lim.max_command = (gsize)imap_g.conf->max_command;
        lim.max_literal = (guint64)imap_g.conf->max_literal;
        lim.max_nonsync = G_MAXUINT64; /* LITERAL+ */
        lim.stream_min = 65536;
        lim.literal8 = TRUE;
    }
    imap_reader_set_limits(s->rd, &lim);
}

/* --- lifetime ------------------------------------------------------------------- */

static void
session_free(ImapSession *s)
{
    imap_reader_free(s->rd);
    imap_command_free(s->cmd);
    imap_lit_free(s->lit);
    g_free(s->user);
    g_free(s->mailbox);
    g_free(s);
}

void
imap_session_ref(ImapSession *s)
{
    g_atomic_int_inc(&s->refs);
}

void
imap_session_unref(ImapSession *s)
{
    if (g_atomic_int_dec_and_test(&s->refs))
        session_free(s);
}

void
imap_close_mailbox_work(ImapSession *s)
{
    if (!s->mb)
        return;
    imap_g.ops->watch(s->mb, NULL, NULL);
    imap_g.ops->close(s->mb);
    s->mb = NULL;
}

static void
close_work(gpointer p)
{
    imap_close_mailbox_work(p);
}

static void
close_done(gpointer p)
{
    ImapSession *s = p;
    s->in_job = FALSE;
    imap_session_unref(s);
}

static void job_free(ImapJob *j);

static void
remove_timers(ImapSession *s)
{
    if (s->timer) {
        g_source_remove(s->timer);
        s->timer = 0;
    }
    if (s->drain_job) {
        job_free(s->drain_job);
        s->drain_job = NULL;
    }
    if (s->idle_timer) {
        g_source_remove(s->idle_timer);
        s->idle_timer = 0;
    }
}

/* A dead session with nothing in flight: close its mailbox, drop it. */
static void
reap(ImapSession *s)
{
    if (!s->dead || s->in_job || s->reaped)
        return;
    s->reaped = TRUE;
    remove_timers(s);
    if (s->mb) {
        s->in_job = TRUE;
        kr_worker_run(close_work, close_done, s);
    } else {
        imap_session_unref(s);
    }
}

static void
on_closed(KrConn *conn, KrConnCloseReason why, gpointer ud)
{
    ImapSession *s = ud;
    if (s->user && s->state != IMAP_S_LOGOUT)
        g_message("%s: disconnected: user=<%s>, ip=%s%s", s->srv->name, s->user,
                  kr_conn_peer_ip(conn),
                  why == KR_CONN_CLOSED_TIMEOUT ? ", idle timeout"
                  : why == KR_CONN_CLOSED_ERROR ? ", I/O error"
                                                : "");
    s->dead = TRUE;
    s->conn = NULL;
    if (!s->in_job)
        remove_timers(s);
    reap(s);
}

static void
on_timeout(KrConn *conn, gpointer ud)
{
    kr_conn_printf(conn, "* BYE Disconnected for inactivity.\r\n");
}

static void
on_tls_done(KrConn *conn, gboolean ok, gpointer ud)
{
    ImapSession *s = ud;
    s->stop = FALSE;
    s->sasl_wait = FALSE;
}

static void
on_read(KrConn *conn, gpointer ud)
{
    process_input(ud);
}

void
imap_command_done(ImapSession *s)
{
    g_clear_pointer(&s->cmd, imap_command_free);
    if (s->reaped)
        return;
    s->busy = FALSE;
    if (s->dead) {
        reap(s);
        return;
    }
    kr_conn_resume(s->conn);
}

void
imap_begin_busy(ImapSession *s)
{
    s->busy = TRUE;
    kr_conn_pause(s->conn);
}

/* --- jobs ------------------------------------------------------------------------- */

ImapJob *
imap_job_new(ImapSession *s, ImapJobFunc work, ImapSyncMode sync)
{
    ImapJob *j = g_new0(ImapJob, 1);
    j->s = s;
    j->cmd = s->cmd;
    j->work = work;
    j->sync = sync;
    j->out = g_string_new(NULL);
    j->tagged = g_string_new(NULL);
    return j;
}

static void
job_free(ImapJob *j)
{
    if (j->free_data)
        j->free_data(j->data);
    g_string_free(j->out, TRUE);
    g_string_free(j->tagged, TRUE);
    g_free(j);
}

void
imap_job_tagged(ImapJob *j, const char *status, const char *code, const char *text)
{
    g_string_truncate(j->tagged, 0);
    imap_fmt_status(j->tagged, j->cmd ? j->cmd->tag : NULL, status, code, text);
}

static void
job_work(gpointer p)
{
    ImapJob *j = p;
    ImapSession *s = j->s;
    /* UID commands name messages by UID: bring the view up to date
     * first, so their results are current (never with sequence numbers,
     * which must mean what the client saw) */
    if (!j->began && j->cmd && j->cmd->uid && j->sync != IMAP_SYNC_NONE && s->mb &&
        imap_g.ops->change_counter(s->mb) != s->counter)
        imap_sync_updates(s, j->out, &j->bye);
    j->began = TRUE;
    if (j->work && !j->bye)
        j->work(j);
    if (!j->more && j->sync != IMAP_SYNC_NONE && s->mb && !j->bye) {
        gboolean changed =
            j->sync == IMAP_SYNC_ALWAYS || imap_g.ops->change_counter(s->mb) != s->counter;
        if (changed)
            imap_sync_updates(s, j->out, &j->bye);
    }
    /* A command done: what FETCH/SEARCH left queued for the cache is
     * written and its read buffers dropped, so an idle session holds
     * only its view. */
    if (!j->more && s->mb && KR_STORE_HAS_OP(imap_g.ops, release))
        imap_g.ops->release(s->mb);
}

static void job_done(gpointer p);

static gboolean
job_drained(gpointer p)
{
    ImapJob *j = p;
    ImapSession *s = j->s;
    s->timer = 0;
    if (kr_conn_output_pending(s->conn) > LOW_WATER) {
        s->timer = g_timeout_add(2, job_drained, j); /* a slow reader */
        return G_SOURCE_REMOVE;
    }
    s->drain_job = NULL;
    s->in_job = TRUE;
    kr_worker_run(job_work, job_done, j);
    return G_SOURCE_REMOVE;
}

static void
job_done(gpointer p)
{
    ImapJob *j = p;
    ImapSession *s = j->s;
    s->in_job = FALSE;
    if (s->dead) {
        job_free(j);
        reap(s);
        return;
    }
    imap_write(s, j->out->str, j->out->len);
    g_string_truncate(j->out, 0);
    if (j->bye) {
        imap_printf(s, "* BYE [UNAVAILABLE] The mailbox was reset; please reconnect.\r\n");
        g_warning("%s: %s: UIDVALIDITY of %s changed under a session", s->srv->name, s->user,
                  s->mailbox ? s->mailbox : "?");
        s->stop = TRUE;
        kr_conn_close(s->conn);
        job_free(j);
        imap_command_done(s);
        return;
    }
    if (j->more && kr_conn_output_pending(s->conn) <= HIGH_WATER) {
        /* the next part is made while this one is being sent */
        s->in_job = TRUE;
        kr_worker_run(job_work, job_done, j);
        return;
    }
    if (j->more) {
        /* the connection dying meanwhile frees the job (remove_timers) */
        s->drain_job = j;
        s->timer = g_timeout_add_full(G_PRIORITY_DEFAULT_IDLE, 0, job_drained, j, NULL);
        return;
    }
    if (j->done)
        j->done(j);
    imap_write(s, j->tagged->str, j->tagged->len);
    gboolean keep = j->keep_command;
    job_free(j);
    if (keep) {
        /* IDLE's own syncs: the command goes on (read DONE) */
        s->busy = FALSE;
        if (!s->dead)
            kr_conn_resume(s->conn);
        return;
    }
    imap_command_done(s);
}

void
imap_job_start(ImapJob *j)
{
    ImapSession *s = j->s;
    s->busy = TRUE;
    kr_conn_pause(s->conn);
    s->in_job = TRUE;
    kr_worker_run(job_work, job_done, j);
}

/* --- commands ------------------------------------------------------------------------ */

typedef void (*Handler)(ImapSession *s);

static const Handler handlers_by_name[IMAP_CMD_N_] = {
    [IMAP_CMD_CAPABILITY] = imap_cmd_capability,
    [IMAP_CMD_NOOP] = imap_cmd_noop,
    [IMAP_CMD_LOGOUT] = imap_cmd_logout,
    [IMAP_CMD_STARTTLS] = imap_cmd_starttls,
    [IMAP_CMD_AUTHENTICATE] = imap_cmd_authenticate,
    [IMAP_CMD_LOGIN] = imap_cmd_login,
    [IMAP_CMD_ENABLE] = imap_cmd_enable,
    [IMAP_CMD_SELECT] = imap_cmd_select,
    [IMAP_CMD_EXAMINE] = imap_cmd_select,
    [IMAP_CMD_CREATE] = imap_cmd_create,
    [IMAP_CMD_DELETE] = imap_cmd_delete,
    [IMAP_CMD_RENAME] = imap_cmd_rename,
    [IMAP_CMD_SUBSCRIBE] = imap_cmd_subscribe,
    [IMAP_CMD_UNSUBSCRIBE] = imap_cmd_subscribe,
    [IMAP_CMD_LIST] = imap_cmd_list,
    [IMAP_CMD_LSUB] = imap_cmd_list,
    [IMAP_CMD_NAMESPACE] = imap_cmd_namespace,
    [IMAP_CMD_STATUS] = imap_cmd_status,
    [IMAP_CMD_APPEND] = imap_cmd_append,
    [IMAP_CMD_IDLE] = imap_cmd_idle,
    [IMAP_CMD_CHECK] = imap_cmd_noop,
    [IMAP_CMD_CLOSE] = imap_cmd_close,
    [IMAP_CMD_UNSELECT] = imap_cmd_close,
    [IMAP_CMD_EXPUNGE] = imap_cmd_expunge,
    [IMAP_CMD_SEARCH] = imap_cmd_search,
    [IMAP_CMD_FETCH] = imap_cmd_fetch,
    [IMAP_CMD_STORE] = imap_cmd_store,
    [IMAP_CMD_COPY] = imap_cmd_copy,
    [IMAP_CMD_MOVE] = imap_cmd_copy,
    [IMAP_CMD_ID] = imap_cmd_id,
};

static guint
state_bit(ImapSession *s)
{
    switch (s->state) {
    case IMAP_S_NOTAUTH:
        return IMAP_STATE_NOTAUTH;
    case IMAP_S_AUTH:
        return IMAP_STATE_AUTH;
    case IMAP_S_SELECTED:
        return IMAP_STATE_SELECTED;
    default:
        return 0;
    }
}

static void
dispatch(ImapSession *s, ImapCommand *cmd)
{
    s->cmd = cmd;
    g_debug("%s: %s (%s): %s %s%s", s->srv->name, s->user ? s->user : "-", kr_conn_peer_ip(s->conn),
            cmd->tag, cmd->uid ? "UID " : "", imap_command_name(cmd->name));
    guint ok = imap_command_states(cmd->name) & state_bit(s);
    Handler h = handlers_by_name[cmd->name];
    if (!ok || !h) {
        const char *text = "Command not valid in this state";
        if (s->state == IMAP_S_NOTAUTH)
            text = "Log in first";
        else if (cmd->name == IMAP_CMD_LOGIN || cmd->name == IMAP_CMD_AUTHENTICATE ||
                 cmd->name == IMAP_CMD_STARTTLS)
            text = "Already logged in";
        else if (s->state == IMAP_S_AUTH && (imap_command_states(cmd->name) & IMAP_STATE_SELECTED))
            text = "No mailbox selected";
        imap_tagged_done(s, "BAD", NULL, text);
        s->bad++;
        return;
    }
    h(s);
}

static void
bad_input(ImapSession *s, const ImapError *err)
{
    g_autoptr(GString) out = g_string_new(NULL);
    imap_error_format(err, out);
    imap_write(s, out->str, out->len);
    if (err->kind == IMAP_ERROR_BAD)
        s->bad++;
    /* a streamed APPEND literal of a refused command is dropped */
    g_clear_pointer(&s->lit, imap_lit_free);
}

static void
handle_raw(ImapSession *s, ImapRawCommand *raw)
{
    gsize len;
    const char *data = g_bytes_get_data(raw->bytes, &len);
    if (!data)
        data = "";
    if (s->sasl_wait) {
        imap_sasl_response(s, data, len);
        return;
    }
    if (s->idling) {
        imap_idle_line(s, data, len);
        return;
    }
    ImapParseOpts opts = IMAP_PARSE_OPTS_INIT;
    opts.searchres = FALSE;
    ImapError err;
    ImapCommand *cmd = imap_parse(raw, &opts, &err);
    if (!cmd) {
        bad_input(s, &err);
        imap_error_clear(&err);
        return;
    }
    dispatch(s, cmd);
}

/* A literal was announced: check it, then accept ("+") or refuse. */
static void
on_literal(ImapSession *s)
{
    const ImapLiteralInfo *li = imap_reader_literal(s->rd);
    gboolean append = strcmp(li->command, "APPEND") == 0;
    if (append && s->state == IMAP_S_NOTAUTH) {
        g_autoptr(GString) out = g_string_new(NULL);
        imap_fmt_status(out, li->tag, li->sync ? "NO" : "BAD", NULL, "Log in first");
        imap_reader_literal_reject(s->rd);
        imap_write(s, out->str, out->len);
        s->bad++;
        return;
    }
    imap_reader_literal_accept(s->rd);
    if (li->streamed)
        imap_lit_begin(s, li);
    if (li->sync)
        imap_printf(s, "+ Ready for literal data\r\n");
}

static void
process_input(ImapSession *s)
{
    while (!s->busy && !s->dead && !s->stop) {
        gsize len, used = 0;
        const char *buf = kr_conn_input(s->conn, &len);
        if (len == 0)
            break;
        ImapReadStatus st = imap_reader_feed(s->rd, buf, len, &used);
        switch (st) {
        case IMAP_READ_MORE:
            kr_conn_consume(s->conn, used);
            break;
        case IMAP_READ_LITERAL:
            kr_conn_consume(s->conn, used);
            on_literal(s);
            break;
        case IMAP_READ_LITERAL_DATA: {
            gboolean last = imap_reader_literal(s->rd)->remaining == 0;
            imap_lit_data(s, buf, used, last);
            kr_conn_consume(s->conn, used);
            break;
        }
        case IMAP_READ_COMMAND: {
            kr_conn_consume(s->conn, used);
            ImapRawCommand *raw = imap_reader_take(s->rd);
            handle_raw(s, raw);
            imap_raw_command_free(raw);
            break;
        }
        case IMAP_READ_ERROR:
            kr_conn_consume(s->conn, used);
            bad_input(s, imap_reader_error(s->rd));
            break;
        }
        if (s->bad >= (guint)imap_g.conf->max_bad_commands && !s->dead && !s->stop) {
            imap_printf(s, "* BYE Too many invalid commands.\r\n");
            s->stop = TRUE;
            kr_conn_close(s->conn);
        }
    }
}

/* Called by the auth commands when the state changes. */
void imap_session_limits(ImapSession *s);
void
imap_session_limits(ImapSession *s)
{
    set_limits(s);
}

static const KrConnHandlers conn_handlers = {
    .read = on_read,
    .timeout = on_timeout,
    .tls_done = on_tls_done,
    .closed = on_closed,
};

void
imap_session_accept(ImapServer *srv, KrConn *conn)
{
    ImapSession *s = g_new0(ImapSession, 1);
    s->srv = srv;
    s->conn = conn;
    s->refs = 1;
    s->state = IMAP_S_NOTAUTH;
    s->rd = imap_reader_new(NULL);
    set_limits(s);
    kr_conn_set_handlers(conn, &conn_handlers, s);
    kr_conn_set_timeout(conn, (guint)imap_g.conf->idle_timeout);
    g_autoptr(GString) out = g_string_new("* OK [CAPABILITY ");
    imap_capabilities(s, out);
    g_string_append_printf(out, "] %s IMAP server ready.\r\n", kr_hostname());
    kr_conn_write(conn, out->str, out->len);
}
