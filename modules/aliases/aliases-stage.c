/* SPDX-License-Identifier: MIT */
/*
 * aliases-stage.c - the `aliases` stage type: expand each local
 * recipient through aliases, :include: files and forward files.
 *
 * Per recipient of the job (its address is the resolve stage's
 * "address" attribute, else the queued one), in a worker thread:
 *
 *   "Delivered-To: ADDRESS" already in the message   FAILED 550 5.4.6
 *                                       (mail forwarding loop)
 *   no alias, no forward file           unchanged: goes on to `next`
 *   exactly one local mailbox           the "mailbox" attribute is set
 *                                       to it; goes on to `next`
 *   anything else                       commands and files run now (as
 *                                       their user, aliases-run.h); then
 *                                       one new message, a copy with
 *                                       "Delivered-To: ADDRESS" on top,
 *                                       for all addresses of the
 *                                       expansion, runs through
 *                                       inject_node (cleanup, then the
 *                                       queue: durable). Only then is the
 *                                       recipient finished: EXPANDED.
 *   loops, too many targets,            FAILED 550 5.4.6 / 5.5.3 / 5.3.5
 *   broken :include:, disabled pipes    (the queue manager bounces it)
 *   unreadable files, a command that    DEFERRED 451 4.3.0 (retried; a
 *   asks to retry, a copy that cannot   retry repeats the commands and
 *   be queued                           files that worked: at least once)
 *   a command or file that fails        FAILED 550 5.3.0 with its output
 *                                       (the bounce shows it); the copy
 *                                       for the other targets is queued
 *   only commands and files, all fine   DELIVERED 250 2.0.0
 *
 * The copy's sender is owner-NAME@domain when the aliases file has an
 * owner-NAME for the expanded alias (bounces from the list go to its
 * owner; the null sender stays null), else the original sender, and
 * then its recipients keep the original's NOTIFY and ORCPT -- except
 * that with several targets NOTIFY loses SUCCESS (NEVER if nothing is
 * left), and the alias gets the success report "expanded"; one target
 * keeps SUCCESS and the alias gets the attribute dsn_passed (no report
 * for it: RFC 3461 6.2.7). The copy
 * carries the attribute alias_final = its own queue ID: its local
 * recipients are final mailboxes, not expanded again (a copy of it made
 * by anyone else has another ID, so it is expanded normally).
 *
 * Log lines (postfix style):
 *   ID: to=<team@localhost>, relay=aliases, status=expanded (alias team
 *       (FILE:LINE): 3 recipient(s), queued as ID2)
 *   ID: to=<a@localhost>, relay=aliases, status=bounced (mail forwarding loop ...)
 */
#include "aliases.h"

#include <gio/gio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HEADER_MAX (256 * 1024)

typedef enum { ACT_CONTINUE, ACT_DONE, ACT_INJECT } Action;

typedef struct Batch Batch;

typedef struct {
    Batch *batch;
    guint index; /* in the job */
    char *address;
    char *orcpt;
    unsigned notify;
    /* results */
    Action action;
    KrRcptState state;
    int code;
    char ecode[12];
    char *diag;
    char *mailbox; /* ACT_CONTINUE: redirect to this mailbox */
    KrMsg *copy;   /* ACT_INJECT */
    char *how;
    guint n_copy;
    gboolean passed;    /* the copy's one recipient has NOTIFY=SUCCESS */
    char *run_fail;     /* a command/file failed for good: its diag */
    GPtrArray *run_log; /* what ran, for the log */
} Item;

struct Batch {
    KrJob *job;
    KrMsg *msg;
    char *qid;
    char *sender;
    GPtrArray *items; /* Item * */
    AliasTable *table;
    guint pending;
};

static void
item_free(gpointer p)
{
    Item *it = p;
    g_free(it->address);
    g_free(it->orcpt);
    g_free(it->diag);
    g_free(it->mailbox);
    g_free(it->how);
    g_free(it->run_fail);
    if (it->run_log)
        g_ptr_array_unref(it->run_log);
    if (it->copy)
        kr_msg_unref(it->copy);
    g_free(it);
}

