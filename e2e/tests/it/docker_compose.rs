//! `docker-compose.yaml` cannot run here (no Docker engine), so this checks that it is
//! consistent: services, ports, images, health checks, start order, and the docs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn compose() -> Value {
    serde_yaml_ng::from_str(&read("docker-compose.yaml")).expect("docker-compose.yaml parses")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service `{name}` is missing"))
}

fn env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name]
        .as_str()
        .unwrap_or_else(|| panic!("environment variable {name} is missing"))
}

fn host_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, rest)| rest);
    after_user.split([':', '/']).next().unwrap_or(after_user)
}

fn published_ports(service: &Value) -> Vec<String> {
    service["ports"]
        .as_sequence()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|port| port.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A variable assignment in `scripts/stack`, e.g. `KAFKA_VERSION=4.1.1`.
fn stack_setting(name: &str) -> String {
    read("scripts/stack")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("scripts/stack sets no {name}"))
}

#[test]
fn every_service_of_the_pipeline_is_there() {
    let compose = compose();
    let names: BTreeSet<&str> = compose["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(Value::as_str)
        .collect();
    let expected = [
        "cassandra",
        "kafka",
        "kafka-ui",
        "postgres",
        "scheduler",
        "schema-registry",
        "stream-worker",
        "updraft",
        "webserver",
    ];
    assert_eq!(names, expected.into_iter().collect());
}

#[test]
fn the_multinode_profile_runs_the_roles_on_one_database() {
    let compose = compose();
    let standalone = service(&compose, "updraft");
    assert!(standalone["profiles"].is_null(), "the quickstart's default");
    for (name, role) in [("webserver", "webserver"), ("scheduler", "scheduler")] {
        let process = service(&compose, name);
        assert_eq!(process["profiles"][0].as_str(), Some("multinode"), "{name}");
        assert_eq!(process["command"][1].as_str(), Some(role), "{name}");
        assert_eq!(
            env(process, "DATABASE_URL"),
            env(standalone, "DATABASE_URL"),
            "{name} shares the database"
        );
    }
    assert!(service(&compose, "scheduler")["deploy"]["replicas"].as_u64() >= Some(2));
    assert!(published_ports(service(&compose, "scheduler")).is_empty());
    let ops = read("docs/operations.md");
    assert!(ops.contains("docker compose --profile multinode up"));
}

#[test]
fn ports_match_the_documented_ones() {
    let compose = compose();
    for (name, port) in [
        ("postgres", "5432:5432"),
        ("kafka", "9092:9092"),
        ("cassandra", "9042:9042"),
        ("kafka-ui", "8085:8080"),
        ("updraft", "8080:8080"),
        ("stream-worker", "9108:9108"),
    ] {
        let ports = published_ports(service(&compose, name));
        assert!(
            ports.iter().any(|p| p == port),
            "{name} should publish {port}, has {ports:?}"
        );
    }
    let readme = read("README.md");
    for url in ["http://localhost:8080", "http://localhost:8085"] {
        assert!(readme.contains(url), "README.md should name {url}");
    }
}

#[test]
fn every_dependency_waits_for_a_health_check() {
    let compose = compose();
    for (name, definition) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let Some(depends_on) = definition["depends_on"].as_mapping() else {
            continue;
        };
        for (dependency, condition) in depends_on {
            let dependency = dependency.as_str().unwrap();
            assert_eq!(
                condition["condition"].as_str(),
                Some("service_healthy"),
                "{name} should wait for {dependency} to be healthy"
            );
            let test = &service(&compose, dependency)["healthcheck"]["test"];
            assert!(
                test.is_sequence(),
                "{dependency} has no health check for {name} to wait on"
            );
        }
    }
    for name in ["postgres", "kafka", "cassandra", "updraft", "stream-worker"] {
        assert!(
            service(&compose, name)["healthcheck"]["test"].is_sequence(),
            "{name} has no health check"
        );
    }
    let waits = |name: &str| -> BTreeSet<String> {
        service(&compose, name)["depends_on"]
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        waits("updraft"),
        ["kafka", "postgres"].map(String::from).into()
    );
    assert_eq!(
        waits("stream-worker"),
        ["cassandra", "kafka"].map(String::from).into()
    );
}

