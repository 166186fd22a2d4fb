//! What the AWS task kinds (`ecs`, `athena`, `redshift`) share: the SDK configuration from
//! the standard AWS chain with the worker's environment (passed explicitly) taking
//! precedence — `AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` — and the status-poll
//! backoff (`NIGHTSHIFT_<KIND>_POLL_INTERVAL`, `NIGHTSHIFT_<KIND>_POLL_MAX`).

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::Credentials;

use crate::kind::external::ExternalJob;

/// The SDK configuration for a try of `kind`; an error names what is missing.
pub async fn sdk_config(job: &ExternalJob, kind: &str) -> Result<SdkConfig, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = job.var("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = job
        .var("AWS_REGION")
        .or_else(|| job.var("AWS_DEFAULT_REGION"))
    {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let (Some(id), Some(secret)) = (
        job.var("AWS_ACCESS_KEY_ID"),
        job.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        loader = loader.credentials_provider(Credentials::new(
            id,
            secret,
            job.var("AWS_SESSION_TOKEN").map(str::to_owned),
            None,
            "nightshift-worker-environment",
        ));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(format!(
            "no AWS region for the {kind} task: set AWS_REGION for the worker or configure a profile"
        ));
    }
    Ok(config)
}

/// A status poll's backoff: `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    pub initial: Duration,
    pub max: Duration,
}

impl Polling {
    /// `NIGHTSHIFT_<KIND>_POLL_INTERVAL` and `NIGHTSHIFT_<KIND>_POLL_MAX` (humantime), 1s
    /// and 15s when unset or nonsense; a max below the start is raised to it.
    pub fn from(job: &ExternalJob, kind: &str) -> Polling {
        let upper = kind.to_ascii_uppercase();
        let read = |name: String, default: Duration| {
            job.var(&name)
                .and_then(|v| humantime::parse_duration(v).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(default)
        };
        let initial = read(
            format!("NIGHTSHIFT_{upper}_POLL_INTERVAL"),
            Duration::from_secs(1),
        );
        let max = read(
            format!("NIGHTSHIFT_{upper}_POLL_MAX"),
            Duration::from_secs(15),
        )
        .max(initial);
        Polling { initial, max }
    }

    pub fn next(&self, delay: Duration) -> Duration {
        delay.saturating_mul(2).min(self.max)
    }
}
