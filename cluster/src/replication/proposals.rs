//! The proposals a driver waits on, and how each one's outcome is known.
//!
//! A proposal is placed at a log position: the index it was appended at and the term of
//! the leader that appended it. Raft's log matching property decides its fate: the entry
//! at that index is this proposal exactly when its term is the proposal's term.
//! - Applied as an entry of its own (its id comes back from apply): **applied**.
//! - The replica applied past its index, and the log still holds the entry there:
//!   same term, it is this proposal (applied, possibly through a snapshot that
//!   contained it); another term, another leader's entry took the index: **lost**, and
//!   nothing of it was applied (a retryable conflict).
//! - The replica applied past its index but the entry is no longer in the log (a
//!   snapshot replaced it): whether the proposal made it into that snapshot cannot be
//!   told here: **ambiguous** (SQLSTATE 40003). Declaring it lost, as comparing indexes
//!   alone would, could make a caller retry a write that was applied.
//!
//! The tracker is a pure state machine: the driver feeds it what the store reports.

use std::collections::HashMap;

/// Where a proposal was placed in its group's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The group.
    pub group: u64,
    /// The index it was appended at.
    pub index: u64,
    /// The term of the leader that appended it.
    pub term: u64,
}

/// What became of a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was applied.
    Applied,
    /// Another entry took its place: it was not applied and never will be.
    Lost,
    /// The log no longer tells: it may or may not have been applied.
    Ambiguous,
}

/// Proposals waiting for their outcome, keyed by command id, each with what its
/// waiter needs.
#[derive(Debug)]
pub struct Proposals<W> {
    waiting: HashMap<u64, (Position, W)>,
}

impl<W> Default for Proposals<W> {
    fn default() -> Self {
        Proposals {
            waiting: HashMap::new(),
        }
    }
}

impl<W> Proposals<W> {
    /// Wait on command `id`, proposed at `at`.
    pub fn insert(&mut self, id: u64, at: Position, waiter: W) {
        self.waiting.insert(id, (at, waiter));
    }

    /// Command `id` was applied: its waiter, if this driver proposed it.
    pub fn applied(&mut self, id: u64) -> Option<W> {
        self.waiting.remove(&id).map(|(_, w)| w)
    }

    /// Settle every proposal whose group has applied past its index: `applied(group)`
    /// is the group's applied index, `term_at(group, index)` the term of the entry the
    /// log holds at `index` (`None` when it is gone, replaced by a snapshot).
    pub fn settle(
        &mut self,
        applied: impl Fn(u64) -> u64,
        term_at: impl Fn(u64, u64) -> Option<u64>,
    ) -> Vec<(W, Outcome)> {
        let due: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (at, _))| applied(at.group) >= at.index)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            let (at, w) = self.waiting.remove(&id).expect("listed above");
            let outcome = match term_at(at.group, at.index) {
                Some(t) if t == at.term => Outcome::Applied,
                Some(_) => Outcome::Lost,
                None => Outcome::Ambiguous,
            };
            out.push((w, outcome));
        }
        out
    }

    /// Every waiting proposal, for a driver that stops: none of their outcomes is known.
    pub fn drain(&mut self) -> impl Iterator<Item = W> + '_ {
        self.waiting.drain().map(|(_, (_, w))| w)
    }
}

/// Command ids of one node: unique across the nodes of a cluster (the node id is in the
/// high 16 bits) and across restarts of the node (the low 48 bits start from the boot
/// time in microseconds, which no earlier run of the node can have counted up to unless
/// it proposed more than one command per microsecond).
pub fn first_command_id(node_id: u64, boot_micros: u64) -> u64 {
    (node_id << 48) | (boot_micros & ((1 << 48) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: u64, term: u64) -> Position {
        Position {
            group: 1,
            index,
            term,
        }
    }

    #[test]
    fn an_applied_entry_answers_its_waiter() {
        let mut p = Proposals::default();
        p.insert(7, at(5, 2), "w");
        assert_eq!(p.applied(8), None);
        assert_eq!(p.applied(7), Some("w"));
        assert_eq!(p.applied(7), None);
    }

    #[test]
    fn a_proposal_not_yet_reached_waits() {
        let mut p = Proposals::default();
        p.insert(7, at(5, 2), "w");
        assert!(p.settle(|_| 4, |_, _| Some(2)).is_empty());
        assert_eq!(
            p.settle(|_| 5, |_, _| Some(2)),
            vec![("w", Outcome::Applied)]
        );
    }

    #[test]
    fn another_term_at_the_index_means_lost() {
        let mut p = Proposals::default();
        p.insert(7, at(5, 2), "w");
        assert_eq!(p.settle(|_| 6, |_, _| Some(3)), vec![("w", Outcome::Lost)]);
    }

    /// A snapshot that moved the applied index past the proposal, with the entry gone
    /// from the log: nobody can tell whether the snapshot held it.
    #[test]
    fn a_proposal_passed_by_a_snapshot_is_ambiguous() {
        let mut p = Proposals::default();
        p.insert(7, at(5, 2), "w");
        assert_eq!(
            p.settle(|_| 100, |_, _| None),
            vec![("w", Outcome::Ambiguous)]
        );
    }

    /// The entry is still in the log with the proposal's term: it is this proposal,
    /// applied (through a snapshot that contained it, since no apply reported it).
    #[test]
    fn the_same_term_at_the_index_means_applied() {
        let mut p = Proposals::default();
        p.insert(7, at(5, 2), "w");
        assert_eq!(
            p.settle(|_| 9, |_, _| Some(2)),
            vec![("w", Outcome::Applied)]
        );
    }

    #[test]
    fn command_ids_differ_across_nodes_and_restarts() {
        let a = first_command_id(1, 1_000_000);
        let b = first_command_id(2, 1_000_000);
        assert_ne!(a >> 48, b >> 48);
        // A later boot of node 1 starts above every id its earlier boot used, as long
        // as that boot proposed fewer commands than microseconds passed.
        let later = first_command_id(1, 1_000_000 + 5_000);
        assert!(later > a + 4_999);
    }
}