#[test]
fn images_are_pinned_and_match_the_local_stack() {
    let compose = compose();
    let image = |name: &str| {
        service(&compose, name)["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        image("kafka"),
        format!("apache/kafka:{}", stack_setting("KAFKA_VERSION"))
    );
    assert_eq!(
        image("cassandra"),
        format!("cassandra:{}", stack_setting("CASSANDRA_VERSION"))
    );
    assert!(image("postgres").starts_with("postgres:"));
    for name in [
        "postgres",
        "kafka",
        "cassandra",
        "kafka-ui",
        "schema-registry",
    ] {
        assert!(
            !image(name).ends_with(":latest"),
            "{name} should pin a version"
        );
    }
}

#[test]
fn our_services_are_built_from_the_dockerfile_targets() {
    let compose = compose();
    let dockerfile = read("Dockerfile");
    for name in ["updraft", "stream-worker"] {
        let target = service(&compose, name)["build"]["target"].as_str().unwrap();
        assert!(
            dockerfile
                .lines()
                .any(|line| line.starts_with("FROM ") && line.ends_with(&format!(" AS {target}"))),
            "Dockerfile has no stage `{target}` for {name}"
        );
    }
}

#[test]
fn connection_settings_point_at_the_services() {
    let compose = compose();
    let updraft = service(&compose, "updraft");
    let worker = service(&compose, "stream-worker");
    assert_eq!(host_of(env(updraft, "DATABASE_URL")), "postgres");
    assert_eq!(host_of(env(updraft, "KAFKA_BOOTSTRAP_SERVERS")), "kafka");
    assert_eq!(host_of(env(worker, "KAFKA_BOOTSTRAP_SERVERS")), "kafka");
    assert_eq!(
        host_of(env(worker, "CASSANDRA_CONTACT_POINTS")),
        "cassandra"
    );
    assert_eq!(env(updraft, "UPDRAFT_BIND"), "0.0.0.0:8080");
    // The UI's Streams pages reach the worker's API, which listens on every interface.
    for web in [updraft, service(&compose, "webserver")] {
        assert_eq!(host_of(env(web, "UPDRAFT_STREAM_WORKERS")), "stream-worker");
    }
    assert_eq!(env(worker, "STREAM_WORKER_METRICS_ADDR"), "0.0.0.0:9108");
    // Avro: whoever publishes or reads it finds the registry, which stores schemas in Kafka.
    for user in [updraft, worker, service(&compose, "scheduler")] {
        assert_eq!(host_of(env(user, "SCHEMA_REGISTRY_URL")), "schema-registry");
    }
    let registry = service(&compose, "schema-registry");
    assert_eq!(
        env(registry, "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"),
        env(updraft, "KAFKA_BOOTSTRAP_SERVERS")
    );

    let internal = env(updraft, "KAFKA_BOOTSTRAP_SERVERS");
    let advertised = env(service(&compose, "kafka"), "KAFKA_ADVERTISED_LISTENERS");
    assert!(
        advertised.contains(internal),
        "Kafka does not advertise {internal}: {advertised}"
    );
    let ui_brokers = env(
        service(&compose, "kafka-ui"),
        "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS",
    );
    assert_eq!(ui_brokers, internal);
}

#[test]
fn schedulers_find_the_plugins_folder_and_the_image_ships_it() {
    let compose = compose();
    for name in ["updraft", "scheduler"] {
        let runner = service(&compose, name);
        let folder = env(runner, "UPDRAFT_PLUGINS_FOLDER");
        let mounts: Vec<&str> = runner["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            mounts.contains(&format!("./plugins:{folder}:ro").as_str()),
            "{name} does not mount ./plugins at {folder}: {mounts:?}"
        );
    }
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("COPY plugins /opt/updraft/plugins"));
    // The Python example plugin needs an interpreter in the image.
    assert!(dockerfile.contains("python3"));
}
