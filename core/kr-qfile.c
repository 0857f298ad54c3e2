/* SPDX-License-Identifier: MIT */
/*
 * kr-qfile.c - queue files: spooling, commit, load, in-place status
 * updates, moves, and queue IDs. The format is documented in
 * docs/queue-format.md; in short:
 *
 *   [file header, copy A (64 bytes)][file header, copy B (64 bytes)]
 *   [content, as received]
 *   [envelope records: I T S A* (H|X)* R* E]    (R holds a status slot)
 *
 *   kr_msg_new_spool(dir, error)        create DIR/.tmp-ID (0600, O_EXCL)
 *   kr_msg_new_spool_spare(dir)         the same from a pooled spare only
 *   kr_msg_append(msg, data, len, err)  stream content into the spool
 *   kr_msg_commit(msg, dir, error)      B: envelope, headers, fsync,
 *                                       rename to DIR/ID, fsync DIR
 *   kr_msg_commit_async(msg, dir, cb)   the same in a worker; cb on the loop
 *   kr_msg_discard(msg)                 remove an uncommitted spool
 *   kr_msg_load(dir, id, error)         parse and check a queue file
 *   kr_msg_rcpt_save(msg, rcpt, error)  B: pwrite one status slot, fdatasync
 *   kr_msg_rewrite_envelope(msg, err)   B: append a new envelope, switch the
 *                                       headers to it (crash safe)
 *   kr_msg_move / kr_msg_remove         B: link+unlink / unlink, fsync dirs
 *   kr_msg_move_lazy(msg, dir, error)   B: the same, the old name's removal
 *                                       not synced (a crash may keep both)
 *   kr_msg_remove_lazy(msg, error)      B: remove without a directory sync
 *                                       for it (a crash may bring the file
 *                                       back: repeated delivery); the inode
 *                                       is kept as a spare for a new spool
 *   kr_qfile_spares()                   (internal) spares in the pool
 *   kr_msg_new_copy(msg, dir, error)    B: a spool with msg's logical content
 *   kr_queue_list(dir)                  sorted queue IDs in dir
 *   kr_queue_sweep_spares()             B: remove spares left by an earlier run
 *   kr_queue_quarantine(dir, id, why)   B: move a bad file to corrupt/
 *
 * Ownership: kr_msg_discard does not drop the caller's reference; an
 * uncommitted spool whose last reference goes is removed as well.
 *
 * Errors: G_IO_ERROR codes. kr_msg_commit of a message that is already
 * committed (or discarded) fails with G_IO_ERROR_NOT_SUPPORTED, before any
 * I/O (modules/queue relies on it); a move onto an existing name fails
 * with G_IO_ERROR_EXISTS. Anything malformed in a file is
 * G_IO_ERROR_INVALID_DATA with the reason; files are untrusted input,
 * every length is checked against the file size and the bounds in
 * kr-msg-private.h before use.
 *
 * Crash safety: a file only gets its visible name after it was fsync'd
 * complete. The envelope rewrite never overwrites the live envelope: the
 * new one is appended and the two header copies are switched one at a
 * time with an fdatasync between, so one header copy always points at a
 * complete envelope. Status slots have two copies with sequence numbers;
 * a save writes the older copy, so a torn write leaves the previous
 * status readable. A slot with neither copy readable loads as PENDING
 * (at-least-once: never lose a delivery).
 */
#include "kr-msg-private.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define QF_MAGIC       "KRQ1"
#define QF_VERSION     1
#define QF_HDR_SIZE    64
#define QF_CONTENT_OFF (2 * QF_HDR_SIZE)
#define QF_REC_HDR     5                    /* type (1) + length (4) */
#define QF_REC_MAX     (16 * 1024 * 1024)   /* longest record */
#define QF_ENV_MAX     ((goffset)1 << 30)   /* longest envelope */
#define QF_STATUS_SIZE 464                  /* one status copy */
#define QF_SLOT_SIZE   (2 * QF_STATUS_SIZE) /* a recipient's slot */
#define QF_RCPT_FIXED  12                   /* notify, addr len, orcpt len */
#define QF_NO_ORCPT    0xFFFFFFFFu

enum {
    REC_ID = 'I',
    REC_TIME = 'T',
    REC_SENDER = 'S',
    REC_ATTR = 'A',
    REC_PREPEND = 'H',
    REC_REMOVE = 'X',
    REC_RCPT = 'R',
    REC_END = 'E',
};

/* --- little helpers ------------------------------------------------------ */

static guint32 crc_table[256];

static void
crc_init(void)
{
    static gsize done;
    if (g_once_init_enter(&done)) {
        for (guint32 i = 0; i < 256; i++) {
            guint32 c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
        g_once_init_leave(&done, 1);
    }
}

/* CRC-32 (IEEE 802.3, as zlib's crc32): start with 0. */
static guint32
crc32_update(guint32 crc, const void *data, gsize len)
{
    const guint8 *p = data;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void
put16(guint8 *p, guint16 v)
{
    p[0] = (guint8)v;
    p[1] = (guint8)(v >> 8);
}

static void
put32(guint8 *p, guint32 v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (guint8)(v >> (8 * i));
}

static void
put64(guint8 *p, guint64 v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (guint8)(v >> (8 * i));
}

static guint16
get16(const guint8 *p)
{
    return (guint16)(p[0] | p[1] << 8);
}

static guint32
get32(const guint8 *p)
{
    return (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
}

static guint64
get64(const guint8 *p)
{
    return (guint64)get32(p) | (guint64)get32(p + 4) << 32;
}

static gboolean
set_errno_error(GError **error, int e, const char *what, const char *path)
{
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s %s: %s", what, path,
                g_strerror(e));
    return FALSE;
}

static gboolean G_GNUC_PRINTF(2, 3) bad(GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, m);
    return FALSE;
}

gboolean
kr_qfile_pread_all(int fd, void *buf, gsize len, goffset off, GError **error)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return set_errno_error(error, errno, "read", "queue file");
        }
        if (r == 0)
            return bad(error, "unexpected end of queue file");
        p += r;
        len -= (gsize)r;
        off += r;
    }
    return TRUE;
}

static gboolean
pwrite_all(int fd, const void *buf, gsize len, goffset off, GError **error)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return set_errno_error(error, errno, "write", "queue file");
        }
        p += w;
        len -= (gsize)w;
        off += w;
    }
    return TRUE;
}

/* fsync a queue directory, shared with concurrent callers (kr-sync.h). */
static gboolean
fsync_dir(const char *path, GError **error)
{
    return kr_sync_dir_path(path, error);
}

/* Rename without ever replacing an existing file. */
static int
rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (link(from, to) != 0)
        return -1;
    return unlink(from) == 0 || errno == ENOENT ? 0 : -1;
}

