/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   maildir-index.c - the per-folder index file "kurir-index".
 *
 * SYNOPSIS
 *   See maildir-index.h.
 *
 * FILE FORMAT
 *   Text, one record per line, fields separated by one space, numbers in
 *   decimal. The first line is the header; the rest are records applied
 *   in order. Writers only ever append whole lines (one write() per
 *   transaction, under the lock file kurir-index.lock) or replace the
 *   file by rename (compaction, rebuild); so a reader that stops at the
 *   last '\n' always sees a consistent prefix, and a crash mid-append
 *   leaves at most a partial last line, which the next writer truncates.
 *
 *     kurir-index 1 UIDVALIDITY CACHEGEN       header
 *     N NEXTUID HIGHESTMODSEQ                  counters (snapshots, after
 *                                              their M records)
 *     K I NAME                                 keyword I is NAME
 *     M UID FLAGS KW MODSEQ SIZE VSIZE DATE L BASE [NAME]
 *                                              a message (L: n = new/,
 *                                              c = cur/; NAME only when
 *                                              the file name is not the
 *                                              canonical one)
 *     F UID FLAGS KW MODSEQ L [NAME]           flags/location changed
 *     X UID MODSEQ                             expunged
 *     C UID OFF LEN                            cached blob in
 *                                              kurir-cache.CACHEGEN
 *     D NEWMTIME CURMTIME                      new/ and cur/ mtimes (ns)
 *                                              the index matches; 0 = scan
 *     R UID                                    UIDs below UID have been
 *                                              claimed as \Recent by a
 *                                              session (kr-store.h); the
 *                                              largest R counts
 *
 *   R records were added later: an index without one (written before
 *   them), like a rebuilt one, has every message unclaimed, so the next
 *   session to open the folder sees all of them as \Recent (as Dovecot
 *   does after losing its index). Older kurir versions treat R as damage
 *   and rebuild.
 *
 *   UIDs of M records strictly ascend. Anything else is damage: the
 *   store then rebuilds the index from the files with a new UIDVALIDITY
 *   (guids, hence POP3 UIDLs, survive: they are the file names).
 *
 *   File names in records never contain spaces or control characters
 *   (the directory scan skips such files).
 */
#include "maildir-index.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_MAGIC "kurir-index 1 "

/* --- names and flags ---------------------------------------------------- */

static const struct {
    char letter;
    guint32 flag;
} flag_letters[] = {
    /* ASCII order: the canonical info part lists letters sorted. */
    {'D', KR_FLAG_DRAFT},    {'F', KR_FLAG_FLAGGED}, {'P', KR_FLAG_FORWARDED},
    {'R', KR_FLAG_ANSWERED}, {'S', KR_FLAG_SEEN},    {'T', KR_FLAG_DELETED},
};

gsize
md_base_len(const char *name)
{
    const char *c = strchr(name, ':');
    return c ? (gsize)(c - name) : strlen(name);
}

void
md_flags_from_info(const char *info, guint32 *flags_r, guint32 *kw_r)
{
    guint32 flags = 0, kw = 0;
    if (info && g_str_has_prefix(info, ":2,")) {
        for (const char *p = info + 3; *p; p++) {
            if (*p >= 'a' && *p <= 'z') {
                kw |= 1u << (*p - 'a');
                continue;
            }
            for (guint i = 0; i < G_N_ELEMENTS(flag_letters); i++)
                if (flag_letters[i].letter == *p)
                    flags |= flag_letters[i].flag;
        }
    }
    *flags_r = flags;
    *kw_r = kw;
}

char *
md_cur_name(const char *base, guint32 flags, guint32 kw)
{
    GString *s = g_string_sized_new(strlen(base) + 12);
    g_string_append(s, base);
    g_string_append(s, ":2,");
    for (guint i = 0; i < G_N_ELEMENTS(flag_letters); i++)
        if (flags & flag_letters[i].flag)
            g_string_append_c(s, flag_letters[i].letter);
    for (guint i = 0; i < KR_STORE_MAX_KEYWORDS; i++)
        if (kw & (1u << i))
            g_string_append_c(s, (char)('a' + i));
    return g_string_free(s, FALSE);
}

