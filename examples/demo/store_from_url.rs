//! The store `DEMO_STORE` names by URL, built when the demo was compiled with its feature;
//! otherwise an error naming the build command.

use std::error::Error;

use axum_tessera::{SessionConfig, SessionLayer};

/// The two demo layers over the store `url` names.
pub async fn layers(
    url: &str,
    web: SessionConfig,
    api: SessionConfig,
) -> Result<(SessionLayer, SessionLayer), Box<dyn Error>> {
    let (scheme, feature) = match url.split_once(':').map(|(s, _)| s) {
        Some("redis" | "rediss") => ("redis", "redis"),
        Some("sqlite") => ("sqlite", "sqlite"),
        Some("postgres" | "postgresql") => ("postgres", "postgres"),
        _ => {
            return Err(format!(
                "DEMO_STORE={url}: expected memory, redis://host:port, sqlite://<path> or postgres://..."
            )
            .into())
        }
    };
    // Without a store feature built in, every arm below but the last is compiled out.
    let _ = (&web, &api);
    match scheme {
        #[cfg(feature = "redis")]
        "redis" => {
            let store = axum_tessera::store::RedisStore::connect(url)
                .await?
                .command_timeout(std::time::Duration::from_millis(500));
            Ok(crate::app::layers(web, api, store))
        }
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
            let options = url
                .parse::<SqliteConnectOptions>()?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await?;
            let store = axum_tessera::store::SqliteStore::new(pool);
            store.migrate().await?;
            let _sweeper = store.spawn_sweeper(crate::SWEEP);
            Ok(crate::app::layers(web, api, store))
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect(url)
                .await?;
            let store = axum_tessera::store::PostgresStore::new(pool)
                .command_timeout(std::time::Duration::from_millis(500));
            store.migrate().await?;
            let _sweeper = store.spawn_sweeper(crate::SWEEP);
            Ok(crate::app::layers(web, api, store))
        }
        _ => Err(format!(
            "DEMO_STORE={url} needs the {feature} store: cargo run --example demo --features {feature}"
        )
        .into()),
    }
}
