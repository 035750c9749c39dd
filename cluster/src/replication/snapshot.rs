//! Snapshots streamed in bounded chunks, and installed so that a crash cannot lose them.
//!
//! A replica too far behind (or new) catches up from a snapshot of its group's data span.
//! No side ever holds a whole tablet in memory, and no Raft message is larger than a
//! chunk:
//!
//! ```text
//!   leader                                         follower
//!   raft-rs asks Storage::snapshot()  → metadata only (index I, term, conf state)
//!   RaftStore diverts the MsgSnapshot → Outgoing
//!   every tick: up to N chunks  ───────────────▶   Incoming: each chunk staged in the
//!     chunk = [from, to) of the span, its pairs      Raft CF (r<group>'s'<seq>), no fsync
//!   after the last chunk:                          last chunk (to = span end): the
//!     report_snapshot(Finish)                        MsgSnapshot goes to raft-rs, whose
//!                                                    Ready installs it (below)
//! ```
//!
//! Chunks travel as `MsgSnapshot` messages whose data is a chunk header and its pairs, so
//! every transport carries them unchanged; the send rate is bounded per tick.
//!
//! **Fuzzy snapshots.** The leader pages through its data span between Ready cycles, while
//! it keeps applying. A chunk therefore shows each key as of *some* applied index `>= I`,
//! never below. That is enough because applying is blind: a command is the exact puts and
//! deletes to make, so after the follower replays every entry after `I` (which Raft makes
//! it do before it counts as caught up), each key holds the value of its last write, the
//! same as on the leader. Until then the follower serves nothing: only a leaseholder
//! serves reads, and a replica cannot win an election without the entries a majority
//! holds. The leader keeps its log from `I` on while a snapshot is being sent.
//!
//! **Coverage.** Each chunk names the key range it covers; the follower accepts a chunk
//! only when it starts exactly where the previous one ended, so the staged chunks cover
//! the span exactly once. A stream that starts at the span's beginning replaces any staged
//! one; a chunk out of place (lost, duplicated, reordered) is dropped, and the leader,
//! told the stream finished, probes, finds the follower still behind and sends a new one.
//!
//! **Installing.** One fsynced batch deletes the data span, replaces the log with the
//! snapshot's metadata (applied = truncated = `I`) and writes an *install marker*. Then
//! the staged chunks are copied into the span one batch per chunk, and the marker and the
//! staged chunks are deleted in the cycle's own fsynced batch. A store that opens with a
//! marker (it crashed while copying) copies again before the replica starts. The old data
//! and log are never dropped before the new data is durable in staging, so a crash at
//! any point leaves either the old replica or the complete snapshot.

use raft::prelude::{Message, MessageType};
use tessera_storage::{Cf, Engine, Visit, WriteBatch};

use super::log::group_key;
use crate::{Error, Result};

const CHUNK: u8 = b'C';
/// `Snapshot.data` of a snapshot that raft-rs asked for and the leader has yet to stream.
pub const TO_STREAM: &[u8] = b"G";
/// `Snapshot.data` of a snapshot whose chunks are all staged on this replica.
pub const STAGED: &[u8] = b"S";

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Storage(tessera_storage::Error::Corrupt(format!("snapshot: {what}")))
}

/// The install marker of `group`: present only while a snapshot is being copied in.
fn marker_key(group: u64) -> Vec<u8> {
    group_key(group, b'i')
}

fn staged_key(group: u64, seq: u32) -> Vec<u8> {
    let mut k = group_key(group, b's');
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn staged_range(group: u64) -> (Vec<u8>, Vec<u8>) {
    (group_key(group, b's'), group_key(group, b's' + 1))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn take_bytes<'a>(b: &mut &'a [u8]) -> Result<&'a [u8]> {
    let n = b
        .get(..4)
        .map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| corrupt("truncated chunk"))?;
    let v = b.get(4..4 + n).ok_or_else(|| corrupt("truncated chunk"))?;
    *b = &b[4 + n..];
    Ok(v)
}

/// One chunk: the key range `[from, to)` it covers and the pairs in it, encoded.
#[derive(Debug, PartialEq, Eq)]
struct Chunk<'a> {
    from: &'a [u8],
    to: &'a [u8],
    pairs: &'a [u8],
}

