/*
 * info.c -- gearsync_udf_info: the library's version.
 *
 * SQL:   gearsync_udf_info() -> STRING
 *   CREATE FUNCTION gearsync_udf_info RETURNS STRING SONAME 'gearsync_udf.so';
 *   Returns the library version (GEARSYNC_VERSION, the same string as the
 *   Python package's gearsync.__version__), e.g. '0.1.0'.  Never NULL.
 */
#include "gearsync_udf.h"
#include "gs_args.h"

GS_EXPORT my_bool gearsync_udf_info_init(UDF_INIT *initid, UDF_ARGS *args,
                                         char *message);
GS_EXPORT void gearsync_udf_info_deinit(UDF_INIT *initid);
GS_EXPORT char *gearsync_udf_info(UDF_INIT *initid, UDF_ARGS *args,
                                  char *result, unsigned long *length,
                                  char *is_null, char *error);

static const char gs_version[] = GEARSYNC_VERSION;

my_bool gearsync_udf_info_init(UDF_INIT *initid, UDF_ARGS *args,
                               char *message)
{
    if (gs_init_no_args("gearsync_udf_info", initid, args, message))
        return 1;
    initid->max_length = sizeof gs_version - 1;
    initid->const_item = 1;
    return 0;
}

void gearsync_udf_info_deinit(UDF_INIT *initid)
{
    (void)initid;
}

char *gearsync_udf_info(UDF_INIT *initid, UDF_ARGS *args, char *result,
                        unsigned long *length, char *is_null, char *error)
{
    (void)initid;
    (void)args;
    (void)result;
    (void)is_null;
    (void)error;
    *length = sizeof gs_version - 1;
    return (char *)gs_version;
}
