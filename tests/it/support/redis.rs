//! Real `redis-server` processes for the Redis tests (`store_redis`, `store_redis_cluster`,
//! `redis_faults`): each on a free loopback port with its own temporary directory, killed and
//! cleaned up on drop; raw commands beside the store in binary-safe RESP, with typed replies;
//! stops (SIGSTOP/SIGCONT) and crashes (SIGKILL, then a restart on the same directory); and a
//! three-master Redis Cluster made with `redis-cli --cluster create`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// How long a raw command waits for its reply before it counts as unanswered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

fn binary(name: &str) -> String {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{name} not found on PATH: install it (apt-get install redis-server) to run the Redis tests"
    );
    name.to_owned()
}

/// A port nothing listens on now, low enough that `port + 10000` (the cluster bus) is valid
/// and free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind loopback")
            .local_addr()
            .expect("local addr")
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// One RESP reply, enough of the protocol for the tests' own reads and writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

impl Resp {
    /// The integer of an integer reply.
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes of a non-nil bulk reply.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Bulk(b) => b.clone(),
            _ => None,
        }
    }

    /// A bulk reply as text (lossy), as `INFO` and `CLUSTER INFO` answer.
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The elements of an array reply (none for any other).
    pub fn items(&self) -> Vec<Resp> {
        match self {
            Self::Array(items) => items.clone(),
            _ => Vec::new(),
        }
    }
}

/// Reads one whole reply; `None` on a timeout, a closed connection or anything malformed.
fn read_reply(r: &mut impl BufRead) -> Option<Resp> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).ok()?;
    if line.len() < 3 {
        return None;
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    Some(match line[0] {
        b'+' => Resp::Simple(text),
        b'-' => Resp::Error(text),
        b':' => Resp::Int(text.parse().ok()?),
        b'$' => {
            let n: i64 = text.parse().ok()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf).ok()?;
                buf.truncate(n as usize);
                Resp::Bulk(Some(buf))
            }
        }
        b'*' => {
            let n: i64 = text.parse().ok()?;
            Resp::Array(
                (0..n.max(0))
                    .map(|_| read_reply(r))
                    .collect::<Option<Vec<_>>>()?,
            )
        }
        _ => return None,
    })
}

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// A durable standalone server: append-only file fsynced on every write, so a crash
    /// (SIGKILL) loses nothing that was acknowledged.
    pub fn start() -> Self {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A server with `extra` arguments (after port, bind and dir).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tessera-redis-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(binary("redis-server"))
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        for _ in 0..400 {
            if self.cmd(&[b"PING"]) == Some(Resp::Simple("PONG".into())) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    /// One command, binary-safe, on a fresh connection; `None` when the server does not
    /// answer (down, or stopped for longer than the reply timeout).
    pub fn cmd(&self, parts: &[&[u8]]) -> Option<Resp> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).ok()?;
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for part in parts {
            out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out).ok()?;
        read_reply(&mut BufReader::new(stream))
    }

    /// A command written as words separated by white space, e.g. `"CONFIG RESETSTAT"`.
    pub fn text(&self, line: &str) -> Option<Resp> {
        let parts: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        self.cmd(&parts)
    }

    /// Every key matching `pattern` (`KEYS`).
    pub fn keys(&self, pattern: &str) -> Vec<Vec<u8>> {
        self.cmd(&[b"KEYS", pattern.as_bytes()])
            .map(|r| r.items())
            .unwrap_or_default()
            .iter()
            .filter_map(Resp::bytes)
            .collect()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL: a crash, no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs (SIGKILL), then starts the server again on the same
    /// port and directory, so it reloads what it had made durable.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGSTOP: a server that keeps its connections open and accepts and answers nothing.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the stopped server runs again, starting with whatever was queued for it.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// `calls` per command from `INFO commandstats`, e.g. `("hgetall", 10)`.
    pub fn command_calls(&self) -> Vec<(String, u64)> {
        self.text("INFO commandstats")
            .and_then(|r| r.text())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three cluster-enabled masters joined with `redis-cli --cluster create`, without replicas.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the masters, joins them and waits until every one reports `cluster_state:ok`.
    /// The node timeout (10 s) is longer than any stop the fault tests make, so a stopped
    /// master is never marked as failed.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "10000",
                    "--appendonly",
                    "no",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new(binary("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        for _ in 0..400 {
            let ok = cluster.nodes.iter().all(|n| {
                n.text("CLUSTER INFO")
                    .and_then(|r| r.text())
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("cluster did not reach cluster_state:ok");
    }

    /// The masters, in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The master holding `key`'s slot (the others answer MOVED).
    pub fn owner(&self, key: &[u8]) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| matches!(n.cmd(&[b"EXISTS", key]), Some(Resp::Int(_))))
            .expect("one node owns every slot")
    }

    /// A command sent to the master owning `key` (its second part).
    pub fn cmd(&self, parts: &[&[u8]]) -> Option<Resp> {
        self.owner(parts[1]).cmd(parts)
    }

    /// Every key matching `pattern`, over all masters.
    pub fn keys(&self, pattern: &str) -> Vec<Vec<u8>> {
        self.nodes.iter().flat_map(|n| n.keys(pattern)).collect()
    }

    /// Keys held by each master (`DBSIZE`), to show sessions spread over the nodes.
    pub fn sizes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                n.cmd(&[b"DBSIZE"])
                    .and_then(|r| r.int())
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0)
            })
            .collect()
    }
}
