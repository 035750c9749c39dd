//! Hybrid logical timestamps as stored in keys.

use std::fmt;

/// A hybrid logical clock reading: wall time in nanoseconds since the Unix epoch plus a
/// logical counter that orders events within the same wall time. Ordered by `(wall,
/// logical)`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp {
    /// Nanoseconds since the Unix epoch.
    pub wall: u64,
    /// Logical counter within `wall`.
    pub logical: u32,
}

impl Timestamp {
    /// The smallest timestamp.
    pub const ZERO: Timestamp = Timestamp {
        wall: 0,
        logical: 0,
    };
    /// The largest timestamp.
    pub const MAX: Timestamp = Timestamp {
        wall: u64::MAX,
        logical: u32::MAX,
    };
    /// Encoded length in bytes.
    pub const ENCODED_LEN: usize = 12;

    /// A timestamp with the given wall time and a zero logical part.
    pub const fn new(wall: u64, logical: u32) -> Self {
        Timestamp { wall, logical }
    }

    /// The next timestamp after this one.
    pub fn next(self) -> Self {
        if self.logical == u32::MAX {
            Timestamp {
                wall: self.wall + 1,
                logical: 0,
            }
        } else {
            Timestamp {
                wall: self.wall,
                logical: self.logical + 1,
            }
        }
    }

    /// Big-endian encoding: sorts as the timestamp does.
    pub fn encode(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.wall.to_be_bytes());
        out[8..].copy_from_slice(&self.logical.to_be_bytes());
        out
    }

    /// Inverse of [`Timestamp::encode`].
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 12 {
            return None;
        }
        let wall = u64::from_be_bytes(b[..8].try_into().ok()?);
        let logical = u32::from_be_bytes(b[8..].try_into().ok()?);
        Some(Timestamp { wall, logical })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall, self.logical)
    }
}
