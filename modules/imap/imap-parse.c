/* SPDX-License-Identifier: MIT */
/*
 * imap-parse.c - IMAP command parser: tag, command name, UID prefix and
 * the arguments of every command except SEARCH (imap-parse-search.c)
 * and FETCH/STORE (imap-parse-fetch.c). See imap-parse.h.
 *
 *   imap_parse, imap_parse_string, imap_command_free
 *   imap_command_name, imap_command_states, imap_cmd_lookup
 *   imap_error_clear, imap_error_format, imap_is_done
 *
 * Grammar is RFC 9051 with the RFC 3501 forms still in use (LSUB,
 * RFC822.*), plus CONDSTORE/QRESYNC (RFC 7162), LIST-EXTENDED (RFC 5258),
 * LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154), ID (RFC 2971), ENABLE
 * (RFC 5161), SASL-IR (RFC 4959), MULTIAPPEND (RFC 3502), BINARY (RFC 3516),
 * ESEARCH/SEARCHRES (RFC 4731/5182), WITHIN (RFC 5032), MOVE (RFC 6851),
 * UIDPLUS (RFC 4315). Keywords are case-insensitive; arguments are
 * separated by exactly one SP; anything left over is an error.
 */
#include "imap-lex.h"
#include "imap-date.h"

#include <string.h>

static const struct {
    const char *name;
    guint states;
} commands[IMAP_CMD_N_] = {
    [IMAP_CMD_UNKNOWN] = {"", 0},
    [IMAP_CMD_CAPABILITY] = {"CAPABILITY", IMAP_STATE_ANY},
    [IMAP_CMD_NOOP] = {"NOOP", IMAP_STATE_ANY},
    [IMAP_CMD_LOGOUT] = {"LOGOUT", IMAP_STATE_ANY},
    [IMAP_CMD_STARTTLS] = {"STARTTLS", IMAP_STATE_NOTAUTH},
    [IMAP_CMD_AUTHENTICATE] = {"AUTHENTICATE", IMAP_STATE_NOTAUTH},
    [IMAP_CMD_LOGIN] = {"LOGIN", IMAP_STATE_NOTAUTH},
    [IMAP_CMD_ENABLE] = {"ENABLE", IMAP_STATE_AUTH},
    [IMAP_CMD_SELECT] = {"SELECT", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_EXAMINE] = {"EXAMINE", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_CREATE] = {"CREATE", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_DELETE] = {"DELETE", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_RENAME] = {"RENAME", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_SUBSCRIBE] = {"SUBSCRIBE", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_UNSUBSCRIBE] = {"UNSUBSCRIBE", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_LIST] = {"LIST", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_LSUB] = {"LSUB", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_NAMESPACE] = {"NAMESPACE", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_STATUS] = {"STATUS", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_APPEND] = {"APPEND", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_IDLE] = {"IDLE", IMAP_STATE_AUTH | IMAP_STATE_SELECTED},
    [IMAP_CMD_CHECK] = {"CHECK", IMAP_STATE_SELECTED},
    [IMAP_CMD_CLOSE] = {"CLOSE", IMAP_STATE_SELECTED},
    [IMAP_CMD_UNSELECT] = {"UNSELECT", IMAP_STATE_SELECTED},
    [IMAP_CMD_EXPUNGE] = {"EXPUNGE", IMAP_STATE_SELECTED},
    [IMAP_CMD_SEARCH] = {"SEARCH", IMAP_STATE_SELECTED},
    [IMAP_CMD_FETCH] = {"FETCH", IMAP_STATE_SELECTED},
    [IMAP_CMD_STORE] = {"STORE", IMAP_STATE_SELECTED},
    [IMAP_CMD_COPY] = {"COPY", IMAP_STATE_SELECTED},
    [IMAP_CMD_MOVE] = {"MOVE", IMAP_STATE_SELECTED},
    [IMAP_CMD_ID] = {"ID", IMAP_STATE_ANY},
};

const char *
imap_command_name(ImapCmdName name)
{
    return (guint)name < IMAP_CMD_N_ ? commands[name].name : "";
}

guint
imap_command_states(ImapCmdName name)
{
    return (guint)name < IMAP_CMD_N_ ? commands[name].states : 0;
}

