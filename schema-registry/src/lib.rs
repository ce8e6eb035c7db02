//! A client of the Confluent schema registry API (Confluent's own, Apicurio's `ccompat`,
//! Karapace, Rivven's) and the Confluent wire format: a record is `0x00`, the schema id as a
//! big-endian `u32`, then the Avro datum.

mod client;
mod wire;

pub use client::{Backoff, Registry, RegistryError};
pub use wire::{FrameError, frame, unframe};

/// The subject a topic's value schemas are registered under (Confluent's `TopicNameStrategy`).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}
