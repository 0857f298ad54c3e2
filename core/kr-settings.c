/* SPDX-License-Identifier: MIT */
/*
 * kr-settings.c - parse a libconfig group against a KrSetting table.
 *
 *   kr_settings_parse(table, group, conf, skip, what, errors)
 *       apply defaults, then every key of group; unknown keys (not in the
 *       table nor in skip), wrong types, bad values and out-of-range
 *       numbers each append one "FILE:LINE: ..." line to errors.
 *   kr_settings_defaults(table, conf)   defaults only (no config group)
 *   kr_settings_clear(table, conf)      free owned strings
 *   kr_parse_size, kr_parse_duration    "10M", "4h" and friends
 *   kr_cfg_where(setting)               "FILE:LINE" of a libconfig node
 *
 * Defaults in the tables are trusted (they are code); a default that
 * does not parse is a programming error and reported as such.
 */
#include "kr-settings-private.h"
#include <errno.h>
#include <stdlib.h>

static const char *embedded_name = "(embedded kurir.conf)";

char *
kr_cfg_where(const config_setting_t *s)
{
    const char *file = s ? config_setting_source_file(s) : NULL;
    int line = s ? config_setting_source_line(s) : 0;
    return g_strdup_printf("%s:%d", file ? file : embedded_name, line);
}

void
kr_diag(GPtrArray *errors, const config_setting_t *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autofree char *loc = kr_cfg_where(where);
    g_ptr_array_add(errors, g_strdup_printf("%s: %s", loc, msg));
}

static gboolean
parse_scaled(const char *text, gint64 *out, const char *units, const gint64 *mult)
{
    if (!text)
        return FALSE;
    while (g_ascii_isspace(*text))
        text++;
    if (!g_ascii_isdigit(*text))
        return FALSE;
    errno = 0;
    char *end;
    guint64 v = g_ascii_strtoull(text, &end, 10);
    if (errno)
        return FALSE;
    gint64 m = 1;
    if (*end) {
        const char *u = strchr(units, g_ascii_tolower(*end));
        if (!u)
            return FALSE;
        m = mult[u - units];
        end++;
        if (*end && !(g_ascii_tolower(*end) == 'b' && !end[1]))
            return FALSE;
    }
    if (v > (guint64)(G_MAXINT64 / m))
        return FALSE;
    *out = (gint64)v * m;
    return TRUE;
}

gboolean
kr_parse_size(const char *text, gint64 *out)
{
    static const gint64 mult[] = {1024, 1024 * 1024, 1024 * 1024 * 1024, 1024LL << 30};
    return parse_scaled(text, out, "kmgt", mult);
}

gboolean
kr_parse_duration(const char *text, gint64 *out)
{
    static const gint64 mult[] = {1, 60, 3600, 86400, 7 * 86400};
    return parse_scaled(text, out, "smhdw", mult);
}

static const char *const type_names[] = {
    [KR_SET_BOOL] = "a boolean (true/false)",
    [KR_SET_INT] = "an integer",
    [KR_SET_SIZE] = "a size (integer bytes or \"10M\")",
    [KR_SET_DURATION] = "a duration (integer seconds or \"5m\", \"4h\", \"5d\")",
    [KR_SET_STRING] = "a string",
    [KR_SET_PATH] = "a path string",
    [KR_SET_STRLIST] = "a list of strings",
    [KR_SET_ENUM] = "a string",
};

static char *
resolve_path(const char *p)
{
    if (!p || !*p || g_path_is_absolute(p))
        return g_strdup(p);
    return g_build_filename(kr_data_dir(), p, NULL);
}

static void
free_field(const KrSetting *row, gpointer conf)
{
    char *base = conf;
    switch (row->type) {
    case KR_SET_STRING:
    case KR_SET_PATH: {
        char **p = (char **)(base + row->offset);
        g_clear_pointer(p, g_free);
        break;
    }
    case KR_SET_STRLIST: {
        char ***p = (char ***)(base + row->offset);
        g_clear_pointer(p, g_strfreev);
        break;
    }
    default:
        break;
    }
}

void
kr_settings_clear(const KrSetting *table, gpointer conf)
{
    for (const KrSetting *row = table; table && row->name; row++)
        free_field(row, conf);
}

