//! Counts the SQL statements sqlx runs for the pools of one test: those pools log every
//! statement at ERROR (no other pool logs at that level), and a process-wide subscriber,
//! installed once, keeps what they log. SQLite runs statements on its connection threads,
//! so a thread-local subscriber would see nothing.

use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

/// The level the counted pools log their statements at.
pub const LEVEL: log::LevelFilter = log::LevelFilter::Error;

struct Keep;

#[derive(Default)]
struct Statement(Option<String>, Option<String>);

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "db.statement" if !value.trim().is_empty() => self.0 = Some(value.trim().to_owned()),
            "summary" => self.1 = Some(value.trim().to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Keep {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != "sqlx::query" || *meta.level() != Level::ERROR {
            return;
        }
        let mut statement = Statement::default();
        event.record(&mut statement);
        if let Some(text) = statement.0.or(statement.1) {
            LOG.lock().unwrap().push(text);
        }
    }
}

/// Installs the subscriber (once per process).
pub fn install() {
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Keep.with_filter(
            tracing_subscriber::filter::filter_fn(|meta| {
                meta.target() == "sqlx::query" && *meta.level() == Level::ERROR
            }),
        ));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test installs a global subscriber");
    });
}

/// The statements logged since the last call, emptied.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *LOG.lock().unwrap())
}

/// The first word (`SELECT`, `UPDATE`...) of each statement that names `table`, counted,
/// sorted: what sqlx runs to set up a new connection (`PRAGMA`...) is not a request's cost.
pub fn by_verb(statements: &[String], table: &str) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for s in statements.iter().filter(|s| s.contains(table)) {
        let verb = s.split_whitespace().next().unwrap_or("").to_uppercase();
        *counts.entry(verb).or_default() += 1;
    }
    counts.into_iter().collect()
}
