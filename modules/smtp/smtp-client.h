/* SPDX-License-Identifier: MIT */
/*
 * smtp-client.h - private declarations of the SMTP client (stage type
 * "smtp-client", part of smtp.so). Nothing here is seen outside
 * modules/smtp/, and the server files do not use it (smtp.c only
 * registers the stage type and the service).
 *
 *   smtp-client.c          stage type, node settings, destinations, jobs,
 *                          connection cache, the shutdown service
 *   smtp-client-session.c  one connection: connect, greeting, EHLO,
 *                          STARTTLS, AUTH, idle, QUIT (smtp-client-session.h)
 *   smtp-client-tx.c       one transaction on a session, the content pump
 *   smtp-client-dns.c      next hops: resolver_override, MX, A/AAAA
 *                          (blocking: worker threads only)
 *   smtp-client-hop.c      next-hop syntax, the resolver_override table
 *   smtp-client-proto.c    pure protocol pieces (smtp-client-proto.h)
 *
 * Objects (all on the event loop):
 *   SmtpcNode      one pipeline node of type smtp-client (its settings,
 *                  override table, TLS context, destinations)
 *   SmtpcDest      one next-hop destination of a node: a recipient
 *                  domain, or the relayhost. Deliveries wait here for a
 *                  session; sessions (at most max_per_destination) and
 *                  the idle ones kept for reuse are counted here.
 *   SmtpcJob       one pipeline job (a message and some recipients)
 *   SmtpcDelivery  the recipients of one job that go to one destination;
 *                  one SMTP transaction
 *   SmtpcSession   one connection to one destination (reference counted:
 *                  workers and timers hold references)
 */
#ifndef KR_SMTP_CLIENT_H
#define KR_SMTP_CLIENT_H

#include <kurir/kurir.h>
#include <sys/socket.h>
#include "smtp-client-proto.h"

/* ---- settings of one node (type = "smtp-client") ---- */

enum { SMTPC_TLS_NONE, SMTPC_TLS_MAY, SMTPC_TLS_ENCRYPT };

typedef struct {
    char *relayhost;
    char *relay_user;
    char *relay_password_file;
    int tls;
    char *helo_name;
    gint64 port;
    char **resolver_override;
    gboolean dns;
    gint64 connect_timeout;
    gint64 greeting_timeout;
    gint64 command_timeout;
    gint64 data_timeout;
    gint64 max_per_destination;
    gint64 cache_time;
    gint64 max_reuse;
    gint64 max_addresses;
} SmtpcConf;

extern const KrStageType smtp_client_stage;
extern const KrService smtp_client_service;

/* ---- next hops (smtp-client-hop.c, smtp-client-dns.c) ---- */

/* One address to try. */
typedef struct {
    char *host; /* name it came from (MX host, destination), for logs and SNI */
    char *ip;   /* numeric */
    guint16 port;
    struct sockaddr_storage sa;
    socklen_t salen;
} SmtpcAddr;

/* A parsed next hop: "host", "host:port", "[host]:port" (no MX lookup),
 * "[192.0.2.1]" (address literal). */
typedef struct {
    char *host; /* lowercased, brackets removed */
    guint16 port;
    gboolean no_mx;
} SmtpcTarget;

gboolean smtpc_target_parse(const char *spec, guint16 default_port, SmtpcTarget *t, GError **error);
void smtpc_target_clear(SmtpcTarget *t);

/* A numeric address ("192.0.2.1", "::1", "IPv6:::1") or NULL. */
SmtpcAddr *smtpc_numeric_addr(const char *host, const char *ip, guint16 port);
/* resolver_override entries "name = addr[:port][, addr[:port] ...]" ->
 * lowercased name -> GPtrArray of SmtpcAddr (host = name). */
GHashTable *smtpc_override_parse(char **entries, guint16 default_port, GError **error);

/* MX records (smtp-client-hop.c, pure). */
typedef struct {
    guint pref;
    char *name; /* lowercased, no trailing dot; "" or "." for a null MX */
} SmtpcMx;

typedef enum {
    SMTPC_MX_OK,   /* mxs now holds the hosts to try, in order */
    SMTPC_MX_NULL, /* a null MX (RFC 7505), or no host at all: no mail */
    SMTPC_MX_LOOP, /* this host (myhostname) is the best MX: mail loops */
} SmtpcMxPlan;

/* An empty GArray of SmtpcMx that frees the names. */
GArray *smtpc_mx_array(void);
/* Order mxs by preference (equal preferences shuffled), keep only MX
 * hosts better than myhostname if it is one of them, drop names that
 * are no host. */
