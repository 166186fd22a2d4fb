//! The DAG source page: the DAG file as loaded, highlighted on the server, for the
//! definition loaded now or (`?hash=`) the one a run was made from.

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::Utc;
use serde::Deserialize;

use super::contexts::{DagHeader, SourcePage, Tab};
use super::{dag_path, highlight, render, Layout, PageResult};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::lookup::dag_record;
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct SourceParams {
    /// A definition hash (a run's `definition_hash`); the DAG's current one if omitted.
    pub hash: Option<String>,
}

pub async fn source(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(params): Query<SourceParams>,
) -> PageResult {
    let record = dag_record(&state.store, &dag_id).await?;
    let hash = params
        .hash
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| record.source_hash.clone());
    // A hash is 64 hex digits; anything else names no version (and is not echoed back
    // at length).
    if hash.len() > 128 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest("hash: not a definition hash".to_owned()).into());
    }
    let current = hash == record.source_hash;
    let kept = state.store.get_dag_source(&dag_id, &hash).await?;
    if kept.is_none() && !current {
        // Neither kept nor the DAG's: not a version of this DAG we know of.
        let ran = state.store.run_with_definition(&dag_id, &hash).await?;
        if !ran {
            return Err(ApiError::not_found("DAG definition", format!("{dag_id} {hash}")).into());
        }
    }
    let lines = kept
        .as_ref()
        .map(|k| highlight::toml_lines(&k.source))
        .unwrap_or_default();
    let page = SourcePage {
        layout: Layout::new(format!("{dag_id} source"), &user),
        dag: DagHeader::new(&record, Tab::Source, Utc::now()),
        current_href: (!current).then(|| format!("{}/source", dag_path(&dag_id))),
        current,
        file_path: kept.as_ref().map(|k| k.file_path.clone()),
        loaded_at: kept.as_ref().map(|k| k.created_at),
        lines,
        hash,
    };
    Ok(render(&page)?.into_response())
}
