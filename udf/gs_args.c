/*
 * gs_args.c -- argument checks shared by the SQL function families (no SQL
 * symbols); see gs_args.h.
 */
#include "gs_args.h"

#include <stdio.h>
#include <string.h>

int gs_arg_cstr(const UDF_ARGS *args, unsigned i, char *out, size_t outsz)
{
    size_t n = args->lengths[i];

    if (args->args[i] == NULL || n == 0 || n >= outsz ||
        memchr(args->args[i], '\0', n) != NULL)
        return -1;
    memcpy(out, args->args[i], n);
    out[n] = '\0';
    return 0;
}

my_bool gs_init_no_args(const char *name, UDF_INIT *initid, UDF_ARGS *args,
                        char *message)
{
    if (args->arg_count != 0) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "%s: expects no arguments", name);
        return 1;
    }
    initid->ptr = NULL;
    initid->maybe_null = 0;
    initid->const_item = 0;
    return 0;
}