char *
md_entry_path(const MdEntry *e)
{
    const char *dir = e->in_new ? "new/" : "cur/";
    if (e->odd_name)
        return g_strconcat(dir, e->odd_name, NULL);
    if (e->in_new)
        return g_strconcat(dir, e->base, NULL);
    g_autofree char *n = md_cur_name(e->base, e->flags, e->keywords);
    return g_strconcat(dir, n, NULL);
}

/* --- in-memory index ---------------------------------------------------- */

static guint
base_hash(gconstpointer p)
{
    return g_str_hash(p);
}

static void
entry_clear(MdEntry *e)
{
    g_clear_pointer(&e->base, g_ref_string_release);
    g_clear_pointer(&e->odd_name, g_ref_string_release);
}

void
md_index_init(MdIndex *idx)
{
    memset(idx, 0, sizeof *idx);
    idx->entries = g_array_new(FALSE, TRUE, sizeof(MdEntry));
    idx->by_name = g_hash_table_new(base_hash, g_str_equal);
    idx->keywords = g_ptr_array_new_with_free_func(g_free);
    idx->nextuid = 1;
    idx->recent_uid = 1;
}

void
md_index_reset(MdIndex *idx)
{
    for (guint i = 0; i < idx->entries->len; i++)
        entry_clear(&g_array_index(idx->entries, MdEntry, i));
    g_array_set_size(idx->entries, 0);
    g_hash_table_remove_all(idx->by_name);
    g_ptr_array_set_size(idx->keywords, 0);
    idx->nextuid = 1;
    idx->recent_uid = 1;
    idx->highestmodseq = 0;
    idx->new_mtime = idx->cur_mtime = 0;
    idx->loaded = FALSE;
    idx->off = 0;
    idx->records = 0;
    idx->version++;
    idx->msgs_version++;
}

void
md_index_clear(MdIndex *idx)
{
    if (!idx->entries)
        return;
    md_index_reset(idx);
    g_array_unref(idx->entries);
    g_hash_table_unref(idx->by_name);
    g_ptr_array_unref(idx->keywords);
    idx->entries = NULL;
}

