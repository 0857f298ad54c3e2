/* SPDX-License-Identifier: MIT */
/*
 * sendmail.c - the sendmail-compatible local mail injector.
 *
 * SYNOPSIS
 *   sendmail [-t] [-i|-oi] [-f sender] [-F full_name] [-N dsn] [-R ret]
 *            [-V envid] [-B type] [-v] [--] [recipient ...]
 *   kurir sendmail ...        (the same)
 *   sendmail -bp              (list the queue, like mailq)
 *
 * DESCRIPTION
 *   Reads a message on standard input and queues it: the message is
 *   written as a committed file into DATA_DIR/queue/maildrop/ (fsync'd),
 *   then the running kurird is asked to pick it up ("queue pickup" on the
 *   control socket; if kurird is not running it picks the file up when
 *   it starts, and scans maildrop/ periodically anyway). From there it
 *   takes the same pipeline as SMTP mail, from the `maildrop` node.
 *
 *   The invoking user must be able to write DATA_DIR/queue/maildrop/
 *   (mode 0700: kurird's user; there is no setgid helper yet), and the
 *   file must be readable by kurird.
 *
 *   Input lines may end in LF or CRLF; they are stored with CRLF. Unless
 *   -i (or -oi) is given, a line with a single "." ends the input. A
 *   first line "From ..." (an mbox separator) is dropped. Bcc and
 *   Resent-Bcc headers are removed. A From header is added when there is
 *   none: "Full Name <sender>" with -F (or the user's GECOS name).
 *
 *   -t        also take recipients from To, Cc and Bcc (or, if the
 *             message has Resent- headers, from Resent-To/Cc/Bcc);
 *             recipients given as arguments are added (Postfix behaviour)
 *   -f ADDR   envelope sender (also -r); "<>" is the null sender.
 *             Default: the invoking user's login name @ default domain
 *   -F NAME   full name for the added From header
 *   -N DSN    "never", or a comma list of success, failure, delay
 *   -R RET    "full" or "hdrs": what a bounce returns
 *   -V ENVID  envelope ID for DSNs
 *   -B TYPE   7BIT or 8BITMIME (recorded)
 *   -bm       deliver mail (the default); -bp lists the queue
 *   -oX, -C, -O, -X, -L, -h, -p, -U, -m, -n, -G: accepted and ignored
 *   (-o options other than -oi with a note on stderr)
 *   Recipient arguments may be address lists ("a@x, b@y"); bare names
 *   get the default domain.
 *
 * DIAGNOSTICS
 *   Exit status from sysexits.h: 0 queued; EX_USAGE bad options or no
 *   recipients; EX_DATAERR malformed address (control characters, bad
 *   syntax) or no recipient found with -t; EX_NOUSER the invoking user
 *   has no name; EX_CANTCREAT the queue file cannot be created;
 *   EX_IOERR reading input or writing failed; EX_TEMPFAIL the queue
 *   file could not be made durable (disk full: try again later).
 *   Nothing is left in maildrop/ unless the exit status is 0.
 *
 *   sendmail_command   the KrCommand registered as "sendmail"
 */
#include "queue.h"
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <sysexits.h>
#include <unistd.h>

#define MAX_HEADER_BLOCK (256 * 1024)
#define WRITE_CHUNK      (64 * 1024)

typedef struct {
    gboolean extract, ignore_dots, verbose, list_queue;
    char *sender; /* -f, NULL: default */
    char *full_name;
    unsigned notify;
    const char *ret;
    char *envid;
    const char *body;
    GPtrArray *args; /* recipient arguments */
} Opts;

typedef struct {
    char *name;
    GPtrArray *lines; /* raw lines without EOL */
} Field;

static void
field_free(gpointer p)
{
    Field *f = p;
    g_free(f->name);
    g_ptr_array_unref(f->lines);
    g_free(f);
}

static int
usage(const char *why)
{
    fprintf(stderr,
            "sendmail: %s\n"
            "usage: sendmail [-t] [-i] [-f sender] [-F name] [-N dsn] [-R full|hdrs] "
            "[-V envid] [--] [recipient ...]\n",
            why);
    return EX_USAGE;
}

static gboolean
parse_notify(const char *v, unsigned *out)
{
    *out = 0;
    if (g_ascii_strcasecmp(v, "never") == 0) {
        *out = KR_NOTIFY_NEVER;
        return TRUE;
    }
    g_auto(GStrv) parts = g_strsplit(v, ",", -1);
    for (char **p = parts; *p; p++) {
        g_strstrip(*p);
        if (g_ascii_strcasecmp(*p, "success") == 0)
            *out |= KR_NOTIFY_SUCCESS;
        else if (g_ascii_strcasecmp(*p, "failure") == 0)
            *out |= KR_NOTIFY_FAILURE;
        else if (g_ascii_strcasecmp(*p, "delay") == 0)
            *out |= KR_NOTIFY_DELAY;
        else
            return FALSE;
    }
    return *out != 0;
}