static char *
file_path(KrQueueDir dir, const char *name)
{
    g_autofree char *d = kr_queue_dir_path(dir);
    return g_build_filename(d, name, NULL);
}

static char *
tmp_path(const KrMsg *msg)
{
    g_autofree char *name = g_strconcat(".tmp-", msg->id, NULL);
    return file_path(msg->dir, name);
}

/* --- queue IDs ----------------------------------------------------------- */

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void
put_b62(char *out, guint64 v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = b62[v % 62];
        v /= 62;
    }
}

/* 6 chars of seconds, 4 of microseconds (so IDs sort by time), 4 random
 * (getrandom: differs across processes, also after fork). */
static void
make_id(char out[KR_QUEUE_ID_LEN + 1])
{
    gint64 now = g_get_real_time();
    guint8 rnd[4];
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        put32(rnd, g_random_int() ^ (guint32)getpid());
    put_b62(out, (guint64)(now / G_USEC_PER_SEC), 6);
    put_b62(out + 6, (guint64)(now % G_USEC_PER_SEC), 4);
    for (int i = 0; i < 4; i++)
        out[10 + i] = b62[rnd[i] % 62];
    out[KR_QUEUE_ID_LEN] = 0;
}

/* --- spooling ------------------------------------------------------------ */

KrQueueDir
kr_msg_queue_dir(const KrMsg *msg)
{
    return msg->dir;
}

/* --- spare files ---------------------------------------------------------
 *
 * Creating an inode is the dearest thing a queue file costs on some file
 * systems (ext4 without a journal scans past every inode freed in the
 * last hours), so a finished queue file is not unlinked but kept as a
 * spare for the next spool: kr_msg_remove_lazy renames DIR/ID to
 * DIR/.spare-ID, empties it if it is bigger than SPARE_KEEP (a smaller
 * one keeps its blocks, which the next message overwrites in place),
 * fsyncs DIR (group commit, so the old name is durably gone before the
 * inode holds another message), and when the message's last reference
 * goes its descriptor joins the pool. kr_msg_new_spool renames a spare
 * to DIR/.tmp-NEWID and writes into it; the commit truncates the file to
 * its exact size as always. The pool is per process and bounded
 * (SPARE_MAX files of at most SPARE_KEEP bytes); a write that finds the
 * file system full empties every spare. A spare left by a crash is
 * removed by the recovery scan. */

#define SPARE_MAX  64          /* open descriptors: kept well below the fd budget */
#define SPARE_KEEP (64 * 1024) /* a spare up to this size keeps its blocks */

typedef struct {
    int fd;
    char *path;
} Spare;

static GMutex spare_lock;
static GArray *spares;      /* Spare, used last-in first-out */
static guint spare_pending; /* renamed to .spare- but not yet released */

/* Reserve room in the pool; FALSE if it is full. */
static gboolean
spare_reserve(void)
{
    g_mutex_lock(&spare_lock);
    guint have = (spares ? spares->len : 0) + spare_pending;
    gboolean ok = have < SPARE_MAX;
    if (ok)
        spare_pending++;
    g_mutex_unlock(&spare_lock);
    return ok;
}

/* Give a reservation back; with fd >= 0, add that spare to the pool. */
static void
spare_put(int fd, char *path)
{
    g_mutex_lock(&spare_lock);
    spare_pending--;
    if (fd >= 0) {
        if (!spares)
            spares = g_array_new(FALSE, FALSE, sizeof(Spare));
        Spare sp = {fd, path};
        g_array_append_val(spares, sp);
    }
    g_mutex_unlock(&spare_lock);
}

static gboolean
spare_take(Spare *sp)
{
    g_mutex_lock(&spare_lock);
    gboolean ok = spares && spares->len > 0;
    if (ok) {
        *sp = g_array_index(spares, Spare, spares->len - 1);
        g_array_set_size(spares, spares->len - 1);
    }
    g_mutex_unlock(&spare_lock);
    return ok;
}

/* Turn a spare into msg's spool (DIR/.tmp-ID); FALSE if none worked. */
static gboolean
spool_from_spare(KrMsg *msg)
{
    Spare sp;
    while (spare_take(&sp)) {
        make_id(msg->id);
        g_autofree char *path = tmp_path(msg);
        gboolean ok = renameat2(AT_FDCWD, sp.path, AT_FDCWD, path, RENAME_NOREPLACE) == 0;
        if (!ok)
            g_debug("spare %s: rename to %s: %s", sp.path, path, g_strerror(errno));
        g_free(sp.path);
        if (ok) {
            msg->fd = sp.fd;
            return TRUE;
        }
        close(sp.fd);
    }
    return FALSE;
}

/* Give the disk space spares hold back (the file system is full). */
static void
spare_drain(void)
{
    g_mutex_lock(&spare_lock);
    for (guint i = 0; spares && i < spares->len; i++)
        if (ftruncate(g_array_index(spares, Spare, i).fd, 0) != 0)
            g_debug("spare %s: ftruncate: %s", g_array_index(spares, Spare, i).path,
                    g_strerror(errno));
    g_mutex_unlock(&spare_lock);
}

static void
check_full(const GError *err)
{
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
        spare_drain();
}

guint
kr_qfile_spares(void)
{
    g_mutex_lock(&spare_lock);
    guint n = spares ? spares->len : 0;
    g_mutex_unlock(&spare_lock);
    return n;
}

KrMsg *
kr_msg_new_spool_spare(KrQueueDir dir)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    if (kr_qfile_spares() == 0)
        return NULL;
    KrMsg *msg = kr_msg_alloc();
    msg->dir = dir;
    msg->content_off = QF_CONTENT_OFF;
    if (!spool_from_spare(msg)) {
        msg->gone = TRUE;
        kr_msg_unref(msg);
        return NULL;
    }
    msg->arrival = g_get_real_time() / G_USEC_PER_SEC;
    return msg;
}

KrMsg *
kr_msg_new_spool(KrQueueDir dir, GError **error)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    KrMsg *msg = kr_msg_alloc();
    msg->dir = dir;
    msg->content_off = QF_CONTENT_OFF;
    spool_from_spare(msg);
    for (int tries = 0; msg->fd < 0; tries++) {
        make_id(msg->id);
        g_autofree char *path = tmp_path(msg);
        msg->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (msg->fd < 0 && (errno != EEXIST || tries >= 100)) {
            set_errno_error(error, errno, "cannot create", path);
            msg->gone = TRUE;
            kr_msg_unref(msg);
            return NULL;
        }
    }
    msg->arrival = g_get_real_time() / G_USEC_PER_SEC;
    return msg;
}