static gboolean
check_bounds(const KrSetting *row, gint64 v)
{
    if (row->min == 0 && row->max == 0)
        return v >= 0;
    return v >= row->min && v <= row->max;
}

/* Store a value given as text (a default, or a string in the config). */
static gboolean
set_from_text(const KrSetting *row, gpointer conf, const char *text, char **why_r)
{
    char *base = conf;
    gint64 v = 0;
    switch (row->type) {
    case KR_SET_BOOL:
        if (!text || (strcmp(text, "true") && strcmp(text, "false")))
            goto bad;
        *(gboolean *)(base + row->offset) = strcmp(text, "true") == 0;
        return TRUE;
    case KR_SET_INT:
    case KR_SET_SIZE:
    case KR_SET_DURATION:
        if (!text)
            v = 0;
        else if (row->type == KR_SET_SIZE ? !kr_parse_size(text, &v)
                 : row->type == KR_SET_DURATION ? !kr_parse_duration(text, &v)
                                                 : !kr_parse_size(text, &v))
            goto bad;
        if (row->type == KR_SET_INT && text && !g_ascii_isdigit(text[strlen(text) - 1]))
            goto bad;
        if (text && !check_bounds(row, v)) {
            *why_r = g_strdup_printf("value %" G_GINT64_FORMAT " of '%s' is out of range [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]",
                                     v, row->name, row->min, row->max ? row->max : G_MAXINT64);
            return FALSE;
        }
        *(gint64 *)(base + row->offset) = v;
        return TRUE;
    case KR_SET_STRING:
        free_field(row, conf);
        *(char **)(base + row->offset) = g_strdup(text);
        return TRUE;
    case KR_SET_PATH:
        free_field(row, conf);
        *(char **)(base + row->offset) = resolve_path(text);
        return TRUE;
    case KR_SET_STRLIST: {
        free_field(row, conf);
        GPtrArray *a = g_ptr_array_new();
        if (text) {
            g_auto(GStrv) parts = g_strsplit(text, ",", -1);
            for (char **p = parts; *p; p++) {
                char *s = g_strstrip(g_strdup(*p));
                if (*s)
                    g_ptr_array_add(a, s);
                else
                    g_free(s);
            }
        }
        g_ptr_array_add(a, NULL);
        *(char ***)(base + row->offset) = (char **)g_ptr_array_free(a, FALSE);
        return TRUE;
    }
    case KR_SET_ENUM:
        for (int i = 0; text && row->choices && row->choices[i]; i++)
            if (strcmp(row->choices[i], text) == 0) {
                *(int *)(base + row->offset) = i;
                return TRUE;
            }
        {
            g_autofree char *all = g_strjoinv("\", \"", (char **)row->choices);
            *why_r = g_strdup_printf("'%s' must be one of \"%s\", not \"%s\"", row->name, all,
                                     text ? text : "");
        }
        return FALSE;
    case KR_SET_END:
        break;
    }
bad:
    *why_r = g_strdup_printf("'%s' must be %s, not \"%s\"", row->name, type_names[row->type],
                             text ? text : "");
    return FALSE;
}

void
kr_settings_defaults(const KrSetting *table, gpointer conf)
{
    for (const KrSetting *row = table; table && row->name; row++) {
        g_autofree char *why = NULL;
        if (!set_from_text(row, conf, row->def, &why))
            g_critical("bad default for setting %s: %s", row->name, why);
    }
}

/* Levenshtein distance, for "did you mean" hints on unknown keys. */
static guint
edit_distance(const char *a, const char *b)
{
    gsize la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    guint d[65][65];
    for (gsize i = 0; i <= la; i++)
        d[i][0] = i;
    for (gsize j = 0; j <= lb; j++)
        d[0][j] = j;
    for (gsize i = 1; i <= la; i++)
        for (gsize j = 1; j <= lb; j++) {
            guint c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            c = MIN(c, d[i - 1][j] + 1);
            d[i][j] = MIN(c, d[i][j - 1] + 1);
        }
    return d[la][lb];
}

char *
kr_settings_suggest(const KrSetting *table, const char *const *extra, const char *name)
{
    const char *best = NULL;
    guint bestd = 3;
    for (const KrSetting *row = table; table && row->name; row++) {
        guint d = edit_distance(row->name, name);
        if (d < bestd)
            bestd = d, best = row->name;
    }
    for (const char *const *e = extra; e && *e; e++) {
        guint d = edit_distance(*e, name);
        if (d < bestd)
            bestd = d, best = *e;
    }
    return best ? g_strdup_printf(" (did you mean '%s'?)", best) : g_strdup("");
}