ImapCmdName
imap_cmd_lookup(const char *word, gsize len)
{
    for (guint i = 1; i < IMAP_CMD_N_; i++)
        if (imap_lex_is(word, len, commands[i].name))
            return (ImapCmdName)i;
    return IMAP_CMD_UNKNOWN;
}

void
imap_error_clear(ImapError *err)
{
    g_free(err->tag);
    memset(err, 0, sizeof(*err));
}

void
imap_error_format(const ImapError *err, GString *out)
{
    g_string_append(out, err->tag ? err->tag : "*");
    g_string_append(out, err->kind == IMAP_ERROR_NO ? " NO " : " BAD ");
    if (err->code)
        g_string_append_printf(out, "[%s] ", err->code);
    g_string_append(out, err->text ? err->text : "Invalid command");
    g_string_append(out, "\r\n");
}

gboolean
imap_is_done(const guchar *line, gsize len)
{
    return imap_lex_is((const char *)line, len, "DONE");
}

void
imap_command_free(ImapCommand *cmd)
{
    if (!cmd)
        return;
    g_free(cmd->tag);
    imap_arena_free(cmd->arena);
    if (cmd->raw)
        g_bytes_unref(cmd->raw);
    g_free(cmd);
}

/* ---- per-command arguments ---- */

static gboolean
parse_authenticate(ImapLex *lx, ImapCommand *cmd)
{
    const char *s;
    gsize len;
    if (!imap_lex_sp(lx) || !imap_lex_atom(lx, &s, &len))
        return FALSE;
    cmd->u.auth.mech = imap_arena_strndup(lx->arena, s, len);
    if (!imap_lex_try_sp(lx))
        return TRUE;
    /* initial-response = base64 / "=" */
    gsize start = lx->pos;
    while (lx->pos < lx->len && (g_ascii_isalnum(lx->buf[lx->pos]) || lx->buf[lx->pos] == '+' ||
                                 lx->buf[lx->pos] == '/' || lx->buf[lx->pos] == '='))
        lx->pos++;
    if (lx->pos == start)
        return imap_lex_fail(lx, NULL, "Invalid initial response");
    len = lx->pos - start;
    s = (const char *)lx->buf + start;
    cmd->u.auth.initial = imap_arena_strndup(lx->arena, s, len == 1 && s[0] == '=' ? 0 : len);
    return TRUE;
}

static gboolean
parse_login(ImapLex *lx, ImapCommand *cmd)
{
    return imap_lex_sp(lx) && imap_lex_astring(lx, &cmd->u.login.user) && imap_lex_sp(lx) &&
           imap_lex_astring(lx, &cmd->u.login.password);
}

static gboolean
parse_enable(ImapLex *lx, ImapCommand *cmd)
{
    g_autoptr(GPtrArray) caps = g_ptr_array_new();
    if (!imap_lex_sp(lx))
        return FALSE;
    do {
        const char *s;
        gsize len;
        if (!imap_lex_atom(lx, &s, &len))
            return FALSE;
        g_ptr_array_add(caps, imap_arena_strndup(lx->arena, s, len));
    } while (imap_lex_try_sp(lx));
    return imap_lex_strv(lx, caps, &cmd->u.enable.caps);
}

/* QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)]) */
static gboolean
parse_qresync(ImapLex *lx, ImapSelectArgs *a)
{
    if (!imap_lex_sp(lx) || !imap_lex_open(lx) || !imap_lex_nz_number(lx, &a->uidvalidity) ||
        !imap_lex_sp(lx) || !imap_lex_modseq(lx, FALSE, &a->modseq))
        return FALSE;
    a->qresync = TRUE;
    if (imap_lex_try_sp(lx)) {
        if (imap_lex_peek(lx) != '(') {
            if (!imap_lex_seqset(lx, &a->known_uids))
                return FALSE;
            if (imap_seqset_has_star(a->known_uids) || a->known_uids->saved)
                return imap_lex_fail(lx, NULL, "Invalid known-uids");
            if (!imap_lex_try_sp(lx))
                return imap_lex_close(lx);
        }
        if (!imap_lex_open(lx) || !imap_lex_seqset(lx, &a->match_seqs) || !imap_lex_sp(lx) ||
            !imap_lex_seqset(lx, &a->match_uids) || !imap_lex_close(lx))
            return FALSE;
    }
    return imap_lex_close(lx);
}

