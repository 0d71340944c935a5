-- gearsync: uninstall what sql/install.sql made (idempotent).
-- The demo table test.test and its rows are kept; only gearsync's triggers on it are dropped.

DROP TRIGGER IF EXISTS test.test_gearsync_ai;
DROP TRIGGER IF EXISTS test.test_gearsync_au;
DROP TRIGGER IF EXISTS test.test_gearsync_ad;

DROP FUNCTION IF EXISTS gman_do_background;
DROP FUNCTION IF EXISTS gman_servers_set;
DROP FUNCTION IF EXISTS gearsync_timeout_set;
DROP FUNCTION IF EXISTS udf_json_object;
DROP FUNCTION IF EXISTS gearsync_udf_info;
