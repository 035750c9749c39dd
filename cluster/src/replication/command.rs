//! The Raft command format: what a leaseholder proposes and every replica applies.
//!
//! ```text
//!   command = version: u8 (1; 2 with a split), proposal id: u64 BE, op count: u32 BE, op*,
//!             [split: right group id: u64 BE, len: u32 BE, split key]     (version 2)
//!   op      = kind: u8 (1 put, 2 delete, 3 delete range), cf: u8,
//!             len: u32 BE, bytes (key or start), [len: u32 BE, bytes (value or end)]
//! ```
//!
//! Decoding rejects anything malformed instead of guessing: a replica that cannot decode a
//! committed command must stop rather than apply something else.

use tessera_storage::{Cf, WriteBatch, WriteOp};

use crate::{Error, Result};

const VERSION: u8 = 1;
const VERSION_SPLIT: u8 = 2;

/// Writes to apply on every replica, tagged with the proposer's id for acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Chosen by the proposer to recognise its command once applied.
    pub id: u64,
    /// The writes, all inside the group's span of the `Data` column family.
    pub writes: WriteBatch,
    /// A split of the group, applied with the writes.
    pub split: Option<SplitTrigger>,
}

/// Cut the group at a user key: it keeps the keys below `key`, and a new group `right`
/// with the same replicas takes the keys from `key` to the group's end, with the data
/// already in place (every replica applied the same log up to this command).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitTrigger {
    /// The new group's id.
    pub right: u64,
    /// The user key where the new group begins.
    pub key: Vec<u8>,
}

fn cf_tag(cf: Cf) -> u8 {
    match cf {
        Cf::Data => 0,
        Cf::Raft => 1,
        Cf::Local => 2,
    }
}

fn cf_of(tag: u8) -> Result<Cf> {
    Ok(match tag {
        0 => Cf::Data,
        1 => Cf::Raft,
        2 => Cf::Local,
        _ => return Err(corrupt("column family")),
    })
}

fn corrupt(what: &str) -> Error {
    Error::Storage(tessera_storage::Error::Corrupt(format!(
        "raft command: bad {what}"
    )))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(corrupt(what));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_bytes(input: &mut &[u8], what: &str) -> Result<Vec<u8>> {
    let len = u32::from_be_bytes(take(input, 4, what)?.try_into().expect("4 bytes")) as usize;
    Ok(take(input, len, what)?.to_vec())
}

impl Command {
    /// The wire and log form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.writes.size_bytes() + 10 * self.writes.len());
        out.push(if self.split.is_some() {
            VERSION_SPLIT
        } else {
            VERSION
        });
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.writes.len() as u32).to_be_bytes());
        for op in self.writes.ops() {
            match op {
                WriteOp::Put { cf, key, value } => {
                    out.extend_from_slice(&[1, cf_tag(*cf)]);
                    put_bytes(&mut out, key);
                    put_bytes(&mut out, value);
                }
                WriteOp::Delete { cf, key } => {
                    out.extend_from_slice(&[2, cf_tag(*cf)]);
                    put_bytes(&mut out, key);
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    out.extend_from_slice(&[3, cf_tag(*cf)]);
                    put_bytes(&mut out, start);
                    put_bytes(&mut out, end);
                }
            }
        }
        if let Some(split) = &self.split {
            out.extend_from_slice(&split.right.to_be_bytes());
            put_bytes(&mut out, &split.key);
        }
        out
    }

    /// Parse the form [`Command::encode`] writes.
    pub fn decode(mut input: &[u8]) -> Result<Command> {
        let input = &mut input;
        let version = take(input, 1, "version")?[0];
        if version != VERSION && version != VERSION_SPLIT {
            return Err(corrupt("version"));
        }
        let id = u64::from_be_bytes(take(input, 8, "id")?.try_into().expect("8 bytes"));
        let n = u32::from_be_bytes(take(input, 4, "count")?.try_into().expect("4 bytes"));
        let mut writes = WriteBatch::new();
        for _ in 0..n {
            let head = take(input, 2, "op")?;
            let cf = cf_of(head[1])?;
            match head[0] {
                1 => {
                    let key = take_bytes(input, "key")?;
                    writes.put(cf, key, take_bytes(input, "value")?);
                }
                2 => writes.delete(cf, take_bytes(input, "key")?),
                3 => {
                    let start = take_bytes(input, "start")?;
                    writes.delete_range(cf, start, take_bytes(input, "end")?);
                }
                _ => return Err(corrupt("op kind")),
            }
        }
        let split = if version == VERSION_SPLIT {
            let right = u64::from_be_bytes(take(input, 8, "right")?.try_into().expect("8 bytes"));
            Some(SplitTrigger {
                right,
                key: take_bytes(input, "split key")?,
            })
        } else {
            None
        };
        if !input.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(Command { id, writes, split })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let mut writes = WriteBatch::new();
        writes.put(Cf::Data, b"k".to_vec(), b"v".to_vec());
        writes.delete(Cf::Data, b"gone".to_vec());
        writes.delete_range(Cf::Data, b"a".to_vec(), b"b".to_vec());
        let plain = Command {
            id: 42,
            writes: writes.clone(),
            split: None,
        };
        let split = Command {
            id: 43,
            writes,
            split: Some(SplitTrigger {
                right: 7,
                key: b"\x10m".to_vec(),
            }),
        };
        for cmd in [plain, split] {
            let bytes = cmd.encode();
            assert_eq!(Command::decode(&bytes).unwrap(), cmd);
            for cut in 0..bytes.len() {
                assert!(
                    Command::decode(&bytes[..cut]).is_err(),
                    "prefix of {cut} bytes"
                );
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(Command::decode(&extra).is_err());
        }
    }
}