MdEntry *
md_index_find(MdIndex *idx, guint32 uid)
{
    guint lo = 0, hi = idx->entries->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        MdEntry *e = &g_array_index(idx->entries, MdEntry, mid);
        if (e->uid == uid)
            return e->gone ? NULL : e;
        if (e->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

MdEntry *
md_index_find_name(MdIndex *idx, const char *name)
{
    gsize bl = md_base_len(name);
    gpointer v;
    if (name[bl]) {
        g_autofree char *base = g_strndup(name, bl);
        v = g_hash_table_lookup(idx->by_name, base);
    } else {
        v = g_hash_table_lookup(idx->by_name, name);
    }
    return v ? md_index_find(idx, GPOINTER_TO_UINT(v)) : NULL;
}

int
md_keyword_index(MdIndex *idx, const char *name)
{
    for (guint i = 0; i < idx->keywords->len; i++)
        if (g_ascii_strcasecmp(idx->keywords->pdata[i], name) == 0)
            return (int)i;
    return -1;
}

/* --- parsing -------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
} Cursor;

static gboolean
next_u64(Cursor *c, guint64 *v)
{
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return FALSE;
    guint64 n = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        guint d = (guint)(*c->p - '0');
        if (n > (G_MAXUINT64 - d) / 10)
            return FALSE;
        n = n * 10 + d;
        c->p++;
    }
    if (c->p < c->end) {
        if (*c->p != ' ')
            return FALSE;
        c->p++;
    }
    *v = n;
    return TRUE;
}

static gboolean
next_u32(Cursor *c, guint32 *v)
{
    guint64 n;
    if (!next_u64(c, &n) || n > G_MAXUINT32)
        return FALSE;
    *v = (guint32)n;
    return TRUE;
}

static gboolean
next_i64(Cursor *c, gint64 *v)
{
    guint64 n;
    if (!next_u64(c, &n) || n > G_MAXINT64)
        return FALSE;
    *v = (gint64)n;
    return TRUE;
}

/* A word (file name, keyword): printable, no spaces. NULL at the end. */
static char *
next_word(Cursor *c, gboolean *bad)
{
    if (c->p >= c->end)
        return NULL;
    const char *s = c->p;
    while (c->p < c->end && *c->p != ' ') {
        if ((unsigned char)*c->p <= 0x20 || *c->p == 0x7f || *c->p == '/') {
            *bad = TRUE;
            return NULL;
        }
        c->p++;
    }
    if (c->p == s) {
        *bad = TRUE;
        return NULL;
    }
    char *w = g_ref_string_new_len(s, c->p - s);
    if (c->p < c->end)
        c->p++;
    return w;
}

static gboolean
parse_loc(Cursor *c, gboolean *in_new)
{
    if (c->end - c->p < 1 || (*c->p != 'n' && *c->p != 'c'))
        return FALSE;
    *in_new = *c->p == 'n';
    c->p++;
    if (c->p < c->end) {
        if (*c->p != ' ')
            return FALSE;
        c->p++;
    }
    return TRUE;
}

static void
bump_modseq(MdIndex *idx, guint64 m)
{
    if (m > idx->highestmodseq)
        idx->highestmodseq = m;
}

/* Apply one record (without its '\n'). FALSE: damaged. */
static gboolean
apply_line(MdIndex *idx, const char *line, gsize len, gboolean *any_gone)
{
    if (len < 2 || line[1] != ' ')
        return FALSE;
    Cursor c = {line + 2, line + len};
    gboolean bad = FALSE;
    switch (line[0]) {
    case 'N': {
        guint32 next;
        guint64 hms;
        if (!next_u32(&c, &next) || !next_u64(&c, &hms) || c.p != c.end)
            return FALSE;
        if (next > idx->nextuid)
            idx->nextuid = next;
        bump_modseq(idx, hms);
        return TRUE;
    }
    case 'K': {
        guint32 i;
        if (!next_u32(&c, &i))
            return FALSE;
        g_autoptr(GRefString) w = next_word(&c, &bad);
        if (!w || bad || c.p != c.end || i >= KR_STORE_MAX_KEYWORDS)
            return FALSE;
        if (i < idx->keywords->len)
            return g_strcmp0(idx->keywords->pdata[i], w) == 0;
        if (i != idx->keywords->len)
            return FALSE;
        g_ptr_array_add(idx->keywords, g_strdup(w));
        return TRUE;
    }
    case 'M': {
        MdEntry e = {0};
        gboolean in_new;
        if (!next_u32(&c, &e.uid) || !next_u32(&c, &e.flags) || !next_u32(&c, &e.keywords) ||
            !next_u64(&c, &e.modseq) || !next_i64(&c, &e.size) || !next_i64(&c, &e.vsize) ||
            !next_i64(&c, &e.date) || !parse_loc(&c, &in_new))
            return FALSE;
        if (e.uid == 0 || e.uid < idx->nextuid || e.flags & ~KR_FLAG_ALL)
            return FALSE;
        e.in_new = in_new;
        e.base = next_word(&c, &bad);
        if (!e.base || bad)
            goto bad_m;
        e.odd_name = next_word(&c, &bad);
        if (bad || c.p != c.end || strchr(e.base, ':') ||
            g_hash_table_contains(idx->by_name, e.base))
            goto bad_m;
        e.cache_off = -1;
        idx->nextuid = e.uid + 1;
        bump_modseq(idx, e.modseq);
        g_array_append_val(idx->entries, e);
        g_hash_table_insert(idx->by_name, e.base, GUINT_TO_POINTER(e.uid));
        return TRUE;
    bad_m:
        entry_clear(&e);
        return FALSE;
    }
    case 'F': {
        guint32 uid, flags, kw;
        guint64 modseq;
        gboolean in_new;
        if (!next_u32(&c, &uid) || !next_u32(&c, &flags) || !next_u32(&c, &kw) ||
            !next_u64(&c, &modseq) || !parse_loc(&c, &in_new) || flags & ~KR_FLAG_ALL)
            return FALSE;
        char *odd = next_word(&c, &bad);
        if (bad || c.p != c.end) {
            if (odd)
                g_ref_string_release(odd);
            return FALSE;
        }
        bump_modseq(idx, modseq);
        MdEntry *e = md_index_find(idx, uid);
        if (!e) { /* expunged meanwhile: harmless */
            if (odd)
                g_ref_string_release(odd);
            return TRUE;
        }
        e->flags = flags;
        e->keywords = kw;
        e->modseq = modseq;
        e->in_new = in_new;
        g_clear_pointer(&e->odd_name, g_ref_string_release);
        e->odd_name = odd;
        return TRUE;
    }
    case 'X': {
        guint32 uid;
        guint64 modseq;
        if (!next_u32(&c, &uid) || !next_u64(&c, &modseq) || c.p != c.end)
            return FALSE;
        bump_modseq(idx, modseq);
        MdEntry *e = md_index_find(idx, uid);
        if (e) {
            e->gone = TRUE;
            g_hash_table_remove(idx->by_name, e->base);
            *any_gone = TRUE;
        }
        return TRUE;
    }
    case 'C': {
        guint32 uid, clen;
        gint64 off;
        if (!next_u32(&c, &uid) || !next_i64(&c, &off) || !next_u32(&c, &clen) || c.p != c.end)
            return FALSE;
        MdEntry *e = md_index_find(idx, uid);
        if (e) {
            e->cache_off = clen ? off : -1;
            e->cache_len = clen;
        }
        return TRUE;
    }
    case 'R': {
        guint32 uid;
        if (!next_u32(&c, &uid) || c.p != c.end)
            return FALSE;
        if (uid > idx->recent_uid)
            idx->recent_uid = uid;
        return TRUE;
    }
    case 'D': {
        gint64 n, cu;
        if (!next_i64(&c, &n) || !next_i64(&c, &cu) || c.p != c.end)
            return FALSE;
        idx->new_mtime = n;
        idx->cur_mtime = cu;
        return TRUE;
    }
    default:
        return FALSE;
    }
}

static void
drop_gone(MdIndex *idx)
{
    guint w = 0;
    for (guint r = 0; r < idx->entries->len; r++) {
        MdEntry *e = &g_array_index(idx->entries, MdEntry, r);
        if (e->gone) {
            entry_clear(e);
            continue;
        }
        if (w != r)
            g_array_index(idx->entries, MdEntry, w) = *e;
        w++;
    }
    g_array_set_size(idx->entries, w);
}

/* Apply the complete lines of buf; returns the bytes consumed, or -1 on
 * damage. */
static gssize
apply_text(MdIndex *idx, const char *buf, gsize len)
{
    gsize pos = 0;
    gboolean any_gone = FALSE, msgs = FALSE;
    gboolean ok = TRUE;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            break;
        gsize ll = (gsize)(nl - (buf + pos));
        if (buf[pos] == 'M' || buf[pos] == 'F' || buf[pos] == 'X')
            msgs = TRUE;
        if (!apply_line(idx, buf + pos, ll, &any_gone)) {
            ok = FALSE;
            break;
        }
        idx->records++;
        pos += ll + 1;
    }
    if (any_gone)
        drop_gone(idx);
    if (pos > 0)
        idx->version++;
    if (msgs || any_gone)
        idx->msgs_version++;
    return ok ? (gssize)pos : -1;
}

/* Read [off, EOF) of fd into a new buffer. */
static char *
read_from(int fd, gint64 off, gsize *len_r, GError **error)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot stat %s: %s",
                    MD_INDEX_FILE, g_strerror(errno));
        return NULL;
    }
    gsize cap = st.st_size > off ? (gsize)(st.st_size - off) + 4096 : 4096;
    char *buf = g_malloc(cap);
    gsize len = 0;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = g_realloc(buf, cap);
        }
        ssize_t n = pread(fd, buf + len, cap - len, off + (gint64)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot read %s: %s",
                        MD_INDEX_FILE, g_strerror(errno));
            g_free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (gsize)n;
    }
    *len_r = len;
    return buf;
}

