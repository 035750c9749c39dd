//! The `tessera` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_cluster::control::{ControlRequest, ControlResponse};

use crate::node::{Node, NodeConfig, RaftSettings, StartError};

/// The default SQL port: next to PostgreSQL's 5432 without colliding with it.
pub const DEFAULT_SQL_PORT: u16 = 26257;

/// tessera: a distributed SQL database that speaks PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a single-node cluster (initialised on first start).
    StartSingleNode {
        /// Directory of the node's store.
        #[arg(long, default_value = "tessera-data", env = "TESSERA_STORE")]
        store: PathBuf,
        /// Address for SQL clients.
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_SQL_PORT)), env = "TESSERA_LISTEN")]
        listen: SocketAddr,
        /// How long old row versions are kept, in seconds.
        #[arg(long, default_value_t = 600)]
        gc_window_secs: u64,
        /// Address for traffic between nodes (unused alone; any free port by default).
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], 0)))]
        listen_rpc: SocketAddr,
        #[command(flatten)]
        raft: RaftSettings,
    },
    /// Start a node of a multi-node cluster. On first start it waits for `tessera init`
    /// (first node) or joins through `--join`; later starts rejoin with the stored identity.
    Start {
        /// Directory of the node's store.
        #[arg(long, default_value = "tessera-data", env = "TESSERA_STORE")]
        store: PathBuf,
        /// Address for SQL clients.
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_SQL_PORT)))]
        listen_sql: SocketAddr,
        /// Address for traffic between nodes.
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_RPC_PORT)))]
        listen_rpc: SocketAddr,
        /// Members to join through, comma-separated RPC addresses.
        #[arg(long, value_delimiter = ',')]
        join: Vec<SocketAddr>,
        /// How long old row versions are kept, in seconds.
        #[arg(long, default_value_t = 600)]
        gc_window_secs: u64,
        #[command(flatten)]
        raft: RaftSettings,
    },
    /// Start a local cluster of several nodes in one process, with stores in a temporary
    /// directory (removed on exit), and print one psql line per node.
    Demo {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
    },
    /// Initialise a new cluster on the node listening (RPC) at `--host`. Done once.
    Init {
        /// RPC address of the node to initialise.
        #[arg(long)]
        host: SocketAddr,
    },
}

/// The default port for traffic between nodes.
pub const DEFAULT_RPC_PORT: u16 = 26357;

/// A free loopback address (bound, then released for the node to take).
fn free_loopback() -> Result<SocketAddr, StartError> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    std::net::TcpListener::bind(any)
        .and_then(|l| l.local_addr())
        .map_err(|source| StartError::Listen { addr: any, source })
}

/// `tessera demo`: a local cluster in one process.
async fn demo(count: u16) -> Result<(), StartError> {
    let count = count.max(1);
    let dir = std::env::temp_dir().join(format!("tessera-demo-{}", std::process::id()));
    let rpc: Vec<SocketAddr> = (0..count)
        .map(|_| free_loopback())
        .collect::<Result<_, _>>()?;
    let mut starting = Vec::new();
    for (i, addr) in rpc.iter().enumerate() {
        let config = NodeConfig {
            store: dir.join(format!("node{}", i + 1)),
            listen: free_loopback()?,
            gc_window_secs: 600,
            listen_rpc: *addr,
            join: vec![rpc[0]],
            single: false,
            raft: RaftSettings::default(),
        };
        starting.push(tokio::spawn(Node::start(config)));
    }
    init(rpc[0]).await?;
    let mut nodes = Vec::new();
    for s in starting {
        nodes.push(
            s.await
                .map_err(|e| StartError::Init(format!("a node failed to start: {e}")))??,
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        if let Ok(addr) = n.local_addr() {
            println!(
                "node {}: psql \"postgresql://root@{}:{}/tessera?sslmode=disable\"",
                i + 1,
                addr.ip(),
                addr.port()
            );
        }
    }
    println!("Any node serves SQL. Ctrl-C stops the demo.");
    let serving: Vec<_> = nodes
        .into_iter()
        .map(|n| tokio::spawn(n.serve_until_signal()))
        .collect();
    for s in serving {
        let _ = s.await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `tessera init`: ask a node that has not joined a cluster to start one.
async fn init(host: SocketAddr) -> Result<(), StartError> {
    // The node may still be starting: keep trying to reach it for a while.
    let answer = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let r = tessera_cluster::control::control_call(
                host,
                &ControlRequest::Init,
                std::time::Duration::from_secs(10),
            );
            if r.is_ok() || std::time::Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    })
    .await
    .map_err(|e| StartError::Init(e.to_string()))?
    .map_err(|e| StartError::Init(format!("cannot reach {host}: {e}")))?;
    match answer {
        ControlResponse::Initialising => {
            println!("cluster initialised on {host}");
            Ok(())
        }
        ControlResponse::Refused(why) => Err(StartError::Init(why)),
        other => Err(StartError::Init(format!("unexpected answer {other:?}"))),
    }
}

/// Run the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let config = match cli.command {
            Command::StartSingleNode {
                store,
                listen,
                gc_window_secs,
                listen_rpc,
                raft,
            } => NodeConfig {
                store,
                listen,
                gc_window_secs,
                listen_rpc,
                join: Vec::new(),
                single: true,
                raft,
            },
            Command::Start {
                store,
                listen_sql,
                listen_rpc,
                join,
                gc_window_secs,
                raft,
            } => NodeConfig {
                store,
                listen: listen_sql,
                gc_window_secs,
                listen_rpc,
                join,
                single: false,
                raft,
            },
            Command::Init { host } => return init(host).await,
            Command::Demo { nodes } => return demo(nodes).await,
        };
        let node = Node::start(config).await?;
        node.serve_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
