//! The stream worker's integration tests, one binary: in-process against the real Kafka and
//! Cassandra (`pipeline`, `transform`), and the `stream-worker` binary as a process (`process`,
//! `dlq`).
//!   cargo test -p stream-worker --test it [<module>::]

mod common;
mod decode_fuzz;
mod dlq;
mod docs;
mod pipeline;
mod process;
mod transform;
mod types;
