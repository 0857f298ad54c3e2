/* SPDX-License-Identifier: MIT */
/*
 * imap-parse.h - the pure IMAP command layer (IMAP4rev1 RFC 3501,
 * IMAP4rev2 RFC 9051 and the extensions kurir serves): an incremental
 * command reader that frames lines and literals under explicit limits,
 * and a parser that turns one framed command into typed arguments. No
 * sockets, no global state.
 *
 * READER (imap-reader.c)
 *   imap_reader_new(limits)          a reader for one connection
 *   imap_reader_free()
 *   imap_reader_set_limits()         change limits (e.g. after LOGIN)
 *   imap_reader_set_line_mode()      next line is raw (AUTHENTICATE data, IDLE's DONE)
 *   imap_reader_feed()               feed bytes; says what happened (ImapReadStatus)
 *   imap_reader_literal()            the literal just announced (IMAP_READ_LITERAL)
 *   imap_reader_literal_accept/reject()  the caller's decision on it
 *   imap_reader_take()               the complete command (IMAP_READ_COMMAND)
 *   imap_reader_error()              what went wrong (IMAP_READ_ERROR)
 *   imap_reader_idle()               between commands, nothing buffered?
 *
 * PARSER (imap-parse.c, imap-parse-search.c, imap-parse-fetch.c, imap-lex.c)
 *   imap_parse()                     ImapRawCommand -> ImapCommand (or ImapError)
 *   imap_parse_string()              the same from wire text (tests, tools)
 *   imap_command_free()
 *   imap_raw_command_new/free()      a raw command from wire bytes
 *   imap_command_name()              "FETCH", ... (for logs and replies)
 *   imap_command_states()            in which session states a command is valid
 *   imap_fetch_section_name()        "BODY[1.HEADER.FIELDS (From)]<0>" for the reply
 *   imap_error_clear/format()        an ImapError; "TAG BAD [CODE] text\r\n"
 *   imap_is_done()                   is this line IDLE's "DONE"?
 *
 * FLOW (one connection):
 *   for each chunk read from the socket, until it is used up:
 *     st = imap_reader_feed(r, p, n, &used); p += used; n -= used;
 *     IMAP_READ_MORE         read more from the socket
 *     IMAP_READ_LITERAL      info = imap_reader_literal(r): size, sync, tag,
 *                            command word. Check quotas (APPENDLIMIT, ...);
 *                            then imap_reader_literal_accept(r) and, if
 *                            info->sync, send "+ Ready\r\n"; or
 *                            imap_reader_literal_reject(r) and send
 *                            "TAG NO [TOOBIG] ..." (nothing was allocated).
 *     IMAP_READ_LITERAL_DATA the `used` bytes at p are the next chunk of a
 *                            streamed literal (info->streamed): write them
 *                            to a temporary file.
 *     IMAP_READ_COMMAND      raw = imap_reader_take(r); cmd = imap_parse(raw,
 *                            &opts, &err); run it (feed no more until its
 *                            reply is queued if commands must not overlap).
 *     IMAP_READ_ERROR        send imap_error_format(imap_reader_error(r));
 *                            the reader already skips to the next command
 *                            (the rest of the line and any non-synchronising
 *                            literal the client still sends).
 *
 * LIMITS (ImapLimits, enforced by the reader before it allocates):
 *   max_line     bytes of one line of a command, literals excluded
 *                (default 65536): over it -> "BAD Command line too long".
 *   max_command  lines + buffered literals of one command (default 1 MiB):
 *                a literal that would pass it and is not streamed ->
 *                "NO [TOOBIG]" (sync) / "BAD [TOOBIG]" (non-sync).
 *   max_literal  any literal, streamed ones included (default 64 MiB):
 *                same replies.
 *   max_nonsync  largest {n+} accepted: G_MAXUINT64 for LITERAL+, 4096 for
 *                LITERAL- (RFC 7888 4) and before authentication, 0 for
 *                none: over it -> "BAD [TOOBIG]" and the octets are skipped.
 *   stream_min   literals of an APPEND at least this big are streamed
 *                (IMAP_READ_LITERAL_DATA) instead of buffered (default
 *                65536; G_MAXUINT64 never streams).
 *   literal8     ~{n} (RFC 3516 BINARY, RFC 9051 APPEND) accepted?
 *   Parser limits (ImapParseOpts): max_depth of parentheses / NOT / OR
 *   nesting (default 32), over it -> "BAD [LIMIT]".
 *
 * TEXT and OWNERSHIP. Strings in an ImapCommand are NUL-terminated copies
 * owned by the command (NUL inside a string is refused); they are bytes as
 * sent: mailbox names still wire-encoded (decode with imap_mailbox_decode),
 * search strings possibly 8-bit. APPEND message data points into the raw
 * command's bytes, which the command keeps a reference to. ImapSeqSet
 * values are as parsed (imap_seqset_resolve before use).
 *
 * ERRORS. ImapError has the tag (NULL when none could be parsed: answer
 * "* BAD"), the kind (BAD or NO), an optional response code and a short
 * fixed English text that never echoes client data.
 */