gboolean
kr_msg_append(KrMsg *msg, const void *data, gsize len, GError **error)
{
    g_return_val_if_fail(msg != NULL && (data != NULL || len == 0), FALSE);
    if (msg->committed || msg->gone || msg->fd < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s: append to a committed or discarded message", msg->id);
        return FALSE;
    }
    if (msg->write_error) {
        g_propagate_error(error, g_error_copy(msg->write_error));
        return FALSE;
    }
    if (len == 0)
        return TRUE;
    GError *err = NULL;
    if (!pwrite_all(msg->fd, data, len, msg->content_off + msg->raw_size, &err)) {
        check_full(err);
        msg->write_error = g_error_copy(err);
        g_propagate_error(error, err);
        return FALSE;
    }
    msg->raw_size += (goffset)len;
    kr_msg_content_changed(msg);
    return TRUE;
}

/* --- writing the envelope ------------------------------------------------ */

static void
rec_begin(GByteArray *b, guint8 type, gsize *start_r)
{
    guint8 h[QF_REC_HDR] = {type, 0, 0, 0, 0};
    *start_r = b->len;
    g_byte_array_append(b, h, sizeof h);
}

static void
rec_end(GByteArray *b, gsize start)
{
    put32(b->data + start + 1, (guint32)(b->len - start - QF_REC_HDR));
}

static void
rec_bytes(GByteArray *b, guint8 type, const void *a, gsize alen, const void *c, gsize clen)
{
    gsize s;
    rec_begin(b, type, &s);
    g_byte_array_append(b, a, (guint)alen);
    if (c)
        g_byte_array_append(b, c, (guint)clen);
    rec_end(b, s);
}

static void
encode_status(guint8 *p, const KrRcpt *r, guint32 seq)
{
    memset(p, 0, QF_STATUS_SIZE);
    put32(p, seq);
    p[4] = (guint8)((unsigned)r->state <= KR_RCPT_EXPANDED ? r->state : KR_RCPT_PENDING);
    put32(p + 8, r->attempts);
    put32(p + 12, (guint32)r->code);
    put64(p + 16, (guint64)r->next_try);
    put64(p + 24, (guint64)r->first_fail);
    memcpy(p + 32, r->ecode, strnlen(r->ecode, sizeof r->ecode - 1));
    gsize dl = strnlen(r->diag, KR_DIAG_MAX);
    put16(p + 44, (guint16)dl);
    memcpy(p + 46, r->diag, dl);
    put32(p + QF_STATUS_SIZE - 4, crc32_update(0, p, QF_STATUS_SIZE - 4));
}

/* FALSE if the copy is unreadable. */
static gboolean
decode_status(const guint8 *p, KrRcpt *r, guint32 *seq_r)
{
    if (get32(p + QF_STATUS_SIZE - 4) != crc32_update(0, p, QF_STATUS_SIZE - 4))
        return FALSE;
    guint16 dl = get16(p + 44);
    if (p[4] > KR_RCPT_EXPANDED || dl > KR_DIAG_MAX || memchr(p + 46, 0, dl) ||
        !memchr(p + 32, 0, sizeof r->ecode))
        return FALSE;
    *seq_r = get32(p);
    r->state = p[4];
    r->attempts = get32(p + 8);
    r->code = (int)get32(p + 12);
    r->next_try = (gint64)get64(p + 16);
    r->first_fail = (gint64)get64(p + 24);
    memcpy(r->ecode, p + 32, sizeof r->ecode);
    memcpy(r->diag, p + 46, dl);
    r->diag[dl] = 0;
    return TRUE;
}

static gboolean
check_limits(KrMsg *msg, GError **error)
{
    if (msg->rcpts->len > KR_MSG_MAX_RCPTS)
        return bad(error, "%s: too many recipients (%u)", msg->id, msg->rcpts->len);
    if (strlen(msg->sender) > KR_MSG_MAX_ADDR)
        return bad(error, "%s: sender address too long", msg->id);
    for (guint i = 0; i < msg->rcpts->len; i++) {
        const KrRcpt *r = msg->rcpts->pdata[i];
        if (!r->address || strlen(r->address) > KR_MSG_MAX_ADDR ||
            (r->orcpt && strlen(r->orcpt) > KR_MSG_MAX_ADDR))
            return bad(error, "%s: recipient %u: address missing or too long", msg->id, i);
    }
    if (g_hash_table_size(msg->attrs) > KR_MSG_MAX_ATTRS)
        return bad(error, "%s: too many attributes", msg->id);
    return TRUE;
}

/* Serialise the envelope; slot_offs[i] gets recipient i's slot offset
 * within it. Returns the CRC (slots excluded). */
static guint32
build_envelope(KrMsg *msg, GByteArray *b, gsize *slot_offs)
{
    guint8 t[8];
    rec_bytes(b, REC_ID, msg->id, KR_QUEUE_ID_LEN, NULL, 0);
    put64(t, (guint64)msg->arrival);
    rec_bytes(b, REC_TIME, t, 8, NULL, 0);
    rec_bytes(b, REC_SENDER, msg->sender, strlen(msg->sender), NULL, 0);
    g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(msg->attrs), (GCompareFunc)strcmp);
    for (GList *l = keys; l; l = l->next) {
        const char *v = g_hash_table_lookup(msg->attrs, l->data);
        rec_bytes(b, REC_ATTR, l->data, strlen(l->data) + 1, v, strlen(v));
    }
    for (guint i = 0; i < msg->edits->len; i++) {
        const KrHdrEdit *e = msg->edits->pdata[i];
        if (e->remove)
            rec_bytes(b, REC_REMOVE, e->name, strlen(e->name), NULL, 0);
        else
            rec_bytes(b, REC_PREPEND, e->name, strlen(e->name) + 1, e->value, strlen(e->value));
    }
    for (guint i = 0; i < msg->rcpts->len; i++) {
        const KrRcpt *r = msg->rcpts->pdata[i];
        gsize s, al = strlen(r->address), ol = r->orcpt ? strlen(r->orcpt) : 0;
        guint8 fixed[QF_RCPT_FIXED];
        put32(fixed, r->notify & 0xF);
        put32(fixed + 4, (guint32)al);
        put32(fixed + 8, r->orcpt ? (guint32)ol : QF_NO_ORCPT);
        rec_begin(b, REC_RCPT, &s);
        g_byte_array_append(b, fixed, sizeof fixed);
        g_byte_array_append(b, (const guint8 *)r->address, (guint)al);
        if (r->orcpt)
            g_byte_array_append(b, (const guint8 *)r->orcpt, (guint)ol);
        slot_offs[i] = b->len;
        guint8 slot[QF_SLOT_SIZE];
        encode_status(slot, r, 1);
        encode_status(slot + QF_STATUS_SIZE, r, 0);
        g_byte_array_append(b, slot, sizeof slot);
        rec_end(b, s);
    }
    /* CRC over everything so far except the slots. */
    guint32 crc = 0;
    gsize from = 0;
    for (guint i = 0; i < msg->rcpts->len; i++) {
        crc = crc32_update(crc, b->data + from, slot_offs[i] - from);
        from = slot_offs[i] + QF_SLOT_SIZE;
    }
    crc = crc32_update(crc, b->data + from, b->len - from);
    guint8 end[8];
    put32(end, msg->rcpts->len + g_hash_table_size(msg->attrs) + msg->edits->len + 3);
    put32(end + 4, crc);
    rec_bytes(b, REC_END, end, sizeof end, NULL, 0);
    return crc;
}

