//! `http-probe`: GET a URL and succeed when it answers the expected status.
//! Anything else is retried with the usual backoff, so an endpoint that stays
//! down ends in the dead-letter queue and the pipeline health notifier says
//! ERROR. Published by a schedule, it watches what the pipeline depends on
//! (a StarRocks FE's `/api/health`, a dashboard):
//!
//! ```toml
//! [[schedules]]
//! name = "starrocks-fe-up"
//! every = "1m"
//! task = "http-probe"
//! args = { url = "http://starrocks-fe:8030/api/health" }
//! ```
//!
//! It is also the README's example of a task with a client of its own: the
//! client is built once, by [`HttpProbe::new`] when the process starts, and
//! shared by every run of the task.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, ConfigError, redact_url};
use crate::queue::task::{InvalidArgs, Task, TaskContext, TaskError};

/// Holds the process's one HTTP client (its connection pool).
pub struct HttpProbe {
    http: reqwest::Client,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeArgs {
    /// `http://` or `https://` URL to GET.
    pub url: String,
    /// The status that counts as up (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
}

fn default_status() -> u16 {
    200
}

impl HttpProbe {
    pub fn new(config: &AppConfig) -> Result<HttpProbe, ConfigError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("alertflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config.invalid("tasks.http-probe", &e.to_string()))?;
        Ok(HttpProbe { http })
    }
}

impl Task for HttpProbe {
    const NAME: &'static str = "http-probe";
    type Args = HttpProbeArgs;

    fn validate(&self, a: &HttpProbeArgs) -> Result<(), InvalidArgs> {
        let url = url::Url::parse(&a.url).map_err(|e| {
            InvalidArgs::field("url", format!("{:?} is not a URL: {e}", redact_url(&a.url)))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidArgs::field(
                "url",
                format!("must be http:// or https://, not {}://", url.scheme()),
            ));
        }
        if !(100..=599).contains(&a.status) {
            return Err(InvalidArgs::field(
                "status",
                format!("{} is not an HTTP status", a.status),
            ));
        }
        Ok(())
    }

    async fn run(&self, _ctx: &TaskContext, a: HttpProbeArgs) -> Result<(), TaskError> {
        self.validate(&a).map_err(TaskError::fatal)?;
        let shown = redact_url(&a.url);
        let response = self
            .http
            .get(&a.url)
            .send()
            .await
            // reqwest's error names the URL, which may carry a password.
            .map_err(|e| TaskError::retry(format!("GET {shown}: {}", e.without_url())))?;
        let status = response.status().as_u16();
        if status == a.status {
            Ok(())
        } else {
            Err(TaskError::retry(format!(
                "GET {shown} answered {status}, expected {}",
                a.status
            )))
        }
    }
}
