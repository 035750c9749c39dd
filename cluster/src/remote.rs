//! KV requests from a gateway node to the leaseholder.
//!
//! A node that does not hold the tablet's lease still serves SQL: its store sends each
//! KV operation (scan, intent flush, commit, abort) to the leaseholder, whose store
//! evaluates it exactly as for a local transaction (latch, timestamp cache, validation,
//! Raft). The gateway keeps the transaction's buffer, read spans and `read_ts`.
//!
//! ```text
//!   frame    = see crate::frame (length, checksum, body; bounded)
//!   message  = sender's clock ts, body   (every request and every response)
//!   request  = kind u8, fields...        response = kind u8, fields...
//!   bytes    = len u32 BE, bytes         ts = wall u64 BE, logical u32 BE
//! ```
//!
//! Every message carries its sender's hybrid-logical-clock reading and the receiver
//! ratchets its own clock past it (DESIGN.md §5), so a timestamp handed out after a
//! message arrives is above every timestamp the sender had handed out before sending.
//! A receiver refuses a request whose sender's clock is ahead of its own physical clock
//! by more than the maximum offset: one of the two clocks is broken.
//!
//! A leaseholder serving a remote scan first waits for commits in flight (the commit
//! latch), ratchets its clock to the reader's `read_ts`, and confirms its lease (Raft
//! ReadIndex), so the snapshot at `read_ts` is stable and current. It answers with the
//! clock reading it took under the latch (the *observed* timestamp): every write it
//! commits later is above that reading, so the reader's uncertainty interval on this
//! node ends there. A commit whose answer is lost in transit has an unknown outcome
//! (`Ambiguous`, SQLSTATE 40003).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tessera_storage::Timestamp;

use crate::{frame, Error, Result};

/// One KV operation sent to the leaseholder.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KvRequest {
    Scan {
        txn: u128,
        read_ts: Timestamp,
        /// Committed writes in `(read_ts, uncertainty_limit]` make the read uncertain...
        uncertainty_limit: Timestamp,
        /// ...up to the reading of the leaseholder's clock the transaction already
        /// observed (zero: none yet; the leaseholder observes its clock now).
        observed: Timestamp,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u64,
        track: bool,
    },
    Flush {
        txn: u128,
        read_ts: Timestamp,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    },
    Commit {
        txn: u128,
        read_ts: Timestamp,
        reads: Vec<(Vec<u8>, Vec<u8>)>,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        flushed: Vec<Vec<u8>>,
    },
    Abort {
        txn: u128,
        flushed: Vec<Vec<u8>>,
    },
    /// Renew the heartbeat of a pending transaction's record.
    Heartbeat {
        txn: u128,
    },
}

/// The leaseholder's answer.
#[derive(Debug)]
pub(crate) enum KvResponse {
    /// The rows, and the leaseholder's clock reading taken before it read them.
    Rows {
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        observed: Timestamp,
    },
    Done,
    Committed(Timestamp),
    Failed(Error),
}

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn ts(&mut self, t: Timestamp) {
        self.u64(t.wall);
        self.0.extend_from_slice(&t.logical.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    fn opt(&mut self, b: &Option<Vec<u8>>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
    fn pairs(&mut self, p: &[(Vec<u8>, Vec<u8>)]) {
        self.u64(p.len() as u64);
        for (a, b) in p {
            self.bytes(a);
            self.bytes(b);
        }
    }
    fn list(&mut self, l: &[Vec<u8>]) {
        self.u64(l.len() as u64);
        for b in l {
            self.bytes(b);
        }
    }
    fn writes(&mut self, w: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        self.u64(w.len() as u64);
        for (k, v) in w {
            self.bytes(k);
            self.opt(v);
        }
    }
}

struct In<'a>(&'a [u8]);

fn bad() -> Error {
    Error::Raft("malformed KV message".into())
}

impl In<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(bad());
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u128(&mut self) -> Result<u128> {
        Ok(u128::from_be_bytes(self.take(16)?.try_into().expect("16")))
    }
    fn ts(&mut self) -> Result<Timestamp> {
        let wall = self.u64()?;
        Ok(Timestamp::new(wall, self.u32()?))
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| bad())
    }
    fn opt(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.bytes()?),
        })
    }
    fn count(&mut self) -> Result<usize> {
        let n = self.u64()? as usize;
        // Every element takes at least 4 bytes: a count beyond that is corrupt.
        if n > self.0.len() / 4 + 1 {
            return Err(bad());
        }
        Ok(n)
    }
    fn pairs(&mut self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        (0..self.count()?)
            .map(|_| Ok((self.bytes()?, self.bytes()?)))
            .collect()
    }
    fn list(&mut self) -> Result<Vec<Vec<u8>>> {
        (0..self.count()?).map(|_| self.bytes()).collect()
    }
    fn writes(&mut self) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
        (0..self.count()?)
            .map(|_| Ok((self.bytes()?, self.opt()?)))
            .collect()
    }
    fn done(&self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    }
}

