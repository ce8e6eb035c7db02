//! `checksum`: the SHA-256 of a file, failing when it is not the one expected (a download
//! checked before it is loaded).

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use updraft::operators::fields::is_template;
use updraft::operators::{Operator, OperatorError, TaskContext};

#[derive(Debug, Default)]
pub struct ChecksumOperator;

/// `checksum`'s fields (doc comments become the JSON Schema's descriptions).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksumConfig {
    /// The file to hash.
    pub path: String,
    /// The SHA-256 the file must have (hex, any case); a different one fails the task.
    #[serde(default)]
    pub expected: Option<String>,
}

#[async_trait]
impl Operator for ChecksumOperator {
    const NAME: &'static str = "checksum";
    type Config = ChecksumConfig;

    fn check(config: &ChecksumConfig) -> Result<(), String> {
        match &config.expected {
            // At parse time a field may still be a template; the rendered value is checked too.
            Some(hex) if is_template(hex) => Ok(()),
            Some(hex) if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                Err(format!("`expected`: `{hex}` is not 64 hex digits"))
            }
            _ => Ok(()),
        }
    }

    async fn execute(
        &self,
        config: ChecksumConfig,
        ctx: &TaskContext,
    ) -> Result<Value, OperatorError> {
        let failed = |error: std::io::Error| {
            OperatorError::Failed(format!("cannot read `{}`: {error}", config.path))
        };
        let mut file = tokio::fs::File::open(&config.path).await.map_err(failed)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 64 * 1024];
        let mut bytes: u64 = 0;
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(OperatorError::Cancelled);
            }
            let read = file.read(&mut buffer).await.map_err(failed)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            bytes += read as u64;
        }
        let sha256: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        ctx.log(format!("{}: {bytes} bytes, sha256 {sha256}", config.path));
        if let Some(expected) = &config.expected
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(OperatorError::Failed(format!(
                "`{}` has sha256 {sha256}, expected {}",
                config.path,
                expected.to_ascii_lowercase()
            )));
        }
        Ok(json!({"path": config.path, "bytes": bytes, "sha256": sha256}))
    }
}
