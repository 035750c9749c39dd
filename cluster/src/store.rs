//! A store: the tablets of one node over one [`Engine`].
//!
//! Today a store hosts a single tablet that spans the whole key space; the state here
//! (timestamp cache, commit latch) is that tablet's, and becomes per-tablet state when
//! the key space is cut into ranges.
//!
//! ## Invariants
//!
//! - **Snapshot reads.** A transaction's `read_ts` is taken under the commit latch, and
//!   a commit takes its `commit_ts` and writes its batch while holding the latch
//!   exclusively. So when `read_ts` is chosen, every commit at or below it is fully
//!   written, and every later commit lands above it: a read at `read_ts` is a stable
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
//! - **Large transactions.** Writes beyond the buffer bound go out early as intents, in
//!   bounded batches, each checked for write-write conflicts as it lands. The commit
//!   point is then the transaction record written as committed (with any remaining
//!   writes) in one synced batch; the intents are resolved afterwards. Transaction ids
//!   carry the node id and the store's boot epoch: a pending transaction of this node's
//!   earlier epoch died with
//!   its process and counts as aborted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tessera_storage::mvcc::{self, Intent, ReadView, TxnId, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Engine, Timestamp, TimestampCache, WriteBatch};

use crate::{Error, Hlc, Result};

/// The exclusive upper bound of the key space used for open-ended spans.
pub(crate) const KEY_MAX: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF];
const EPOCH_KEY: &[u8] = b"store/boot_epoch";
/// Where MVCC-encoded keys begin (the system region of the key space, DESIGN.md §2);
/// keys below it are written raw by the cluster layer (e.g. member addresses).
const MVCC_KEYS_START: &[u8] = &[0x02];

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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            gc_window_nanos: 600 * 1_000_000_000,
            tscache_capacity: 1 << 16,
            write_buffer_bytes: 4 << 20,
            intent_batch_bytes: 4 << 20,
            max_clock_offset_nanos: 500_000_000,
        }
    }
}

