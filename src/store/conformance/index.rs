//! Checks of the per-principal index: listing, logout everywhere, session limits.

use super::*;

/// `sessions_of` lists exactly the live sessions of the principal, newest first, and
/// follows logouts.
pub async fn sessions_of_lists_live_sessions(factory: &impl StoreFactory) {
    let c = ctx(factory, "sessions_of", None).await;
    let a1 = c.session_of(Some("alice")).await;
    c.clock.advance(std::time::Duration::from_secs(10));
    let a2 = c.session_of(Some("alice")).await;
    let bob = c.session_of(Some("bob")).await;
    c.session_of(None).await;

    let list = c.store.sessions_of(&alice()).await.expect("sessions_of");
    let keys: Vec<StoreKey> = list.iter().map(|i| i.key()).collect();
    assert_eq!(keys, vec![a2, a1], "newest last_seen first");
    assert_eq!(list[0].principal(), Some("alice"));
    assert_eq!(list[0].user_agent(), Some("conformance/1"));
    assert_eq!(list[1].created().unix_timestamp(), T0);
    assert_eq!(c.keys_of("bob").await, BTreeSet::from([bob]));
    assert!(c.keys_of("nobody").await.is_empty());

    let mut logout = refresh(c.now());
    logout.replace_principal(None);
    assert_eq!(c.patch(a1, logout).await, CommitOutcome::Applied);
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([a2]), "logged out");
    c.patch(a1, login(c.now(), "bob")).await;
    assert_eq!(
        c.keys_of("bob").await,
        BTreeSet::from([a1, bob]),
        "re-owned"
    );
}

/// `delete_sessions_of` deletes every session of the principal and nobody else's.
pub async fn delete_sessions_of_logs_out_everywhere(factory: &impl StoreFactory) {
    let c = ctx(factory, "delete_sessions_of", None).await;
    let a1 = c.session_of(Some("alice")).await;
    let a2 = c.session_of(Some("alice")).await;
    let bob = c.session_of(Some("bob")).await;
    let anon = c.session_of(None).await;
    let n = c.store.delete_sessions_of(&alice()).await.expect("delete");
    assert_eq!(n, 2);
    assert_eq!(c.load(&a1).await, None);
    assert_eq!(c.load(&a2).await, None);
    assert!(c.load(&bob).await.is_some());
    assert!(c.load(&anon).await.is_some());
    assert!(c.keys_of("alice").await.is_empty());
    assert_eq!(
        c.store.delete_sessions_of(&alice()).await.expect("again"),
        0
    );
    let back = c.session_of(Some("alice")).await;
    assert_eq!(
        c.keys_of("alice").await,
        BTreeSet::from([back]),
        "can log in again"
    );
}

fn is_limit(result: Result<CommitOutcome, crate::StoreError>) -> bool {
    matches!(result, Err(e) if e.kind() == StoreErrorKind::LimitReached)
}

/// `Reject`: the login past the limit fails with `LimitReached` and writes nothing;
/// rotations within the principal and logins after a logout still work.
pub async fn limit_reject_refuses_and_writes_nothing(factory: &impl StoreFactory) {
    let c = ctx(factory, "limit_reject", Some((2, LimitPolicy::Reject))).await;
    let a1 = c.session_of(Some("alice")).await;
    let a2 = c.session_of(Some("alice")).await;

    let third = new_key();
    let result = c
        .store
        .commit(Commit::Create {
            key: third,
            record: record(c.now(), Some("alice"), &[]),
        })
        .await;
    assert!(is_limit(result), "create past the limit");
    assert_eq!(c.load(&third).await, None, "nothing written");

    let anon = new_key();
    let before = record(c.now(), None, &[("cart", json!(1))]);
    c.create(anon, before.clone()).await;
    let to = new_key();
    let result = c
        .store
        .commit(Commit::Move {
            from: anon,
            to,
            patch: login(c.now(), "alice"),
        })
        .await;
    assert!(is_limit(result), "login by move past the limit");
    assert_eq!(c.load(&anon).await, Some(before), "old session untouched");
    assert_eq!(c.load(&to).await, None);

    let rotated = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: a1,
            to: rotated,
            patch: refresh(c.now()),
        })
        .await;
    assert_eq!(
        outcome,
        CommitOutcome::Applied,
        "rotation is not a new session"
    );
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([rotated, a2]));
    c.session_of(Some("bob")).await;

    c.commit(Commit::Delete { key: a2 }).await;
    c.session_of(Some("alice")).await;
    c.clock.advance(std::time::Duration::from_secs(TTL as u64));
    c.session_of(Some("alice")).await;
    c.session_of(Some("alice")).await;
    assert_eq!(
        c.keys_of("alice").await.len(),
        2,
        "expired sessions free places"
    );
}

