/*
 * gs_json.h -- JSON text helpers of the json_* UDFs (gs_json.c).
 *
 * JSON strings (gs_json_escape):
 *   - `"` and `\` are escaped; every control character U+0000..U+001F is
 *     escaped (\b \t \n \f \r as short escapes, the others as \u00XX);
 *     0x7F is copied as is (legal in JSON).
 *   - Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF)
 *     is copied byte for byte.
 *   - Ill-formed UTF-8: each maximal ill-formed subpart (Unicode 15 ch. 3,
 *     "U+FFFD substitution of maximal subparts", the rule of Python's
 *     bytes.decode('utf-8', 'replace') and of the WHATWG decoder) is
 *     replaced by one \ufffd escape.  Arguments must therefore be utf8/
 *     utf8mb4 text; convert other character sets in SQL with
 *     CONVERT(col USING utf8mb4).
 *   Output is always valid RFC 8259 JSON, whatever the input bytes.
 */
#ifndef GEARSYNC_GS_JSON_H
#define GEARSYNC_GS_JSON_H

#include "gearsync_udf.h"
#include "gs_buf.h"

/* Append s[0..n) as a JSON string, quotes included.  -1 on ENOMEM. */
int gs_json_escape(gs_buf *b, const char *s, size_t n) GS_HIDDEN;
/* Append a double: shortest of %.15g/%.16g/%.17g that round-trips;
   NaN and +-Inf become null. */
int gs_json_double(gs_buf *b, double v) GS_HIDDEN;
int gs_json_int(gs_buf *b, long long v) GS_HIDDEN;
/* Append a DECIMAL's digit string as a JSON number if it is one by RFC 8259
   grammar, else as a JSON string. */
int gs_json_decimal(gs_buf *b, const char *s, size_t n) GS_HIDDEN;
/* Append one UDF argument as a JSON value (null when args[i] is NULL). */
int gs_json_arg(gs_buf *b, const UDF_ARGS *args, unsigned i) GS_HIDDEN;
/* Member name of argument i: its attribute (alias); a dotted identifier path
   (t.col, `db`.`t`.`col`, NEW.id) is reduced to its last part, unquoted. */
void gs_json_key(const UDF_ARGS *args, unsigned i, const char **key,
                 size_t *len) GS_HIDDEN;

/* Strict RFC 8259 validation of s[0..n) (UTF-8 checked inside strings,
   nesting depth <= GS_JSON_MAX_DEPTH), in one of three shapes:
   GS_JV_VALUE    one JSON text, surrounding whitespace allowed;
   GS_JV_VALUES   one or more values separated by commas (json_values);
   GS_JV_MEMBERS  one or more "name":value separated by commas (json_members).
   1 valid, 0 not. */
#define GS_JSON_MAX_DEPTH 512
enum { GS_JV_VALUE = 0, GS_JV_VALUES = 1, GS_JV_MEMBERS = 2 };
int gs_json_valid(const char *s, size_t n, int shape) GS_HIDDEN;
/* 1 if argument i asks to be nested raw: a non-NULL string whose member
   name (gs_json_key: alias, last part of t.col, or expression text) starts
   with json_ or udf_json_ (any case). */
int gs_json_nest_requested(const UDF_ARGS *args, unsigned i) GS_HIDDEN;
/* Append s[0..n) without its leading/trailing JSON whitespace. */
int gs_json_raw(gs_buf *b, const char *s, size_t n) GS_HIDDEN;

#endif /* GEARSYNC_GS_JSON_H */
