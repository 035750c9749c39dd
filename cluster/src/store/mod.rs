//! A store: the tablets of one node over one [`Engine`].
//!
//! The key space is cut into tablets ([`tablet`]); each has its own latches, timestamp
//! cache, lease and GC threshold, and each request is evaluated on the tablet that owns
//! its keys, here or at the tablet's leaseholder ([`forward`]). The invariants below
//! hold per tablet; [`gateway`] states how a transaction that touches several tablets
//! keeps them.
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
//!   latches of its keys, so no two transactions ever both hold an intent on one key.
//!   When every write lies on the record's tablet, the commit point is the record
//!   written COMMITTED (with the remaining writes) in one synced batch, after checking
//!   that every flushed intent there is still this transaction's; when the writes span
//!   tablets, it is the last success of one parallel staging round ([`commit`]). Once
//!   the commit point is durable the commit has succeeded: the intents are resolved
//!   afterwards, and a failure there leaves them to be read through the record. A
//!   rollback never overwrites a COMMITTED record, and a commit whose outcome is
//!   unknown (`Ambiguous`) is not rolled back at all. Transaction ids carry the node
//!   id and the store's boot epoch: a pending transaction of this node's earlier epoch
//!   died with its process and counts as aborted.
//! - **Abandoned intents.** A transaction's PENDING record carries a heartbeat. It is
//!   written with its first intents on the record's tablet, or else by its first
//!   heartbeat or its commit; its gateway renews the heartbeat while the transaction
//!   is open ([`Store::heartbeat_once`]). A writer that meets a pending intent of a
//!   transaction silent for longer than the expiry (no heartbeat, and the intent, that
//!   recent: its gateway crashed or is cut off) aborts that transaction: on the
//!   record's tablet it writes ABORTED into the record in the same batch as its own
//!   write, holding the latch of that record, after reading it as PENDING, so it can
//!   never overwrite COMMITTED (a commit latches its record too); elsewhere it pushes
//!   the record's leaseholder to do the same ([`push`]). A transaction found ABORTED
//!   can no longer commit, flush or heartbeat. A pending intent of a live transaction
//!   is a retryable conflict. A STAGING transaction is never aborted by a push: it is
//!   settled by status recovery ([`recovery`]).
//! - **History.** A write never erases another transaction's committed write: a
//!   committed intent on a key being written becomes a version first
//!   ([`mvcc::prepare_write`]).
//! - **Garbage collection.** The GC threshold is replicated with the tablet
//!   ([`GcThreshold`]) and written with the first deletions it allows; reads, intent
//!   flushes and commits with a `read_ts` below it are refused (retryable), on every
//!   leaseholder, since the history they would be checked against may be gone. The
//!   right-hand side of a split starts at its parent's threshold, written with the
//!   split.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tessera_storage::mvcc::{self, GcThreshold, Intent, ReadView, TxnId, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Engine, Timestamp, TimestampCache, WriteBatch};

use crate::latch::{Access, Span};
use crate::remote::{KvPeers, Read, ReadAnswer};
use crate::{Error, Hlc, Result};

mod background;
mod commit;
mod forward;
mod gateway;
mod gc;
mod push;
mod recovery;
mod size;
mod split;
pub mod tablet;
mod write;

pub(crate) use commit::Intents;
pub(crate) use push::Push;
pub use split::RangeInfo;
pub(crate) use write::{Commit, CommitPart};

use tablet::{Descriptor, Tablet, Tablets, FIRST_RANGE};

/// Latch names below the user key space: a tablet's bookkeeping (its GC threshold,
/// its transaction records), never checked against the tablet's span.
const BOOKKEEPING: &[u8] = b"\x01";

/// Where the latches of transaction records are named (see [`record_latch`]).
const RECORD_LATCHES: (&[u8], &[u8]) = (b"\x01txn/", b"\x01txn0");

