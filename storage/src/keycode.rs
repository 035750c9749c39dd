//! Order-preserving ("memcomparable") key encoding.
//!
//! Every key in tessera is a byte string compared with memcmp. This module is the one
//! place where typed values become such bytes:
//!
//! - [`KeyValue`] is the physical form of one key column (SQL types map onto it in the
//!   query layer: dates and timestamps are `Int`, uuids are `Bytes`, ...). Each encoded
//!   value is self-delimiting, so composite keys are plain concatenations and a key of
//!   the first `n` columns is a prefix of every key that extends it.
//! - NULL sorts first in both directions; a `desc` column inverts every other byte so
//!   that its values sort in reverse.
//! - [`KeyKind`] names the regions of the key space (DESIGN.md §2): system metadata,
//!   range addressing, and table / index data. Each region's prefix is disjoint from the
//!   others.
//!
//! Claims, checked by property tests: `encode(a) < encode(b)` iff `a < b` (per
//! direction), and `decode(encode(x)) == x`.

use std::cmp::Ordering;

use crate::{Error, Result};

const TAG_NULL: u8 = 0x00;
const TAG_BOOL: u8 = 0x10;
const TAG_INT: u8 = 0x11;
const TAG_FLOAT: u8 = 0x12;
const TAG_DECIMAL: u8 = 0x13;
const TAG_TEXT: u8 = 0x14;
const TAG_BYTES: u8 = 0x15;
const TAG_INTERVAL: u8 = 0x16;
/// Only in stored values, never in keys: a float negative zero, which keys fold into 0.
const TAG_FLOAT_NEG_ZERO: u8 = 0x17;

const KIND_SYS: u8 = 0x02;
const KIND_META: u8 = 0x03;
const KIND_TABLE: u8 = 0x10;

/// The physical value of one key column.
#[derive(Clone, Debug)]
pub enum KeyValue {
    /// SQL NULL; sorts before every other value.
    Null,
    /// A boolean; false < true.
    Bool(bool),
    /// Any integer-like value: int2/4/8, date (days), timestamps (microseconds).
    Int(i64),
    /// float4/float8 with PostgreSQL's order: -inf < ... < +inf < NaN, and -0 = 0.
    Float(f64),
    /// A scaled decimal: `value * 10^-scale`; all values of one column share `scale`.
    Decimal(i128, u8),
    /// UTF-8 text, compared bytewise (the C collation).
    Text(String),
    /// Raw bytes (bytea, uuid).
    Bytes(Vec<u8>),
    /// An interval as (months, days, nanoseconds), ordered as PostgreSQL does by its
    /// length with 30-day months and 24-hour days, ties broken by the parts.
    Interval(i32, i32, i64),
}

impl KeyValue {
    fn interval_span(m: i32, d: i32, n: i64) -> i128 {
        const DAY: i128 = 86_400_000_000_000;
        (m as i128 * 30 + d as i128) * DAY + n as i128
    }

    fn float_bits(f: f64) -> u64 {
        let f = if f == 0.0 {
            0.0
        } else if f.is_nan() {
            f64::NAN
        } else {
            f
        };
        let bits = f.to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        }
    }
}

impl PartialEq for KeyValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for KeyValue {}
impl PartialOrd for KeyValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KeyValue {
    /// The order the encoding preserves. Values of different kinds order by kind.
    fn cmp(&self, other: &Self) -> Ordering {
        use KeyValue::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => Self::float_bits(*a).cmp(&Self::float_bits(*b)),
            (Decimal(a, s), Decimal(b, t)) => a.cmp(b).then(s.cmp(t)),
            (Text(a), Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Interval(m, d, n), Interval(m2, d2, n2)) => Self::interval_span(*m, *d, *n)
                .cmp(&Self::interval_span(*m2, *d2, *n2))
                .then((m, d, n).cmp(&(m2, d2, n2))),
            _ => self.tag().cmp(&other.tag()),
        }
    }
}

