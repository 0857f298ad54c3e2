/* SPDX-License-Identifier: MIT */
/*
 * queue-cmd.c - `kurir queue ...` and the daemon's "queue" control command.
 *
 * SYNOPSIS
 *   kurir queue list             every queued message, with its recipients
 *   kurir queue show ID          envelope, recipient status and content
 *   kurir queue flush            deferred mail: try again now
 *   kurir queue hold ID...       keep messages from delivery (hold/)
 *   kurir queue release ID...    put held messages back into the queue
 *   kurir queue delete ID...     remove messages (no bounce)
 *   kurir queue pickup           pick up maildrop/ now
 *   kurir queue status           the queue manager's counters
 *
 * DESCRIPTION
 *   list and show read the queue directories directly, so they work with
 *   or without a running kurird. flush, pickup and status need the
 *   daemon. hold, release and delete ask the daemon over the control
 *   socket (it finishes running deliveries first), then wait until the
 *   file has moved; when kurird is not running they act on the files
 *   themselves.
 *
 *   Control requests (DATA_DIR/run/control), handled by the queue
 *   manager: "queue flush", "queue hold ID...", "queue release ID...",
 *   "queue delete ID...", "queue pickup", "queue status".
 *
 * DIAGNOSTICS
 *   Exit 0 on success, 1 if something failed (a message not found, the
 *   daemon not running for flush), 64 (EX_USAGE) for bad usage.
 *
 *   queue_command, queue_control, queue_cmd_list()
 */
#include "queue.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <sysexits.h>
#include <unistd.h>

static const KrQueueDir list_order[] = {KR_QUEUE_MAILDROP, KR_QUEUE_INCOMING, KR_QUEUE_ACTIVE,
                                        KR_QUEUE_DEFERRED, KR_QUEUE_HOLD,     KR_QUEUE_CORRUPT};

/* --- the daemon side ------------------------------------------------------------ */

static gboolean
control_handle(gpointer self, int argc, char **argv, GString *out)
{
    if (argc < 2) {
        g_string_append(out, "usage: queue flush|hold|release|delete|pickup|status\n");
        return FALSE;
    }
    if (!qmgr_running()) {
        g_string_append(out, "the queue manager is not running\n");
        return FALSE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "flush"))
        return qmgr_flush(out);
    if (!strcmp(sub, "pickup")) {
        qscan_pickup();
        g_string_append(out, "pickup requested\n");
        return TRUE;
    }
    if (!strcmp(sub, "status")) {
        qmgr_status(out);
        return TRUE;
    }
    gboolean (*fn)(const char *, GString *) = !strcmp(sub, "hold")      ? qmgr_hold
                                              : !strcmp(sub, "release") ? qmgr_release
                                              : !strcmp(sub, "delete")  ? qmgr_delete
                                                                        : NULL;
    if (!fn || argc < 3) {
        g_string_append_printf(out, "usage: queue %s ID...\n", fn ? sub : "hold|release|delete");
        return FALSE;
    }
    gboolean ok = TRUE;
    for (int i = 2; i < argc; i++)
        ok = fn(argv[i], out) && ok;
    return ok;
}

const KrControl queue_control = {
    .struct_size = sizeof(KrControl),
    .name = "queue",
    .handle = control_handle,
};

/* --- reading the queue ------------------------------------------------------------ */

static char *
fmt_time(gint64 t)
{
    if (t <= 0)
        return g_strdup("-");
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local(t);
    return dt ? g_date_time_format(dt, "%Y-%m-%d %H:%M:%S") : g_strdup("?");
}

static const char *
rcpt_state(KrRcptState s)
{
    static const char *const names[] = {"pending", "delivered", "deferred",
                                        "failed",  "bounced",   "expanded"};
    return (unsigned)s < G_N_ELEMENTS(names) ? names[s] : "?";
}

static gboolean
find_msg(const char *id, KrQueueDir *dir_r)
{
    for (gsize i = 0; i < G_N_ELEMENTS(list_order); i++) {
        g_autofree char *d = kr_queue_dir_path(list_order[i]);
        g_autofree char *path = g_build_filename(d, id, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
            *dir_r = list_order[i];
            return TRUE;
        }
    }
    return FALSE;
}

static void
print_rcpt(const KrRcpt *r, gboolean full)
{
    printf("    %-9s <%s>", rcpt_state(r->state), r->address);
    if (r->attempts)
        printf(", %u attempt%s", r->attempts, r->attempts == 1 ? "" : "s");
    if (r->state == KR_RCPT_DEFERRED) {
        g_autofree char *t = fmt_time(r->next_try);
        printf(", next %s", t);
    }
    if (r->code)
        printf(": %d %s %s", r->code, r->ecode, r->diag);
    printf("\n");
    if (full) {
        if (r->orcpt)
            printf("              orcpt %s\n", r->orcpt);
        if (r->notify)
            printf("              notify%s%s%s%s\n", r->notify & KR_NOTIFY_NEVER ? " never" : "",
                   r->notify & KR_NOTIFY_SUCCESS ? " success" : "",
                   r->notify & KR_NOTIFY_FAILURE ? " failure" : "",
                   r->notify & KR_NOTIFY_DELAY ? " delay" : "");
        if (r->first_fail) {
            g_autofree char *t = fmt_time(r->first_fail);
            printf("              first failure %s\n", t);
        }
    }
}

