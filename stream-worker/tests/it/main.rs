//! The stream worker's integration tests, one binary: in-process against the real Kafka and
//! Cassandra (`pipeline`, `transform`, `types`, `replay`), and the `stream-worker` binary as a
//! process (`process`, `dlq`).
//!   cargo test -p stream-worker --test it [<module>::]

mod api;
mod avro;
mod common;
mod decode_fuzz;
mod dlq;
mod docs;
mod pipeline;
mod process;
mod replay;
mod transform;
mod types;