static gboolean
in_list(const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (strcmp(*list, name) == 0)
            return TRUE;
    return FALSE;
}

static void
parse_one(const KrSetting *row, config_setting_t *s, gpointer conf, GPtrArray *errors)
{
    g_autofree char *why = NULL;
    char *base = conf;
    int t = config_setting_type(s);
    switch (row->type) {
    case KR_SET_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            goto wrong;
        *(gboolean *)(base + row->offset) = config_setting_get_bool(s);
        return;
    case KR_SET_INT:
    case KR_SET_SIZE:
    case KR_SET_DURATION:
        if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
            gint64 v = config_setting_get_int64(s);
            if (!check_bounds(row, v)) {
                kr_diag(errors, s,
                        "value %" G_GINT64_FORMAT " of '%s' is out of range [%" G_GINT64_FORMAT
                        ", %" G_GINT64_FORMAT "]",
                        v, row->name, row->min, row->max ? row->max : G_MAXINT64);
                return;
            }
            *(gint64 *)(base + row->offset) = v;
            return;
        }
        if (t == CONFIG_TYPE_STRING && row->type != KR_SET_INT) {
            if (!set_from_text(row, conf, config_setting_get_string(s), &why))
                kr_diag(errors, s, "%s", why);
            return;
        }
        goto wrong;
    case KR_SET_STRING:
    case KR_SET_PATH:
    case KR_SET_ENUM: {
        if (t != CONFIG_TYPE_STRING)
            goto wrong;
        const char *v = config_setting_get_string(s);
        if (strlen(v) > 4096) {
            kr_diag(errors, s, "'%s' is too long (over 4096 bytes)", row->name);
            return;
        }
        if (!set_from_text(row, conf, v, &why))
            kr_diag(errors, s, "%s", why);
        return;
    }
    case KR_SET_STRLIST: {
        free_field(row, conf);
        GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
        if (t == CONFIG_TYPE_STRING) {
            g_ptr_array_add(a, g_strdup(config_setting_get_string(s)));
        } else if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) {
            int n = config_setting_length(s);
            for (int i = 0; i < n; i++) {
                config_setting_t *e = config_setting_get_elem(s, i);
                if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                    kr_diag(errors, e, "'%s' must be a list of strings", row->name);
                    g_ptr_array_unref(a);
                    return;
                }
                g_ptr_array_add(a, g_strdup(config_setting_get_string(e)));
            }
        } else {
            g_ptr_array_unref(a);
            goto wrong;
        }
        g_ptr_array_set_free_func(a, NULL);
        g_ptr_array_add(a, NULL);
        *(char ***)(base + row->offset) = (char **)g_ptr_array_free(a, FALSE);
        return;
    }
    case KR_SET_END:
        return;
    }
wrong:
    kr_diag(errors, s, "'%s' must be %s", row->name, type_names[row->type]);
}

gboolean
kr_settings_parse(const KrSetting *table, config_setting_t *group, gpointer conf,
                  const char *const *skip, const char *what, GPtrArray *errors)
{
    guint before = errors->len;
    kr_settings_defaults(table, conf);
    if (!group)
        goto required;
    if (!config_setting_is_group(group)) {
        kr_diag(errors, group, "%s must be a group { ... }", what);
        return FALSE;
    }
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(group, i);
        const char *name = config_setting_name(s);
        if (in_list(skip, name))
            continue;
        const KrSetting *row = NULL;
        for (const KrSetting *r = table; table && r->name; r++)
            if (strcmp(r->name, name) == 0) {
                row = r;
                break;
            }
        if (!row) {
            g_autofree char *hint = kr_settings_suggest(table, skip, name);
            kr_diag(errors, s, "unknown setting '%s' in %s%s", name, what, hint);
            continue;
        }
        parse_one(row, s, conf, errors);
    }
required:
    for (const KrSetting *r = table; table && r->name; r++)
        if ((r->flags & KR_SET_REQUIRED) && !(group && config_setting_get_member(group, r->name)))
            kr_diag(errors, group, "%s needs the setting '%s'", what, r->name);
    return errors->len == before;
}
