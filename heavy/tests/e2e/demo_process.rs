//! The demo as its own process, exactly as `cargo run --example demo` starts it: built once
//! per test run, started on a free loopback port with `DEMO_*` variables, sent a signal and
//! waited for. What only the real `main` does (graceful shutdown on SIGTERM / Ctrl-C, the
//! exit status) is tested through it; the rest of the end-to-end tests serve `app::router`
//! in-process.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the demo may take to listen or to exit: a bound against hanging, not a
/// performance assertion.
const PROCESS_WAIT: Duration = Duration::from_secs(30);

/// The demo binary, built (or found fresh) by cargo once per test run, with every store
/// feature so any `DEMO_STORE` works. `--workspace --all-features` resolves features as
/// `./scripts/test.sh` does, so under it the demo that run built is already fresh.
fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--workspace",
                "--example",
                "demo",
                "--all-features",
                "--message-format=json",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building the demo failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|msg| msg["target"]["name"] == "demo")
            .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the demo executable")
    })
}

/// A running demo process; killed on drop if a test leaves it running.
pub(crate) struct DemoProcess {
    child: Child,
    base: String,
}

impl DemoProcess {
    /// Starts the demo on a free loopback port with `env` (besides `DEMO_ADDR`) and waits
    /// until it listens.
    pub(crate) async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_at("127.0.0.1:0", env).await
    }

    /// Starts the demo on `addr` (a restart on the address a page still points at).
    pub(crate) async fn start_at(addr: &str, env: &[(&str, &str)]) -> Self {
        let addr = addr.to_owned();
        // The first call builds: outside the runtime's threads and outside the time bound.
        let bin = tokio::task::spawn_blocking(|| binary().clone())
            .await
            .unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let started = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(bin)
                // Only what the test asks for: none of the developer's own settings.
                .env_remove("DEMO_STORE")
                .env_remove("DEMO_IDLE_SECS")
                .env_remove("TESSERA_SECRET")
                .envs(env)
                .env("DEMO_ADDR", addr)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the demo starts");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut lines = BufReader::new(stdout).lines();
            // `DEMO_ADDR` port 0: the demo prints the port it got.
            let base = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.strip_prefix("demo listening on http://")
                    .map(str::to_owned)
            });
            // Keep draining stdout so the demo never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            (child, base)
        });
        let (child, base) = tokio::time::timeout(PROCESS_WAIT, started)
            .await
            .expect("the demo listens in time")
            .unwrap();
        let mut demo = DemoProcess {
            child,
            base: String::new(),
        };
        match base {
            Some(base) => demo.base = base,
            None => panic!("the demo exited before listening: {:?}", demo.child.wait()),
        }
        demo
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends `signal` (`TERM`, `INT`, ...) through `kill(1)`, which needs no `unsafe`.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the demo to exit; answers its status.
    pub(crate) async fn exit_status(mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + PROCESS_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("the demo's status") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the demo did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
