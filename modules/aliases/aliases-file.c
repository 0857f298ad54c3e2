/* SPDX-License-Identifier: MIT */
/*
 * aliases-file.c - parse aliases files and target lists (:include:,
 * .forward). The format is described in aliases-file.h.
 *
 *   aliases_table_load, aliases_table_parse, aliases_table_ref,
 *   aliases_table_unref, aliases_table_lookup, aliases_table_size,
 *   aliases_table_nth, aliases_table_path, aliases_table_exists,
 *   aliases_table_changed, aliases_table_owner, aliases_parse_list,
 *   aliases_target_free
 *
 * Quoted strings never span lines, so every error has the line of the
 * element that caused it, also inside long continued lists.
 */
#include "aliases-file.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <kurir/kr-file.h>
#include <kurir/kr-watch.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct AliasTable {
    gint ref;
    char *path;
    GHashTable *by_name; /* name -> AliasEntry */
    GPtrArray *order;    /* AliasEntry *, file order (owns them) */
    gboolean exists;
    struct stat st;
};

void
aliases_target_free(gpointer p)
{
    AliasTarget *t = p;
    if (!t)
        return;
    g_free(t->value);
    g_free(t);
}

static void
entry_free(gpointer p)
{
    AliasEntry *e = p;
    g_free(e->name);
    g_ptr_array_unref(e->targets);
    g_free(e);
}

static AliasTable *
table_new(const char *name)
{
    AliasTable *t = g_new0(AliasTable, 1);
    t->ref = 1;
    t->path = g_strdup(name);
    t->by_name = g_hash_table_new(g_str_hash, g_str_equal);
    t->order = g_ptr_array_new_with_free_func(entry_free);
    return t;
}

AliasTable *
aliases_table_ref(AliasTable *t)
{
    if (t)
        g_atomic_int_inc(&t->ref);
    return t;
}

void
aliases_table_unref(AliasTable *t)
{
    if (!t || !g_atomic_int_dec_and_test(&t->ref))
        return;
    g_hash_table_destroy(t->by_name);
    g_ptr_array_unref(t->order);
    g_free(t->path);
    g_free(t);
}

const AliasEntry *
aliases_table_lookup(const AliasTable *t, const char *key)
{
    if (!t || !key)
        return NULL;
    g_autofree char *k = g_ascii_strdown(key, -1);
    return g_hash_table_lookup(t->by_name, k);
}

guint
aliases_table_size(const AliasTable *t)
{
    return t ? t->order->len : 0;
}

const AliasEntry *
aliases_table_nth(const AliasTable *t, guint i)
{
    return t && i < t->order->len ? t->order->pdata[i] : NULL;
}

const char *
aliases_table_path(const AliasTable *t)
{
    return t ? t->path : NULL;
}

gboolean
aliases_table_exists(const AliasTable *t)
{
    return t && t->exists;
}

uid_t
aliases_table_owner(const AliasTable *t)
{
    return t && t->exists ? t->st.st_uid : 0;
}

gboolean
aliases_table_changed(const AliasTable *t)
{
    struct stat st;
    if (!t || !t->path)
        return FALSE;
    if (stat(t->path, &st) < 0)
        return t->exists;
    if (!t->exists)
        return TRUE;
    return !kr_watch_same_file(&st, &t->st);
}

/* --- errors ------------------------------------------------------------------- */