static MdIdxResult
load_full(MdIndex *idx, int fd, const struct stat *st, GError **error)
{
    guint32 old_validity = idx->uidvalidity;
    md_index_reset(idx);
    idx->uidvalidity = old_validity;
    gsize len;
    g_autofree char *buf = read_from(fd, 0, &len, error);
    if (!buf)
        return MD_IDX_IOERR;
    const char *nl = memchr(buf, '\n', len);
    if (!nl || !g_str_has_prefix(buf, HEADER_MAGIC))
        return MD_IDX_DAMAGED;
    Cursor c = {buf + strlen(HEADER_MAGIC), nl};
    guint32 validity, gen;
    if (!next_u32(&c, &validity) || !next_u32(&c, &gen) || c.p != c.end || validity == 0)
        return MD_IDX_DAMAGED;
    idx->uidvalidity = validity;
    idx->cache_gen = gen;
    gsize hl = (gsize)(nl - buf) + 1;
    gssize used = apply_text(idx, buf + hl, len - hl);
    if (used < 0) {
        md_index_reset(idx);
        idx->uidvalidity = MAX(validity, old_validity); /* the rebuild goes above */
        return MD_IDX_DAMAGED;
    }
    idx->records = 0;
    idx->loaded = TRUE;
    idx->dev = st->st_dev;
    idx->ino = st->st_ino;
    idx->off = (gint64)(hl + (gsize)used);
    return MD_IDX_OK;
}

