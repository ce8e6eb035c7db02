//! `updraft dags test user_automation` (its library function) against a local randomuser
//! stand-in (wiremock) and the real Kafka broker: every record has exactly the seed's shape.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use updraft_operators::LogSink;
use updraft_orchestrator::dag::TaskState;
use updraft_orchestrator::dag::folder::resolve_dag;
use updraft_orchestrator::engine::local::{LocalRunOptions, run_locally};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// One randomuser.me-shaped user: (first, last, gender), street (number, name),
/// (city, state, country), postcode (a number for some countries), username.
fn user(
    (first, last, gender): (&str, &str, &str),
    (number, street): (u32, &str),
    (city, state, country): (&str, &str, &str),
    postcode: Value,
    username: &str,
) -> Value {
    json!({
        "gender": gender,
        "name": {"title": "Mx", "first": first, "last": last},
        "location": {
            "street": {"number": number, "name": street},
            "city": city, "state": state, "country": country, "postcode": postcode,
            "coordinates": {"latitude": "-69.8246", "longitude": "134.8719"},
            "timezone": {"offset": "+9:30", "description": "Adelaide, Darwin"}
        },
        "email": format!("{username}@example.com"),
        "login": {"uuid": format!("uuid-{username}"), "username": username, "password": "secret"},
        "dob": {"date": "1993-07-20T09:44:18.674Z", "age": 30},
        "registered": {"date": "2015-05-27T14:26:18.153Z", "age": 8},
        "phone": "(272) 790-0888",
        "cell": "(888) 123-4567",
        "id": {"name": "SSN", "value": "405-88-3636"},
        "picture": {
            "large": format!("https://randomuser.me/api/portraits/large/{username}.jpg"),
            "medium": format!("https://randomuser.me/api/portraits/med/{username}.jpg"),
            "thumbnail": format!("https://randomuser.me/api/portraits/thumb/{username}.jpg")
        },
        "nat": "XX"
    })
}

/// The records the seed's `format_data` would produce, written out by hand (ids aside).
fn expected_records() -> Vec<Value> {
    let record = |first: &str,
                  last: &str,
                  gender: &str,
                  address: &str,
                  post_code: &str,
                  username: &str| {
        json!({
            "first_name": first, "last_name": last, "gender": gender, "address": address,
            "post_code": post_code, "email": format!("{username}@example.com"), "username": username,
            "dob": "1993-07-20T09:44:18.674Z", "registered_date": "2015-05-27T14:26:18.153Z",
            "phone": "(272) 790-0888",
            "picture": format!("https://randomuser.me/api/portraits/med/{username}.jpg")
        })
    };
    vec![
        record(
            "Zoë",
            "Ünal",
            "female",
            "4021 Rue de l'Église, Besançon, Doubs, France",
            "25000",
            "zoe_u",
        ),
        record(
            "Ægir",
            "Østby",
            "male",
            "12 Søndre gate, Tromsø, Troms, Norway",
            "9008",
            "aegir",
        ),
        record(
            "Nuray",
            "Çetin",
            "female",
            "7781 Atatürk Sk, İstanbul, Kırklareli, Turkey",
            "60513",
            "nuray",
        ),
    ]
}

fn randomuser_body() -> Value {
    json!({
        "results": [
            user(("Zoë", "Ünal", "female"), (4021, "Rue de l'Église"), ("Besançon", "Doubs", "France"), json!(25000), "zoe_u"),
            user(("Ægir", "Østby", "male"), (12, "Søndre gate"), ("Tromsø", "Troms", "Norway"), json!("9008"), "aegir"),
            user(("Nuray", "Çetin", "female"), (7781, "Atatürk Sk"), ("İstanbul", "Kırklareli", "Turkey"), json!(60513), "nuray"),
        ],
        "info": {"seed": "abc", "results": 3, "page": 1, "version": "1.4"}
    })
}

struct Collect(Mutex<Vec<String>>);

