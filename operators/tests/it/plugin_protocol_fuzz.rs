//! The plugin protocol reader against generated output: any mix of valid messages, blank lines,
//! lines that are not messages (text, JSON that is not an object, cut JSON, invalid UTF-8), with
//! or without a final newline, and any exit code. Each outcome is the one a model of the
//! protocol predicts: the result, every `xcom` entry before the first bad line, the first
//! failure's reason; never a panic or a hang.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use updraft_operators::OperatorKind;
use updraft_operators::plugins;

use crate::support::harness;

#[derive(Debug, Clone)]
enum Line {
    Log {
        level: String,
        message: String,
    },
    Xcom {
        key: String,
        value: Value,
    },
    Result(Value),
    Blank(String),
    /// Anything a JSON object never starts with: text, numbers, lists, invalid UTF-8.
    NotAMessage(Vec<u8>),
    /// A valid message cut before its closing brace.
    Cut(Vec<u8>),
}

impl Line {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Line::Log { level, message } => {
                json!({"type": "log", "level": level, "message": message})
                    .to_string()
                    .into_bytes()
            }
            Line::Xcom { key, value } => json!({"type": "xcom", "key": key, "value": value})
                .to_string()
                .into_bytes(),
            Line::Result(value) => json!({"type": "result", "value": value})
                .to_string()
                .into_bytes(),
            Line::Blank(spaces) => spaces.clone().into_bytes(),
            Line::NotAMessage(bytes) | Line::Cut(bytes) => bytes.clone(),
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop::collection::vec(any::<i32>(), 0..4).prop_map(Value::from),
        ("[a-z]{1,6}", ".{0,10}").prop_map(|(key, text)| json!({ key: text })),
    ]
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        3 => (prop::sample::select(vec!["info", "warning", "error"]), ".{0,40}")
            .prop_map(|(level, message)| Line::Log { level: level.into(), message }),
        2 => ("[a-z_]{1,10}", json_value())
            .prop_filter("reserved", |(key, _)| key != "return_value")
            .prop_map(|(key, value)| Line::Xcom { key, value }),
        1 => json_value().prop_map(Line::Result),
        1 => "[ \t]{0,3}".prop_map(Line::Blank),
        1 => "[^{\\s][^\n]{0,60}".prop_map(|text| Line::NotAMessage(text.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(|mut bytes| {
            bytes.retain(|byte| *byte != b'\n');
            bytes.insert(0, 0xFF);
            Line::NotAMessage(bytes)
        }),
        1 => json_value().prop_map(|value| {
            let mut text = json!({"type": "result", "value": value}).to_string();
            text.pop();
            Line::Cut(text.into_bytes())
        }),
    ]
}

/// What the protocol says a run with these lines and this exit code ends in: `Ok(result)` or
/// `Err(a part of the reason)`, and the `xcom` entries stored on the way.
fn predicted(
    lines: &[Line],
    exit_code: i32,
) -> (Result<Value, &'static str>, Vec<(String, Value)>) {
    let mut result = None;
    let mut entries = Vec::new();
    for line in lines {
        match line {
            Line::Log { .. } | Line::Blank(_) => {}
            Line::Xcom { key, value } => entries.push((key.clone(), value.clone())),
            Line::Result(value) => {
                if result.replace(value.clone()).is_some() {
                    return (Err("more than one `result`"), entries);
                }
            }
            Line::NotAMessage(_) | Line::Cut(_) => {
                return (Err("is not a protocol message"), entries);
            }
        }
    }
    if exit_code != 0 {
        return (Err("exited with code"), entries);
    }
    (Ok(result.unwrap_or(Value::Null)), entries)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

/// A plugin that prints `out` from its folder and exits with the code in `code`.
fn echo_plugin(root: &Path) -> std::path::PathBuf {
    let folder = root.join("echo");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("plugin.yaml"),
        "name: echo\nversion: 0.1.0\ncommand: [sh, plugin.sh]\noperators: [echo]\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("plugin.sh"),
        r#"if [ "$1" = spec ]; then echo '{"operators": {"echo": {"config_schema": {"type": "object"}}}}'; exit 0; fi
cat out
exit "$(cat code)"
"#,
    )
    .unwrap();
    folder
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_output_ends_as_the_protocol_says(
        lines in prop::collection::vec(line(), 0..12),
        final_newline in any::<bool>(),
        exit_code in prop_oneof![4 => Just(0), 1 => 1..4i32],
    ) {
        let root = tempfile::tempdir().unwrap();
        let folder = echo_plugin(root.path());
        let mut out = lines.iter().map(Line::bytes).collect::<Vec<_>>().join(&b'\n');
        if final_newline && !lines.is_empty() {
            out.push(b'\n');
        }
        std::fs::write(folder.join("out"), &out).unwrap();
        std::fs::write(folder.join("code"), exit_code.to_string()).unwrap();
        let (outcome, entries) = runtime().block_on(async {
            let discovery = plugins::discover(root.path(), &[]).await;
            let operator = discovery.plugins[0].operators[0].clone();
            let h = harness("echo");
            let run = operator.execute(json!({}), &h.ctx);
            let outcome = tokio::time::timeout(Duration::from_secs(20), run)
                .await
                .expect("the plugin's try ends");
            (outcome, h.xcom.entries())
        });
        let (expected, expected_entries) = predicted(&lines, exit_code);
        match (&outcome, &expected) {
            (Ok(value), Ok(want)) => prop_assert_eq!(value, want),
            (Err(error), Err(reason)) => {
                let message = error.to_string();
                prop_assert!(
                    message.contains("plugin `echo@0.1.0` operator `echo`") && message.contains(reason),
                    "{} does not say `{}`", message, reason
                );
            }
            _ => prop_assert!(false, "got {:?}, the protocol says {:?}", outcome, expected),
        }
        prop_assert_eq!(entries, expected_entries);
    }
}
