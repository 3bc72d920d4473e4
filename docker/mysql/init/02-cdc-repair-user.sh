#!/bin/bash
# The least-privilege user of cdc-repair (the README's grants). The mysql image sources *.sh files in
# /docker-entrypoint-initdb.d on the first start, after 01-webook.sql (cdc_repair/resources/webook.sql)
# created the demo tables. The password comes from the environment, never from a file in the repository.
set -euo pipefail
: "${CDC_DB_PASSWORD:?set CDC_DB_PASSWORD for the cdc_repair user}"
docker_process_sql <<SQL
CREATE USER IF NOT EXISTS 'cdc_repair'@'%' IDENTIFIED BY '${CDC_DB_PASSWORD}';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc_repair'@'%';
GRANT SELECT ON webook_author.articles TO 'cdc_repair'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON webook_online.published_articles TO 'cdc_repair'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON webook_online.undo_log TO 'cdc_repair'@'%';
GRANT ALL ON cdc_repair.* TO 'cdc_repair'@'%';
SQL