impl<'a> Chunk<'a> {
    fn encode(from: &[u8], to: &[u8], pairs: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + from.len() + to.len() + pairs.len());
        out.push(CHUNK);
        put_bytes(&mut out, from);
        put_bytes(&mut out, to);
        out.extend_from_slice(pairs);
        out
    }

    fn decode(mut b: &'a [u8]) -> Result<Self> {
        if b.first() != Some(&CHUNK) {
            return Err(corrupt("not a snapshot chunk"));
        }
        b = &b[1..];
        let from = take_bytes(&mut b)?;
        let to = take_bytes(&mut b)?;
        Ok(Chunk { from, to, pairs: b })
    }

    /// Every pair, checked to lie in `[from, to)` in ascending order.
    fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let mut b = self.pairs;
        let mut prev: Option<&[u8]> = None;
        while !b.is_empty() {
            let k = take_bytes(&mut b)?;
            let v = take_bytes(&mut b)?;
            if k < self.from || k >= self.to || prev.is_some_and(|p| p >= k) {
                return Err(corrupt("key out of order or outside its chunk"));
            }
            prev = Some(k);
            f(k, v);
        }
        Ok(())
    }
}

/// A snapshot the leader is streaming to one follower.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub group: u64,
    pub to: u64,
    /// The index the snapshot stands for; the leader keeps its log from here on.
    pub index: u64,
    /// The message raft-rs made (metadata, no data): every chunk is a copy of it.
    template: Message,
    /// Where the next chunk starts.
    next: Vec<u8>,
    done: bool,
}

impl Outgoing {
    /// Start streaming the snapshot raft-rs put in `msg`, from the span's first key.
    pub fn new(group: u64, msg: Message, span_start: &[u8]) -> Self {
        Outgoing {
            group,
            to: msg.to,
            index: msg.get_snapshot().get_metadata().index,
            template: msg,
            next: span_start.to_vec(),
            done: false,
        }
    }

    /// Whether the last chunk has been made.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk: pairs from `next` on, about `max_bytes` of them (at least one pair
    /// when any is left), as a message ready to send.
    pub fn next_chunk(
        &mut self,
        engine: &dyn Engine,
        span_end: &[u8],
        max_bytes: usize,
    ) -> Result<Message> {
        let mut pairs = Vec::new();
        let mut resume: Option<Vec<u8>> = None;
        engine.scan(Cf::Data, &self.next, Some(span_end), &mut |k, v| {
            if !pairs.is_empty() && pairs.len() + k.len() + v.len() + 8 > max_bytes {
                resume = Some(k.to_vec());
                return Ok(Visit::Stop);
            }
            put_bytes(&mut pairs, k);
            put_bytes(&mut pairs, v);
            Ok(Visit::Continue)
        })?;
        let to = match resume {
            Some(k) => k,
            None => {
                self.done = true;
                span_end.to_vec()
            }
        };
        let mut msg = self.template.clone();
        msg.mut_snapshot()
            .set_data(Chunk::encode(&self.next, &to, &pairs).into());
        self.next = to;
        Ok(msg)
    }
}

/// What a follower has staged of a snapshot stream.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// (index, term) of the snapshot being staged.
    id: Option<(u64, u64)>,
    /// Where the next chunk must start.
    expect: Vec<u8>,
    /// Chunks staged so far.
    staged: u32,
    /// The stream is complete and handed to raft-rs; nothing may touch the staging
    /// until the replica's next Ready installs (or declines) it.
    pub handed_over: bool,
}

/// What to do with a chunk that arrived.
#[derive(Debug)]
pub(crate) enum Received {
    /// Staged; more to come (or dropped as out of place).
    Pending,
    /// The last chunk: step this message (data [`STAGED`]) into raft-rs.
    Complete(Message),
}

