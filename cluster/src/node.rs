//! A node's life in a cluster: identity, bootstrap, joining, peers.
//!
//! ```text
//!   first start, single node      : become node 1, bootstrap the first tablet alone
//!   first start, `tessera init`   : the one node asked becomes node 1 and bootstraps
//!   first start, --join ADDR,...  : ask a member for an id; start an empty replica of
//!                                   the first tablet; the leader adds it as a learner,
//!                                   sends a snapshot, then promotes it to voter
//!   restart                       : node id and replicas come back from the store
//! ```
//!
//! Invariants:
//! - A node id is handed out once, by the leader of the first tablet, and is written
//!   (with the node's address) through Raft before the joining node hears it: two nodes
//!   never share an id, and every member learns every address from its own copy of the
//!   tablet (`\x01node/<id>` keys, outside the SQL key space).
//! - The identity is stored in the node-local column family before the node takes part;
//!   an empty store can only join as a new node, never impersonate an old one.
//! - A cluster is initialised once: `Init` on a node that already has an identity or a
//!   tablet is refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tessera_storage::{Cf, Engine, Visit, WriteBatch};

use crate::control::{control_call, ControlRequest, ControlResponse};
use crate::replication::{GroupDesc, RaftConfig, RaftDriver, RaftStore, TcpTransport, FIRST_GROUP};
use crate::store::tablet::Descriptor;
use crate::store::{Replicator, KEY_MAX};
use crate::{Error, Hlc, Result, Store, StoreConfig, TcpPeers};

const NODE_ID_KEY: &[u8] = b"node/id";
const ADDR_PREFIX: &[u8] = b"\x01node/";

fn addr_key(id: u64) -> Vec<u8> {
    let mut k = ADDR_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// How a node starts.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Address for Raft and control traffic; also the node's identity on the network.
    pub rpc_listen: SocketAddr,
    /// Members to ask for admission on first start (empty: wait for `init`, or start
    /// alone when `single`).
    pub join: Vec<SocketAddr>,
    /// Start as a single-node cluster on first start.
    pub single: bool,
    /// Raft timing and sizes.
    pub raft: RaftConfig,
    /// Raft tick.
    pub tick: Duration,
    /// Store settings.
    pub store: StoreConfig,
}

/// A started node.
pub struct ClusterNode {
    /// This node's id.
    pub node_id: u64,
    /// The store the KV API uses.
    pub store: Arc<Store>,
    /// The Raft driver.
    pub driver: Arc<RaftDriver>,
    /// The Raft and control transport.
    pub transport: Arc<TcpTransport>,
}

fn first_group() -> GroupDesc {
    GroupDesc {
        id: FIRST_GROUP,
        start: Vec::new(),
        end: KEY_MAX.to_vec(),
        generation: 1,
    }
}

fn stored_id(engine: &Arc<dyn Engine>) -> Result<Option<u64>> {
    Ok(engine
        .get(Cf::Local, NODE_ID_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_be_bytes))
}

fn save_id(engine: &Arc<dyn Engine>, id: u64) -> Result<()> {
    let mut b = WriteBatch::new();
    b.put(Cf::Local, NODE_ID_KEY.to_vec(), id.to_be_bytes().to_vec());
    Ok(engine.write(b, true)?)
}

/// Every member's address as recorded in the first tablet (this node's copy).
fn known_addrs(engine: &Arc<dyn Engine>) -> Result<Vec<(u64, SocketAddr)>> {
    let mut end = ADDR_PREFIX.to_vec();
    end.push(0xFF);
    let mut out = Vec::new();
    engine.scan(Cf::Data, ADDR_PREFIX, Some(&end), &mut |k, v| {
        let id = k[ADDR_PREFIX.len()..]
            .try_into()
            .ok()
            .map(u64::from_be_bytes);
        let addr = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        if let (Some(id), Some(addr)) = (id, addr) {
            out.push((id, addr));
        }
        Ok(Visit::Continue)
    })?;
    Ok(out)
}

