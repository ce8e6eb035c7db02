//! Which offsets may be committed: per partition, the lowest offset still being written (or
//! dead-lettered), else one past the last record received. Records arrive in offset order per
//! partition, so everything below that point is done: committing it never skips a record.

use std::collections::{BTreeSet, HashMap};

/// Identifies one assignment of a partition to this worker. A completion from an earlier
/// assignment (before a rebalance) must not touch the state of a later one.
pub type Generation = u64;

#[derive(Debug, Default)]
struct PartitionState {
    generation: Generation,
    in_flight: BTreeSet<i64>,
    /// One past the last offset received, once a record was received.
    next: Option<i64>,
    /// The last offset committed (or handed out for committing).
    committed: Option<i64>,
}

impl PartitionState {
    fn position(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }
}

/// Tracks received and finished offsets for every partition of one consumer. Keyed by topic, then
/// partition, so the per-record calls look up by `&str` without allocating.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<String, HashMap<i32, PartitionState>>,
    next_generation: Generation,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A partition was (re)assigned: forget what an earlier assignment knew.
    pub fn assign(&mut self, topic: &str, partition: i32) {
        self.next_generation += 1;
        let state = PartitionState {
            generation: self.next_generation,
            ..Default::default()
        };
        self.partitions
            .entry(topic.to_string())
            .or_default()
            .insert(partition, state);
    }

    fn state(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        self.partitions.get_mut(topic)?.get_mut(&partition)
    }

    /// Every partition state, with its topic and partition.
    fn all(&mut self) -> impl Iterator<Item = (&str, i32, &mut PartitionState)> {
        self.partitions.iter_mut().flat_map(|(topic, partitions)| {
            partitions
                .iter_mut()
                .map(move |(partition, state)| (topic.as_str(), *partition, state))
        })
    }

    /// A partition was revoked: later completions of its records are ignored.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.partitions.get_mut(topic) {
            partitions.remove(&partition);
        }
    }

    /// A record was received and is about to be written; returns the ticket to finish it with.
    pub fn start(&mut self, topic: &str, partition: i32, offset: i64) -> Generation {
        if self.state(topic, partition).is_none() {
            self.assign(topic, partition);
        }
        let Some(state) = self.state(topic, partition) else {
            return Generation::MAX; // unreachable: assigned just above
        };
        state.in_flight.insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |next| next.max(offset + 1)));
        state.generation
    }

    /// The record at `offset` was written or dead-lettered.
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64, generation: Generation) {
        if let Some(state) = self.state(topic, partition)
            && state.generation == generation
        {
            state.in_flight.remove(&offset);
        }
    }

    /// Offsets (next to read) that advanced since the last call, marked as committed.
    pub fn take_commits(&mut self) -> Vec<(String, i32, i64)> {
        self.commits_where(|_, _| true)
    }

    /// Like [`take_commits`](Self::take_commits), only for the given partitions.
    pub fn take_commits_for(&mut self, wanted: &[(String, i32)]) -> Vec<(String, i32, i64)> {
        self.commits_where(|topic, partition| {
            wanted.iter().any(|(t, p)| t == topic && *p == partition)
        })
    }

    fn commits_where(&mut self, wanted: impl Fn(&str, i32) -> bool) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for (topic, partition, state) in self.all() {
            if !wanted(topic, partition) {
                continue;
            }
            if let Some(position) = state.position()
                && state.committed.is_none_or(|done| position > done)
            {
                state.committed = Some(position);
                out.push((topic.to_string(), partition, position));
            }
        }
        out.sort();
        out
    }

    /// Commits handed out by `take_commits` failed: offer them again next time.
    pub fn forget_commits(&mut self, failed: &[(String, i32, i64)]) {
        for (topic, partition, _) in failed {
            if let Some(state) = self.state(topic, *partition) {
                state.committed = None;
            }
        }
    }

    /// Records being written in the given partitions (all partitions when `None`).
    pub fn in_flight(&self, only: Option<&[(String, i32)]>) -> usize {
        self.partitions
            .iter()
            .flat_map(|(topic, partitions)| partitions.iter().map(move |(p, s)| (topic, p, s)))
            .filter(|(topic, partition, _)| {
                only.is_none_or(|wanted| wanted.iter().any(|(t, p)| t == *topic && p == *partition))
            })
            .map(|(_, _, state)| state.in_flight.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_done_prefix() {
        let mut tracker = OffsetTracker::new();
        let tickets: Vec<_> = (10..15)
            .map(|offset| tracker.start("t", 0, offset))
            .collect();
        // Nothing done yet: the position is the first in-flight offset.
        assert_eq!(tracker.take_commits(), [("t".to_string(), 0, 10)]);
        tracker.finish("t", 0, 11, tickets[1]);
        tracker.finish("t", 0, 12, tickets[2]);
        assert_eq!(tracker.take_commits(), [], "10 is not written yet");
        tracker.finish("t", 0, 10, tickets[0]);
        assert_eq!(tracker.take_commits(), [("t".to_string(), 0, 13)]);
        tracker.finish("t", 0, 14, tickets[4]);
        tracker.finish("t", 0, 13, tickets[3]);
        assert_eq!(tracker.take_commits(), [("t".to_string(), 0, 15)]);
        assert_eq!(tracker.take_commits(), [], "nothing new");
    }

    #[test]
    fn partitions_are_independent_and_gaps_are_fine() {
        let mut tracker = OffsetTracker::new();
        let a = tracker.start("t", 0, 5);
        let b = tracker.start("t", 1, 100);
        let c = tracker.start("t", 1, 103); // 101 and 102 were compacted away
        tracker.finish("t", 1, 100, b);
        tracker.finish("t", 1, 103, c);
        assert_eq!(
            tracker.take_commits_for(&[("t".to_string(), 1)]),
            [("t".to_string(), 1, 104)]
        );
        assert_eq!(tracker.in_flight(None), 1);
        tracker.finish("t", 0, 5, a);
        assert_eq!(tracker.take_commits(), [("t".to_string(), 0, 6)]);
    }

    #[test]
    fn a_completion_from_before_a_rebalance_is_ignored() {
        let mut tracker = OffsetTracker::new();
        let old = tracker.start("t", 0, 7);
        tracker.revoke("t", 0);
        tracker.assign("t", 0);
        let new = tracker.start("t", 0, 7); // replayed after the rebalance
        tracker.finish("t", 0, 7, old);
        assert_eq!(
            tracker.in_flight(None),
            1,
            "the old write does not finish the new one"
        );
        tracker.finish("t", 0, 7, new);
        assert_eq!(tracker.take_commits(), [("t".to_string(), 0, 8)]);
    }

    #[test]
    fn failed_commits_are_offered_again() {
        let mut tracker = OffsetTracker::new();
        let ticket = tracker.start("t", 0, 0);
        tracker.finish("t", 0, 0, ticket);
        let commits = tracker.take_commits();
        tracker.forget_commits(&commits);
        assert_eq!(tracker.take_commits(), commits);
    }
}