impl Incoming {
    /// Stage one chunk of `msg` for `group` (span `[start, end)`). Out-of-place chunks
    /// are dropped; a chunk that does not decode or strays outside its range is an error
    /// (the stream is dropped, the replica goes on).
    pub fn receive(
        &mut self,
        engine: &dyn Engine,
        group: u64,
        span: &(Vec<u8>, Vec<u8>),
        mut msg: Message,
    ) -> Result<Received> {
        let meta = msg.get_snapshot().get_metadata();
        let id = (meta.index, meta.term);
        let data = msg.get_snapshot().get_data().to_vec();
        let chunk = Chunk::decode(&data)?;
        if self.handed_over {
            return Ok(Received::Pending);
        }
        if chunk.from == span.0.as_slice() {
            // A new stream: whatever was staged is dropped.
            let (s, e) = staged_range(group);
            let mut wb = WriteBatch::new();
            wb.delete_range(Cf::Raft, s, e);
            engine.write(wb, false)?;
            *self = Incoming {
                id: Some(id),
                expect: span.0.clone(),
                staged: 0,
                handed_over: false,
            };
        } else if self.id != Some(id) || chunk.from != self.expect.as_slice() {
            tracing::debug!(group, "snapshot chunk out of place; dropped");
            return Ok(Received::Pending);
        }
        if chunk.to > span.1.as_slice() || chunk.to <= chunk.from {
            *self = Incoming::default();
            return Err(corrupt("chunk outside the group's span"));
        }
        if let Err(e) = chunk.for_each(|_, _| {}) {
            *self = Incoming::default();
            return Err(e);
        }
        let mut wb = WriteBatch::new();
        wb.put(
            Cf::Raft,
            staged_key(group, self.staged),
            chunk.pairs.to_vec(),
        );
        engine.write(wb, false)?;
        self.staged += 1;
        self.expect = chunk.to.to_vec();
        if chunk.to != span.1.as_slice() {
            return Ok(Received::Pending);
        }
        self.handed_over = true;
        msg.mut_snapshot().set_data(STAGED.to_vec().into());
        Ok(Received::Complete(msg))
    }

    /// The handed-over snapshot was installed or declined: forget it, and (when declined)
    /// drop what was staged.
    pub fn finish(&mut self, engine: &dyn Engine, group: u64, installed: bool) -> Result<()> {
        if !installed {
            let (s, e) = staged_range(group);
            let mut wb = WriteBatch::new();
            wb.delete_range(Cf::Raft, s, e);
            engine.write(wb, false)?;
        }
        *self = Incoming::default();
        Ok(())
    }
}

/// First step of an install, into `batch` (which the caller writes with fsync before
/// [`copy_staged`]): drop the span's data and set the marker.
pub(crate) fn stage_install(batch: &mut WriteBatch, group: u64, span: &(Vec<u8>, Vec<u8>)) {
    batch.delete_range(Cf::Data, span.0.clone(), span.1.clone());
    batch.put(Cf::Raft, marker_key(group), Vec::new());
}

/// Copy the staged chunks into the span, one unsynced batch per chunk; returns the
/// number of pairs. The caller then calls [`stage_cleanup`] in an fsynced batch.
pub(crate) fn copy_staged(
    engine: &dyn Engine,
    group: u64,
    span: &(Vec<u8>, Vec<u8>),
) -> Result<usize> {
    let (_, staged_end) = staged_range(group);
    let mut pairs = 0;
    let mut seq = 0u32;
    while let Some(bytes) = engine.get(Cf::Raft, &staged_key(group, seq))? {
        let mut wb = WriteBatch::new();
        let mut b = bytes.as_slice();
        while !b.is_empty() {
            let k = take_bytes(&mut b)?;
            let v = take_bytes(&mut b)?;
            if k < span.0.as_slice() || k >= span.1.as_slice() {
                return Err(corrupt("staged key outside the group's span"));
            }
            wb.put(Cf::Data, k.to_vec(), v.to_vec());
            pairs += 1;
        }
        engine.write(wb, false)?;
        seq += 1;
    }
    // Chunks are numbered from 0 without gaps; anything past the first gap is not ours.
    let mut extra = false;
    engine.scan(
        Cf::Raft,
        &staged_key(group, seq),
        Some(&staged_end),
        &mut |_, _| {
            extra = true;
            Ok(Visit::Stop)
        },
    )?;
    if extra {
        return Err(corrupt(format!(
            "staged chunks of group {group} have a gap"
        )));
    }
    Ok(pairs)
}

