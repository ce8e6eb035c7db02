//! `<command> spec`: what each operator of a plugin takes. The plugin prints one JSON object,
//! `{"operators": {"<name>": {"config_schema": {...}, "deferred": [...], "secret": [...]}}}`;
//! fields Updraft does not know are ignored, so a plugin may say more.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::manifest::Manifest;

/// How long `spec` may take.
const SPEC_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of `spec`'s output read.
const SPEC_MAX_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct SpecOutput {
    operators: BTreeMap<String, OperatorSpec>,
}

/// One operator as its plugin describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct OperatorSpec {
    pub config_schema: Value,
    /// Top-level fields the plugin renders itself: the orchestrator leaves their templates.
    #[serde(default)]
    pub deferred: Vec<String>,
    /// Top-level fields whose values are secrets, masked like connection passwords.
    #[serde(default)]
    pub secret: Vec<String>,
}

/// Runs `spec` and returns each operator the manifest names, checked; or why not.
pub async fn read(manifest: &Manifest) -> Result<BTreeMap<String, OperatorSpec>, String> {
    let mut command = Command::new(&manifest.program);
    crate::process::withhold_updraft_settings(&mut command);
    let mut child = command
        .args(&manifest.args)
        .arg("spec")
        .current_dir(&manifest.folder)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot start `{}`: {error}", manifest.program.display()))?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let out = child
        .stdout
        .take()
        .map(|pipe| pipe.take(SPEC_MAX_BYTES + 1));
    let err = child.stderr.take().map(|pipe| pipe.take(64 * 1024));
    let run = async {
        if let Some(mut out) = out {
            out.read_to_end(&mut stdout).await?;
        }
        if let Some(mut err) = err {
            err.read_to_end(&mut stderr).await?;
        }
        child.wait().await
    };
    let status = tokio::time::timeout(SPEC_TIMEOUT, run)
        .await
        .map_err(|_| format!("`spec` did not finish within {SPEC_TIMEOUT:?}"))?
        .map_err(|error| format!("`spec`: {error}"))?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let last = stderr.lines().rev().find(|line| !line.trim().is_empty());
        return Err(format!(
            "`spec` {}{}",
            crate::process::describe_exit(status),
            last.map(|line| format!("; last stderr line: {line}"))
                .unwrap_or_default()
        ));
    }
    if stdout.len() as u64 > SPEC_MAX_BYTES {
        return Err(format!("`spec` printed more than {SPEC_MAX_BYTES} bytes"));
    }
    let output: SpecOutput = serde_json::from_slice(&stdout).map_err(|error| {
        format!(
            "`spec` did not print the expected JSON object ({error}): `{{\"operators\": {{\"<name>\": {{\"config_schema\": {{...}}}}}}}}`"
        )
    })?;
    let mut operators = BTreeMap::new();
    for name in &manifest.operators {
        let spec = output
            .operators
            .get(name)
            .ok_or_else(|| format!("`spec` does not describe operator `{name}`"))?;
        check(name, spec)?;
        operators.insert(name.clone(), spec.clone());
    }
    Ok(operators)
}

/// A config schema is a valid JSON Schema of an object, and `deferred` and `secret` name its
/// properties.
fn check(name: &str, spec: &OperatorSpec) -> Result<(), String> {
    let schema = &spec.config_schema;
    jsonschema::validator_for(schema).map_err(|error| {
        format!("operator `{name}`: config_schema is not a valid JSON Schema: {error}")
    })?;
    if schema.get("type") != Some(&Value::String("object".into())) {
        return Err(format!(
            "operator `{name}`: config_schema must describe an object (`\"type\": \"object\"`)"
        ));
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (list, fields) in [("deferred", &spec.deferred), ("secret", &spec.secret)] {
        if let Some(field) = fields
            .iter()
            .find(|field| !properties.is_some_and(|p| p.contains_key(field.as_str())))
        {
            return Err(format!(
                "operator `{name}`: {list} field `{field}` is not one of config_schema's properties"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(schema: Value, deferred: &[&str]) -> OperatorSpec {
        OperatorSpec {
            config_schema: schema,
            deferred: deferred.iter().map(|f| f.to_string()).collect(),
            secret: Vec::new(),
        }
    }

    #[test]
    fn schemas_are_checked() {
        let object = json!({"type": "object", "properties": {"name": {"type": "string"}}});
        assert!(check("op", &spec(object.clone(), &["name"])).is_ok());
        let error = check("op", &spec(object, &["other"])).unwrap_err();
        assert!(error.contains("deferred field `other`"), "{error}");
        let error = check("op", &spec(json!({"type": 12}), &[])).unwrap_err();
        assert!(error.contains("not a valid JSON Schema"), "{error}");
        let error = check("op", &spec(json!({"type": "string"}), &[])).unwrap_err();
        assert!(error.contains("must describe an object"), "{error}");
    }
}