static gboolean
parse_select(ImapLex *lx, ImapCommand *cmd)
{
    ImapSelectArgs *a = &cmd->u.select;
    if (!imap_lex_sp(lx) || !imap_lex_mailbox(lx, &a->mailbox))
        return FALSE;
    if (!imap_lex_try_sp(lx))
        return TRUE;
    if (!imap_lex_open(lx))
        return FALSE;
    if (imap_lex_peek(lx) != ')') {
        do {
            char kw[16];
            if (!imap_lex_keyword(lx, kw, sizeof kw))
                return FALSE;
            if (strcmp(kw, "CONDSTORE") == 0 && !a->condstore)
                a->condstore = TRUE;
            else if (strcmp(kw, "QRESYNC") == 0 && !a->qresync) {
                if (!parse_qresync(lx, a))
                    return FALSE;
            } else
                return imap_lex_fail(lx, NULL, "Unknown or repeated SELECT parameter");
        } while (imap_lex_try_sp(lx));
    }
    return imap_lex_close(lx);
}

static gboolean
parse_create(ImapLex *lx, ImapCommand *cmd)
{
    if (!imap_lex_sp(lx) || !imap_lex_mailbox(lx, &cmd->u.create.mailbox))
        return FALSE;
    if (!imap_lex_try_sp(lx))
        return TRUE;
    /* create-param: USE (use-attr ...) (RFC 6154) */
    char kw[8];
    if (!imap_lex_open(lx) || !imap_lex_keyword(lx, kw, sizeof kw))
        return FALSE;
    if (strcmp(kw, "USE") != 0)
        return imap_lex_fail(lx, NULL, "Unknown CREATE parameter");
    if (!imap_lex_sp(lx) || !imap_lex_flag_list(lx, FALSE, &cmd->u.create.use))
        return FALSE;
    for (char **f = cmd->u.create.use; *f; f++)
        if ((*f)[0] != '\\')
            return imap_lex_fail(lx, "USEATTR", "Invalid special-use attribute");
    return imap_lex_close(lx);
}

static gboolean
parse_mbox(ImapLex *lx, ImapCommand *cmd)
{
    return imap_lex_sp(lx) && imap_lex_mailbox(lx, &cmd->u.mbox.mailbox);
}

static gboolean
parse_rename(ImapLex *lx, ImapCommand *cmd)
{
    return imap_lex_sp(lx) && imap_lex_mailbox(lx, &cmd->u.rename.from) && imap_lex_sp(lx) &&
           imap_lex_mailbox(lx, &cmd->u.rename.to);
}

static const char *const status_items[] = {"MESSAGES",    "RECENT",        "UIDNEXT",
                                           "UIDVALIDITY", "UNSEEN",        "DELETED",
                                           "SIZE",        "HIGHESTMODSEQ", "APPENDLIMIT"};

/* "(" status-att *(SP status-att) ")" */
static gboolean
parse_status_items(ImapLex *lx, guint *items)
{
    return imap_lex_word_set(lx, status_items, G_N_ELEMENTS(status_items), FALSE,
                             "Unknown STATUS item", items);
}

static gboolean
parse_status(ImapLex *lx, ImapCommand *cmd)
{
    return imap_lex_sp(lx) && imap_lex_mailbox(lx, &cmd->u.status.mailbox) && imap_lex_sp(lx) &&
           parse_status_items(lx, &cmd->u.status.items);
}

static gboolean
parse_list_select(ImapLex *lx, ImapListArgs *a)
{
    static const char *const opts[] = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"};
    if (!imap_lex_word_set(lx, opts, G_N_ELEMENTS(opts), TRUE, "Unknown LIST selection option",
                           &a->select))
        return FALSE;
    /* RFC 5258 3: RECURSIVEMATCH alone is an error */
    if ((a->select & IMAP_LIST_SEL_RECURSIVEMATCH) &&
        !(a->select & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIAL_USE)))
        return imap_lex_fail(lx, NULL, "RECURSIVEMATCH needs another selection option");
    return TRUE;
}

