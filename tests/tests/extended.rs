//! The extended query protocol message by message, with a hand-written frontend on a raw
//! socket (drivers hide the sequences): pipelining before one Sync, named statements and
//! portals, Describe of both, Execute with a row limit and PortalSuspended, Close, Flush,
//! a lone Sync, skipping to Sync after an error, and a typed binary parameter coerced to
//! the column's type.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tessera_tests::Node;

/// A raw protocol connection.
struct Conn(TcpStream);

/// One backend message: its type byte and body.
type Msg = (u8, Vec<u8>);

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&(types.len() as u16).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &b)
}

/// Bind `portal` to `stmt` with parameters (format code, bytes); results in text.
fn bind(portal: &str, stmt: &str, params: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for (f, _) in params {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for (_, v) in params {
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v);
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    frame(b'B', &b)
}

fn named(kind: u8, what: u8, name: &str) -> Vec<u8> {
    let mut b = vec![what];
    cstr(&mut b, name);
    frame(kind, &b)
}

fn execute(portal: &str, max_rows: u32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    frame(b'E', &b)
}

fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

fn flush() -> Vec<u8> {
    frame(b'H', &[])
}

impl Conn {
    fn open(node: &Node) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Conn(s);
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for kv in ["user", "root", "database", "tessera"] {
            cstr(&mut body, kv);
        }
        body.push(0);
        let mut msg = (body.len() as u32 + 4).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        c.0.write_all(&msg).unwrap();
        c.until_ready();
        c
    }

    fn send(&mut self, msgs: &[Vec<u8>]) {
        self.0.write_all(&msgs.concat()).unwrap();
    }

    fn read(&mut self) -> Msg {
        let mut head = [0u8; 5];
        self.0.read_exact(&mut head).unwrap();
        let n = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize - 4;
        let mut body = vec![0; n];
        self.0.read_exact(&mut body).unwrap();
        (head[0], body)
    }

    /// Every message up to and including ReadyForQuery.
    fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.read();
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }
}

fn kinds(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.0 as char).collect()
}

/// The text of column 0 of a DataRow.
fn first_value(body: &[u8]) -> String {
    let n = i32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
    String::from_utf8(body[6..6 + n].to_vec()).unwrap()
}

fn setup(node: &Node) -> Conn {
    let mut c = Conn::open(node);
    let mut q = Vec::new();
    cstr(
        &mut q,
        "CREATE TABLE x (id INT PRIMARY KEY, big BIGINT); \
         INSERT INTO x VALUES (1, 10), (2, 20), (3, 30)",
    );
    c.send(&[frame(b'Q', &q)]);
    let msgs = c.until_ready();
    assert!(!kinds(&msgs).contains('E'), "{msgs:?}");
    c
}

/// Claim: a whole pipeline sent before one Sync is answered in order: ParseComplete, the
/// statement's parameter types (the untyped `$1` takes the column's type, int4) and row
/// description, BindComplete, the portal's row description, two rows and PortalSuspended
/// for a limit of two, the last row and `SELECT 1` for the rest, two CloseCompletes and
/// ReadyForQuery.
#[test]
fn a_pipeline_with_a_row_limit_is_answered_in_order() {
    let node = Node::start();
    let mut c = setup(&node);
    c.send(&[
        parse("s1", "SELECT id FROM x WHERE id > $1 ORDER BY id", &[]),
        named(b'D', b'S', "s1"),
        bind("p1", "s1", &[(0, b"0")]),
        named(b'D', b'P', "p1"),
        execute("p1", 2),
        execute("p1", 0),
        named(b'C', b'P', "p1"),
        named(b'C', b'S', "s1"),
        sync(),
    ]);
    let msgs = c.until_ready();
    assert_eq!(kinds(&msgs), "1tT2TDDsDC33Z", "{msgs:?}");
    let params = &msgs[1].1;
    assert_eq!(u16::from_be_bytes(params[..2].try_into().unwrap()), 1);
    assert_eq!(u32::from_be_bytes(params[2..6].try_into().unwrap()), 23);
    let rows: Vec<String> = msgs
        .iter()
        .filter(|m| m.0 == b'D')
        .map(|m| first_value(&m.1))
        .collect();
    assert_eq!(rows, ["1", "2", "3"]);
    let tag = &msgs[9].1;
    assert_eq!(tag.as_slice(), b"SELECT 1\0");
    // The statement is closed: binding it again fails, and the session goes on.
    c.send(&[bind("", "s1", &[(0, b"0")]), execute("", 0), sync()]);
    let msgs = c.until_ready();
    assert_eq!(kinds(&msgs), "EZ", "{msgs:?}");
}

/// Claim: Flush makes the server send what it has without a Sync; a lone Sync is
/// answered by ReadyForQuery alone.
#[test]
fn flush_and_a_lone_sync() {
    let node = Node::start();
    let mut c = setup(&node);
    c.send(&[parse("", "SELECT big FROM x WHERE id = 1", &[]), flush()]);
    assert_eq!(c.read().0, b'1');
    c.send(&[bind("", "", &[]), execute("", 0), flush()]);
    assert_eq!(c.read().0, b'2');
    let row = c.read();
    assert_eq!((row.0, first_value(&row.1)), (b'D', "10".to_string()));
    assert_eq!(c.read().0, b'C');
    c.send(&[sync()]);
    assert_eq!(kinds(&c.until_ready()), "Z");
    c.send(&[sync()]);
    assert_eq!(kinds(&c.until_ready()), "Z");
}

