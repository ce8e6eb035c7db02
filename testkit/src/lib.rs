//! What the integration tests share: service addresses from env vars and the rule for a missing
//! service (with `CI=true` it is a test failure, elsewhere the test is skipped with a message),
//! [`eventually`] for waiting, a [`TestDatabase`] per test, Kafka and Cassandra helpers, and a
//! TCP proxy to cut a service off.

pub mod cassandra;
mod database;
mod eventually;
pub mod kafka;
pub mod proxy;

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use database::TestDatabase;
pub use eventually::{Check, Deadline, eventually};

/// `DATABASE_URL`, defaulting to the local stack's PostgreSQL.
pub fn database_url() -> String {
    env_or(
        "DATABASE_URL",
        "postgres://updraft:updraft@127.0.0.1:5432/updraft",
    )
}

/// `KAFKA_BOOTSTRAP_SERVERS`, defaulting to the local stack's broker.
pub fn kafka_bootstrap_servers() -> String {
    env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
}

/// `CASSANDRA_CONTACT_POINTS`, defaulting to the local stack's node.
pub fn cassandra_contact_points() -> String {
    env_or("CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042")
}

/// `SCHEMA_REGISTRY_URL`, defaulting to the local stack's schema registry.
pub fn schema_registry_url() -> String {
    env_or("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081")
}

/// The variables that point a spawned process (`stream-worker`, say) at the stack's Kafka,
/// Cassandra and schema registry, for `Command::envs`.
pub fn service_env() -> [(&'static str, String); 3] {
    [
        ("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers()),
        ("CASSANDRA_CONTACT_POINTS", cassandra_contact_points()),
        ("SCHEMA_REGISTRY_URL", schema_registry_url()),
    ]
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Whether `CI=true`: then a missing prerequisite is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// Whether `service` answers at `address` (host:port; for lists, the first entry).
///
/// Returns `false` when it does not and we are not in CI, so the caller can return early.
/// Panics when it does not and `CI=true`: in CI a missing service must fail the test.
pub fn require(service: &str, address: &str) -> bool {
    check_service(service, address, in_ci())
}

fn check_service(service: &str, address: &str, in_ci: bool) -> bool {
    let first = address.split(',').next().unwrap_or(address).trim();
    let host_port = first
        .rsplit_once('@')
        .map_or(first, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or(first);
    let reachable = host_port
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if reachable {
        return true;
    }
    let message =
        format!("{service} is not reachable at {host_port}; start it with `scripts/stack up`");
    if in_ci {
        panic!("{message} (CI=true: a missing service is a failure)");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// `require` for the PostgreSQL of `database_url()`.
pub fn require_postgres() -> bool {
    let url = database_url();
    let without_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    require("PostgreSQL", without_scheme)
}

/// `require` for the Kafka broker of `kafka_bootstrap_servers()`.
pub fn require_kafka() -> bool {
    require("Kafka", &kafka_bootstrap_servers())
}

/// `require` for the Cassandra node of `cassandra_contact_points()`.
pub fn require_cassandra() -> bool {
    require("Cassandra", &cassandra_contact_points())
}

/// `require` for the schema registry of `schema_registry_url()`.
pub fn require_schema_registry() -> bool {
    let url = schema_registry_url();
    let without_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    require("The schema registry", without_scheme)
}

/// A name unique to this test process and call, for topics, keyspaces, groups and databases:
/// `prefix`, the pid, the time's nanoseconds and a counter (tests of one binary run in parallel).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{count}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Port 1 on loopback: nothing listens there.
    const NOWHERE: &str = "127.0.0.1:1";

    #[test]
    fn a_missing_service_is_skipped_outside_ci() {
        assert!(!check_service("Nothing", NOWHERE, false));
    }

    #[test]
    #[should_panic(expected = "CI=true: a missing service is a failure")]
    fn a_missing_service_fails_in_ci() {
        check_service("Nothing", NOWHERE, true);
    }

    #[test]
    fn a_listening_service_is_found_in_a_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("user:secret@127.0.0.1:{port}/database");
        assert!(check_service("Listener", &url, true));
    }
}
