/* SPDX-License-Identifier: MIT */
/*
 * kr-registry.h - what a module can provide, registered from its init().
 *
 * Every provided thing has a name, unique within its kind (a clash is a
 * start-up error naming both modules). Registration calls only succeed
 * while the module's init() runs. Modules never call each other: they
 * meet here, by name.
 *
 *   kr_register_stage(mod, type, error)          pipeline stage types
 *   kr_register_listener(mod, type, error)       protocol servers
 *   kr_register_queue_policy(mod, pol, error)    queue scheduling policies
 *   kr_register_auth(mod, backend, error)        auth backends
 *   kr_register_store(mod, store, error)         mail stores
 *   kr_register_command(mod, cmd, error)         `kurir NAME ...` commands
 *   kr_register_service(mod, svc, error)         start/stop with the daemon
 *   kr_register_control(mod, ctl, error)         control-socket commands
 *   kr_register_resolver(mod, res, error)        address resolvers (rewrite)
 *
 * Lookups (after start-up): kr_auth_backend(), kr_store(),
 * kr_queue_policy(), kr_local_address_exists(), kr_resolver().
 */
#ifndef KURIR_KR_REGISTRY_H
#define KURIR_KR_REGISTRY_H

#include <glib.h>
#include <stdint.h>
#include "kr-module.h"
#include "kr-pipeline.h"
#include "kr-conn.h"
#include "kr-msg.h"

G_BEGIN_DECLS

#define KR_REG_API __attribute__((visibility("default")))

/* --- stage types (kr-pipeline.h) ------------------------------------ */
KR_REG_API gboolean kr_register_stage(KrModule *mod, const KrStageType *type, GError **error);

/* --- listeners -------------------------------------------------------
 * The core binds and accepts; the listener type speaks the protocol.
 * Common settings of every listener entry (handled by the core): name,
 * type, address (string or list), port, tls ("none" | "starttls" |
 * "implicit"), tls_cert, tls_key, max_connections, max_per_ip. The
 * type's own settings table covers the rest of the entry. */
typedef struct KrListener KrListener;

typedef struct KrListenerType {
    uint32_t struct_size;
    const char *name;
    const char *summary;
    const KrSetting *settings;
    size_t conf_size;
    gboolean (*create)(KrListener *l, GError **error); /* may be NULL */
    /* A new connection: set handlers, greet. The connection is the
     * listener's until its closed handler runs. With TLS "implicit" the
     * handshake is done before accept is called. */
    void (*accept)(KrListener *l, KrConn *conn);
    /* Connection refused by a limit: write a reply if the protocol has
     * one (e.g. "421 4.7.0 Too many connections"); may be NULL. */
    void (*overload)(KrListener *l, KrConn *conn, const char *why);
    void (*destroy)(KrListener *l);
    void *spare[6];
} KrListenerType;

KR_REG_API gboolean kr_register_listener(KrModule *mod, const KrListenerType *type,
                                         GError **error);
KR_REG_API const char *kr_listener_name(const KrListener *l);
KR_REG_API gpointer kr_listener_conf(const KrListener *l);
KR_REG_API gpointer kr_listener_data(const KrListener *l);
KR_REG_API void kr_listener_set_data(KrListener *l, gpointer data);
/* "none", "starttls" or "implicit" */
KR_REG_API const char *kr_listener_tls_mode(const KrListener *l);
KR_REG_API SSL_CTX *kr_listener_tls_ctx(const KrListener *l);

/* --- queue policies ---------------------------------------------------
 * The queue manager's scheduling decision (see docs/queue-policies.md).
 * A policy sees only these events. Items are owned by the queue manager
 * and stay valid from enqueue until the policy returns them from pick()
 * or they are removed (remove()). */
typedef struct KrQueueItem {
    const char *queue_id;
    const char *destination; /* "transport:nexthop", e.g. "local:localhost" */
    gint64 arrival;          /* unix time the message was queued */
    unsigned attempts;       /* delivery attempts so far */
    gpointer policy_data;    /* free for the policy's use */
} KrQueueItem;