static void add_error(GPtrArray *errors, const char *name, guint line, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static void
add_error(GPtrArray *errors, const char *name, guint line, const char *fmt, ...)
{
    if (errors->len > ALIASES_MAX_ERRORS)
        return;
    if (errors->len == ALIASES_MAX_ERRORS) {
        g_ptr_array_add(errors, g_strdup_printf("%s: too many errors; giving up", name));
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_ptr_array_add(errors, g_strdup_printf("%s:%u: %s", name, line, why));
}

/* --- elements ------------------------------------------------------------------- */

/* The closing quote of a string starting at s[0] == '"', or NULL. */
static const char *
quote_end(const char *s)
{
    for (const char *p = s + 1; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        else if (*p == '"')
            return p;
    }
    return NULL;
}

static char *
unquote(const char *s, const char *end)
{
    GString *out = g_string_new(NULL);
    for (const char *p = s + 1; p < end; p++) {
        if (*p == '\\' && p + 1 < end)
            p++;
        g_string_append_c(out, *p);
    }
    return g_string_free(out, FALSE);
}

/* A plain address token: printable, no blanks, none of <>(),;:\" except
 * a leading quoted local part. */
static gboolean
address_ok(const char *a, const char **why)
{
    const char *p = a;
    if (!*a) {
        *why = "empty address";
        return FALSE;
    }
    if (*p == '"') {
        const char *qe = quote_end(p);
        if (!qe) {
            *why = "unterminated quoted local part";
            return FALSE;
        }
        p = qe + 1;
        if (*p && *p != '@') {
            *why = "text after a quoted local part";
            return FALSE;
        }
    }
    for (; *p; p++) {
        if (*p == ' ' || *p == '\t') {
            *why = "blank inside an address (a missing comma?)";
            return FALSE;
        }
        if (strchr("<>(),;:\\\"[]", *p)) {
            *why = "character not allowed in an address";
            return FALSE;
        }
    }
    const char *at = strrchr(a, '@');
    if (at && (!at[1] || at == a)) {
        *why = "empty local part or domain";
        return FALSE;
    }
    if (strlen(a) > 320) {
        *why = "address too long";
        return FALSE;
    }
    return TRUE;
}

/* Classify and check one target text (already unquoted if it was quoted
 * as a whole). Returns NULL with *why set on error. */
static AliasTarget *
make_target(const char *s, gboolean quoted, const char **why)
{
    AliasTarget *t = g_new0(AliasTarget, 1);
    g_autofree char *addr = NULL;
    if (s[0] == '|') {
        g_autofree char *cmd = g_strstrip(g_strdup(s + 1));
        if (!*cmd) {
            *why = "'|' without a command";
            goto bad;
        }
        t->kind = ALIAS_T_PIPE;
        t->value = g_steal_pointer(&cmd);
        return t;
    }
    if (g_ascii_strncasecmp(s, ":include:", 9) == 0) {
        g_autofree char *path = g_strstrip(g_strdup(s + 9));
        if (!g_path_is_absolute(path)) {
            *why = ":include: needs an absolute path";
            goto bad;
        }
        t->kind = ALIAS_T_INCLUDE;
        t->value = g_steal_pointer(&path);
        return t;
    }
    if (s[0] == '/') {
        if (!quoted && strpbrk(s, " \t")) {
            *why = "blank in a file name (quote it)";
            goto bad;
        }
        if (s[strlen(s) - 1] == '/') {
            *why = "file target names a directory";
            goto bad;
        }
        t->kind = ALIAS_T_FILE;
        t->value = g_strdup(s);
        return t;
    }
    if (s[0] == '\\') {
        if (!address_ok(s + 1, why))
            goto bad;
        t->kind = ALIAS_T_DIRECT;
        t->value = g_strdup(s + 1);
        return t;
    }
    gsize n = strlen(s);
    if (s[0] == '<' && n >= 2 && s[n - 1] == '>')
        addr = g_strndup(s + 1, n - 2);
    else if (quoted)
        addr = g_strdup_printf("\"%s\"", s); /* a quoted local part */
    else
        addr = g_strdup(s);
    if (!quoted && !address_ok(addr, why))
        goto bad;
    t->kind = ALIAS_T_ADDRESS;
    t->value = g_steal_pointer(&addr);
    return t;
bad:
    aliases_target_free(t);
    return NULL;
}

/* Split text (one physical line's part) at commas outside quotes and
 * append the targets. FALSE (errors appended) on a bad element. */
static gboolean
parse_elements(const char *name, guint line, const char *text, GPtrArray *targets,
               GPtrArray *errors)
{
    gboolean ok = TRUE;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *start = p;
        gboolean in_quote = FALSE;
        for (; *p && (in_quote || *p != ','); p++) {
            if (*p == '\\' && in_quote && p[1])
                p++;
            else if (*p == '"')
                in_quote = !in_quote;
        }
        if (in_quote) {
            add_error(errors, name, line, "unterminated quoted string");
            return FALSE;
        }
        g_autofree char *elem = g_strstrip(g_strndup(start, p - start));
        if (!*elem)
            continue;
        const char *why = NULL;
        AliasTarget *t = NULL;
        gsize n = strlen(elem);
        if (elem[0] == '"' && quote_end(elem) == elem + n - 1) {
            g_autofree char *inner = unquote(elem, elem + n - 1);
            if (!*inner)
                why = "empty quoted target";
            else
                t = make_target(inner, TRUE, &why);
        } else {
            t = make_target(elem, FALSE, &why);
        }
        if (!t) {
            g_autofree char *shown = g_strndup(elem, 60);
            add_error(errors, name, line, "\"%s\": %s", shown, why);
            ok = FALSE;
            continue;
        }
        if (targets->len >= ALIASES_MAX_TARGETS) {
            aliases_target_free(t);
            add_error(errors, name, line, "more than %d targets", ALIASES_MAX_TARGETS);
            return FALSE;
        }
        t->line = line;
        g_ptr_array_add(targets, t);
    }
    return ok;
}

/* --- lines ------------------------------------------------------------------------ */

typedef struct {
    const char *p, *end;
    guint lineno;
} Lines;

/* The next physical line (NUL-terminated copy), or NULL at the end. A
 * line that cannot be used is reported and returned as "" (ignored). */
static char *
next_line(Lines *l, const char *name, GPtrArray *errors)
{
    if (l->p >= l->end)
        return NULL;
    l->lineno++;
    const char *nl = memchr(l->p, '\n', l->end - l->p);
    const char *le = nl ? nl : l->end;
    gsize n = le - l->p;
    const char *start = l->p;
    l->p = nl ? nl + 1 : l->end;
    if (n > 0 && start[n - 1] == '\r')
        n--;
    if (n > ALIASES_MAX_LINE) {
        add_error(errors, name, l->lineno, "line longer than %d bytes", ALIASES_MAX_LINE);
        return g_strdup("");
    }
    if (memchr(start, 0, n)) {
        add_error(errors, name, l->lineno, "contains a NUL byte");
        return g_strdup("");
    }
    if (!g_utf8_validate(start, (gssize)n, NULL)) {
        add_error(errors, name, l->lineno, "not valid UTF-8");
        return g_strdup("");
    }
    for (gsize i = 0; i < n; i++) {
        unsigned char c = (unsigned char)start[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            add_error(errors, name, l->lineno, "contains a control character");
            return g_strdup("");
        }
    }
    return g_strndup(start, n);
}

static gboolean
blank_or_comment(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return !*s || *s == '#';
}

/* "name: rest" -> name (lowercased, unquoted) and *rest_r, or NULL. */
static char *
parse_name(const char *line, const char **rest_r, const char **why)
{
    const char *p = line, *colon;
    g_autofree char *name = NULL;
    if (*p == '"') {
        const char *qe = quote_end(p);
        if (!qe) {
            *why = "unterminated quoted name";
            return NULL;
        }
        name = unquote(p, qe);
        p = qe + 1;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ':') {
            *why = "no ':' after the quoted name";
            return NULL;
        }
        colon = p;
    } else {
        colon = strchr(p, ':');
        if (!colon) {
            *why = "no ':' after the alias name (name: target, ...)";
            return NULL;
        }
        name = g_strndup(p, colon - p);
        g_strchomp(name);
        if (strpbrk(name, " \t\",")) {
            *why = "blank, quote or comma in the alias name (missing ':'?)";
            return NULL;
        }
    }
    if (!*name) {
        *why = "empty alias name";
        return NULL;
    }
    const char *at = strrchr(name, '@');
    if (at && (at == name || !at[1])) {
        *why = "alias name with an empty local part or domain";
        return NULL;
    }
    if (strlen(name) > 320) {
        *why = "alias name too long";
        return NULL;
    }
    *rest_r = colon + 1;
    return g_ascii_strdown(name, -1);
}

