//! `alertflow schedule list|run|pause|resume`.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_broker, print_table};
use crate::queue::beat::Beat;
use crate::queue::publisher::Publisher;

#[derive(clap::Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Each schedule with its next fire times (local and UTC) and last fire.
    #[command(
        after_help = "Examples:\n  alertflow schedule list\n  alertflow schedule list --next 5 --json"
    )]
    List {
        /// How many upcoming fires to show.
        #[arg(long, default_value_t = 3)]
        next: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish one fire of a schedule now (outside its timetable).
    #[command(after_help = "Example:\n  alertflow schedule run daily-ingest")]
    Run {
        /// The schedule's `name` in `[[schedules]]`.
        name: String,
    },
    /// Pause a schedule on every beat: its fires are skipped (and not caught
    /// up on resume) until `schedule resume`.
    #[command(
        after_help = "Example:\n  alertflow schedule pause daily-ingest --comment \"StarRocks upgrade\""
    )]
    Pause {
        /// The schedule's `name` in `[[schedules]]`.
        name: String,
        /// Why (shown by `schedule list` and the dashboard).
        #[arg(long, default_value = "")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Resume a paused schedule from its next fire.
    #[command(after_help = "Example:\n  alertflow schedule resume daily-ingest")]
    Resume {
        /// The schedule's `name` in `[[schedules]]`.
        name: String,
    },
}

/// A fire instant, in the schedule's zone and in UTC.
#[derive(Serialize)]
pub struct Fire {
    pub local: String,
    pub utc: String,
}

/// A schedule as `schedule list` (and the dashboard) show it.
#[derive(Serialize)]
pub struct Row {
    pub name: String,
    pub schedule: String,
    pub timezone: String,
    pub task: String,
    pub queue: String,
    pub args: serde_json::Value,
    pub catch_up: String,
    pub next: Vec<Fire>,
    pub last: Option<Fire>,
    /// Who paused it, when and why; `None` when active.
    pub paused: Option<crate::queue::beat::Pause>,
}

/// Every enabled schedule with its next `next` fires after `now` and its
/// last fire; the error is Redis's, when the last fires could not be read.
pub async fn schedule_rows(
    beat: &Beat,
    now: chrono::DateTime<Utc>,
    next: usize,
) -> (Vec<Row>, Option<String>) {
    let mut rows = Vec::new();
    let mut redis_error = None;
    let mut paused = match beat.paused().await {
        Ok(p) => p,
        Err(e) => {
            redis_error = Some(e.to_string());
            Default::default()
        }
    };
    for s in beat.schedules() {
        let tz = s.timezone();
        let fmt = |t: chrono::DateTime<Utc>| Fire {
            local: t
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
            utc: t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        };
        let mut fires = Vec::new();
        let mut t = now;
        for _ in 0..next {
            match s.next_fire_after(t) {
                Some(n) => {
                    fires.push(fmt(n));
                    t = n;
                }
                None => break,
            }
        }
        let last = match beat.last_fire(s.name()).await {
            Ok(l) => l.map(fmt),
            Err(e) => {
                redis_error = Some(e.to_string());
                None
            }
        };
        rows.push(Row {
            name: s.name().to_string(),
            schedule: s.describe().to_string(),
            timezone: tz.name().to_string(),
            task: s.task().to_string(),
            queue: beat.family(s),
            args: s.args().clone(),
            catch_up: s.catch_up().to_string(),
            next: fires,
            last,
            paused: paused.remove(s.name()),
        });
    }
    (rows, redis_error)
}

pub async fn run(g: &GlobalOpts, cmd: ScheduleCommand) -> CliResult {
    let (config, registry) = g.load_with_registry()?;
    let beat =
        Beat::new(Arc::new(config.queue.clone()), Arc::new(registry)).map_err(CliError::usage)?;
    match cmd {
        ScheduleCommand::List { next, json } => {
            let (rows, redis_error) = schedule_rows(&beat, Utc::now(), next).await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("serializes")
                );
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            r.schedule.clone(),
                            r.timezone.clone(),
                            format!("{} {}", r.task, r.args),
                            r.catch_up.clone(),
                            r.next
                                .iter()
                                .map(|f| format!("{} ({})", f.local, f.utc))
                                .collect::<Vec<_>>()
                                .join("\n"),
                            match &r.paused {
                                Some(p) => format!(
                                    "{} (PAUSED by {} {})",
                                    r.last.as_ref().map_or("never", |f| f.local.as_str()),
                                    p.by,
                                    p.comment
                                ),
                                None => r
                                    .last
                                    .as_ref()
                                    .map(|f| f.local.clone())
                                    .unwrap_or_else(|| "never".into()),
                            },
                        ]
                    })
                    .collect();
                // One line per upcoming fire keeps the table readable.
                let mut lines = Vec::new();
                for r in table {
                    let nexts: Vec<String> = r[5].split('\n').map(str::to_string).collect();
                    for (i, n) in nexts.iter().enumerate() {
                        if i == 0 {
                            lines.push(vec![
                                r[0].clone(),
                                r[1].clone(),
                                r[2].clone(),
                                r[3].clone(),
                                r[4].clone(),
                                n.clone(),
                                r[6].clone(),
                            ]);
                        } else {
                            lines.push(vec![
                                String::new(),
                                String::new(),
                                String::new(),
                                String::new(),
                                String::new(),
                                n.clone(),
                                String::new(),
                            ]);
                        }
                    }
                }
                print_table(
                    &[
                        "NAME",
                        "SCHEDULE",
                        "TIMEZONE",
                        "TASK",
                        "CATCH-UP",
                        "NEXT (LOCAL (UTC))",
                        "LAST",
                    ],
                    &lines,
                );
                if rows.is_empty() {
                    println!("(no enabled [[schedules]] in {})", config.source);
                }
            }
            if let Some(e) = redis_error {
                eprintln!("warning: last fires unknown: {e}");
            }
            Ok(EXIT_OK)
        }
        ScheduleCommand::Run { name } => {
            let conn = connect_broker(&config, "cli").await?;
            let topology = Arc::new(crate::queue::topology::Topology::from_config(&config));
            let publisher = Publisher::open(&conn, topology.clone(), 1)
                .await
                .map_err(CliError::failure)?;
            topology
                .declare(publisher.channel(), &[])
                .await
                .map_err(CliError::failure)?;
            let id = beat
                .run_now(&publisher, &name)
                .await
                .map_err(CliError::failure)?;
            let _ = conn.close(200, "done".into()).await;
            println!("{id}");
            Ok(EXIT_OK)
        }
        ScheduleCommand::Pause { name, comment, by } => {
            let pause = crate::queue::beat::Pause {
                by: by
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "cli".into()),
                at: Utc::now(),
                comment,
            };
            beat.pause(&name, &pause).await.map_err(CliError::failure)?;
            println!("{name} paused");
            Ok(EXIT_OK)
        }
        ScheduleCommand::Resume { name } => {
            let was = beat.resume(&name).await.map_err(CliError::failure)?;
            println!("{name} {}", if was { "resumed" } else { "was not paused" });
            Ok(EXIT_OK)
        }
    }
}