/* Parse the options; returns -1 to go on, else an exit status. */
static int
parse_options(Opts *o, int argc, char **argv)
{
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        for (int j = 1; a[j]; j++) {
            char c = a[j];
            const char *rest = a + j + 1;
            switch (c) {
            case 't':
                o->extract = TRUE;
                continue;
            case 'i':
                o->ignore_dots = TRUE;
                continue;
            case 'v':
                o->verbose = TRUE;
                continue;
            case 'U': /* initial submission */
            case 'm': /* me too */
            case 'n': /* no aliasing */
            case 'G': /* gateway */
                continue;
            case 'o':
                if (strcmp(rest, "i") == 0)
                    o->ignore_dots = TRUE;
                else if (*rest)
                    fprintf(stderr, "sendmail: note: option -o%s ignored\n", rest);
                else
                    return usage("option -o needs a letter");
                goto next_arg;
            case 'b':
                if (strcmp(rest, "m") == 0 || *rest == '\0')
                    goto next_arg;
                if (strcmp(rest, "p") == 0) {
                    o->list_queue = TRUE;
                    goto next_arg;
                }
                fprintf(stderr, "sendmail: mode -b%s is not supported (only -bm and -bp)\n", rest);
                return EX_USAGE;
            case 'q':
                fprintf(stderr, "sendmail: -q: use `kurir queue flush`\n");
                return EX_USAGE;
            case 'f':
            case 'r':
            case 'F':
            case 'N':
            case 'R':
            case 'V':
            case 'B':
            case 'C':
            case 'O':
            case 'X':
            case 'L':
            case 'h':
            case 'p': {
                const char *val = *rest ? rest : (i + 1 < argc ? argv[++i] : NULL);
                if (!val) {
                    g_autofree char *m = g_strdup_printf("option -%c needs a value", c);
                    return usage(m);
                }
                if (c == 'f' || c == 'r') {
                    g_free(o->sender);
                    o->sender = g_strdup(val);
                } else if (c == 'F') {
                    g_free(o->full_name);
                    o->full_name = g_strdup(val);
                } else if (c == 'N') {
                    if (!parse_notify(val, &o->notify))
                        return usage("-N takes never, or a list of success, failure, delay");
                } else if (c == 'R') {
                    if (g_ascii_strcasecmp(val, "full") == 0)
                        o->ret = "FULL";
                    else if (g_ascii_strcasecmp(val, "hdrs") == 0)
                        o->ret = "HDRS";
                    else
                        return usage("-R takes full or hdrs");
                } else if (c == 'V') {
                    for (const char *p = val; *p; p++)
                        if (*p < 0x21 || *p > 0x7e)
                            return usage("-V: the envelope ID must be printable ASCII");
                    if (strlen(val) > 100)
                        return usage("-V: the envelope ID is too long");
                    g_free(o->envid);
                    o->envid = g_strdup(val);
                } else if (c == 'B') {
                    if (g_ascii_strcasecmp(val, "7bit") == 0)
                        o->body = "7BIT";
                    else if (g_ascii_strcasecmp(val, "8bitmime") == 0)
                        o->body = "8BITMIME";
                    else
                        return usage("-B takes 7BIT or 8BITMIME");
                }
                goto next_arg;
            }
            default: {
                g_autofree char *m = g_strdup_printf("unknown option -%c", c);
                return usage(m);
            }
            }
        }
    next_arg:;
    }
    for (; i < argc; i++)
        g_ptr_array_add(o->args, g_strdup(argv[i]));
    return -1;
}

/* A header field line "Name: ..." (name of printable ASCII, no ':'). */
static gsize
field_name_len(const char *line)
{
    gsize n = 0;
    while (line[n] > 0x20 && line[n] < 0x7f && line[n] != ':')
        n++;
    return line[n] == ':' && n > 0 ? n : 0;
}

static char *
field_value(const Field *f)
{
    GString *v = g_string_new(NULL);
    for (guint i = 0; i < f->lines->len; i++) {
        const char *l = f->lines->pdata[i];
        g_string_append(v, i == 0 ? l + strlen(f->name) + 1 : l);
    }
    return g_strstrip(g_string_free(v, FALSE));
}

static gboolean
is_named(const Field *f, const char *name)
{
    return g_ascii_strcasecmp(f->name, name) == 0;
}

