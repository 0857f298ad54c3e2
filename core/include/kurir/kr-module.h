/* SPDX-License-Identifier: MIT */
/*
 * kr-module.h - the module ABI: the one descriptor a module exports.
 *
 * A module is a shared object BUILD/modules/NAME.so, built with hidden
 * visibility, that exports exactly one symbol, kr_module_NAME (dashes in
 * NAME become underscores), declared with KR_MODULE(). The loader
 * dlopen()s it with RTLD_NOW | RTLD_LOCAL, checks abi_major (must equal
 * the core's), abi_minor (must not be newer than the core's), struct_size
 * and name (must equal the file name), then calls init() with the
 * module's validated settings. init() registers what the module provides
 * (kr-registry.h); registration calls only work during init(). fini() runs
 * in reverse load order at shutdown. Modules are never unloaded.
 *
 *   KR_MODULE(name, version, settings, conf_size, init, fini)
 *   kr_module_name(mod)       the module's name
 *   kr_module_conf(mod)       the module's settings struct (see kr-settings.h)
 *   kr_module_data_dir(mod)   DATA_DIR of this process
 */
#ifndef KURIR_KR_MODULE_H
#define KURIR_KR_MODULE_H

#include <glib.h>
#include <stdint.h>
#include "kr-settings.h"

G_BEGIN_DECLS

#define KR_ABI_MAJOR 1
#define KR_ABI_MINOR 0

#define KR_PUBLIC __attribute__((visibility("default")))

typedef struct KrModule KrModule;

/* The descriptor. New fields are only ever appended (minor bump), using
 * the spare slots; struct_size tells the core how much of it a module
 * was built with. */
typedef struct KrModuleDesc {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size;
    const char *name;    /* must equal the file name: NAME.so */
    const char *version; /* the module's own version string */
    const char *summary; /* one line for `kurir modules` */
    /* Settings of the module's own config section (a group named NAME at
     * the top level of kurir.conf), parsed into a struct of conf_size
     * bytes that init() gets through kr_module_conf(). May be NULL. */
    const KrSetting *settings;
    size_t conf_size;
    /* Register what the module provides. FALSE with *error set refuses
     * start-up. */
    gboolean (*init)(KrModule *mod, GError **error);
    /* Undo init at shutdown; may be NULL. */
    void (*fini)(KrModule *mod);
    void *spare[8];
} KrModuleDesc;

#define KR_MODULE_SYMBOL_PREFIX "kr_module_"

#define KR_MODULE(sym, name_, version_, summary_, settings_, conf_size_, init_, fini_)            \
    KR_PUBLIC const KrModuleDesc kr_module_##sym = {                                               \
        .abi_major = KR_ABI_MAJOR,                                                                 \
        .abi_minor = KR_ABI_MINOR,                                                                 \
        .struct_size = sizeof(KrModuleDesc),                                                       \
        .name = name_,                                                                             \
        .version = version_,                                                                       \
        .summary = summary_,                                                                       \
        .settings = settings_,                                                                     \
        .conf_size = conf_size_,                                                                   \
        .init = init_,                                                                             \
        .fini = fini_,                                                                             \
    }

KR_PUBLIC const char *kr_module_name(const KrModule *mod);
KR_PUBLIC gpointer kr_module_conf(const KrModule *mod);
KR_PUBLIC const char *kr_module_data_dir(const KrModule *mod);

G_END_DECLS
#endif
