//! The TCP transport between nodes.
//!
//! ```text
//!   Raft frame body = group: u64 BE, raft-rs Message (protobuf)
//! ```
//!
//! Every stream is cut into checksummed, bounded frames ([`crate::frame`]).
//!
//! - One sender thread per peer with a bounded queue: `send` never blocks the driver; when
//!   a queue is full or the peer is unreachable, messages are dropped and Raft retransmits.
//!   A sender writes everything queued before it flushes (messages batched per peer) and
//!   reconnects with exponential backoff (10 ms doubling to 1 s).
//! - Outgoing sockets (Raft's here, KV requests' in [`crate::remote`]) are bound to the
//!   node's own IP address before connecting, so a node on `127.0.0.2` really sends from
//!   `127.0.0.2` (network-level partitions of loopback addresses work).
//! - A receiving connection delivers decoded messages to the driver's [`Inbox`]. A frame
//!   that is too large, fails its checksum or does not decode closes that connection
//!   only.
//! - The first byte of a connection says what it carries: `R` a stream of Raft frames,
//!   `C` one control request answered by one control response ([`crate::control`]),
//!   `K` KV requests; the node installs the handlers.
//! - What a peer can make this node spend is bounded ([`Limits`]): connections beyond
//!   the limit are closed as they arrive (each served connection has a thread), frames
//!   beyond the size limit close their connection, and the bytes of frames being read
//!   or served at once share one budget (readers wait for room). A connection that does
//!   not say what it carries within a few seconds is closed.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::prelude::Message;

use super::driver::Inbox;
use super::transport::{Envelope, Transport};
use crate::control::{self, ControlRequest, ControlResponse, CONTROL_STREAM, MAX_CONTROL};
use crate::frame::{encode_frame, read_frame, read_frame_within, write_frame, Budget};

/// Messages queued per peer before new ones are dropped.
const QUEUE_LEN: usize = 4096;

/// What peers may make a node's RPC listener spend.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once (each has a thread); more are closed on arrival.
    pub max_connections: usize,
    /// Largest Raft or KV frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Bytes of frames being read or served at once, over all connections; Raft and KV
    /// frames have a budget of this size each (a KV request waits on Raft, so a shared
    /// one could deadlock).
    pub in_flight_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_frame_bytes: 64 << 20,
            in_flight_bytes: 256 << 20,
        }
    }
}

/// What every served connection shares.
#[derive(Clone)]
struct Shared {
    inbox: Arc<RwLock<Option<Inbox>>>,
    control: Arc<RwLock<Option<ControlHandler>>>,
    kv: Arc<RwLock<Option<KvHandler>>>,
    limits: Limits,
    kv_budget: Arc<Budget>,
    raft_budget: Arc<Budget>,
}

/// Counts a served connection for as long as it lives.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The TCP transport of one node.
pub struct TcpTransport {
    local: SocketAddr,
    peers: RwLock<HashMap<u64, SocketAddr>>,
    queues: Mutex<HashMap<u64, SyncSender<Vec<u8>>>>,
    inbox: Arc<RwLock<Option<Inbox>>>,
    control: Arc<RwLock<Option<ControlHandler>>>,
    kv: Arc<RwLock<Option<KvHandler>>>,
}

/// Answers KV requests from other nodes (one encoded request in, one answer out).
pub type KvHandler = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Answers control requests.
pub type ControlHandler = Arc<dyn Fn(ControlRequest) -> ControlResponse + Send + Sync>;

const RAFT_STREAM: u8 = b'R';

impl TcpTransport {
    /// Listen on `addr` for peers' messages, with the default [`Limits`].
    pub fn bind(addr: SocketAddr) -> std::io::Result<Arc<TcpTransport>> {
        Self::bind_with(addr, Limits::default())
    }

    /// Listen on `addr` for peers' messages, within `limits`.
    pub fn bind_with(addr: SocketAddr, limits: Limits) -> std::io::Result<Arc<TcpTransport>> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let shared = Shared {
            inbox: Arc::default(),
            control: Arc::default(),
            kv: Arc::default(),
            kv_budget: Budget::new(limits.in_flight_bytes),
            raft_budget: Budget::new(limits.in_flight_bytes),
            limits,
        };
        let accepting = shared.clone();
        let live = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("rpc-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    if live.fetch_add(1, Ordering::SeqCst) >= accepting.limits.max_connections {
                        live.fetch_sub(1, Ordering::SeqCst);
                        tracing::warn!(
                            peer = ?conn.peer_addr().ok(),
                            limit = accepting.limits.max_connections,
                            "too many RPC connections; closing the new one"
                        );
                        continue;
                    }
                    let counted = Live(live.clone());
                    let shared = accepting.clone();
                    let _ = std::thread::Builder::new()
                        .name("rpc-recv".into())
                        .spawn(move || {
                            let _counted = counted;
                            serve(conn, shared)
                        });
                }
            })?;
        Ok(Arc::new(TcpTransport {
            local,
            peers: RwLock::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            inbox: shared.inbox,
            control: shared.control,
            kv: shared.kv,
        }))
    }

    /// The address peers reach this node at.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where messages arriving from peers go (they are dropped until this is set).
    pub fn set_inbox(&self, inbox: Inbox) {
        *self.inbox.write() = Some(inbox);
    }

    /// Install the answerer of control requests.
    pub fn set_control_handler(&self, handler: ControlHandler) {
        *self.control.write() = Some(handler);
    }

    /// Install the answerer of KV requests.
    pub fn set_kv_handler(&self, handler: KvHandler) {
        *self.kv.write() = Some(handler);
    }

    /// The address of node `node`, if known.
    pub fn peer_addr(&self, node: u64) -> Option<SocketAddr> {
        self.peers.read().get(&node).copied()
    }

    /// The address of node `node`.
    pub fn set_peer(&self, node: u64, addr: SocketAddr) {
        self.peers.write().insert(node, addr);
    }

    fn queue(&self, node: u64) -> Option<SyncSender<Vec<u8>>> {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(&node) {
            return Some(q.clone());
        }
        let addr = *self.peers.read().get(&node)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_LEN);
        let local_ip = self.local.ip();
        std::thread::Builder::new()
            .name(format!("rpc-send-{node}"))
            .spawn(move || send_loop(addr, local_ip, rx))
            .ok()?;
        queues.insert(node, tx.clone());
        Some(tx)
    }
}

