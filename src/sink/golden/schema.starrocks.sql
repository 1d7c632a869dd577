CREATE DATABASE IF NOT EXISTS `alerts`;

CREATE TABLE IF NOT EXISTS `alerts`.`lark_alerts` (
  `message_id` VARCHAR(96) NOT NULL COMMENT 'Lark message id + -f (firing) or -r (resolved)',
  `lark_message_id` VARCHAR(64) NOT NULL COMMENT 'Lark message id',
  `chat_id` VARCHAR(64) NOT NULL COMMENT 'Lark chat id',
  `status` VARCHAR(16) NOT NULL COMMENT 'firing or resolved',
  `alert_name` VARCHAR(512) NOT NULL COMMENT 'alert name',
  `severity` VARCHAR(32) NOT NULL COMMENT 'critical, warning, info, other, or empty',
  `clusters` VARCHAR(65533) NOT NULL COMMENT 'distinct clusters, sorted, comma-separated',
  `regions` VARCHAR(65533) NOT NULL COMMENT 'distinct regions, sorted, comma-separated',
  `alert_count` INT NOT NULL COMMENT 'sections with this status in the card',
  `created_at` DATETIME NOT NULL COMMENT 'message time, UTC',
  `alert_date` DATE NOT NULL COMMENT 'America/Los_Angeles date of created_at',
  `title` VARCHAR(65533) NOT NULL COMMENT 'card title',
  `summary` VARCHAR(65533) NOT NULL COMMENT 'summary of the first section',
  `raw_content` VARCHAR(1048576) NOT NULL COMMENT 'the card as read back from Lark',
  `ingested_at` DATETIME NOT NULL COMMENT 'when alertflow wrote the row, UTC'
) ENGINE=OLAP
PRIMARY KEY (`message_id`)
COMMENT 'Alert rows parsed from Lark alert cards (one per message and status)'
DISTRIBUTED BY HASH(`message_id`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);

CREATE TABLE IF NOT EXISTS `alerts`.`alert_recommendations` (
  `report_date` DATE NOT NULL COMMENT 'America/Los_Angeles date',
  `alert_name` VARCHAR(512) NOT NULL COMMENT 'alert name',
  `severity` VARCHAR(32) NOT NULL COMMENT 'from the catalogue, else the highest seen, else unknown',
  `fired_count` INT NOT NULL COMMENT 'firing rows that day',
  `resolved_count` INT NOT NULL COMMENT 'resolved rows that day',
  `cluster_count` INT NOT NULL COMMENT 'distinct clusters affected',
  `clusters` VARCHAR(65533) NOT NULL COMMENT 'distinct clusters, sorted, comma-separated',
  `regions` VARCHAR(65533) NOT NULL COMMENT 'distinct regions, sorted, comma-separated',
  `is_noisy` BOOLEAN NOT NULL COMMENT 'fired >= 10 times or on >= 3 clusters (configurable)',
  `in_catalogue` BOOLEAN NOT NULL COMMENT 'whether the catalogue knows the alert',
  `recommendation` VARCHAR(65533) NOT NULL COMMENT 'what to do about it',
  `generated_at` DATETIME NOT NULL COMMENT 'when the recommendation was computed, UTC'
) ENGINE=OLAP
PRIMARY KEY (`report_date`, `alert_name`)
COMMENT 'Daily recommendation per alert name'
DISTRIBUTED BY HASH(`report_date`, `alert_name`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);