static void
encode_header(guint8 *h, const KrMsg *msg, guint32 gen, goffset env_off, goffset env_len,
              guint32 env_crc)
{
    memset(h, 0, QF_HDR_SIZE);
    memcpy(h, QF_MAGIC, 4);
    put16(h + 4, QF_VERSION);
    put16(h + 6, QF_HDR_SIZE);
    put32(h + 8, gen);
    put64(h + 16, (guint64)msg->content_off);
    put64(h + 24, (guint64)msg->raw_size);
    put64(h + 32, (guint64)env_off);
    put64(h + 40, (guint64)env_len);
    put32(h + 48, env_crc);
    put32(h + 60, crc32_update(0, h, 60));
}

/* Point every recipient at its slot in a freshly written envelope. */
static void
adopt_envelope(KrMsg *msg, goffset env_off, gsize env_len, guint32 crc, const gsize *slot_offs)
{
    msg->env_off = env_off;
    msg->env_len = (goffset)env_len;
    msg->env_crc = crc;
    for (guint i = 0; i < msg->rcpts->len; i++) {
        KrRcptPriv *r = msg->rcpts->pdata[i];
        r->pub.index = i;
        r->pub.slot_off = env_off + (goffset)slot_offs[i];
        r->slot_live = 0;
        r->slot_seq = 1;
    }
}

gboolean
kr_msg_commit(KrMsg *msg, KrQueueDir dir, GError **error)
{
    g_return_val_if_fail(msg != NULL && (unsigned)dir < KR_QUEUE_N_DIRS, FALSE);
    crc_init();
    if (msg->committed || msg->gone || msg->fd < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s: already committed or discarded", msg->id);
        return FALSE;
    }
    if (msg->write_error) {
        g_propagate_error(error, g_error_copy(msg->write_error));
        return FALSE;
    }
    if (!check_limits(msg, error))
        return FALSE;
    goffset env_off = msg->content_off + msg->raw_size;
    g_autoptr(GByteArray) env = g_byte_array_new();
    g_autofree gsize *slot_offs = g_new(gsize, msg->rcpts->len + 1);
    guint32 crc = build_envelope(msg, env, slot_offs);
    guint8 hdr[QF_CONTENT_OFF];
    encode_header(hdr, msg, 1, env_off, env->len, crc);
    memcpy(hdr + QF_HDR_SIZE, hdr, QF_HDR_SIZE);
    GError *werr = NULL;
    if (!pwrite_all(msg->fd, env->data, env->len, env_off, &werr) ||
        !pwrite_all(msg->fd, hdr, sizeof hdr, 0, &werr)) {
        check_full(werr);
        g_propagate_error(error, werr);
        return FALSE;
    }
    if (ftruncate(msg->fd, env_off + env->len) != 0 || fsync(msg->fd) != 0) {
        int e = errno;
        if (e == ENOSPC || e == EDQUOT)
            spare_drain();
        return set_errno_error(error, e, "sync", msg->id);
    }

    g_autofree char *from = tmp_path(msg);
    g_autofree char *to = file_path(dir, msg->id);
    if (rename_noreplace(from, to) != 0)
        return set_errno_error(error, errno, "cannot rename to", to);
    msg->committed = TRUE;
    msg->dir = dir;
    msg->gen = 1;
    msg->live_hdr = 0;
    adopt_envelope(msg, env_off, env->len, crc, slot_offs);
    /* Only the new name must be durable: should the spool's .tmp- name
     * come back after a crash, it is debris for the recovery scan. If this
     * fails the file is visible anyway: the caller must not acknowledge,
     * so the message may be delivered and sent again (at-least-once).
     * Concurrent commits into this directory share the fsync (group
     * commit, kr-sync.c). */
    g_autofree char *dpath = kr_queue_dir_path(dir);
    if (!fsync_dir(dpath, error))
        return FALSE;
    g_debug("%s: committed to %s, size=%" G_GINT64_FORMAT ", nrcpt=%u", msg->id,
            kr_queue_dir_name(dir), (gint64)msg->raw_size, msg->rcpts->len);
    return TRUE;
}

typedef struct {
    KrMsg *msg;
    KrQueueDir dir;
    KrCommitFunc done;
    gpointer user_data;
    GError *error;
} CommitJob;

static void
commit_work(gpointer p)
{
    CommitJob *j = p;
    kr_msg_commit(j->msg, j->dir, &j->error);
}

static void
commit_done(gpointer p)
{
    CommitJob *j = p;
    if (j->done)
        j->done(j->msg, j->error, j->user_data);
    g_clear_error(&j->error);
    kr_msg_unref(j->msg);
    g_free(j);
}

void
kr_msg_commit_async(KrMsg *msg, KrQueueDir dir, KrCommitFunc done, gpointer user_data)
{
    g_return_if_fail(msg != NULL);
    CommitJob *j = g_new0(CommitJob, 1);
    j->msg = kr_msg_ref(msg);
    j->dir = dir;
    j->done = done;
    j->user_data = user_data;
    kr_worker_run(commit_work, commit_done, j);
}

void
kr_msg_discard(KrMsg *msg)
{
    g_return_if_fail(msg != NULL);
    if (msg->committed) {
        g_critical("%s: kr_msg_discard on a committed message", msg->id);
        return;
    }
    kr_qfile_release(msg);
}

void
kr_qfile_release(KrMsg *msg)
{
    if (msg->spare_path && g_atomic_int_get(&msg->refcount) == 0) {
        /* The last reference: nobody reads this content any more. */
        spare_put(msg->fd, g_steal_pointer(&msg->spare_path));
        msg->fd = -1;
    }
    if (!msg->committed && !msg->gone && msg->id[0]) {
        g_autofree char *path = tmp_path(msg);
        if (unlink(path) != 0 && errno != ENOENT)
            g_warning("%s: cannot remove %s: %s", msg->id, path, g_strerror(errno));
    }
    if (!msg->committed)
        msg->gone = TRUE;
    if (msg->fd >= 0 && (!msg->committed || msg->refcount == 0)) {
        close(msg->fd);
        msg->fd = -1;
    }
}

