//! KV requests from a gateway node to the leaseholder.
//!
//! A node that does not hold the tablet's lease still serves SQL: its store sends each
//! KV operation (read, intent flush, commit, abort, heartbeat) to the leaseholder, whose
//! store evaluates it exactly as for a local transaction (latches, timestamp cache,
//! validation, Raft). The gateway keeps the transaction's buffer, read spans and
//! `read_ts`.
//!
//! ```text
//!   frame    = see crate::frame (length, checksum, body; bounded)
//!   message  = Message { sender's clock, body: KvRequest | KvResponse }   (postcard)
//! ```
//!
//! Messages are typed and encoded by serde's derive with postcard; a message that does
//! not decode completely (truncated, trailing bytes, unknown variant) is refused.
//!
//! Every message carries its sender's hybrid-logical-clock reading and the receiver
//! ratchets its own clock past it (DESIGN.md §5), so a timestamp handed out after a
//! message arrives is above every timestamp the sender had handed out before sending.
//! A receiver refuses a request whose sender's clock is ahead of its own physical clock
//! by more than the maximum offset: one of the two clocks is broken.
//!
//! A leaseholder serving a remote read first confirms its lease (Raft ReadIndex),
//! ratchets its clock to the reader's `read_ts` and waits for commits in flight on the
//! keys it reads (latches), so the snapshot at `read_ts` is stable and current. It answers with a
//! reading of its clock (the *observed* timestamp): every write it commits later is
//! above that reading, so the reader's uncertainty interval on this node ends there. A
//! commit whose answer is lost in transit has an unknown outcome (`Ambiguous`, SQLSTATE
//! 40003).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tessera_storage::mvcc::TxnStatus;
use tessera_storage::Timestamp;

use crate::store::Push;
use crate::{frame, Error, Result};

/// What a read on one tablet asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Read {
    /// Up to `limit` visible entries of `[start, end)`, in key order.
    Span {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u64,
    },
    /// The visible value of each key (ascending, all on the tablet).
    Keys(Vec<Vec<u8>>),
}

impl Read {
    /// The first key the read touches (the tablet that serves it owns it).
    pub(crate) fn first_key(&self) -> &[u8] {
        match self {
            Read::Span { start, .. } => start,
            Read::Keys(keys) => keys.first().map_or(&[], Vec::as_slice),
        }
    }
}

/// The answer to a [`Read`], in the same shape.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ReadAnswer {
    Rows(Vec<(Vec<u8>, Vec<u8>)>),
    /// One value per requested key, in the order asked.
    Values(Vec<Option<Vec<u8>>>),
}

/// One KV operation sent to the leaseholder.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KvRequest {
    /// A read on one tablet: a span or a set of keys.
    Read {
        txn: u128,
        read_ts: Timestamp,
        /// Committed writes in `(read_ts, uncertainty_limit]` make the read uncertain...
        uncertainty_limit: Timestamp,
        /// ...up to the reading of the leaseholder's clock the transaction already
        /// observed (zero: none yet; the leaseholder observes its clock now).
        observed: Timestamp,
        read: Read,
        track: bool,
    },
    Flush {
        txn: u128,
        /// Where the transaction's record is anchored.
        anchor: Vec<u8>,
        read_ts: Timestamp,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    },
    Commit {
        txn: u128,
        read_ts: Timestamp,
        reads: Vec<(Vec<u8>, Vec<u8>)>,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        flushed: Vec<Vec<u8>>,
        /// The anchor of the transaction's record when that record lies on this tablet
        /// and is to be marked committed (or staging).
        record: Option<Vec<u8>>,
        /// The fixed commit timestamp when reads on other tablets were refreshed to it.
        at: Option<Timestamp>,
        /// Stage instead of commit: the writes become intents at `at` naming the
        /// record's anchor (the first element), and the record (with `record`) becomes
        /// STAGING listing these writes (the second) in flight elsewhere.
        staging: Option<(Vec<u8>, Vec<Vec<u8>>)>,
    },
    /// Whether `keys` (one tablet's) hold `txn`'s intents at or below `at`; a key that
    /// does not is recorded as read at `at`, so no such intent can appear there later.
    QueryIntents {
        txn: u128,
        keys: Vec<Vec<u8>>,
        at: Timestamp,
    },
    /// Move a STAGING record at `staging` to COMMITTED at it (`commit`) or to ABORTED;
    /// any other record is left alone. Answers the status left.
    Recover {
        txn: u128,
        anchor: Vec<u8>,
        staging: Timestamp,
        commit: bool,
    },
    /// A transaction's record as its leaseholder has it.
    Record { txn: u128, anchor: Vec<u8> },
    /// Check reads of `spans` over `(read_ts, to]` and record them as read at `to`.
    Refresh {
        txn: u128,
        read_ts: Timestamp,
        to: Timestamp,
        spans: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Abort {
        txn: u128,
        anchor: Vec<u8>,
        flushed: Vec<Vec<u8>>,
    },
    /// Renew the heartbeat of a pending transaction's record (creating it if absent).
    Heartbeat { txn: u128, anchor: Vec<u8> },
    /// Push a transaction through its record (sent to the record's leaseholder).
    Push {
        txn: u128,
        anchor: Vec<u8>,
        push: Push,
    },
    /// Resolve `txn`'s intents on `keys` (one tablet's): committed at the timestamp, or
    /// removed.
    Resolve {
        txn: u128,
        keys: Vec<Vec<u8>>,
        commit_ts: Option<Timestamp>,
    },
    /// Split the tablet holding `key` at `key` (sent to that tablet's leaseholder).
    Split { key: Vec<u8> },
    /// Hand out a new range id (sent to the first tablet's leaseholder).
    AllocateRangeId,
}