#ifndef KR_IMAP_PARSE_H
#define KR_IMAP_PARSE_H

#include <glib.h>

#include "imap-seqset.h"

G_BEGIN_DECLS

/* ---- commands ---- */

typedef enum {
    IMAP_CMD_UNKNOWN = 0,
    IMAP_CMD_CAPABILITY,
    IMAP_CMD_NOOP,
    IMAP_CMD_LOGOUT,
    IMAP_CMD_STARTTLS,
    IMAP_CMD_AUTHENTICATE,
    IMAP_CMD_LOGIN,
    IMAP_CMD_ENABLE,
    IMAP_CMD_SELECT,
    IMAP_CMD_EXAMINE,
    IMAP_CMD_CREATE,
    IMAP_CMD_DELETE,
    IMAP_CMD_RENAME,
    IMAP_CMD_SUBSCRIBE,
    IMAP_CMD_UNSUBSCRIBE,
    IMAP_CMD_LIST,
    IMAP_CMD_LSUB,
    IMAP_CMD_NAMESPACE,
    IMAP_CMD_STATUS,
    IMAP_CMD_APPEND,
    IMAP_CMD_IDLE,
    IMAP_CMD_CHECK,
    IMAP_CMD_CLOSE,
    IMAP_CMD_UNSELECT,
    IMAP_CMD_EXPUNGE,
    IMAP_CMD_SEARCH,
    IMAP_CMD_FETCH,
    IMAP_CMD_STORE,
    IMAP_CMD_COPY,
    IMAP_CMD_MOVE,
    IMAP_CMD_ID,
    IMAP_CMD_N_
} ImapCmdName;

/* Session states, for imap_command_states(). */
enum {
    IMAP_STATE_NOTAUTH = 1 << 0,
    IMAP_STATE_AUTH = 1 << 1,
    IMAP_STATE_SELECTED = 1 << 2,
    IMAP_STATE_ANY = 7,
};

/* STATUS items, and LIST ... RETURN (STATUS (...)). */
enum {
    IMAP_STATUS_MESSAGES = 1 << 0,
    IMAP_STATUS_RECENT = 1 << 1,
    IMAP_STATUS_UIDNEXT = 1 << 2,
    IMAP_STATUS_UIDVALIDITY = 1 << 3,
    IMAP_STATUS_UNSEEN = 1 << 4,
    IMAP_STATUS_DELETED = 1 << 5,       /* RFC 9051 */
    IMAP_STATUS_SIZE = 1 << 6,          /* RFC 8438 / 9051 */
    IMAP_STATUS_HIGHESTMODSEQ = 1 << 7, /* RFC 7162 */
    IMAP_STATUS_APPENDLIMIT = 1 << 8,   /* RFC 7889 */
};

/* LIST selection options (RFC 5258, 6154). */
enum {
    IMAP_LIST_SEL_SUBSCRIBED = 1 << 0,
    IMAP_LIST_SEL_REMOTE = 1 << 1,
    IMAP_LIST_SEL_RECURSIVEMATCH = 1 << 2,
    IMAP_LIST_SEL_SPECIAL_USE = 1 << 3,
};
/* LIST return options (RFC 5258, 5819, 6154). */
enum {
    IMAP_LIST_RET_SUBSCRIBED = 1 << 0,
    IMAP_LIST_RET_CHILDREN = 1 << 1,
    IMAP_LIST_RET_SPECIAL_USE = 1 << 2,
    IMAP_LIST_RET_STATUS = 1 << 3,
};

typedef struct {
    char *mailbox;
    gboolean condstore;
    gboolean qresync;
    guint32 uidvalidity;    /* QRESYNC */
    guint64 modseq;         /* QRESYNC */
    ImapSeqSet *known_uids; /* QRESYNC, optional */
    ImapSeqSet *match_seqs; /* QRESYNC seq-match-data, optional */
    ImapSeqSet *match_uids; /* ... its UIDs */
} ImapSelectArgs;

