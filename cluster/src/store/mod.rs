//! A store: the tablets of one node over one [`Engine`].
//!
//! Today a store hosts a single tablet that spans the whole key space; the state here
//! (timestamp cache, latches) is that tablet's, and becomes per-tablet state when the
//! key space is cut into ranges.
//!
//! ## Invariants
//!
//! - **Latches.** Every request holds latches on the spans it touches ([`Latches`]):
//!   a commit write-latches the keys it writes, the keys where it holds intents and its
//!   record, and read-latches the spans it read, from before it chooses `commit_ts`
//!   until its batch is applied; a read latches its span while it reads and records
//!   it in the timestamp cache. Requests on disjoint spans run, and replicate, in
//!   parallel.
//! - **Snapshot reads.** A read waits for the commits in flight on its span, so it sees
//!   every commit on the span that chose its `commit_ts` before the read began. A
//!   commit chooses `commit_ts` and moves the clock past it in one step, and above the
//!   timestamp cache of the keys it writes, so a commit on the span that begins after
//!   the read lands above the read's `read_ts`: a read at `read_ts` is a stable
//!   snapshot.
//! - **Timestamp cache.** Every read records its span at its `read_ts`; every commit
//!   chooses `commit_ts` above the cache for each key it writes, then records its own
//!   read spans at `commit_ts`. No write lands at or below a timestamp at which its key
//!   was read.
//! - **Validation.** A commit fails with a conflict unless, for each read span, nothing
//!   was committed in `(read_ts, commit_ts]`, and for each written key no newer version
//!   or live foreign intent exists. Together: every dependency points forward in
//!   `commit_ts` order, which is therefore a serial order.
//! - **Durability.** A commit returns only after its batch is fsynced.
//! - **Uncertainty.** A transaction may begin on a node whose clock is behind the
//!   leaseholder's; a write acknowledged before it began can then carry a timestamp
//!   above its `read_ts`. So a read treats a committed write in `(read_ts, limit]` as
//!   uncertain and the transaction restarts above it, where `limit` is `read_ts` plus
//!   the maximum clock offset, lowered to the leaseholder's clock reading the first time
//!   the transaction reached that node (a write above that reading started after the
//!   transaction did), but never below the lease's floor: writes of earlier
//!   leaseholders can lie anywhere up to it. A transaction that began on a settled
//!   leaseholder therefore has no uncertainty there.
//! - **Large transactions.** Writes beyond the buffer bound go out early as intents, in
//!   bounded batches, each checked for write-write conflicts and written under the
//!   latches of its keys, so no two transactions ever both hold an intent on one key. The commit
//!   point is the transaction record written as committed (with any remaining writes)
//!   in one synced batch, after checking that every flushed intent is still this
//!   transaction's. Once that batch is durable the commit has succeeded: the intents
//!   are resolved afterwards, and a failure there leaves them to be read through the
//!   record. A rollback never overwrites a COMMITTED record, and a commit whose outcome
//!   is unknown (`Ambiguous`) is not rolled back at all. Transaction ids carry the node
//!   id and the store's boot epoch: a pending transaction of this node's earlier epoch
//!   died with its process and counts as aborted.
//! - **Abandoned intents.** A transaction's first intents are written together with a
//!   PENDING record that carries a heartbeat; its gateway renews the heartbeat while the
//!   transaction is open ([`Store::heartbeat_once`]). A writer that meets a pending
//!   intent whose heartbeat is older than the expiry (its gateway crashed or is cut
//!   off) aborts that transaction: it writes ABORTED into the record in the same batch
//!   as its own write, holding the latch of that record, after reading it as PENDING,
//!   so it can never overwrite COMMITTED (a commit latches its record too). A
//!   transaction found ABORTED can no longer commit, flush or heartbeat. A pending
//!   intent with a live heartbeat is a retryable conflict.
//! - **History.** A write never erases another transaction's committed write: a
//!   committed intent on a key being written becomes a version first
//!   ([`mvcc::prepare_write`]).
//! - **Garbage collection.** The GC threshold is replicated with the tablet
//!   ([`GcThreshold`]) and written with the first deletions it allows; reads, intent
//!   flushes and commits with a `read_ts` below it are refused (retryable), on every
//!   leaseholder, since the history they would be checked against may be gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tessera_storage::mvcc::{self, GcThreshold, Intent, ReadView, TxnId, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Engine, Timestamp, TimestampCache, WriteBatch};

