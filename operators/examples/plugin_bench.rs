//! The overhead of an external plugin per task: N tries of the built-in `shell` running `true`
//! and N of a plugin that does as little (a POSIX sh program answering `run` with a `result`
//! line), interleaved so the machine's drift hits both alike; p50/p95 of each try and the p50
//! difference. `cargo run --release -p updraft-operators --example plugin_bench -- [N]`
//! The last stdout line is a JSON object of the figures (for `scripts/bench plugin`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use updraft_operators::{
    LogSink, LoggedXCom, NoDagRuns, Renderer, TaskContext, TaskIdentity, builtin_registry, plugins,
};

struct Quiet;

impl LogSink for Quiet {
    fn write_line(&self, _line: &str) {}
}

impl Renderer for Quiet {
    fn render(&self, template: &Value, _locals: &Map<String, Value>) -> Result<Value, String> {
        Ok(template.clone())
    }
}

const PLUGIN: &str = r#"#!/bin/sh
if [ "$1" = spec ]; then
  echo '{"operators": {"noop": {"config_schema": {"type": "object"}}}}'
  exit 0
fi
read -r _request
echo '{"type": "result", "value": null}'
"#;

/// The `p` quantile in milliseconds, to the microsecond.
fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    (samples[index].as_secs_f64() * 1e6).round() / 1e3
}

#[tokio::main]
async fn main() {
    let tries: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let folder = tempfile::tempdir().expect("tempdir");
    let plugin = folder.path().join("noop");
    std::fs::create_dir_all(&plugin).expect("plugin folder");
    std::fs::write(
        plugin.join("plugin.yaml"),
        "name: noop\nversion: 1\ncommand: [./plugin.sh]\noperators: [noop]\n",
    )
    .expect("manifest");
    std::fs::write(plugin.join("plugin.sh"), PLUGIN).expect("program");
    std::process::Command::new("chmod")
        .args(["+x", "plugin.sh"])
        .current_dir(&plugin)
        .status()
        .expect("chmod");

    let mut registry = builtin_registry();
    let discovery = plugins::discover(folder.path(), &registry.names()).await;
    assert!(discovery.errors.is_empty(), "{:?}", discovery.errors);
    discovery.register(&mut registry);
    let quiet = Arc::new(Quiet);
    let ctx = TaskContext {
        identity: TaskIdentity::default(),
        log: quiet.clone(),
        xcom: Arc::new(LoggedXCom { log: quiet.clone() }),
        dag_runs: Arc::new(NoDagRuns {
            reason: "a benchmark has no run store".into(),
        }),
        cancel: CancellationToken::new(),
        renderer: quiet,
    };
    let cases: [(&str, Value); 2] = [("shell", json!({"command": "true"})), ("noop", json!({}))];
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..tries {
        if round % 50 == 0 {
            println!("round {round} of {tries}");
        }
        for (index, (name, config)) in cases.iter().enumerate() {
            let operator = registry.get(name).expect("registered");
            let started = Instant::now();
            operator
                .execute(config.clone(), &ctx)
                .await
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            samples[index].push(started.elapsed());
        }
    }
    let [shell, plugin] = &mut samples;
    let figures = json!({
        "tries": tries,
        "shell_true_p50_ms": percentile(shell, 0.5),
        "shell_true_p95_ms": percentile(shell, 0.95),
        "plugin_p50_ms": percentile(plugin, 0.5),
        "plugin_p95_ms": percentile(plugin, 0.95),
        "overhead_p50_ms": ((percentile(plugin, 0.5) - percentile(shell, 0.5)) * 1e3).round() / 1e3,
    });
    println!("{figures}");
}