typedef struct {
    guint select;      /* IMAP_LIST_SEL_* */
    guint ret;         /* IMAP_LIST_RET_* */
    guint status;      /* IMAP_STATUS_* with IMAP_LIST_RET_STATUS */
    gboolean extended; /* selection/return options or a pattern list given */
    char *reference;
    char **patterns; /* NULL-terminated, at least one */
} ImapListArgs;

typedef struct {
    char **flags; /* NULL-terminated; NULL when no flag list was given */
    gboolean has_date;
    gint64 date; /* UTC seconds */
    int tz_minutes;
    gboolean binary;     /* literal8 (~{n}) */
    gboolean streamed;   /* data arrived as IMAP_READ_LITERAL_DATA */
    guint literal_index; /* which literal of the command (matches ImapLiteralInfo.index) */
    const guchar *data;  /* NULL when streamed */
    guint64 size;
} ImapAppendMsg;

typedef struct {
    char *mailbox;
    ImapAppendMsg *msgs; /* more than one only with MULTIAPPEND (RFC 3502) */
    guint n_msgs;
} ImapAppendArgs;

/* ---- SEARCH (imap-parse-search.c) ---- */

typedef enum {
    IMAP_SK_AND, /* children: all must match (a parenthesised list, the top level) */
    IMAP_SK_OR,  /* children: two */
    IMAP_SK_NOT, /* children: one */
    IMAP_SK_ALL,
    IMAP_SK_ANSWERED,
    IMAP_SK_DELETED,
    IMAP_SK_DRAFT,
    IMAP_SK_FLAGGED,
    IMAP_SK_NEW,
    IMAP_SK_OLD,
    IMAP_SK_RECENT,
    IMAP_SK_SEEN,
    IMAP_SK_UNANSWERED,
    IMAP_SK_UNDELETED,
    IMAP_SK_UNDRAFT,
    IMAP_SK_UNFLAGGED,
    IMAP_SK_UNSEEN,
    IMAP_SK_KEYWORD,   /* str: the keyword */
    IMAP_SK_UNKEYWORD, /* str */
    IMAP_SK_BCC,       /* str, for all string keys */
    IMAP_SK_BODY,
    IMAP_SK_CC,
    IMAP_SK_FROM,
    IMAP_SK_SUBJECT,
    IMAP_SK_TEXT,
    IMAP_SK_TO,
    IMAP_SK_HEADER, /* field + str */
    IMAP_SK_BEFORE, /* date: days since 1970-01-01, for all date keys */
    IMAP_SK_ON,
    IMAP_SK_SINCE,
    IMAP_SK_SENTBEFORE,
    IMAP_SK_SENTON,
    IMAP_SK_SENTSINCE,
    IMAP_SK_LARGER,  /* number */
    IMAP_SK_SMALLER, /* number */
    IMAP_SK_UID,     /* set */
    IMAP_SK_SEQSET,  /* set */
    IMAP_SK_MODSEQ,  /* number; field = entry name ("/flags/\\Seen") or NULL, str = type */
    IMAP_SK_OLDER,   /* number: seconds (RFC 5032 WITHIN) */
    IMAP_SK_YOUNGER, /* number */
} ImapSearchKeyType;

typedef struct ImapSearchKey ImapSearchKey;
struct ImapSearchKey {
    ImapSearchKeyType type;
    ImapSearchKey *child; /* AND, OR, NOT: first child */
    ImapSearchKey *next;  /* next sibling */
    char *str;
    char *field;
    guint64 number;
    gint32 date;
    ImapSeqSet *set;
};

/* ESEARCH RETURN options (RFC 4731, 5182). */
enum {
    IMAP_SEARCH_RET_MIN = 1 << 0,
    IMAP_SEARCH_RET_MAX = 1 << 1,
    IMAP_SEARCH_RET_ALL = 1 << 2,
    IMAP_SEARCH_RET_COUNT = 1 << 3,
    IMAP_SEARCH_RET_SAVE = 1 << 4,
};

typedef struct {
    gboolean esearch;   /* RETURN (...) was given: answer with ESEARCH */
    guint ret;          /* IMAP_SEARCH_RET_*; "RETURN ()" gives ALL */
    char *charset;      /* as given (UTF-8 / US-ASCII), NULL when none */
    ImapSearchKey *key; /* an IMAP_SK_AND of the top-level keys */
} ImapSearchArgs;