MdIdxResult
md_index_refresh(MdIndex *idx, int dirfd, GError **error)
{
    int fd = openat(dirfd, MD_INDEX_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            if (idx->loaded) {
                guint32 v = idx->uidvalidity;
                md_index_reset(idx);
                idx->uidvalidity = v;
            }
            return MD_IDX_MISSING;
        }
        if (errno == ELOOP)
            return MD_IDX_DAMAGED; /* a symlink: never followed, replaced */
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot open %s: %s",
                    MD_INDEX_FILE, g_strerror(errno));
        return MD_IDX_IOERR;
    }
    struct stat st;
    MdIdxResult r;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        r = MD_IDX_DAMAGED;
    } else if (!idx->loaded || st.st_ino != idx->ino || st.st_dev != idx->dev ||
               st.st_size < idx->off) {
        r = load_full(idx, fd, &st, error);
    } else if (st.st_size == idx->off) {
        r = MD_IDX_OK;
    } else {
        gsize len;
        g_autofree char *buf = read_from(fd, idx->off, &len, error);
        if (!buf) {
            r = MD_IDX_IOERR;
        } else {
            gssize used = apply_text(idx, buf, len);
            if (used < 0) {
                guint32 v = idx->uidvalidity;
                md_index_reset(idx);
                idx->uidvalidity = v;
                r = MD_IDX_DAMAGED;
            } else {
                idx->off += used;
                r = MD_IDX_OK;
            }
        }
    }
    close(fd);
    return r;
}

/* --- transactions --------------------------------------------------------- */

void
md_txn_begin(MdTxn *txn, MdIndex *idx)
{
    memset(txn, 0, sizeof *txn);
    txn->text = g_string_new(NULL);
    txn->nextuid = idx->nextuid;
    txn->modseq = idx->highestmodseq + 1;
}

void
md_txn_free(MdTxn *txn)
{
    if (txn->text)
        g_string_free(txn->text, TRUE);
    txn->text = NULL;
}