typedef enum {
    KR_RESULT_DELIVERED,
    KR_RESULT_DEFERRED,
    KR_RESULT_FAILED,
} KrDeliveryResult;

typedef struct KrQueuePolicy {
    uint32_t struct_size;
    const char *name;
    const char *summary;
    gpointer (*create)(void);
    void (*destroy)(gpointer state);
    void (*enqueue)(gpointer state, KrQueueItem *item);
    /* Next item to deliver now, or NULL; the item leaves the policy. */
    KrQueueItem *(*pick)(gpointer state);
    /* An item disappeared before being picked (deleted, held). */
    void (*remove)(gpointer state, KrQueueItem *item);
    /* Outcome of a delivery of a picked item to its destination. */
    void (*result)(gpointer state, const char *destination, KrDeliveryResult result);
    void *spare[6];
} KrQueuePolicy;

KR_REG_API gboolean kr_register_queue_policy(KrModule *mod, const KrQueuePolicy *pol,
                                             GError **error);
KR_REG_API const KrQueuePolicy *kr_queue_policy(const char *name);

/* --- auth backends ----------------------------------------------------- */
typedef enum {
    KR_AUTH_OK,
    KR_AUTH_FAIL,    /* wrong user or password: the same answer for both */
    KR_AUTH_TEMPFAIL /* backend trouble */
} KrAuthResult;

typedef struct KrAuthBackend {
    uint32_t struct_size;
    const char *name;
    gpointer self;
    /* Blocking and thread-safe: runs in a worker thread. On KR_AUTH_OK
     * sets *canon_r to the canonical user address (g_free'd by caller). */
    KrAuthResult (*authenticate)(gpointer self, const char *user, const char *password,
                                 char **canon_r);
    /* Main loop, fast: is address (canonical "local@domain") a user? */
    gboolean (*user_exists)(gpointer self, const char *address);
    void *spare[6];
} KrAuthBackend;

KR_REG_API gboolean kr_register_auth(KrModule *mod, const KrAuthBackend *backend, GError **error);
/* By name, or the first registered with name NULL. */
KR_REG_API const KrAuthBackend *kr_auth_backend(const char *name);
typedef void (*KrAuthDoneFunc)(KrAuthResult result, const char *canon_user, gpointer ud);
/* Check user/password with the default backend in a worker thread; done
 * runs on the main loop. A bare user name gets the default domain. */
KR_REG_API void kr_auth_check_async(const char *user, const char *password, KrAuthDoneFunc done,
                                    gpointer ud);

/* Address verifiers: anything that can say "this local address exists"
 * (auth backends always count; aliases register one). */
typedef struct KrAddressVerifier {
    uint32_t struct_size;
    const char *name;
    gpointer self;
    gboolean (*exists)(gpointer self, const char *address);
    void *spare[4];
} KrAddressVerifier;
KR_REG_API gboolean kr_register_address_verifier(KrModule *mod, const KrAddressVerifier *v,
                                                 GError **error);
/* TRUE if any auth backend or verifier knows the canonical address. */
KR_REG_API gboolean kr_local_address_exists(const char *address);

/* --- mail stores ------------------------------------------------------- */
typedef enum {
    KR_STORE_OK,
    KR_STORE_TEMPFAIL, /* try later (disk full, lock busy) */
    KR_STORE_PERMFAIL, /* never (no such mailbox) */
} KrStoreResult;

typedef struct KrStore {
    uint32_t struct_size;
    const char *name;
    gpointer self;
    /* Blocking (worker thread): deliver msg's content, preceded by the
     * header lines in prefix, into user's folder (NULL = INBOX). Durable
     * on KR_STORE_OK. */
    KrStoreResult (*deliver)(gpointer self, const char *user, const char *folder, KrMsg *msg,
                             const char *prefix, GError **error);
    /* The mailbox API (kr-store.h) for POP3/IMAP, or NULL. */
    const struct KrMailboxOps *mailbox;
    void *spare[13];
} KrStore;

KR_REG_API gboolean kr_register_store(KrModule *mod, const KrStore *store, GError **error);
KR_REG_API const KrStore *kr_store(const char *name);

