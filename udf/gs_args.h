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

/* The three exported entry points of an INTEGER SQL function without
   per-statement state: name_init returns INIT (an expression of initid, args,
   message), name returns CALL (an expression of initid, args, is_null). */
#define GS_DEFINE_INT_UDF(name, INIT, CALL)                                   \
    GS_EXPORT my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args,          \
                                  char *message);                            \
    GS_EXPORT void name##_deinit(UDF_INIT *initid);                           \
    GS_EXPORT long long name(UDF_INIT *initid, UDF_ARGS *args, char *is_null, \
                             char *error);                                   \
    my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message)      \
    {                                                                         \
        return (INIT);                                                        \
    }                                                                         \
    void name##_deinit(UDF_INIT *initid) { (void)initid; }                    \
    long long name(UDF_INIT *initid, UDF_ARGS *args, char *is_null,           \
                   char *error)                                               \
    {                                                                         \
        (void)initid;                                                         \
        (void)args;                                                           \
        (void)is_null;                                                        \
        (void)error;                                                          \
        return (CALL);                                                        \
    }

#endif /* GEARSYNC_GS_ARGS_H */
