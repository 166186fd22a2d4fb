//! The sensor's `s3` mode: one poke asks S3 whether the object (`key`) exists with at
//! least `min_size` bytes, or whether at least `min_objects` such objects exist under
//! `prefix` (ListObjectsV2, every page). The matched keys are the sensor's output, a JSON
//! list a `for_each = { from = … }` fans out over.

use std::collections::BTreeMap;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use nightshift_core::dag::{S3Check, S3Target};

/// The most keys one poke lists (and the output holds); more objects under a prefix than
/// this are not counted.
pub const MAX_KEYS: usize = 10_000;

/// One poke: the matched keys when the condition holds, else why not yet.
pub async fn poke(check: &S3Check, env: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let client = crate::aws_env::s3_client(env).await?;
    let bucket = &check.bucket;
    match &check.target {
        S3Target::Key(key) => {
            let head = client.head_object().bucket(bucket).key(key).send().await;
            match head {
                Ok(object) => {
                    let size = u64::try_from(object.content_length().unwrap_or(0)).unwrap_or(0);
                    if size >= check.min_size {
                        Ok(vec![key.clone()])
                    } else {
                        Err(format!(
                            "s3://{bucket}/{key} has {size} bytes, fewer than min_size {}",
                            check.min_size
                        ))
                    }
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                    Err(format!("s3://{bucket}/{key} does not exist yet"))
                }
                Err(e) => Err(format!(
                    "HeadObject s3://{bucket}/{key}: {}",
                    DisplayErrorContext(&e)
                )),
            }
        }
        S3Target::Prefix(prefix) => {
            let mut keys = Vec::new();
            let mut pages = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    let code = e.code().unwrap_or_default().to_owned();
                    format!(
                        "ListObjectsV2 s3://{bucket}/{prefix}{}: {}",
                        if code.is_empty() {
                            String::new()
                        } else {
                            format!(" ({code})")
                        },
                        DisplayErrorContext(&e)
                    )
                })?;
                for object in page.contents() {
                    let size = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
                    if let (Some(key), true) = (object.key(), size >= check.min_size) {
                        keys.push(key.to_owned());
                    }
                }
                if keys.len() >= MAX_KEYS {
                    keys.truncate(MAX_KEYS);
                    break;
                }
            }
            let wanted = usize::try_from(check.min_objects).unwrap_or(usize::MAX);
            if keys.len() >= wanted {
                Ok(keys)
            } else {
                let sized = if check.min_size > 0 {
                    format!(" of at least {} bytes", check.min_size)
                } else {
                    String::new()
                };
                Err(format!(
                    "{} objects{sized} under s3://{bucket}/{prefix}, waiting for {}",
                    keys.len(),
                    check.min_objects
                ))
            }
        }
    }
}