static gboolean
parse_list_return(ImapLex *lx, ImapListArgs *a)
{
    char kw[16];
    if (!imap_lex_keyword(lx, kw, sizeof kw))
        return FALSE;
    if (strcmp(kw, "RETURN") != 0)
        return imap_lex_fail(lx, NULL, "Expected RETURN");
    if (!imap_lex_sp(lx) || !imap_lex_open(lx))
        return FALSE;
    if (imap_lex_peek(lx) != ')') {
        do {
            if (!imap_lex_keyword(lx, kw, sizeof kw))
                return FALSE;
            if (strcmp(kw, "SUBSCRIBED") == 0)
                a->ret |= IMAP_LIST_RET_SUBSCRIBED;
            else if (strcmp(kw, "CHILDREN") == 0)
                a->ret |= IMAP_LIST_RET_CHILDREN;
            else if (strcmp(kw, "SPECIAL-USE") == 0)
                a->ret |= IMAP_LIST_RET_SPECIAL_USE;
            else if (strcmp(kw, "STATUS") == 0 && !(a->ret & IMAP_LIST_RET_STATUS)) {
                a->ret |= IMAP_LIST_RET_STATUS;
                if (!imap_lex_sp(lx) || !parse_status_items(lx, &a->status))
                    return FALSE;
            } else
                return imap_lex_fail(lx, NULL, "Unknown LIST return option");
        } while (imap_lex_try_sp(lx));
    }
    return imap_lex_close(lx);
}

static gboolean
parse_list(ImapLex *lx, ImapCommand *cmd)
{
    ImapListArgs *a = &cmd->u.list;
    g_autoptr(GPtrArray) pats = g_ptr_array_new();
    if (!imap_lex_sp(lx))
        return FALSE;
    if (cmd->name == IMAP_CMD_LIST && imap_lex_peek(lx) == '(') {
        a->extended = TRUE;
        if (!parse_list_select(lx, a) || !imap_lex_sp(lx))
            return FALSE;
    }
    if (!imap_lex_mailbox(lx, &a->reference) || !imap_lex_sp(lx))
        return FALSE;
    if (cmd->name == IMAP_CMD_LIST && imap_lex_peek(lx) == '(') {
        a->extended = TRUE;
        if (!imap_lex_open(lx))
            return FALSE;
        do {
            char *p;
            if (!imap_lex_list_mailbox(lx, &p))
                return FALSE;
            g_ptr_array_add(pats, p);
        } while (imap_lex_try_sp(lx));
        if (!imap_lex_close(lx))
            return FALSE;
    } else {
        char *p;
        if (!imap_lex_list_mailbox(lx, &p))
            return FALSE;
        g_ptr_array_add(pats, p);
    }
    if (cmd->name == IMAP_CMD_LIST && imap_lex_try_sp(lx)) {
        a->extended = TRUE;
        if (!parse_list_return(lx, a))
            return FALSE;
    }
    return imap_lex_strv(lx, pats, &a->patterns);
}

/* One message of APPEND: [flag-list SP] [date-time SP] literal */
static gboolean
parse_append_msg(ImapLex *lx, ImapAppendMsg *m)
{
    if (imap_lex_peek(lx) == '(') {
        if (!imap_lex_flag_list(lx, FALSE, &m->flags) || !imap_lex_sp(lx))
            return FALSE;
    }
    if (imap_lex_peek(lx) == '"') {
        char *d;
        if (!imap_lex_string(lx, &d))
            return FALSE;
        if (!imap_datetime_parse(d, strlen(d), &m->date, &m->tz_minutes))
            return imap_lex_fail(lx, NULL, "Invalid date-time");
        m->has_date = TRUE;
        if (!imap_lex_sp(lx))
            return FALSE;
    }
    int c = imap_lex_peek(lx);
    if (c != '{' && c != '~')
        return imap_lex_fail(lx, NULL, "Message must be a literal");
    ImapLexLiteral lit;
    if (!imap_lex_literal(lx, &lit))
        return FALSE;
    m->binary = lit.binary;
    m->streamed = lit.streamed;
    m->literal_index = lit.index;
    m->data = lit.data;
    m->size = lit.size;
    return TRUE;
}