static void item_done(Item *it, KrRcptState state, int code, const char *ecode, const char *fmt,
                      ...) G_GNUC_PRINTF(5, 6);

static void
item_done(Item *it, KrRcptState state, int code, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_free(it->diag);
    it->diag = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    it->action = ACT_DONE;
    it->state = state;
    it->code = code;
    g_strlcpy(it->ecode, ecode, sizeof it->ecode);
}

/* --- the worker ------------------------------------------------------------------ */

/* The header block of the message (up to HEADER_MAX bytes). */
static char *
read_headers(KrMsg *msg, gsize *len_r)
{
    GString *s = g_string_new(NULL);
    char buf[16384];
    goffset off = 0;
    while (s->len < HEADER_MAX) {
        gssize n = kr_msg_read(msg, off, buf, sizeof buf, NULL);
        if (n <= 0)
            break;
        gsize old = s->len;
        g_string_append_len(s, buf, n);
        off += n;
        const char *from = s->str + (old > 3 ? old - 3 : 0);
        if (strstr(from, "\n\n") || strstr(from, "\n\r\n"))
            break;
    }
    *len_r = s->len;
    return g_string_free(s, FALSE);
}

static int
content_fd(Batch *b, Item *it, GError **error)
{
    int fd = memfd_create("kurir-alias", MFD_CLOEXEC);
    if (fd < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "memfd: %s",
                    g_strerror(errno));
        return -1;
    }
    g_autofree char *prefix =
        g_strdup_printf("Return-Path: <%s>\nDelivered-To: %s\n", b->sender, it->address);
    if (!kr_msg_write_to_fd(b->msg, fd, prefix, TRUE, error)) {
        close(fd);
        return -1;
    }
    return fd;
}

static char **
pipe_env(Batch *b, Item *it, const AliasPriv *priv)
{
    const char *at = strrchr(it->address, '@');
    g_autofree char *local = g_strndup(it->address, at ? at - it->address : 0);
    GPtrArray *e = g_ptr_array_new();
    g_ptr_array_add(e, g_strdup("PATH=/usr/local/bin:/usr/bin:/bin"));
    g_ptr_array_add(e, g_strdup("SHELL=/bin/sh"));
    g_ptr_array_add(e, g_strdup_printf("HOME=%s", priv->home ? priv->home : "/"));
    g_ptr_array_add(e, g_strdup_printf("USER=%s", priv->user ? priv->user : ""));
    g_ptr_array_add(e, g_strdup_printf("LOGNAME=%s", priv->user ? priv->user : ""));
    g_ptr_array_add(e, g_strdup_printf("SENDER=%s", b->sender));
    g_ptr_array_add(e, g_strdup_printf("RECIPIENT=%s", it->address));
    g_ptr_array_add(e, g_strdup_printf("LOCAL=%s", local));
    g_ptr_array_add(e, g_strdup_printf("DOMAIN=%s", at ? at + 1 : ""));
    g_ptr_array_add(e, g_strdup_printf("QUEUE_ID=%s", b->qid));
    const char *orcpt = it->orcpt ? strchr(it->orcpt, ';') : NULL;
    g_ptr_array_add(e, g_strdup_printf("ORIGINAL_RECIPIENT=%s", orcpt ? orcpt + 1 : it->address));
    g_ptr_array_add(e, NULL);
    return (char **)g_ptr_array_free(e, FALSE);
}