int
queue_cmd_list(void)
{
    guint n = 0;
    gint64 bytes = 0;
    for (gsize d = 0; d < G_N_ELEMENTS(list_order); d++) {
        KrQueueDir dir = list_order[d];
        g_autoptr(GPtrArray) ids = kr_queue_list(dir);
        for (guint i = 0; i < ids->len; i++) {
            const char *id = ids->pdata[i];
            if (n++ == 0)
                printf("%-14s %-8s %9s %-19s %s\n", "ID", "QUEUE", "SIZE", "ARRIVAL", "SENDER");
            g_autoptr(GError) err = NULL;
            g_autoptr(KrMsg) msg = dir == KR_QUEUE_CORRUPT ? NULL : kr_msg_load(dir, id, &err);
            if (!msg) {
                printf("%-14s %-8s (unreadable%s%s)\n", id, kr_queue_dir_name(dir), err ? ": " : "",
                       err ? err->message : "");
                continue;
            }
            g_autofree char *t = fmt_time(kr_msg_arrival(msg));
            const char *s = kr_msg_sender(msg);
            bytes += kr_msg_raw_size(msg);
            printf("%-14s %-8s %9" G_GINT64_FORMAT " %-19s <%s>\n", id, kr_queue_dir_name(dir),
                   (gint64)kr_msg_raw_size(msg), t, s);
            for (guint k = 0; k < kr_msg_rcpt_count(msg); k++)
                print_rcpt(kr_msg_rcpt(msg, k), FALSE);
        }
    }
    if (n == 0)
        printf("queue is empty\n");
    else
        printf("-- %u message%s, %" G_GINT64_FORMAT " bytes\n", n, n == 1 ? "" : "s", bytes);
    return 0;
}

static int
cmd_show(const char *id)
{
    KrQueueDir dir;
    if (!kr_queue_id_valid(id)) {
        fprintf(stderr, "kurir: not a queue ID: %s\n", id);
        return EX_USAGE;
    }
    if (!find_msg(id, &dir)) {
        fprintf(stderr, "kurir: %s: no such message in the queue\n", id);
        return 1;
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(KrMsg) msg = kr_msg_load(dir, id, &err);
    if (!msg) {
        fprintf(stderr, "kurir: %s (in %s/): %s\n", id, kr_queue_dir_name(dir), err->message);
        return 1;
    }
    g_autofree char *t = fmt_time(kr_msg_arrival(msg));
    printf("id: %s\nqueue: %s\narrival: %s\nsender: <%s>\nsize: %" G_GINT64_FORMAT "\n", id,
           kr_queue_dir_name(dir), t, kr_msg_sender(msg), (gint64)kr_msg_size(msg));
    static const char *const attrs[] = {
        "protocol", "client_addr", "client_name", "helo",  "auth_user", "tls", "envid",
        "ret",      "body",        "smtputf8",    "login", "uid",       NULL};
    for (const char *const *a = attrs; *a; a++)
        if (kr_msg_attr(msg, *a))
            printf("%s: %s\n", *a, kr_msg_attr(msg, *a));
    printf("recipients:\n");
    for (guint k = 0; k < kr_msg_rcpt_count(msg); k++)
        print_rcpt(kr_msg_rcpt(msg, k), TRUE);
    printf("\n");
    fflush(stdout);
    if (!kr_msg_write_to_fd(msg, STDOUT_FILENO, NULL, TRUE, &err)) {
        fprintf(stderr, "kurir: %s: %s\n", id, err->message);
        return 1;
    }
    return 0;
}

/* --- changing the queue ----------------------------------------------------------- */

/* Without a daemon: act on the file. */
static gboolean
offline_action(const char *sub, const char *id, GError **error)
{
    KrQueueDir dir;
    if (!find_msg(id, &dir) || (strcmp(sub, "release") == 0 && dir != KR_QUEUE_HOLD) ||
        (strcmp(sub, "hold") == 0 && dir == KR_QUEUE_CORRUPT)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: %s", id,
                    strcmp(sub, "release") == 0 ? "not on hold" : "no such message in the queue");
        return FALSE;
    }
    if (strcmp(sub, "hold") == 0 && dir == KR_QUEUE_HOLD)
        return TRUE;
    g_autoptr(GError) lerr = NULL;
    g_autoptr(KrMsg) msg = kr_msg_load(dir, id, &lerr);
    if (!msg) {
        if (strcmp(sub, "delete") != 0) {
            g_propagate_error(error, g_steal_pointer(&lerr));
            return FALSE;
        }
        /* Unreadable: delete the file as it is. */
        g_autofree char *d = kr_queue_dir_path(dir);
        g_autofree char *path = g_build_filename(d, id, NULL);
        if (g_unlink(path) != 0) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s", path,
                        g_strerror(errno));
            return FALSE;
        }
        return TRUE;
    }
    if (strcmp(sub, "delete") == 0)
        return kr_msg_remove(msg, error);
    if (strcmp(sub, "release") == 0) {
        /* Released mail is tried at once when kurird starts. */
        for (guint i = 0; i < kr_msg_rcpt_count(msg); i++) {
            KrRcpt *r = kr_msg_rcpt(msg, i);
            if (r->state == KR_RCPT_DEFERRED && r->next_try > 0) {
                r->next_try = 0;
                if (!kr_msg_rcpt_save(msg, r, error))
                    return FALSE;
            }
        }
    }
    return kr_msg_move(msg, strcmp(sub, "hold") == 0 ? KR_QUEUE_HOLD : KR_QUEUE_INCOMING, error);
}

