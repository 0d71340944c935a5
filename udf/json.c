/*
 * json.c -- the lib_mysqludf_json functions: json_array, json_object,
 * json_members, json_values, each under its classic name (servers without
 * native JSON functions) and a udf_ name that does not clash with the native
 * JSON_ARRAY / JSON_OBJECT of MariaDB >= 10.2 / MySQL >= 5.7.8 (CREATE
 * FUNCTION json_object fails there with ERROR 1585).
 *
 * SQL:   udf_json_array([value, ...]) -> STRING        json_array(...)
 *   CREATE FUNCTION udf_json_array RETURNS STRING SONAME 'gearsync_udf.so';
 *   [v1,v2,...]; no argument gives [].
 * SQL:   udf_json_object([value [AS name], ...]) -> STRING   json_object(...)
 *   CREATE FUNCTION udf_json_object RETURNS STRING SONAME 'gearsync_udf.so';
 *   {"name1":v1,...}; no argument gives {}.
 *   Example: udf_json_object(NEW.id AS id, NEW.name AS name) -> {"id":1,"name":"x"}
 * SQL:   udf_json_members(name1, value1[, name2, value2 ...]) -> STRING
 *   CREATE FUNCTION udf_json_members RETURNS STRING SONAME 'gearsync_udf.so';
 *   "name1":v1,"name2":v2 -- members without braces, for nesting into an
 *   object (udf_json_object(udf_json_members('a', 1)) -> {"a":1}).  Names
 *   are the values of the odd arguments, as JSON strings; a pair whose name
 *   is NULL is left out.  An odd number of arguments is an _init error.
 * SQL:   udf_json_values([value, ...]) -> STRING
 *   CREATE FUNCTION udf_json_values RETURNS STRING SONAME 'gearsync_udf.so';
 *   v1,v2,... -- values without brackets, for splicing into an array.
 *   No argument gives the empty string.
 *
 * Member names (json_object): each argument's attribute, i.e. its alias; an
 * unaliased dotted identifier path (t.col, `t`.`col`, NEW.id) gives its last
 * part without backticks, as lib_mysqludf_json did; any other attribute (an
 * expression's text) is used verbatim.  Names are JSON-escaped like values.
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
 *   temporal values reach a UDF as strings ("2024-01-02 03:04:05").
 * NULL behaviour: a NULL argument becomes null whatever its type; the result
 * itself is never NULL.
 *
 * Nesting rule.  lib_mysqludf_json inserted a string unquoted when its
 * expression text or alias started with json_ -- so a column that merely
 * happened to be called json_data broke the JSON.  Here an argument is
 * inserted as JSON only when BOTH hold:
 *   1. its attribute (alias, or expression text) starts with json_ or
 *      udf_json_ (any letter case) -- a nested udf_json_object(...) call, an
 *      `AS json_x` alias, or a json_ column -- and it is a string; and
 *   2. its value is valid JSON (strict RFC 8259, checked by gs_json_valid):
 *      - one JSON value: inserted as that value;
 *      - in json_array / json_values: a comma-separated list of values (the
 *        output of json_values) is spliced in as that many elements;
 *      - in json_object: a comma-separated list of members (the output of
 *        json_members) is spliced in as those members (no name of its own).
 * Anything else -- including the empty string -- is quoted as a JSON string.
 * The result is therefore valid JSON for every input.
 *
 * Memory: the output buffer lives in initid->ptr, grows by doubling, and is
 * reused across rows; _deinit hands it (if <= GS_JSON_CACHE_MAX) to a
 * per-thread cache, because a trigger runs _init/_deinit once per row.
 */
#include "gearsync_udf.h"
#include "gs_json.h"
#include "gs_thread.h"

#include <stdio.h>

typedef enum { GS_ARRAY, GS_OBJECT, GS_MEMBERS, GS_VALUES } gs_kind;