/* Run the commands and files of an expansion. FALSE: deferred (item done). */
static gboolean
run_leaves(Batch *b, Item *it, const AliasExpansion *exp)
{
    int in_fd = -1, mbox_fd = -1;
    gboolean ok = TRUE;
    for (guint i = 0; i < exp->leaves->len && ok; i++) {
        const AliasLeaf *l = exp->leaves->pdata[i];
        if (l->kind != ALIAS_LEAF_PIPE && l->kind != ALIAS_LEAF_FILE)
            continue;
        g_autoptr(GError) err = NULL;
        if (in_fd < 0 && (in_fd = content_fd(b, it, &err)) < 0) {
            item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "cannot prepare the message: %s",
                      err->message);
            ok = FALSE;
            break;
        }
        g_autofree char *diag = NULL;
        AliasStatus st;
        if (l->kind == ALIAS_LEAF_PIPE) {
            g_auto(GStrv) env = pipe_env(b, it, &l->priv);
            st = alias_run_pipe(&l->priv, l->value, env, in_fd, aliases_conf->command_timeout,
                                &diag);
        } else {
            if (mbox_fd < 0) {
                mbox_fd = memfd_create("kurir-mbox", MFD_CLOEXEC);
                g_autofree char *from = alias_mbox_from_line(b->sender, kr_msg_arrival(b->msg));
                if (mbox_fd < 0 || !alias_mbox_copy(in_fd, mbox_fd, from, &err)) {
                    item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "cannot prepare the message: %s",
                              err ? err->message : g_strerror(errno));
                    ok = FALSE;
                    break;
                }
            }
            st = alias_run_file(&l->priv, l->value, mbox_fd, aliases_conf->command_timeout, &diag);
        }
        const char *who = l->priv.user ? l->priv.user : "?";
        if (st == ALIAS_OK) {
            g_ptr_array_add(it->run_log, g_strdup_printf("delivered to %s as %s", diag, who));
        } else if (st == ALIAS_TEMP) {
            g_warning("%s: to=<%s>, relay=aliases, status=deferred (%s, from %s)", b->qid,
                      it->address, diag, l->origin ? l->origin : "?");
            item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "%s", diag);
            ok = FALSE;
        } else if (!it->run_fail) {
            g_ptr_array_add(it->run_log, g_strdup_printf("failed: %s as %s", diag, who));
            it->run_fail = g_steal_pointer(&diag);
        }
    }
    if (in_fd >= 0)
        close(in_fd);
    if (mbox_fd >= 0)
        close(mbox_fd);
    return ok;
}

