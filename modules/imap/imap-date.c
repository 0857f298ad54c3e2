/* SPDX-License-Identifier: MIT */
/*
 * imap-date.c - IMAP date and date-time parsing and formatting. See
 * imap-date.h.
 *
 *   imap_date_parse, imap_datetime_parse, imap_datetime_format
 *   imap_days_from_civil, imap_civil_from_days
 */
#include "imap-date.h"

#include <string.h>
#include <time.h>

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Howard Hinnant's days_from_civil / civil_from_days. */
gint32
imap_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void
imap_civil_from_days(gint64 z, int *y, int *m, int *d)
{
    z += 719468;
    gint64 era = (z >= 0 ? z : z - 146096) / 146097;
    gint64 doe = z - era * 146097;
    gint64 yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    gint64 doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    gint64 mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int
days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

/* n digits at *p into *v. */
static gboolean
digits(const char **p, const char *end, int n, int *v)
{
    int r = 0;
    for (int i = 0; i < n; i++) {
        if (*p >= end || !g_ascii_isdigit(**p))
            return FALSE;
        r = r * 10 + (*(*p)++ - '0');
    }
    *v = r;
    return TRUE;
}

/* "d-Mon-yyyy" or "dd-Mon-yyyy"; lead_space allows " d". */
static gboolean
parse_dmy(const char **pp, const char *end, gboolean lead_space, int *y, int *m, int *d)
{
    const char *p = *pp;
    if (lead_space && p < end && *p == ' ')
        p++;
    if (!digits(&p, end, 1, d))
        return FALSE;
    if (p < end && g_ascii_isdigit(*p))
        *d = *d * 10 + (*p++ - '0');
    if (p >= end || *p++ != '-' || end - p < 3)
        return FALSE;
    *m = 0;
    for (int i = 0; i < 12; i++)
        if (g_ascii_strncasecmp(p, months[i], 3) == 0)
            *m = i + 1;
    if (!*m)
        return FALSE;
    p += 3;
    if (p >= end || *p++ != '-' || !digits(&p, end, 4, y))
        return FALSE;
    if (*y < 1 || *d < 1 || *d > days_in_month(*y, *m))
        return FALSE;
    *pp = p;
    return TRUE;
}

gboolean
imap_date_parse(const char *s, gsize len, gint32 *days_r)
{
    const char *p = s, *end = s + len;
    int y, m, d;
    if (!parse_dmy(&p, end, FALSE, &y, &m, &d) || p != end)
        return FALSE;
    *days_r = imap_days_from_civil(y, m, d);
    return TRUE;
}

gboolean
imap_datetime_parse(const char *s, gsize len, gint64 *time_r, int *tz_r)
{
    const char *p = s, *end = s + len;
    int y, mo, d, h, mi, se, zh, zm;
    if (!parse_dmy(&p, end, TRUE, &y, &mo, &d))
        return FALSE;
    if (p >= end || *p++ != ' ' || !digits(&p, end, 2, &h) || p >= end || *p++ != ':' ||
        !digits(&p, end, 2, &mi) || p >= end || *p++ != ':' || !digits(&p, end, 2, &se))
        return FALSE;
    if (h > 23 || mi > 59 || se > 60)
        return FALSE;
    if (p >= end || *p++ != ' ' || p >= end || (*p != '+' && *p != '-'))
        return FALSE;
    int sign = *p++ == '-' ? -1 : 1;
    if (!digits(&p, end, 2, &zh) || !digits(&p, end, 2, &zm) || p != end || zh > 23 || zm > 59)
        return FALSE;
    int tz = sign * (zh * 60 + zm);
    gint64 t = (gint64)imap_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    *time_r = t - (gint64)tz * 60;
    *tz_r = tz;
    return TRUE;
}

int
imap_local_tz(gint64 t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if ((gint64)tt != t || !localtime_r(&tt, &tm))
        return 0;
    long off = tm.tm_gmtoff / 60;
    return off < -(23 * 60 + 59) || off > 23 * 60 + 59 ? 0 : (int)off;
}

void
imap_datetime_format(GString *out, gint64 t, int tz)
{
    if (tz < -(23 * 60 + 59) || tz > 23 * 60 + 59)
        tz = 0;
    gint64 local = t + (gint64)tz * 60;
    gint64 days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    gint64 secs = local - days * 86400;
    int y, m, d;
    imap_civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999) { /* not representable: the epoch */
        y = 1970, m = 1, d = 1, secs = 0, tz = 0;
    }
    int atz = tz < 0 ? -tz : tz;
    /* "dd-Mon-yyyy hh:mm:ss +zzzz" by hand: FETCH 1:* INTERNALDATE does
     * this per message */
    char b[29];
#define D2(at, v) (b[at] = (char)('0' + (v) / 10 % 10), b[(at) + 1] = (char)('0' + (v) % 10))
    b[0] = '"';
    D2(1, d);
    b[3] = '-';
    memcpy(b + 4, months[m - 1], 3);
    b[7] = '-';
    D2(8, y / 100);
    D2(10, y % 100);
    b[12] = ' ';
    D2(13, (int)(secs / 3600));
    b[15] = ':';
    D2(16, (int)(secs / 60 % 60));
    b[18] = ':';
    D2(19, (int)(secs % 60));
    b[21] = ' ';
    b[22] = tz < 0 ? '-' : '+';
    D2(23, atz / 60);
    D2(25, atz % 60);
    b[27] = '"';
#undef D2
    g_string_append_len(out, b, 28);
}
