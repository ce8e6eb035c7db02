//! The configuration tables of `docs/operations.md` and `docs/streams.md` say what the binary
//! does: every documented flag exists with the documented variable and default, and a setting's
//! scope ("per stream", "per node", …) is the one `stream-worker --help` states. (The operations
//! guide once said the concurrency was per worker; it is per stream.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What `--help` says of one flag.
#[derive(Debug, Default)]
struct Flag {
    help: String,
    env: Option<String>,
    default: Option<String>,
}

fn help() -> BTreeMap<String, Flag> {
    // Without the environment: clap prints a set variable's value (`[env: NAME=value]`), and
    // the test stack sets several.
    let output = Command::new(env!("CARGO_BIN_EXE_stream-worker"))
        .env_clear()
        .arg("--help")
        .output()
        .expect("stream-worker --help runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            current = Some(format!("--{name}"));
            flags.insert(format!("--{name}"), Flag::default());
        } else if let Some(flag) = current.as_ref().and_then(|name| flags.get_mut(name)) {
            let bracket = |key: &str| {
                let start = trimmed.find(&format!("[{key}: "))? + key.len() + 3;
                let end = start + trimmed[start..].find(']')?;
                Some(trimmed[start..end].trim_end_matches('=').to_string())
            };
            flag.env = flag.env.take().or_else(|| bracket("env"));
            flag.default = flag.default.take().or_else(|| bracket("default"));
            let description = trimmed.split(" [").next().unwrap_or_default();
            if flag.help.is_empty() {
                flag.help = description.to_string();
            }
        }
    }
    flags
}

/// One documented row: (flag, variable, default, meaning), from a table with those columns in
/// any order (backticked `--flag` and `VARIABLE`).
fn documented(file: &str) -> Vec<(String, Option<String>, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
    let text = std::fs::read_to_string(&path).expect("the doc exists");
    let section = text
        .split("Configuration")
        .find(|part| part.contains("--concurrency"))
        .expect("a configuration table with --concurrency");
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_string())
            .collect();
        let Some(flag) = cells.iter().find(|c| c.starts_with("--")).cloned() else {
            continue;
        };
        let env = cells
            .iter()
            .find(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
            .cloned();
        let flag_at = cells.iter().position(|c| *c == flag).unwrap_or(0);
        let env_at = env
            .as_ref()
            .and_then(|e| cells.iter().position(|c| c == e))
            .unwrap_or(flag_at);
        let default = cells
            .get(flag_at.max(env_at) + 1)
            .cloned()
            .unwrap_or_default();
        let meaning = cells.last().cloned().unwrap_or_default();
        rows.push((flag, env, default, meaning));
    }
    rows
}

/// "per stream", "per node", … in a text.
fn scopes(text: &str) -> Vec<String> {
    let words: Vec<String> = text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "per")
        .map(|pair| format!("per {}", pair[1]))
        .collect()
}

#[test]
fn the_documented_configuration_is_the_binarys() {
    let flags = help();
    assert!(flags.contains_key("--concurrency"), "{flags:?}");
    for file in ["docs/operations.md", "docs/streams.md"] {
        for (flag, env, default, meaning) in documented(file) {
            let actual = flags
                .get(&flag)
                .unwrap_or_else(|| panic!("{file}: {flag} is not a stream-worker flag"));
            if let Some(env) = &env {
                assert_eq!(actual.env.as_ref(), Some(env), "{file}: {flag}'s variable");
            }
            if let Some(actual_default) = &actual.default {
                assert_eq!(&default, actual_default, "{file}: {flag}'s default");
            }
            for scope in scopes(&actual.help) {
                assert!(
                    scopes(&meaning).contains(&scope),
                    "{file}: {flag} is documented as `{meaning}`, but it is {scope} ({})",
                    actual.help
                );
            }
        }
    }
}
