//! A single-node cluster: one store whose one tablet is a one-voter Raft group.
//!
//! Even alone, every commit goes through the same path a replicated one takes: proposed to
//! the group, persisted in the Raft log with an fsync, applied, then acknowledged. Adding
//! nodes later changes the group's membership, not the write path.

use std::sync::Arc;
use std::time::Duration;

use tessera_storage::Engine;

use super::driver::RaftDriver;
use super::raft_store::{GroupDesc, RaftConfig, RaftStore};
use super::transport::NoPeers;
use crate::store::{Replicator, KEY_MAX};
use crate::{Error, Hlc, Result, Store, StoreConfig};

/// The group of the first tablet, which spans the whole key space.
pub const FIRST_GROUP: u64 = 1;

/// The node id of a single-node cluster.
const SINGLE_NODE_ID: u64 = 1;

/// A store together with the Raft driver its writes go through.
pub struct ReplicatedStore {
    /// The store the KV API uses.
    pub store: Arc<Store>,
    /// The driver thread; dropping it stops replication.
    pub driver: RaftDriver,
}

/// Open (or create, on first start) a single-node cluster's store over `engine`.
pub fn start_single_node(
    engine: Arc<dyn Engine>,
    clock: Arc<Hlc>,
    config: StoreConfig,
    raft: RaftConfig,
    tick: Duration,
) -> Result<ReplicatedStore> {
    let mut rs = RaftStore::open(SINGLE_NODE_ID, engine.clone(), Arc::new(NoPeers), raft)?;
    if rs.groups().is_empty() {
        rs.create_group(
            GroupDesc {
                id: FIRST_GROUP,
                start: Vec::new(),
                end: KEY_MAX.to_vec(),
            },
            &[SINGLE_NODE_ID],
        )?;
        tracing::info!("initialised a new single-node cluster");
    }
    // Alone in the group: no need to wait for an election timeout.
    rs.campaign(FIRST_GROUP)?;
    let driver = RaftDriver::start(rs, tick);
    if !driver.wait_leader(FIRST_GROUP, Duration::from_secs(10)) {
        return Err(Error::Raft(
            "the single node did not become leader of its tablet".into(),
        ));
    }
    let replicator: Arc<dyn Replicator> =
        Arc::new(driver.replicator(FIRST_GROUP, Duration::from_secs(30)));
    let store = Store::open_replicated(engine, clock, config, Some(replicator))?;
    Ok(ReplicatedStore { store, driver })
}