AliasTable *
aliases_table_parse(const char *name, const char *text, gsize len, GPtrArray *errors)
{
    AliasTable *t = table_new(name);
    t->exists = TRUE;
    guint before = errors->len;
    Lines l = {.p = text, .end = text + len};
    AliasEntry *cur = NULL;
    char *line;
    while ((line = next_line(&l, name, errors))) {
        g_autofree char *owned = line;
        if (errors->len > before + ALIASES_MAX_ERRORS)
            break;
        if (blank_or_comment(line))
            continue;
        if (line[0] == ' ' || line[0] == '\t') {
            if (!cur) {
                add_error(errors, name, l.lineno, "continuation line without an alias above it");
                continue;
            }
            parse_elements(name, l.lineno, line, cur->targets, errors);
            continue;
        }
        if (cur && cur->targets->len == 0)
            add_error(errors, name, cur->line, "alias \"%s\" has no targets", cur->name);
        cur = NULL;
        const char *rest = NULL, *why = NULL;
        g_autofree char *aname = parse_name(line, &rest, &why);
        if (!aname) {
            add_error(errors, name, l.lineno, "%s", why);
            continue;
        }
        AliasEntry *old = g_hash_table_lookup(t->by_name, aname);
        if (old) {
            add_error(errors, name, l.lineno, "alias \"%s\" already defined on line %u", aname,
                      old->line);
            continue;
        }
        if (t->order->len >= ALIASES_MAX_ENTRIES) {
            add_error(errors, name, l.lineno, "more than %d aliases", ALIASES_MAX_ENTRIES);
            break;
        }
        cur = g_new0(AliasEntry, 1);
        cur->name = g_steal_pointer(&aname);
        cur->line = l.lineno;
        cur->targets = g_ptr_array_new_with_free_func(aliases_target_free);
        g_ptr_array_add(t->order, cur);
        g_hash_table_insert(t->by_name, cur->name, cur);
        parse_elements(name, l.lineno, rest, cur->targets, errors);
    }
    if (cur && cur->targets->len == 0)
        add_error(errors, name, cur->line, "alias \"%s\" has no targets", cur->name);
    if (errors->len != before) {
        aliases_table_unref(t);
        return NULL;
    }
    return t;
}

