//! The reference pipeline across real processes: `updraft standalone` runs `user_automation`
//! against a local randomuser stand-in, publishes to Kafka, and `stream-worker` lands the records
//! in Cassandra; then the same in Avro (`user_automation_avro`, `streams/examples/users_avro.yaml`)
//! through the schema registry. Everything but randomuser.me is real.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::TestDatabase;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ADMIN_PASSWORD: &str = "e2e-admin-password";
const RUN_ID: &str = "e2e_manual_run";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace")
        .to_path_buf()
}

/// The folder of `updraft` and `stream-worker`: `cargo test --workspace` (as `scripts/test` runs
/// it) builds them beside this test's own executable. Run alone, this test builds them first.
fn built_binaries() -> PathBuf {
    let folder = std::env::current_exe()
        .ok()
        .and_then(|test| Some(test.parent()?.parent()?.to_path_buf()))
        .expect("the test executable lies in target/<profile>/deps");
    if !(folder.join("updraft").exists() && folder.join("stream-worker").exists()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "-q", "-p", "updraft-cli", "-p", "stream-worker"])
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "building updraft and stream-worker failed"
        );
    }
    folder
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A child process that is killed when the test ends, whose output goes to a file shown on failure.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(name: &'static str, command: &mut Command, logs: &Path) -> Process {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Process { name, child, log }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.tail());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- last lines of {} ---\n{}", self.name, self.tail());
        }
    }
}

/// Fails at once, with its log, if one of the processes has exited.
fn assert_running(processes: &mut [&mut Process]) {
    for process in processes {
        process.assert_running();
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .basic_auth("admin", Some(ADMIN_PASSWORD));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }
}

/// The seed's mapping (`format_data` in its DAG), from one randomuser result to a record.
fn expected_record(user: &Value) -> BTreeMap<&'static str, String> {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let location = &user["location"];
    BTreeMap::from([
        ("first_name", text(&user["name"]["first"])),
        ("last_name", text(&user["name"]["last"])),
        ("gender", text(&user["gender"])),
        (
            "address",
            format!(
                "{} {}, {}, {}, {}",
                text(&location["street"]["number"]),
                text(&location["street"]["name"]),
                text(&location["city"]),
                text(&location["state"]),
                text(&location["country"])
            ),
        ),
        ("post_code", text(&location["postcode"])),
        ("email", text(&user["email"])),
        ("username", text(&user["login"]["username"])),
        ("dob", text(&user["dob"]["date"])),
        ("registered_date", text(&user["registered"]["date"])),
        ("phone", text(&user["phone"])),
        ("picture", text(&user["picture"]["medium"])),
    ])
}

const COLUMNS: [&str; 11] = [
    "first_name",
    "last_name",
    "gender",
    "address",
    "post_code",
    "email",
    "username",
    "dob",
    "registered_date",
    "phone",
    "picture",
];

async fn cassandra_rows(
    session: &scylla::client::session::Session,
    table: &str,
) -> Option<BTreeMap<uuid::Uuid, BTreeMap<&'static str, String>>> {
    let query = format!("SELECT id, {} FROM {table}", COLUMNS.join(", "));
    let result = session.query_unpaged(query, &[]).await.ok()?;
    let rows = result.into_rows_result().ok()?;
    let mut by_id = BTreeMap::new();
    type Row = (
        uuid::Uuid,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    for row in rows.rows::<Row>().ok()? {
        let row = row.ok()?;
        let values = [
            row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10, row.11,
        ];
        let fields = COLUMNS
            .iter()
            .zip(values)
            .map(|(column, value)| (*column, value.unwrap_or_default()))
            .collect();
        by_id.insert(row.0, fields);
    }
    Some(by_id)
}

/// One shipped DAG and the shipped stream that reads what it publishes.
struct Variant {
    dag_id: &'static str,
    /// The DAG's default topic, which is also the stream's.
    topic: &'static str,
    stream: &'static str,
    table: &'static str,
}

const JSON: Variant = Variant {
    dag_id: "user_automation",
    topic: "users_created",
    stream: "streams/users_created.yaml",
    table: "created_users",
};

