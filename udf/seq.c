/*
 * seq.c -- gearsync_seq(): the version of a change, taken in the trigger.
 *
 * SQL:   gearsync_seq() -> INTEGER
 *   CREATE FUNCTION gearsync_seq RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   Returns a value strictly greater than every value it returned before in
 *   this mysqld process, and at least the current time in microseconds since
 *   the epoch (CLOCK_REALTIME): max(last + 1, now) -- the counter gearsync_send
 *   takes each record's version from (gs_seq.h).  A trigger calls it while
 *   it holds the row lock, so for the changes of one row the values grow in
 *   commit order; seeded by the clock, they keep growing across a restart, a
 *   TRUNCATE of the outbox or a restore from a backup (which an outbox id
 *   does not: AUTO_INCREMENT goes back).  Values stay below 2^53 (Lua's
 *   numbers are doubles) until the year 2255.  Never NULL; no arguments
 *   (an argument is refused by _init).
 */
#include "gearsync_udf.h"
#include "gs_args.h"
#include "gs_seq.h"

GS_DEFINE_INT_UDF(gearsync_seq,
                  gs_init_no_args("gearsync_seq", initid, args, message),
                  (long long)gs_seq_next())
