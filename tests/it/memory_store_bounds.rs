//! MemoryStore's own promises: bounded with LRU eviction, expired records never returned,
//! a sweep that tests can drive.

use axum_tessera::__fuzz::SessionId;
use axum_tessera::clock::ManualClock;
use axum_tessera::store::{Commit, CommitOutcome, MemoryStore, Record, SessionStore};
use std::time::Duration;

const T0: i64 = 1_800_000_000;

async fn create(store: &MemoryStore, expires_at: i64) -> axum_tessera::store::StoreKey {
    let key = SessionId::generate().store_key();
    let outcome = store
        .commit(Commit::Create {
            key,
            record: Record::new(T0, expires_at),
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Applied);
    key
}

#[tokio::test]
async fn a_full_store_evicts_the_least_recently_used_session() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new().max_sessions(3).with_clock(clock);
    let a = create(&store, T0 + 100).await;
    let b = create(&store, T0 + 100).await;
    let c = create(&store, T0 + 100).await;
    assert!(
        store.load(&a).await.unwrap().is_some(),
        "touch a: b is now the oldest"
    );
    let d = create(&store, T0 + 100).await;
    assert_eq!(store.len(), 3);
    assert!(store.load(&b).await.unwrap().is_none(), "b evicted");
    for key in [a, c, d] {
        assert!(store.load(&key).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn expired_records_are_never_returned_even_before_a_sweep() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new().with_clock(clock.clone());
    let key = create(&store, T0 + 60).await;
    clock.advance(Duration::from_secs(59));
    assert!(store.load(&key).await.unwrap().is_some());
    clock.advance(Duration::from_secs(1));
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "at expires_at it is dead"
    );
}

#[tokio::test]
async fn sweep_removes_exactly_the_expired_records() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new().with_clock(clock.clone());
    for _ in 0..5 {
        create(&store, T0 + 10).await;
    }
    let keep = create(&store, T0 + 1000).await;
    assert_eq!(store.sweep(), 0);
    clock.advance(Duration::from_secs(10));
    assert_eq!(store.sweep(), 5);
    assert_eq!(store.len(), 1);
    assert!(store.load(&keep).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn the_background_sweeper_runs_on_its_period() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::new().with_clock(clock.clone());
    create(&store, T0 + 10).await;
    let handle = store.spawn_sweeper(std::time::Duration::from_secs(30));
    clock.advance(Duration::from_secs(20));
    tokio::time::sleep(std::time::Duration::from_secs(31)).await;
    tokio::task::yield_now().await;
    assert_eq!(store.len(), 0);
    handle.abort();
}