static gboolean
parse_append(ImapLex *lx, ImapCommand *cmd)
{
    ImapAppendArgs *a = &cmd->u.append;
    g_autoptr(GArray) msgs = g_array_new(FALSE, TRUE, sizeof(ImapAppendMsg));
    if (!imap_lex_sp(lx) || !imap_lex_mailbox(lx, &a->mailbox))
        return FALSE;
    while (imap_lex_try_sp(lx)) {
        ImapAppendMsg m = {0};
        if (!parse_append_msg(lx, &m))
            return FALSE;
        g_array_append_val(msgs, m);
    }
    if (msgs->len == 0)
        return imap_lex_fail(lx, NULL, "Missing message");
    a->n_msgs = msgs->len;
    a->msgs = imap_arena_new0(lx->arena, ImapAppendMsg, msgs->len);
    memcpy(a->msgs, msgs->data, sizeof(ImapAppendMsg) * msgs->len);
    return TRUE;
}

static gboolean
parse_copy(ImapLex *lx, ImapCommand *cmd)
{
    return imap_lex_sp(lx) && imap_lex_seqset(lx, &cmd->u.copy.set) && imap_lex_sp(lx) &&
           imap_lex_mailbox(lx, &cmd->u.copy.mailbox);
}

static gboolean
parse_uid_expunge(ImapLex *lx, ImapCommand *cmd)
{
    if (!cmd->uid)
        return TRUE;
    return imap_lex_sp(lx) && imap_lex_seqset(lx, &cmd->u.expunge.set);
}

/* ID ("name" "value" ...) / ID NIL; RFC 2971: at most 30 pairs. */
static gboolean
parse_id(ImapLex *lx, ImapCommand *cmd)
{
    if (!imap_lex_sp(lx))
        return FALSE;
    if (imap_lex_peek(lx) != '(') {
        char *nil;
        return imap_lex_nstring(lx, &nil) &&
               (nil == NULL || imap_lex_fail(lx, NULL, "Expected a list or NIL"));
    }
    g_autoptr(GPtrArray) pairs = g_ptr_array_new();
    if (!imap_lex_open(lx))
        return FALSE;
    if (imap_lex_peek(lx) != ')') {
        do {
            char *k, *v;
            if (!imap_lex_string(lx, &k) || !imap_lex_sp(lx) || !imap_lex_nstring(lx, &v))
                return FALSE;
            if (pairs->len >= 60)
                return imap_lex_fail(lx, NULL, "Too many ID fields");
            g_ptr_array_add(pairs, k);
            g_ptr_array_add(pairs, v);
        } while (imap_lex_try_sp(lx));
    }
    if (!imap_lex_close(lx))
        return FALSE;
    cmd->u.id.n_pairs = pairs->len / 2;
    return imap_lex_strv(lx, pairs, &cmd->u.id.pairs);
}

static gboolean
parse_args(ImapLex *lx, ImapCommand *cmd)
{
    switch (cmd->name) {
    case IMAP_CMD_CAPABILITY:
    case IMAP_CMD_NOOP:
    case IMAP_CMD_LOGOUT:
    case IMAP_CMD_STARTTLS:
    case IMAP_CMD_NAMESPACE:
    case IMAP_CMD_IDLE:
    case IMAP_CMD_CHECK:
    case IMAP_CMD_CLOSE:
    case IMAP_CMD_UNSELECT:
        return TRUE;
    case IMAP_CMD_EXPUNGE:
        return parse_uid_expunge(lx, cmd);
    case IMAP_CMD_AUTHENTICATE:
        return parse_authenticate(lx, cmd);
    case IMAP_CMD_LOGIN:
        return parse_login(lx, cmd);
    case IMAP_CMD_ENABLE:
        return parse_enable(lx, cmd);
    case IMAP_CMD_SELECT:
    case IMAP_CMD_EXAMINE:
        return parse_select(lx, cmd);
    case IMAP_CMD_CREATE:
        return parse_create(lx, cmd);
    case IMAP_CMD_DELETE:
    case IMAP_CMD_SUBSCRIBE:
    case IMAP_CMD_UNSUBSCRIBE:
        return parse_mbox(lx, cmd);
    case IMAP_CMD_RENAME:
        return parse_rename(lx, cmd);
    case IMAP_CMD_LIST:
    case IMAP_CMD_LSUB:
        return parse_list(lx, cmd);
    case IMAP_CMD_STATUS:
        return parse_status(lx, cmd);
    case IMAP_CMD_APPEND:
        return parse_append(lx, cmd);
    case IMAP_CMD_SEARCH:
        return imap_parse_search_args(lx, cmd);
    case IMAP_CMD_FETCH:
        return imap_parse_fetch_args(lx, cmd);
    case IMAP_CMD_STORE:
        return imap_parse_store_args(lx, cmd);
    case IMAP_CMD_COPY:
    case IMAP_CMD_MOVE:
        return parse_copy(lx, cmd);
    case IMAP_CMD_ID:
        return parse_id(lx, cmd);
    case IMAP_CMD_UNKNOWN:
    case IMAP_CMD_N_:
        break;
    }
    return imap_lex_fail(lx, NULL, "Unknown command");
}

