-- gearsync: uninstall what sql/install.sql made (idempotent).
-- The demo table test.test and its rows are kept; only gearsync's triggers on it are dropped.
--
-- Refused, before anything is dropped, while other triggers still call gearsync's functions
-- (those `gearsync install` made): with the functions gone every write on their tables would
-- fail. Run `gearsync uninstall` (or DROP TRIGGER them) first.
-- The check is a stored procedure, dropped once it passed: MySQL has no anonymous compound
-- statement (MariaDB's BEGIN NOT ATOMIC), and its error message holds at most 128 characters.
-- It lives in the `gearsync` database, which uninstall keeps (the outbox); a refusal leaves it
-- there until the next run.
CREATE DATABASE IF NOT EXISTS `gearsync`;
DROP PROCEDURE IF EXISTS `gearsync`.`uninstall_check`;
DELIMITER $$
CREATE PROCEDURE `gearsync`.`uninstall_check`()
BEGIN
  DECLARE still TEXT;
  SELECT GROUP_CONCAT(CONCAT(trigger_schema, '.', trigger_name) SEPARATOR ', ') INTO still
    FROM information_schema.triggers
   WHERE action_statement REGEXP '(gearsync_[a-z_]+|gman_[a-z_]+|udf_json_[a-z]+)[[:space:]]*[(]'
     AND NOT (trigger_schema = 'test' AND event_object_table IN ('test', 'test_safe')
              AND trigger_name LIKE '%gearsync%');
  IF still IS NOT NULL THEN
    SET still = CONCAT('gearsync: triggers still call its functions: ', LEFT(still, 30),
                       IF(CHAR_LENGTH(still) > 30, '...', ''), '; run `gearsync uninstall` first');
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = still;
  END IF;
END$$
DELIMITER ;
CALL `gearsync`.`uninstall_check`();
DROP PROCEDURE `gearsync`.`uninstall_check`;

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
DROP FUNCTION IF EXISTS gearsync_send_change;
DROP FUNCTION IF EXISTS gearsync_send_flush;
DROP FUNCTION IF EXISTS gearsync_seq;
DROP FUNCTION IF EXISTS udf_json_array;
DROP FUNCTION IF EXISTS udf_json_object;
DROP FUNCTION IF EXISTS udf_json_members;
DROP FUNCTION IF EXISTS udf_json_values;
DROP FUNCTION IF EXISTS gearsync_udf_info;
