//! `updraft plugins list|check`, and the DAG commands with plugin operators: `dags test` runs a
//! plugin as a real process, `dags validate` names the plugin that did not load.

use std::path::Path;
use std::process::{Command, Output};

fn updraft(args: &[&str], plugins: &Path, dags: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .env("UPDRAFT_PLUGINS_FOLDER", plugins)
        .env("UPDRAFT_DAGS_FOLDER", dags)
        .output()
        .expect("run updraft")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const COUNTING: &str = r#"
dag_id: counting
schedule: null
tasks:
  - id: count
    operator: word_count
    text: "one two two three three three"
    top: 1
  - id: check_space
    operator: disk_free
    path: /
"#;

#[test]
fn plugin_commands_and_dags_with_plugin_operators() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples");
    let dags = tempfile::tempdir().unwrap();
    std::fs::write(dags.path().join("counting.yaml"), COUNTING).unwrap();

    let listed = updraft(&["plugins", "check"], &examples, dags.path());
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = text(&listed);
    assert!(
        listed.contains("word-count 1.0.0") && listed.contains("operators: disk_free"),
        "{listed}"
    );

    let tested = updraft(&["dags", "test", "counting"], &examples, dags.path());
    let output = text(&tested);
    assert!(tested.status.success(), "{output}");
    assert!(output.contains("count: 6 words"), "{output}");
    assert!(output.contains("xcom `total_words` = 6"), "{output}");
    assert!(
        output.contains(r#"[{"count":3,"word":"three"}]"#),
        "{output}"
    );

    // A plugin whose `spec` fails: `check` exits 1, and a DAG naming its operator is told why.
    let broken = tempfile::tempdir().unwrap();
    let folder = broken.path().join("word-count-v2");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("plugin.yaml"),
        "name: word-count\nversion: 2.0.0\ncommand: [sh, -c, 'exit 4']\noperators: [word_count]\n",
    )
    .unwrap();
    let checked = updraft(&["plugins", "check"], broken.path(), dags.path());
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    assert!(text(&checked).contains("NOT LOADED"), "{}", text(&checked));
    let validated = updraft(&["dags", "validate"], broken.path(), dags.path());
    let output = text(&validated);
    assert!(!validated.status.success(), "{output}");
    assert!(
        output.contains("counting.yaml:6:15")
            && output.contains("operator `word_count` is missing: its plugin did not load")
            && output.contains("`spec` exited with code 4"),
        "{output}"
    );
}