/// The leaseholder's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum KvResponse {
    /// What was read, and the leaseholder's clock reading taken before it read it.
    Read {
        answer: ReadAnswer,
        observed: Timestamp,
    },
    Done,
    /// Intents written; the highest timestamp among them.
    Flushed(Timestamp),
    /// A transaction's status, as its record says.
    Status(TxnStatus),
    /// Whether every queried key holds the intent.
    Found(bool),
    /// A record: its status, whether its coordinator has been silent for longer than
    /// the expiry, and (STAGING) its writes in flight.
    Record {
        status: TxnStatus,
        expired: bool,
        in_flight: Vec<Vec<u8>>,
    },
    Committed(Timestamp),
    /// Not committed: a commit at a fixed timestamp would have to move up to this one.
    Pushed(Timestamp),
    /// The tablet that starts at the split key.
    Split {
        range_id: u64,
        start: Vec<u8>,
        end: Vec<u8>,
        generation: u64,
    },
    RangeId(u64),
    Failed(WireError),
}

/// An error as it travels between nodes: the kinds a gateway acts on keep their
/// structure, every other one its message.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireError {
    Conflict {
        key: Vec<u8>,
        reason: String,
    },
    TooOld {
        read_ts: Timestamp,
        threshold: Timestamp,
    },
    NotLeaseholder {
        leader: Option<u64>,
    },
    Ambiguous(String),
    Uncertain {
        key: Vec<u8>,
        ts: Timestamp,
    },
    RangeKeyMismatch {
        key: Vec<u8>,
    },
    Unsettled {
        txn: u128,
        anchor: Vec<u8>,
    },
    Unsupported(String),
    Other(String),
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        match e {
            Error::Conflict { key, reason } => WireError::Conflict { key, reason },
            Error::TooOld { read_ts, threshold } => WireError::TooOld { read_ts, threshold },
            Error::NotLeaseholder { leader } => WireError::NotLeaseholder { leader },
            Error::Ambiguous(m) => WireError::Ambiguous(m),
            Error::Uncertain { key, ts } => WireError::Uncertain { key, ts },
            Error::RangeKeyMismatch { key } => WireError::RangeKeyMismatch { key },
            Error::Unsettled { txn, anchor } => WireError::Unsettled { txn, anchor },
            Error::Unsupported(m) => WireError::Unsupported(m),
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Conflict { key, reason } => Error::Conflict { key, reason },
            WireError::TooOld { read_ts, threshold } => Error::TooOld { read_ts, threshold },
            WireError::NotLeaseholder { leader } => Error::NotLeaseholder { leader },
            WireError::Ambiguous(m) => Error::Ambiguous(m),
            WireError::Uncertain { key, ts } => Error::Uncertain { key, ts },
            WireError::RangeKeyMismatch { key } => Error::RangeKeyMismatch { key },
            WireError::Unsettled { txn, anchor } => Error::Unsettled { txn, anchor },
            WireError::Unsupported(m) => Error::Unsupported(m),
            WireError::Other(m) => Error::Raft(m),
        }
    }
}

