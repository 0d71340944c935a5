-- gearsync: uninstall what sql/install.sql made (idempotent).
-- The demo table test.test and its rows are kept; only gearsync's triggers on it are dropped.

DROP TRIGGER IF EXISTS test.test_gearsync_ai;
DROP TRIGGER IF EXISTS test.test_gearsync_au;
DROP TRIGGER IF EXISTS test.test_gearsync_ad;

-- Safe mode: the triggers of test.test_safe (the table, its rows and gearsync.outbox are kept).
DROP TRIGGER IF EXISTS `test`.`test_safe_gearsync_ai`;
DROP TRIGGER IF EXISTS `test`.`test_safe_gearsync_au`;
DROP TRIGGER IF EXISTS `test`.`test_safe_gearsync_ad`;

DROP FUNCTION IF EXISTS gman_do;
DROP FUNCTION IF EXISTS gman_do_high;
DROP FUNCTION IF EXISTS gman_do_low;
DROP FUNCTION IF EXISTS gman_do_background;
DROP FUNCTION IF EXISTS gman_do_high_background;
DROP FUNCTION IF EXISTS gman_do_low_background;
DROP FUNCTION IF EXISTS gman_sum;
DROP FUNCTION IF EXISTS gman_servers_set;
DROP FUNCTION IF EXISTS gearsync_timeout_set;
DROP FUNCTION IF EXISTS gearsync_do_timeout_set;
DROP FUNCTION IF EXISTS gearsync_send;
DROP FUNCTION IF EXISTS gearsync_send_flush;
DROP FUNCTION IF EXISTS gearsync_seq;
DROP FUNCTION IF EXISTS udf_json_array;
DROP FUNCTION IF EXISTS udf_json_object;
DROP FUNCTION IF EXISTS udf_json_members;
DROP FUNCTION IF EXISTS udf_json_values;
DROP FUNCTION IF EXISTS gearsync_udf_info;
