/*
 * gs_log.h -- one line to mysqld's error log (stderr), time-stamped.
 */
#ifndef GEARSYNC_GS_LOG_H
#define GEARSYNC_GS_LOG_H

#include "gearsync_udf.h"

/* "YYYY-MM-DD HH:MM:SS <text>\n" in one write(2), at most 768 bytes. */
void gs_log(const char *fmt, ...) GS_HIDDEN
    __attribute__((format(printf, 1, 2)));

#endif /* GEARSYNC_GS_LOG_H */
