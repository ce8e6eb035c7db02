//! The local stack from Rust, one binary: a round trip through Kafka and one through Cassandra.
//!   cargo test -p testkit --test it

mod cassandra_smoke;
mod kafka_smoke;
