//! The Updraft stream worker: Kafka topics → Cassandra tables, as declared by YAML stream
//! definitions (`streams/*.yaml`, see `docs/streams.md`). At-least-once: an offset is committed
//! only once every record before it is written or dead-lettered; writes are idempotent upserts.

pub mod api;
pub mod avro;
pub mod connections;
pub mod cql_type;
pub mod dead_letter;
pub mod decode;
pub mod definition;
pub mod dlq;
pub mod metrics;
pub mod offsets;
pub mod replay;
pub mod schema;
pub mod sink;
pub mod topic_range;
pub mod transform;
pub mod worker;
mod yaml_marks;

pub use definition::{Stream, load as load_definitions};
pub use metrics::Metrics;
pub use worker::{WorkerConfig, WorkerError, run};
