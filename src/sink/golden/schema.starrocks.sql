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

CREATE TABLE IF NOT EXISTS `alerts`.`pipeline_runs` (
  `run_id` VARCHAR(64) NOT NULL COMMENT 'run id',
  `report_date` DATE NOT NULL COMMENT 'America/Los_Angeles date fetched',
  `chat_id` VARCHAR(64) NOT NULL COMMENT 'Lark chat id',
  `window_start` DATETIME NOT NULL COMMENT 'first instant fetched, UTC',
  `window_end` DATETIME NOT NULL COMMENT 'last instant fetched, UTC (fixed on the first attempt)',
  `started_at` DATETIME NOT NULL COMMENT 'when the run started, UTC',
  `total_pages` INT NOT NULL COMMENT 'pages published; 0 until the last page is known',
  `messages` INT NOT NULL COMMENT 'messages fetched, over all pages',
  `fetched_at` DATETIME NOT NULL COMMENT 'when the last page was published, UTC (started_at until then)'
) ENGINE=OLAP
PRIMARY KEY (`run_id`)
COMMENT 'Run ledger: one row per fetch-day run'
DISTRIBUTED BY HASH(`run_id`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);

CREATE TABLE IF NOT EXISTS `alerts`.`pipeline_pages` (
  `run_id` VARCHAR(64) NOT NULL COMMENT 'run id',
  `page` INT NOT NULL COMMENT 'page number, from 1',
  `report_date` DATE NOT NULL COMMENT 'America/Los_Angeles date of the run',
  `rows_written` INT NOT NULL COMMENT 'alert rows the page gave',
  `skips` VARCHAR(65533) NOT NULL COMMENT 'messages skipped by reason, JSON object',
  `written_at` DATETIME NOT NULL COMMENT 'when the rows were written, UTC'
) ENGINE=OLAP
PRIMARY KEY (`run_id`, `page`)
COMMENT 'Run ledger: one row per page written'
DISTRIBUTED BY HASH(`run_id`, `page`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);

CREATE TABLE IF NOT EXISTS `alerts`.`pipeline_recommends` (
  `report_date` DATE NOT NULL COMMENT 'America/Los_Angeles date',
  `run_id` VARCHAR(64) NOT NULL COMMENT 'the run that asked, empty for reconcile or by hand',
  `generated_at` DATETIME NOT NULL COMMENT 'when, UTC',
  `rows_read` INT NOT NULL COMMENT 'alert rows of the date read',
  `alerts` INT NOT NULL COMMENT 'recommendations written',
  `max_ingested_at` DATETIME NOT NULL COMMENT 'newest ingested_at among the rows read (1970-01-01 if none)'
) ENGINE=OLAP
PRIMARY KEY (`report_date`, `run_id`)
COMMENT 'Run ledger: when each date''s recommendations were computed, from what'
DISTRIBUTED BY HASH(`report_date`, `run_id`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);

CREATE TABLE IF NOT EXISTS `alerts`.`web_audit` (
  `id` VARCHAR(36) NOT NULL COMMENT 'entry id (UUID)',
  `at` DATETIME NOT NULL COMMENT 'when, UTC',
  `actor` VARCHAR(64) NOT NULL COMMENT 'user name (`local` without auth)',
  `role` VARCHAR(16) NOT NULL COMMENT 'viewer or admin',
  `remote` VARCHAR(64) NOT NULL COMMENT 'peer address',
  `action` VARCHAR(64) NOT NULL COMMENT 'what was asked, e.g. dead.replay',
  `target` VARCHAR(1024) NOT NULL COMMENT 'what it was asked of',
  `result` VARCHAR(16) NOT NULL COMMENT 'ok, failed or denied',
  `detail` VARCHAR(65533) NOT NULL COMMENT 'what happened, or why not'
) ENGINE=OLAP
PRIMARY KEY (`id`)
COMMENT 'Dashboard audit log: who did what, when, with what result'
DISTRIBUTED BY HASH(`id`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);

CREATE TABLE IF NOT EXISTS `alerts`.`notifications` (
  `id` VARCHAR(36) NOT NULL COMMENT 'entry id (UUID)',
  `at` DATETIME NOT NULL COMMENT 'when the outcome was known, UTC',
  `source` VARCHAR(16) NOT NULL COMMENT 'alarm, health or test',
  `subject` VARCHAR(255) NOT NULL COMMENT 'the check or the task',
  `event` VARCHAR(16) NOT NULL COMMENT 'firing, repeat, resolved, ok, error or test',
  `labels` VARCHAR(65533) NOT NULL COMMENT 'labels or details, JSON object',
  `receiver` VARCHAR(64) NOT NULL COMMENT 'the receiver''s name',
  `outcome` VARCHAR(24) NOT NULL COMMENT 'sent, failed, dropped, ...',
  `attempts` INT NOT NULL COMMENT 'delivery attempts made',
  `error` VARCHAR(65533) NOT NULL COMMENT 'why it failed, empty when sent',
  `title` VARCHAR(1024) NOT NULL COMMENT 'the message''s title'
) ENGINE=OLAP
PRIMARY KEY (`id`)
COMMENT 'Notification ledger: what was sent (or not), to whom, with what outcome'
DISTRIBUTED BY HASH(`id`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);

CREATE TABLE IF NOT EXISTS `alerts`.`silences` (
  `id` VARCHAR(36) NOT NULL COMMENT 'silence id (UUID)',
  `check_name` VARCHAR(255) NOT NULL COMMENT 'the check, empty for pipeline health (match on task)',
  `matchers` VARCHAR(65533) NOT NULL COMMENT 'label matchers, JSON list of [name, op, value]',
  `starts_at` DATETIME NOT NULL COMMENT 'from, UTC',
  `ends_at` DATETIME NOT NULL COMMENT 'until, UTC (far future with until_resolved)',
  `until_resolved` BOOLEAN NOT NULL COMMENT 'expires by itself once nothing it matches fires',
  `comment` VARCHAR(65533) NOT NULL COMMENT 'why',
  `author` VARCHAR(64) NOT NULL COMMENT 'who',
  `expired_at` DATETIME NOT NULL COMMENT 'when it was expired early (1970-01-01 if not)',
  `expired_by` VARCHAR(64) NOT NULL COMMENT 'who or what expired it early'
) ENGINE=OLAP
PRIMARY KEY (`id`)
COMMENT 'Silences: notifications matching them are recorded, not sent'
DISTRIBUTED BY HASH(`id`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);

CREATE TABLE IF NOT EXISTS `alerts`.`digests` (
  `report_date` DATE NOT NULL COMMENT 'America/Los_Angeles date',
  `claimed_by` VARCHAR(64) NOT NULL COMMENT 'the task id (or cli-...) that claimed the date',
  `claimed_at` DATETIME NOT NULL COMMENT 'when, UTC',
  `sent_at` DATETIME NOT NULL COMMENT 'when it was sent, UTC (1970-01-01 until sent)',
  `title` VARCHAR(1024) NOT NULL COMMENT 'the digest''s title',
  `receivers` VARCHAR(1024) NOT NULL COMMENT 'receiver names, comma-separated'
) ENGINE=OLAP
PRIMARY KEY (`report_date`)
COMMENT 'Daily digest: one row per date, claimed before it is sent'
DISTRIBUTED BY HASH(`report_date`) BUCKETS 8
PROPERTIES (
  "replication_num" = "3",
  "enable_persistent_index" = "true"
);
