//! `POST /api/config`: validate a submitted config completely (schema, references, secrets,
//! backends constructible), show the diff, and unless it is a dry run write it atomically over
//! the running config file, byte for byte as submitted, then reconcile what it changes. A config
//! that changes a restart-only setting (database, socket, local CA directory, listener guard,
//! path allow-list) is refused whole: those move only with an edit of the file on the server.

use std::os::unix::fs::PermissionsExt;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use rota_api::config::{ConfigErrors, ConfigIssue, load_str};
use rota_api::wire::{ApplyRequest, ApplyResponse, ErrorBody};
use rota_providers::atomic_write::write_atomic;

use crate::error::{ApiError, JsonBody};
use crate::state::AppState;

/// Mode of a config file rotad creates; an existing file keeps its own.
const NEW_CONFIG_MODE: u32 = 0o640;

pub(crate) async fn apply(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ApplyRequest>,
) -> Response {
    let _serialized = state.apply_lock.lock().await;
    let running = state.reconciler.desired();
    let path = running.loaded.path.clone();
    let text = request.yaml;
    let load_path = path.clone();
    let loaded = match tokio::task::spawn_blocking(move || load_str(&load_path, text)).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(errors)) => return invalid(errors),
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                .into_response();
        }
    };
    let moved = loaded.restart_only_issues(&running.loaded.config);
    if !moved.is_empty() {
        return refused_restart_only(moved);
    }
    let diff = unified_diff(
        &running.loaded.text,
        &loaded.text,
        &path.display().to_string(),
    );
    let unchanged = running.loaded.text == loaded.text;
    let prepared = match state.reconciler.prepare(loaded) {
        Ok(p) => p,
        Err(errors) => return invalid(errors),
    };
    let mut response = ApplyResponse {
        diff,
        applied: false,
        added: prepared.diff.added.clone(),
        changed: prepared.diff.changed.clone(),
        removed: prepared.diff.removed.clone(),
    };
    if request.dry_run || unchanged {
        return Json(response).into_response();
    }
    let bytes = prepared.text().as_bytes().to_vec();
    let write_path = path.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mode = std::fs::metadata(&write_path)
            .map_or(NEW_CONFIG_MODE, |m| m.permissions().mode() & 0o7777);
        write_atomic(&write_path, &bytes, mode)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "write_failed",
                format!(
                    "cannot write {}: {e}; the running config is unchanged",
                    path.display()
                ),
            )
            .into_response();
        }
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                .into_response();
        }
    }
    state.reconciler.commit(prepared);
    response.applied = true;
    Json(response).into_response()
}

fn invalid(errors: ConfigErrors) -> Response {
    let n = errors.0.len();
    let message = format!(
        "the config has {n} problem{}; nothing was changed",
        if n == 1 { "" } else { "s" }
    );
    config_refusal(message, errors.0)
}

/// The config moves where rotad keeps its state or how its listeners are guarded: only root,
/// editing the file on the server, may do that, and it takes effect at the next start.
fn refused_restart_only(issues: Vec<ConfigIssue>) -> Response {
    let fields: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    let message = format!(
        "the config changes {}, which rotad reads only at start and `rota apply` may not change; nothing was changed",
        fields.join(", ")
    );
    config_refusal(message, issues)
}

fn config_refusal(message: String, config_errors: Vec<ConfigIssue>) -> Response {
    let body = ErrorBody {
        code: "invalid_config".to_owned(),
        message,
        config_errors,
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// A unified diff of the running file against the submitted one, empty when identical.
fn unified_diff(old: &str, new: &str, path: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (running)"), &format!("{path} (submitted)"))
        .to_string()
}
