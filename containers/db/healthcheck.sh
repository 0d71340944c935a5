#!/bin/sh
# Healthy = the final server (not the installer, which listens on another socket) answers and
# has the gearsync UDFs registered.
exec mariadb --protocol=socket -N -B -e 'SELECT gearsync_udf_info()' >/dev/null