static gboolean
uid_allowed(ImapCmdName n)
{
    return n == IMAP_CMD_FETCH || n == IMAP_CMD_SEARCH || n == IMAP_CMD_STORE ||
           n == IMAP_CMD_COPY || n == IMAP_CMD_MOVE || n == IMAP_CMD_EXPUNGE;
}

ImapCommand *
imap_parse(const ImapRawCommand *raw, const ImapParseOpts *opts, ImapError *err)
{
    static const ImapParseOpts def = IMAP_PARSE_OPTS_INIT;
    gsize len;
    const guchar *buf = g_bytes_get_data(raw->bytes, &len);
    g_autoptr(ImapCommand) cmd = g_new0(ImapCommand, 1);
    cmd->arena = imap_arena_new();
    ImapLex lx = {
        .buf = buf ? buf : (const guchar *)"",
        .len = len,
        .raw = raw,
        .opts = opts ? opts : &def,
        .arena = cmd->arena,
        .err = err,
    };
    memset(err, 0, sizeof(*err));

    /* tag */
    while (lx.pos < len && imap_is_tag_char(buf[lx.pos]))
        lx.pos++;
    if (lx.pos == 0 || lx.pos > IMAP_TAG_MAX || imap_lex_peek(&lx) != ' ') {
        imap_lex_fail(&lx, NULL, lx.pos == 0 ? "Missing or invalid tag" : "Invalid tag");
        return NULL;
    }
    cmd->tag = g_strndup((const char *)buf, lx.pos);
    lx.pos++;

    /* command, "UID" command */
    const char *w;
    gsize wl;
    gboolean ok = imap_lex_atom(&lx, &w, &wl);
    if (ok && imap_lex_is(w, wl, "UID")) {
        cmd->uid = TRUE;
        ok = imap_lex_sp(&lx) && imap_lex_atom(&lx, &w, &wl);
    }
    if (ok) {
        cmd->name = imap_cmd_lookup(w, wl);
        if (cmd->name == IMAP_CMD_UNKNOWN)
            ok = imap_lex_fail(&lx, NULL, "Unknown command");
        else if (cmd->uid && !uid_allowed(cmd->name))
            ok = imap_lex_fail(&lx, NULL, "Command has no UID form");
    }
    if (!ok)
        imap_lex_fail(&lx, NULL, "Missing command");
    else if (!parse_args(&lx, cmd))
        ok = FALSE;
    else if (!imap_lex_at_end(&lx))
        ok = imap_lex_fail(&lx, NULL, "Unexpected extra arguments");
    if (!ok) {
        err->tag = g_steal_pointer(&cmd->tag);
        err->name = cmd->name;
        return NULL;
    }
    cmd->raw = g_bytes_ref(raw->bytes);
    return g_steal_pointer(&cmd);
}

ImapCommand *
imap_parse_string(const char *wire, gsize len, const ImapParseOpts *opts, ImapError *err)
{
    g_autoptr(ImapRawCommand) raw = imap_raw_command_new(wire, len);
    return imap_parse(raw, opts, err);
}
