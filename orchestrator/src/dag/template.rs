//! The templating language (minijinja): syntax checks at parse time, rendering at run time.
//!
//! A string that is exactly one `{{ expr }}` renders to the expression's native JSON value (so
//! `for_each: "{{ xcom('fetch').body.results }}"` is a list); other strings render to strings;
//! lists and mappings render element by element. Undefined names are errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value as JinjaValue,
    escape_formatter,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use updraft_secrets::{Connection, Masker};

use super::secret_lookup::{Connections, Stored, Variables};

/// Names available in every template, besides those given per render (`item`, `index`).
pub const TEMPLATE_NAMES: &[&str] = &[
    "ds",
    "ds_nodash",
    "ts",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "dag_id",
    "task_id",
    "try_number",
    "params",
    "conf",
    "xcom(task_id)",
    "var(name, default)",
    "var.value.name",
    "var.json.name",
    "conn(id)",
    "conn.id",
    "uuid4()",
    "now()",
];

/// An environment with the run-time settings, used at parse time to compile templates only.
static SYNTAX_ENV: LazyLock<Environment<'static>> = LazyLock::new(base_environment);

fn base_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

/// Whether a string holds template syntax at all (plain strings are not compiled).
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Compiles one string; `Err` is the syntax error's message.
pub fn check_syntax(text: &str) -> Result<(), String> {
    if !is_template(text) {
        return Ok(());
    }
    SYNTAX_ENV
        .template_from_str(text)
        .map(|_| ())
        .map_err(|error| describe(&error))
}

