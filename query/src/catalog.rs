//! The catalog: descriptors of tables, indexes and sequences, stored in the key space
//! and changed transactionally with the data.
//!
//! ```text
//!   /sys/catalog/version        u64, bumped by every schema change
//!   /sys/catalog/next_id        next descriptor id (ids are never reused)
//!   /sys/catalog/desc/<id>      JSON descriptor of a table or sequence
//!   /sys/seq/<id>               current value of a sequence
//! ```
//!
//! One database (`tessera`) with one schema (`public`). A statement reads the catalog
//! through its transaction: the version key is a tracked read, so a schema change that
//! commits concurrently makes the statement's transaction fail validation rather than
//! run against a stale schema. Decoded catalogs are cached per version.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tessera_cluster::Txn;
use tessera_storage::keycode::{prefix_end, KeyKind};

use crate::error::{Error, Result, SqlState};
use crate::types::SqlType;

/// The id of every table's primary index when it was created.
pub const PRIMARY_INDEX_ID: u64 = 1;

/// A column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDesc {
    /// Stable id, unique within the table, never reused; the row codec keys on it.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Type.
    pub ty: SqlType,
    /// NULLs allowed.
    pub nullable: bool,
    /// Default expression as SQL text.
    pub default: Option<String>,
    /// Encoded value for rows written before this column existed (ADD COLUMN).
    pub missing: Option<Vec<u8>>,
    /// A hidden column (the row id of a table without a primary key).
    pub hidden: bool,
}

/// An index (the primary index too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexDesc {
    /// Id within the table: the key prefix `/t/<table>/<index>`.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Column ids, in key order, with DESC flags.
    pub columns: Vec<(u32, bool)>,
    /// Whether values must be unique.
    pub unique: bool,
    /// Created by a UNIQUE constraint rather than CREATE INDEX.
    pub constraint: bool,
}

/// A table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDesc {
    /// Descriptor id: the key prefix `/t/<id>`.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Columns in definition order.
    pub columns: Vec<ColumnDesc>,
    /// The primary index; its key columns are the primary key.
    pub primary: IndexDesc,
    /// Secondary indexes.
    pub indexes: Vec<IndexDesc>,
    /// Next column id to hand out.
    pub next_column_id: u32,
    /// Next index id to hand out.
    pub next_index_id: u64,
    /// Foreign keys of this table (it is the referencing side).
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKeyDesc>,
}

/// A foreign key: `columns` of the owning table reference `ref_columns` of `table`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForeignKeyDesc {
    /// Constraint name.
    pub name: String,
    /// Referencing column ids.
    pub columns: Vec<u32>,
    /// The referenced table's id.
    pub table: u64,
    /// Referenced column ids (a primary key or unique index of `table`).
    pub ref_columns: Vec<u32>,
}

/// A sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequenceDesc {
    /// Descriptor id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// First value.
    pub start: i64,
    /// Step.
    pub increment: i64,
    /// Lower bound.
    pub min: i64,
    /// Upper bound.
    pub max: i64,
    /// The table column that owns it (SERIAL), dropped with its table.
    pub owned_by: Option<(u64, u32)>,
}

/// A descriptor as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Descriptor {
    /// A table.
    Table(TableDesc),
    /// A sequence.
    Sequence(SequenceDesc),
}

impl TableDesc {
    /// The visible column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDesc> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column with id `id`.
    pub fn column_by_id(&self, id: u32) -> Option<&ColumnDesc> {
        self.columns.iter().find(|c| c.id == id)
    }

    /// Position of column `id` in `columns`.
    pub fn position(&self, id: u32) -> Option<usize> {
        self.columns.iter().position(|c| c.id == id)
    }

    /// Whether the table has a hidden row id instead of a declared primary key.
    pub fn has_rowid(&self) -> bool {
        self.columns.iter().any(|c| c.hidden)
    }

    /// The columns users see.
    pub fn visible_columns(&self) -> impl Iterator<Item = &ColumnDesc> {
        self.columns.iter().filter(|c| !c.hidden)
    }

    /// Every index, primary first.
    pub fn all_indexes(&self) -> impl Iterator<Item = &IndexDesc> {
        std::iter::once(&self.primary).chain(self.indexes.iter())
    }

    /// Whether column `id` is part of the primary key.
    pub fn is_key_column(&self, id: u32) -> bool {
        self.primary.columns.iter().any(|(c, _)| *c == id)
    }
}

/// All descriptors at one catalog version.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The version these descriptors belong to.
    pub version: u64,
    /// Tables by name.
    pub tables: BTreeMap<String, Arc<TableDesc>>,
    /// Sequences by name.
    pub sequences: BTreeMap<String, Arc<SequenceDesc>>,
}

impl Catalog {
    /// The table named `name`, or 42P01.
    pub fn table(&self, name: &str) -> Result<&Arc<TableDesc>> {
        self.tables.get(name).ok_or_else(|| {
            Error::new(
                SqlState::UndefinedTable,
                format!("relation \"{name}\" does not exist"),
            )
        })
    }

    /// The table with descriptor id `id`.
    pub fn table_by_id(&self, id: u64) -> Option<&Arc<TableDesc>> {
        self.tables.values().find(|t| t.id == id)
    }