impl KvRequest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut o = Out::default();
        match self {
            KvRequest::Scan {
                txn,
                read_ts,
                uncertainty_limit,
                observed,
                start,
                end,
                limit,
                track,
            } => {
                o.u8(1);
                o.u128(*txn);
                o.ts(*read_ts);
                o.ts(*uncertainty_limit);
                o.ts(*observed);
                o.bytes(start);
                o.bytes(end);
                o.u64(*limit);
                o.u8(*track as u8);
            }
            KvRequest::Flush {
                txn,
                read_ts,
                writes,
            } => {
                o.u8(2);
                o.u128(*txn);
                o.ts(*read_ts);
                o.writes(writes);
            }
            KvRequest::Commit {
                txn,
                read_ts,
                reads,
                writes,
                flushed,
            } => {
                o.u8(3);
                o.u128(*txn);
                o.ts(*read_ts);
                o.pairs(reads);
                o.writes(writes);
                o.list(flushed);
            }
            KvRequest::Abort { txn, flushed } => {
                o.u8(4);
                o.u128(*txn);
                o.list(flushed);
            }
            KvRequest::Heartbeat { txn } => {
                o.u8(5);
                o.u128(*txn);
            }
        }
        o.0
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        let mut i = In(b);
        let r = match i.u8()? {
            1 => KvRequest::Scan {
                txn: i.u128()?,
                read_ts: i.ts()?,
                uncertainty_limit: i.ts()?,
                observed: i.ts()?,
                start: i.bytes()?,
                end: i.bytes()?,
                limit: i.u64()?,
                track: i.u8()? != 0,
            },
            2 => KvRequest::Flush {
                txn: i.u128()?,
                read_ts: i.ts()?,
                writes: i.writes()?,
            },
            3 => KvRequest::Commit {
                txn: i.u128()?,
                read_ts: i.ts()?,
                reads: i.pairs()?,
                writes: i.writes()?,
                flushed: i.list()?,
            },
            4 => KvRequest::Abort {
                txn: i.u128()?,
                flushed: i.list()?,
            },
            5 => KvRequest::Heartbeat { txn: i.u128()? },
            _ => return Err(bad()),
        };
        i.done()?;
        Ok(r)
    }
}

impl KvResponse {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut o = Out::default();
        match self {
            KvResponse::Rows { rows, observed } => {
                o.u8(1);
                o.pairs(rows);
                o.ts(*observed);
            }
            KvResponse::Done => o.u8(2),
            KvResponse::Committed(ts) => {
                o.u8(3);
                o.ts(*ts);
            }
            KvResponse::Failed(e) => {
                o.u8(4);
                match e {
                    Error::Conflict { key, reason } => {
                        o.u8(1);
                        o.bytes(key);
                        o.bytes(reason.as_bytes());
                    }
                    Error::TooOld { read_ts, threshold } => {
                        o.u8(2);
                        o.ts(*read_ts);
                        o.ts(*threshold);
                    }
                    Error::NotLeaseholder { leader } => {
                        o.u8(3);
                        o.u64(leader.unwrap_or(0));
                    }
                    Error::Ambiguous(m) => {
                        o.u8(4);
                        o.bytes(m.as_bytes());
                    }
                    Error::Uncertain { key, ts } => {
                        o.u8(6);
                        o.bytes(key);
                        o.ts(*ts);
                    }
                    other => {
                        o.u8(5);
                        o.bytes(other.to_string().as_bytes());
                    }
                }
            }
        }
        o.0
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        let mut i = In(b);
        let r = match i.u8()? {
            1 => KvResponse::Rows {
                rows: i.pairs()?,
                observed: i.ts()?,
            },
            2 => KvResponse::Done,
            3 => KvResponse::Committed(i.ts()?),
            4 => KvResponse::Failed(match i.u8()? {
                1 => Error::Conflict {
                    key: i.bytes()?,
                    reason: i.string()?,
                },
                2 => Error::TooOld {
                    read_ts: i.ts()?,
                    threshold: i.ts()?,
                },
                3 => Error::NotLeaseholder {
                    leader: Some(i.u64()?).filter(|l| *l != 0),
                },
                4 => Error::Ambiguous(i.string()?),
                6 => Error::Uncertain {
                    key: i.bytes()?,
                    ts: i.ts()?,
                },
                _ => Error::Raft(i.string()?),
            }),
            _ => return Err(bad()),
        };
        i.done()?;
        Ok(r)
    }
}