const AVRO: Variant = Variant {
    dag_id: "user_automation_avro",
    topic: "users_created_avro",
    stream: "streams/examples/users_avro.yaml",
    table: "created_users_avro",
};

#[tokio::test(flavor = "multi_thread")]
async fn user_automation_lands_every_published_record_in_cassandra() {
    if !(testkit::require_postgres() && testkit::require_kafka() && testkit::require_cassandra()) {
        return;
    }
    let records = run_pipeline(&JSON).await;
    assert!(
        records
            .iter()
            .all(|record| record.payload.first() == Some(&b'{'))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_automation_avro_lands_every_published_record_in_cassandra() {
    if !(testkit::require_postgres()
        && testkit::require_kafka()
        && testkit::require_cassandra()
        && testkit::require_schema_registry())
    {
        return;
    }
    let records = run_pipeline(&AVRO).await;
    assert!(
        records
            .iter()
            .all(|record| record.payload.first() == Some(&0))
    );
    // The DAG registers the schema the stream's example documents.
    let dag: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("dags/user_automation_avro.yaml")).unwrap(),
    )
    .unwrap();
    let in_dag: Value = serde_json::to_value(&dag["tasks"][1]["schema"]).unwrap();
    let avsc: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("streams/examples/users_created.avsc")).unwrap(),
    )
    .unwrap();
    assert_eq!(in_dag, avsc);
}

/// Each published record's value as JSON: Avro ones decoded with the schema their header names.
async fn decoded(records: &[testkit::kafka::Record]) -> Vec<Value> {
    let registry = schema_registry::Registry::new(&testkit::schema_registry_url()).unwrap();
    let mut values = Vec::with_capacity(records.len());
    for record in records {
        let Ok((id, mut datum)) = schema_registry::unframe(&record.payload) else {
            values.push(record.json());
            continue;
        };
        let schema = registry.schema(id).await.expect("the record's schema");
        let schema = apache_avro::Schema::parse_str(&schema.schema).expect("Avro");
        let value = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("datum");
        values.push(Value::try_from(value).expect("JSON"));
    }
    values
}

