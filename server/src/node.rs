//! A running node: its store, its SQL listener, its background work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tessera_cluster::replication::RaftConfig;
use tessera_cluster::{ClusterNode, Db, Hlc, NodeOptions, Store, StoreConfig, SystemClock};
use tessera_query::QueryNode;
use tessera_storage::RocksEngine;
use tokio::net::TcpListener;

use crate::handler::ConnectionFactory;

/// Settings of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Directory of the store (created if missing).
    pub store: PathBuf,
    /// Address for SQL clients.
    pub listen: SocketAddr,
    /// How long old MVCC versions are kept, in seconds.
    pub gc_window_secs: u64,
    /// Address for Raft and control traffic between nodes.
    pub listen_rpc: SocketAddr,
    /// Members to ask for admission on first start.
    pub join: Vec<SocketAddr>,
    /// Start as a single-node cluster on first start.
    pub single: bool,
    /// Replication timing and log retention.
    pub raft: RaftSettings,
}

/// Replication settings a user may change (`tessera start --help`).
#[derive(Clone, Debug, clap::Args)]
pub struct RaftSettings {
    /// Raft tick in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub raft_tick_ms: u64,
    /// Ticks without a leader before a follower campaigns (10 ticks of 100 ms: a lost
    /// leaseholder is replaced in 1–2 s).
    #[arg(long, default_value_t = 10)]
    pub raft_election_ticks: usize,
    /// Applied log entries kept per tablet; a replica further behind gets a snapshot.
    #[arg(long, default_value_t = 10_000)]
    pub raft_log_keep: u64,
    /// Rate at which a snapshot streams to a replica that is catching up, in MiB/s (sent
    /// in chunks of 1 MiB, a whole number of them per tick).
    #[arg(long, default_value_t = 40)]
    pub raft_snapshot_mib_per_sec: u64,
    /// The most any node's clock may be ahead of another's, in milliseconds; a new
    /// leaseholder waits this long before its first write.
    #[arg(long, default_value_t = 500)]
    pub max_offset_ms: u64,
    /// A tablet larger than this many bytes is split in two (CockroachDB's
    /// `range_max_bytes`).
    #[arg(long, default_value_t = 64 << 20)]
    pub range_max_bytes: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            raft_tick_ms: 100,
            raft_election_ticks: 10,
            raft_log_keep: 10_000,
            raft_snapshot_mib_per_sec: 40,
            max_offset_ms: 500,
            range_max_bytes: 64 << 20,
        }
    }
}

/// A started node.
pub struct Node {
    listener: TcpListener,
    query: Arc<QueryNode>,
    store: Arc<Store>,
    /// Identity, replication and the transport to peers.
    cluster: ClusterNode,
}

/// Errors that stop a node from starting, or from serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open store {path}: {source}")]
    Store {
        /// Store directory.
        path: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `tessera init` failed.
    #[error("init failed: {0}")]
    Init(String),
    /// Replication stopped because the store could not persist (disk full, I/O error):
    /// the node stops serving so that it restarts from what is on disk.
    #[error("the node stopped serving: replication failed: {0}")]
    Replication(String),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Node {
    /// Open the store and bind the listener.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let path = config.store.display().to_string();
        let store_err = |e: Box<dyn std::error::Error + Send + Sync>| StartError::Store {
            path: path.clone(),
            source: e,
        };
        std::fs::create_dir_all(&config.store).map_err(|e| store_err(Box::new(e)))?;
        let engine = RocksEngine::open(&config.store).map_err(|e| store_err(Box::new(e)))?;
        let clock = Arc::new(Hlc::new(Arc::new(SystemClock)));
        let store_config = StoreConfig {
            gc_window_nanos: config.gc_window_secs * 1_000_000_000,
            max_clock_offset_nanos: config.raft.max_offset_ms * 1_000_000,
            split_bytes: config.raft.range_max_bytes.max(1),
            ..Default::default()
        };
        let options = NodeOptions {
            rpc_listen: config.listen_rpc,
            join: config.join.clone(),
            single: config.single,
            raft: RaftConfig {
                election_tick: config.raft.raft_election_ticks.max(3),
                log_keep_entries: config.raft.raft_log_keep.max(1),
                snapshot_chunk_bytes: 1 << 20,
                snapshot_chunks_per_tick: (config.raft.raft_snapshot_mib_per_sec
                    * config.raft.raft_tick_ms
                    / 1000)
                    .max(1) as usize,
                ..RaftConfig::default()
            },
            tick: Duration::from_millis(config.raft.raft_tick_ms.max(1)),
            store: store_config,
        };
        let engine: Arc<dyn tessera_storage::Engine> = Arc::new(engine);
        let cluster =
            tokio::task::spawn_blocking(move || ClusterNode::start(engine, clock, options))
                .await
                .map_err(|e| store_err(Box::new(e)))?
                .map_err(|e| store_err(Box::new(e)))?;
        let store = cluster.store.clone();
        let query = QueryNode::new(Db::new(store.clone()));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Ok(Node {
            listener,
            query,
            store,
            cluster,
        })
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections until SIGINT or SIGTERM, then stop.
    pub async fn serve_until_signal(self) -> Result<(), StartError> {
        let addr = self
            .listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        tracing::info!(%addr, "tessera is ready");
        println!(
            "tessera is ready: psql \"postgresql://root@{}:{}/tessera?sslmode=disable\"",
            addr.ip(),
            addr.port()
        );
        let gc_store = self.store.clone();
        let gc = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let store = gc_store.clone();
                match tokio::task::spawn_blocking(move || store.gc_once()).await {
                    // Only the leaseholder collects; the others apply what it removes.
                    Ok(Err(tessera_cluster::Error::NotLeaseholder { .. })) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection failed"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection task failed"),
                    Ok(Ok(_)) => {}
                }
            }
        });
        // Open transactions that hold intents tell their leaseholder they are alive, so
        // that their intents are not taken for those of a crashed gateway.
        let hb_store = self.store.clone();
        let heartbeat = tokio::spawn(async move {
            let every = Duration::from_nanos(hb_store.config().txn_heartbeat_nanos.max(1_000_000));
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let store = hb_store.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || store.heartbeat_once()).await {
                    tracing::warn!(error = %e, "transaction heartbeat task failed");
                }
            }
        });
        let factory = ConnectionFactory::new(self.query.clone());
        let accept = async {
            loop {
                match self.listener.accept().await {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let handlers = factory.connection();
                        tokio::spawn(async move {
                            if let Err(e) = crate::socket::serve(socket, handlers).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        // Fail-stop: a node whose Raft driver could not persist must not go on serving
        // from state it could not write.
        let driver = self.cluster.driver.clone();
        let failed = async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if let Some(why) = driver.failure() {
                    return why;
                }
            }
        };
        let result = tokio::select! {
            _ = accept => Ok(()),
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(())
            }
            why = failed => {
                tracing::error!(reason = %why, "replication failed; the node stops serving and must be restarted");
                Err(StartError::Replication(why))
            }
        };
        gc.abort();
        heartbeat.abort();
        result
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