/* --- loading ------------------------------------------------------------- */

typedef struct {
    guint32 gen;
    goffset content_off, content_len, env_off, env_len;
    guint32 env_crc;
} FileHeader;

static gboolean
decode_header(const guint8 *h, goffset size, FileHeader *fh, GError **error)
{
    if (memcmp(h, QF_MAGIC, 4) != 0)
        return bad(error, "not a queue file (bad magic)");
    if (get32(h + 60) != crc32_update(0, h, 60))
        return bad(error, "file header checksum mismatch");
    if (get16(h + 4) != QF_VERSION || get16(h + 6) != QF_HDR_SIZE)
        return bad(error, "unsupported queue file version %u", get16(h + 4));
    guint64 co = get64(h + 16), cl = get64(h + 24), eo = get64(h + 32), el = get64(h + 40);
    guint64 sz = (guint64)size;
    if (co < QF_CONTENT_OFF || co > sz || cl > sz - co || eo < co + cl || eo > sz || el > sz - eo ||
        el < QF_REC_HDR + 8 || el > (guint64)QF_ENV_MAX)
        return bad(error, "file header offsets out of range (file truncated?)");
    fh->gen = get32(h + 8);
    fh->content_off = (goffset)co;
    fh->content_len = (goffset)cl;
    fh->env_off = (goffset)eo;
    fh->env_len = (goffset)el;
    fh->env_crc = get32(h + 48);
    return TRUE;
}

static gboolean
no_nul(const guint8 *p, gsize n)
{
    return memchr(p, 0, n) == NULL;
}

static gboolean
parse_rcpt(KrMsg *msg, const guint8 *p, gsize len, gsize slot_pos, GError **error)
{
    guint32 notify = get32(p), al = get32(p + 4), ol = get32(p + 8);
    gsize have = len - QF_RCPT_FIXED - QF_SLOT_SIZE;
    gsize olen = ol == QF_NO_ORCPT ? 0 : ol;
    if (notify & ~0xFu || al > KR_MSG_MAX_ADDR || olen > KR_MSG_MAX_ADDR ||
        (gsize)al + olen != have)
        return bad(error, "bad recipient record %u", msg->rcpts->len);
    const guint8 *a = p + QF_RCPT_FIXED, *o = a + al;
    if (!no_nul(a, al) || !no_nul(o, olen))
        return bad(error, "NUL in recipient record %u", msg->rcpts->len);
    KrRcpt *r = kr_msg_push_rcpt(msg, (const char *)a, al);
    KrRcptPriv *rp = (KrRcptPriv *)r;
    r->notify = notify;
    if (ol != QF_NO_ORCPT)
        r->orcpt = g_strndup((const char *)o, olen);
    r->slot_off = msg->env_off + (goffset)slot_pos;
    const guint8 *slot = p + len - QF_SLOT_SIZE;
    KrRcpt c[2];
    guint32 seq[2];
    gboolean ok[2];
    for (int i = 0; i < 2; i++) {
        memset(&c[i], 0, sizeof c[i]);
        ok[i] = decode_status(slot + i * QF_STATUS_SIZE, &c[i], &seq[i]);
    }
    int live = ok[0] && ok[1] ? (seq[1] > seq[0] ? 1 : 0) : ok[0] ? 0 : ok[1] ? 1 : -1;
    if (live < 0) {
        g_warning("%s: recipient %u <%s>: status slot unreadable, treating it as pending", msg->id,
                  r->index, r->address);
        rp->slot_live = 1; /* the next save writes copy 0 */
        rp->slot_seq = 0;
        return TRUE;
    }
    if (!ok[0] || !ok[1])
        g_message("%s: recipient %u: one copy of the status slot unreadable, using the other",
                  msg->id, r->index);
    r->state = c[live].state;
    r->attempts = c[live].attempts;
    r->next_try = c[live].next_try;
    r->first_fail = c[live].first_fail;
    r->code = c[live].code;
    memcpy(r->ecode, c[live].ecode, sizeof r->ecode);
    memcpy(r->diag, c[live].diag, sizeof r->diag);
    rp->slot_live = live;
    rp->slot_seq = seq[live];
    return TRUE;
}

static gboolean
parse_record(KrMsg *msg, guint8 type, const guint8 *p, gsize len, gsize pos, guint nrec,
             gboolean *have_time, gboolean *have_sender, GError **error)
{
    if (nrec == 0 && type != REC_ID)
        return bad(error, "first record is not the queue ID");
    switch (type) {
    case REC_ID:
        if (nrec != 0 || len != KR_QUEUE_ID_LEN || memcmp(p, msg->id, KR_QUEUE_ID_LEN) != 0)
            return bad(error, "queue ID record does not match the file name");
        return TRUE;
    case REC_TIME:
        if (len != 8 || *have_time)
            return bad(error, "bad arrival time record");
        msg->arrival = (gint64)get64(p);
        *have_time = TRUE;
        return TRUE;
    case REC_SENDER:
        if (len > KR_MSG_MAX_ADDR || *have_sender || !no_nul(p, len))
            return bad(error, "bad sender record");
        g_free(msg->sender);
        msg->sender = g_strndup((const char *)p, len);
        *have_sender = TRUE;
        return TRUE;
    case REC_ATTR: {
        const guint8 *z = memchr(p, 0, len);
        gsize kl = z ? (gsize)(z - p) : 0, vl = z ? len - kl - 1 : 0;
        g_autofree char *key = z ? g_strndup((const char *)p, kl) : NULL;
        if (!z || !kr_msg_attr_key_ok(key) || vl > KR_MSG_ATTR_VALUE_MAX || !no_nul(z + 1, vl) ||
            g_hash_table_contains(msg->attrs, key) ||
            g_hash_table_size(msg->attrs) >= KR_MSG_MAX_ATTRS)
            return bad(error, "bad attribute record");
        g_hash_table_insert(msg->attrs, g_steal_pointer(&key), g_strndup((const char *)z + 1, vl));
        return TRUE;
    }
    case REC_PREPEND:
    case REC_REMOVE: {
        const guint8 *z = type == REC_PREPEND ? memchr(p, 0, len) : p + len;
        gsize nl = z ? (gsize)(z - p) : 0, vl = z && type == REC_PREPEND ? len - nl - 1 : 0;
        if (!z || !kr_msg_hdr_name_ok((const char *)p, nl) ||
            (type == REC_PREPEND && !kr_msg_hdr_value_ok((const char *)z + 1, vl)))
            return bad(error, "bad header edit record");
        g_autofree char *name = g_strndup((const char *)p, nl);
        g_autofree char *value = type == REC_PREPEND ? g_strndup((const char *)z + 1, vl) : NULL;
        if (!kr_msg_push_edit(msg, type == REC_REMOVE, name, value))
            return bad(error, "too many header edits");
        return TRUE;
    }
    case REC_RCPT:
        if (len < QF_RCPT_FIXED + QF_SLOT_SIZE || msg->rcpts->len >= KR_MSG_MAX_RCPTS)
            return bad(error, "bad recipient record");
        return parse_rcpt(msg, p, len, pos + QF_REC_HDR + len - QF_SLOT_SIZE, error);
    default:
        if (type >= 'a' && type <= 'z')
            return TRUE; /* optional record from a later version */
        return bad(error, "unknown record type 0x%02x", type);
    }
}