guint32
md_txn_add(MdTxn *txn, guint32 flags, guint32 kw, gint64 size, gint64 vsize, gint64 date,
           gboolean in_new, const char *base, const char *odd_name)
{
    guint32 uid = txn->nextuid++;
    g_string_append_printf(txn->text,
                           "M %u %u %u %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
                           " %" G_GINT64_FORMAT " %c %s%s%s\n",
                           uid, flags, kw, txn->modseq, size, vsize, date, in_new ? 'n' : 'c', base,
                           odd_name ? " " : "", odd_name ? odd_name : "");
    txn->need_sync = TRUE;
    txn->n++;
    return uid;
}

void
md_txn_flags(MdTxn *txn, const MdEntry *e, guint32 flags, guint32 kw, gboolean in_new,
             const char *odd_name)
{
    g_string_append_printf(txn->text, "F %u %u %u %" G_GUINT64_FORMAT " %c%s%s\n", e->uid, flags,
                           kw, txn->modseq, in_new ? 'n' : 'c', odd_name ? " " : "",
                           odd_name ? odd_name : "");
    txn->n++;
}

void
md_txn_expunge(MdTxn *txn, guint32 uid)
{
    g_string_append_printf(txn->text, "X %u %" G_GUINT64_FORMAT "\n", uid, txn->modseq);
    txn->need_sync = TRUE;
    txn->n++;
}

void
md_txn_keyword(MdTxn *txn, guint idx, const char *name)
{
    g_string_append_printf(txn->text, "K %u %s\n", idx, name);
    txn->need_sync = TRUE;
    txn->n++;
}

void
md_txn_cache(MdTxn *txn, guint32 uid, gint64 off, guint32 len)
{
    g_string_append_printf(txn->text, "C %u %" G_GINT64_FORMAT " %u\n", uid, off, len);
    txn->n++;
}

void
md_txn_dirs(MdTxn *txn, gint64 new_mtime, gint64 cur_mtime)
{
    g_string_append_printf(txn->text, "D %" G_GINT64_FORMAT " %" G_GINT64_FORMAT "\n", new_mtime,
                           cur_mtime);
    txn->n++;
}

void
md_txn_recent(MdTxn *txn, guint32 uid)
{
    g_string_append_printf(txn->text, "R %u\n", uid);
    txn->n++;
}

static gboolean
write_all(int fd, const char *buf, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return FALSE;
        buf += n;
        len -= (gsize)n;
    }
    return TRUE;
}

gboolean
md_index_commit(MdIndex *idx, int dirfd, MdTxn *txn, GError **error)
{
    if (txn->text->len == 0)
        return TRUE;
    g_return_val_if_fail(idx->loaded, FALSE);
    int fd = openat(dirfd, MD_INDEX_FILE, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    int e = 0;
    if (fd < 0 || fstat(fd, &st) < 0) {
        e = errno;
    } else if (st.st_ino != idx->ino || st.st_dev != idx->dev) {
        e = ESTALE; /* replaced without the lock: caller refreshes first */
    } else if (st.st_size > idx->off && ftruncate(fd, idx->off) < 0) {
        e = errno; /* a partial line left by a crashed writer */
    } else if (!write_all(fd, txn->text->str, txn->text->len)) {
        e = errno ? errno : EIO;
        if (ftruncate(fd, idx->off) < 0) {
            /* the next writer truncates */
        }
    } else if (txn->need_sync && fdatasync(fd) < 0) {
        e = errno;
    }
    if (fd >= 0)
        close(fd);
    if (e) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot append to %s: %s",
                    MD_INDEX_FILE, g_strerror(e));
        return FALSE;
    }
    gssize used = apply_text(idx, txn->text->str, txn->text->len);
    g_assert(used == (gssize)txn->text->len);
    idx->off += used;
    return TRUE;
}

void
md_index_apply_txn(MdIndex *idx, MdTxn *txn)
{
    gssize used = apply_text(idx, txn->text->str, txn->text->len);
    g_assert(used == (gssize)txn->text->len);
}