impl Transport for TcpTransport {
    fn send(&self, batch: Vec<Envelope>) {
        for env in batch {
            let to = env.msg.to;
            let Some(q) = self.queue(to) else {
                tracing::debug!(to, "no address for peer; message dropped");
                continue;
            };
            let Ok(msg) = env.msg.write_to_bytes() else {
                continue;
            };
            let Ok(frame) = encode_frame(&[&env.group.to_be_bytes()[..], &msg].concat()) else {
                continue;
            };
            match q.try_send(frame) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => tracing::debug!(to, "peer queue full; dropped"),
                Err(TrySendError::Disconnected(_)) => {
                    self.queues.lock().remove(&to);
                }
            }
        }
    }
}

/// A connection to `addr` from `local_ip` (the node's own address: a node on
/// `127.0.0.2` sends from it), opened with `kind`, the byte that says what it carries.
pub(crate) fn connect_from(
    addr: SocketAddr,
    local_ip: std::net::IpAddr,
    timeout: Duration,
    kind: u8,
) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(local_ip, 0).into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    (&stream).write_all(&[kind])?;
    Ok(stream)
}

fn connect(addr: SocketAddr, local_ip: std::net::IpAddr) -> std::io::Result<TcpStream> {
    connect_from(addr, local_ip, Duration::from_secs(1), RAFT_STREAM)
}

fn send_loop(addr: SocketAddr, local_ip: std::net::IpAddr, rx: Receiver<Vec<u8>>) {
    let mut conn: Option<BufWriter<TcpStream>> = None;
    let mut backoff = Duration::from_millis(10);
    while let Ok(first) = rx.recv() {
        if conn.is_none() {
            match connect(addr, local_ip) {
                Ok(s) => {
                    conn = Some(BufWriter::new(s));
                    backoff = Duration::from_millis(10);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "peer unreachable; dropping messages");
                    // Drop what is queued; Raft resends what matters.
                    while rx.try_recv().is_ok() {}
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let w = conn.as_mut().expect("connected");
        let mut ok = w.write_all(&first).is_ok();
        while ok {
            match rx.try_recv() {
                Ok(frame) => ok = w.write_all(&frame).is_ok(),
                Err(_) => break,
            }
        }
        if !ok || w.flush().is_err() {
            conn = None;
        }
    }
}

/// How long a new connection has to say what it carries.
const KIND_TIMEOUT: Duration = Duration::from_secs(5);

fn serve(conn: TcpStream, shared: Shared) {
    let mut kind = [0u8; 1];
    if conn.set_read_timeout(Some(KIND_TIMEOUT)).is_err()
        || (&conn).read_exact(&mut kind).is_err()
        || conn.set_read_timeout(None).is_err()
    {
        return;
    }
    match kind[0] {
        RAFT_STREAM => receive(conn, &shared),
        CONTROL_STREAM => {
            if let Err(e) = answer(conn, &shared) {
                tracing::debug!(error = %e, "control request failed");
            }
        }
        crate::remote::KV_STREAM => serve_kv(conn, &shared),
        other => tracing::warn!(byte = other, "unknown connection kind; closing"),
    }
}

fn answer(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = read_frame(&mut conn, MAX_CONTROL)?;
    let handler = shared.control.read().clone();
    let reply = match (control::decode::<ControlRequest>(&request), handler) {
        (None, _) => ControlResponse::Refused("malformed control request".into()),
        (Some(_), None) => ControlResponse::Refused("the node is starting".into()),
        (Some(r), Some(h)) => h(r),
    };
    write_frame(&mut conn, &control::encode(&reply))
}

fn serve_kv(mut conn: TcpStream, shared: &Shared) {
    let _ = conn.set_nodelay(true);
    let peer = conn.peer_addr().ok();
    loop {
        let (req, _room) =
            match read_frame_within(&mut conn, shared.limits.max_frame_bytes, &shared.kv_budget) {
                Ok(r) => r,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        tracing::warn!(?peer, error = %e, "bad KV frame; closing the connection");
                    }
                    return;
                }
            };
        let handler = shared.kv.read().clone();
        let Some(h) = handler else { return };
        if write_frame(&mut conn, &h(&req)).is_err() {
            return;
        }
    }
}

fn receive(conn: TcpStream, shared: &Shared) {
    let peer = conn.peer_addr().ok();
    let mut r = BufReader::new(conn);
    loop {
        let (body, _room) =
            match read_frame_within(&mut r, shared.limits.max_frame_bytes, &shared.raft_budget) {
                Ok(b) => b,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        tracing::warn!(?peer, error = %e, "bad Raft frame; closing the connection");
                    }
                    return;
                }
            };
        if body.len() < 8 {
            tracing::warn!(?peer, "short Raft frame; closing the connection");
            return;
        }
        let group = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        let msg = match Message::parse_from_bytes(&body[8..]) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "undecodable message; closing the connection");
                return;
            }
        };
        if let Some(inbox) = shared.inbox.read().as_ref() {
            inbox.deliver(Envelope { group, msg });
        }
    }
}