static gboolean
parse_envelope(KrMsg *msg, const guint8 *env, gsize env_len, guint32 hdr_crc, GError **error)
{
    gsize p = 0;
    guint nrec = 0;
    guint32 crc = 0;
    gboolean have_time = FALSE, have_sender = FALSE;
    while (p < env_len) {
        if (env_len - p < QF_REC_HDR)
            return bad(error, "truncated record header");
        guint8 type = env[p];
        guint32 len = get32(env + p + 1);
        if (len > QF_REC_MAX || len > env_len - p - QF_REC_HDR)
            return bad(error, "record length %u out of range", len);
        const guint8 *payload = env + p + QF_REC_HDR;
        if (type == REC_END) {
            if (len != 8 || p + QF_REC_HDR + 8 != env_len)
                return bad(error, "misplaced END record");
            if (get32(payload) != nrec || get32(payload + 4) != crc || crc != hdr_crc)
                return bad(error, "envelope checksum mismatch");
            if (!have_time || !have_sender)
                return bad(error, "arrival time or sender record missing");
            return TRUE;
        }
        gsize covered = QF_REC_HDR + len;
        if (type == REC_RCPT && len >= QF_RCPT_FIXED + QF_SLOT_SIZE)
            covered -= QF_SLOT_SIZE;
        crc = crc32_update(crc, env + p, covered);
        if (!parse_record(msg, type, payload, len, p, nrec, &have_time, &have_sender, error))
            return FALSE;
        nrec++;
        p += QF_REC_HDR + len;
    }
    return bad(error, "no END record");
}

/* Build a message from the file described by fh; NULL on error. */
static KrMsg *
load_with(int fd, KrQueueDir dir, const char *id, const FileHeader *fh, GError **error)
{
    g_autofree guint8 *env = g_try_malloc((gsize)fh->env_len);
    if (!env) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "out of memory");
        return NULL;
    }
    if (!kr_qfile_pread_all(fd, env, (gsize)fh->env_len, fh->env_off, error))
        return NULL;
    KrMsg *msg = kr_msg_alloc();
    g_strlcpy(msg->id, id, sizeof msg->id);
    msg->dir = dir;
    msg->committed = TRUE;
    msg->content_off = fh->content_off;
    msg->raw_size = fh->content_len;
    msg->env_off = fh->env_off;
    msg->env_len = fh->env_len;
    msg->env_crc = fh->env_crc;
    if (!parse_envelope(msg, env, (gsize)fh->env_len, fh->env_crc, error)) {
        kr_msg_unref(msg);
        return NULL;
    }
    return msg;
}

KrMsg *
kr_msg_load(KrQueueDir dir, const char *id, GError **error)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    crc_init();
    if (!kr_queue_id_valid(id)) {
        bad(error, "invalid queue ID");
        return NULL;
    }
    g_autofree char *path = file_path(dir, id);
    gboolean ro = FALSE;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && (errno == EACCES || errno == EROFS)) {
        ro = TRUE;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    }
    if (fd < 0) {
        set_errno_error(error, errno, "cannot open", path);
        return NULL;
    }
    struct stat st;
    guint8 h[QF_CONTENT_OFF];
    FileHeader fh[2] = {{0}};
    GError *errs[2] = {NULL, NULL};
    gboolean ok[2] = {FALSE, FALSE};
    KrMsg *msg = NULL;
    if (fstat(fd, &st) != 0) {
        set_errno_error(error, errno, "stat", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        bad(error, "not a regular file");
        goto out;
    }
    if (st.st_size < QF_CONTENT_OFF) {
        bad(error, "file too short (%" G_GINT64_FORMAT " bytes)", (gint64)st.st_size);
        goto out;
    }
    if (!kr_qfile_pread_all(fd, h, sizeof h, 0, error))
        goto out;
    for (int i = 0; i < 2; i++)
        ok[i] = decode_header(h + i * QF_HDR_SIZE, st.st_size, &fh[i], &errs[i]);
    /* Try the newest valid header first, then the other one. */
    int first = ok[0] && ok[1] ? (fh[1].gen > fh[0].gen ? 1 : 0) : ok[0] ? 0 : 1;
    for (int k = 0; k < 2 && !msg; k++) {
        int i = k == 0 ? first : 1 - first;
        if (!ok[i])
            continue;
        g_clear_error(&errs[i]);
        msg = load_with(fd, dir, id, &fh[i], &errs[i]);
        if (msg) {
            msg->live_hdr = i;
            msg->gen = MAX(ok[0] ? fh[0].gen : 0, ok[1] ? fh[1].gen : 0);
            if (errs[1 - i])
                g_message("%s: header copy %c unusable (%s), using copy %c", id, i == 0 ? 'B' : 'A',
                          errs[1 - i]->message, i == 0 ? 'A' : 'B');
        }
    }
    if (!msg) {
        GError *e = errs[first] ? errs[first] : errs[1 - first];
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s", id,
                    e ? e->message : "unreadable");
    }
out:
    g_clear_error(&errs[0]);
    g_clear_error(&errs[1]);
    if (!msg) {
        close(fd);
        return NULL;
    }
    if (fcntl(fd, F_SETFL, 0) != 0) /* O_NONBLOCK was only for opening */
        g_debug("%s: fcntl: %s", id, g_strerror(errno));
    msg->fd = fd;
    msg->readonly = ro;
    return msg;
}

/* --- changing committed files -------------------------------------------- */

static gboolean
check_writable(KrMsg *msg, GError **error)
{
    if (msg->fd < 0 || msg->readonly) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_READ_ONLY, "%s: queue file not writable",
                    msg->id);
        return FALSE;
    }
    return TRUE;
}