/// Wrap a message body with the sender's clock reading.
pub(crate) fn seal(clock: Timestamp, body: &[u8]) -> Vec<u8> {
    let mut o = Out::default();
    o.ts(clock);
    o.0.extend_from_slice(body);
    o.0
}

/// Split a message into the sender's clock reading and the body.
pub(crate) fn open(message: &[u8]) -> Result<(Timestamp, &[u8])> {
    let mut i = In(message);
    let clock = i.ts()?;
    Ok((clock, i.0))
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
    /// Peers found through `resolve`.
    pub fn new(resolve: PeerResolver) -> Self {
        TcpPeers {
            resolve,
            client: KvClient::default(),
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
#[derive(Default)]
struct KvClient {
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
                    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                    c.set_nodelay(true)?;
                    c.set_read_timeout(Some(Duration::from_secs(30)))?;
                    (&c).write_all(&[KV_STREAM])?;
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
            KvRequest::Scan {
                txn: 7 << 70,
                read_ts: Timestamp::new(5, 1),
                uncertainty_limit: Timestamp::new(9, 0),
                observed: Timestamp::new(8, 2),
                start: b"a".to_vec(),
                end: b"z".to_vec(),
                limit: 10,
                track: true,
            },
            KvRequest::Commit {
                txn: 3,
                read_ts: Timestamp::new(9, 0),
                reads: vec![(b"a".to_vec(), b"b".to_vec())],
                writes: writes.clone(),
                flushed: vec![b"f".to_vec()],
            },
            KvRequest::Flush {
                txn: 4,
                read_ts: Timestamp::new(1, 2),
                writes,
            },
            KvRequest::Abort {
                txn: 5,
                flushed: vec![],
            },
            KvRequest::Heartbeat { txn: 6 << 80 },
        ];
        for r in reqs {
            let b = r.encode();
            assert_eq!(KvRequest::decode(&b).unwrap(), r);
            for cut in 0..b.len() {
                assert!(KvRequest::decode(&b[..cut]).is_err());
            }
        }
        let e = KvResponse::Failed(Error::Conflict {
            key: b"k".to_vec(),
            reason: "r".into(),
        });
        match KvResponse::decode(&e.encode()).unwrap() {
            KvResponse::Failed(Error::Conflict { key, reason }) => {
                assert_eq!((key, reason.as_str()), (b"k".to_vec(), "r"))
            }
            other => panic!("{other:?}"),
        }
        let rows = KvResponse::Rows {
            rows: vec![(b"a".to_vec(), b"1".to_vec())],
            observed: Timestamp::new(42, 3),
        };
        let sealed = seal(Timestamp::new(7, 1), &rows.encode());
        let (clock, body) = open(&sealed).unwrap();
        assert_eq!(clock, Timestamp::new(7, 1));
        match KvResponse::decode(body).unwrap() {
            KvResponse::Rows { rows, observed } => {
                assert_eq!(rows.len(), 1);
                assert_eq!(observed, Timestamp::new(42, 3));
            }
            other => panic!("{other:?}"),
        }
        assert!(open(&sealed[..5]).is_err());
    }
}
