//! SQLite databases for the SQLite store tests: one file each in a temporary directory,
//! removed on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions as _;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A database file that lives as long as this value.
pub struct SqliteFile {
    dir: PathBuf,
}

impl SqliteFile {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tessera-sqlite-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("sessions.db")
    }

    /// The options every test pool uses: WAL (readers never wait for the writer), a busy
    /// timeout longer than any store timeout in the tests.
    pub fn options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(self.path())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
    }

    /// A new pool (of its own connections) on the file.
    pub async fn pool(&self) -> SqlitePool {
        self.pool_with(self.options()).await
    }

    pub async fn pool_with(&self, options: SqliteConnectOptions) -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("open the sqlite file")
    }

    /// A pool whose statements are logged at `level` (to count them).
    pub async fn logged_pool(&self, level: log::LevelFilter) -> SqlitePool {
        let options = self
            .options()
            .log_statements(level)
            .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(3600));
        self.pool_with(options).await
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