/* "Full Name" as an RFC 5322 phrase: atoms, a quoted string, or an
 * RFC 2047 encoded word for non-ASCII. */
static char *
display_name(const char *name)
{
    g_autofree char *clean = g_utf8_make_valid(name, -1);
    for (char *p = clean; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    g_strstrip(clean);
    if (!*clean)
        return NULL;
    gboolean atoms = TRUE, ascii = TRUE;
    for (const unsigned char *p = (const unsigned char *)clean; *p; p++) {
        if (*p >= 0x80)
            ascii = FALSE;
        if (!(g_ascii_isalnum(*p) || *p == ' ' || strchr("!#$%&'*+-/=?^_`{|}~", *p)))
            atoms = FALSE;
    }
    if (atoms && ascii)
        return g_strdup(clean);
    if (ascii) {
        GString *q = g_string_new("\"");
        for (const char *p = clean; *p; p++) {
            if (*p == '"' || *p == '\\')
                g_string_append_c(q, '\\');
            g_string_append_c(q, *p);
        }
        g_string_append_c(q, '"');
        return g_string_free(q, FALSE);
    }
    /* Encoded words of at most 45 bytes of text each (60 of base64). */
    GString *out = g_string_new(NULL);
    const char *p = clean;
    while (*p) {
        const char *end = p;
        while (*end && end - p < 45)
            end = g_utf8_next_char(end);
        g_autofree char *b64 = g_base64_encode((const guchar *)p, (gsize)(end - p));
        g_string_append_printf(out, "%s=?UTF-8?B?%s?=", out->len ? " " : "", b64);
        p = end;
    }
    return g_string_free(out, FALSE);
}

/* Add the addresses of an address list, canonical, once each. */
static int
add_rcpts(GPtrArray *rcpts, GHashTable *seen, const char *list, const char *where)
{
    g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func(g_free);
    if (!sendmail_parse_address_list(list, found)) {
        fprintf(stderr, "sendmail: bad address list in %s: %s\n", where, list);
        return EX_DATAERR;
    }
    for (guint i = 0; i < found->len; i++) {
        const char *a = found->pdata[i];
        if (!sendmail_address_ok(a)) {
            fprintf(stderr, "sendmail: bad recipient address in %s: %s\n", where, a);
            return EX_DATAERR;
        }
        char *canon = kr_addr_canon(a);
        g_autofree char *key = g_utf8_strdown(canon, -1);
        if (g_hash_table_contains(seen, key)) {
            g_free(canon);
            continue;
        }
        g_hash_table_add(seen, g_steal_pointer(&key));
        g_ptr_array_add(rcpts, canon);
    }
    return EX_OK;
}

typedef struct {
    KrMsg *msg;
    GString *buf;
    GError *error;
} Writer;

static gboolean
w_flush(Writer *w)
{
    if (!w->error && w->buf->len)
        kr_msg_append(w->msg, w->buf->str, w->buf->len, &w->error);
    g_string_truncate(w->buf, 0);
    return w->error == NULL;
}

static gboolean
w_line(Writer *w, const char *line, gsize len)
{
    g_string_append_len(w->buf, line, (gssize)len);
    g_string_append(w->buf, "\r\n");
    return w->buf->len < WRITE_CHUNK || w_flush(w);
}

static int
write_error_status(const GError *e)
{
    if (g_error_matches(e, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
        return EX_TEMPFAIL;
    return EX_IOERR;
}

static char *
login_name(struct passwd **pw_r)
{
    struct passwd *pw = getpwuid(getuid());
    *pw_r = pw;
    return pw && pw->pw_name && *pw->pw_name ? g_strdup(pw->pw_name) : NULL;
}

/* Read stdin: header block into fields (bounded), then the body streamed
 * into the spool. Returns an exit status. */
static int
read_message(Opts *o, Writer *w, const char *sender, const char *full_name, GPtrArray *rcpts,
             GHashTable *seen)
{
    g_autoptr(GPtrArray) fields = g_ptr_array_new_with_free_func(field_free);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    gsize hdr_bytes = 0;
    gboolean first = TRUE, in_headers = TRUE, ended = FALSE, blank = FALSE;
    char *body_first = NULL; /* the line that ended the header block */
    gsize body_first_len = 0;
    while (in_headers && (n = getline(&line, &cap, stdin)) >= 0) {
        gsize len = (gsize)n;
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        if (len && line[len - 1] == '\r')
            line[--len] = 0;
        if (!o->ignore_dots && len == 1 && line[0] == '.') {
            ended = TRUE;
            break;
        }
        if (first && g_str_has_prefix(line, "From ")) {
            first = FALSE;
            continue; /* mbox separator */
        }
        first = FALSE;
        if (len == 0) {
            blank = TRUE;
            in_headers = FALSE;
        } else if ((line[0] == ' ' || line[0] == '\t') && fields->len > 0 &&
                   hdr_bytes + len < MAX_HEADER_BLOCK) {
            Field *f = fields->pdata[fields->len - 1];
            g_ptr_array_add(f->lines, g_strndup(line, len));
            hdr_bytes += len;
        } else if (field_name_len(line) && strlen(line) == len &&
                   hdr_bytes + len < MAX_HEADER_BLOCK) {
            Field *f = g_new0(Field, 1);
            f->name = g_strndup(line, field_name_len(line));
            f->lines = g_ptr_array_new_with_free_func(g_free);
            g_ptr_array_add(f->lines, g_strndup(line, len));
            g_ptr_array_add(fields, f);
            hdr_bytes += len;
        } else {
            /* Not a header (or too many): the body starts here. */
            body_first = g_memdup2(line, len + 1);
            body_first_len = len;
            in_headers = FALSE;
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "sendmail: reading input: %s\n", g_strerror(errno));
        free(line);
        g_free(body_first);
        return EX_IOERR;
    }
    /* Recipients from the headers. */
    if (o->extract) {
        gboolean resent = FALSE;
        for (guint i = 0; i < fields->len; i++)
            if (g_ascii_strncasecmp(((Field *)fields->pdata[i])->name, "Resent-", 7) == 0)
                resent = TRUE;
        for (guint i = 0; i < fields->len; i++) {
            Field *f = fields->pdata[i];
            const char *name = f->name + (resent ? 7 : 0);
            if (resent && g_ascii_strncasecmp(f->name, "Resent-", 7) != 0)
                continue;
            if (g_ascii_strcasecmp(name, "To") && g_ascii_strcasecmp(name, "Cc") &&
                g_ascii_strcasecmp(name, "Bcc"))
                continue;
            g_autofree char *v = field_value(f);
            int rc = add_rcpts(rcpts, seen, v, f->name);
            if (rc != EX_OK) {
                free(line);
                g_free(body_first);
                return rc;
            }
        }
    }
    if (rcpts->len == 0) {
        free(line);
        g_free(body_first);
        if (o->extract) {
            fprintf(stderr, "sendmail: no recipient addresses found in the message header\n");
            return EX_DATAERR;
        }
        return usage("no recipients: give them as arguments or use -t");
    }
    /* The header block, Bcc removed, From added. */
    gboolean has_from = FALSE;
    for (guint i = 0; i < fields->len; i++) {
        Field *f = fields->pdata[i];
        if (is_named(f, "Bcc") || is_named(f, "Resent-Bcc"))
            continue;
        if (is_named(f, "From"))
            has_from = TRUE;
        for (guint k = 0; k < f->lines->len; k++)
            w_line(w, f->lines->pdata[k], strlen(f->lines->pdata[k]));
    }
    if (!has_from && *sender) {
        g_autofree char *dn = full_name ? display_name(full_name) : NULL;
        g_autofree char *from =
            dn ? g_strdup_printf("From: %s <%s>", dn, sender) : g_strdup_printf("From: %s", sender);
        w_line(w, from, strlen(from));
    }
    if (blank || body_first)
        w_line(w, "", 0);
    if (body_first)
        w_line(w, body_first, body_first_len);
    g_free(body_first);
    /* The body, streamed. */
    while (!ended && (n = getline(&line, &cap, stdin)) >= 0) {
        gsize len = (gsize)n;
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        if (len && line[len - 1] == '\r')
            line[--len] = 0;
        if (!o->ignore_dots && len == 1 && line[0] == '.')
            break;
        if (!w_line(w, line, len))
            break;
    }
    gboolean rerr = ferror(stdin);
    int e = errno;
    free(line);
    if (rerr) {
        fprintf(stderr, "sendmail: reading input: %s\n", g_strerror(e));
        return EX_IOERR;
    }
    if (!w_flush(w)) {
        fprintf(stderr, "sendmail: writing the queue file: %s\n", w->error->message);
        return write_error_status(w->error);
    }
    return EX_OK;
}

static int
queue_it(Opts *o)
{
    /* The envelope sender. */
    struct passwd *pw = NULL;
    g_autofree char *login = login_name(&pw);
    g_autofree char *sender = NULL;
    if (o->sender) {
        g_autofree char *s = g_strstrip(g_strdup(o->sender));
        gsize l = strlen(s);
        if (l >= 2 && s[0] == '<' && s[l - 1] == '>') {
            s[l - 1] = 0;
            memmove(s, s + 1, l - 1);
        }
        if (*s && !sendmail_address_ok(s)) {
            fprintf(stderr, "sendmail: bad sender address: %s\n", o->sender);
            return EX_DATAERR;
        }
        sender = *s ? kr_addr_canon(s) : g_strdup("");
    } else {
        if (!login) {
            fprintf(stderr, "sendmail: cannot find the name of user %u\n", (unsigned)getuid());
            return EX_NOUSER;
        }
        sender = kr_addr_canon(login);
        if (!sendmail_address_ok(sender)) {
            fprintf(stderr, "sendmail: user name %s makes no valid address\n", login);
            return EX_NOUSER;
        }
    }
    g_autofree char *full_name = o->full_name ? g_strdup(o->full_name) : NULL;
    if (!full_name && !o->sender && pw && pw->pw_gecos && *pw->pw_gecos) {
        full_name = g_strdup(pw->pw_gecos);
        full_name[strcspn(full_name, ",")] = 0;
    }

    g_autoptr(GPtrArray) rcpts = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < o->args->len; i++) {
        int rc = add_rcpts(rcpts, seen, o->args->pdata[i], "the arguments");
        if (rc != EX_OK)
            return rc;
    }
    if (rcpts->len == 0 && !o->extract)
        return usage("no recipients: give them as arguments or use -t");

    g_autofree char *maildrop = kr_queue_dir_path(KR_QUEUE_MAILDROP);
    if (g_mkdir_with_parents(maildrop, 0700) != 0) {
        fprintf(stderr, "sendmail: cannot create %s: %s\n", maildrop, g_strerror(errno));
        return EX_CANTCREAT;
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(KrMsg) msg = kr_msg_new_spool(KR_QUEUE_MAILDROP, &err);
    if (!msg) {
        fprintf(stderr, "sendmail: cannot create a queue file: %s\n", err->message);
        return EX_CANTCREAT;
    }
    Writer w = {.msg = msg, .buf = g_string_sized_new(WRITE_CHUNK + 1024)};
    int rc = read_message(o, &w, sender, full_name, rcpts, seen);
    g_string_free(w.buf, TRUE);
    g_clear_error(&w.error);
    if (rc != EX_OK) {
        kr_msg_discard(msg);
        return rc;
    }
    kr_msg_set_sender(msg, sender);
    for (guint i = 0; i < rcpts->len; i++) {
        KrRcpt *r = kr_msg_add_rcpt(msg, rcpts->pdata[i]);
        r->notify = o->notify;
    }
    kr_msg_set_attr(msg, "protocol", "sendmail");
    g_autofree char *uid = g_strdup_printf("%u", (unsigned)getuid());
    kr_msg_set_attr(msg, "uid", uid);
    if (login)
        kr_msg_set_attr(msg, "login", login);
    if (o->ret)
        kr_msg_set_attr(msg, "ret", o->ret);
    if (o->envid)
        kr_msg_set_attr(msg, "envid", o->envid);
    if (o->body)
        kr_msg_set_attr(msg, "body", o->body);
    if (!kr_msg_commit(msg, KR_QUEUE_MAILDROP, &err)) {
        fprintf(stderr, "sendmail: cannot queue the message: %s\n", err->message);
        kr_msg_discard(msg);
        return g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA) ? EX_DATAERR : EX_TEMPFAIL;
    }
    if (o->verbose)
        fprintf(stderr, "sendmail: queued as %s (from=<%s>, nrcpt=%u)\n", kr_msg_queue_id(msg),
                sender, rcpts->len);
    /* Tell kurird; if it is not running it finds the file at start. */
    g_autoptr(GError) cerr = NULL;
    if (!kr_control_request("queue pickup", NULL, &cerr) && o->verbose)
        fprintf(stderr, "sendmail: note: %s; the message waits in maildrop/\n", cerr->message);
    return EX_OK;
}

static int
sendmail_run(KrModule *mod, int argc, char **argv)
{
    Opts o = {.args = g_ptr_array_new_with_free_func(g_free)};
    int rc = parse_options(&o, argc, argv);
    if (rc < 0)
        rc = o.list_queue ? queue_cmd_list() : queue_it(&o);
    g_free(o.sender);
    g_free(o.full_name);
    g_free(o.envid);
    g_ptr_array_unref(o.args);
    return rc;
}

const KrCommand sendmail_command = {
    .struct_size = sizeof(KrCommand),
    .name = "sendmail",
    .usage = "sendmail [-t] [-i] [-f sender] [-F name] [--] [recipient ...]   queue a message "
             "from stdin",
    .run = sendmail_run,
};