gboolean
kr_msg_rcpt_save(KrMsg *msg, KrRcpt *rcpt, GError **error)
{
    g_return_val_if_fail(msg != NULL && rcpt != NULL, FALSE);
    g_return_val_if_fail(rcpt->index < msg->rcpts->len && msg->rcpts->pdata[rcpt->index] == rcpt,
                         FALSE);
    if (!msg->committed)
        return TRUE; /* the commit writes it */
    if (!check_writable(msg, error))
        return FALSE;
    if (rcpt->slot_off <= 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "%s: recipient %u is not in the queue file yet", msg->id, rcpt->index);
        return FALSE;
    }
    crc_init();
    KrRcptPriv *rp = (KrRcptPriv *)rcpt;
    int target = 1 - rp->slot_live;
    guint8 buf[QF_STATUS_SIZE];
    encode_status(buf, rcpt, rp->slot_seq + 1);
    if (!pwrite_all(msg->fd, buf, sizeof buf, rcpt->slot_off + target * QF_STATUS_SIZE, error))
        return FALSE;
    if (fdatasync(msg->fd) != 0)
        return set_errno_error(error, errno, "fdatasync", msg->id);
    rp->slot_live = target;
    rp->slot_seq++;
    return TRUE;
}

gboolean
kr_msg_rewrite_envelope(KrMsg *msg, GError **error)
{
    g_return_val_if_fail(msg != NULL, FALSE);
    if (!msg->committed)
        return TRUE; /* the commit writes the envelope */
    if (!check_writable(msg, error) || !check_limits(msg, error))
        return FALSE;
    crc_init();
    /* Never touch the live envelope: append the new one after it (cutting
     * off what a crashed rewrite may have left), then switch the header
     * copies one at a time, the stale one first. */
    goffset env_off = msg->env_off + msg->env_len;
    g_autoptr(GByteArray) env = g_byte_array_new();
    g_autofree gsize *slot_offs = g_new(gsize, msg->rcpts->len + 1);
    guint32 crc = build_envelope(msg, env, slot_offs);
    guint8 hdr[QF_HDR_SIZE];
    encode_header(hdr, msg, msg->gen + 1, env_off, env->len, crc);
    int other = 1 - msg->live_hdr;
    if (ftruncate(msg->fd, env_off) != 0)
        return set_errno_error(error, errno, "ftruncate", msg->id);
    if (!pwrite_all(msg->fd, env->data, env->len, env_off, error) ||
        !pwrite_all(msg->fd, hdr, sizeof hdr, other * QF_HDR_SIZE, error))
        return FALSE;
    if (fdatasync(msg->fd) != 0)
        return set_errno_error(error, errno, "fdatasync", msg->id);
    /* Copy `other` now points at the new, durable envelope. */
    msg->gen++;
    msg->live_hdr = other;
    adopt_envelope(msg, env_off, env->len, crc, slot_offs);
    if (!pwrite_all(msg->fd, hdr, sizeof hdr, (1 - other) * QF_HDR_SIZE, error))
        return FALSE;
    if (fdatasync(msg->fd) != 0)
        return set_errno_error(error, errno, "fdatasync", msg->id);
    return TRUE;
}

/* Give the file the name TO (never replacing one) and make that name
 * durable BEFORE the old name goes: link, fsync TO's directory, unlink.
 * A plain rename would not do on a file system without a journal
 * (ext4 "^has_journal"): the two directory blocks are written back
 * independently, so a concurrent fsync of the source directory (any
 * commit into incoming/) could make the removal durable before the new
 * entry, and a crash in between would lose the file. With link + sync +
 * unlink a crash leaves the file under the new name, the old one, or
 * both (the recovery scan keeps one). Where hard links are not supported,
 * a rename and a sync of both directories. */
static gboolean
move_file(KrMsg *msg, KrQueueDir dir, gboolean sync_source, GError **error)
{
    g_return_val_if_fail(msg != NULL && (unsigned)dir < KR_QUEUE_N_DIRS, FALSE);
    if (!msg->committed || msg->gone) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: not in the queue", msg->id);
        return FALSE;
    }
    if (dir == msg->dir)
        return TRUE;
    g_autofree char *from = file_path(msg->dir, msg->id);
    g_autofree char *to = file_path(dir, msg->id);
    g_autofree char *dpath = kr_queue_dir_path(dir);
    g_autofree char *opath = kr_queue_dir_path(msg->dir);
    if (link(from, to) != 0) {
        int e = errno;
        if (e != EPERM && e != ENOTSUP && e != EOPNOTSUPP && e != EMLINK && e != ENOSYS)
            return set_errno_error(error, e, "cannot link to", to);
        if (rename_noreplace(from, to) != 0)
            return set_errno_error(error, errno, "cannot rename to", to);
        msg->dir = dir;
        return fsync_dir(dpath, error) && fsync_dir(opath, error);
    }
    if (!fsync_dir(dpath, error)) {
        /* The new name may not be durable: keep the old one. */
        if (unlink(to) != 0)
            g_warning("%s: cannot remove %s: %s", msg->id, to, g_strerror(errno));
        return FALSE;
    }
    if (unlink(from) != 0 && errno != ENOENT) {
        /* Two names: the recovery scan sorts that out, the file is
         * where the caller wanted it. */
        g_warning("%s: cannot remove %s: %s", msg->id, from, g_strerror(errno));
    }
    msg->dir = dir;
    if (!sync_source)
        return TRUE;
    return fsync_dir(opath, error);
}

gboolean
kr_msg_move(KrMsg *msg, KrQueueDir dir, GError **error)
{
    return move_file(msg, dir, TRUE, error);
}

gboolean
kr_msg_move_lazy(KrMsg *msg, KrQueueDir dir, GError **error)
{
    return move_file(msg, dir, FALSE, error);
}

/* Keep a removed file as a spare (see "spare files"): TRUE if it was,
 * FALSE if the caller should unlink it instead (nothing changed then,
 * or the file is already gone from path). */
static gboolean
keep_as_spare(KrMsg *msg, const char *path, gboolean *gone_r)
{
    *gone_r = FALSE;
    if (msg->fd < 0 || msg->readonly || !spare_reserve())
        return FALSE;
    g_autofree char *name = g_strconcat(".spare-", msg->id, NULL);
    g_autofree char *spare = file_path(msg->dir, name);
    g_autofree char *dpath = kr_queue_dir_path(msg->dir);
    g_autoptr(GError) err = NULL;
    if (rename_noreplace(path, spare) != 0) {
        g_debug("%s: no spare: %s", msg->id, g_strerror(errno));
        spare_put(-1, NULL);
        return FALSE;
    }
    *gone_r = TRUE;
    /* A small file keeps its blocks: the next message overwrites them in
     * place, with no block to allocate or free. A big one is emptied (only
     * under its new name: a queue file is never seen short). */
    struct stat st;
    if (fstat(msg->fd, &st) != 0 || (st.st_size > SPARE_KEEP && ftruncate(msg->fd, 0) != 0)) {
        g_debug("%s: no spare: %s", msg->id, g_strerror(errno));
        unlink(spare);
        spare_put(-1, NULL);
        return FALSE;
    }
    if (!fsync_dir(dpath, &err)) {
        /* The old name may still be on disk: never reuse this inode. */
        g_debug("%s: no spare: %s", msg->id, err->message);
        unlink(spare);
        spare_put(-1, NULL);
        return FALSE;
    }
    msg->spare_path = g_steal_pointer(&spare);
    return TRUE;
}