gboolean
aliases_parse_list(const char *name, const char *text, gsize len, GPtrArray *targets,
                   GPtrArray *errors)
{
    guint before = errors->len;
    Lines l = {.p = text, .end = text + len};
    char *line;
    while ((line = next_line(&l, name, errors))) {
        g_autofree char *owned = line;
        if (errors->len > before + ALIASES_MAX_ERRORS)
            break;
        if (blank_or_comment(line))
            continue;
        if (!parse_elements(name, l.lineno, line, targets, errors) &&
            targets->len >= ALIASES_MAX_TARGETS)
            break;
    }
    return errors->len == before;
}

AliasTable *
aliases_table_load(const char *path, GError **error)
{
    struct stat st;
    gsize size;
    GError *err = NULL;
    g_autofree char *buf = kr_file_read_bounded(path, ALIASES_MAX_FILE, &st, &size, &err);
    if (!buf) {
        if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
            g_error_free(err);
            return table_new(path); /* exists = FALSE */
        }
        g_propagate_error(error, err);
        return NULL;
    }
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    AliasTable *t = aliases_table_parse(path, buf, size, errors);
    if (!t) {
        g_ptr_array_add(errors, NULL);
        g_autofree char *all = g_strjoinv("\n", (char **)errors->pdata);
        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, all);
        return NULL;
    }
    t->st = st;
    return t;
}
