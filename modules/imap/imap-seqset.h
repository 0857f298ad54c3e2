/* SPDX-License-Identifier: MIT */
/*
 * imap-seqset.h - IMAP sequence sets (RFC 3501 / RFC 9051 "sequence-set",
 * RFC 5182 "$"): parse, resolve against a mailbox, test, count, print,
 * and compress a list of numbers back into the shortest set text.
 *
 *   imap_seqset_new/free/copy()    an empty set; free; deep copy
 *   imap_seqset_add()              append one range as given (no merging)
 *   imap_seqset_parse()            "1:*,5,7:9" or "$" -> set (NULL if invalid)
 *   imap_seqset_resolve()          '*' -> a value, ranges ordered, sorted, merged
 *   imap_seqset_contains()         n in a resolved set? (binary search)
 *   imap_seqset_count()            how many numbers a resolved set holds
 *   imap_seqset_first/last()       smallest / largest number of a resolved set
 *   imap_seqset_has_star()         does a set (as parsed) use '*'?
 *   imap_seqset_format()           set -> "1:3,5,7:*" (ranges as stored)
 *   imap_seqset_compress()         numbers (any order, duplicates fine) -> "1:3,5"
 *   imap_seqset_from_array()       numbers -> resolved set
 *
 * A range is (lo, hi) with IMAP_SEQ_STAR (0) standing for '*': as parsed,
 * ranges keep the client's order and direction ("9:7" stays 9:7). Only a
 * resolved set (after imap_seqset_resolve) is sorted, merged and free of
 * stars, and only such a set may be given to contains/count/first/last.
 * A set parsed from "$" has saved = TRUE and no ranges: the session
 * substitutes the saved SEARCH result (RFC 5182).
 */
#ifndef KR_IMAP_SEQSET_H
#define KR_IMAP_SEQSET_H

#include <glib.h>

G_BEGIN_DECLS

#define IMAP_SEQ_STAR 0u

typedef struct {
    guint32 lo, hi;
} ImapSeqRange;

typedef struct {
    ImapSeqRange *ranges;
    guint n;
    guint alloc;
    gboolean saved; /* "$": the result of the last SEARCH ... RETURN (SAVE) */
} ImapSeqSet;

ImapSeqSet *imap_seqset_new(void);
void imap_seqset_free(ImapSeqSet *set);
ImapSeqSet *imap_seqset_copy(const ImapSeqSet *set);
void imap_seqset_add(ImapSeqSet *set, guint32 lo, guint32 hi);
ImapSeqSet *imap_seqset_parse(const char *s, gsize len, gboolean allow_saved);
void imap_seqset_resolve(ImapSeqSet *set, guint32 star);
gboolean imap_seqset_contains(const ImapSeqSet *set, guint32 n);
guint64 imap_seqset_count(const ImapSeqSet *set);
guint32 imap_seqset_first(const ImapSeqSet *set);
guint32 imap_seqset_last(const ImapSeqSet *set);
gboolean imap_seqset_has_star(const ImapSeqSet *set);
void imap_seqset_format(const ImapSeqSet *set, GString *out);
void imap_seqset_compress(const guint32 *nums, gsize n, GString *out);
ImapSeqSet *imap_seqset_from_array(const guint32 *nums, gsize n);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImapSeqSet, imap_seqset_free)

G_END_DECLS

#endif