/* After the daemon said OK: wait (up to 15 s) until the file moved. */
static gboolean
wait_effect(const char *sub, const char *id)
{
    for (int i = 0; i < 1500; i++) {
        KrQueueDir dir;
        gboolean found = find_msg(id, &dir);
        if (strcmp(sub, "delete") == 0 ? !found
            : strcmp(sub, "hold") == 0 ? found && dir == KR_QUEUE_HOLD
                                       : !found || dir != KR_QUEUE_HOLD)
            return TRUE;
        g_usleep(10 * 1000);
    }
    return FALSE;
}

static const char *
past(const char *sub)
{
    return !strcmp(sub, "hold") ? "held" : !strcmp(sub, "release") ? "released" : "deleted";
}

static int
cmd_change(const char *sub, int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kurir queue %s ID...\n", sub);
        return EX_USAGE;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        const char *id = argv[i];
        if (!kr_queue_id_valid(id)) {
            fprintf(stderr, "kurir: not a queue ID: %s\n", id);
            rc = 1;
            continue;
        }
        g_autofree char *line = g_strdup_printf("queue %s %s", sub, id);
        g_autofree char *reply = NULL;
        g_autoptr(GError) err = NULL;
        if (kr_control_request(line, &reply, &err)) {
            if (wait_effect(sub, id)) {
                printf("%s: %s\n", id, past(sub));
            } else {
                fprintf(stderr, "kurir: %s: requested, but not done yet (see the log)\n", id);
                rc = 1;
            }
        } else if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED)) {
            g_clear_error(&err);
            if (offline_action(sub, id, &err)) {
                printf("%s: %s\n", id, past(sub));
            } else {
                fprintf(stderr, "kurir: %s\n", err->message);
                rc = 1;
            }
        } else {
            fprintf(stderr, "kurir: %s\n", err->message);
            rc = 1;
        }
    }
    return rc;
}

static int
cmd_daemon(const char *line)
{
    g_autofree char *reply = NULL;
    g_autoptr(GError) err = NULL;
    if (!kr_control_request(line, &reply, &err)) {
        fprintf(stderr, "kurir: %s\n", err->message);
        return 1;
    }
    fputs(reply, stdout);
    return 0;
}

static int
queue_run(KrModule *mod, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub || !strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        printf("%s\n", queue_command.usage);
        return sub ? 0 : EX_USAGE;
    }
    if (!strcmp(sub, "list") && argc == 2)
        return queue_cmd_list();
    if (!strcmp(sub, "show") && argc == 3)
        return cmd_show(argv[2]);
    if ((!strcmp(sub, "flush") || !strcmp(sub, "pickup") || !strcmp(sub, "status")) && argc == 2) {
        g_autofree char *line = g_strconcat("queue ", sub, NULL);
        return cmd_daemon(line);
    }
    if (!strcmp(sub, "hold") || !strcmp(sub, "release") || !strcmp(sub, "delete"))
        return cmd_change(sub, argc, argv);
    fprintf(stderr, "usage:\n%s\n", queue_command.usage);
    return EX_USAGE;
}

const KrCommand queue_command = {
    .struct_size = sizeof(KrCommand),
    .name = "queue",
    .usage = "queue list                 list queued messages\n"
             "queue show ID              show one message (envelope, status, content)\n"
             "queue flush                retry deferred mail now\n"
             "queue hold|release ID...   stop / resume delivery of messages\n"
             "queue delete ID...         remove messages (no bounce)\n"
             "queue pickup|status        pick up maildrop/ now; queue manager counters",
    .run = queue_run,
};
