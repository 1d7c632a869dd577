//! `recommend`: one day's recommendation per alert name, recomputed from
//! `lark_alerts` and written as delete + insert for the date (running it
//! twice gives the same table), then recorded in the run ledger
//! (`pipeline_recommends`) with the rows it was computed from. With `[digest]
//! receivers`, it then publishes the date's `digest` (sent once per date
//! however often the date is recomputed).

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{AppConfig, ConfigError};
use crate::queue::task::{InvalidArgs, Task, TaskContext, TaskError};
use crate::recommendation::catalogue::Catalogue;
use crate::recommendation::{NoisyThresholds, compute, unmapped};
use crate::sink::ledger::{self, RecommendRecord};
use crate::sink::starrocks::SqlSink;

/// The worker's `recommend` task: keeps its catalogue and database pool.
pub struct Recommend {
    catalogue: Catalogue,
    sink: SqlSink,
    noisy: NoisyThresholds,
    digest: bool,
}

impl Recommend {
    pub fn new(config: &AppConfig) -> Result<Recommend, ConfigError> {
        let catalogue = Catalogue::load(config.recommend.catalogue.as_deref())
            .map_err(|e| config.invalid("recommend.catalogue", &e.to_string()))?;
        Ok(Recommend {
            catalogue,
            sink: SqlSink::new(config),
            noisy: NoisyThresholds {
                fired: config.recommend.noisy_fired,
                clusters: config.recommend.noisy_clusters,
            },
            digest: config.digest.enabled(),
        })
    }
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

    fn validate(&self, a: &RecommendArgs) -> Result<(), InvalidArgs> {
        chrono::NaiveDate::parse_from_str(&a.date, "%Y-%m-%d")
            .map(|_| ())
            .map_err(|e| InvalidArgs::field("date", format!("{:?} is not YYYY-MM-DD: {e}", a.date)))
    }

    async fn run(&self, ctx: &TaskContext, a: RecommendArgs) -> Result<(), TaskError> {
        let date = chrono::NaiveDate::parse_from_str(&a.date, "%Y-%m-%d")
            .map_err(|e| TaskError::fatal(format!("date {:?} is not YYYY-MM-DD: {e}", a.date)))?;
        let (rows, newest) = self.sink.alerts_with_newest(&a.date).await?;
        let recs = compute(&a.date, &rows, &self.catalogue, &self.noisy);
        let missing = unmapped(&rows, &self.catalogue);
        if !missing.is_empty() {
            warn!(date = %a.date, names = ?missing, "alert names missing from the catalogue (add them to recommend.catalogue)");
        }
        self.sink.replace_recommendations(&a.date, &recs).await?;
        // After the effect: the ledger says what the table was computed from,
        // which is how `reconcile` tells a stale day from a fresh one.
        self.sink
            .record_recommend(&RecommendRecord {
                date,
                run_id: a.run_id.clone().unwrap_or_default(),
                generated_at: ledger::now(),
                rows_read: rows.len() as u64,
                alerts: recs.len() as u64,
                max_ingested_at: newest,
            })
            .await?;
        info!(
            date = %a.date,
            run_id = a.run_id.as_deref().unwrap_or(""),
            rows = rows.len(),
            alerts = recs.len(),
            noisy = recs.iter().filter(|r| r.is_noisy).count(),
            "recommendations written"
        );
        if self.digest {
            let child = ctx.child_task::<crate::tasks::digest::Digest>(
                &crate::tasks::digest::DigestArgs {
                    date: a.date.clone(),
                },
                Some("digest"),
            )?;
            ctx.publish_children(vec![child]).await?;
        }
        Ok(())
    }
}