static my_bool gs_json_init(const char *name, gs_kind kind, UDF_INIT *initid,
                            UDF_ARGS *args, char *message)
{
    if (kind == GS_MEMBERS) {
        unsigned i;
        if (args->arg_count % 2 != 0) {
            snprintf(message, MYSQL_ERRMSG_SIZE,
                     "%s: expects name, value pairs", name);
            return 1;
        }
        for (i = 0; i < args->arg_count; i += 2)
            args->arg_type[i] = STRING_RESULT; /* names as text */
    } /* else any count (0 included), any type */
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

static void gs_json_deinit(UDF_INIT *initid)
{
    if (initid->ptr != NULL) {
        gs_json_buf_give((gs_buf *)initid->ptr);
        initid->ptr = NULL;
    }
}

static int gs_put(gs_buf *b, char c)
{
    if (gs_buf_reserve(b, 1))
        return -1;
    b->data[b->len++] = c;
    return 0;
}

/* A member value or element: nested raw when the rule allows, else typed. */
static int gs_json_value(gs_buf *b, const UDF_ARGS *args, unsigned i)
{
    if (gs_json_nest_requested(args, i) &&
        gs_json_valid(args->args[i], args->lengths[i], GS_JV_VALUE))
        return gs_json_raw(b, args->args[i], args->lengths[i]);
    return gs_json_arg(b, args, i);
}

static char *gs_json_build(gs_kind kind, UDF_INIT *initid, UDF_ARGS *args,
                           unsigned long *length, char *is_null, char *error)
{
    gs_buf *b = (gs_buf *)initid->ptr;
    int first = 1;
    unsigned i;

    b->len = 0;
    if ((kind == GS_ARRAY && gs_put(b, '[')) ||
        (kind == GS_OBJECT && gs_put(b, '{')))
        goto oom;
    for (i = 0; i < args->arg_count; i++) {
        if (kind == GS_MEMBERS) {
            if (args->args[i] == NULL) { /* pair without a name: left out */
                i++;
                continue;
            }
            if ((!first && gs_put(b, ',')) ||
                gs_json_escape(b, args->args[i], args->lengths[i]) ||
                gs_put(b, ':') || gs_json_value(b, args, i + 1))
                goto oom;
            first = 0;
            i++;
            continue;
        }
        if (!first && gs_put(b, ','))
            goto oom;
        first = 0;
        if (gs_json_nest_requested(args, i)) {
            const char *v = args->args[i];
            size_t n = args->lengths[i];
            int splice = kind == GS_OBJECT
                             ? gs_json_valid(v, n, GS_JV_MEMBERS)
                             : gs_json_valid(v, n, GS_JV_VALUES);
            if (kind == GS_OBJECT && !splice &&
                gs_json_valid(v, n, GS_JV_VALUE)) {
                const char *key;
                size_t klen;
                gs_json_key(args, i, &key, &klen);
                if (gs_json_escape(b, key, klen) || gs_put(b, ':') ||
                    gs_json_raw(b, v, n))
                    goto oom;
                continue;
            }
            if (splice) { /* also covers a single value in array/values */
                if (gs_json_raw(b, v, n))
                    goto oom;
                continue;
            }
        }
        if (kind == GS_OBJECT) {
            const char *key;
            size_t klen;
            gs_json_key(args, i, &key, &klen);
            if (gs_json_escape(b, key, klen) || gs_put(b, ':'))
                goto oom;
        }
        if (gs_json_arg(b, args, i))
            goto oom;
    }
    if ((kind == GS_ARRAY && gs_put(b, ']')) ||
        (kind == GS_OBJECT && gs_put(b, '}')))
        goto oom;
    *length = (unsigned long)b->len;
    return b->len ? b->data : (char *)"";
oom:
    *is_null = 1;
    *error = 1;
    return NULL;
}

#define GS_DEFINE_JSON(name, kind)                                            \
    GS_EXPORT my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args,          \
                                  char *message);                            \
    GS_EXPORT void name##_deinit(UDF_INIT *initid);                           \
    GS_EXPORT char *name(UDF_INIT *initid, UDF_ARGS *args, char *result,      \
                         unsigned long *length, char *is_null, char *error);  \
    my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message)      \
    {                                                                         \
        return gs_json_init(#name, kind, initid, args, message);              \
    }                                                                         \
    void name##_deinit(UDF_INIT *initid) { gs_json_deinit(initid); }          \
    char *name(UDF_INIT *initid, UDF_ARGS *args, char *result,                \
               unsigned long *length, char *is_null, char *error)             \
    {                                                                         \
        (void)result;                                                         \
        return gs_json_build(kind, initid, args, length, is_null, error);     \
    }

GS_DEFINE_JSON(json_array, GS_ARRAY)
GS_DEFINE_JSON(udf_json_array, GS_ARRAY)
GS_DEFINE_JSON(json_object, GS_OBJECT)
GS_DEFINE_JSON(udf_json_object, GS_OBJECT)
GS_DEFINE_JSON(json_members, GS_MEMBERS)
GS_DEFINE_JSON(udf_json_members, GS_MEMBERS)
GS_DEFINE_JSON(json_values, GS_VALUES)
GS_DEFINE_JSON(udf_json_values, GS_VALUES)