impl KeyValue {
    fn tag(&self) -> u8 {
        match self {
            KeyValue::Null => TAG_NULL,
            KeyValue::Bool(_) => TAG_BOOL,
            KeyValue::Int(_) => TAG_INT,
            KeyValue::Float(_) => TAG_FLOAT,
            KeyValue::Decimal(..) => TAG_DECIMAL,
            KeyValue::Text(_) => TAG_TEXT,
            KeyValue::Bytes(_) => TAG_BYTES,
            KeyValue::Interval(..) => TAG_INTERVAL,
        }
    }
}

fn put_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Append the encoding of `v` to `out`; `desc` reverses its order (NULL stays first).
pub fn encode_value(out: &mut Vec<u8>, v: &KeyValue, desc: bool) {
    if let KeyValue::Null = v {
        out.push(TAG_NULL);
        return;
    }
    let start = out.len();
    out.push(v.tag());
    match v {
        KeyValue::Null => {}
        KeyValue::Bool(b) => out.push(*b as u8),
        KeyValue::Int(i) => out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes()),
        KeyValue::Float(f) => out.extend_from_slice(&KeyValue::float_bits(*f).to_be_bytes()),
        KeyValue::Decimal(i, s) => {
            out.extend_from_slice(&((*i as u128) ^ (1 << 127)).to_be_bytes());
            out.push(*s);
        }
        KeyValue::Text(s) => put_escaped(out, s.as_bytes()),
        KeyValue::Bytes(b) => put_escaped(out, b),
        KeyValue::Interval(m, d, n) => {
            let span = KeyValue::interval_span(*m, *d, *n);
            out.extend_from_slice(&((span as u128) ^ (1 << 127)).to_be_bytes());
            out.extend_from_slice(&((*m as u32) ^ (1 << 31)).to_be_bytes());
            out.extend_from_slice(&((*d as u32) ^ (1 << 31)).to_be_bytes());
            out.extend_from_slice(&((*n as u64) ^ (1 << 63)).to_be_bytes());
        }
    }
    if desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
}

/// Append `v` as a stored (non-key) value: like an ascending key column, except that a
/// float's negative zero is kept rather than folded into zero (keys must treat `-0` and
/// `0` as one value; a stored value reads back as written).
pub fn encode_stored_value(out: &mut Vec<u8>, v: &KeyValue) {
    match v {
        KeyValue::Float(f) if *f == 0.0 && f.is_sign_negative() => out.push(TAG_FLOAT_NEG_ZERO),
        _ => encode_value(out, v, false),
    }
}

