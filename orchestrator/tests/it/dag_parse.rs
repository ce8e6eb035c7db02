//! The DAG parser against `testdata/`: one fixture per promised error, each asserting the
//! message and its line:column; valid fixtures and the `dags/` examples parse.

use std::path::Path;

use updraft_orchestrator::dag::{Diagnostic, Schedule, TriggerRule, load_folder, parse_dag};

/// (line, column, message). A message ending in `…` is matched as a prefix (the rest comes
/// from a third-party crate: cron, minijinja, yaml-rust2).
type Expected = (usize, usize, &'static str);

const CASES: &[(&str, &[Expected])] = &[
    (
        "bad_param",
        &[
            (
                6,
                14,
                "param `region`: default \"asia\" is not one of `enum`",
            ),
            (
                9,
                11,
                "param `size`: `enum` value \"two\" is not of type `integer`",
            ),
            (
                11,
                11,
                "param `mode`: `enum` must be a non-empty list of values",
            ),
        ],
    ),
    ("yaml_syntax", &[(6, 7, "YAML syntax error: …")]),
    (
        "unknown_key",
        &[
            (
                2,
                1,
                "unknown key `shedule` in the DAG; did you mean `schedule`?",
            ),
            (
                7,
                5,
                "unknown key `upsteam` in task `a` (operator `empty`); did you mean `upstream`?",
            ),
        ],
    ),
    (
        "missing_operator",
        &[
            (4, 7, "task `a`: missing required key `operator`"),
            (
                5,
                5,
                "unknown key `operatr` in task `a`; did you mean `operator`?",
            ),
        ],
    ),
    (
        "wrong_type",
        &[
            (2, 10, "`catchup`: expected true or false, found a string"),
            (
                3,
                18,
                "`max_active_runs`: expected a positive integer, found a string",
            ),
            (4, 7, "`tags`: expected a list of strings, found a string"),
            (
                8,
                14,
                "task `a`: `retries`: expected a non-negative integer, found -1",
            ),
        ],
    ),
    (
        "duplicate_task_id",
        &[(
            7,
            9,
            "duplicate task id `extract` (first defined at line 3)",
        )],
    ),
    (
        "unknown_upstream",
        &[(
            7,
            25,
            "task `load`: unknown upstream task `extrct`; did you mean `extract`?",
        )],
    ),
    (
        "cycle",
        &[
            (5, 16, "cycle in task dependencies: a -> b -> c -> a"),
            (14, 16, "cycle in task dependencies: d -> d"),
        ],
    ),
    (
        "unknown_operator",
        &[(
            4,
            15,
            "task `fetch`: unknown operator `htp`; did you mean `http`? known operators: cql, empty, http, kafka_publish, shell, sql, trigger_dag",
        )],
    ),
    (
        "invalid_operator_config",
        &[
            (
                5,
                5,
                "unknown key `methd` in task `fetch` (operator `http`); did you mean `method`?",
            ),
            (
                8,
                15,
                "task `publish`: invalid `kafka_publish` config: give `value` or `for_each`",
            ),
        ],
    ),
    (
        "bad_cron",
        &[(
            2,
            11,
            "`schedule`: invalid cron expression `61 * * * *`: Minutes must be less than 59. ('61' specified.)",
        )],
    ),
    (
        "bad_timezone",
        &[(
            2,
            11,
            "`timezone`: unknown timezone `Mars/Olympus_Mons`; use an IANA name like `UTC` or `Europe/Paris`",
        )],
    ),
    (
        "bad_duration",
        &[
            (
                3,
                16,
                "`default_args`: `retry_delay`: invalid duration `5 minutes`: expected e.g. `30s`, `5m`, `1h30m` (units ms, s, m, h, d)",
            ),
            (
                7,
                24,
                "task `a`: `execution_timeout`: invalid duration `1h30x`: expected e.g. `30s`, `5m`, `1h30m` (units ms, s, m, h, d)",
            ),
        ],
    ),
    (
        "template_syntax",
        &[
            (
                5,
                10,
                "task `fetch`: template error in `url`: syntax error: …",
            ),
            (
                7,
                16,
                "task `fetch`: template error in `query`: syntax error: …",
            ),
        ],
    ),
    (
        "start_after_end",
        &[(
            4,
            11,
            "`start_date` (2024-06-01T00:00:00+00:00, line 3) is after `end_date` (2024-01-01T00:00:00+00:00)",
        )],
    ),
    (
        "many_errors",
        &[
            (
                1,
                9,
                "`dag_id` `many errors` contains ` `; use letters, digits, `_`, `-` and `.`",
            ),
            (
                2,
                11,
                "`schedule`: unknown schedule preset `@fortnightly`; use @once, @hourly, @daily, @weekly, @monthly, @yearly or a 5-field cron expression",
            ),
            (
                4,
                11,
                "`timezone`: unknown timezone `Nowhere/City`; use an IANA name like `UTC` or `Europe/Paris`",
            ),
            (
                5,
                18,
                "`max_active_runs`: expected a positive integer, found 0",
            ),
            (
                9,
                19,
                "task `a`: unknown trigger rule `sometimes`; expected one of: all_success, all_failed, all_done, one_success, one_failed, none_failed, none_failed_min_one_success, none_skipped, always",
            ),
            (
                11,
                15,
                "task `b`: unknown operator `nope`; known operators: cql, empty, http, kafka_publish, shell, sql, trigger_dag",
            ),
            (12, 16, "task `b`: unknown upstream task `zz`"),
            (13, 9, "duplicate task id `a` (first defined at line 7)"),
            (
                14,
                15,
                "task `a`: invalid `shell` config: give `command` or `script`",
            ),
        ],
    ),
];

fn parse_fixture(path: &str) -> Result<updraft_orchestrator::dag::Dag, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    parse_dag(path, &source, &updraft_operators::builtin_registry())
}