impl ClusterNode {
    /// Start the node over `engine`. On a first start without `single` this blocks until
    /// the node is initialised or admitted by a member.
    pub fn start(engine: Arc<dyn Engine>, clock: Arc<Hlc>, opts: NodeOptions) -> Result<Self> {
        let transport = TcpTransport::bind(opts.rpc_listen)
            .map_err(|e| Error::Raft(format!("cannot listen on {}: {e}", opts.rpc_listen)))?;
        let own = transport.local_addr();
        let (node_id, bootstrap) = match stored_id(&engine)? {
            Some(id) => (id, false),
            None if opts.single => (1, true),
            None => Self::await_admission(&engine, &transport, &opts)?,
        };
        save_id(&engine, node_id)?;
        for (id, addr) in known_addrs(&engine)? {
            if id != node_id {
                transport.set_peer(id, addr);
            }
        }
        let mut rs = RaftStore::open(
            node_id,
            engine.clone(),
            transport.clone(),
            opts.raft.clone(),
        )?;
        if rs.groups().is_empty() {
            let voters: &[u64] = if bootstrap { &[1] } else { &[] };
            rs.create_group(first_group(), voters)?;
        }
        let alone = rs.voters(FIRST_GROUP) == [node_id];
        let groups = rs.groups();
        for g in &groups {
            if rs.voters(g.id) == [node_id] {
                // The only voter: no need to wait for an election timeout.
                rs.campaign(g.id)?;
            }
        }
        let driver = Arc::new(RaftDriver::start(rs, opts.tick));
        transport.set_inbox(driver.inbox());
        let replicators = driver.replicators(Duration::from_secs(30));
        let replicator = Arc::new(replicators.group(FIRST_GROUP));
        if bootstrap {
            if !driver.wait_leader(FIRST_GROUP, Duration::from_secs(10)) {
                return Err(Error::Raft("the first node did not become leader".into()));
            }
            let mut b = WriteBatch::new();
            b.put(Cf::Data, addr_key(node_id), own.to_string().into_bytes());
            replicator.replicate(b)?;
            tracing::info!(node_id, %own, "initialised a new cluster");
        } else if alone && !driver.wait_leader(FIRST_GROUP, Duration::from_secs(10)) {
            return Err(Error::Raft("the only voter did not become leader".into()));
        }
        let mut tablets = Vec::new();
        for g in &groups {
            let r: Arc<dyn Replicator> = Arc::new(replicators.group(g.id));
            tablets.push((Descriptor::from_group(g)?, Some(r)));
        }
        let store =
            Store::open_tablets(engine.clone(), clock, opts.store.clone(), node_id, tablets)?;
        // Splits applied from now on (and any applied since the driver started) add
        // their tablets to the store.
        let splitting = store.clone();
        driver.on_split(Box::new(move |left, right| {
            let r: Arc<dyn Replicator> = Arc::new(replicators.group(right.id));
            if let Err(e) = splitting.apply_split(left, right, r) {
                tracing::error!(error = %e, "a split could not be installed in the store");
            }
        }));
        // Serve KV requests of other nodes, and forward ours to the leaseholder.
        let peers = transport.clone();
        let own_ip = transport.local_addr().ip();
        store.set_peers(Arc::new(TcpPeers::new(
            own_ip,
            Arc::new(move |id| peers.peer_addr(id)),
        )));
        let serving = store.clone();
        transport.set_kv_handler(Arc::new(move |req: &[u8]| serving.serve_remote(req)));
        let node = ClusterNode {
            node_id,
            store,
            driver,
            transport,
        };
        node.serve_control(engine.clone(), replicator);
        node.refresh_peers(engine);
        tracing::info!(node_id, %own, "node started");
        Ok(node)
    }

