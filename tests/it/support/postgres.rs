//! Real PostgreSQL servers for the PostgreSQL store tests: each in its own temporary
//! directory on a free loopback port, started with `pg_ctl` (as the `postgres` user when the
//! tests run as root, since PostgreSQL refuses to run as root), stopped and removed on drop.
//!
//! A watchdog shell process stops each server once the test process is gone, so a test
//! binary that is killed leaves no server behind. The binaries come from
//! `/usr/lib/postgresql/<version>/bin` (Debian's layout) or `PATH`; when there are none, the
//! tests fail with what to install: they never skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        debian.sort_by_key(|bin| {
            bin.parent()
                .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        if let Some(newest) = debian.pop() {
            return newest;
        }
        let on_path = Command::new("initdb")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            on_path,
            "PostgreSQL not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): \
             install it (apt-get install postgresql, as scripts/test.sh does) to run the \
             PostgreSQL store tests"
        );
        PathBuf::new()
    })
    .clone()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program args` as the user that owns the server (`postgres` when we are root).
fn as_owner(program: &str) -> Command {
    let program = bin_dir().join(program);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed: {text}");
    text
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local addr")
        .port()
}

/// One PostgreSQL server (a `postmaster` and its backends).
pub struct PgServer {
    dir: PathBuf,
    port: u16,
}

impl PgServer {
    /// A fresh cluster, started. Durability as for a crash of the server (not of the
    /// machine): `fsync` is off, so a stop with `-m immediate` loses nothing the server
    /// acknowledged, but a power cut could.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tessera-pg-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(&dir);
                    c
                },
                "chown the server directory to postgres",
            );
        }
        let mut initdb = as_owner("initdb");
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run(initdb, "initdb");
        let server = Self {
            dir,
            port: free_port(),
        };
        server.watch();
        server.start_again();
        server
    }

    /// The server shared by the tests that need only a database of their own (a table
    /// name of their own): started once per test process, stopped by its watchdog.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = as_owner("pg_ctl");
        cmd.arg("-D").arg(self.data()).args(args);
        cmd
    }

    /// Starts the (stopped) server on its port and directory again.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=300 \
             -c shared_preload_libraries=pg_stat_statements",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let mut cmd = self.pg_ctl(&["-w", "-t", "60", "-o", &options, "-l"]);
        cmd.arg(&log).arg("start");
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(
            out.success(),
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server: `fast` (clients are disconnected, a clean shutdown) or
    /// `immediate` (a crash: no shutdown checkpoint, recovery at the next start).
    pub fn stop(&self, mode: &str) {
        run(self.pg_ctl(&["-w", "-m", mode, "stop"]), "pg_ctl stop");
    }

    /// The postmaster and every process it started (its backends included).
    fn processes(&self) -> Vec<u32> {
        let pidfile = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("postmaster.pid: the server is running");
        let postmaster: u32 = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid");
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after the `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the postmaster and all its backends: a server
    /// that accepts connections into its backlog and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let pids: Vec<String> = self.processes().iter().map(u32::to_string).collect();
        let status = Command::new("kill")
            .arg(signal)
            .args(&pids)
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pids:?}");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn options(&self) -> PgConnectOptions {
        self.url().parse().expect("a valid URL")
    }

    /// A new pool of at most `max` connections.
    pub async fn pool(&self, max: u32) -> PgPool {
        self.pool_with(self.options(), max).await
    }

    pub async fn pool_with(&self, options: PgConnectOptions, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .expect("connect to the test server")
    }

    /// Stops the server once this process is gone, however it ends.
    fn watch(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = self.stop_command(),
            dir = self.dir.display(),
        );
        // Never waited for: it outlives this process on purpose (and is reaped by init).
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server watchdog");
    }

    fn stop_command(&self) -> String {
        let pg_ctl = bin_dir().join("pg_ctl");
        let prefix = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D '{}' -m immediate stop",
            pg_ctl.display(),
            self.data().display()
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // A frozen server would never act on the stop signal.
        if let Ok(pidfile) = std::fs::read_to_string(self.data().join("postmaster.pid")) {
            if pidfile.lines().next().is_some() {
                let pids: Vec<String> = self.processes().iter().map(u32::to_string).collect();
                // Backends that exited since the listing make `kill` complain: not news.
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .args(&pids)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
