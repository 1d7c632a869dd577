//! `recommend`: one day's recommendation per alert name, recomputed from
//! `lark_alerts` and written as delete + insert for the date (running it
//! twice gives the same table).

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::queue::task::{Task, TaskContext, TaskError};
use crate::sink::starrocks::SqlSink;
use crate::tasks::catalogue::Catalogue;
use crate::tasks::recommendation::{NoisyThresholds, compute, unmapped};

/// The worker's `recommend` task: keeps its catalogue and database pool.
#[derive(Default)]
pub struct Recommend {
    state: OnceCell<(Catalogue, SqlSink)>,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RecommendArgs {
    pub date: String,
    /// The run that asked for it, if any (for the log).
    #[serde(default)]
    pub run_id: Option<String>,
}

impl Task for Recommend {
    const NAME: &'static str = "recommend";
    type Args = RecommendArgs;

    fn queue(&self) -> &'static str {
        "db"
    }

    /// Database outages are ridden out: with the default backoff (1 s
    /// doubling, capped at 10 min) twelve retries cover well over an hour.
    fn max_retries(&self) -> Option<u32> {
        Some(12)
    }

    fn validate(&self, a: &RecommendArgs, _config: &crate::config::Config) -> Result<(), String> {
        chrono::NaiveDate::parse_from_str(&a.date, "%Y-%m-%d")
            .map(|_| ())
            .map_err(|e| format!("date: {:?} is not YYYY-MM-DD: {e}", a.date))
    }

    async fn run(&self, ctx: &TaskContext, a: RecommendArgs) -> Result<(), TaskError> {
        let config = &ctx.services.config;
        chrono::NaiveDate::parse_from_str(&a.date, "%Y-%m-%d")
            .map_err(|e| TaskError::fatal(format!("date {:?} is not YYYY-MM-DD: {e}", a.date)))?;
        let (catalogue, sink) = self
            .state
            .get_or_try_init(|| async {
                let cat = Catalogue::load(config.recommend.catalogue.as_deref())
                    .map_err(|e| TaskError::fatal(format!("recommend.catalogue: {e}")))?;
                Ok::<_, TaskError>((cat, SqlSink::new(config)))
            })
            .await?;
        let rows = sink.alerts_for_date(&a.date).await?;
        let noisy = NoisyThresholds {
            fired: config.recommend.noisy_fired,
            clusters: config.recommend.noisy_clusters,
        };
        let recs = compute(&a.date, &rows, catalogue, &noisy);
        let missing = unmapped(&rows, catalogue);
        if !missing.is_empty() {
            warn!(date = %a.date, names = ?missing, "alert names missing from the catalogue (add them to recommend.catalogue)");
        }
        sink.replace_recommendations(&a.date, &recs).await?;
        info!(
            date = %a.date,
            run_id = a.run_id.as_deref().unwrap_or(""),
            rows = rows.len(),
            alerts = recs.len(),
            noisy = recs.iter().filter(|r| r.is_noisy).count(),
            "recommendations written"
        );
        Ok(())
    }
}