    /// First start without identity: wait for `INIT` or get admitted through `--join`.
    fn await_admission(
        engine: &Arc<dyn Engine>,
        transport: &Arc<TcpTransport>,
        opts: &NodeOptions,
    ) -> Result<(u64, bool)> {
        let init = Arc::new(Mutex::new(false));
        let flag = init.clone();
        transport.set_control_handler(Arc::new(move |req| match req {
            ControlRequest::Init => {
                let mut asked = flag.lock();
                if *asked {
                    return refused("the cluster is already being initialised");
                }
                *asked = true;
                ControlResponse::Initialising
            }
            _ => refused("this node has not joined a cluster yet"),
        }));
        let own = transport.local_addr();
        if opts.join.is_empty() {
            tracing::info!(%own, "waiting for `tessera init`");
        }
        loop {
            if *init.lock() {
                return Ok((1, true));
            }
            for addr in &opts.join {
                if *addr == own {
                    continue;
                }
                let join = ControlRequest::Join { addr: own };
                match control_call(*addr, &join, Duration::from_secs(5)) {
                    Ok(ControlResponse::Joined { id, members }) => {
                        tracing::info!(node_id = id, via = %addr, "joined the cluster");
                        save_id(engine, id)?;
                        for (peer, a) in members {
                            if peer != id {
                                transport.set_peer(peer, a);
                            }
                        }
                        return Ok((id, false));
                    }
                    Ok(answer) => {
                        tracing::debug!(via = %addr, ?answer, "join refused; retrying")
                    }
                    Err(e) => tracing::debug!(via = %addr, error = %e, "join failed; retrying"),
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Answer `Status` (this node and the leaseholder it knows),
    /// `Init` (refused: already part of a cluster) and `Join` (on the leader: hand out
    /// an id, record the address through Raft, start adding the member).
    fn serve_control(
        &self,
        engine: Arc<dyn Engine>,
        replicator: Arc<crate::replication::GroupReplicator>,
    ) {
        let driver = self.driver.clone();
        let transport = self.transport.clone();
        let node_id = self.node_id;
        let joins = Arc::new(Mutex::new(()));
        let members = self.store.clone();
        self.transport.set_control_handler(Arc::new(move |req| {
            let addr = match req {
                ControlRequest::Init => return refused("the cluster is already initialised"),
                ControlRequest::Status => {
                    return ControlResponse::Status {
                        node: node_id,
                        leaseholder: driver.leader_of(FIRST_GROUP),
                    }
                }
                ControlRequest::Join { addr } => addr,
            };
            if driver.leader_of(FIRST_GROUP) != Some(node_id) {
                return refused("not the leader");
            }
            let _one_at_a_time = joins.lock();
            let known = match known_addrs(&engine) {
                Ok(k) => k,
                Err(e) => return refused(&e.to_string()),
            };
            // A node that asks again (its answer was lost) gets the same id.
            let id = match known.iter().find(|(_, a)| *a == addr) {
                Some((id, _)) => *id,
                None => {
                    let id = known.iter().map(|(i, _)| *i).max().unwrap_or(0) + 1;
                    let mut b = WriteBatch::new();
                    b.put(Cf::Data, addr_key(id), addr.to_string().into_bytes());
                    if let Err(e) = replicator.replicate(b) {
                        return refused(&e.to_string());
                    }
                    id
                }
            };
            transport.set_peer(id, addr);
            for range in members.ranges() {
                driver.add_member(range.desc.range_id, id);
            }
            ControlResponse::Joined {
                id,
                members: known_addrs(&engine).unwrap_or_default(),
            }
        }));
    }

    /// Keep the transport's peer addresses in step with the replicated member list.
    fn refresh_peers(&self, engine: Arc<dyn Engine>) {
        let transport = self.transport.clone();
        let node_id = self.node_id;
        let _ = std::thread::Builder::new()
            .name("peer-refresh".into())
            .spawn(move || loop {
                if let Ok(addrs) = known_addrs(&engine) {
                    for (id, addr) in addrs {
                        if id != node_id {
                            transport.set_peer(id, addr);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            });
    }
}

fn refused(why: &str) -> ControlResponse {
    ControlResponse::Refused(why.to_string())
}