/// Where a store's data writes go when its tablet is replicated: a Raft group that
/// returns once the batch is applied (after a quorum fsynced it).
pub trait Replicator: Send + Sync {
    /// Replicate and apply `writes`; `Ok` only once they are applied on this node.
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

/// Finds another node's address by id.
pub type PeerResolver = Arc<dyn Fn(u64) -> Option<std::net::SocketAddr> + Send + Sync>;

/// One node's store. See the module docs.
pub struct Store {
    engine: Arc<dyn Engine>,
    /// `None`: the tablet is not replicated and batches go straight to the engine.
    replicator: Option<Arc<dyn Replicator>>,
    clock: Arc<Hlc>,
    config: StoreConfig,
    tscache: Mutex<TimestampCache>,
    latch: RwLock<()>,
    /// Node id (high 32 bits) and boot epoch (low 32 bits): the high half of txn ids.
    epoch: u64,
    /// How to reach another node's KV service (set by the node once its transport runs).
    peers: RwLock<Option<PeerResolver>>,
    client: crate::remote::KvClient,
    next_txn: AtomicU64,
    /// Read timestamps of open transactions: GC keeps what they can see.
    active: Mutex<BTreeMap<(Timestamp, TxnId), ()>>,
    gc_threshold: Mutex<Timestamp>,
    /// The Raft term of the lease this store last served under.
    lease_term: Mutex<u64>,
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
            latch: RwLock::new(()),
            epoch,
            peers: RwLock::new(None),
            client: Default::default(),
            next_txn: AtomicU64::new(1),
            active: Mutex::new(BTreeMap::new()),
            gc_threshold: Mutex::new(Timestamp::ZERO),
            lease_term: Mutex::new(0),
        }))
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

    /// On a new lease, no write may land at or below a timestamp at which the previous
    /// leaseholder may have served a read. Those reads are not in this node's timestamp
    /// cache, and the previous leaseholder's clock may be ahead of this one by up to the
    /// maximum offset: so the first write under a new lease waits until this clock has
    /// passed the lease start plus that offset, and raises the cache's floor to it.
    /// (Waiting rather than writing ahead keeps commit timestamps within the offset of
    /// real time, so a restarted node's clock never lags behind committed data.)
    fn check_lease(&self) {
        let Some(r) = &self.replicator else { return };
        let term = r.lease_term();
        let mut current = self.lease_term.lock();
        if term == 0 || *current == term {
            return;
        }
        let start = self.clock.now();
        let floor = Timestamp::new(start.wall + self.config.max_clock_offset_nanos, 0);
        while self.clock.physical_nanos() <= floor.wall {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.tscache.lock().add(&[], KEY_MAX, floor);
        *current = term;
        tracing::info!(term, %floor, "serving under a new lease");
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

    /// Let this store forward requests to other nodes, found through `resolver`.
    pub fn set_peer_resolver(&self, resolver: PeerResolver) {
        *self.peers.write() = Some(resolver);
    }

    /// Where requests must go: `None` to serve them here, or the leaseholder's address.
    fn forward_to(&self) -> Result<Option<std::net::SocketAddr>> {
        let Some(r) = &self.replicator else {
            return Ok(None);
        };
        match r.leader() {
            Some(l) if l == r.node_id() => Ok(None),
            Some(l) => match self.peers.read().as_ref().and_then(|f| f(l)) {
                Some(addr) => Ok(Some(addr)),
                None => Err(Error::NotLeaseholder { leader: Some(l) }),
            },
            // An election is under way: the statement can be retried shortly.
            None => Err(Error::Conflict {
                key: Vec::new(),
                reason: "the tablet has no leaseholder at the moment; retry".into(),
            }),
        }
    }

    /// Send a request to the leaseholder. A lease that moved on the way is retryable.
    fn forward(
        &self,
        addr: std::net::SocketAddr,
        req: crate::remote::KvRequest,
    ) -> Result<crate::remote::KvResponse> {
        use crate::remote::KvResponse;
        match self.client.call(addr, &req)? {
            KvResponse::Failed(Error::NotLeaseholder { .. }) => Err(Error::Conflict {
                key: Vec::new(),
                reason: "the tablet's lease moved; retry".into(),
            }),
            KvResponse::Failed(e) => Err(e),
            other => Ok(other),
        }
    }

    /// Visible entries of `[start, end)` at `read_ts`, as seen by `txn`, at most `limit`,
    /// served by the leaseholder.
    pub(crate) fn scan(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        start: &[u8],
        end: &[u8],
        limit: usize,
        track: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Some(addr) = self.forward_to()? else {
            return self.scan_local(txn, read_ts, start, end, limit, track);
        };
        let req = crate::remote::KvRequest::Scan {
            txn,
            read_ts,
            start: start.to_vec(),
            end: end.to_vec(),
            limit: limit as u64,
            track,
        };
        match self.forward(addr, req)? {
            crate::remote::KvResponse::Rows(rows) => Ok(rows),
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
        let Some(addr) = self.forward_to()? else {
            return self.flush_intents_local(txn, read_ts, writes);
        };
        let req = crate::remote::KvRequest::Flush {
            txn,
            read_ts,
            writes: writes.clone(),
        };
        self.forward(addr, req).map(|_| ())
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
        let Some(addr) = self.forward_to()? else {
            return self.commit_local(txn, read_ts, reads, writes, flushed);
        };
        let req = crate::remote::KvRequest::Commit {
            txn,
            read_ts,
            reads: reads.to_vec(),
            writes: writes.clone(),
            flushed: flushed.to_vec(),
        };
        match self.forward(addr, req)? {
            crate::remote::KvResponse::Committed(ts) => {
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
        let Some(addr) = self.forward_to()? else {
            return self.abort_local(txn, flushed);
        };
        let req = crate::remote::KvRequest::Abort {
            txn,
            flushed: flushed.to_vec(),
        };
        self.forward(addr, req).map(|_| ())
    }

    /// Serve a KV request from another node (this node holds the lease, or says it
    /// does not). A forwarded read waits for commits in flight, moves the clock past its
    /// timestamp so later commits land above it, and confirms the lease.
    pub fn serve_remote(&self, request: &[u8]) -> Vec<u8> {
        use crate::remote::{KvRequest, KvResponse};
        let answer = (|| -> Result<KvResponse> {
            Ok(match KvRequest::decode(request)? {
                KvRequest::Scan {
                    txn,
                    read_ts,
                    start,
                    end,
                    limit,
                    track,
                } => {
                    if let Some(r) = &self.replicator {
                        r.read_barrier()?;
                    }
                    {
                        let _no_commit_in_flight = self.latch.read();
                        self.clock.update(read_ts);
                    }
                    KvResponse::Rows(self.scan_local(
                        txn,
                        read_ts,
                        &start,
                        &end,
                        limit as usize,
                        track,
                    )?)
                }
                KvRequest::Flush {
                    txn,
                    read_ts,
                    writes,
                } => {
                    self.flush_intents_local(txn, read_ts, &writes)?;
                    KvResponse::Done
                }
                KvRequest::Commit {
                    txn,
                    read_ts,
                    reads,
                    writes,
                    flushed,
                } => {
                    self.clock.update(read_ts);
                    KvResponse::Committed(
                        self.commit_local(txn, read_ts, &reads, &writes, &flushed)?,
                    )
                }
                KvRequest::Abort { txn, flushed } => {
                    self.abort_local(txn, &flushed)?;
                    KvResponse::Done
                }
            })
        })();
        match answer {
            Ok(a) => a.encode(),
            Err(e) => KvResponse::Failed(e).encode(),
        }
    }

    /// The node's clock.
    pub fn clock(&self) -> &Arc<Hlc> {
        &self.clock
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Start a transaction: a fresh id and a snapshot read timestamp.
    pub(crate) fn begin(&self) -> (TxnId, Timestamp) {
        let id =
            ((self.epoch as u128) << 64) | self.next_txn.fetch_add(1, Ordering::Relaxed) as u128;
        let read_ts = {
            let _shared = self.latch.read();
            self.clock.now()
        };
        self.active.lock().insert((read_ts, id), ());
        (id, read_ts)
    }

    /// Forget a finished transaction's read timestamp.
    pub(crate) fn end(&self, id: TxnId, read_ts: Timestamp) {
        self.active.lock().remove(&(read_ts, id));
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

    fn check_gc(&self, read_ts: Timestamp) -> Result<()> {
        let threshold = *self.gc_threshold.lock();
        if read_ts < threshold {
            return Err(Error::TooOld { read_ts, threshold });
        }
        Ok(())
    }

    /// Record a read of `[start, end)` at `read_ts` in the timestamp cache.
    pub(crate) fn record_read(&self, start: &[u8], end: &[u8], read_ts: Timestamp) {
        self.tscache.lock().add(start, end, read_ts);
    }

    /// Visible entries of `[start, end)` at `read_ts`, as seen by `txn`, at most `limit`.
    /// With `track`, the span actually read is recorded in the timestamp cache.
    fn scan_local(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        start: &[u8],
        end: &[u8],
        limit: usize,
        track: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_gc(read_ts)?;
        let status = |t| self.status(t);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
        };
        let rows = mvcc::scan(&*self.engine, start, Some(end), &view, limit)?;
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

    /// Write `writes` as intents of `txn`, in batches of bounded size.
    fn flush_intents_local(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<()> {
        self.check_lease();
        let status = |t| self.status(t);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
        };
        let mut batch = WriteBatch::new();
        let flush = |batch: &mut WriteBatch| -> Result<()> {
            let _exclusive = self.latch.write();
            self.write(std::mem::take(batch), false)?;
            Ok(())
        };
        for (key, value) in writes {
            if let Some(c) = mvcc::write_conflict(&*self.engine, key, &view)? {
                return Err(Self::conflict(c, "write-write conflict"));
            }
            let intent = Intent {
                txn,
                ts: read_ts,
                value: value.clone(),
            };
            mvcc::put_intent(&mut batch, key, &intent);
            if batch.size_bytes() >= self.config.intent_batch_bytes {
                flush(&mut batch)?;
            }
        }
        if !batch.is_empty() {
            flush(&mut batch)?;
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
        let status = |t| self.status(t);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
        };
        self.check_lease();
        let commit_ts = {
            let _exclusive = self.latch.write();
            let mut commit_ts = self.clock.now();
            {
                let cache = self.tscache.lock();
                for key in writes.keys().chain(flushed.iter()) {
                    let r = cache.max_read_point(key);
                    if r >= commit_ts {
                        commit_ts = r.next();
                    }
                }
            }
            // Later transactions must start above this commit to see it.
            self.clock.update(commit_ts);
            for (start, end) in reads {
                if let Some(c) =
                    mvcc::find_conflict(&*self.engine, start, Some(end), &view, commit_ts)?
                {
                    return Err(Self::conflict(c, "read no longer valid"));
                }
            }
            let mut batch = WriteBatch::new();
            for (key, value) in writes {
                if let Some(c) = mvcc::write_conflict(&*self.engine, key, &view)? {
                    return Err(Self::conflict(c, "write-write conflict"));
                }
                mvcc::put_version(&mut batch, key, commit_ts, value.as_deref());
                // A key written after being flushed: the buffered value wins.
                batch.delete(Cf::Data, mvcc::intent_key(key));
            }
            if !flushed.is_empty() {
                batch.put(
                    Cf::Local,
                    TxnRecord::key(txn),
                    TxnRecord::encode(TxnStatus::Committed(commit_ts)),
                );
            }
            self.write(batch, true)?;
            let mut cache = self.tscache.lock();
            for (start, end) in reads {
                cache.add(start, end, commit_ts);
            }
            commit_ts
        };
        if !flushed.is_empty() {
            self.resolve(txn, flushed, Some(commit_ts))?;
        }
        Ok(commit_ts)
    }

    /// Roll back: mark the record aborted (when intents exist) and remove the intents.
    fn abort_local(&self, txn: TxnId, flushed: &[Vec<u8>]) -> Result<()> {
        if flushed.is_empty() {
            return Ok(());
        }
        let mut b = WriteBatch::new();
        b.put(
            Cf::Local,
            TxnRecord::key(txn),
            TxnRecord::encode(TxnStatus::Aborted),
        );
        self.write(b, false)?;
        self.resolve(txn, flushed, None)
    }

    fn resolve(&self, txn: TxnId, keys: &[Vec<u8>], commit_ts: Option<Timestamp>) -> Result<()> {
        let mut batch = WriteBatch::new();
        for key in keys {
            mvcc::resolve_intent(&*self.engine, &mut batch, key, txn, commit_ts)?;
            if batch.size_bytes() >= self.config.intent_batch_bytes {
                self.write(std::mem::take(&mut batch), false)?;
            }
        }
        self.write(batch, false)?;
        Ok(())
    }

    /// Collect versions that no open transaction and no read within the GC window can
    /// see. Returns how many versions were removed.
    pub fn gc_once(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut threshold = Timestamp::new(now.wall.saturating_sub(self.config.gc_window_nanos), 0);
        if let Some(((oldest, _), _)) = self.active.lock().first_key_value() {
            threshold = threshold.min(*oldest);
        }
        if threshold == Timestamp::ZERO {
            return Ok(0);
        }
        {
            let mut t = self.gc_threshold.lock();
            *t = (*t).max(threshold);
        }
        let mut batch = WriteBatch::new();
        // Only the MVCC key space: below it lie the tablet's raw bookkeeping keys.
        let removed = mvcc::gc(
            &*self.engine,
            &mut batch,
            MVCC_KEYS_START,
            Some(KEY_MAX),
            threshold,
        )?;
        self.write(batch, false)?;
        if removed > 0 {
            tracing::debug!(removed, %threshold, "garbage-collected MVCC versions");
        }
        Ok(removed)
    }
}