/// A minijinja error as one line: kind, detail and the line within the template when useful.
pub fn describe(error: &Error) -> String {
    let mut message = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if let Some(line) = error.line()
        && line > 1
    {
        message.push_str(&format!(" (template line {line})"));
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// The expression inside a string that is exactly one `{{ expr }}`.
fn native_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    Some(inner.trim())
}

/// Values and functions for one task try.
#[derive(Debug, Clone, Default)]
pub struct TemplateScope {
    /// Plain names: `ds`, `params`, `conf`, ...
    pub names: Map<String, Value>,
    /// Outputs of tasks of the same run (`xcom(task_id)`).
    pub xcom: BTreeMap<String, Value>,
    /// Variables from the store; `UPDRAFT_VAR_<NAME>` env vars take precedence.
    pub variables: BTreeMap<String, Stored<String>>,
    /// Connections from the store; `UPDRAFT_CONN_<ID>` env vars take precedence.
    pub connections: BTreeMap<String, Stored<Connection>>,
    /// Learns every secret `var` and `conn` reveal (passwords, sensitive extras and variables).
    pub masker: Arc<Masker>,
}

/// Quotes text as one word of a POSIX shell, nothing in it interpreted. Plain words (letters,
/// digits and `-_./:=@%+,`) stay as they are, so `echo {{ ds }}` still reads `echo 2024-01-01`.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `uuid4()`'s values: version-4 UUIDs whose bits come from a hash of the task instance (DAG,
/// run, task), the call's position among the try's `uuid4()` calls and the `item` being
/// rendered, not from a random source. Every try of a task instance renders the same values, so
/// a retried publish re-sends identical records and an upsert by id collapses them; another run,
/// task or item gets other values.
struct StableUuids {
    task_instance: String,
    calls: AtomicU64,
}

impl StableUuids {
    fn of(names: &Map<String, Value>) -> StableUuids {
        let part = |name: &str| names.get(name).map(Value::to_string).unwrap_or_default();
        StableUuids {
            task_instance: [part("dag_id"), part("run_id"), part("task_id")].join("\u{1f}"),
            calls: AtomicU64::new(0),
        }
    }

    fn next(&self, item: Option<JinjaValue>) -> String {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut hash = Sha256::new();
        hash.update(self.task_instance.as_bytes());
        hash.update(call.to_le_bytes());
        if let Some(item) = item.filter(|item| !item.is_undefined()) {
            hash.update(serde_json::to_vec(&item).unwrap_or_default());
        }
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// Renders templates for one try; implements the operators' [`updraft_operators::Renderer`].
pub struct TemplateRenderer {
    /// Built on first use: a try whose config has no template never needs one.
    env: OnceLock<Environment<'static>>,
    /// For the fields a shell runs: every value is shell-quoted unless marked `| safe`. Built
    /// on first use: most tries have no such field.
    shell: OnceLock<Environment<'static>>,
    xcom: Arc<BTreeMap<String, Value>>,
    variables: Arc<Variables>,
    connections: Arc<Connections>,
    uuids: Arc<StableUuids>,
    names: Map<String, Value>,
}

impl TemplateRenderer {
    pub fn new(scope: TemplateScope) -> TemplateRenderer {
        let xcom = Arc::new(scope.xcom);
        let variables = Arc::new(Variables {
            stored: Arc::new(scope.variables),
            masker: Arc::clone(&scope.masker),
        });
        let connections = Arc::new(Connections {
            stored: Arc::new(scope.connections),
            masker: scope.masker,
        });
        let uuids = Arc::new(StableUuids::of(&scope.names));
        TemplateRenderer {
            env: OnceLock::new(),
            shell: OnceLock::new(),
            xcom,
            variables,
            connections,
            uuids,
            names: scope.names,
        }
    }

    fn environment(&self) -> &Environment<'static> {
        self.env.get_or_init(|| {
            functions(
                Arc::clone(&self.xcom),
                Arc::clone(&self.variables),
                Arc::clone(&self.connections),
                Arc::clone(&self.uuids),
            )
        })
    }

    fn shell_environment(&self) -> &Environment<'static> {
        self.shell.get_or_init(|| {
            let mut shell = functions(
                Arc::clone(&self.xcom),
                Arc::clone(&self.variables),
                Arc::clone(&self.connections),
                Arc::clone(&self.uuids),
            );
            shell.set_auto_escape_callback(|_| AutoEscape::Custom("shell"));
            shell.set_formatter(|out, state, value| {
                if value.is_safe() || state.auto_escape() != AutoEscape::Custom("shell") {
                    return escape_formatter(out, state, value);
                }
                let text = match value.as_str() {
                    Some(text) => text.to_string(),
                    None => value.to_string(),
                };
                out.write_str(&shell_quote(&text)).map_err(Error::from)
            });
            shell
        })
    }

    /// Renders one string a shell will run: values are quoted ([`shell_quote`]) unless marked
    /// `| safe`, and the result is always text.
    pub fn render_shell_str(
        &self,
        text: &str,
        locals: &Map<String, Value>,
    ) -> Result<Value, String> {
        if !is_template(text) {
            return Ok(Value::String(text.to_string()));
        }
        self.shell_environment()
            .render_str(text, self.context(locals))
            .map(Value::String)
            .map_err(|error| describe(&error))
    }

    /// Renders one string with extra `locals` in scope.
    pub fn render_str(&self, text: &str, locals: &Map<String, Value>) -> Result<Value, String> {
        if !is_template(text) {
            return Ok(Value::String(text.to_string()));
        }
        let context = self.context(locals);
        if let Some(expression) = native_expression(text) {
            let compiled = self
                .environment()
                .compile_expression(expression)
                .map_err(|error| describe(&error))?;
            let value = compiled.eval(&context).map_err(|error| describe(&error))?;
            if value.is_undefined() {
                return Err(format!("undefined value: `{expression}` is undefined"));
            }
            return serde_json::to_value(&value)
                .map_err(|error| format!("`{expression}`: {error}"));
        }
        self.environment()
            .render_str(text, &context)
            .map(Value::String)
            .map_err(|error| describe(&error))
    }

    /// Renders a JSON value: strings as templates, lists and mappings element-wise.
    pub fn render_value(
        &self,
        value: &Value,
        locals: &Map<String, Value>,
    ) -> Result<Value, String> {
        match value {
            Value::String(text) => self.render_str(text, locals),
            Value::Array(items) => items
                .iter()
                .map(|item| self.render_value(item, locals))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(entries) => entries
                .iter()
                .map(|(key, item)| {
                    self.render_value(item, locals)
                        .map(|rendered| (key.clone(), rendered))
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    fn context(&self, locals: &Map<String, Value>) -> BTreeMap<String, JinjaValue> {
        self.names
            .iter()
            .chain(locals.iter())
            .map(|(name, value)| (name.clone(), JinjaValue::from_serialize(value)))
            .collect()
    }
}

/// The run-time environment: the base settings, the functions (`xcom`, `uuid4`, `now`) and
/// the lookups (`var`, `conn`: callable, and with attributes).
fn functions(
    xcom: Arc<BTreeMap<String, Value>>,
    variables: Arc<Variables>,
    connections: Arc<Connections>,
    uuids: Arc<StableUuids>,
) -> Environment<'static> {
    let mut env = base_environment();
    env.add_function("xcom", move |task_id: String| -> Result<JinjaValue, Error> {
            xcom.get(&task_id).map(JinjaValue::from_serialize).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("xcom('{task_id}'): no output from task `{task_id}` in this run (is it upstream of this task?)"),
                )
            })
        });
    env.add_global("var", JinjaValue::from_dyn_object(variables));
    env.add_global("conn", JinjaValue::from_dyn_object(connections));
    env.add_function("uuid4", move |state: &State| {
        uuids.next(state.lookup("item"))
    });
    env.add_function("now", || chrono::Utc::now().to_rfc3339());
    env
}

impl updraft_operators::Renderer for TemplateRenderer {
    fn render(&self, template: &Value, locals: &Map<String, Value>) -> Result<Value, String> {
        self.render_value(template, locals)
    }

    fn connection(&self, conn_id: &str) -> Result<Connection, String> {
        self.connections.resolve(conn_id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn renderer() -> TemplateRenderer {
        let mut names = Map::new();
        names.insert("ds".into(), json!("2023-09-03"));
        names.insert(
            "params".into(),
            json!({"results": 3, "topic": "users_created"}),
        );
        let mut xcom = BTreeMap::new();
        xcom.insert(
            "fetch".into(),
            json!({"body": {"results": [{"name": "Zoë"}, {"name": "Ünal"}]}}),
        );
        let mut variables = BTreeMap::new();
        variables.insert("from_store".into(), Ok("stored".into()));
        TemplateRenderer::new(TemplateScope {
            names,
            xcom,
            variables,
            ..TemplateScope::default()
        })
    }

    #[test]
    fn shell_fields_quote_every_value_unless_it_is_marked_safe() {
        let r = renderer();
        let locals: Map<String, Value> = [
            ("msg".to_string(), json!("hi; rm -rf ~ $(id) 'x'")),
            ("n".to_string(), json!(3)),
        ]
        .into_iter()
        .collect();
        let shell = |text: &str| r.render_shell_str(text, &locals).unwrap();
        assert_eq!(
            shell("echo {{ msg }}"),
            json!(r#"echo 'hi; rm -rf ~ $(id) '\''x'\'''"#)
        );
        // Plain words stay readable; a lone expression is text too (never a native value).
        assert_eq!(shell("seq {{ n }} {{ ds }}"), json!("seq 3 2023-09-03"));
        assert_eq!(shell("{{ params.results }}"), json!("3"));
        assert_eq!(shell("{{ msg | safe }}"), json!("hi; rm -rf ~ $(id) 'x'"));
        assert_eq!(shell_quote(""), "''");
        // Elsewhere nothing is quoted.
        assert_eq!(
            r.render_str("say {{ msg }}", &locals).unwrap(),
            json!("say hi; rm -rf ~ $(id) 'x'")
        );
    }

    #[test]
    fn a_single_expression_renders_to_its_native_value() {
        let r = renderer();
        let none = Map::new();
        assert_eq!(
            r.render_str("{{ xcom('fetch').body.results }}", &none)
                .unwrap(),
            json!([{"name": "Zoë"}, {"name": "Ünal"}])
        );
        assert_eq!(
            r.render_str("{{ params.results }}", &none).unwrap(),
            json!(3)
        );
        assert_eq!(
            r.render_str(" {{- params.results -}} ", &none).unwrap(),
            json!(3)
        );
        assert_eq!(
            r.render_str("n={{ params.results }}", &none).unwrap(),
            json!("n=3")
        );
        assert_eq!(
            r.render_str("{{ ds }}/{{ ds }}", &none).unwrap(),
            json!("2023-09-03/2023-09-03")
        );
        assert_eq!(r.render_str("plain", &none).unwrap(), json!("plain"));
    }

    #[test]
    fn locals_are_in_scope_and_values_render_element_wise() {
        let r = renderer();
        let mut locals = Map::new();
        locals.insert("item".into(), json!({"name": "Zoë", "postcode": 4021}));
        let rendered = r
            .render_value(&json!({"who": "{{ item.name }}", "code": "{{ item.postcode | string }}", "n": [1, "{{ params.results }}"]}), &locals)
            .unwrap();
        assert_eq!(rendered, json!({"who": "Zoë", "code": "4021", "n": [1, 3]}));
    }

    #[test]
    fn undefined_names_are_errors() {
        let r = renderer();
        let none = Map::new();
        assert!(
            r.render_str("{{ nope }}", &none)
                .unwrap_err()
                .contains("undefined")
        );
        assert!(
            r.render_str("x{{ nope }}", &none)
                .unwrap_err()
                .contains("undefined")
        );
        assert!(
            r.render_str("{{ params.nope }}", &none)
                .unwrap_err()
                .contains("undefined")
        );
        let error = r.render_str("{{ xcom('missing') }}", &none).unwrap_err();
        assert!(error.contains("no output from task `missing`"), "{error}");
    }

    #[test]
    fn default_and_is_defined_work_on_missing_names() {
        let r = renderer();
        let none = Map::new();
        assert_eq!(
            r.render_str("{{ params.nope | default('none') }}", &none)
                .unwrap(),
            json!("none")
        );
        assert_eq!(
            r.render_str(
                "{% if params.nope is defined %}y{% else %}n{% endif %}",
                &none
            )
            .unwrap(),
            json!("n")
        );
    }

    #[test]
    fn var_reads_env_then_store_then_default() {
        let r = renderer();
        let none = Map::new();
        // SAFETY: the variable name is unique to this test; no other thread reads it.
        unsafe { std::env::set_var("UPDRAFT_VAR_TEMPLATE_TEST_URL", "http://from-env") };
        assert_eq!(
            r.render_str("{{ var('template_test_url', 'x') }}", &none)
                .unwrap(),
            json!("http://from-env")
        );
        assert_eq!(
            r.render_str("{{ var('from_store') }}", &none).unwrap(),
            json!("stored")
        );
        assert_eq!(
            r.render_str("{{ var('unset_here', 'dflt') }}", &none)
                .unwrap(),
            json!("dflt")
        );
        let error = r.render_str("{{ var('unset_here') }}", &none).unwrap_err();
        assert!(error.contains("UPDRAFT_VAR_UNSET_HERE"), "{error}");
    }

    #[test]
    fn var_value_and_var_json_read_as_in_airflow() {
        let mut variables = BTreeMap::new();
        variables.insert("plain".into(), Ok("text".into()));
        variables.insert(
            "settings".into(),
            Ok(r#"{"retries": 3, "hosts": ["a", "b"]}"#.into()),
        );
        let r = TemplateRenderer::new(TemplateScope {
            variables,
            ..TemplateScope::default()
        });
        let none = Map::new();
        assert_eq!(
            r.render_str("{{ var.value.plain }}", &none).unwrap(),
            json!("text")
        );
        assert_eq!(
            r.render_str("{{ var.json.settings.hosts }}", &none)
                .unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            r.render_str("n={{ var.json.settings.retries }}", &none)
                .unwrap(),
            json!("n=3")
        );
        let missing = r.render_str("{{ var.value.nope }}", &none).unwrap_err();
        assert!(
            missing.contains("variable `nope`") && missing.contains("UPDRAFT_VAR_NOPE"),
            "{missing}"
        );
        let not_json = r.render_str("{{ var.json.plain }}", &none).unwrap_err();
        assert!(not_json.contains("not JSON"), "{not_json}");
    }

    #[test]
    fn conn_reads_env_first_then_the_store() {
        let stored = Connection::from_uri(
            "stored_api",
            "https://bot:pa%24%24@api.example.com:8443/v2?timeout=5",
        )
        .unwrap();
        let r = TemplateRenderer::new(TemplateScope {
            connections: BTreeMap::from([("stored_api".to_string(), Ok(stored))]),
            ..TemplateScope::default()
        });
        let none = Map::new();
        assert_eq!(
            r.render_str(
                "{{ conn.stored_api.conn_type }}://{{ conn.stored_api.host }}:{{ conn.stored_api.port }}/{{ conn.stored_api.schema }}",
                &none
            )
            .unwrap(),
            json!("https://api.example.com:8443/v2")
        );
        assert_eq!(
            r.render_str("{{ conn('stored_api').password }}", &none)
                .unwrap(),
            json!("pa$$")
        );
        assert_eq!(
            r.render_str("{{ conn.stored_api.extra_dejson.timeout }}", &none)
                .unwrap(),
            json!("5")
        );
        // SAFETY: the variable name is unique to this test; no other thread reads it.
        unsafe {
            std::env::set_var(
                "UPDRAFT_CONN_TEMPLATE_TEST_ENV",
                r#"{"conn_type": "kafka", "host": "broker", "port": 9092}"#,
            )
        };
        assert_eq!(
            r.render_str("{{ conn.template_test_env.host }}", &none)
                .unwrap(),
            json!("broker")
        );
        let missing = r.render_str("{{ conn('nowhere') }}", &none).unwrap_err();
        assert!(
            missing.contains("connection `nowhere`") && missing.contains("UPDRAFT_CONN_NOWHERE"),
            "{missing}"
        );
        let missing = r.render_str("{{ conn.nowhere.host }}", &none).unwrap_err();
        assert!(missing.contains("connection `nowhere`"), "{missing}");
    }

    #[test]
    fn uuid4_renders_the_same_values_on_every_try_of_a_task_instance() {
        let try_of = |run_id: &str, try_number: u32| {
            let mut names = Map::new();
            names.insert("dag_id".into(), json!("user_automation"));
            names.insert("run_id".into(), json!(run_id));
            names.insert("task_id".into(), json!("stream_users"));
            names.insert("try_number".into(), json!(try_number));
            TemplateRenderer::new(TemplateScope {
                names,
                ..TemplateScope::default()
            })
        };
        let ids = |renderer: &TemplateRenderer, items: &[Value]| -> Vec<Value> {
            items
                .iter()
                .map(|item| {
                    let mut locals = Map::new();
                    locals.insert("item".into(), item.clone());
                    renderer.render_str("{{ uuid4() }}", &locals).unwrap()
                })
                .collect()
        };
        let people = [json!({"name": "Zoë"}), json!({"name": "Ünal"})];
        let first = ids(&try_of("r1", 1), &people);
        assert_ne!(first[0], first[1]);
        assert_eq!(ids(&try_of("r1", 2), &people), first, "a retry");
        assert_ne!(ids(&try_of("r2", 1), &people), first, "another run");
        let others = [json!({"name": "Ana"}), json!({"name": "Ünal"})];
        assert_ne!(ids(&try_of("r1", 2), &others)[0], first[0], "another item");
        let parsed = uuid::Uuid::parse_str(first[0].as_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn helpers_produce_fresh_values() {
        let r = renderer();
        let none = Map::new();
        let a = r.render_str("{{ uuid4() }}", &none).unwrap();
        let b = r.render_str("{{ uuid4() }}", &none).unwrap();
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(a.as_str().unwrap()).is_ok());
        assert!(
            chrono::DateTime::parse_from_rfc3339(
                r.render_str("{{ now() }}", &none)
                    .unwrap()
                    .as_str()
                    .unwrap()
            )
            .is_ok()
        );
    }

    #[test]
    fn syntax_errors_are_found_without_rendering() {
        assert!(check_syntax("{{ params.x }}").is_ok());
        assert!(check_syntax("no template").is_ok());
        let error = check_syntax("{{ params.x ").unwrap_err();
        assert!(error.contains("syntax error"), "{error}");
    }
}
