//! # tessera server
//!
//! The node process: the `tessera` command line, the PostgreSQL wire protocol front end
//! and the wiring of the layers below it.
//!
//! ```text
//!   TCP ──▶ socket::serve (frames::FrameGuard, pgwire's codec) ──▶ Connection
//!                                               │ simple + extended query handlers
//!                                               ▼
//!                                       tessera_query::Session ──▶ KV ──▶ RocksDB
//! ```
//!
//! The wire layer stays thin: it turns protocol messages into `Session` calls and
//! `Output`s into protocol messages (RowDescription, DataRow in text or binary,
//! CommandComplete with PostgreSQL's tags, ErrorResponse with the SQLSTATE). It never
//! looks at SQL text itself.

pub mod cli;
mod encode;
mod frames;
mod handler;
mod node;
mod params;
mod socket;

pub use node::{Node, NodeConfig};
