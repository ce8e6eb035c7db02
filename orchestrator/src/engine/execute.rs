//! Execute: one try of a task's operator with its rendered config, under the task's
//! `execution_timeout` and the caller's cancellation. Shared by the executor and `dags test`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use updraft_operators::{
    LogSink, OperatorError, Registry, TaskContext, TaskIdentity, TaskServices,
};

use super::render::{RenderError, Rendered, TemplateInputs, render};
use crate::dag::Task;

#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("unknown operator `{0}`")]
    UnknownOperator(String),
    #[error(transparent)]
    Operator(#[from] OperatorError),
    #[error("execution_timeout of {0:?} exceeded")]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
}

/// One try: renders the config once, then executes. Returns the outcome and the rendered
/// config, which is exactly what the operator received (`None` when rendering failed).
pub async fn run_try(
    task: &Task,
    registry: &Registry,
    inputs: &TemplateInputs,
    log: Arc<dyn LogSink>,
    services: TaskServices,
    cancel: CancellationToken,
) -> (Result<Value, TryError>, Option<Value>) {
    let rendered = match render(task, registry, inputs) {
        Ok(rendered) => rendered,
        Err(error) => return (Err(error.into()), None),
    };
    let config = rendered.config.clone();
    let identity = TaskIdentity {
        dag_id: inputs.dag_id.clone(),
        run_id: inputs.run_id.clone(),
        task_id: task.task_id.clone(),
        try_number: inputs.try_number,
        logical_date: inputs.logical_date.to_rfc3339(),
        data_interval_start: inputs.data_interval_start.to_rfc3339(),
        data_interval_end: inputs.data_interval_end.to_rfc3339(),
        params: inputs.params.clone(),
    };
    let outcome = execute(task, registry, identity, rendered, log, services, cancel).await;
    (outcome, Some(config))
}

/// Runs the operator once with its rendered config; its output becomes the task's XCom.
pub async fn execute(
    task: &Task,
    registry: &Registry,
    identity: TaskIdentity,
    rendered: Rendered,
    log: Arc<dyn LogSink>,
    services: TaskServices,
    cancel: CancellationToken,
) -> Result<Value, TryError> {
    let operator = registry
        .get(&task.operator)
        .ok_or_else(|| TryError::UnknownOperator(task.operator.clone()))?;
    // The operator sees a child token: a timeout cancels it without cancelling the caller's.
    let operator_cancel = cancel.child_token();
    let ctx = TaskContext {
        identity,
        log,
        xcom: services.xcom,
        dag_runs: services.dag_runs,
        cancel: operator_cancel.clone(),
        renderer: rendered.renderer,
    };
    let execution = operator.execute(rendered.config, &ctx);
    let timed = async {
        match task.execution_timeout {
            Some(limit) => match tokio::time::timeout(limit, execution).await {
                Ok(result) => result.map_err(TryError::from),
                Err(_) => {
                    operator_cancel.cancel();
                    Err(TryError::Timeout(limit))
                }
            },
            None => execution.await.map_err(TryError::from),
        }
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TryError::Cancelled),
        result = timed => match result {
            Err(TryError::Operator(OperatorError::Cancelled)) => Err(TryError::Cancelled),
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::render::tests::{inputs, task};

    struct Silent;
    impl LogSink for Silent {
        fn write_line(&self, _line: &str) {}
    }

    fn no_services() -> TaskServices {
        TaskServices {
            xcom: Arc::new(updraft_operators::LoggedXCom {
                log: Arc::new(Silent),
            }),
            dag_runs: Arc::new(updraft_operators::NoDagRuns {
                reason: "a unit test has no run store".into(),
            }),
        }
    }

    #[tokio::test]
    async fn a_failing_template_fails_the_try_without_running_the_operator() {
        let registry = updraft_operators::builtin_registry();
        let marker = std::env::temp_dir().join(format!("updraft-never-{}", std::process::id()));
        let command = format!("touch {} {{{{ missing }}}}", marker.display());
        let (result, rendered) = run_try(
            &task("shell", serde_json::json!({"command": command}), None),
            &registry,
            &inputs(),
            Arc::new(Silent),
            no_services(),
            CancellationToken::new(),
        )
        .await;
        assert!(
            matches!(result, Err(TryError::Render(RenderError::Template { .. }))),
            "{result:?}"
        );
        assert_eq!(rendered, None);
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn execution_timeout_and_cancellation_end_the_try() {
        let registry = updraft_operators::builtin_registry();
        let slow = task(
            "shell",
            serde_json::json!({"command": "sleep 30"}),
            Some(Duration::from_millis(300)),
        );
        let started = std::time::Instant::now();
        let (result, _) = run_try(
            &slow,
            &registry,
            &inputs(),
            Arc::new(Silent),
            no_services(),
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(result, Err(TryError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let cancel = CancellationToken::new();
        let no_limit = task("shell", serde_json::json!({"command": "sleep 30"}), None);
        let trigger = cancel.clone();
        let running = tokio::spawn(async move {
            run_try(
                &no_limit,
                &registry,
                &inputs(),
                Arc::new(Silent),
                no_services(),
                cancel,
            )
            .await
        });
        trigger.cancel();
        let (result, _) = running.await.unwrap();
        assert!(matches!(result, Err(TryError::Cancelled)), "{result:?}");
    }

    #[tokio::test]
    async fn the_output_is_the_operators_xcom_and_the_rendered_config_what_it_got() {
        let registry = updraft_operators::builtin_registry();
        let (result, rendered) = run_try(
            &task(
                "shell",
                serde_json::json!({"command": "echo {{ uuid4() }}"}),
                None,
            ),
            &registry,
            &inputs(),
            Arc::new(Silent),
            no_services(),
            CancellationToken::new(),
        )
        .await;
        let output = result.unwrap();
        let command = rendered.unwrap()["command"].as_str().unwrap().to_string();
        // Rendered once: the stored command is the one that ran, uuid and all.
        let uuid = command.trim_start_matches("echo ");
        assert_eq!(uuid.len(), 36, "{command}");
        assert!(output.to_string().contains(uuid), "{output} vs {command}");
    }
}