use crate::latch::{Access, Latches, Span};
use crate::remote::{KvPeers, KvRequest, KvResponse};
use crate::{Error, Hlc, Result};

mod forward;
mod gc;
mod push;

/// The exclusive upper bound of the key space used for open-ended spans.
pub(crate) const KEY_MAX: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF];
const EPOCH_KEY: &[u8] = b"store/boot_epoch";

/// Settings of a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How long old MVCC versions are kept, in nanoseconds (default 10 minutes).
    pub gc_window_nanos: u64,
    /// Most segments the timestamp cache holds before raising its low-water mark.
    pub tscache_capacity: usize,
    /// Bytes of buffered writes a transaction keeps before flushing intents.
    pub write_buffer_bytes: usize,
    /// Most bytes of intents written in one batch (a bound on command size).
    pub intent_batch_bytes: usize,
    /// The most a node's clock may be ahead of another's, in nanoseconds (DESIGN.md §4).
    pub max_clock_offset_nanos: u64,
    /// How often a gateway renews the heartbeat of its open transactions that hold
    /// intents, in nanoseconds (default 1 s).
    pub txn_heartbeat_nanos: u64,
    /// How old a pending transaction's heartbeat may get before a conflicting writer
    /// aborts it, in nanoseconds (default 5 s).
    pub txn_expiry_nanos: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            gc_window_nanos: 600 * 1_000_000_000,
            tscache_capacity: 1 << 16,
            write_buffer_bytes: 4 << 20,
            intent_batch_bytes: 4 << 20,
            max_clock_offset_nanos: 500_000_000,
            txn_heartbeat_nanos: 1_000_000_000,
            txn_expiry_nanos: 5_000_000_000,
        }
    }
}

/// Where a store's data writes go when its tablet is replicated: a Raft group that
/// returns once the batch is applied (after a quorum fsynced it).
pub trait Replicator: Send + Sync {
    /// Replicate and apply `writes`; `Ok` only once they are applied on this node.
    /// `Ambiguous` (the writes may still apply) only once this node no longer holds the
    /// lease it proposed under: the caller holds its latch across the call, and no
    /// commit may validate here while the writes can still land.
    fn replicate(&self, writes: WriteBatch) -> Result<()>;

    /// The Raft term in which this node holds the lease (0: it does not).
    fn lease_term(&self) -> u64;

    /// This node's id.
    fn node_id(&self) -> u64;

    /// The node holding the lease, as last seen.
    fn leader(&self) -> Option<u64>;

    /// Return once the group has confirmed (with a quorum) that nothing was committed
    /// that this node has not applied: local reads after it are not stale.
    fn read_barrier(&self) -> Result<()>;
}

/// What a transaction knows about clock uncertainty; see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Uncertainty {
    /// `read_ts` at the start plus the maximum clock offset.
    pub limit: Timestamp,
    /// Per node, a reading of that node's clock taken after the transaction began.
    pub observed: BTreeMap<u64, Timestamp>,
}

/// One node's store. See the module docs.
pub struct Store {
    engine: Arc<dyn Engine>,
    /// `None`: the tablet is not replicated and batches go straight to the engine.
    replicator: Option<Arc<dyn Replicator>>,
    clock: Arc<Hlc>,
    config: StoreConfig,
    tscache: Mutex<TimestampCache>,
    latches: Latches,
    /// Held while a commit chooses its timestamp and moves the clock past it, and while
    /// a read observes the clock: an observation is above every commit timestamp chosen
    /// before it.
    ts_choice: Mutex<()>,
    /// Node id (high 32 bits) and boot epoch (low 32 bits): the high half of txn ids.
    epoch: u64,
    /// How to reach another node's KV service (set by the node once its transport runs).
    peers: RwLock<Option<Arc<dyn KvPeers>>>,
    next_txn: AtomicU64,
    /// Read timestamps of open transactions: GC keeps what they can see.
    active: Mutex<BTreeMap<(Timestamp, TxnId), ()>>,
    /// Open transactions of this gateway that hold intents: their heartbeats are renewed.
    heartbeats: Mutex<BTreeSet<TxnId>>,
    /// The Raft term of the lease this store last served under, and that lease's floor.
    lease: Mutex<(u64, Timestamp)>,
    /// The replicated GC threshold as read under the lease of the given term (reloaded
    /// from the engine when the term changes; this store's own collections raise it).
    gc_threshold: Mutex<(u64, Timestamp)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("epoch", &self.epoch).finish()
    }
}

