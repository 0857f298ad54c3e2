/* SPDX-License-Identifier: MIT */
/*
 * kr-settings.h - typed settings tables, nginx-directive style.
 *
 * A module (or a stage type, listener type) declares its settings as a
 * table of KrSetting rows ending in KR_SETTING_END: name, type, where the
 * value goes in the owner's struct (offsetof), a default given as config
 * text, bounds and a help line. The core parses the config group against
 * the table, fills the struct, and reports every unknown key, wrong type
 * and out-of-range value as "FILE:LINE: ..." — a typo is an error, never
 * silently ignored. Strings are copied out of libconfig and owned by the
 * struct; kr_settings_clear() frees them.
 *
 * Value types and their C storage:
 *   KR_SET_BOOL      gboolean      true/false
 *   KR_SET_INT       gint64        integer within [min, max]
 *   KR_SET_SIZE      gint64        integer bytes, or "10M"/"512K"/"1G"
 *   KR_SET_DURATION  gint64        integer seconds, or "30s"/"5m"/"4h"/"5d"
 *   KR_SET_STRING    char *        any string (may be NULL if no default)
 *   KR_SET_PATH      char *        a path; relative paths are taken
 *                                  relative to DATA_DIR
 *   KR_SET_STRLIST   char **       list of strings (NULL-terminated);
 *                                  a single string is a one-item list
 *   KR_SET_ENUM      int           one of choices[], stored as its index
 */
#ifndef KURIR_KR_SETTINGS_H
#define KURIR_KR_SETTINGS_H

#include <glib.h>
#include <stddef.h>

G_BEGIN_DECLS

typedef enum {
    KR_SET_END = 0,
    KR_SET_BOOL,
    KR_SET_INT,
    KR_SET_SIZE,
    KR_SET_DURATION,
    KR_SET_STRING,
    KR_SET_PATH,
    KR_SET_STRLIST,
    KR_SET_ENUM,
} KrSettingType;

enum {
    KR_SET_REQUIRED = 1 << 0, /* no default: must be given */
};

typedef struct KrSetting {
    const char *name;
    KrSettingType type;
    size_t offset;
    const char *def; /* default, as config text ("10M", "true", "a,b"); NULL = zero */
    gint64 min, max; /* bounds for INT/SIZE/DURATION (min == max == 0: unbounded >= 0) */
    const char *const *choices; /* KR_SET_ENUM: NULL-terminated */
    const char *help;
    unsigned flags;
} KrSetting;

#define KR_SETTING(name_, type_, st, field, def_, min_, max_, help_)                              \
    {                                                                                              \
        .name = name_, .type = type_, .offset = offsetof(st, field), .def = def_, .min = min_,     \
        .max = max_, .help = help_                                                                 \
    }
#define KR_SETTING_ENUM(name_, st, field, def_, choices_, help_)                                   \
    {                                                                                              \
        .name = name_, .type = KR_SET_ENUM, .offset = offsetof(st, field), .def = def_,            \
        .choices = choices_, .help = help_                                                         \
    }
#define KR_SETTING_END                                                                             \
    {                                                                                              \
        .name = NULL, .type = KR_SET_END                                                           \
    }

/* Free the strings a parsed struct owns (does not free conf itself). */
__attribute__((visibility("default"))) void kr_settings_clear(const KrSetting *table,
                                                              gpointer conf);

/* Parse a duration ("90", "30s", "5m", "4h", "5d") or size ("4096",
 * "512K", "10M", "1G") from text. FALSE if malformed or overflowing. */
__attribute__((visibility("default"))) gboolean kr_parse_duration(const char *text, gint64 *out);
__attribute__((visibility("default"))) gboolean kr_parse_size(const char *text, gint64 *out);

G_END_DECLS
#endif
