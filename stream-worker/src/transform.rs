//! Transforms in Vector's VRL: a stream's `where:` filter and `transform:` program, compiled once
//! when the definition loads and run on each record before its fields map to columns.
//!
//! VRL is typed at compile time (a fallible call must be handled with `!` or `, err =`), so most
//! mistakes are definition errors at `file:line:col`, not dead letters at run time.

use std::fmt;
use std::sync::{Arc, LazyLock};

use vrl::compiler::state::RuntimeState;
use vrl::compiler::{Context, ExpressionError, Function, Program, TargetValue, TimeZone};
use vrl::value::{Secrets, Value};

/// The standard library without the functions that read the environment, the network or the
/// host: a definition transforms records and nothing else.
static FUNCTIONS: LazyLock<Vec<Box<dyn Function>>> = LazyLock::new(vrl::stdlib::all);

/// The time zone programs run in: UTC, not the host's (VRL's default), so that the same
/// record gives the same row on every worker (`parse_timestamp` of a time without an offset,
/// `format_timestamp`, `now`).
static TIME_ZONE: LazyLock<TimeZone> =
    LazyLock::new(|| TimeZone::parse("UTC").expect("UTC is in the time zone database"));

/// Which of a stream's two programs: `where` keeps or drops a record, `transform` reshapes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Where,
    Transform,
}

impl Stage {
    pub fn key(self) -> &'static str {
        match self {
            Stage::Where => "where",
            Stage::Transform => "transform",
        }
    }
}

/// A compiled program and its source (definitions compare by source).
#[derive(Clone)]
pub struct Vrl {
    pub stage: Stage,
    pub source: String,
    program: Arc<Program>,
}

impl fmt::Debug for Vrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vrl({}: {:?})", self.stage.key(), self.source)
    }
}

impl PartialEq for Vrl {
    fn eq(&self, other: &Self) -> bool {
        self.stage == other.stage && self.source == other.source
    }
}

/// A compile error: the byte offset in the program where it points, and what VRL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub offset: usize,
    pub message: String,
}

/// What running the programs on a record gave.
#[derive(Debug)]
pub enum Outcome {
    /// The record as the columns will read it.
    Keep(Value),
    /// `where:` was false or the program called `abort`: the record is skipped, not an error.
    Drop,
}

impl Vrl {
    /// Compiles `source`; a `where` program must always resolve to a boolean.
    pub fn compile(stage: Stage, source: &str) -> Result<Vrl, Vec<CompileError>> {
        let compiled = vrl::compiler::compile(source, &FUNCTIONS).map_err(|diagnostics| {
            diagnostics
                .errors()
                .into_iter()
                .map(|diagnostic| {
                    let primary = diagnostic.labels.iter().find(|label| label.primary);
                    let offset = primary.map_or(0, |label| label.span.start());
                    let detail = primary
                        .map(|label| format!(": {}", label.message))
                        .unwrap_or_default();
                    CompileError {
                        offset,
                        message: format!(
                            "{}: {}{detail} (VRL error E{})",
                            stage.key(),
                            diagnostic.message(),
                            diagnostic.code
                        ),
                    }
                })
                .collect::<Vec<_>>()
        })?;
        let program = compiled.program;
        if stage == Stage::Where && !program.final_type_info().result.is_boolean() {
            return Err(vec![CompileError {
                offset: 0,
                message: "where: must be a boolean expression, e.g. `.country == \"FR\"` \
                          (this one may resolve to something else)"
                    .into(),
            }]);
        }
        Ok(Vrl {
            stage,
            source: source.to_string(),
            program: Arc::new(program),
        })
    }
}