static void
expand_item(Batch *b, Item *it, const AliasExpandCtx *ctx, const char *hdr, gsize hdr_len)
{
    if (aliases_delivered_to(hdr, hdr_len, it->address)) {
        item_done(it, KR_RCPT_FAILED, 550, "5.4.6",
                  "mail forwarding loop for %s (Delivered-To: already present)", it->address);
        return;
    }
    g_autoptr(GError) err = NULL;
    AliasExpansion exp;
    alias_expand(ctx, it->address, &exp);
    switch (exp.status) {
    case ALIAS_OK:
    case ALIAS_NONE:
        break;
    case ALIAS_TEMP:
        item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "%s", exp.diag);
        goto out;
    case ALIAS_LOOP:
        item_done(it, KR_RCPT_FAILED, 550, "5.4.6", "%s", exp.diag);
        goto out;
    case ALIAS_TOOBIG:
        item_done(it, KR_RCPT_FAILED, 550, "5.5.3", "%s", exp.diag);
        goto out;
    case ALIAS_CONFIG:
    case ALIAS_PERM:
        item_done(it, KR_RCPT_FAILED, 550, "5.3.5", "%s", exp.diag);
        goto out;
    }
    it->how = g_strdup(exp.how);
    guint n_mail = 0, n_run = 0;
    const AliasLeaf *only = NULL;
    for (guint i = 0; i < exp.leaves->len; i++) {
        const AliasLeaf *l = exp.leaves->pdata[i];
        if (l->kind == ALIAS_LEAF_MAILBOX || l->kind == ALIAS_LEAF_ADDRESS) {
            n_mail++;
            only = l;
        } else {
            n_run++;
        }
    }
    if (!exp.how) {
        it->action = ACT_CONTINUE; /* nothing to expand */
        goto out;
    }
    if (n_run == 0 && n_mail == 1 && only->kind == ALIAS_LEAF_MAILBOX) {
        it->action = ACT_CONTINUE;
        if (g_ascii_strcasecmp(only->value, it->address) != 0)
            it->mailbox = g_strdup(only->value); /* else: its own mailbox, as it was */
        goto out;
    }
    it->run_log = g_ptr_array_new_with_free_func(g_free);
    if (n_run && !run_leaves(b, it, &exp))
        goto out;
    if (n_mail == 0) {
        if (it->run_fail)
            item_done(it, KR_RCPT_FAILED, 550, "5.3.0", "%s", it->run_fail);
        else
            item_done(it, KR_RCPT_DELIVERED, 250, "2.0.0", "delivered by %s", exp.how);
        goto out;
    }
    KrMsg *copy = kr_msg_new_copy(b->msg, KR_QUEUE_INCOMING, &err);
    if (!copy) {
        item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "cannot copy the message: %s", err->message);
        goto out;
    }
    gboolean owner = exp.owner && *b->sender;
    kr_msg_set_sender(copy, owner ? exp.owner : b->sender);
    for (guint i = 0; i < exp.leaves->len; i++) {
        const AliasLeaf *l = exp.leaves->pdata[i];
        if (l->kind != ALIAS_LEAF_MAILBOX && l->kind != ALIAS_LEAF_ADDRESS)
            continue;
        KrRcpt *r = kr_msg_add_rcpt(copy, l->value);
        if (!owner) {
            /* RFC 3461 6.2.7: one target takes the NOTIFY on (it reports
             * success itself); several get it without SUCCESS, and the
             * alias is reported "expanded" (bounce stage). */
            r->notify = it->notify;
            if (n_mail > 1 && (it->notify & KR_NOTIFY_SUCCESS)) {
                r->notify &= ~(unsigned)KR_NOTIFY_SUCCESS;
                if (r->notify == 0)
                    r->notify = KR_NOTIFY_NEVER;
            }
            r->orcpt = g_strdup(it->orcpt);
        }
    }
    kr_msg_set_attr(copy, "alias_final", kr_msg_queue_id(copy));
    if (!kr_msg_prepend_header(copy, "Delivered-To", it->address, &err)) {
        kr_msg_discard(copy);
        kr_msg_unref(copy);
        item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "cannot add Delivered-To: %s", err->message);
        goto out;
    }
    it->copy = copy;
    it->n_copy = n_mail;
    it->passed = n_mail == 1 && !owner && (it->notify & KR_NOTIFY_SUCCESS);
    it->action = ACT_INJECT;
out:
    alias_expansion_clear(&exp);
}

static void
batch_work(gpointer p)
{
    Batch *b = p;
    AliasExpandCtx *ctx = aliases_ctx_new(b->table, b->qid);
    gsize hdr_len = 0;
    g_autofree char *hdr = read_headers(b->msg, &hdr_len);
    for (guint i = 0; i < b->items->len; i++)
        expand_item(b, b->items->pdata[i], ctx, hdr, hdr_len);
    aliases_ctx_free(ctx);
}

/* --- back on the main loop ----------------------------------------------------------- */

static void
batch_free(Batch *b)
{
    g_ptr_array_unref(b->items);
    aliases_table_unref(b->table);
    kr_msg_unref(b->msg);
    g_free(b->qid);
    g_free(b->sender);
    g_free(b);
}

static void
batch_end(Batch *b)
{
    KrJob *job = b->job;
    batch_free(b);
    kr_job_continue(job);
}

static void
finish(Item *it)
{
    Batch *b = it->batch;
    const char *status = it->state == KR_RCPT_DEFERRED   ? "deferred"
                         : it->state == KR_RCPT_FAILED   ? "bounced"
                         : it->state == KR_RCPT_EXPANDED ? "expanded"
                                                         : "sent";
    g_message("%s: to=<%s>, relay=aliases, status=%s (%s)", b->qid, it->address, status, it->diag);
    kr_job_rcpt_done(b->job, it->index, it->state, it->code, it->ecode, it->diag);
}

