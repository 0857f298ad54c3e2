/* SPDX-License-Identifier: MIT */
/*
 * kr-settings-private.h - the core's side of settings tables: parsing
 * libconfig groups against them, and "FILE:LINE: ..." diagnostics.
 */
#ifndef KR_SETTINGS_PRIVATE_H
#define KR_SETTINGS_PRIVATE_H

#include "kr-internal.h"

KR_INTERNAL char *kr_cfg_where(const config_setting_t *s);
KR_INTERNAL void kr_diag(GPtrArray *errors, const config_setting_t *where, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
KR_INTERNAL void kr_settings_defaults(const KrSetting *table, gpointer conf);
KR_INTERNAL gboolean kr_settings_parse(const KrSetting *table, config_setting_t *group,
                                       gpointer conf, const char *const *skip, const char *what,
                                       GPtrArray *errors);
KR_INTERNAL char *kr_settings_suggest(const KrSetting *table, const char *const *extra,
                                      const char *name);

#endif