/* --- admin commands ---------------------------------------------------- */
typedef struct KrCommand {
    uint32_t struct_size;
    const char *name;  /* `kurir NAME ...` */
    const char *usage; /* one line per subcommand */
    /* argv[0] is NAME. Returns the process exit status. */
    int (*run)(KrModule *mod, int argc, char **argv);
    void *spare[4];
} KrCommand;
KR_REG_API gboolean kr_register_command(KrModule *mod, const KrCommand *cmd, GError **error);

/* --- services: things that run while the daemon runs ----------------- */
typedef struct KrService {
    uint32_t struct_size;
    const char *name;
    gpointer self;
    /* Daemon start, after the pipeline is built; FALSE stops start-up. */
    gboolean (*start)(gpointer self, GError **error);
    /* Shutdown: stop new work; call done() once in-flight work is safe
     * (it may be called before stop returns). */
    void (*stop)(gpointer self, void (*done)(gpointer token), gpointer token);
    /* SIGHUP: re-read files (maps, users); may be NULL. */
    void (*reload)(gpointer self);
    void *spare[4];
} KrService;
KR_REG_API gboolean kr_register_service(KrModule *mod, const KrService *svc, GError **error);

/* --- control socket (DATA_DIR/run/control) ----------------------------
 * One line in, a reply out, for `kurir` subcommands that must talk to the
 * running daemon (queue flush, hold, ...). */
typedef struct KrControl {
    uint32_t struct_size;
    const char *name; /* first word of the request line */
    gpointer self;
    /* argv[0] is name. Append the reply to out; return TRUE for ok. */
    gboolean (*handle)(gpointer self, int argc, char **argv, GString *out);
    void *spare[4];
} KrControl;
KR_REG_API gboolean kr_register_control(KrModule *mod, const KrControl *ctl, GError **error);
/* From the kurir command: send a request to the daemon; FALSE with
 * *error if it is not running or refused. *reply_r gets the reply. */
KR_REG_API gboolean kr_control_request(const char *line, char **reply_r, GError **error);

/* --- address resolvers (trivial-rewrite) --------------------------------
 * What happens to a recipient address: its form after rewriting
 * (default domain, lowercased domain, canonical and virtual maps) and the
 * transport that delivers it with its next hop. The queue manager uses
 * the default resolver (kr_resolver(NULL)) for each recipient's
 * destination ("transport:nexthop"); delivery stages may use it too.
 * modules/rewrite registers one. */
typedef struct KrResolution {
    uint32_t struct_size; /* set by the caller: sizeof(KrResolution) */
    char *address;        /* the address after rewriting ("local@domain") */
    char *transport;      /* "local", "smtp", "relay" or "error" */
    char *nexthop;        /* "example.org", "[mx.example.net]:587", or "" */
    int code;             /* transport "error": reply code (5xx) */
    char ecode[12];       /* transport "error": enhanced status code */
    char *reason;         /* how it was decided (logs, `kurir resolve`);
                             for "error", the reply text */
    void *spare[4];
} KrResolution;

typedef struct KrResolver {
    uint32_t struct_size;
    const char *name;
    gpointer self;
    /* Fast (in-memory maps, no DNS) and thread-safe. Fills *out (zeroed
     * by the caller but for struct_size); its strings are g_malloc'd,
     * freed by kr_resolution_clear(). An unusable address (control
     * characters, bad syntax) still returns TRUE, with transport
     * "error". FALSE: it cannot be decided now (out->reason may say
     * why); the caller falls back to its own rule or retries later. */
    gboolean (*resolve)(gpointer self, const char *address, KrResolution *out);
    void *spare[6];
} KrResolver;

KR_REG_API gboolean kr_register_resolver(KrModule *mod, const KrResolver *res, GError **error);
/* By name, or the first registered with name NULL; NULL if none. */
KR_REG_API const KrResolver *kr_resolver(const char *name);
/* Free the strings of *res (not res itself) and zero them. */
KR_REG_API void kr_resolution_clear(KrResolution *res);

G_END_DECLS
#endif