static void
injected(KrMsg *copy, const KrJobResult *res, gpointer ud)
{
    Item *it = ud;
    Batch *b = it->batch;
    const char *cid = kr_msg_queue_id(copy);
    if (res->kind == KR_VERDICT_DEFER) {
        item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "cannot queue the expansion: %s",
                  res->text ? res->text : "deferred");
    } else if (res->kind == KR_VERDICT_REJECT) {
        item_done(it, KR_RCPT_FAILED, res->code >= 500 ? res->code : 550,
                  res->ecode ? res->ecode : "5.0.0", "expansion refused by %s: %s",
                  res->stage ? res->stage : "the pipeline", res->text ? res->text : "");
    } else if (it->run_fail) {
        item_done(it, KR_RCPT_FAILED, 550, "5.3.0", "%s (the other targets: queued as %s)",
                  it->run_fail, cid);
    } else {
        item_done(it, KR_RCPT_EXPANDED, 250, "2.0.0", "%s: %u recipient(s), queued as %s", it->how,
                  it->n_copy, cid);
        if (it->passed)
            kr_rcpt_set_attr(kr_job_rcpt(b->job, it->index), "dsn_passed", "1");
    }
    for (guint i = 0; it->run_log && i < it->run_log->len; i++)
        g_message("%s: to=<%s>, relay=aliases, %s", b->qid, it->address,
                  (char *)it->run_log->pdata[i]);
    finish(it);
    if (--b->pending == 0)
        batch_end(b);
}

static void
batch_done(gpointer p)
{
    Batch *b = p;
    b->pending = 1;
    for (guint i = 0; i < b->items->len; i++) {
        Item *it = b->items->pdata[i];
        KrRcpt *r = kr_job_rcpt(b->job, it->index);
        switch (it->action) {
        case ACT_CONTINUE:
            if (it->mailbox) {
                g_message("%s: to=<%s>, relay=aliases, redirected to <%s> by %s", b->qid,
                          it->address, it->mailbox, it->how);
                kr_rcpt_set_attr(r, "mailbox", it->mailbox);
            }
            break;
        case ACT_DONE:
            for (guint k = 0; it->run_log && k < it->run_log->len; k++)
                g_message("%s: to=<%s>, relay=aliases, %s", b->qid, it->address,
                          (char *)it->run_log->pdata[k]);
            finish(it);
            break;
        case ACT_INJECT: {
            g_autoptr(GError) err = NULL;
            b->pending++;
            if (!kr_pipeline_run(aliases_conf->inject_node, it->copy, NULL, injected, it, &err)) {
                b->pending--;
                item_done(it, KR_RCPT_DEFERRED, 451, "4.3.0", "cannot queue the expansion: %s",
                          err->message);
                finish(it);
            }
            break;
        }
        }
    }
    if (--b->pending == 0)
        batch_end(b);
}

static void
aliases_process(KrStage *stage, KrJob *job)
{
    KrMsg *msg = kr_job_msg(job);
    const char *final = kr_msg_attr(msg, "alias_final");
    if (final && strcmp(final, kr_msg_queue_id(msg)) == 0) {
        kr_job_continue(job); /* an expansion: its recipients are final */
        return;
    }
    Batch *b = g_new0(Batch, 1);
    b->job = job;
    b->msg = kr_msg_ref(msg);
    b->qid = g_strdup(kr_msg_queue_id(msg));
    b->sender = g_strdup(kr_msg_sender(msg));
    b->table = aliases_current();
    b->items = g_ptr_array_new_with_free_func(item_free);
    for (guint i = 0; i < kr_job_rcpt_count(job); i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        const char *a = kr_rcpt_attr(r, "address");
        Item *it = g_new0(Item, 1);
        it->batch = b;
        it->index = i;
        it->address = a ? g_strdup(a) : kr_addr_canon(r->address);
        it->orcpt = g_strdup(r->orcpt);
        it->notify = r->notify;
        g_ptr_array_add(b->items, it);
    }
    kr_worker_run(batch_work, batch_done, b);
}

const KrStageType aliases_stage_type = {
    .struct_size = sizeof(KrStageType),
    .name = "aliases",
    .summary = "expand aliases, :include: lists and forward files of local recipients",
    .process = aliases_process,
};
