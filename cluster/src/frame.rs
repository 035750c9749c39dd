//! Frames: how every byte stream between nodes (Raft messages, KV requests, control
//! requests) is cut into messages, and what a node spends on reading them.
//!
//! ```text
//!   frame = len: u32 BE (of body) | crc32c: u32 BE (of body) | body
//! ```
//!
//! Invariants (the peer on the other end is not trusted to be well-behaved):
//! - A frame longer than the stream's limit is refused before anything is allocated
//!   for it, and the connection is closed by the caller.
//! - The body buffer grows with the bytes that actually arrive: a peer that announces a
//!   large frame and sends little costs little memory.
//! - A body whose checksum does not match is refused (a corrupt or foreign stream).
//! - The bytes of frames being read or served at once, across all of a node's
//!   connections, stay within a [`Budget`]: a reader waits for room before it reads a
//!   body, so many connections cannot together hold more than the budget.

use std::io::{self, Read, Write};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// CRC-32C (Castagnoli), the checksum of every frame body.
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The largest body a buffer is given up front; beyond it, it grows as bytes arrive.
const FIRST_CHUNK: usize = 64 << 10;

/// The bytes of one frame holding `body`.
pub(crate) fn encode_frame(body: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&CRC.checksum(body).to_be_bytes());
    frame.extend_from_slice(body);
    Ok(frame)
}

/// Write one frame and flush.
pub(crate) fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    w.write_all(&encode_frame(body)?)?;
    w.flush()
}

/// Read one frame of at most `max` bytes.
pub(crate) fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let (len, sum) = read_head(r, max)?;
    read_body(r, len, sum)
}

/// Read one frame of at most `max` bytes, holding room for it in `budget` (released
/// when the returned reservation is dropped: after the frame has been dealt with).
pub(crate) fn read_frame_within(
    r: &mut impl Read,
    max: usize,
    budget: &Arc<Budget>,
) -> io::Result<(Vec<u8>, Reservation)> {
    let (len, sum) = read_head(r, max.min(budget.total))?;
    let room = budget.reserve(len);
    Ok((read_body(r, len, sum)?, room))
}

fn read_head(r: &mut impl Read, max: usize) -> io::Result<(usize, u32)> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let sum = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    Ok((len, sum))
}

fn read_body(r: &mut impl Read, len: usize, sum: u32) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(len.min(FIRST_CHUNK));
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if CRC.checksum(&body) != sum {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame checksum mismatch",
        ));
    }
    Ok(body)
}

/// Bytes that frames in flight may hold at once; see the module docs.
#[derive(Debug)]
pub(crate) struct Budget {
    total: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

impl Budget {
    /// A budget of `total` bytes.
    pub(crate) fn new(total: usize) -> Arc<Budget> {
        Arc::new(Budget {
            total,
            used: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// Wait until `n` bytes (at most the total) are free and take them.
    fn reserve(self: &Arc<Self>, n: usize) -> Reservation {
        let n = n.min(self.total);
        let mut used = self.used.lock();
        while *used + n > self.total {
            self.freed.wait(&mut used);
        }
        *used += n;
        Reservation {
            budget: self.clone(),
            n,
        }
    }

    /// Bytes taken now.
    #[cfg(test)]
    fn used(&self) -> usize {
        *self.used.lock()
    }
}

/// Room held in a [`Budget`]; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    n: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        *self.budget.used.lock() -= self.n;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r, 16).unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 16).unwrap(), b"");
        assert!(r.is_empty());

        // Over the limit: refused from the header alone.
        let mut r = &wire[..];
        let e = read_frame(&mut r, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("exceeds the limit"), "{e}");

        // A flipped body byte.
        let mut bad = wire.clone();
        bad[9] ^= 1;
        let e = read_frame(&mut &bad[..], 16).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");

        // A header that announces more than arrives.
        let mut short = Vec::new();
        short.extend_from_slice(&(1u32 << 30).to_be_bytes());
        short.extend_from_slice(&0u32.to_be_bytes());
        short.extend_from_slice(b"abc");
        let e = read_frame(&mut &short[..], usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_budget_holds_readers_back_until_room_is_freed() {
        let budget = Budget::new(10);
        let mut wire = Vec::new();
        write_frame(&mut wire, &[7u8; 8]).unwrap();
        let (body, held) = read_frame_within(&mut &wire[..], 100, &budget).unwrap();
        assert_eq!(body.len(), 8);
        assert_eq!(budget.used(), 8);
        let waiting = {
            let budget = budget.clone();
            let wire = wire.clone();
            std::thread::spawn(move || {
                let (_, room) = read_frame_within(&mut &wire[..], 100, &budget).unwrap();
                drop(room);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting.is_finished(), "a reader went past a full budget");
        drop(held);
        waiting.join().unwrap();
        assert_eq!(budget.used(), 0);
    }
}