impl Store {
    /// Open a store over `engine`, starting a new boot epoch.
    pub fn open(
        engine: Arc<dyn Engine>,
        clock: Arc<Hlc>,
        config: StoreConfig,
    ) -> Result<Arc<Store>> {
        Self::open_replicated(engine, clock, config, None)
    }

    /// Open a store whose data writes go through `replicator` (its tablet's Raft group).
    pub fn open_replicated(
        engine: Arc<dyn Engine>,
        clock: Arc<Hlc>,
        config: StoreConfig,
        replicator: Option<Arc<dyn Replicator>>,
    ) -> Result<Arc<Store>> {
        let epoch = match engine.get(Cf::Local, EPOCH_KEY)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.try_into().expect("8 bytes")) + 1,
            _ => 1,
        };
        let mut b = WriteBatch::new();
        b.put(Cf::Local, EPOCH_KEY.to_vec(), epoch.to_be_bytes().to_vec());
        engine.write(b, true)?;
        let low_water = clock.now();
        tracing::info!(epoch, "store opened");
        let node = replicator.as_ref().map(|r| r.node_id()).unwrap_or(1);
        let epoch = (node << 32) | (epoch & 0xFFFF_FFFF);
        Ok(Arc::new(Store {
            tscache: Mutex::new(TimestampCache::new(config.tscache_capacity, low_water)),
            engine,
            replicator,
            clock,
            config,
            latches: Latches::default(),
            ts_choice: Mutex::new(()),
            epoch,
            peers: RwLock::new(None),
            next_txn: AtomicU64::new(1),
            active: Mutex::new(BTreeMap::new()),
            heartbeats: Mutex::new(BTreeSet::new()),
            lease: Mutex::new((0, Timestamp::ZERO)),
            gc_threshold: Mutex::new((u64::MAX, Timestamp::ZERO)),
        }))
    }

    /// The node id (high 32 bits) and boot epoch (low 32 bits) of this store.
    pub fn boot_epoch(&self) -> u64 {
        self.epoch
    }

    /// The store's engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Write a batch of data: through the Raft group when replicated (durable on a
    /// quorum when this returns), else to the engine, fsynced when `sync`.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        match &self.replicator {
            Some(r) => r.replicate(batch),
            None => Ok(self.engine.write(batch, sync)?),
        }
    }

    /// The floor of the current lease: no write lands at or below it, and every write
    /// of an earlier leaseholder lies at or below it. Reads by earlier leaseholders are
    /// not in this node's timestamp cache, and their clocks may be ahead of this one by
    /// up to the maximum offset, so the floor is this clock's reading when the lease is
    /// first used plus that offset; the cache is raised to it.
    fn lease_floor(&self) -> Timestamp {
        let Some(r) = &self.replicator else {
            return Timestamp::ZERO;
        };
        let term = r.lease_term();
        let mut lease = self.lease.lock();
        if term == 0 || lease.0 == term {
            return lease.1;
        }
        let start = self.clock.now();
        let floor = Timestamp::new(start.wall + self.config.max_clock_offset_nanos, 0);
        self.tscache.lock().add(&[], KEY_MAX, floor);
        *lease = (term, floor);
        tracing::info!(term, %floor, "serving under a new lease");
        floor
    }

    /// Before a write: wait until this clock has passed the lease floor, so that commit
    /// timestamps stay within the offset of real time (writing ahead instead would let a
    /// restarted node's clock lag behind committed data).
    fn check_lease(&self) {
        let floor = self.lease_floor();
        self.clock.wait_until(floor.wall);
    }

    /// Make sure local reads are current: see [`Replicator::read_barrier`]. A store that
    /// forwards to the leaseholder has nothing to confirm (the leaseholder confirms each
    /// forwarded read).
    pub(crate) fn read_barrier(&self) -> Result<()> {
        match &self.replicator {
            Some(r) if self.forward_to()?.is_none() => r.read_barrier(),
            _ => Ok(()),
        }
    }

    /// Let this store forward requests to other nodes through `peers`.
    pub fn set_peers(&self, peers: Arc<dyn KvPeers>) {
        *self.peers.write() = Some(peers);
    }

    /// This node's id (1 for a store that is not replicated).
    pub fn node_id(&self) -> u64 {
        self.replicator.as_ref().map_or(1, |r| r.node_id())
    }

    /// Visible entries of `[start, end)` at `read_ts`, as seen by `txn`, at most `limit`,
    /// served by the leaseholder. `bound` is the transaction's uncertainty state; it
    /// learns the serving node's clock reading.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scan(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        bound: &mut Uncertainty,
        start: &[u8],
        end: &[u8],
        limit: usize,
        track: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Some(node) = self.forward_to()? else {
            let node = self.node_id();
            let observed = match bound.observed.get(&node) {
                Some(o) => *o,
                None => {
                    let now = {
                        let _chosen = self.ts_choice.lock();
                        self.clock.now()
                    };
                    *bound.observed.entry(node).or_insert(now)
                }
            };
            let limit_ts = self.uncertainty_limit(bound.limit, observed);
            return self.scan_local(txn, read_ts, limit_ts, start, end, limit, track);
        };
        let req = KvRequest::Scan {
            txn,
            read_ts,
            uncertainty_limit: bound.limit,
            observed: bound
                .observed
                .get(&node)
                .copied()
                .unwrap_or(Timestamp::ZERO),
            start: start.to_vec(),
            end: end.to_vec(),
            limit: limit as u64,
            track,
        };
        match self.forward(node, req)? {
            KvResponse::Rows { rows, observed } => {
                bound.observed.entry(node).or_insert(observed);
                Ok(rows)
            }
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// Write `writes` as intents of `txn`, on the leaseholder.
    pub(crate) fn flush_intents(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<()> {
        // From now on the transaction holds intents: keep its heartbeat alive.
        self.heartbeats.lock().insert(txn);
        let Some(node) = self.forward_to()? else {
            return self.flush_intents_local(txn, read_ts, writes);
        };
        let req = KvRequest::Flush {
            txn,
            read_ts,
            writes: writes.clone(),
        };
        self.forward(node, req).map(|_| ())
    }

    /// Validate and commit on the leaseholder; see [`Store::commit_local`].
    pub(crate) fn commit(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        flushed: &[Vec<u8>],
    ) -> Result<Timestamp> {
        if writes.is_empty() && flushed.is_empty() {
            // Read-only: commits at its read timestamp without validation.
            return Ok(read_ts);
        }
        let Some(node) = self.forward_to()? else {
            return self.commit_local(txn, read_ts, reads, writes, flushed);
        };
        let req = KvRequest::Commit {
            txn,
            read_ts,
            reads: reads.to_vec(),
            writes: writes.clone(),
            flushed: flushed.to_vec(),
        };
        match self.forward(node, req)? {
            KvResponse::Committed(ts) => {
                self.clock.update(ts);
                Ok(ts)
            }
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// Roll back on the leaseholder.
    pub(crate) fn abort(&self, txn: TxnId, flushed: &[Vec<u8>]) -> Result<()> {
        if flushed.is_empty() {
            return Ok(());
        }
        let Some(node) = self.forward_to()? else {
            return self.abort_local(txn, flushed);
        };
        let req = KvRequest::Abort {
            txn,
            flushed: flushed.to_vec(),
        };
        self.forward(node, req).map(|_| ())
    }

    /// The node's clock.
    pub fn clock(&self) -> &Arc<Hlc> {
        &self.clock
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Start a transaction: a fresh id, a snapshot read timestamp and its uncertainty.
    pub(crate) fn begin(&self) -> (TxnId, Timestamp, Uncertainty) {
        let id =
            ((self.epoch as u128) << 64) | self.next_txn.fetch_add(1, Ordering::Relaxed) as u128;
        let read_ts = self.clock.now();
        self.active.lock().insert((read_ts, id), ());
        let bound = Uncertainty {
            limit: Timestamp::new(
                read_ts
                    .wall
                    .saturating_add(self.config.max_clock_offset_nanos),
                0,
            ),
            observed: BTreeMap::from([(self.node_id(), read_ts)]),
        };
        (id, read_ts, bound)
    }

    /// Move an open transaction's snapshot up to `new` (a restart before it read
    /// anything), keeping GC's view of it current.
    pub(crate) fn move_read_ts(&self, id: TxnId, old: Timestamp, new: Timestamp) {
        let mut active = self.active.lock();
        active.remove(&(old, id));
        active.insert((new, id), ());
    }

    /// Forget a finished transaction's read timestamp (and stop its heartbeat).
    pub(crate) fn end(&self, id: TxnId, read_ts: Timestamp) {
        self.active.lock().remove(&(read_ts, id));
        self.heartbeats.lock().remove(&id);
    }

    /// The fate of a transaction owning an intent.
    fn status(&self, txn: TxnId) -> Result<TxnStatus, tessera_storage::Error> {
        let status = TxnRecord::read(&*self.engine, txn)?;
        let owner = (txn >> 64) as u64;
        if status == TxnStatus::Pending && owner >> 32 == self.epoch >> 32 && owner != self.epoch {
            return Ok(TxnStatus::Aborted);
        }
        Ok(status)
    }

    /// The uncertainty limit of a read served here: the transaction's `limit`, lowered
    /// to this node's clock reading `observed` but not below the lease floor.
    fn uncertainty_limit(&self, limit: Timestamp, observed: Timestamp) -> Timestamp {
        limit.min(observed.max(self.lease_floor()))
    }

    /// The latest timestamp at which `key` is known to have been read on this store
    /// (its timestamp cache; the low-water mark when nothing newer is kept).
    pub fn read_timestamp(&self, key: &[u8]) -> Timestamp {
        self.tscache.lock().max_read_point(key)
    }

    /// Visible entries of `[start, end)` at `read_ts`, as seen by `txn`, at most `limit`.
    /// With `track`, the span actually read is recorded in the timestamp cache.
    #[allow(clippy::too_many_arguments)]
    fn scan_local(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        uncertainty_limit: Timestamp,
        start: &[u8],
        end: &[u8],
        limit: usize,
        track: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // Commits in flight on the span finish first; the read is recorded before any
        // later one can choose its timestamp.
        let _latched = self.latches.acquire(vec![
            Span::range(start, end, Access::Read),
            Span::key(GcThreshold::KEY, Access::Read),
        ]);
        self.check_gc(read_ts)?;
        let status = |t| self.status(t);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
            uncertainty_limit,
        };
        let rows = match mvcc::scan(&*self.engine, start, Some(end), &view, limit) {
            Ok(rows) => rows,
            Err(tessera_storage::Error::Uncertain { key, ts }) => {
                return Err(Error::Uncertain { key, ts })
            }
            Err(e) => return Err(e.into()),
        };
        if track {
            let read_end = match rows.last() {
                Some((k, _)) if rows.len() >= limit => [k.as_slice(), &[0]].concat(),
                _ => end.to_vec(),
            };
            self.tscache.lock().add(start, &read_end, read_ts);
        }
        Ok(rows)
    }

    fn conflict(c: mvcc::Conflict, what: &str) -> Error {
        let reason = match c.kind {
            mvcc::ConflictKind::Version(ts) => {
                format!("{what}: a concurrent transaction committed at {ts}")
            }
            mvcc::ConflictKind::Intent(t) => {
                format!(
                    "{what}: the key is being written by transaction {:x}",
                    t as u64
                )
            }
        };
        Error::Conflict { key: c.key, reason }
    }

    /// Write `writes` as intents of `txn`, in batches of bounded size. Each batch is
    /// checked and written under the latch, so no other write of its keys can come
    /// between the conflict check and the intent.
    fn flush_intents_local(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<()> {
        self.check_lease();
        let size = |(k, v): &(&Vec<u8>, &Option<Vec<u8>>)| {
            k.len() + v.as_ref().map_or(0, |v| v.len()) + 64
        };
        for chunk in chunks(writes.iter(), size, self.config.intent_batch_bytes) {
            let mut spans: Vec<Span> = chunk
                .iter()
                .map(|(k, _)| Span::key(k, Access::Write))
                .collect();
            spans.push(Span::key(&TxnRecord::key(txn), Access::Write));
            spans.push(Span::key(GcThreshold::KEY, Access::Read));
            let _latched = self.latches.acquire(spans);
            let pushed = Mutex::new(Vec::new());
            let now = || self.clock.now();
            let status = |t| self.status_for_write(t, now(), &pushed);
            let view = ReadView {
                read_ts,
                txn: Some(txn),
                status: &status,
                uncertainty_limit: Timestamp::ZERO,
            };
            self.check_gc(read_ts)?;
            if self.status(txn)? == TxnStatus::Aborted {
                return Err(Self::aborted_by_push());
            }
            let mut batch = WriteBatch::new();
            // The record, pending with a fresh heartbeat, goes with the intents.
            batch.put(
                Cf::Data,
                TxnRecord::key(txn),
                TxnRecord::encode_heartbeat(self.clock.now()),
            );
            for (key, value) in chunk {
                if let Some(c) = mvcc::prepare_write(&*self.engine, &mut batch, key, &view, true)? {
                    return Err(Self::conflict(c, "write-write conflict"));
                }
                let intent = Intent {
                    txn,
                    ts: read_ts,
                    value: value.clone(),
                };
                mvcc::put_intent(&mut batch, key, &intent);
            }
            Self::record_pushed(&mut batch, &pushed);
            self.write(batch, false)?;
        }
        Ok(())
    }

    /// Validate and commit. `reads` are the spans the transaction read; `writes` its
    /// buffered writes; `flushed` the keys where it already holds intents.
    fn commit_local(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        flushed: &[Vec<u8>],
    ) -> Result<Timestamp> {
        let pushed = Mutex::new(Vec::new());
        let now = || self.clock.now();
        let status = |t| self.status_for_write(t, now(), &pushed);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
            uncertainty_limit: Timestamp::ZERO,
        };
        self.check_lease();
        let commit_ts = {
            let mut spans: Vec<Span> = writes
                .keys()
                .chain(flushed.iter())
                .map(|k| Span::key(k, Access::Write))
                .collect();
            spans.push(Span::key(&TxnRecord::key(txn), Access::Write));
            spans.extend(reads.iter().map(|(a, b)| Span::range(a, b, Access::Read)));
            spans.push(Span::key(GcThreshold::KEY, Access::Read));
            let _latched = self.latches.acquire(spans);
            // History below the threshold may be gone: reads and writes could not be
            // validated against it.
            self.check_gc(read_ts)?;
            let commit_ts = {
                // Later transactions must start above this commit to see it: the clock
                // moves past it before anyone can observe the clock again.
                let _choosing = self.ts_choice.lock();
                let mut commit_ts = self.clock.now();
                let cache = self.tscache.lock();
                for key in writes.keys().chain(flushed.iter()) {
                    let r = cache.max_read_point(key);
                    if r >= commit_ts {
                        commit_ts = r.next();
                    }
                }
                self.clock.update(commit_ts);
                commit_ts
            };
            for (start, end) in reads {
                if let Some(c) =
                    mvcc::find_conflict(&*self.engine, start, Some(end), &view, commit_ts)?
                {
                    return Err(Self::conflict(c, "read no longer valid"));
                }
            }
            // A transaction with intents commits only from PENDING, and every flushed
            // key must still hold its intent.
            if !flushed.is_empty() && self.status(txn)? == TxnStatus::Aborted {
                return Err(Self::aborted_by_push());
            }
            for key in flushed {
                let ours = mvcc::get_intent(&*self.engine, key)?.is_some_and(|i| i.txn == txn);
                if !ours && !writes.contains_key(key) {
                    return Err(Error::Conflict {
                        key: key.clone(),
                        reason: "an intent of this transaction is gone".into(),
                    });
                }
            }
            let mut batch = WriteBatch::new();
            for (key, value) in writes {
                // Drops this transaction's own intent (the buffered value wins) and
                // keeps another's committed one as a version.
                if let Some(c) = mvcc::prepare_write(&*self.engine, &mut batch, key, &view, false)?
                {
                    return Err(Self::conflict(c, "write-write conflict"));
                }
                mvcc::put_version(&mut batch, key, commit_ts, value.as_deref());
            }
            if !flushed.is_empty() {
                batch.put(
                    Cf::Data,
                    TxnRecord::key(txn),
                    TxnRecord::encode(TxnStatus::Committed(commit_ts)),
                );
            }
            Self::record_pushed(&mut batch, &pushed);
            self.write(batch, true)?;
            let mut cache = self.tscache.lock();
            for (start, end) in reads {
                cache.add(start, end, commit_ts);
            }
            commit_ts
        };
        // The commit point is durable: the transaction has committed, whatever happens
        // to the resolution of its intents (readers resolve them through the record).
        if !flushed.is_empty() {
            if let Err(e) = self.resolve(txn, flushed, Some(commit_ts)) {
                tracing::warn!(error = %e, txn, "resolving the intents of a committed transaction failed; they stay until read");
            }
        }
        Ok(commit_ts)
    }

    /// Roll back: mark the record aborted (when intents exist) and remove the intents.
    /// A record that says COMMITTED is never overwritten: the intents are then resolved
    /// as committed instead.
    fn abort_local(&self, txn: TxnId, flushed: &[Vec<u8>]) -> Result<()> {
        if flushed.is_empty() {
            return Ok(());
        }
        let outcome = {
            let record = Span::key(&TxnRecord::key(txn), Access::Write);
            let _latched = self.latches.acquire(vec![record]);
            match TxnRecord::read(&*self.engine, txn)? {
                TxnStatus::Committed(ts) => Some(ts),
                TxnStatus::Pending | TxnStatus::Aborted => {
                    let mut b = WriteBatch::new();
                    b.put(
                        Cf::Data,
                        TxnRecord::key(txn),
                        TxnRecord::encode(TxnStatus::Aborted),
                    );
                    self.write(b, false)?;
                    None
                }
            }
        };
        if let Some(ts) = outcome {
            tracing::error!(txn, %ts, "asked to roll back a committed transaction; keeping it committed");
        }
        self.resolve(txn, flushed, outcome)
    }

    fn resolve(&self, txn: TxnId, keys: &[Vec<u8>], commit_ts: Option<Timestamp>) -> Result<()> {
        let size = |k: &&Vec<u8>| 2 * k.len() + 64;
        for chunk in chunks(keys.iter(), size, self.config.intent_batch_bytes) {
            let spans = chunk.iter().map(|k| Span::key(k, Access::Write)).collect();
            let _latched = self.latches.acquire(spans);
            let mut batch = WriteBatch::new();
            for key in chunk {
                mvcc::resolve_intent(&*self.engine, &mut batch, key, txn, commit_ts)?;
            }
            self.write(batch, false)?;
        }
        Ok(())
    }
}

/// Cut `items` into chunks of about `bound` bytes each (by `size`), never empty.
fn chunks<T>(
    items: impl Iterator<Item = T>,
    size: impl Fn(&T) -> usize,
    bound: usize,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item);
        match out.last_mut() {
            Some(last) if bytes + n <= bound => last.push(item),
            _ => {
                out.push(vec![item]);
                bytes = 0;
            }
        }
        bytes += n;
    }
    out
}