impl Vrl {
    /// A run-time error as `transform: … at line L, column C: …`: VRL says where as a byte
    /// range of the program, which only a machine can count.
    fn describe(&self, error: &ExpressionError) -> String {
        let mut message = error.to_string();
        if let ExpressionError::Error { labels, .. } = error
            && let Some(label) = labels.iter().find(|label| label.primary)
        {
            let span = label.span;
            let before = &self.source[..span.start().min(self.source.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
            message = message.replace(
                &format!(" at ({}:{})", span.start(), span.end()),
                &format!(" at line {line}, column {column}"),
            );
        }
        format!("{}: {message}", self.stage.key())
    }
}

/// Runs `filter`, then `transform`, on `record` (an object). An error names the stage and says
/// what VRL reported, with the program's line and column.
pub fn apply(
    filter: Option<&Vrl>,
    transform: Option<&Vrl>,
    record: Value,
) -> Result<Outcome, String> {
    let mut target = TargetValue {
        value: record,
        metadata: Value::Object(Default::default()),
        secrets: Secrets::default(),
    };
    let mut state = RuntimeState::default();
    for program in [filter, transform].into_iter().flatten() {
        let mut context = Context::new(&mut target, &mut state, &TIME_ZONE);
        let resolved = program.program.resolve(&mut context);
        match (program.stage, resolved) {
            (_, Err(ExpressionError::Abort { .. })) | (Stage::Where, Ok(Value::Boolean(false))) => {
                return Ok(Outcome::Drop);
            }
            (Stage::Where, Ok(_)) | (Stage::Transform, Ok(_)) => {}
            (_, Err(error)) => return Err(program.describe(&error)),
        }
        state.clear();
    }
    Ok(Outcome::Keep(target.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Value {
        serde_json::from_str(json).expect("test JSON")
    }

    fn kept(outcome: Result<Outcome, String>) -> serde_json::Value {
        match outcome {
            Ok(Outcome::Keep(value)) => value.try_into().expect("JSON-able"),
            other => panic!("expected a kept record, got {other:?}"),
        }
    }

    #[test]
    fn a_transform_sets_renames_drops_and_derives() {
        let program = Vrl::compile(
            Stage::Transform,
            r#".full_name = join!([.name.first, .name.last], " ")
.email = downcase!(.email)
.dob = parse_timestamp!(.dob.date, "%+")
.user = del(.login.username)
.key = sha2(.email)
del(.name); del(.login)"#,
        )
        .expect("compiles");
        let out = kept(apply(
            None,
            Some(&program),
            record(
                r#"{"name":{"first":"Zoë","last":"Ng"},"email":"Z@X.io","dob":{"date":"1990-01-02T03:04:05.678Z"},"login":{"username":"zng"}}"#,
            ),
        ));
        assert_eq!(out["full_name"], "Zoë Ng");
        assert_eq!(out["email"], "z@x.io");
        assert_eq!(out["dob"], "1990-01-02T03:04:05.678Z");
        assert_eq!(out["user"], "zng");
        assert_eq!(out["key"].as_str().map(str::len), Some(64));
        assert!(out.get("name").is_none() && out.get("login").is_none());
    }

    #[test]
    fn where_and_abort_drop_and_runtime_errors_name_the_stage() {
        let filter = Vrl::compile(Stage::Where, r#".country == "FR""#).expect("compiles");
        let transform = Vrl::compile(
            Stage::Transform,
            "if .test == true { abort }\n.age = to_int!(.age)",
        )
        .expect("compiles");
        let run = |json: &str| apply(Some(&filter), Some(&transform), record(json));
        assert!(matches!(run(r#"{"country":"DE"}"#), Ok(Outcome::Drop)));
        assert!(matches!(
            run(r#"{"country":"FR","test":true}"#),
            Ok(Outcome::Drop)
        ));
        assert_eq!(kept(run(r#"{"country":"FR","age":"41"}"#))["age"], 41);
        let error = run(r#"{"country":"FR","age":"old"}"#).expect_err("not a number");
        assert!(
            error.starts_with(
                "transform: function call error for \"to_int\" at line 2, column 8: Invalid integer"
            ),
            "{error}"
        );
    }

    #[test]
    fn programs_run_in_utc_whatever_the_host_time_zone() {
        assert_eq!(*TIME_ZONE, TimeZone::parse("UTC").expect("UTC"));
        let program = Vrl::compile(
            Stage::Transform,
            r#".at = format_timestamp!(parse_timestamp!(.at, "%Y-%m-%d %H:%M:%S"), "%+")"#,
        )
        .expect("compiles");
        let out = kept(apply(
            None,
            Some(&program),
            record(r#"{"at":"2020-01-02 03:04:05"}"#),
        ));
        assert_eq!(out["at"], "2020-01-02T03:04:05+00:00");
    }

    #[test]
    fn compile_errors_point_into_the_program() {
        let errors =
            Vrl::compile(Stage::Transform, ".a = 1\n.b = to_int(.c)").expect_err("fallible");
        assert_eq!(errors[0].offset, 12);
        assert!(
            errors[0]
                .message
                .starts_with("transform: unhandled fallible assignment"),
            "{}",
            errors[0].message
        );
        let errors = Vrl::compile(Stage::Transform, ".x = nosuch(1)").expect_err("unknown");
        assert!(errors[0].message.contains("call to undefined function"));
        let errors = Vrl::compile(Stage::Where, ".country").expect_err("not boolean");
        assert!(errors[0].message.contains("must be a boolean"));
        // No environment, network or host functions.
        assert!(Vrl::compile(Stage::Transform, r#".h = get_env_var!("HOME")"#).is_err());
    }
}