/// A message between nodes: the sender's clock reading and a body.
#[derive(Serialize, Deserialize)]
struct Message<T> {
    clock: Timestamp,
    body: T,
}

/// Encode `body` with the sender's clock reading.
pub(crate) fn seal<T: Serialize>(clock: Timestamp, body: T) -> Vec<u8> {
    postcard::to_stdvec(&Message { clock, body }).expect("KV messages always encode")
}

/// Decode a message into the sender's clock reading and the body; anything but one
/// complete message is refused.
pub(crate) fn open<T: DeserializeOwned>(message: &[u8]) -> Result<(Timestamp, T)> {
    let bad = |why: String| Error::Raft(format!("malformed KV message: {why}"));
    let (m, rest): (Message<T>, _) =
        postcard::take_from_bytes(message).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the message", rest.len())));
    }
    Ok((m.clock, m.body))
}

/// How a store reaches the KV service of other nodes: one request message in, its
/// answer out. A node the caller cannot address is `ErrorKind::NotFound`; every other
/// error means the request may or may not have arrived.
pub trait KvPeers: Send + Sync {
    /// Send `message` to node `node` and wait for its answer.
    fn call(&self, node: u64, message: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// Finds another node's address by id (`None`: unknown or unreachable).
pub type PeerResolver = std::sync::Arc<dyn Fn(u64) -> Option<SocketAddr> + Send + Sync>;

/// [`KvPeers`] over TCP: node addresses from a resolver, pooled connections.
pub struct TcpPeers {
    resolve: PeerResolver,
    client: KvClient,
}

impl TcpPeers {
    /// Peers found through `resolve`, reached from this node's address `local_ip`.
    pub fn new(local_ip: std::net::IpAddr, resolve: PeerResolver) -> Self {
        TcpPeers {
            resolve,
            client: KvClient {
                local_ip,
                pool: Mutex::default(),
                returned: Condvar::new(),
            },
        }
    }
}

impl KvPeers for TcpPeers {
    fn call(&self, node: u64, message: &[u8]) -> std::io::Result<Vec<u8>> {
        let addr = (self.resolve)(node).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no address for node {node}"),
            )
        })?;
        self.client.call(addr, message)
    }
}

/// Connections to other nodes' KV service, reused between calls, at most
/// [`MAX_CONNECTIONS_PER_PEER`] to each (a caller waits for one to come free), so
/// that a busy gateway stays far below a peer's connection limit: a connection the
/// peer refuses could not tell a refused commit from a lost answer.
struct KvClient {
    /// The address connections are opened from.
    local_ip: std::net::IpAddr,
    pool: Mutex<HashMap<SocketAddr, PeerConnections>>,
    returned: Condvar,
}

#[derive(Default)]
struct PeerConnections {
    idle: Vec<TcpStream>,
    open: usize,
}

/// Most KV connections a node opens to one peer.
const MAX_CONNECTIONS_PER_PEER: usize = 64;

/// The byte that opens a KV connection on the node's RPC listener.
pub(crate) const KV_STREAM: u8 = b'K';
/// The largest answer a gateway reads (a page of scanned rows can be large).
const MAX_ANSWER: usize = 256 << 20;