impl LogSink for Collect {
    fn write_line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

#[tokio::test]
async fn user_automation_publishes_records_of_exactly_the_seeds_shape() {
    if !testkit::require_kafka() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/"))
        .and(query_param("results", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(randomuser_body()))
        .expect(1)
        .mount(&server)
        .await;
    let registry = updraft_operators::builtin_registry();
    let loaded = resolve_dag("user_automation", Path::new("../dags"), &registry)
        .unwrap_or_else(|errors| panic!("{errors:#?}"));
    let topic = testkit::unique_name("users_created_test");
    // One partition: the records come back in publication order.
    testkit::kafka::create_topic(&topic, 1).await;
    let conf: Map<String, Value> =
        serde_json::from_value(json!({"topic": topic, "results": 3})).unwrap();
    let mut options = LocalRunOptions::new(conf);
    // As a stored variable, not `UPDRAFT_VAR_RANDOMUSER_URL`: tests of this binary run in
    // parallel, and setting the environment while other threads read it is unsound.
    options.variables.insert(
        "randomuser_url".into(),
        Ok(format!("{}/api/", server.uri())),
    );
    let log = Arc::new(Collect(Mutex::new(Vec::new())));
    let sink = log.clone();
    options.log_for = Box::new(move |_| sink.clone());
    let run = run_locally(&loaded.dag, &registry, options, CancellationToken::new())
        .await
        .unwrap();

    let states: Vec<(&str, TaskState)> = run
        .tasks
        .iter()
        .map(|task| (task.task_id.as_str(), task.state))
        .collect();
    assert_eq!(
        states,
        [
            ("fetch_users", TaskState::Success),
            ("stream_users", TaskState::Success)
        ],
        "{:#?}\nlog: {:#?}",
        run.tasks,
        log.0.lock().unwrap()
    );
    assert_eq!(run.tasks[1].output.as_ref().unwrap()["count"], 3);

    let published = testkit::kafka::read_topic(&topic, 3, Duration::from_secs(30)).await;
    let keys: Vec<Option<&str>> = published.iter().map(|r| r.key.as_deref()).collect();
    // The person's own id: a retry's re-sends land on the same partition, in order.
    assert_eq!(
        keys,
        [Some("uuid-zoe_u"), Some("uuid-aegir"), Some("uuid-nuray")]
    );
    let records: Vec<Value> = published.iter().map(testkit::kafka::Record::json).collect();
    let expected = expected_records();
    let mut ids = std::collections::HashSet::new();
    for (record, expected) in records.iter().zip(&expected) {
        let fields: Vec<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut wanted = vec![
            "address",
            "dob",
            "email",
            "first_name",
            "gender",
            "id",
            "last_name",
            "phone",
            "picture",
            "post_code",
            "registered_date",
            "username",
        ];
        wanted.sort();
        let mut sorted = fields.clone();
        sorted.sort();
        assert_eq!(sorted, wanted, "exactly the seed's fields");
        for (field, value) in expected.as_object().unwrap() {
            assert_eq!(&record[field], value, "field `{field}` of {record}");
        }
        let id = record["id"].as_str().expect("id is a string");
        let parsed = uuid::Uuid::parse_str(id).expect("id is a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert!(ids.insert(id.to_string()), "ids are unique");
    }
}

/// docs/connections.md: the seed DAG with its `fetch_users` task naming a connection
/// (`conn_id`, a relative `url`) instead of the `randomuser_url` variable runs the same.
#[tokio::test]
async fn user_automation_takes_its_url_from_a_connection() {
    if !testkit::require_kafka() {
        return;
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/"))
        .and(query_param("results", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(randomuser_body()))
        .expect(1)
        .mount(&server)
        .await;
    let seed = std::fs::read_to_string("../dags/user_automation.yaml").unwrap();
    let by_variable = "    url: \"{{ var('randomuser_url', 'https://randomuser.me/api/') }}\"\n";
    assert!(seed.contains(by_variable), "the seed DAG's url line moved");
    let by_connection = seed.replace(by_variable, "    conn_id: randomuser\n    url: /\n");
    let registry = updraft_operators::builtin_registry();
    let dag = updraft_orchestrator::dag::parse::parse_dag(
        "user_automation.yaml",
        &by_connection,
        &registry,
    )
    .unwrap_or_else(|errors| panic!("{errors:#?}"));
    let topic = testkit::unique_name("users_created_conn");
    testkit::kafka::create_topic(&topic, 1).await;
    let conf: Map<String, Value> =
        serde_json::from_value(json!({"topic": topic, "results": 3})).unwrap();
    let mut options = LocalRunOptions::new(conf);
    let connection =
        updraft_secrets::Connection::from_uri("randomuser", &format!("{}/api", server.uri()))
            .unwrap();
    options
        .connections
        .insert("randomuser".into(), Ok(connection));
    options.log_for = Box::new(|_| Arc::new(Collect(Mutex::new(Vec::new()))));
    let run = run_locally(&dag, &registry, options, CancellationToken::new())
        .await
        .unwrap();
    let states: Vec<(&str, TaskState)> = run
        .tasks
        .iter()
        .map(|task| (task.task_id.as_str(), task.state))
        .collect();
    assert_eq!(
        states,
        [
            ("fetch_users", TaskState::Success),
            ("stream_users", TaskState::Success)
        ],
        "{:#?}",
        run.tasks
    );
    assert_eq!(run.tasks[1].output.as_ref().unwrap()["count"], 3);
}
