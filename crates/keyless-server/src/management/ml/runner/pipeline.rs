//! Pipelines: each step runs once every step it reads from has completed;
//! independent steps run at once (within their computes' slots).

use tokio_util::sync::CancellationToken;

use keyless_ml::runner::Status;

use super::record::{error, set_status};
use super::run_command;
use crate::state::SharedState;

/// Starts a pipeline in the background. Each step runs once every step it
/// reads from has completed; independent steps run at once (within their
/// computes' slots). After a failure the running steps are canceled and the
/// others skipped, as Azure stops a pipeline at its first failure, unless
/// `continue_on_step_failure`: then only the steps that read from a failed
/// one are skipped.
pub(in super::super) fn start_pipeline(
    state: SharedState,
    parent: String,
    steps: Vec<(String, Vec<String>)>,
    continue_on_step_failure: bool,
) {
    let tracker = state.jobs.tasks.clone();
    tracker.spawn(async move {
        let cancel = state.jobs.cancel_token(&parent);
        let _ = set_status(&state, &parent, Status::Running, None).await;
        let failed = run_steps(&state, steps, &cancel, continue_on_step_failure).await;
        let (status, err) = match (&failed, cancel.is_cancelled()) {
            (_, true) => (
                Status::Canceled,
                Some(error("Canceled", "the pipeline was canceled")),
            ),
            (Some(why), false) => (Status::Failed, Some(error("PipelineStepFailed", why))),
            (None, false) => (Status::Completed, None),
        };
        let _ = set_status(&state, &parent, status, err).await;
        state.jobs.forget(&parent);
    });
}

/// Runs a pipeline's steps by their dependencies; returns why it failed, if it did.
async fn run_steps(
    state: &SharedState,
    steps: Vec<(String, Vec<String>)>,
    cancel: &CancellationToken,
    continue_on_step_failure: bool,
) -> Option<String> {
    let short = |id: &str| id.rsplit('/').next().unwrap_or(id).to_owned();
    let mut ended: std::collections::HashMap<String, Status> = std::collections::HashMap::new();
    let mut failed: Option<String> = None;
    let mut pending = steps;
    let mut running: tokio::task::JoinSet<(String, Status)> = tokio::task::JoinSet::new();
    let mut started: Vec<String> = Vec::new();
    loop {
        let (ready, waiting): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, deps)| deps.iter().all(|d| ended.contains_key(d)));
        pending = waiting;
        let progress = !ready.is_empty();
        for (step, deps) in ready {
            let skipped = if cancel.is_cancelled() {
                Some(("Canceled", "the pipeline was canceled".to_owned()))
            } else if let Some(dep) = deps
                .iter()
                .find(|d| ended.get(*d) != Some(&Status::Completed))
            {
                Some((
                    "StepSkipped",
                    format!("step {} it reads from did not complete", short(dep)),
                ))
            } else if let (Some(why), false) = (&failed, continue_on_step_failure) {
                Some(("StepSkipped", why.clone()))
            } else {
                None
            };
            match skipped {
                Some((code, why)) => {
                    let _ =
                        set_status(state, &step, Status::Canceled, Some(error(code, &why))).await;
                    ended.insert(step, Status::Canceled);
                }
                None => {
                    started.push(step.clone());
                    let state = state.clone();
                    running.spawn(async move {
                        let end = run_command(&state, &step, None).await;
                        (step, end)
                    });
                }
            }
        }
        // Skipping a step may have made others ready.
        if running.is_empty() {
            if pending.is_empty() {
                break;
            }
            if !progress {
                // Nothing runs and nothing can start: what is left waits on a
                // step that never ended (its runner failed).
                for (step, _) in std::mem::take(&mut pending) {
                    let why = "a step it reads from never ended";
                    let _ = set_status(
                        state,
                        &step,
                        Status::Canceled,
                        Some(error("StepSkipped", why)),
                    )
                    .await;
                }
                break;
            }
            continue;
        }
        match running.join_next().await {
            Some(Ok((step, end))) => {
                if end != Status::Completed && failed.is_none() {
                    failed = Some(format!("step {} ended {end}", short(&step)));
                    if !continue_on_step_failure {
                        for other in started.iter().filter(|o| !ended.contains_key(*o)) {
                            state.jobs.cancel_token(other).cancel();
                        }
                    }
                }
                ended.insert(step, end);
            }
            Some(Err(e)) => {
                failed.get_or_insert_with(|| format!("a step's runner failed: {e}"));
            }
            None => break,
        }
    }
    failed
}
