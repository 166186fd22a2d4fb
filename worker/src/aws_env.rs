//! The AWS SDK configuration of the worker's AWS clients other than ECS (S3 for the
//! sensor's `s3` mode, SSM and Secrets Manager for connections and `secret()`): the
//! standard credential chain, with `AWS_ENDPOINT_URL`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION` and `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN` of the environment the worker was given taking precedence.

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::Credentials;

/// A variable of `env`, if set and not empty.
fn var<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// The SDK configuration for `env`; an error when no region is configured anywhere.
pub async fn sdk_config(env: &BTreeMap<String, String>) -> Result<SdkConfig, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = var(env, "AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = var(env, "AWS_REGION").or_else(|| var(env, "AWS_DEFAULT_REGION")) {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let (Some(id), Some(secret)) = (
        var(env, "AWS_ACCESS_KEY_ID"),
        var(env, "AWS_SECRET_ACCESS_KEY"),
    ) {
        loader = loader.credentials_provider(Credentials::new(
            id,
            secret,
            var(env, "AWS_SESSION_TOKEN").map(str::to_owned),
            None,
            "nightshift-worker-environment",
        ));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(
            "no AWS region: set AWS_REGION for the worker or configure a profile".to_owned(),
        );
    }
    Ok(config)
}

/// An S3 client for `env`. With a custom endpoint (`AWS_ENDPOINT_URL` or
/// `AWS_ENDPOINT_URL_S3`: an emulator, MinIO) requests use path-style addressing
/// (`http://host/bucket/key`), which such endpoints serve without per-bucket host names.
pub async fn s3_client(env: &BTreeMap<String, String>) -> Result<aws_sdk_s3::Client, String> {
    let config = sdk_config(env).await?;
    let mut s3 = aws_sdk_s3::config::Builder::from(&config);
    if let Some(url) = var(env, "AWS_ENDPOINT_URL_S3") {
        s3 = s3.endpoint_url(url);
    }
    let custom =
        var(env, "AWS_ENDPOINT_URL").is_some() || var(env, "AWS_ENDPOINT_URL_S3").is_some();
    Ok(aws_sdk_s3::Client::from_conf(
        s3.force_path_style(custom).build(),
    ))
}