impl KvClient {
    /// Send one message to the node at `addr` and wait for its answer.
    fn call(&self, addr: SocketAddr, message: &[u8]) -> std::io::Result<Vec<u8>> {
        let pooled = {
            let mut pool = self.pool.lock();
            loop {
                let peer = pool.entry(addr).or_default();
                if let Some(c) = peer.idle.pop() {
                    break Some(c);
                }
                if peer.open < MAX_CONNECTIONS_PER_PEER {
                    peer.open += 1;
                    break None;
                }
                self.returned.wait(&mut pool);
            }
        };
        let result = (|| {
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let c = crate::replication::tcp::connect_from(
                        addr,
                        self.local_ip,
                        Duration::from_secs(2),
                        KV_STREAM,
                    )?;
                    c.set_read_timeout(Some(Duration::from_secs(30)))?;
                    c
                }
            };
            frame::write_frame(&mut conn, message)?;
            let answer = frame::read_frame(&mut conn, MAX_ANSWER)?;
            Ok((conn, answer))
        })();
        let mut pool = self.pool.lock();
        let peer = pool.entry(addr).or_default();
        let answer = match result {
            Ok((conn, answer)) => {
                peer.idle.push(conn);
                Ok(answer)
            }
            Err(e) => {
                peer.open -= 1;
                Err(e)
            }
        };
        self.returned.notify_one();
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reject_garbage() {
        let mut writes = BTreeMap::new();
        writes.insert(b"k".to_vec(), Some(b"v".to_vec()));
        writes.insert(b"gone".to_vec(), None);
        let reqs = [
            KvRequest::Read {
                txn: 7 << 70,
                read_ts: Timestamp::new(5, 1),
                uncertainty_limit: Timestamp::new(9, 0),
                observed: Timestamp::new(8, 2),
                read: Read::Span {
                    start: b"a".to_vec(),
                    end: b"z".to_vec(),
                    limit: 10,
                },
                track: true,
            },
            KvRequest::Read {
                txn: 7,
                read_ts: Timestamp::new(5, 1),
                uncertainty_limit: Timestamp::new(9, 0),
                observed: Timestamp::ZERO,
                read: Read::Keys(vec![b"a".to_vec(), b"q".to_vec()]),
                track: false,
            },
            KvRequest::Commit {
                txn: 3,
                read_ts: Timestamp::new(9, 0),
                reads: vec![(b"a".to_vec(), b"b".to_vec())],
                writes: writes.clone(),
                flushed: vec![b"f".to_vec()],
                record: Some(b"f".to_vec()),
                at: Some(Timestamp::new(10, 0)),
                staging: Some((b"f".to_vec(), vec![b"g".to_vec()])),
            },
            KvRequest::QueryIntents {
                txn: 3,
                keys: vec![b"g".to_vec()],
                at: Timestamp::new(10, 0),
            },
            KvRequest::Recover {
                txn: 3,
                anchor: b"f".to_vec(),
                staging: Timestamp::new(10, 0),
                commit: true,
            },
            KvRequest::Refresh {
                txn: 3,
                read_ts: Timestamp::new(9, 0),
                to: Timestamp::new(10, 0),
                spans: vec![(b"c".to_vec(), b"d".to_vec())],
            },
            KvRequest::Flush {
                txn: 4,
                anchor: b"gone".to_vec(),
                read_ts: Timestamp::new(1, 2),
                writes,
            },
            KvRequest::Abort {
                txn: 5,
                anchor: Vec::new(),
                flushed: vec![],
            },
            KvRequest::Heartbeat {
                txn: 6 << 80,
                anchor: b"\0".to_vec(),
            },
            KvRequest::Push {
                txn: 8,
                anchor: b"a".to_vec(),
                push: Push::Timestamp(Timestamp::new(12, 1)),
            },
            KvRequest::Push {
                txn: 8,
                anchor: b"a".to_vec(),
                push: Push::Abort(Timestamp::new(4, 0)),
            },
            KvRequest::Resolve {
                txn: 9,
                keys: vec![b"k".to_vec()],
                commit_ts: Some(Timestamp::new(13, 0)),
            },
        ];
        for r in reqs {
            let b = seal(Timestamp::new(11, 3), &r);
            let (clock, back): (Timestamp, KvRequest) = open(&b).unwrap();
            assert_eq!((clock, &back), (Timestamp::new(11, 3), &r));
            for cut in 0..b.len() {
                assert!(open::<KvRequest>(&b[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert!(open::<KvRequest>(&longer).is_err());
        }
        let e = Error::Conflict {
            key: b"k".to_vec(),
            reason: "r".into(),
        };
        let b = seal(Timestamp::ZERO, KvResponse::Failed(e.into()));
        match open::<KvResponse>(&b).unwrap().1 {
            KvResponse::Failed(w) => match Error::from(w) {
                Error::Conflict { key, reason } => {
                    assert_eq!((key, reason.as_str()), (b"k".to_vec(), "r"))
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        // An unknown variant tag.
        assert!(open::<KvRequest>(&[0, 0, 0x7f]).is_err());
    }
}