fn matches(expected: &str, actual: &str) -> bool {
    match expected.strip_suffix('…') {
        Some(prefix) => actual.starts_with(prefix),
        None => expected == actual,
    }
}

#[test]
fn every_invalid_fixture_reports_each_error_with_its_position() {
    let mut failures = Vec::new();
    for (name, expected) in CASES {
        let path = format!("testdata/invalid/{name}.yaml");
        let diagnostics = match parse_fixture(&path) {
            Ok(_) => {
                failures.push(format!("{path}: parsed without errors"));
                continue;
            }
            Err(diagnostics) => diagnostics,
        };
        let actual: Vec<(usize, usize, &str)> = diagnostics
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        let same = actual.len() == expected.len()
            && actual
                .iter()
                .zip(expected.iter())
                .all(|(a, e)| a.0 == e.0 && a.1 == e.1 && matches(e.2, a.2));
        if !same {
            failures.push(format!(
                "{path}:\n  expected {expected:#?}\n  actual   {actual:#?}"
            ));
        }
        for diagnostic in &diagnostics {
            assert_eq!(diagnostic.file, path);
            assert!(diagnostic.to_string().starts_with(&format!(
                "{path}:{}:{}: error: ",
                diagnostic.line, diagnostic.column
            )));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_invalid_fixture_is_in_the_table() {
    for entry in std::fs::read_dir("testdata/invalid").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            CASES.iter().any(|(case, _)| *case == name),
            "{} has no expected diagnostics",
            path.display()
        );
    }
}

#[test]
fn the_full_example_parses_with_defaults_and_overrides_merged() {
    let dag =
        parse_fixture("testdata/valid/full.yaml").unwrap_or_else(|errors| panic!("{errors:#?}"));
    assert_eq!(dag.dag_id, "full_example");
    assert_eq!(
        dag.schedule,
        Schedule::Cron {
            expression: "30 6 * * 1-5".into(),
            seconds_form: "0 30 6 * * 2-6".into()
        }
    );
    assert_eq!(dag.timezone, chrono_tz::Europe::Paris);
    // Naive dates are in the DAG's timezone: 06:00 Paris is 05:00 UTC in winter.
    assert_eq!(
        dag.start_date.unwrap().to_rfc3339(),
        "2024-01-01T05:00:00+00:00"
    );
    assert!(dag.catchup);
    assert!(!dag.is_paused_upon_creation);
    assert_eq!((dag.max_active_runs, dag.max_active_tasks), (2, 4));
    assert_eq!(dag.owner, "data-team");
    assert_eq!(dag.params["results"].default, Some(serde_json::json!(5)));
    assert_eq!(dag.topological_order(), ["start", "say_hello", "done"]);
    let hello = dag.task("say_hello").unwrap();
    assert_eq!(hello.retry.retries, 0, "task override");
    assert_eq!(hello.retry.retry_delay.as_secs(), 90, "from default_args");
    assert_eq!(hello.execution_timeout.unwrap().as_secs(), 30);
    assert_eq!(
        hello.config,
        serde_json::json!({"command": "echo {{ ds }} {{ params.results }}"})
    );
    let done = dag.task("done").unwrap();
    assert_eq!(done.trigger_rule, TriggerRule::AllDone);
    assert_eq!(done.owner, "someone-else");
    assert_eq!(dag.graph().edge_count(), 3);
    let restored = updraft_orchestrator::dag::Dag::from_snapshot(&dag.snapshot()).unwrap();
    assert_eq!(restored.topological_order(), dag.topological_order());
}

#[test]
fn every_example_in_the_dags_folder_is_valid() {
    let load = load_folder(Path::new("../dags"), &updraft_operators::builtin_registry());
    let errors: Vec<String> = load
        .errors
        .iter()
        .flat_map(|e| e.diagnostics.iter().map(|d| d.to_string()))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(
        load.dags
            .iter()
            .any(|loaded| loaded.dag.dag_id == "user_automation")
    );
}

#[test]
fn a_dag_id_in_two_files_is_an_error_on_both_and_other_files_still_load() {
    let load = load_folder(
        Path::new("testdata/duplicate_dag_id"),
        &updraft_operators::builtin_registry(),
    );
    let ids: Vec<&str> = load
        .dags
        .iter()
        .map(|loaded| loaded.dag.dag_id.as_str())
        .collect();
    assert_eq!(ids, ["unique_one"]);
    let messages: Vec<String> = load
        .errors
        .iter()
        .flat_map(|e| e.diagnostics.iter().map(|d| d.to_string()))
        .collect();
    assert_eq!(
        messages,
        [
            "testdata/duplicate_dag_id/first.yaml:1:9: error: duplicate dag_id `same_id`: also defined in testdata/duplicate_dag_id/second.yaml",
            "testdata/duplicate_dag_id/second.yaml:2:9: error: duplicate dag_id `same_id`: also defined in testdata/duplicate_dag_id/first.yaml",
        ]
    );
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let dir = std::env::temp_dir().join(format!("updraft-dag-folder-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(
        dir.join("good.yaml"),
        "dag_id: good\ntasks:\n  - {id: a, operator: empty}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nested/also_good.yml"),
        "dag_id: also_good\ntasks:\n  - {id: a, operator: empty}\n",
    )
    .unwrap();
    std::fs::write(dir.join("bad.yaml"), "dag_id: bad\ntasks: [\n").unwrap();
    std::fs::write(dir.join("not_utf8.yaml"), [0xff, 0xfe, 0x00]).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a DAG").unwrap();
    let load = load_folder(&dir, &updraft_operators::builtin_registry());
    let mut ids: Vec<&str> = load
        .dags
        .iter()
        .map(|loaded| loaded.dag.dag_id.as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["also_good", "good"]);
    let bad: Vec<String> = load
        .errors
        .iter()
        .map(|e| e.path.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(bad, ["bad.yaml", "not_utf8.yaml"]);
    let good = load
        .dags
        .iter()
        .find(|loaded| loaded.dag.dag_id == "good")
        .unwrap();
    assert_eq!(good.source_hash.len(), 64);
    assert_eq!(
        good.source_hash,
        updraft_orchestrator::dag::folder::sha256_hex(good.source.as_bytes())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn priority_weights_count_every_task_downstream() {
    let yaml = r#"
dag_id: weights
schedule: null
tasks:
  - id: start
    operator: empty
  - id: left
    operator: empty
    upstream: [start]
  - id: right
    operator: empty
    upstream: [start]
  - id: join
    operator: empty
    upstream: [left, right]
  - id: alone
    operator: empty
"#;
    let dag = parse_dag("weights.yaml", yaml, &updraft_operators::builtin_registry()).unwrap();
    let weights: Vec<(&str, i32)> = dag
        .tasks
        .iter()
        .map(|task| task.task_id.as_str())
        .zip(dag.priority_weights())
        .collect();
    // Airflow's `downstream` rule: the task itself plus each task below it, counted once.
    assert_eq!(
        weights,
        [
            ("start", 4),
            ("left", 2),
            ("right", 2),
            ("join", 1),
            ("alone", 1)
        ]
    );
}