/// `EvictOldest`: a login past the limit deletes the earliest logged-in sessions.
pub async fn limit_evict_oldest_makes_room(factory: &impl StoreFactory) {
    let c = ctx(factory, "limit_evict", Some((2, LimitPolicy::EvictOldest))).await;
    let a1 = c.session_of(Some("alice")).await;
    c.clock.advance(std::time::Duration::from_secs(1));
    let a2 = c.session_of(Some("alice")).await;
    c.clock.advance(std::time::Duration::from_secs(1));
    let a3 = c.session_of(Some("alice")).await;
    assert_eq!(c.load(&a1).await, None, "oldest evicted");
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([a2, a3]));

    c.clock.advance(std::time::Duration::from_secs(1));
    let anon = c.session_of(None).await;
    let to = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: anon,
            to,
            patch: login(c.now(), "alice"),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(c.load(&a2).await, None, "next oldest evicted by a login");
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([a3, to]));
}

/// A patch that gives a session a principal it did not have counts like a login: past the
/// limit it is refused (`Reject`, the session left as it was) or makes room
/// (`EvictOldest`); a patch naming the principal the session already has is not a login.
pub async fn limit_counts_a_patch_that_logs_in(factory: &impl StoreFactory) {
    let c = ctx(
        factory,
        "limit_patch_reject",
        Some((1, LimitPolicy::Reject)),
    )
    .await;
    let a1 = c.session_of(Some("alice")).await;
    let anon = c.session_of(None).await;
    let result = c
        .store
        .commit(Commit::Patch {
            key: anon,
            patch: login(c.now(), "alice"),
        })
        .await;
    assert!(is_limit(result), "a patch logging in past the limit");
    assert_eq!(
        c.load(&anon).await.expect("live").principal(),
        None,
        "the refused patch wrote nothing"
    );
    assert_eq!(
        c.patch(a1, login(c.now(), "alice")).await,
        CommitOutcome::Applied,
        "the principal it already has"
    );
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([a1]));

    let c = ctx(
        factory,
        "limit_patch_evict",
        Some((1, LimitPolicy::EvictOldest)),
    )
    .await;
    let a1 = c.session_of(Some("alice")).await;
    c.clock.advance(std::time::Duration::from_secs(1));
    let anon = c.session_of(None).await;
    assert_eq!(
        c.patch(anon, login(c.now(), "alice")).await,
        CommitOutcome::Applied
    );
    assert_eq!(c.load(&a1).await, None, "the older session made room");
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([anon]));
}

/// Many concurrent logins of one principal under `Reject`: exactly `limit` succeed.
pub async fn limit_holds_under_concurrent_logins(factory: &impl StoreFactory) {
    const LIMIT: usize = 3;
    let c = ctx(
        factory,
        "limit_concurrent",
        Some((LIMIT, LimitPolicy::Reject)),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let store = c.store.clone();
        let commit = Commit::Create {
            key: new_key(),
            record: record(c.now(), Some("alice"), &[]),
        };
        tasks.spawn(async move { store.commit(commit).await });
    }
    let mut applied = 0;
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(CommitOutcome::Applied) => applied += 1,
            other => assert!(is_limit(other.clone()), "{other:?}"),
        }
    }
    assert_eq!(applied, LIMIT);
    assert_eq!(c.keys_of("alice").await.len(), LIMIT);
}
