//! A stream's dead letters: listed and shown (`stream-worker dlq list|show`, through
//! [`crate::topic_range`]) and sent back through the current definition (`dlq replay`).

use crate::dead_letter::SourceRecord;
use crate::replay::{RangeReader, Rewriter, Rewritten, ranges_from};

pub use stream_worker_api::Replayed;

/// Sends every dead letter of `stream` there when it starts (of `partition` only, from
/// `offset`, when given) through the current definition: decoded and written as the worker
/// would (the dead letter's time is the write time), or dead-lettered again with the new
/// reason. Returns when done; letters added meanwhile (its own included) are not read.
pub async fn replay(
    config: &crate::WorkerConfig,
    stream: &crate::Stream,
    partition: Option<i32>,
    offset: Option<i64>,
) -> Result<Replayed, crate::WorkerError> {
    let rewriter = Rewriter::new(config, stream).await?;
    let topic = &stream.dead_letter_topic;
    let ranges = ranges_from(config, topic, |range| {
        partition
            .is_none_or(|wanted| range.partition == wanted)
            .then(|| offset.unwrap_or(range.first))
    })
    .await?;
    let mut replayed = Replayed::default();
    let mut reader = RangeReader::new(config, topic, ranges);
    while let Some(letters) = reader.next_batch().await? {
        for letter in letters {
            replayed.read += 1;
            if letter.header("payload.omitted").is_some() {
                replayed.references += 1;
                continue;
            }
            let source = SourceRecord {
                topic: letter
                    .header("source.topic")
                    .unwrap_or(&stream.topic)
                    .into(),
                partition: letter
                    .header("source.partition")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(-1),
                offset: letter
                    .header("source.offset")
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(-1),
                key: letter.key,
                payload: letter.payload,
            };
            match rewriter.write(&source, letter.timestamp_ms).await {
                Rewritten::Written => replayed.written += 1,
                Rewritten::Dropped => replayed.dropped += 1,
                Rewritten::DeadLettered => replayed.refused_again += 1,
            }
        }
    }
    Ok(replayed)
}