    /// Whether any relation (table, index, sequence) is called `name`.
    pub fn relation_exists(&self, name: &str) -> bool {
        self.tables.contains_key(name)
            || self.sequences.contains_key(name)
            || self
                .tables
                .values()
                .any(|t| t.all_indexes().any(|i| i.name == name))
    }

    /// The table owning the index named `name`.
    pub fn index_owner(&self, name: &str) -> Option<(&Arc<TableDesc>, &IndexDesc)> {
        self.tables
            .values()
            .find_map(|t| t.all_indexes().find(|i| i.name == name).map(|i| (t, i)))
    }
}

fn sys(name: &str) -> Vec<u8> {
    KeyKind::Sys(name.as_bytes().to_vec()).encode()
}

fn version_key() -> Vec<u8> {
    sys("catalog/version")
}

fn desc_prefix() -> Vec<u8> {
    sys("catalog/desc/")
}

fn desc_key(id: u64) -> Vec<u8> {
    [desc_prefix(), id.to_be_bytes().to_vec()].concat()
}

/// The key holding a sequence's current value.
pub fn sequence_key(id: u64) -> Vec<u8> {
    [sys("seq/"), id.to_be_bytes().to_vec()].concat()
}

fn read_u64(txn: &mut Txn, key: &[u8]) -> Result<u64> {
    Ok(match txn.get(key)? {
        Some(v) if v.len() == 8 => u64::from_be_bytes(v.try_into().expect("8 bytes")),
        Some(_) => return Err(Error::internal("corrupt catalog counter")),
        None => 0,
    })
}

/// Decoded catalogs shared by every session of a node, keyed by version.
#[derive(Debug, Default)]
pub struct CatalogCache {
    latest: Mutex<Option<Arc<Catalog>>>,
}

impl CatalogCache {
    /// The catalog as `txn` sees it.
    pub fn load(&self, txn: &mut Txn) -> Result<Arc<Catalog>> {
        let version = read_u64(txn, &version_key())?;
        if let Some(c) = &*self.latest.lock() {
            if c.version == version {
                return Ok(c.clone());
            }
        }
        let prefix = desc_prefix();
        let end = prefix_end(&prefix).expect("bounded prefix");
        let mut catalog = Catalog {
            version,
            ..Default::default()
        };
        let mut start = prefix.clone();
        loop {
            let page = txn.scan(&start, Some(&end), 256)?;
            let n = page.len();
            for (k, v) in &page {
                let d: Descriptor = serde_json::from_slice(v)
                    .map_err(|e| Error::internal(format!("corrupt descriptor {k:?}: {e}")))?;
                match d {
                    Descriptor::Table(t) => {
                        catalog.tables.insert(t.name.clone(), Arc::new(t));
                    }
                    Descriptor::Sequence(s) => {
                        catalog.sequences.insert(s.name.clone(), Arc::new(s));
                    }
                }
            }
            match page.last() {
                Some((k, _)) if n == 256 => start = [k.as_slice(), &[0]].concat(),
                _ => break,
            }
        }
        let catalog = Arc::new(catalog);
        // Only cache what is committed: a transaction's own uncommitted change has a
        // version the shared cache must not adopt before it commits.
        if !txn.has_writes() {
            let mut latest = self.latest.lock();
            if latest.as_ref().is_none_or(|c| c.version <= version) {
                *latest = Some(catalog.clone());
            }
        }
        Ok(catalog)
    }
}

/// Schema changes, written through a transaction.
pub struct CatalogWriter<'a> {
    txn: &'a mut Txn,
    /// Where the tables written need tablet boundaries (see [`crate::ranges::placement`]).
    splits: Vec<Vec<u8>>,
}

impl<'a> CatalogWriter<'a> {
    /// A writer over `txn`.
    pub fn new(txn: &'a mut Txn) -> Self {
        CatalogWriter {
            txn,
            splits: Vec::new(),
        }
    }

    /// The tablet boundaries the descriptors written so far need.
    pub fn splits(&self) -> &[Vec<u8>] {
        &self.splits
    }

    /// A fresh descriptor id.
    pub fn allocate_id(&mut self) -> Result<u64> {
        let key = sys("catalog/next_id");
        let next = read_u64(self.txn, &key)?.max(100);
        self.txn.put(key, (next + 1).to_be_bytes().to_vec())?;
        Ok(next)
    }

    fn bump_version(&mut self) -> Result<()> {
        let v = read_u64(self.txn, &version_key())?;
        self.txn
            .put(version_key(), (v + 1).to_be_bytes().to_vec())?;
        Ok(())
    }

    /// Create or replace a descriptor.
    pub fn put(&mut self, d: &Descriptor) -> Result<()> {
        let id = match d {
            Descriptor::Table(t) => {
                self.splits.extend(crate::ranges::placement(t));
                t.id
            }
            Descriptor::Sequence(s) => s.id,
        };
        let bytes = serde_json::to_vec(d).map_err(Error::internal)?;
        self.txn.put(desc_key(id), bytes)?;
        self.bump_version()
    }

    /// Remove a descriptor.
    pub fn delete(&mut self, id: u64) -> Result<()> {
        self.txn.delete(desc_key(id))?;
        self.bump_version()
    }
}