static gboolean
remove_file(KrMsg *msg, gboolean sync, GError **error)
{
    g_return_val_if_fail(msg != NULL, FALSE);
    if (!msg->committed) {
        kr_msg_discard(msg);
        return TRUE;
    }
    if (msg->gone)
        return TRUE;
    g_autofree char *path = file_path(msg->dir, msg->id);
    gboolean gone = FALSE;
    if (!sync && keep_as_spare(msg, path, &gone)) {
        msg->gone = TRUE;
        return TRUE;
    }
    if (!gone && unlink(path) != 0)
        return set_errno_error(error, errno, "cannot remove", path);
    msg->gone = TRUE; /* the open descriptor still reads the content */
    if (!sync)
        return TRUE;
    g_autofree char *dpath = kr_queue_dir_path(msg->dir);
    return fsync_dir(dpath, error);
}

gboolean
kr_msg_remove(KrMsg *msg, GError **error)
{
    return remove_file(msg, TRUE, error);
}

gboolean
kr_msg_remove_lazy(KrMsg *msg, GError **error)
{
    return remove_file(msg, FALSE, error);
}

KrMsg *
kr_msg_new_copy(KrMsg *msg, KrQueueDir dir, GError **error)
{
    g_return_val_if_fail(msg != NULL, NULL);
    KrMsg *copy = kr_msg_new_spool(dir, error);
    if (!copy)
        return NULL;
    kr_msg_set_sender(copy, msg->sender);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, msg->attrs);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_hash_table_insert(copy->attrs, g_strdup(k), g_strdup(v));
    enum { CHUNK = 64 * 1024 };
    g_autofree char *buf = g_malloc(CHUNK);
    for (goffset off = 0;;) {
        gssize n = kr_msg_read(msg, off, buf, CHUNK, error);
        if (n == 0)
            break;
        if (n < 0 || !kr_msg_append(copy, buf, (gsize)n, error)) {
            kr_msg_discard(copy);
            kr_msg_unref(copy);
            return NULL;
        }
        off += n;
    }
    return copy;
}

/* --- directories --------------------------------------------------------- */

static gint
cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

GPtrArray *
kr_queue_list(KrQueueDir dir)
{
    GPtrArray *ids = g_ptr_array_new_with_free_func(g_free);
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, ids);
    g_autofree char *path = kr_queue_dir_path(dir);
    DIR *d = opendir(path);
    if (!d) {
        g_debug("cannot list %s: %s", path, g_strerror(errno));
        return ids;
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (kr_queue_id_valid(de->d_name))
            g_ptr_array_add(ids, g_strdup(de->d_name));
    closedir(d);
    g_ptr_array_sort(ids, cmp_str);
    return ids;
}

guint
kr_queue_sweep_spares(void)
{
    static const KrQueueDir dirs[] = {KR_QUEUE_MAILDROP, KR_QUEUE_INCOMING, KR_QUEUE_ACTIVE,
                                      KR_QUEUE_DEFERRED, KR_QUEUE_HOLD};
    g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *path = kr_queue_dir_path(dirs[i]);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (g_str_has_prefix(de->d_name, ".spare-"))
                g_ptr_array_add(found, g_build_filename(path, de->d_name, NULL));
        if (d)
            closedir(d);
    }
    if (found->len == 0)
        return 0;
    /* The inodes of every queue file: a spare handed out just before a
     * crash may keep its old name on a file system without a journal
     * while its inode holds a new message, and only fsck makes the link
     * count say so. */
    g_autoptr(GHashTable) inodes = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *path = kr_queue_dir_path(dirs[i]);
        g_autoptr(GPtrArray) ids = kr_queue_list(dirs[i]);
        for (guint k = 0; k < ids->len; k++) {
            g_autofree char *file = g_build_filename(path, ids->pdata[k], NULL);
            struct stat st;
            if (lstat(file, &st) == 0) {
                gint64 *ino = g_new(gint64, 1);
                *ino = (gint64)st.st_ino;
                g_hash_table_add(inodes, ino);
            }
        }
    }
    guint removed = 0;
    for (guint i = 0; i < found->len; i++) {
        const char *file = found->pdata[i];
        struct stat st;
        if (lstat(file, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        gint64 ino = (gint64)st.st_ino;
        if (st.st_nlink < 2 && g_hash_table_contains(inodes, &ino)) {
            g_warning("%s shares its inode with a queue file but its link count is %u: left "
                      "alone (check the file system)",
                      file, (unsigned)st.st_nlink);
            continue;
        }
        if (unlink(file) == 0)
            removed++;
    }
    return removed;
}

void
kr_queue_quarantine(KrQueueDir dir, const char *id, const char *why)
{
    g_return_if_fail((unsigned)dir < KR_QUEUE_N_DIRS && id != NULL);
    if (!*id || strchr(id, '/') || strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
        g_warning("refusing to quarantine %s/%s", kr_queue_dir_name(dir), id);
        return;
    }
    if (dir == KR_QUEUE_CORRUPT) {
        g_warning("%s: corrupt: %s", id, why ? why : "?");
        return;
    }
    g_autofree char *from = file_path(dir, id);
    g_autofree char *to = file_path(KR_QUEUE_CORRUPT, id);
    int r = rename_noreplace(from, to);
    for (int n = 1; r != 0 && errno == EEXIST && n < 100; n++) {
        g_free(to);
        g_autofree char *alt = g_strdup_printf("%s.%d", id, n);
        to = file_path(KR_QUEUE_CORRUPT, alt);
        r = rename_noreplace(from, to);
    }
    if (r != 0) {
        g_warning("%s: cannot move %s to corrupt/ (%s): %s", id, from, g_strerror(errno),
                  why ? why : "?");
        return;
    }
    g_autoptr(GError) err = NULL;
    g_autofree char *cpath = kr_queue_dir_path(KR_QUEUE_CORRUPT);
    g_autofree char *dpath = kr_queue_dir_path(dir);
    if (!fsync_dir(cpath, &err) || !fsync_dir(dpath, &err))
        g_warning("%s: %s", id, err->message);
    g_warning("%s: queue file in %s is unreadable, moved to corrupt/: %s", id,
              kr_queue_dir_name(dir), why ? why : "?");
}