/// Encode a composite key of `(value, desc)` columns.
pub fn encode_key(values: &[(KeyValue, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (v, desc) in values {
        encode_value(&mut out, v, *desc);
    }
    out
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("key encoding: {what}"))
}

fn take<const N: usize>(input: &mut &[u8], desc: bool) -> Result<[u8; N]> {
    if input.len() < N {
        return Err(corrupt("truncated value"));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&input[..N]);
    *input = &input[N..];
    if desc {
        for b in &mut out {
            *b = !*b;
        }
    }
    Ok(out)
}

fn take_escaped(input: &mut &[u8], desc: bool) -> Result<Vec<u8>> {
    let inv = |b: u8| if desc { !b } else { b };
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let b = inv(*input.get(i).ok_or_else(|| corrupt("unterminated string"))?);
        if b == 0 {
            let next = inv(*input
                .get(i + 1)
                .ok_or_else(|| corrupt("unterminated string"))?);
            i += 2;
            match next {
                0x01 => break,
                0xFF => out.push(0),
                _ => return Err(corrupt("bad escape")),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    *input = &input[i..];
    Ok(out)
}

/// Decode one value from the front of `input`, advancing it.
pub fn decode_value(input: &mut &[u8], desc: bool) -> Result<KeyValue> {
    let Some(&first) = input.first() else {
        return Err(corrupt("empty input"));
    };
    *input = &input[1..];
    if first == TAG_NULL {
        return Ok(KeyValue::Null);
    }
    let tag = if desc { !first } else { first };
    Ok(match tag {
        TAG_FLOAT_NEG_ZERO if !desc => KeyValue::Float(-0.0),
        TAG_BOOL => KeyValue::Bool(take::<1>(input, desc)?[0] != 0),
        TAG_INT => KeyValue::Int((u64::from_be_bytes(take(input, desc)?) ^ (1 << 63)) as i64),
        TAG_FLOAT => {
            let bits = u64::from_be_bytes(take(input, desc)?);
            let bits = if bits >> 63 == 1 {
                bits & !(1 << 63)
            } else {
                !bits
            };
            KeyValue::Float(f64::from_bits(bits))
        }
        TAG_DECIMAL => {
            let i = (u128::from_be_bytes(take(input, desc)?) ^ (1 << 127)) as i128;
            KeyValue::Decimal(i, take::<1>(input, desc)?[0])
        }
        TAG_TEXT => KeyValue::Text(
            String::from_utf8(take_escaped(input, desc)?).map_err(|_| corrupt("bad utf-8"))?,
        ),
        TAG_BYTES => KeyValue::Bytes(take_escaped(input, desc)?),
        TAG_INTERVAL => {
            let _span = take::<16>(input, desc)?;
            let m = (u32::from_be_bytes(take(input, desc)?) ^ (1 << 31)) as i32;
            let d = (u32::from_be_bytes(take(input, desc)?) ^ (1 << 31)) as i32;
            let n = (u64::from_be_bytes(take(input, desc)?) ^ (1 << 63)) as i64;
            KeyValue::Interval(m, d, n)
        }
        _ => return Err(corrupt("unknown tag")),
    })
}

/// Encode an unsigned identifier (table id, index id) so that it sorts numerically.
pub fn encode_id(out: &mut Vec<u8>, id: u64) {
    out.extend_from_slice(&id.to_be_bytes());
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when no
/// such key exists (the prefix is all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The regions of the key space (DESIGN.md §2), typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Cluster and catalog metadata: `/sys/<name>`.
    Sys(Vec<u8>),
    /// Range addressing: `/meta/<range end key>`.
    Meta(Vec<u8>),
    /// Table and index entries: `/t/<table>/<index>/<encoded columns>`.
    Table {
        table: u64,
        index: u64,
        columns: Vec<u8>,
    },
}

impl KeyKind {
    /// The encoded key.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            KeyKind::Sys(name) => [&[KIND_SYS][..], name].concat(),
            KeyKind::Meta(end) => [&[KIND_META][..], end].concat(),
            KeyKind::Table {
                table,
                index,
                columns,
            } => {
                let mut out = vec![KIND_TABLE];
                encode_id(&mut out, *table);
                encode_id(&mut out, *index);
                out.extend_from_slice(columns);
                out
            }
        }
    }

    /// Parse an encoded key.
    pub fn decode(key: &[u8]) -> Result<KeyKind> {
        match key.split_first() {
            Some((&KIND_SYS, rest)) => Ok(KeyKind::Sys(rest.to_vec())),
            Some((&KIND_META, rest)) => Ok(KeyKind::Meta(rest.to_vec())),
            Some((&KIND_TABLE, rest)) if rest.len() >= 16 => Ok(KeyKind::Table {
                table: u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
                index: u64::from_be_bytes(rest[8..16].try_into().expect("8 bytes")),
                columns: rest[16..].to_vec(),
            }),
            _ => Err(corrupt("unknown key kind")),
        }
    }

    /// The prefix shared by every system key.
    pub fn sys_prefix() -> Vec<u8> {
        vec![KIND_SYS]
    }

    /// The prefix shared by every key of one table.
    pub fn table_prefix(table: u64) -> Vec<u8> {
        let mut out = vec![KIND_TABLE];
        encode_id(&mut out, table);
        out
    }

    /// The prefix shared by every entry of one index of a table.
    pub fn index_prefix(table: u64, index: u64) -> Vec<u8> {
        KeyKind::Table {
            table,
            index,
            columns: Vec::new(),
        }
        .encode()
    }

    /// The first key of the user (table) key space.
    pub fn user_start() -> Vec<u8> {
        vec![KIND_TABLE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = KeyValue> {
        prop_oneof![
            Just(KeyValue::Null),
            any::<bool>().prop_map(KeyValue::Bool),
            any::<i64>().prop_map(KeyValue::Int),
            prop_oneof![
                any::<f64>(),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::NAN),
                Just(-0.0)
            ]
            .prop_map(KeyValue::Float),
            any::<i128>().prop_map(|i| KeyValue::Decimal(i, 2)),
            ".*".prop_map(KeyValue::Text),
            proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1u8), Just(0xFF), any::<u8>()],
                0..12
            )
            .prop_map(KeyValue::Bytes),
            (any::<i32>(), any::<i32>(), any::<i64>()).prop_map(|(m, d, n)| KeyValue::Interval(
                m % 100_000,
                d % 100_000,
                n
            )),
        ]
    }

    /// Two values of the same kind (or NULL), so that their order is meaningful.
    fn same_kind_pair() -> impl Strategy<Value = (KeyValue, KeyValue)> {
        (value(), value()).prop_filter("same kind", |(a, b)| {
            a.tag() == b.tag() || matches!(a, KeyValue::Null) || matches!(b, KeyValue::Null)
        })
    }

    fn enc(v: &KeyValue, desc: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&mut out, v, desc);
        out
    }

    fn expected(a: &KeyValue, b: &KeyValue, desc: bool) -> Ordering {
        match (a, b) {
            (KeyValue::Null, KeyValue::Null) => Ordering::Equal,
            (KeyValue::Null, _) => Ordering::Less,
            (_, KeyValue::Null) => Ordering::Greater,
            _ if desc => b.cmp(a),
            _ => a.cmp(b),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn encoding_preserves_order((a, b) in same_kind_pair(), desc in any::<bool>()) {
            prop_assert_eq!(enc(&a, desc).cmp(&enc(&b, desc)), expected(&a, &b, desc));
        }

        #[test]
        fn decode_inverts_encode(v in value(), desc in any::<bool>()) {
            let bytes = enc(&v, desc);
            let mut input = bytes.as_slice();
            let back = decode_value(&mut input, desc).unwrap();
            prop_assert!(input.is_empty());
            prop_assert_eq!(back, v);
        }

        #[test]
        fn composite_keys_order_lexicographically(
            a in proptest::collection::vec(same_kind_pair(), 1..4),
            desc in proptest::collection::vec(any::<bool>(), 4),
        ) {
            let left: Vec<(KeyValue, bool)> =
                a.iter().zip(&desc).map(|((x, _), d)| (x.clone(), *d)).collect();
            let right: Vec<(KeyValue, bool)> =
                a.iter().zip(&desc).map(|((_, y), d)| (y.clone(), *d)).collect();
            let want = a.iter().zip(&desc)
                .map(|((x, y), d)| expected(x, y, *d))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal);
            prop_assert_eq!(encode_key(&left).cmp(&encode_key(&right)), want);
            // And the composite decodes column by column.
            let bytes = encode_key(&left);
            let mut input = bytes.as_slice();
            for (v, d) in &left {
                prop_assert_eq!(&decode_value(&mut input, *d).unwrap(), v);
            }
        }

        #[test]
        fn prefixes_are_prefixes(table in 0u64..1000, index in 0u64..10, cols in proptest::collection::vec(any::<u8>(), 0..8)) {
            let key = KeyKind::Table { table, index, columns: cols }.encode();
            prop_assert!(key.starts_with(&KeyKind::index_prefix(table, index)));
            prop_assert!(key.starts_with(&KeyKind::table_prefix(table)));
            let end = prefix_end(&KeyKind::table_prefix(table)).unwrap();
            prop_assert!(key < end);
            prop_assert!(KeyKind::table_prefix(table + 1) >= end);
            prop_assert_eq!(KeyKind::decode(&key).unwrap(), KeyKind::Table { table, index, columns: key[17..].to_vec() });
        }
    }

    #[test]
    fn regions_are_disjoint_and_ordered() {
        let sys = KeyKind::Sys(b"\xff\xff".to_vec()).encode();
        let meta = KeyKind::Meta(vec![]).encode();
        let table = KeyKind::Table {
            table: 0,
            index: 0,
            columns: vec![],
        }
        .encode();
        assert!(sys < meta && meta < table);
        assert!(sys < prefix_end(&KeyKind::sys_prefix()).unwrap());
        assert!(prefix_end(&KeyKind::sys_prefix()).unwrap() <= meta);
        assert_eq!(prefix_end(&[0x01, 0xFF]), Some(vec![0x02]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
