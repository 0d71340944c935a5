/*
 * gs_log.c -- the library's error-log lines (no SQL symbols), see gs_log.h.
 * One write(2) per line, so lines of concurrent threads do not interleave.
 */
#include "gs_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void gs_log(const char *fmt, ...)
{
    char line[768];
    va_list ap;
    size_t n;
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S ", &tm);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    n = strlen(line);
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere else to report it */
    }
}