gboolean
md_index_write_full(MdIndex *idx, int dirfd, GError **error)
{
    GString *s = g_string_sized_new(128 + idx->entries->len * 96);
    g_string_append_printf(s, "%s%u %u\n", HEADER_MAGIC, idx->uidvalidity, idx->cache_gen);
    for (guint i = 0; i < idx->keywords->len; i++)
        g_string_append_printf(s, "K %u %s\n", i, (char *)idx->keywords->pdata[i]);
    for (guint i = 0; i < idx->entries->len; i++) {
        MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
        g_string_append_printf(s,
                               "M %u %u %u %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT
                               " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %c %s%s%s\n",
                               e->uid, e->flags, e->keywords, e->modseq, e->size, e->vsize, e->date,
                               e->in_new ? 'n' : 'c', e->base, e->odd_name ? " " : "",
                               e->odd_name ? e->odd_name : "");
    }
    for (guint i = 0; i < idx->entries->len; i++) {
        MdEntry *e = &g_array_index(idx->entries, MdEntry, i);
        if (e->cache_off >= 0)
            g_string_append_printf(s, "C %u %" G_GINT64_FORMAT " %u\n", e->uid, e->cache_off,
                                   e->cache_len);
    }
    /* N after the M records: those must each be >= the next UID. */
    g_string_append_printf(s, "N %u %" G_GUINT64_FORMAT "\n", idx->nextuid, idx->highestmodseq);
    g_string_append_printf(s, "D %" G_GINT64_FORMAT " %" G_GINT64_FORMAT "\n", idx->new_mtime,
                           idx->cur_mtime);
    if (idx->recent_uid > 1)
        g_string_append_printf(s, "R %u\n", idx->recent_uid);

    static const char tmp[] = MD_INDEX_FILE ".tmp";
    int e = 0;
    unlinkat(dirfd, tmp, 0);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0)
        e = errno;
    else if (!write_all(fd, s->str, s->len))
        e = errno ? errno : EIO;
    else if (fdatasync(fd) < 0 || fstat(fd, &st) < 0)
        e = errno;
    else if (renameat(dirfd, tmp, dirfd, MD_INDEX_FILE) < 0)
        e = errno;
    else if (fsync(dirfd) < 0)
        e = errno;
    if (fd >= 0)
        close(fd);
    gsize len = s->len;
    g_string_free(s, TRUE);
    if (e) {
        unlinkat(dirfd, tmp, 0);
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot write %s: %s",
                    MD_INDEX_FILE, g_strerror(e));
        return FALSE;
    }
    idx->loaded = TRUE;
    idx->dev = st.st_dev;
    idx->ino = st.st_ino;
    idx->off = (gint64)len;
    idx->records = 0;
    idx->version++;
    return TRUE;
}

gboolean
md_index_maybe_compact(MdIndex *idx, int dirfd, GError **error)
{
    if (idx->records < 1024 || idx->records < idx->entries->len)
        return TRUE;
    guint32 old_gen = 0;
    gboolean moved = md_cache_compact(idx, dirfd, &old_gen);
    char name[sizeof MD_CACHE_PREFIX + 12];
    if (!md_index_write_full(idx, dirfd, error)) {
        if (moved) {
            /* The file still names the old generation: drop the new one,
             * and make the next refresh read the file again. */
            g_snprintf(name, sizeof name, "%s%u", MD_CACHE_PREFIX, idx->cache_gen);
            unlinkat(dirfd, name, 0);
            idx->cache_gen = old_gen;
            idx->loaded = FALSE;
        }
        return FALSE;
    }
    if (moved) {
        g_snprintf(name, sizeof name, "%s%u", MD_CACHE_PREFIX, old_gen);
        unlinkat(dirfd, name, 0);
    }
    return TRUE;
}

/* --- the writers' lock ------------------------------------------------------ */

int
md_index_lock(int dirfd, GError **error)
{
    int fd = openat(dirfd, MD_INDEX_LOCK, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot open %s: %s",
                    MD_INDEX_LOCK, g_strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) < 0) {
        if (errno == EINTR)
            continue;
        g_set_error(error, KR_STORE_ERROR, KR_STORE_ERROR_FAILED, "cannot lock %s: %s",
                    MD_INDEX_LOCK, g_strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void
md_index_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}