/// Runs `variant`'s DAG and stream as shipped, pointed at a topic and keyspace of this test,
/// checks that every published record is one row holding the seed's mapping, and returns the
/// records.
async fn run_pipeline(variant: &Variant) -> Vec<testkit::kafka::Record> {
    let binaries = built_binaries();
    let work = tempfile::tempdir().expect("tempdir");
    let topic = testkit::unique_name("e2e_users");
    let keyspace = testkit::unique_name("e2e_ks");
    let dag_id = variant.dag_id;

    let dags = work.path().join("dags");
    std::fs::create_dir(&dags).expect("dags folder");
    let dag =
        std::fs::read_to_string(repo_root().join(format!("dags/{dag_id}.yaml"))).expect("the DAG");
    let default_topic = format!("default: {}\n", variant.topic);
    assert!(dag.contains(&default_topic), "the DAG's topic param moved");
    std::fs::write(
        dags.join(format!("{dag_id}.yaml")),
        dag.replace(&default_topic, &format!("default: {topic}\n")),
    )
    .expect("write DAG");
    let stream = std::fs::read_to_string(repo_root().join(variant.stream)).expect("the stream");
    let definition = work.path().join("stream.yaml");
    std::fs::write(
        &definition,
        stream
            .replace(
                &format!("topic: {}\n", variant.topic),
                &format!("topic: {topic}\n"),
            )
            .replace(&format!("{}.dlq", variant.topic), &format!("{topic}.dlq"))
            .replace("spark_streaming", &keyspace)
            .replace("updraft-stream-worker", &testkit::unique_name("e2e_group")),
    )
    .expect("write stream definition");
    let table = format!("{keyspace}.{}", variant.table);

    let fixture: Value =
        serde_json::from_str(include_str!("../../testdata/randomuser_response.json"))
            .expect("fixture");
    let randomuser = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&fixture))
        .mount(&randomuser)
        .await;

    let database = TestDatabase::create("e2e").await;
    let bind = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let logs = work.path();
    let mut updraft = Process::start(
        "updraft",
        Command::new(binaries.join("updraft"))
            .arg("standalone")
            .env("DATABASE_URL", database.url())
            .env("UPDRAFT_DAGS_FOLDER", &dags)
            .env("UPDRAFT_BIND", &bind)
            .env("UPDRAFT_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env(
                "UPDRAFT_VAR_RANDOMUSER_URL",
                format!("{}/api/", randomuser.uri()),
            )
            .envs(testkit::service_env())
            .stdin(Stdio::null()),
        logs,
    );
    let mut worker = Process::start(
        "stream-worker",
        Command::new(binaries.join("stream-worker"))
            .arg("--definitions")
            .arg(&definition)
            .arg("--metrics-addr")
            .arg(&metrics)
            .envs(testkit::service_env())
            .stdin(Stdio::null()),
        logs,
    );

    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{bind}/api/v1"),
    };
    testkit::eventually("the DAG in the API", Duration::from_secs(60), async || {
        assert_running(&mut [&mut updraft, &mut worker]);
        api.call(reqwest::Method::GET, &format!("/dags/{dag_id}"), None)
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    let (status, _) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/dags/{dag_id}?update_mask=is_paused"),
            Some(json!({"is_paused": false})),
        )
        .await
        .expect("unpause");
    assert_eq!(status, 200);
    let (status, created) = api
        .call(
            reqwest::Method::POST,
            &format!("/dags/{dag_id}/dagRuns"),
            Some(json!({"dag_run_id": RUN_ID, "conf": {"results": fixture["results"].as_array().map_or(0, Vec::len)}})),
        )
        .await
        .expect("trigger");
    assert_eq!(status, 200, "trigger answered {created}");

    let run_path = format!("/dags/{dag_id}/dagRuns/{RUN_ID}");
    let state = testkit::eventually("the run to finish", Duration::from_secs(120), async || {
        assert_running(&mut [&mut updraft, &mut worker]);
        let (_, run) = api.call(reqwest::Method::GET, &run_path, None).await?;
        let state = run["state"].as_str()?.to_string();
        (state == "success" || state == "failed").then_some(state)
    })
    .await;
    assert_eq!(state, "success", "the run failed; see the updraft log");

    // The scheduled run that unpausing creates may publish too, at any moment: every record on
    // the topic counts, so wait for a moment when the topic and the table agree.
    let session = testkit::cassandra::session().await;
    let what = "every record in Cassandra";
    let (published, rows) = testkit::eventually(what, Duration::from_secs(120), async || {
        assert_running(&mut [&mut updraft, &mut worker]);
        let published = testkit::kafka::read_all(&topic).await;
        let rows = cassandra_rows(&session, &table).await?;
        (!published.is_empty() && rows.len() == published.len()).then_some((published, rows))
    })
    .await;
    let records = decoded(&published).await;

    let users = fixture["results"].as_array().expect("results");
    let expected: Vec<BTreeMap<&str, String>> = users.iter().map(expected_record).collect();
    assert!(
        records.len() >= users.len(),
        "the manual run alone publishes {} records",
        users.len()
    );
    assert_eq!(
        rows.len(),
        records.len(),
        "every published record is one row"
    );
    for record in &records {
        let id: uuid::Uuid = record["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("record id is a uuid");
        let row = rows
            .get(&id)
            .unwrap_or_else(|| panic!("record {id} is not in Cassandra"));
        for column in COLUMNS {
            assert_eq!(
                record[column].as_str(),
                Some(row[column].as_str()),
                "column {column} of {id}"
            );
        }
        assert!(
            expected.contains(row),
            "row {id} is not the seed's mapping of any user: {row:?}"
        );
    }
    // The fixture's awkward cases made it through: numeric post codes and non-ASCII names.
    assert!(
        rows.values()
            .any(|row| row["post_code"] == "2826" && row["first_name"] == "Jürgen")
    );
    assert!(rows.values().any(|row| row["first_name"] == "Øyvind"));

    let _ = session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
        .await;
    published
}