/// Last step of an install: drop the marker and the staged chunks.
pub(crate) fn stage_cleanup(batch: &mut WriteBatch, group: u64) {
    let (s, e) = staged_range(group);
    batch.delete_range(Cf::Raft, s, e);
    batch.delete(Cf::Raft, marker_key(group));
}

/// On opening a store: finish an install that a crash interrupted (the marker is still
/// there), or drop chunks staged by a stream that never completed. Writes nothing when
/// there is neither.
pub(crate) fn recover(engine: &dyn Engine, group: u64, span: &(Vec<u8>, Vec<u8>)) -> Result<()> {
    let interrupted = engine.get(Cf::Raft, &marker_key(group))?.is_some();
    let (s, e) = staged_range(group);
    let mut staged = false;
    engine.scan(Cf::Raft, &s, Some(&e), &mut |_, _| {
        staged = true;
        Ok(Visit::Stop)
    })?;
    if interrupted {
        tracing::warn!(group, "finishing a snapshot install interrupted by a crash");
        let mut wb = WriteBatch::new();
        wb.delete_range(Cf::Data, span.0.clone(), span.1.clone());
        engine.write(wb, false)?;
        copy_staged(engine, group, span)?;
    }
    if interrupted || staged {
        let mut batch = WriteBatch::new();
        stage_cleanup(&mut batch, group);
        engine.write(batch, true)?;
    }
    Ok(())
}

/// Whether `msg` is a snapshot raft-rs made for this leader to stream.
pub(crate) fn is_to_stream(msg: &Message) -> bool {
    msg.get_msg_type() == MessageType::MsgSnapshot && msg.get_snapshot().get_data() == TO_STREAM
}

/// Whether `msg` is a chunk of a snapshot stream.
pub(crate) fn is_chunk(msg: &Message) -> bool {
    msg.get_msg_type() == MessageType::MsgSnapshot
        && msg.get_snapshot().get_data().first() == Some(&CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_storage::MemoryEngine;

    #[test]
    fn chunks_round_trip_and_reject_strays() {
        let mut pairs = Vec::new();
        put_bytes(&mut pairs, b"b");
        put_bytes(&mut pairs, b"1");
        put_bytes(&mut pairs, b"c");
        put_bytes(&mut pairs, b"2");
        let enc = Chunk::encode(b"a", b"d", &pairs);
        let c = Chunk::decode(&enc).unwrap();
        let mut seen = Vec::new();
        c.for_each(|k, v| seen.push((k.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(seen.len(), 2);
        let stray = Chunk::encode(b"a", b"c", &pairs);
        assert!(Chunk::decode(&stray).unwrap().for_each(|_, _| {}).is_err());
        assert!(Chunk::decode(&enc[..enc.len() - 1])
            .unwrap()
            .for_each(|_, _| {})
            .is_err());
        assert!(Chunk::decode(b"Zjunk").is_err());
    }

    #[test]
    fn paging_covers_the_span_once_in_bounded_chunks() {
        let engine = MemoryEngine::new();
        let mut wb = WriteBatch::new();
        for i in 0..100u32 {
            wb.put(Cf::Data, format!("k{i:03}").into_bytes(), vec![7u8; 50]);
        }
        wb.put(Cf::Data, b"z-outside".to_vec(), b"x".to_vec());
        engine.write(wb, true).unwrap();
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgSnapshot);
        let mut out = Outgoing::new(1, msg, b"k");
        let mut keys = Vec::new();
        let mut from = b"k".to_vec();
        let mut chunks = 0;
        while !out.is_done() {
            let m = out.next_chunk(&engine, b"l", 400).unwrap();
            let c = Chunk::decode(m.get_snapshot().get_data()).unwrap();
            assert_eq!(c.from, from.as_slice(), "chunks are contiguous");
            assert!(c.pairs.len() <= 400);
            c.for_each(|k, _| keys.push(k.to_vec())).unwrap();
            from = c.to.to_vec();
            chunks += 1;
        }
        assert_eq!(from, b"l".to_vec());
        assert_eq!(keys.len(), 100);
        assert!(chunks >= 15, "{chunks} chunks");
    }
}