/// The latch of `txn`'s record on the tablet that holds it. Records are tablet-local
/// entries, not user keys; naming their latches by transaction keeps them from
/// conflicting with reads and writes of user keys.
fn record_latch(txn: TxnId) -> Span {
    Span::key(
        &[RECORD_LATCHES.0, &txn.to_be_bytes()].concat(),
        Access::Write,
    )
}

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
    /// A tablet larger than this many bytes is split in two (default 64 MiB).
    pub split_bytes: u64,
    /// Whether the store runs work on threads of its own (default): intent resolution
    /// and tablet measurement in the background, a distributed commit's rounds on
    /// every tablet at once. Without, all of it runs in the caller's thread, in order
    /// (resolution in the commit that needs it; no size splits): what a deterministic
    /// simulation needs.
    pub threads: bool,
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
            split_bytes: 64 << 20,
            threads: true,
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

    /// Wait up to `wait` for `done` to hold (an election under way to name a leader, a
    /// new group to elect its first); whether it does. Raft goes on meanwhile.
    fn wait_until(&self, wait: std::time::Duration, done: &mut dyn FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + wait;
        while !done() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }

    /// The nodes holding a voting replica of the group (empty when unknown).
    fn replicas(&self) -> Vec<u64>;

    /// Split the group at the user key `key`, the new group taking the id `right`, and
    /// apply `writes` with it (the new tablet's bookkeeping); `Ok` once applied on this
    /// node (see [`crate::replication::SplitTrigger`]). The caller holds the latches of
    /// the part that moves.
    fn split(&self, right: u64, key: &[u8], writes: WriteBatch) -> Result<()>;

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
    clock: Arc<Hlc>,
    config: StoreConfig,
    /// This node's id (1 for a store that is not replicated).
    node: u64,
    tablets: Tablets,
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
    /// Open transactions of this gateway that hold intents, with their records'
    /// anchors: their heartbeats are renewed.
    heartbeats: Mutex<BTreeMap<TxnId, Vec<u8>>>,
    /// Work for the background thread: intents to resolve, tablets to measure.
    background: Mutex<Option<std::sync::mpsc::SyncSender<background::Job>>>,
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

    /// Open a store whose first tablet's data writes go through `replicator` (its Raft
    /// group), or a store that is not replicated.
    pub fn open_replicated(
        engine: Arc<dyn Engine>,
        clock: Arc<Hlc>,
        config: StoreConfig,
        replicator: Option<Arc<dyn Replicator>>,
    ) -> Result<Arc<Store>> {
        let node = replicator.as_ref().map(|r| r.node_id()).unwrap_or(1);
        let first = Descriptor {
            range_id: FIRST_RANGE,
            start: Vec::new(),
            end: KEY_MAX.to_vec(),
            generation: 1,
        };
        Self::open_tablets(engine, clock, config, node, vec![(first, replicator)])
    }

    /// Open a store of node `node` hosting `tablets` (which cover the key space), each
    /// replicated through its replicator, if any.
    pub fn open_tablets(
        engine: Arc<dyn Engine>,
        clock: Arc<Hlc>,
        config: StoreConfig,
        node: u64,
        tablets: Vec<(Descriptor, Option<Arc<dyn Replicator>>)>,
    ) -> Result<Arc<Store>> {
        let epoch = match engine.get(Cf::Local, EPOCH_KEY)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.try_into().expect("8 bytes")) + 1,
            _ => 1,
        };
        let mut b = WriteBatch::new();
        b.put(Cf::Local, EPOCH_KEY.to_vec(), epoch.to_be_bytes().to_vec());
        engine.write(b, true)?;
        let low_water = clock.now();
        tracing::info!(epoch, tablets = tablets.len(), "store opened");
        let epoch = (node << 32) | (epoch & 0xFFFF_FFFF);
        let map = Tablets::default();
        for (desc, replicator) in tablets {
            map.insert(Arc::new(Tablet::new(
                desc,
                replicator,
                TimestampCache::new(config.tscache_capacity, low_water),
            )));
        }
        let store = Arc::new(Store {
            engine,
            clock,
            config,
            node,
            tablets: map,
            ts_choice: Mutex::new(()),
            epoch,
            peers: RwLock::new(None),
            next_txn: AtomicU64::new(1),
            active: Mutex::new(BTreeMap::new()),
            heartbeats: Mutex::new(BTreeMap::new()),
            background: Mutex::new(None),
        });
        if store.config.threads {
            store.start_background();
        }
        Ok(store)
    }

    /// The node id (high 32 bits) and boot epoch (low 32 bits) of this store.
    pub fn boot_epoch(&self) -> u64 {
        self.epoch
    }

    /// The store's engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Write a batch of `t`'s data: through its Raft group when replicated (durable on
    /// a quorum when this returns), else to the engine, fsynced when `sync`.
    fn write(&self, t: &Tablet, batch: WriteBatch, sync: bool) -> Result<()> {
        let bytes = batch.size_bytes() as u64;
        match &t.replicator {
            Some(r) => r.replicate(batch)?,
            None => self.engine.write(batch, sync)?,
        }
        self.wrote(t, bytes);
        Ok(())
    }

    /// The floor of `t`'s current lease: no write lands at or below it, and every write
    /// of an earlier leaseholder lies at or below it. Reads by earlier leaseholders are
    /// not in this node's timestamp cache, and their clocks may be ahead of this one by
    /// up to the maximum offset, so the floor is this clock's reading when the lease is
    /// first used plus that offset; the cache is raised to it.
    fn lease_floor(&self, t: &Tablet) -> Timestamp {
        let Some(r) = &t.replicator else {
            return Timestamp::ZERO;
        };
        let term = r.lease_term();
        let mut lease = t.lease.lock();
        if term == 0 || lease.0 == term {
            return lease.1;
        }
        let start = self.clock.now();
        let floor = Timestamp::new(start.wall + self.config.max_clock_offset_nanos, 0);
        t.tscache.lock().add(&[], KEY_MAX, floor);
        *lease = (term, floor);
        tracing::info!(range = t.range_id(), term, %floor, "serving under a new lease");
        floor
    }

    /// Before a write: wait until this clock has passed the lease floor, so that commit
    /// timestamps stay within the offset of real time (writing ahead instead would let a
    /// restarted node's clock lag behind committed data).
    fn check_lease(&self, t: &Tablet) {
        let floor = self.lease_floor(t);
        self.clock.wait_until(floor.wall);
    }

    /// Let this store forward requests to other nodes through `peers`.
    pub fn set_peers(&self, peers: Arc<dyn KvPeers>) {
        *self.peers.write() = Some(peers);
    }

    /// This node's id (1 for a store that is not replicated).
    pub fn node_id(&self) -> u64 {
        self.node
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

    /// The fate of transaction `txn`, whose record is anchored at `anchor`, as this
    /// replica's copy of the record says.
    fn status(&self, anchor: &[u8], txn: TxnId) -> Result<TxnStatus, tessera_storage::Error> {
        let status = TxnRecord::read(&*self.engine, anchor, txn)?;
        let owner = (txn >> 64) as u64;
        if status == TxnStatus::Pending && owner >> 32 == self.epoch >> 32 && owner != self.epoch {
            return Ok(TxnStatus::Aborted);
        }
        Ok(status)
    }

    /// The uncertainty limit of a read served by `t` here: the transaction's `limit`,
    /// lowered to this node's clock reading `observed` but not below the lease floor.
    fn uncertainty_limit(&self, t: &Tablet, limit: Timestamp, observed: Timestamp) -> Timestamp {
        limit.min(observed.max(self.lease_floor(t)))
    }

    /// The latest timestamp at which `key` is known to have been read on this store
    /// (its tablet's timestamp cache; the low-water mark when nothing newer is kept).
    pub fn read_timestamp(&self, key: &[u8]) -> Timestamp {
        self.tablets.for_key(key).tscache.lock().max_read_point(key)
    }

    /// Take `spans` on `t` and check that `t` still owns all of them: a split may have
    /// moved the keys between routing and latching (see [`tablet`]). Latches named in
    /// the system region ([`BOOKKEEPING`]: the GC threshold, records) are the tablet's
    /// own bookkeeping, not claims on keys.
    fn latch(t: &Tablet, spans: Vec<Span>) -> Result<crate::latch::Guard<'_>> {
        let owned = spans.iter().filter(|s| !s.start().starts_with(BOOKKEEPING));
        let lo = owned.clone().map(|s| s.start()).min().map(<[u8]>::to_vec);
        let hi = owned.map(|s| s.end()).max().map(<[u8]>::to_vec);
        let guard = t.latches.acquire(spans);
        if let (Some(lo), Some(hi)) = (lo, hi) {
            // Tablets are contiguous: owning the bounds is owning every span.
            if !t.desc.read().contains_span(&lo, &hi) {
                return Err(Error::RangeKeyMismatch { key: lo });
            }
        }
        Ok(guard)
    }

    /// Take `spans` and the latch of `txn`'s record ([`record_latch`]) on `t`, and
    /// check that `t` still owns the record's anchor: a split latches every record of
    /// the tablet it cuts, so no request on a record is in flight while the record
    /// changes tablets.
    fn latch_record<'t>(
        t: &'t Tablet,
        txn: TxnId,
        anchor: &[u8],
        mut spans: Vec<Span>,
    ) -> Result<crate::latch::Guard<'t>> {
        spans.push(record_latch(txn));
        let guard = Self::latch(t, spans)?;
        if !t.desc.read().contains(anchor) {
            return Err(Error::RangeKeyMismatch {
                key: anchor.to_vec(),
            });
        }
        Ok(guard)
    }

    /// Serve `read` on `t` at `read_ts` as seen by `txn`, recording what it read in the
    /// timestamp cache when `track` is set.
    #[allow(clippy::too_many_arguments)]
    fn read_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        uncertainty_limit: Timestamp,
        read: &Read,
        track: bool,
    ) -> Result<ReadAnswer> {
        // Commits in flight on what is read finish first; the read is recorded before
        // any later one can choose its timestamp.
        let mut spans = match read {
            Read::Span { start, end, .. } => vec![Span::range(start, end, Access::Read)],
            Read::Keys(keys) => keys.iter().map(|k| Span::key(k, Access::Read)).collect(),
        };
        spans.push(Span::key(GcThreshold::KEY, Access::Read));
        let _latched = Self::latch(t, spans)?;
        self.check_gc(t, read_ts)?;
        let failed = Mutex::new(None);
        let status = |i: &Intent| self.status_for_read(t, i, read_ts, uncertainty_limit, &failed);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
            uncertainty_limit,
        };
        // A failed status lookup is the real cause of a failed read.
        let failure = |e: tessera_storage::Error| match failed.lock().take() {
            Some(cause) => cause,
            None => match e {
                tessera_storage::Error::Uncertain { key, ts } => Error::Uncertain { key, ts },
                e => e.into(),
            },
        };
        let answer = match read {
            Read::Span { start, end, limit } => {
                let limit = *limit as usize;
                let rows =
                    mvcc::scan(&*self.engine, start, Some(end), &view, limit).map_err(failure)?;
                if track {
                    let read_end = match rows.last() {
                        Some((k, _)) if rows.len() >= limit => [k.as_slice(), &[0]].concat(),
                        _ => end.to_vec(),
                    };
                    t.tscache.lock().add(start, &read_end, read_ts);
                }
                ReadAnswer::Rows(rows)
            }
            Read::Keys(keys) => {
                let values = keys
                    .iter()
                    .map(|k| mvcc::get(&*self.engine, k, &view))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failure)?;
                if track {
                    let mut cache = t.tscache.lock();
                    for k in keys {
                        cache.add(k, &[k.as_slice(), &[0]].concat(), read_ts);
                    }
                }
                ReadAnswer::Values(values)
            }
        };
        Ok(answer)
    }

    /// Check that nothing was committed in `(read_ts, to]` on `spans` of `t` and that no
    /// foreign intent lies there, and record the spans as read at `to`: the reads of a
    /// transaction that commits at `to` on another tablet stay valid up to its commit.
    fn refresh_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        to: Timestamp,
        spans: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut latched: Vec<Span> = spans
            .iter()
            .map(|(a, b)| Span::range(a, b, Access::Read))
            .collect();
        latched.push(Span::key(GcThreshold::KEY, Access::Read));
        let _latched = Self::latch(t, latched)?;
        self.check_gc(t, read_ts)?;
        let status = |i: &Intent| self.status(&i.anchor, i.txn);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
            uncertainty_limit: Timestamp::ZERO,
        };
        self.validate_reads(&view, spans, to)?;
        let mut cache = t.tscache.lock();
        for (start, end) in spans {
            cache.add(start, end, to);
        }
        Ok(())
    }

    /// Fail unless every span of `reads` is valid over `(view.read_ts, to]`.
    fn validate_reads(
        &self,
        view: &ReadView<'_>,
        reads: &[(Vec<u8>, Vec<u8>)],
        to: Timestamp,
    ) -> Result<()> {
        for (start, end) in reads {
            if let Some(c) = mvcc::find_conflict(&*self.engine, start, Some(end), view, to)? {
                return Err(self.conflict(c, "read no longer valid"));
            }
        }
        Ok(())
    }

    /// The error for conflict `c`; an intent of a STAGING transaction asks the gateway
    /// to settle that transaction first ([`Error::Unsettled`]).
    fn conflict(&self, c: mvcc::Conflict, what: &str) -> Error {
        if let mvcc::ConflictKind::Intent { txn, anchor } = &c.kind {
            if matches!(self.status(anchor, *txn), Ok(TxnStatus::Staging(_))) {
                return Error::Unsettled {
                    txn: *txn,
                    anchor: anchor.clone(),
                };
            }
        }
        let reason = match c.kind {
            mvcc::ConflictKind::Version(ts) => {
                format!("{what}: a concurrent transaction committed at {ts}")
            }
            mvcc::ConflictKind::Intent { txn, .. } => {
                format!(
                    "{what}: the key is being written by transaction {:x}",
                    txn as u64
                )
            }
        };
        Error::Conflict { key: c.key, reason }
    }
}