SmtpcMxPlan smtpc_mx_plan(GArray *mxs, const char *myhostname);

/* The outcome of a resolution: addresses in the order to try, or a
 * failure (code 4xx: try later; 5xx: permanent). */
typedef struct {
    GPtrArray *addrs; /* SmtpcAddr *, owned */
    int code;
    char ecode[12];
    char *error;
} SmtpcResolved;

typedef struct {
    SmtpcTarget target;
    GHashTable *override; /* read only (shared, immutable after start) */
    gboolean dns;
    guint max_addrs;
    char *myhostname;
} SmtpcResolveReq;

/* Blocking (worker thread). */
void smtpc_resolve(const SmtpcResolveReq *req, SmtpcResolved *out);
void smtpc_resolved_clear(SmtpcResolved *r);
void smtpc_addr_free(gpointer p);

/* ---- runtime objects (smtp-client.c) ---- */

typedef struct SmtpcNode SmtpcNode;
typedef struct SmtpcDest SmtpcDest;
typedef struct SmtpcJob SmtpcJob;
typedef struct SmtpcDelivery SmtpcDelivery;
typedef struct SmtpcSession SmtpcSession;

struct SmtpcNode {
    KrStage *stage;
    const char *name;
    SmtpcConf *conf;
    GHashTable *override; /* see smtpc_override_parse */
    SmtpcTarget relay;    /* when relayhost is set */
    gboolean have_relay;
    char *password; /* relay password, or NULL */
    SSL_CTX *tls_ctx;
    GHashTable *dests; /* key -> SmtpcDest */
};

struct SmtpcDest {
    SmtpcNode *node;
    char *key;          /* ["relay:"] host or [host], ":" port */
    SmtpcTarget target; /* what to resolve */
    gboolean relay;     /* a relay host: AUTH with relay_user */
    GQueue waiting;     /* SmtpcDelivery * */
    GQueue idle;        /* SmtpcSession * kept for reuse */
    guint n_sessions;   /* every session of this destination */
    guint n_setup;      /* sessions not yet ready (resolving, connecting, EHLO...) */
};

struct SmtpcJob {
    KrJob *job;
    KrMsg *msg;
    SmtpcNode *node;
    guint pending; /* deliveries not finished */
    goffset size;
    gint64 started; /* monotonic, us */
};

struct SmtpcDelivery {
    SmtpcJob *sj;
    SmtpcDest *dest;
    GArray *rcpts; /* guint: job recipient indexes */
    GArray *done;  /* gboolean per entry of rcpts */
    guint n_left;  /* recipients without a result */
};

/* The address to deliver to: the resolve stage's rewritten "address"
 * attribute, else the queued address. */
const char *smtpc_rcpt_address(const KrRcpt *r);
/* Finish recipient k of d (index into d->rcpts): result on the job,
 * one log line. relay: "host[ip]:port" or NULL. */
void smtpc_rcpt_result(SmtpcDelivery *d, guint k, KrRcptState state, int code, const char *ecode,
                       const char *relay, const char *fmt, ...) G_GNUC_PRINTF(7, 8);
/* Every recipient of d without a result gets this one, then d ends. */
void smtpc_delivery_fail(SmtpcDelivery *d, KrRcptState state, int code, const char *ecode,
                         const char *relay, const char *diag);
/* d has a result for each recipient: free it; the job may end. */
void smtpc_delivery_end(SmtpcDelivery *d);
/* A session of dest wants work: the next waiting delivery, or NULL. */
SmtpcDelivery *smtpc_dest_next(SmtpcDest *dest);
/* A session of dest ended (was_setup: it never became ready). */
void smtpc_dest_session_gone(SmtpcDest *dest, SmtpcSession *s, gboolean was_setup);
/* A session failed to set up (every address tried): the deliveries
 * waiting for dest get that error. */
void smtpc_dest_setup_failed(SmtpcDest *dest, int code, const char *ecode, const char *relay,
                             const char *diag);
gboolean smtpc_stopping(void);

/* ---- sessions (smtp-client-session.c) ---- */

/* Open a new session to dest; it takes deliveries from the destination
 * once ready. */
void smtpc_session_open(SmtpcDest *dest);
/* Hand an idle (ready) session a delivery. */
void smtpc_session_deliver(SmtpcSession *s, SmtpcDelivery *d);
/* Shutdown: QUIT idle sessions, abort the others (their recipients are
 * deferred). */
void smtpc_sessions_shutdown_all(void);

#endif
