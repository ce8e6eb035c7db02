//! `dags/schema.json` is generated from the spec types and the operators' configs (the built-in
//! ones and the plugins in `plugins/`, as `updraft dags schema` run at the top of the repository
//! prints it); these tests keep the committed file fresh and its keys equal to the parser's.
//! Regenerate with: `UPDATE_SCHEMA=1 cargo test -p updraft-orchestrator --test it dag_schema::`

use std::collections::BTreeSet;

use serde_json::Value;
use updraft_orchestrator::dag::parse::{DAG_KEYS, DEFAULT_ARGS_KEYS, PARAM_KEYS};
use updraft_orchestrator::dag::schema::{dag_schema, dag_schema_text};
use updraft_orchestrator::dag::tasks::TASK_KEYS;

const SCHEMA_PATH: &str = "../dags/schema.json";

/// The built-in operators and the repository's plugins.
async fn registry_with_plugins() -> updraft_operators::Registry {
    let mut registry = updraft_operators::builtin_registry();
    let discovery =
        updraft_operators::plugins::discover(std::path::Path::new("../plugins"), &registry.names())
            .await;
    assert!(discovery.errors.is_empty(), "{:?}", discovery.errors);
    discovery.register(&mut registry);
    registry
}

#[tokio::test]
async fn schema_file_is_up_to_date() {
    let registry = registry_with_plugins().await;
    assert!(
        registry.get("word_count").is_some(),
        "the example plugins are in"
    );
    let generated = dag_schema_text(&registry);
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_PATH, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
    assert!(
        committed == generated,
        "dags/schema.json is stale; regenerate it with\n  UPDATE_SCHEMA=1 cargo test -p updraft-orchestrator --test it dag_schema::"
    );
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn names(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|key| key.to_string()).collect()
}

#[test]
fn schema_keys_are_the_parsers_keys() {
    let schema = dag_schema(&updraft_operators::builtin_registry());
    let defs = &schema["$defs"];
    assert_eq!(property_names(&schema), names(DAG_KEYS));
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        property_names(&defs["DefaultArgsSpec"]),
        names(DEFAULT_ARGS_KEYS)
    );
    assert_eq!(property_names(&defs["ParamDetails"]), names(PARAM_KEYS));
    for operator in updraft_operators::builtin_registry().names() {
        let task = &defs[format!("task.{operator}")];
        let fields = property_names(task);
        assert!(
            names(TASK_KEYS).is_subset(&fields),
            "{operator}: {fields:?}"
        );
        assert_eq!(task["additionalProperties"], false);
        assert_eq!(task["properties"]["operator"]["const"], operator);
    }
}

#[test]
fn every_ref_in_the_schema_resolves() {
    let schema = dag_schema(&updraft_operators::builtin_registry());
    let mut refs = Vec::new();
    collect_refs(&schema, &mut refs);
    assert!(!refs.is_empty());
    for target in refs {
        let pointer = target.strip_prefix('#').unwrap();
        assert!(schema.pointer(pointer).is_some(), "dangling $ref {target}");
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => refs.push(target.clone()),
                    _ => collect_refs(item, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}
