//! `parse-batch`: one fetched page of messages → alert rows (cards.md), then
//! one `insert` with the rows. A malformed card is a counted skip, never a
//! failure of the batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, warn};

use crate::config::{AppConfig, ConfigError};
use crate::lark::card::{Aliases, parse_items};
use crate::queue::task::{Task, TaskContext, TaskError};
use crate::run_state::RunState;
use crate::tasks::insert::{Insert, InsertArgs};

/// Holds the card-key aliases (built-in plus `[parser.aliases]`).
pub struct ParseBatch {
    aliases: Aliases,
}

impl ParseBatch {
    pub fn new(config: &AppConfig) -> Result<ParseBatch, ConfigError> {
        let aliases = config
            .parser
            .aliases()
            .map_err(|m| config.invalid("parser.aliases", &m.to_string()))?;
        Ok(ParseBatch { aliases })
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParseBatchArgs {
    pub run_id: String,
    pub date: String,
    pub page: u32,
    pub items: Vec<Value>,
}

impl Task for ParseBatch {
    const NAME: &'static str = "parse-batch";
    type Args = ParseBatchArgs;

    fn queue(&self) -> &'static str {
        "default"
    }

    async fn run(&self, ctx: &TaskContext, a: ParseBatchArgs) -> Result<(), TaskError> {
        let config = &ctx.services.config;
        let outcome = parse_items(&a.items, &self.aliases);
        if !outcome.skips.is_empty() {
            debug!(page = a.page, skips = ?outcome.skips, "messages skipped");
        }
        let misdated = outcome
            .rows
            .iter()
            .filter(|r| r.alert_date != a.date)
            .count();
        if misdated > 0 {
            warn!(page = a.page, misdated, date = %a.date, "rows outside the run's day (kept; alert_date is computed from the message time)");
        }
        let runs = RunState::new(
            ctx.services.redis.clone(),
            &config.namespace,
            config.state.ttl.0,
        );
        let rows = outcome.rows.len();
        let wanted: std::collections::BTreeSet<&str> = outcome
            .rows
            .iter()
            .map(|r| r.lark_message_id.as_str())
            .collect();
        let raw: BTreeMap<String, String> = a
            .items
            .iter()
            .filter_map(|item| {
                let id = item.get("message_id")?.as_str()?;
                let content = item.get("body")?.get("content")?.as_str()?;
                wanted
                    .contains(id)
                    .then(|| (id.to_string(), content.to_string()))
            })
            .collect();
        let insert = ctx.child_task::<Insert>(
            &InsertArgs {
                run_id: a.run_id.clone(),
                date: a.date.clone(),
                page: a.page,
                rows: outcome.rows,
                raw,
                skips: outcome.skips.clone(),
            },
            Some("insert"),
        )?;
        ctx.publish_children(vec![insert]).await?;
        runs.page_parsed(&a.run_id, a.page, rows, &outcome.skips)
            .await?;
        Ok(())
    }
}
