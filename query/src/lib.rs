//! # tessera query
//!
//! SQL on top of the KV transaction API: the catalog, the row codec, DataFusion
//! planning over one `TableProvider` per table, and execution of DDL and DML.
//!
//! ```text
//!   Session::execute(Statement)
//!     ├─ DDL  ──▶ ddl      ──▶ catalog (descriptors in /sys, changed in the txn)
//!     ├─ DML  ──▶ dml      ──▶ DataFusion query for the rows, codec, Txn::put/delete
//!     └─ SELECT ─▶ DataFusion ──▶ KvTable::scan ──▶ KvScanExec ──▶ Txn::scan
//! ```
//!
//! The layer never learns where a key lives: everything goes through
//! `tessera_cluster::Txn`. Errors carry PostgreSQL SQLSTATEs ([`SqlState`]).

mod advisory;
mod assign;
mod bpchar;
mod builtins;
mod catalog;
mod checked;
mod codec;
mod copy;
mod ddl;
mod dml;
mod error;
mod foreign_key;
mod interval;
mod json;
mod params;
mod pg_catalog;
mod plan_rewrite;
mod provider;
mod ranges;
mod result_columns;
mod row_write;
mod sequence;
mod session;
mod txn_slot;
mod types;
mod utility;

pub use bpchar::{pad as pad_char, padded_len as char_len};
pub use builtins::SERVER_VERSION;
pub use catalog::{Catalog, ColumnDesc, IndexDesc, TableDesc};
pub use copy::CopyFormat;
pub use datafusion::arrow;
pub use datafusion::common::ScalarValue;
pub use datafusion::sql::sqlparser::ast::Statement;
pub use error::{Error, ErrorFields, Result, SqlState};
pub use interval::parse_interval;
pub use params::{bind as bind_params, literal_sql};
pub use session::{parse, Description, Output, QueryNode, Session, TxnState};
pub use types::{SqlType, PG_TYPE_KEY};
