//! The TCP transport between nodes.
//!
//! ```text
//!   frame = len: u32 BE (of what follows), group: u64 BE, raft-rs Message (protobuf)
//! ```
//!
//! - One sender thread per peer with a bounded queue: `send` never blocks the driver; when
//!   a queue is full or the peer is unreachable, messages are dropped and Raft retransmits.
//!   A sender writes everything queued before it flushes (messages batched per peer) and
//!   reconnects with exponential backoff (10 ms doubling to 1 s).
//! - Outgoing sockets are bound to the node's own IP address before connecting, so a node
//!   on `127.0.0.2` really sends from `127.0.0.2` (network-level partitions of loopback
//!   addresses work).
//! - A receiving connection delivers decoded messages to the driver's [`Inbox`]. A frame
//!   that is too large or does not decode closes that connection only.
//! - The first byte of a connection says what it carries: `R` a stream of Raft frames,
//!   `C` one control request (a length-prefixed line of text such as `JOIN <addr>`)
//!   answered by one control response; the node installs the handler.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::prelude::Message;

use super::driver::Inbox;
use super::transport::{Envelope, Transport};

/// Largest frame accepted, in bytes.
const MAX_FRAME: usize = 64 << 20;
/// Messages queued per peer before new ones are dropped.
const QUEUE_LEN: usize = 4096;

/// The TCP transport of one node.
pub struct TcpTransport {
    local: SocketAddr,
    peers: RwLock<HashMap<u64, SocketAddr>>,
    queues: Mutex<HashMap<u64, SyncSender<Vec<u8>>>>,
    inbox: Arc<RwLock<Option<Inbox>>>,
    control: Arc<RwLock<Option<ControlHandler>>>,
    kv: Arc<RwLock<Option<KvHandler>>>,
    /// A fault switch for tests: drop all Raft and KV traffic to and from this node.
    isolated: Arc<AtomicBool>,
}

/// Answers KV requests from other nodes (one encoded request in, one answer out).
pub type KvHandler = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Answers control requests (one line of text in, one out).
pub type ControlHandler = Arc<dyn Fn(&str) -> String + Send + Sync>;

const RAFT_STREAM: u8 = b'R';
const CONTROL: u8 = b'C';

/// Send one control request to the node listening on `addr` and return its answer.
pub fn control_call(addr: SocketAddr, request: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut msg = vec![CONTROL];
    msg.extend_from_slice(&(request.len() as u32).to_be_bytes());
    msg.extend_from_slice(request.as_bytes());
    s.write_all(&msg)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(std::io::Error::other("control answer too large"));
    }
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)?;
    String::from_utf8(buf).map_err(std::io::Error::other)
}

impl TcpTransport {
    /// Listen on `addr` for peers' messages.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Arc<TcpTransport>> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let inbox: Arc<RwLock<Option<Inbox>>> = Arc::default();
        let control: Arc<RwLock<Option<ControlHandler>>> = Arc::default();
        let kv: Arc<RwLock<Option<KvHandler>>> = Arc::default();
        let accept_inbox = inbox.clone();
        let accept_control = control.clone();
        let accept_kv = kv.clone();
        let isolated: Arc<AtomicBool> = Arc::default();
        let accept_isolated = isolated.clone();
        std::thread::Builder::new()
            .name("rpc-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let inbox = accept_inbox.clone();
                    let control = accept_control.clone();
                    let kv = accept_kv.clone();
                    let isolated = accept_isolated.clone();
                    let _ = std::thread::Builder::new()
                        .name("rpc-recv".into())
                        .spawn(move || serve(conn, inbox, control, kv, isolated));
                }
            })?;
        Ok(Arc::new(TcpTransport {
            local,
            peers: RwLock::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            inbox,
            control,
            kv,
            isolated,
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

    /// Cut this node off from the others (or reconnect it): a fault switch for tests.
    /// Control requests still pass, so the switch can be turned back.
    pub fn set_isolated(&self, on: bool) {
        self.isolated.store(on, Ordering::SeqCst);
    }

    /// Whether the node is cut off by [`TcpTransport::set_isolated`].
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
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
        if self.is_isolated() {
            return;
        }
        for env in batch {
            let to = env.msg.to;
            let Some(q) = self.queue(to) else {
                tracing::debug!(to, "no address for peer; message dropped");
                continue;
            };
            let Ok(body) = env.msg.write_to_bytes() else {
                continue;
            };
            let mut frame = Vec::with_capacity(12 + body.len());
            frame.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
            frame.extend_from_slice(&env.group.to_be_bytes());
            frame.extend_from_slice(&body);
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

fn connect(addr: SocketAddr, local_ip: std::net::IpAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(local_ip, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(1))?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    (&stream).write_all(&[RAFT_STREAM])?;
    Ok(stream)
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

fn serve(
    conn: TcpStream,
    inbox: Arc<RwLock<Option<Inbox>>>,
    control: Arc<RwLock<Option<ControlHandler>>>,
    kv: Arc<RwLock<Option<KvHandler>>>,
    isolated: Arc<AtomicBool>,
) {
    let mut kind = [0u8; 1];
    if (&conn).read_exact(&mut kind).is_err() {
        return;
    }
    match kind[0] {
        RAFT_STREAM => receive(conn, inbox, isolated),
        CONTROL => {
            let _ = answer(conn, control);
        }
        crate::remote::KV_STREAM if !isolated.load(Ordering::SeqCst) => serve_kv(conn, kv),
        crate::remote::KV_STREAM => {}
        other => tracing::warn!(byte = other, "unknown connection kind; closing"),
    }
}

fn answer(
    mut conn: TcpStream,
    control: Arc<RwLock<Option<ControlHandler>>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let n = u32::from_be_bytes(len) as usize;
    if n > 64 << 10 {
        return Ok(());
    }
    let mut buf = vec![0u8; n];
    conn.read_exact(&mut buf)?;
    let request = String::from_utf8_lossy(&buf).into_owned();
    let handler = control.read().clone();
    let reply = match handler {
        Some(h) => h(&request),
        None => "ERR the node is starting".to_string(),
    };
    let mut out = (reply.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(reply.as_bytes());
    conn.write_all(&out)
}

fn serve_kv(mut conn: TcpStream, kv: Arc<RwLock<Option<KvHandler>>>) {
    let _ = conn.set_nodelay(true);
    while let Ok(req) = crate::remote::read_message(&mut conn) {
        let handler = kv.read().clone();
        let Some(h) = handler else { return };
        if crate::remote::write_message(&mut conn, &h(&req)).is_err() {
            return;
        }
    }
}

fn receive(conn: TcpStream, inbox: Arc<RwLock<Option<Inbox>>>, isolated: Arc<AtomicBool>) {
    let peer = conn.peer_addr().ok();
    let mut r = BufReader::new(conn);
    let mut len = [0u8; 4];
    loop {
        if r.read_exact(&mut len).is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if !(8..=MAX_FRAME).contains(&n) {
            tracing::warn!(?peer, n, "bad frame length; closing the connection");
            return;
        }
        let mut buf = vec![0u8; n];
        if r.read_exact(&mut buf).is_err() {
            return;
        }
        let group = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
        let msg = match Message::parse_from_bytes(&buf[8..]) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "undecodable message; closing the connection");
                return;
            }
        };
        if isolated.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(inbox) = inbox.read().as_ref() {
            inbox.deliver(Envelope { group, msg });
        }
    }
}
