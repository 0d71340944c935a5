/*
 * json.c -- json_object(): a JSON object from the arguments and their aliases.
 *
 * SQL:   json_object([value [AS name] [, value [AS name] ...]]) -> STRING
 *        udf_json_object(...)  the same function under a name that does not
 *        clash with the native JSON_OBJECT of MariaDB >= 10.2 / MySQL >=
 *        5.7.8 (CREATE FUNCTION json_object fails there with ERROR 1585).
 *
 *   CREATE FUNCTION udf_json_object RETURNS STRING SONAME 'gearsync_udf.so';
 *   CREATE FUNCTION json_object RETURNS STRING SONAME 'gearsync_udf.so';
 *                                          -- old servers only
 *
 * Example: json_object(NEW.id AS id, NEW.name AS name) -> {"id":1,"name":"x"}
 *
 * Member names: each argument's attribute, i.e. its alias; an unaliased
 * dotted identifier path (t.col, `t`.`col`, NEW.id) gives its last part
 * without backticks, as lib_mysqludf_json did; any other attribute (an
 * expression's text) is used verbatim.  An alias that itself contains a dot
 * loses everything up to the last dot.  Names are JSON-escaped like values.
 *
 * Values by argument type:
 *   STRING_RESULT   JSON string (escaping and UTF-8 rule: gearsync_udf.h)
 *   INT_RESULT      integer, printed signed: the UDF interface passes every
 *                   integer as a signed long long and carries no unsigned
 *                   flag, so BIGINT UNSIGNED values > 2^63-1 print negative.
 *                   Pass them as CAST(col AS DECIMAL(20)) to get the exact
 *                   digits.
 *   REAL_RESULT     shortest of %.15g/%.16g/%.17g that reads back to the same
 *                   double; NaN and +-Infinity become null
 *   DECIMAL_RESULT  the server's digit string as a JSON number (a string if
 *                   it is not a valid JSON number)
 * NULL behaviour: a NULL argument becomes null whatever its type; the result
 * itself is never NULL.  json_object() with no argument returns {}.
 *
 * Memory: the output buffer lives in initid->ptr, grows by doubling, and is
 * reused across rows; _deinit hands it (if <= GS_JSON_CACHE_MAX) to a
 * per-thread cache, because a trigger runs _init/_deinit once per row.
 */
#include "gearsync_udf.h"

#include <stdio.h>

GS_EXPORT my_bool json_object_init(UDF_INIT *initid, UDF_ARGS *args,
                                   char *message);
GS_EXPORT void json_object_deinit(UDF_INIT *initid);
GS_EXPORT char *json_object(UDF_INIT *initid, UDF_ARGS *args, char *result,
                            unsigned long *length, char *is_null, char *error);
GS_EXPORT my_bool udf_json_object_init(UDF_INIT *initid, UDF_ARGS *args,
                                       char *message);
GS_EXPORT void udf_json_object_deinit(UDF_INIT *initid);
GS_EXPORT char *udf_json_object(UDF_INIT *initid, UDF_ARGS *args,
                                char *result, unsigned long *length,
                                char *is_null, char *error);

static my_bool gs_json_object_init(const char *name, UDF_INIT *initid,
                                   UDF_ARGS *args, char *message)
{
    (void)args; /* any count (0 included), any type */
    initid->ptr = (char *)gs_json_buf_take();
    if (initid->ptr == NULL) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "%s: out of memory", name);
        return 1;
    }
    initid->maybe_null = 0;
    initid->max_length = GS_MAX_RESULT_LENGTH;
    initid->const_item = 0;
    return 0;
}

static void gs_json_object_deinit(UDF_INIT *initid)
{
    if (initid->ptr != NULL) {
        gs_json_buf_give((gs_buf *)initid->ptr);
        initid->ptr = NULL;
    }
}

static char *gs_json_object(UDF_INIT *initid, UDF_ARGS *args,
                            unsigned long *length, char *is_null, char *error)
{
    gs_buf *b = (gs_buf *)initid->ptr;
    unsigned i;

    b->len = 0;
    if (gs_buf_reserve(b, 2))
        goto oom;
    b->data[b->len++] = '{';
    for (i = 0; i < args->arg_count; i++) {
        const char *key;
        size_t klen;

        gs_json_key(args, i, &key, &klen);
        if (i > 0) {
            if (gs_buf_reserve(b, 1))
                goto oom;
            b->data[b->len++] = ',';
        }
        if (gs_json_escape(b, key, klen) || gs_buf_reserve(b, 1))
            goto oom;
        b->data[b->len++] = ':';
        if (gs_json_arg(b, args, i))
            goto oom;
    }
    if (gs_buf_reserve(b, 1))
        goto oom;
    b->data[b->len++] = '}';
    *length = (unsigned long)b->len;
    return b->data;
oom:
    *is_null = 1;
    *error = 1;
    return NULL;
}

my_bool json_object_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    return gs_json_object_init("json_object", initid, args, message);
}

void json_object_deinit(UDF_INIT *initid)
{
    gs_json_object_deinit(initid);
}

char *json_object(UDF_INIT *initid, UDF_ARGS *args, char *result,
                  unsigned long *length, char *is_null, char *error)
{
    (void)result;
    return gs_json_object(initid, args, length, is_null, error);
}

my_bool udf_json_object_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    return gs_json_object_init("udf_json_object", initid, args, message);
}

void udf_json_object_deinit(UDF_INIT *initid)
{
    gs_json_object_deinit(initid);
}

char *udf_json_object(UDF_INIT *initid, UDF_ARGS *args, char *result,
                      unsigned long *length, char *is_null, char *error)
{
    (void)result;
    return gs_json_object(initid, args, length, is_null, error);
}