/* ---- FETCH (imap-parse-fetch.c) ---- */

enum {
    IMAP_FETCH_FLAGS = 1 << 0,
    IMAP_FETCH_INTERNALDATE = 1 << 1,
    IMAP_FETCH_RFC822_SIZE = 1 << 2,
    IMAP_FETCH_ENVELOPE = 1 << 3,
    IMAP_FETCH_BODY = 1 << 4, /* non-extensible BODY (structure) */
    IMAP_FETCH_BODYSTRUCTURE = 1 << 5,
    IMAP_FETCH_UID = 1 << 6,
    IMAP_FETCH_MODSEQ = 1 << 7,
};

typedef enum {
    IMAP_SECTION_BODY,        /* BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER/.TEXT */
    IMAP_SECTION_BINARY,      /* BINARY[...], BINARY.PEEK[...] */
    IMAP_SECTION_BINARY_SIZE, /* BINARY.SIZE[...] */
} ImapSectionKind;

typedef enum {
    IMAP_SECTION_ALL = 0, /* [] or [1.2]: the whole message / part */
    IMAP_SECTION_HEADER,
    IMAP_SECTION_HEADER_FIELDS,
    IMAP_SECTION_HEADER_FIELDS_NOT,
    IMAP_SECTION_TEXT,
    IMAP_SECTION_MIME,
} ImapSectionText;

typedef struct {
    ImapSectionKind kind;
    gboolean peek;      /* BODY.PEEK / BINARY.PEEK / RFC822.HEADER: do not set \Seen */
    const char *legacy; /* "RFC822", "RFC822.HEADER", "RFC822.TEXT", or NULL */
    guint32 *part;      /* part numbers ("1.2" -> {1,2}) */
    guint n_part;
    ImapSectionText text;
    char **fields;    /* HEADER.FIELDS(.NOT): NULL-terminated field names */
    gboolean partial; /* <offset.length> */
    guint64 offset;
    guint64 length;
} ImapFetchSection;

typedef struct {
    ImapSeqSet *set;
    guint items;                /* IMAP_FETCH_*; UID FETCH adds UID, CHANGEDSINCE MODSEQ */
    ImapFetchSection *sections; /* in the order asked */
    guint n_sections;
    gboolean changedsince_set;
    guint64 changedsince;
    gboolean vanished; /* UID FETCH ... (CHANGEDSINCE n VANISHED) */
} ImapFetchArgs;

typedef enum {
    IMAP_STORE_SET,
    IMAP_STORE_ADD,
    IMAP_STORE_REMOVE,
} ImapStoreOp;

typedef struct {
    ImapSeqSet *set;
    ImapStoreOp op;
    gboolean silent;
    gboolean unchangedsince_set;
    guint64 unchangedsince;
    char **flags; /* NULL-terminated, possibly empty; system flags in canonical case */
} ImapStoreArgs;

typedef struct ImapArena ImapArena;

typedef struct {
    char *tag;
    ImapCmdName name;
    gboolean uid; /* "UID FETCH" ... */
    union {
        struct {
            char *mech;    /* as sent; compare case-insensitively */
            char *initial; /* SASL-IR (RFC 4959): base64 text, "" for "=", NULL if absent */
        } auth;
        struct {
            char *user, *password;
        } login;
        struct {
            char **caps; /* NULL-terminated */
        } enable;
        ImapSelectArgs select; /* SELECT, EXAMINE */
        struct {
            char *mailbox;
            char **use; /* CREATE mbox (USE (\Drafts ...)) RFC 6154, or NULL */
        } create;
        struct {
            char *mailbox;
        } mbox; /* DELETE, SUBSCRIBE, UNSUBSCRIBE */
        struct {
            char *from, *to;
        } rename;
        ImapListArgs list; /* LIST, LSUB */
        struct {
            char *mailbox;
            guint items; /* IMAP_STATUS_* */
        } status;
        ImapAppendArgs append;
        ImapSearchArgs search;
        ImapFetchArgs fetch;
        ImapStoreArgs store;
        struct {
            ImapSeqSet *set;
            char *mailbox;
        } copy; /* COPY, MOVE */
        struct {
            ImapSeqSet *set; /* UID EXPUNGE only; NULL for EXPUNGE */
        } expunge;
        struct {
            char **pairs; /* field, value, field, value, ...; a value may be NULL */
            guint n_pairs;
        } id; /* "ID NIL": n_pairs == 0 */
    } u;
    ImapArena *arena;
    GBytes *raw;
} ImapCommand;

