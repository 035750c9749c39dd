//! The `tessera` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::node::{Node, NodeConfig};

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
    },
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
        match cli.command {
            Command::StartSingleNode {
                store,
                listen,
                gc_window_secs,
            } => {
                let config = NodeConfig {
                    store,
                    listen,
                    gc_window_secs,
                };
                let node = Node::start(config).await?;
                node.serve_until_signal().await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
