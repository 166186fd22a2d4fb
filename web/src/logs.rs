//! What the API and the UI share about logs: the search term's rules, and a try's whole
//! log as a text download, streamed from the store a page of lines at a time while it
//! is sent, so a log of any size costs the server the same memory (one page) and holds
//! no database connection between pages.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use nightshift_store::{Store, StoreError};

use crate::error::ApiError;

/// Lines read from the store per page of a download.
pub const DOWNLOAD_PAGE: i64 = 1000;

/// The log of try `try_number` of instance `ti_id` as `text/plain`, one line per log
/// line (already masked when stored), offered for saving as `file_name`.
pub fn download(store: Store, ti_id: i64, try_number: i32, file_name: &str) -> Response {
    let pages = futures_util::stream::try_unfold(Some(0_i64), move |after| {
        let store = store.clone();
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let rows = store
                .read_logs(ti_id, try_number, after, DOWNLOAD_PAGE)
                .await
                .inspect_err(|error| {
                    tracing::warn!(%error, ti_id, try_number, "log download cut short");
                })?;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            let next = (rows.len() as i64 == DOWNLOAD_PAGE).then_some(last.line_no);
            let mut text = String::with_capacity(rows.iter().map(|r| r.line.len() + 1).sum());
            for row in &rows {
                text.push_str(&row.line);
                text.push('\n');
            }
            Ok::<_, StoreError>(Some((Bytes::from(text), next)))
        }
    });
    let disposition = format!("attachment; filename=\"{file_name}\"");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(pages),
    )
        .into_response()
}

/// `dag.run.task[.map_index].tryN.log`, with every character but ASCII letters, digits,
/// `-` and `_` in the ids replaced by `_` (safe in a header and on every file system).
pub fn file_name(
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
    try_number: i32,
) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let map = if map_index >= 0 {
        format!(".{map_index}")
    } else {
        String::new()
    };
    format!(
        "{}.{}.{}{map}.try{try_number}.log",
        clean(dag_id),
        clean(run_id),
        clean(task_id)
    )
}

/// The longest search term, in characters.
pub const LOG_SEARCH_MAX_CHARS: usize = 200;

/// Checks a search term: not blank, at most [`LOG_SEARCH_MAX_CHARS`].
pub fn search_term(q: &str) -> Result<&str, ApiError> {
    if q.trim().is_empty() {
        return Err(ApiError::BadRequest("the search term is empty".to_owned()));
    }
    if q.chars().count() > LOG_SEARCH_MAX_CHARS {
        return Err(ApiError::BadRequest(format!(
            "the search term is longer than {LOG_SEARCH_MAX_CHARS} characters"
        )));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            file_name(
                "nightly",
                "scheduled__2026-01-02T00:00:00+00:00",
                "load",
                -1,
                2
            ),
            "nightly.scheduled__2026-01-02T00_00_00_00_00.load.try2.log"
        );
        assert_eq!(file_name("d", "r\"; x", "t", 3, 1), "d.r___x.t.3.try1.log");
    }
}
