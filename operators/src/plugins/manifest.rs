//! `plugin.yaml`: a plugin's name, version, the command that runs it (relative to its folder)
//! and the operators it provides.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::PluginError;

pub const MANIFEST: &str = "plugin.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestSpec {
    name: String,
    version: String,
    command: Vec<String>,
    operators: Vec<String>,
}

/// A read and checked `plugin.yaml`.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// The program: a path inside the plugin's folder, or a name looked up in `PATH`.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub operators: Vec<String>,
    /// The plugin's folder, its programs' working directory.
    pub folder: PathBuf,
}

/// Operator names as in YAML: `[a-z][a-z0-9_]*`, like the built-in ones.
fn is_operator_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub fn read(folder: &Path) -> Result<Manifest, PluginError> {
    // The program runs in the folder: a relative folder would be resolved twice.
    let folder = &std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    let file = folder.join(MANIFEST);
    let text = std::fs::read_to_string(&file)
        .map_err(|error| PluginError::at(&file, format!("cannot read: {error}")))?;
    let spec: ManifestSpec = serde_yaml_ng::from_str(&text).map_err(|error| {
        let (line, column) = error.location().map_or((1, 1), |l| (l.line(), l.column()));
        let message = error.to_string();
        let message = message
            .split_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head)
            .to_string();
        PluginError::at_position(&file, line, column, message)
    })?;
    let refuse = |message: String| Err(PluginError::at(&file, message));
    if spec.name.trim().is_empty() || spec.version.trim().is_empty() {
        return refuse("`name` and `version` must not be empty".into());
    }
    let Some((program, args)) = spec.command.split_first() else {
        return refuse("`command` must name a program: `[python3, main.py]`".into());
    };
    if spec.operators.is_empty() {
        return refuse("`operators` must name at least one operator".into());
    }
    if let Some(bad) = spec.operators.iter().find(|name| !is_operator_name(name)) {
        return refuse(format!(
            "operator name `{bad}`: lower-case letters, digits and `_`, starting with a letter"
        ));
    }
    // `./run.sh` or `bin/run` is the plugin's own; `python3` is looked up in PATH, unless the
    // folder holds a file of that name.
    let program = if program.contains('/') || folder.join(program).is_file() {
        let inside = folder.join(program);
        if !inside.is_file() {
            return refuse(format!(
                "`command`: `{program}` is not a file in {}",
                folder.display()
            ));
        }
        inside
    } else {
        PathBuf::from(program)
    };
    Ok(Manifest {
        name: spec.name,
        version: spec.version,
        program,
        args: args.to_vec(),
        operators: spec.operators,
        folder: folder.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Result<Manifest, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), text).unwrap();
        std::fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        read(dir.path()).map_err(|error| {
            error
                .to_string()
                .replace(&dir.path().display().to_string(), "DIR")
        })
    }

    #[test]
    fn a_manifest_is_read_and_checked_with_its_position() {
        let good =
            manifest("name: p\nversion: '1'\ncommand: [./run.sh, x]\noperators: [a_b]\n").unwrap();
        assert!(good.program.ends_with("run.sh") && good.args == ["x"]);
        let path = manifest("name: p\nversion: '1'\ncommand: [python3]\noperators: [a]\n").unwrap();
        assert_eq!(path.program, PathBuf::from("python3"));

        let typo = manifest("name: p\nversion: '1'\ncommand: [x]\noperator: [a]\n").unwrap_err();
        assert!(
            typo.starts_with("DIR/plugin.yaml:4:1: unknown field `operator`"),
            "{typo}"
        );
        let missing =
            manifest("name: p\nversion: '1'\ncommand: [./nope]\noperators: [a]\n").unwrap_err();
        assert!(missing.contains("`./nope` is not a file"), "{missing}");
        let bad_name =
            manifest("name: p\nversion: '1'\ncommand: [x]\noperators: [Bad]\n").unwrap_err();
        assert!(bad_name.contains("operator name `Bad`"), "{bad_name}");
        let no_command = manifest("name: p\nversion: '1'\ncommand: []\noperators: [a]\n");
        assert!(
            no_command
                .unwrap_err()
                .contains("`command` must name a program")
        );
    }
}
