//! Test harness for process-level tests: start real `tessera` processes on loopback
//! ports, connect real PostgreSQL clients, kill and restart nodes.
//!
//! The binary is the `tessera` of the same build profile as the tests
//! (`target/<profile>/tessera`, next to the test executable's `deps/` folder), or the
//! one named by `TESSERA_BIN`.

pub mod history;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// The `tessera` binary under test.
pub fn tessera_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_BIN") {
        return PathBuf::from(p);
    }
    // Tests run from target/<profile>/deps, programs (benchmarks) from target/<profile>.
    let exe = std::env::current_exe().expect("executable path");
    let mut profile_dir = exe.parent().expect("target/<profile>");
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir.parent().expect("target/<profile>");
    }
    let bin = profile_dir.join("tessera");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin tessera` first",
        bin.display()
    );
    bin
}

/// The `tests` package's source folder. The runtime value wins over the one compiled in:
/// one target directory serves several checkouts, and a test binary built from another
/// checkout must still read this checkout's files.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A free loopback port (bound then released).
/// Never the same port twice in one test process: tests start nodes concurrently, and
/// a port released here could otherwise be handed to two of them (one then talks to the
/// other's listener).
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1".parse().expect("loopback"))
}

/// [`free_port`] on the loopback address `ip`.
pub fn free_port_on(ip: std::net::IpAddr) -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind((ip, 0))
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

/// RPC addresses for the `n` members of a cluster, each on a loopback address of its
/// own (`127.0.0.2`, `127.0.0.3`, ...), so that [`Partition`] can cut any two apart.
pub fn member_addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| {
            let ip = std::net::IpAddr::from([127, 0, 0, 2 + i as u8]);
            SocketAddr::new(ip, free_port_on(ip))
        })
        .collect()
}

/// Dropped packets between pairs of loopback addresses (iptables rules on `INPUT`),
/// until dropped: a network partition between members of a cluster, each on its own
/// address ([`member_addrs`]). Needs root and iptables; panics without them.
pub struct Partition {
    rules: Vec<(std::net::IpAddr, std::net::IpAddr)>,
}

impl Partition {
    /// Cut `node` off from every address in `others`, both ways.
    pub fn isolate(node: SocketAddr, others: &[SocketAddr]) -> Partition {
        let mut p = Partition { rules: Vec::new() };
        for o in others.iter().filter(|o| o.ip() != node.ip()) {
            for (from, to) in [(node.ip(), o.ip()), (o.ip(), node.ip())] {
                iptables("-I", from, to);
                p.rules.push((from, to));
            }
        }
        p
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for (from, to) in self.rules.drain(..) {
            iptables("-D", from, to);
        }
    }
}

fn iptables(op: &str, from: std::net::IpAddr, to: std::net::IpAddr) {
    let out = Command::new("iptables")
        .args([
            op,
            "INPUT",
            "-s",
            &from.to_string(),
            "-d",
            &to.to_string(),
            "-j",
            "DROP",
        ])
        .output()
        .expect("run iptables (the partition tests need it, and root)");
    assert!(out.status.success(), "iptables {op}: {out:?}");
}

/// The environment that runs a process on a clock `skew_ms` milliseconds off the
/// machine's: libfaketime preloaded with a relative offset (panics without it).
fn faketime(skew_ms: i64) -> Vec<(String, String)> {
    let lib = format!(
        "/usr/lib/{}-linux-gnu/faketime/libfaketime.so.1",
        std::env::consts::ARCH
    );
    assert!(
        Path::new(&lib).exists(),
        "{lib} is missing: install libfaketime"
    );
    let sign = if skew_ms < 0 { "-" } else { "+" };
    let ms = skew_ms.unsigned_abs();
    vec![
        ("LD_PRELOAD".into(), lib),
        (
            "FAKETIME".into(),
            format!("{sign}{}.{:03}s", ms / 1000, ms % 1000),
        ),
    ]
}

/// One running `tessera` process with its own store: a single-node cluster, or a member
/// of a multi-node one.
pub struct Node {
    child: Option<Child>,
    /// The store directory (kept across restarts).
    pub store: tempfile::TempDir,
    /// SQL port.
    pub port: u16,
    /// For a member: its RPC address and the RPC addresses it joins through.
    member: Option<(SocketAddr, Vec<SocketAddr>)>,
    /// More command-line arguments.
    extra: Vec<String>,
    /// More environment variables.
    env: Vec<(String, String)>,
}

impl Node {
    /// Start a node on a fresh store.
    pub fn start() -> Node {
        Self::start_prepared(|_| {})
    }

    /// Start a node on a fresh store with more command-line arguments (settings).
    pub fn start_with(extra: &[&str]) -> Node {
        Self::start_inner(|_| {}, extra)
    }

    /// Start a node on a fresh store whose data directory `prepare` sets up first (for
    /// instance by mounting a small file system there).
    pub fn start_prepared(prepare: impl FnOnce(&Path)) -> Node {
        Self::start_inner(prepare, &[])
    }

    fn start_inner(prepare: impl FnOnce(&Path), extra: &[&str]) -> Node {
        let store = tempfile::tempdir().expect("tempdir");
        let data = store.path().join("data");
        std::fs::create_dir_all(&data).expect("data directory");
        prepare(&data);
        let mut node = Node {
            child: None,
            store,
            port: free_port(),
            member: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        };
        node.spawn();
        node
    }

    /// Wait up to `within` for the process to exit on its own; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start a member of a multi-node cluster (`tessera start`) listening for peers on
    /// `rpc` and joining through `join`. It serves SQL only once it is initialised
    /// or admitted: wait with [`Node::wait_sql`].
    pub fn start_member(rpc: SocketAddr, join: &[SocketAddr]) -> Node {
        Self::start_member_with(rpc, join, &[])
    }

    /// [`Node::start_member`] with more command-line arguments (settings).
    pub fn start_member_with(rpc: SocketAddr, join: &[SocketAddr], extra: &[&str]) -> Node {
        Self::start_member_skewed(rpc, join, extra, 0)
    }

    /// [`Node::start_member_with`] on a clock `skew_ms` milliseconds ahead of the
    /// machine's (behind when negative), through libfaketime, across restarts too.
    pub fn start_member_skewed(
        rpc: SocketAddr,
        join: &[SocketAddr],
        extra: &[&str],
        skew_ms: i64,
    ) -> Node {
        let store = tempfile::tempdir().expect("tempdir");
        let mut node = Node {
            child: None,
            store,
            port: free_port(),
            member: Some((rpc, join.to_vec())),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: if skew_ms == 0 {
                Vec::new()
            } else {
                faketime(skew_ms)
            },
        };
        node.spawn();
        node
    }

    /// Send a control request (status, ...) to a member.
    pub fn control(
        &self,
        request: tessera_cluster::control::ControlRequest,
    ) -> tessera_cluster::control::ControlResponse {
        let addr = self.rpc_addr().parse().expect("rpc address");
        tessera_cluster::control::control_call(addr, &request, Duration::from_secs(5))
            .expect("control request")
    }

    /// The RPC address of a member.
    pub fn rpc_addr(&self) -> String {
        self.rpc().to_string()
    }

    /// The RPC address of a member.
    pub fn rpc(&self) -> SocketAddr {
        self.member.as_ref().expect("a member").0
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store.path().join("node.log"))
            .expect("log file");
        let mut cmd = Command::new(tessera_bin());
        match &self.member {
            None => {
                cmd.arg("start-single-node")
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{}", self.port));
            }
            Some((rpc, join)) => {
                let join: Vec<String> = join.iter().map(|a| a.to_string()).collect();
                cmd.arg("start")
                    .arg("--listen-sql")
                    .arg(format!("127.0.0.1:{}", self.port))
                    .arg("--listen-rpc")
                    .arg(rpc.to_string())
                    .arg("--join")
                    .arg(join.join(","));
            }
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.extra)
            .arg("--store")
            .arg(self.store.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tessera");
        self.child = Some(child);
        if self.member.is_none() {
            self.wait_sql();
        }
    }

    /// Wait until the node accepts SQL connections (panics after 60 s or if it exits).
    pub fn wait_sql(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        // A connection to a port no one listens on yet can connect to itself (TCP
        // simultaneous open, when the kernel picks that same port as its source): that
        // is not the node answering.
        let answers = |port: u16| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
        };
        while !answers(self.port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("tessera exited during startup ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tessera did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.store.path().join("node.log")).unwrap_or_default()
    }

    /// A connection string for this node.
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=root dbname=tessera", self.port)
    }

    /// Connect a tokio-postgres client.
    pub async fn connect(&self) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Kill the process with SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze the process with SIGSTOP (a long GC pause, a stalled VM): it holds its
    /// sockets and leases but answers nothing until [`Node::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Let a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        if let Some(c) = &self.child {
            let sent = Command::new("kill")
                .arg(which)
                .arg(c.id().to_string())
                .status()
                .is_ok_and(|s| s.success());
            assert!(sent, "kill {which} {}", c.id());
        }
    }

    /// Start the process again on the same store and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Stop with SIGTERM and wait for a clean exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The SQLSTATE of a client error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}
