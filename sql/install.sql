-- gearsync: install (idempotent: run it as often as you like).
--
--   make install-udf            # copies gearsync_udf.so into SELECT @@plugin_dir
--   mysql -uroot < sql/install.sql
--
-- Leaves: the gearsync UDFs registered, gearman job servers set to 127.0.0.1:4730, and the
-- seed's demo table test.test(id, name) whose row triggers push every change to the Gearman
-- function `syncToRedis` (direct mode), which `gearsync worker` applies to Redis as
-- SET <id> <name> / DEL <id>.
--
-- Needs MariaDB >= 10.1.3 (CREATE FUNCTION IF NOT EXISTS). On MariaDB >= 10.2 and
-- MySQL >= 5.7.8 `json_object` is a native function, so the library's JSON builder is
-- registered under its non-clashing name `udf_json_object`.

CREATE FUNCTION IF NOT EXISTS gearsync_udf_info RETURNS STRING SONAME 'gearsync_udf.so';
CREATE FUNCTION IF NOT EXISTS udf_json_object RETURNS STRING SONAME 'gearsync_udf.so';
CREATE FUNCTION IF NOT EXISTS gman_servers_set RETURNS STRING SONAME 'gearsync_udf.so';
CREATE FUNCTION IF NOT EXISTS gman_do_background RETURNS STRING SONAME 'gearsync_udf.so';
CREATE FUNCTION IF NOT EXISTS gearsync_timeout_set RETURNS INTEGER SONAME 'gearsync_udf.so';

SELECT gman_servers_set('127.0.0.1:4730') AS gearman_servers;

-- The seed's demo table, synced in direct mode.
CREATE DATABASE IF NOT EXISTS test;
CREATE TABLE IF NOT EXISTS test.test (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

DROP TRIGGER IF EXISTS test.test_gearsync_ai;
CREATE TRIGGER test.test_gearsync_ai AFTER INSERT ON test.test FOR EACH ROW
  DO gman_do_background('syncToRedis', udf_json_object(NEW.id AS id, NEW.name AS name));

DROP TRIGGER IF EXISTS test.test_gearsync_au;
CREATE TRIGGER test.test_gearsync_au AFTER UPDATE ON test.test FOR EACH ROW
  DO gman_do_background('syncToRedis',
       udf_json_object(NEW.id AS id, NEW.name AS name, OLD.id AS old_id));

DROP TRIGGER IF EXISTS test.test_gearsync_ad;
CREATE TRIGGER test.test_gearsync_ad AFTER DELETE ON test.test FOR EACH ROW
  DO gman_do_background('syncToRedis', udf_json_object('delete' AS op, OLD.id AS id));
