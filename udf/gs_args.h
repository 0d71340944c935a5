/*
 * gs_args.h -- argument checks shared by the SQL function families
 * (gs_args.c).
 */
#ifndef GEARSYNC_GS_ARGS_H
#define GEARSYNC_GS_ARGS_H

#include "gearsync_udf.h"

/* Copy string argument i -- non-NULL, non-empty, no NUL byte, shorter than
   outsz -- into out, NUL-terminated.  0 ok, -1 not such a string. */
int gs_arg_cstr(const UDF_ARGS *args, unsigned i, char *out,
                size_t outsz) GS_HIDDEN;

/* _init of a function without arguments: refuses any argument with
   "<name>: expects no arguments"; no state, never NULL. */
my_bool gs_init_no_args(const char *name, UDF_INIT *initid, UDF_ARGS *args,
                        char *message) GS_HIDDEN;

#endif /* GEARSYNC_GS_ARGS_H */
