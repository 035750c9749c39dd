//! Requests that cross nodes: where a request must be served, sending it to the
//! leaseholder, and serving another node's request (see [`crate::remote`]).

use tessera_storage::Timestamp;

use super::tablet::Tablet;
use super::{Commit, CommitPart, Store};
use crate::remote::{self, KvRequest, KvResponse};
use crate::{Error, Result};

impl Store {
    /// Whether this node holds `t`'s lease now (no waiting for an election).
    pub(super) fn leads_here(t: &Tablet) -> bool {
        t.replicator
            .as_ref()
            .is_none_or(|r| r.leader() == Some(r.node_id()))
    }
}

/// How long a request waits for a tablet without a leaseholder to elect one.
const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Store {
    /// Where requests for `t` must go: `None` to serve them here, or the leaseholder's
    /// node id.
    pub(super) fn forward_to(&self, t: &Tablet) -> Result<Option<u64>> {
        let Some(r) = &t.replicator else {
            return Ok(None);
        };
        // An election is under way (a tablet a split just made elects its first
        // leader): wait for it a little, then let the statement be retried.
        let mut leader = r.leader();
        if leader.is_none() {
            r.wait_until(ELECTION_WAIT, &mut || {
                leader = r.leader();
                leader.is_some()
            });
        }
        match leader {
            Some(l) if l == r.node_id() => Ok(None),
            Some(l) => Ok(Some(l)),
            None => Err(Error::Conflict {
                key: Vec::new(),
                reason: "the tablet has no leaseholder at the moment; retry".into(),
            }),
        }
    }

    /// Send a request to the leaseholder `node`, carrying this node's clock and ratcheting
    /// it past the answer's. A lease that moved on the way is retryable; a lost answer
    /// leaves a commit's outcome unknown.
    pub(super) fn forward(&self, node: u64, req: KvRequest) -> Result<KvResponse> {
        let peers = self
            .peers
            .read()
            .clone()
            .ok_or(Error::NotLeaseholder { leader: Some(node) })?;
        let is_commit = matches!(req, KvRequest::Commit { .. });
        let message = remote::seal(self.clock.now(), &req);
        let answer = match peers.call(node, &message) {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotLeaseholder { leader: Some(node) })
            }
            Err(e) if is_commit => {
                return Err(Error::Ambiguous(format!(
                    "lost contact with the leaseholder (node {node}): {e}"
                )))
            }
            Err(e) => {
                return Err(Error::Conflict {
                    key: Vec::new(),
                    reason: format!("lost contact with the leaseholder (node {node}): {e}"),
                })
            }
        };
        let (clock, response) = remote::open::<KvResponse>(&answer)?;
        self.clock.update(clock);
        match response {
            KvResponse::Failed(e) => match Error::from(e) {
                Error::NotLeaseholder { .. } => Err(Error::Conflict {
                    key: Vec::new(),
                    reason: "the tablet's lease moved; retry".into(),
                }),
                e => Err(e),
            },
            other => Ok(other),
        }
    }

    /// Serve a KV request from another node (this node holds the lease, or says it
    /// does not). A forwarded read waits for commits in flight, moves the clock past its
    /// timestamp so later commits land above it, and confirms the lease.
    pub fn serve_remote(&self, message: &[u8]) -> Vec<u8> {
        let answer = (|| -> Result<KvResponse> {
            let (sender_clock, request) = remote::open::<KvRequest>(message)?;
            let ahead = sender_clock
                .wall
                .saturating_sub(self.clock.physical_nanos());
            if ahead > self.config.max_clock_offset_nanos {
                tracing::error!(
                    ahead_ms = ahead / 1_000_000,
                    "refusing a request from a node whose clock is ahead by more than the maximum offset"
                );
                return Err(Error::Raft(format!(
                    "the sender's clock is {} ms ahead of this node's, more than the maximum offset of {} ms",
                    ahead / 1_000_000,
                    self.config.max_clock_offset_nanos / 1_000_000
                )));
            }
            self.clock.update(sender_clock);
            Ok(match request {
                KvRequest::Read {
                    txn,
                    read_ts,
                    uncertainty_limit,
                    observed,
                    read,
                    track,
                } => {
                    let t = self.tablets.for_key(read.first_key());
                    if let Some(r) = &t.replicator {
                        r.read_barrier()?;
                    }
                    let now = {
                        let _chosen = self.ts_choice.lock();
                        self.clock.update(read_ts);
                        self.clock.now()
                    };
                    // A first visit observes this clock now; later ones bring theirs.
                    let observed = if observed == Timestamp::ZERO {
                        now
                    } else {
                        observed
                    };
                    let answer = self.read_local(
                        &t,
                        txn,
                        read_ts,
                        self.uncertainty_limit(&t, uncertainty_limit, observed),
                        &read,
                        track,
                    )?;
                    KvResponse::Read { answer, observed }
                }
                KvRequest::Flush {
                    txn,
                    anchor,
                    read_ts,
                    writes,
                } => {
                    let first = writes.keys().next().map_or(&[][..], |k| k.as_slice());
                    let t = self.tablets.for_key(first);
                    self.clock.update(read_ts);
                    let ts = self.flush_intents_local(&t, txn, &anchor, read_ts, &writes)?;
                    KvResponse::Flushed(ts)
                }
                KvRequest::Commit {
                    txn,
                    read_ts,
                    reads,
                    writes,
                    flushed,
                    record,
                    at,
                    staging,
                } => {
                    self.clock.update(read_ts);
                    let t = match (&record, writes.keys().chain(flushed.iter()).next()) {
                        (Some(anchor), _) => self.record_tablet(anchor),
                        (None, Some(first)) => self.tablets.for_key(first),
                        (None, None) => self.tablets.first(),
                    };
                    let part = CommitPart {
                        txn,
                        read_ts,
                        reads: &reads,
                        writes: &writes,
                        flushed: &flushed,
                        record: record.as_deref(),
                        staging: staging.as_ref().map(|(a, k)| (a.as_slice(), k.as_slice())),
                    };
                    match self.commit_local(&t, &part, at)? {
                        Commit::Committed(ts) => KvResponse::Committed(ts),
                        Commit::Pushed(ts) => KvResponse::Pushed(ts),
                    }
                }
                KvRequest::Refresh {
                    txn,
                    read_ts,
                    to,
                    spans,
                } => {
                    let first = spans.first().map_or(&[][..], |(a, _)| a.as_slice());
                    let t = self.tablets.for_key(first);
                    self.clock.update(to);
                    self.refresh_local(&t, txn, read_ts, to, &spans)?;
                    KvResponse::Done
                }
                KvRequest::Abort {
                    txn,
                    anchor,
                    flushed,
                } => {
                    let t = self.record_tablet(&anchor);
                    match self.abort_local(&t, txn, &anchor, &flushed)? {
                        Some(ts) => KvResponse::Committed(ts),
                        None => KvResponse::Done,
                    }
                }
                KvRequest::Heartbeat { txn, anchor } => {
                    let t = self.record_tablet(&anchor);
                    self.heartbeat_local(&t, txn, &anchor)?;
                    KvResponse::Done
                }
                KvRequest::Push { txn, anchor, push } => {
                    let t = self.record_tablet(&anchor);
                    if self.forward_to(&t)?.is_some() {
                        return Err(Error::NotLeaseholder {
                            leader: t.replicator.as_ref().and_then(|r| r.leader()),
                        });
                    }
                    KvResponse::Status(self.push_local(&t, txn, &anchor, push)?)
                }
                KvRequest::QueryIntents { txn, keys, at } => {
                    let first = keys.first().map_or(&[][..], |k| k.as_slice());
                    let t = self.tablets.for_key(first);
                    self.clock.update(at);
                    KvResponse::Found(self.query_intents_local(&t, txn, at, &keys)?)
                }
                KvRequest::Recover {
                    txn,
                    anchor,
                    staging,
                    commit,
                } => {
                    let t = self.record_tablet(&anchor);
                    if self.forward_to(&t)?.is_some() {
                        return Err(Error::NotLeaseholder {
                            leader: t.replicator.as_ref().and_then(|r| r.leader()),
                        });
                    }
                    KvResponse::Status(self.recover_local(&t, txn, &anchor, staging, commit)?)
                }
                KvRequest::Record { txn, anchor } => {
                    let t = self.record_tablet(&anchor);
                    if self.forward_to(&t)?.is_some() {
                        return Err(Error::NotLeaseholder {
                            leader: t.replicator.as_ref().and_then(|r| r.leader()),
                        });
                    }
                    let r = self.record_local(&t, txn, &anchor)?;
                    KvResponse::Record {
                        status: r.status,
                        expired: r.expired,
                        in_flight: r.in_flight,
                    }
                }
                KvRequest::Resolve {
                    txn,
                    keys,
                    commit_ts,
                } => {
                    let first = keys.first().map_or(&[][..], |k| k.as_slice());
                    let t = self.tablets.for_key(first);
                    self.resolve(&t, txn, &keys, commit_ts)?;
                    KvResponse::Done
                }
                KvRequest::Split { key } => {
                    let d = self.split_at(&key, false)?;
                    KvResponse::Split {
                        range_id: d.range_id,
                        start: d.start,
                        end: d.end,
                        generation: d.generation,
                    }
                }
                KvRequest::AllocateRangeId => {
                    let t = self.tablets.first();
                    if self.forward_to(&t)?.is_some() {
                        return Err(Error::NotLeaseholder {
                            leader: t.replicator.as_ref().and_then(|r| r.leader()),
                        });
                    }
                    KvResponse::RangeId(self.allocate_range_id_local(&t)?)
                }
            })
        })();
        let answer = match answer {
            Ok(a) => a,
            Err(e) => KvResponse::Failed(e.into()),
        };
        remote::seal(self.clock.now(), &answer)
    }
}
