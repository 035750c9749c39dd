//! A checker of list-append histories (the approach of Elle, reduced to what the
//! workloads here need).
//!
//! Every key holds a list of unique numbers; a transaction reads lists and appends to
//! them (an append reads the list and writes it back one longer). Because every value
//! is unique and lists only grow, the final list of a key gives the order of the
//! writes to it, and a read names the exact write it saw (its last element):
//! - `ww`: the writer of element i precedes the writer of element i + 1;
//! - `wr`: the writer of the last element a transaction read precedes the reader;
//! - `rw`: a reader precedes the writer of the element after the last one it read;
//! - real time: a transaction whose commit returned before another began precedes it.
//!
//! A strictly serializable history has no cycle in that graph; every list a committed
//! transaction read must be a prefix of the final list; no element written by a
//! transaction that failed may appear, and no committed append may be missing.

use std::collections::{BTreeMap, HashMap};

/// The key of list `k`.
pub fn list_key(k: u32) -> Vec<u8> {
    format!("\x10list{k}").into_bytes()
}

/// A stored list (absent: empty).
pub fn decode_list(v: Option<Vec<u8>>) -> Vec<u32> {
    v.map(|v| {
        v.chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    })
    .unwrap_or_default()
}

/// The stored form of a list.
pub fn encode_list(list: &[u32]) -> Vec<u8> {
    list.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// One operation of a transaction: a read of a key's list, or an append to it.
#[derive(Clone, Debug)]
pub enum Op {
    Read(u32, Vec<u32>),
    Append(u32, u32),
}

/// A transaction that committed, with what it did and saw.
#[derive(Clone, Debug)]
pub struct Committed {
    pub id: usize,
    pub ops: Vec<Op>,
    /// A logical time at which it began, and at which its commit returned (`None`:
    /// unknown, or not tracked); a transaction that committed before another began
    /// precedes it (strict serializability).
    pub began: u64,
    pub ended: Option<u64>,
}

/// xorshift64*, seeded per thread.
pub struct Rng(pub u64);

impl Rng {
    /// The next number of the sequence.
    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n
    }
}

/// Check the history; `Err` describes the first anomaly found.
pub fn check(
    committed: &[Committed],
    failed: &[u32],
    finals: &BTreeMap<u32, Vec<u32>>,
) -> Result<(), String> {
    let mut writer: HashMap<u32, usize> = HashMap::new();
    for t in committed {
        for op in &t.ops {
            if let Op::Append(_, v) = op {
                writer.insert(*v, t.id);
            }
        }
    }
    for (k, list) in finals {
        for v in list {
            if failed.contains(v) {
                return Err(format!(
                    "key {k} holds {v}, written by a failed transaction"
                ));
            }
            if !writer.contains_key(v) {
                return Err(format!("key {k} holds {v}, which no transaction wrote"));
            }
        }
    }
    for t in committed {
        for op in &t.ops {
            if let Op::Append(k, v) = op {
                if !finals[k].contains(v) {
                    return Err(format!("committed append {v} to key {k} was lost"));
                }
            }
        }
    }
    // Edges between committed transactions.
    let mut edges: HashMap<usize, Vec<(usize, String)>> = HashMap::new();
    let mut edge = |from: usize, to: usize, why: String| {
        if from != to {
            edges.entry(from).or_default().push((to, why));
        }
    };
    for (k, list) in finals {
        for pair in list.windows(2) {
            edge(writer[&pair[0]], writer[&pair[1]], format!("ww on key {k}"));
        }
    }
    for t in committed {
        for op in &t.ops {
            let Op::Read(k, seen) = op else { continue };
            let full = &finals[k];
            if !full.starts_with(seen) {
                return Err(format!(
                    "transaction {} read {seen:?} of key {k}, not a prefix of {full:?}",
                    t.id
                ));
            }
            if let Some(last) = seen.last() {
                edge(writer[last], t.id, format!("wr on key {k}"));
            }
            if let Some(next) = full.get(seen.len()) {
                edge(t.id, writer[next], format!("rw on key {k}"));
            }
        }
    }
    // Real time: a transaction whose commit returned before another began precedes it.
    for a in committed {
        let Some(ended) = a.ended else { continue };
        for b in committed {
            if ended < b.began {
                edge(a.id, b.id, "real time".to_string());
            }
        }
    }
    // Depth-first search for a cycle.
    let mut state: HashMap<usize, u8> = HashMap::new(); // 1: on the stack, 2: done
    fn visit(
        n: usize,
        edges: &HashMap<usize, Vec<(usize, String)>>,
        state: &mut HashMap<usize, u8>,
        path: &mut Vec<(usize, String)>,
    ) -> Option<String> {
        state.insert(n, 1);
        for (m, why) in edges.get(&n).into_iter().flatten() {
            path.push((n, format!("{n} -{why}-> {m}")));
            match state.get(m) {
                Some(1) => {
                    let from = path.iter().position(|(f, _)| f == m).unwrap_or(0);
                    let cycle: Vec<&str> = path[from..].iter().map(|(_, e)| e.as_str()).collect();
                    return Some(cycle.join(", "));
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(*m, edges, state, path) {
                        return Some(c);
                    }
                }
            }
            path.pop();
        }
        state.insert(n, 2);
        None
    }
    for t in committed {
        if !state.contains_key(&t.id) {
            if let Some(cycle) = visit(t.id, &edges, &mut state, &mut Vec::new()) {
                return Err(format!("dependency cycle: {cycle}"));
            }
        }
    }
    Ok(())
}
