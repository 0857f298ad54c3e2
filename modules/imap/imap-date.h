/* SPDX-License-Identifier: MIT */
/*
 * imap-date.h - IMAP dates: SEARCH "date" (1-Feb-1994) and APPEND /
 * INTERNALDATE "date-time" ("26-Nov-2026 08:11:05 +0000").
 *
 *   imap_date_parse()         "1-Feb-1994" -> days since 1970-01-01
 *   imap_datetime_parse()     "dd-Mon-yyyy hh:mm:ss +zzzz" (no quotes)
 *                             -> UTC seconds + zone in minutes east
 *   imap_datetime_format()    seconds + zone -> "\"26-Nov-2026 08:11:05 +0000\""
 *   imap_local_tz()           the server's zone at a time, minutes east
 *                             (localtime_r's tm_gmtoff: TZ, DST included)
 *   imap_days_from_civil()    y-m-d -> days since 1970-01-01 (proleptic Gregorian)
 *   imap_civil_from_days()    the inverse
 *
 * Month names are matched case-insensitively. Days must exist in their
 * month, years are 4 digits; seconds may be 60 (leap); zones are -2359 to
 * +2359. The day of a date-time is "dd", " d" or "d" on input (clients
 * differ) and always two digits on output ("05-Jan-2026 ...", which is
 * RFC 3501's 2DIGIT form of date-day-fixed). No time-zone database is
 * used: the zone is the one given.
 */
#ifndef KR_IMAP_DATE_H
#define KR_IMAP_DATE_H

#include <glib.h>

G_BEGIN_DECLS

gboolean imap_date_parse(const char *s, gsize len, gint32 *days_r);
gboolean imap_datetime_parse(const char *s, gsize len, gint64 *time_r, int *tz_minutes_r);
void imap_datetime_format(GString *out, gint64 t, int tz_minutes);
int imap_local_tz(gint64 t);
gint32 imap_days_from_civil(int y, int m, int d);
void imap_civil_from_days(gint64 days, int *y, int *m, int *d);

G_END_DECLS

#endif
