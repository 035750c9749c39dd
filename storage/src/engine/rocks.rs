//! The RocksDB engine: one database per store, one column family per [`Cf`].

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, Options, ReadOptions, WriteOptions, DB};

use super::{Cf, Engine, Visit, Visitor, WriteBatch, WriteOp};
use crate::{Error, Result};

/// A RocksDB database opened with the column families of [`Cf::ALL`].
pub struct RocksEngine {
    db: DB,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine")
            .field("path", &self.db.path())
            .finish()
    }
}

impl RocksEngine {
    /// Open (creating if missing) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        let cfs = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        tracing::info!(path = %path.display(), "opened RocksDB store");
        Ok(RocksEngine { db })
    }

    fn handle(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| Error::Engine(format!("missing column family {}", cf.name())))
    }
}

impl Engine for RocksEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.handle(cf)?, key)?)
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        if let Some(e) = end {
            if start >= e {
                return Ok(());
            }
            ro.set_iterate_upper_bound(e.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.handle(cf)?, ro);
        it.seek(start);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if visit(k, v)? == Visit::Stop {
                return Ok(());
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                WriteOp::Put { cf, key, value } => wb.put_cf(self.handle(cf)?, key, value),
                WriteOp::Delete { cf, key } => wb.delete_cf(self.handle(cf)?, key),
                WriteOp::DeleteRange { cf, start, end } => {
                    wb.delete_range_cf(self.handle(cf)?, start, end)
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }
}