/* ---- errors ---- */

typedef enum {
    IMAP_ERROR_NONE = 0,
    IMAP_ERROR_BAD,
    IMAP_ERROR_NO,
} ImapErrorKind;

typedef struct {
    ImapErrorKind kind;
    char *tag;        /* NULL: untagged "* BAD" */
    ImapCmdName name; /* the command, if it was recognised */
    const char *code; /* response code without brackets, or NULL (static) */
    const char *text; /* static, fixed English */
} ImapError;

void imap_error_clear(ImapError *err);
void imap_error_format(const ImapError *err, GString *out);

/* ---- reader ---- */

typedef struct {
    gsize max_line;
    gsize max_command;
    guint64 max_literal;
    guint64 max_nonsync;
    guint64 stream_min;
    gboolean literal8;
} ImapLimits;

#define IMAP_LIMITS_INIT                                                                           \
    {                                                                                              \
        65536, 1048576, G_GUINT64_CONSTANT(67108864), 4096, 65536, TRUE                            \
    }

typedef enum {
    IMAP_READ_MORE,
    IMAP_READ_COMMAND,
    IMAP_READ_LITERAL,
    IMAP_READ_LITERAL_DATA,
    IMAP_READ_ERROR,
} ImapReadStatus;

typedef struct {
    guint64 size;
    gboolean sync;       /* {n}: send "+ " after accepting; {n+}: data is already coming */
    gboolean binary;     /* ~{n} */
    gboolean streamed;   /* arrives as IMAP_READ_LITERAL_DATA chunks */
    guint index;         /* 0-based among the command's literals */
    guint64 remaining;   /* octets of it still to come */
    const char *tag;     /* NULL if the line starts with no valid tag */
    const char *command; /* the word after the tag, upper case ("APPEND"), or "" */
} ImapLiteralInfo;

typedef struct {
    guint offset; /* in bytes: just after "{n}\r\n" of a streamed literal */
    guint index;
} ImapStreamedLit;

/* One framed command: the octets as sent (line ends normalised to CRLF,
 * the final one removed), literal data inline except for streamed ones,
 * whose data is absent. */
typedef struct {
    GBytes *bytes;
    ImapStreamedLit *streamed;
    guint n_streamed;
} ImapRawCommand;

typedef struct ImapReader ImapReader;

ImapReader *imap_reader_new(const ImapLimits *limits);
void imap_reader_free(ImapReader *r);
void imap_reader_set_limits(ImapReader *r, const ImapLimits *limits);
void imap_reader_set_line_mode(ImapReader *r);
ImapReadStatus imap_reader_feed(ImapReader *r, const void *data, gsize len, gsize *used_r);
const ImapLiteralInfo *imap_reader_literal(ImapReader *r);
void imap_reader_literal_accept(ImapReader *r);
void imap_reader_literal_reject(ImapReader *r);
ImapRawCommand *imap_reader_take(ImapReader *r);
const ImapError *imap_reader_error(ImapReader *r);
gboolean imap_reader_idle(ImapReader *r);

ImapRawCommand *imap_raw_command_new(const void *data, gsize len);
void imap_raw_command_free(ImapRawCommand *raw);

/* ---- parser ---- */

typedef struct {
    guint max_depth;    /* parentheses / NOT / OR nesting, default 32 */
    gboolean searchres; /* "$" accepted as a sequence set (RFC 5182) */
} ImapParseOpts;

#define IMAP_PARSE_OPTS_INIT                                                                       \
    {                                                                                              \
        32, TRUE                                                                                   \
    }

ImapCommand *imap_parse(const ImapRawCommand *raw, const ImapParseOpts *opts, ImapError *err);
ImapCommand *imap_parse_string(const char *wire, gsize len, const ImapParseOpts *opts,
                               ImapError *err);
void imap_command_free(ImapCommand *cmd);
const char *imap_command_name(ImapCmdName name);
guint imap_command_states(ImapCmdName name);
void imap_fetch_section_name(const ImapFetchSection *sec, GString *out);
gboolean imap_is_done(const guchar *line, gsize len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapCommand, imap_command_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapRawCommand, imap_raw_command_free)

G_END_DECLS

#endif