/// Claim: after an error, every message up to Sync is skipped: one ErrorResponse, then
/// ReadyForQuery, and the next pipeline runs normally.
#[test]
fn after_an_error_messages_are_skipped_until_sync() {
    let node = Node::start();
    let mut c = setup(&node);
    c.send(&[
        parse("", "SELEKT nonsense", &[]),
        bind("", "", &[]),
        named(b'D', b'P', ""),
        execute("", 0),
        sync(),
    ]);
    let msgs = c.until_ready();
    assert_eq!(kinds(&msgs), "EZ", "{msgs:?}");
    let text = String::from_utf8_lossy(&msgs[0].1);
    assert!(text.contains("C42601"), "{text}");
    c.send(&[
        parse("", "SELECT count(*) FROM x", &[]),
        bind("", "", &[]),
        execute("", 0),
        sync(),
    ]);
    let msgs = c.until_ready();
    assert_eq!(kinds(&msgs), "12DCZ", "{msgs:?}");
    assert_eq!(first_value(&msgs[2].1), "3");
}

/// Claim: a parameter declared int2 and sent in binary is compared with an int8 column
/// as PostgreSQL does.
#[test]
fn a_binary_int2_parameter_matches_an_int8_column() {
    let node = Node::start();
    let mut c = setup(&node);
    c.send(&[
        parse("", "SELECT id FROM x WHERE big = $1", &[21]),
        bind("", "", &[(1, &20i16.to_be_bytes())]),
        execute("", 0),
        sync(),
    ]);
    let msgs = c.until_ready();
    assert_eq!(kinds(&msgs), "12DCZ", "{msgs:?}");
    assert_eq!(first_value(&msgs[2].1), "2");
}

/// A Bind of the unnamed statement with one raw parameter: `len` as the length field,
/// then `data` (which may be shorter or longer than `len` says).
fn raw_bind(len: i32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, "");
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(data);
    b.extend_from_slice(&0u16.to_be_bytes());
    frame(b'B', &b)
}

/// The SQLSTATE field of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

/// Claim: a Bind whose parameter length runs past the end of the message, or is
/// negative other than -1, is answered with ErrorResponse 08P01 (as PostgreSQL answers
/// it), the rest of the pipeline is skipped to Sync, and the same connection then runs
/// statements normally; so does every other connection.
#[test]
fn a_malformed_bind_is_a_protocol_violation_and_the_connection_goes_on() {
    let node = Node::start();
    let mut c = setup(&node);
    let mut other = Conn::open(&node);
    for bad in [
        raw_bind(1000, b"12"),
        raw_bind(-7, b""),
        raw_bind(2, b"1234"),
    ] {
        c.send(&[
            parse("", "SELECT big FROM x WHERE id = $1", &[23]),
            bad,
            execute("", 0),
            sync(),
        ]);
        let msgs = c.until_ready();
        assert_eq!(kinds(&msgs), "1EZ", "{msgs:?}");
        assert_eq!(sqlstate(&msgs[1].1), "08P01", "{msgs:?}");
        c.send(&[
            parse("", "SELECT big FROM x WHERE id = $1", &[23]),
            bind("", "", &[(1, &2i32.to_be_bytes())]),
            execute("", 0),
            sync(),
        ]);
        let msgs = c.until_ready();
        assert_eq!(kinds(&msgs), "12DCZ", "{msgs:?}");
        assert_eq!(first_value(&msgs[2].1), "20");
    }
    let mut q = Vec::new();
    cstr(&mut q, "SELECT count(*) FROM x");
    other.send(&[frame(b'Q', &q)]);
    let msgs = other.until_ready();
    assert_eq!(kinds(&msgs), "TDCZ", "{msgs:?}");
}

/// Claim: a binary date or timestamp parameter beyond PostgreSQL's range is refused with
/// 22008 instead of wrapping around, and a computed date past what the wire can carry is
/// 22008 instead of being sent as 1970-01-01.
#[test]
fn dates_out_of_range_are_22008() {
    let node = Node::start();
    let mut c = setup(&node);
    for (oid, raw) in [
        (1082u32, i32::MAX.to_be_bytes().to_vec()),
        (1082, (-3_000_000i32).to_be_bytes().to_vec()),
        (1114, i64::MAX.to_be_bytes().to_vec()),
        (1184, i64::MIN.to_be_bytes().to_vec()),
    ] {
        c.send(&[
            parse("", "SELECT $1", &[oid]),
            bind("", "", &[(1, &raw)]),
            execute("", 0),
            sync(),
        ]);
        let msgs = c.until_ready();
        let err = msgs.iter().find(|m| m.0 == b'E').expect("an error");
        assert_eq!(sqlstate(&err.1), "22008", "{oid}: {msgs:?}");
    }
    for sql in [
        "SELECT arrow_cast(200000000, 'Date32')",
        "SELECT arrow_cast(9223372036854775807, 'Timestamp(Microsecond, None)')",
    ] {
        let mut q = Vec::new();
        cstr(&mut q, sql);
        c.send(&[frame(b'Q', &q)]);
        let msgs = c.until_ready();
        let err = msgs.iter().find(|m| m.0 == b'E').expect("an error");
        assert_eq!(sqlstate(&err.1), "22008", "{sql}: {msgs:?}");
        assert!(!msgs.iter().any(|m| m.0 == b'D'), "{sql}: a row was sent");
    }
}
