//! Checks of the record itself: create-only, patches, moves, deletes, expiry.

use super::*;

/// `load` of a key never written answers `None`, `lookup` answers `Missing`.
pub async fn load_missing(factory: &impl StoreFactory) {
    let c = ctx(factory, "load_missing", None).await;
    assert_eq!(c.load(&new_key()).await, None);
    assert_eq!(
        c.store.lookup(&new_key()).await.expect("lookup"),
        Lookup::Missing
    );
}

/// A created record loads back equal, field by field.
pub async fn create_then_load(factory: &impl StoreFactory) {
    let c = ctx(factory, "create_then_load", None).await;
    let key = new_key();
    let mut r = record(
        c.now(),
        Some("alice"),
        &[
            ("n", json!(1)),
            ("s", json!("text with \"quotes\" and ünïcödé")),
            ("nested", json!({"a": [1, 2, {"b": null}]})),
            ("", json!(false)),
        ],
    );
    r.flash_mut().push("saved".into());
    assert_eq!(c.create(key, r.clone()).await, CommitOutcome::Applied);
    assert_eq!(c.load(&key).await, Some(r.clone()), "round trip");
    assert_eq!(
        c.store.lookup(&key).await.expect("lookup"),
        Lookup::Live(r),
        "lookup agrees with load"
    );
}

/// A create on a live key changes nothing and answers `Collision`.
pub async fn create_is_create_only(factory: &impl StoreFactory) {
    let c = ctx(factory, "create_is_create_only", None).await;
    let key = new_key();
    let first = record(c.now(), None, &[("who", json!("first"))]);
    assert_eq!(c.create(key, first.clone()).await, CommitOutcome::Applied);
    let second = record(c.now(), Some("mallory"), &[("who", json!("second"))]);
    assert_eq!(c.create(key, second).await, CommitOutcome::Collision);
    assert_eq!(
        c.load(&key).await,
        Some(first),
        "the first record is untouched"
    );
    assert!(
        c.keys_of("mallory").await.is_empty(),
        "a refused create is not indexed"
    );
}

/// Many tasks patching different keys of one session at once: every key survives.
pub async fn concurrent_patches_of_different_keys_all_survive(factory: &impl StoreFactory) {
    let c = ctx(factory, "concurrent_different_keys", None).await;
    let key = c.session_of(None).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let store = c.store.clone();
        let patch = set(c.now(), &format!("k{i}"), json!(i));
        tasks.spawn(async move { store.commit(Commit::Patch { key, patch }).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.expect("task").expect("patch"), CommitOutcome::Applied);
    }
    let data = c.load(&key).await.expect("live").data().clone();
    for i in 0..TASKS {
        assert_eq!(data.get(&format!("k{i}")), Some(&json!(i)), "key k{i} lost");
    }
}

/// Sequential writes to one key: the last applied wins; a remove after a set removes.
/// Concurrent writes: the survivor is one of the values written, whole.
pub async fn same_key_last_writer_wins(factory: &impl StoreFactory) {
    let c = ctx(factory, "same_key_last_writer_wins", None).await;
    let key = c.session_of(None).await;
    c.patch(key, set(c.now(), "k", json!("one"))).await;
    c.patch(key, set(c.now(), "k", json!("two"))).await;
    let data = c.load(&key).await.expect("live").data().clone();
    assert_eq!(data.get("k"), Some(&json!("two")));

    let mut remove = refresh(c.now());
    remove.remove("k".into());
    assert_eq!(c.patch(key, remove).await, CommitOutcome::Applied);
    assert!(!c.load(&key).await.expect("live").data().contains_key("k"));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let store = c.store.clone();
        let patch = set(c.now(), "k", json!({"writer": i, "pad": "x".repeat(i)}));
        tasks.spawn(async move { store.commit(Commit::Patch { key, patch }).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("patch");
    }
    let value = c.load(&key).await.expect("live").data()["k"].clone();
    let writer = value["writer"].as_u64().expect("a whole value") as usize;
    assert_eq!(value, json!({"writer": writer, "pad": "x".repeat(writer)}));
}

/// A patch to a deleted record answers `Missing` and does not bring it back.
pub async fn patch_never_resurrects(factory: &impl StoreFactory) {
    let c = ctx(factory, "patch_never_resurrects", None).await;
    let key = c.session_of(Some("alice")).await;
    assert_eq!(
        c.commit(Commit::Delete { key }).await,
        CommitOutcome::Applied
    );
    assert_eq!(
        c.patch(key, set(c.now(), "k", json!(1))).await,
        CommitOutcome::Missing
    );
    assert_eq!(
        c.patch(key, refresh(c.now())).await,
        CommitOutcome::Missing,
        "a bare refresh does not resurrect either"
    );
    assert_eq!(c.load(&key).await, None);
    assert!(c.keys_of("alice").await.is_empty());
}

/// Patches racing a delete: once the delete is done the session stays gone.
pub async fn concurrent_patch_and_delete_never_resurrects(factory: &impl StoreFactory) {
    let c = ctx(factory, "concurrent_patch_and_delete", None).await;
    let key = c.session_of(None).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let store = c.store.clone();
        let commit = if i == TASKS / 2 {
            Commit::Delete { key }
        } else {
            Commit::Patch {
                key,
                patch: set(c.now(), &format!("k{i}"), json!(i)),
            }
        };
        tasks.spawn(async move { store.commit(commit).await });
    }
    while let Some(done) = tasks.join_next().await {
        let outcome = done.expect("task").expect("commit");
        assert!(
            matches!(outcome, CommitOutcome::Applied | CommitOutcome::Missing),
            "{outcome:?}"
        );
    }
    assert_eq!(c.load(&key).await, None, "the delete is final");
}

/// A move files the patched record under the new key; the old key is dead for loads and
/// patches, and the principal's index follows.
pub async fn move_keeps_data_and_kills_old_key(factory: &impl StoreFactory) {
    let c = ctx(factory, "move_keeps_data", None).await;
    let from = new_key();
    let created = record(c.now(), None, &[("cart", json!(["tea"]))]);
    c.create(from, created.clone()).await;
    c.clock.advance(std::time::Duration::from_secs(5));

    let to = new_key();
    let mut patch = login(c.now(), "alice");
    patch.set("step".into(), json!(2));
    let outcome = c
        .commit(Commit::Move {
            from,
            to,
            patch: patch.clone(),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(c.load(&from).await, None, "old key is dead");
    let mut expect = created;
    patch.apply(&mut expect);
    assert_eq!(c.load(&to).await, Some(expect), "data kept, patch applied");
    assert_eq!(
        c.patch(from, set(c.now(), "late", json!(1))).await,
        CommitOutcome::Missing,
        "a late patch of the old key goes nowhere"
    );
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([to]));

    // Rotating again within the principal keeps exactly one indexed session.
    let again = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: to,
            to: again,
            patch: refresh(c.now()),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([again]));
}

/// A move onto a live key answers `Collision` and changes neither record.
pub async fn move_onto_taken_key_changes_nothing(factory: &impl StoreFactory) {
    let c = ctx(factory, "move_collision", None).await;
    let from = new_key();
    let to = new_key();
    let a = record(c.now(), Some("alice"), &[("who", json!("a"))]);
    let b = record(c.now(), Some("bob"), &[("who", json!("b"))]);
    c.create(from, a.clone()).await;
    c.create(to, b.clone()).await;
    let mut patch = login(c.now() + 1, "carol");
    patch.set("who".into(), json!("changed"));
    let outcome = c.commit(Commit::Move { from, to, patch }).await;
    assert_eq!(outcome, CommitOutcome::Collision);
    assert_eq!(c.load(&from).await, Some(a), "source untouched");
    assert_eq!(c.load(&to).await, Some(b), "target untouched");
    assert!(c.keys_of("carol").await.is_empty());
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([from]));
}

/// Moving a session that is gone answers `Missing` and creates nothing.
pub async fn move_of_missing_session_is_missing(factory: &impl StoreFactory) {
    let c = ctx(factory, "move_missing", None).await;
    let to = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: new_key(),
            to,
            patch: login(c.now(), "alice"),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Missing);
    assert_eq!(c.load(&to).await, None);
    assert!(c.keys_of("alice").await.is_empty());
}

/// Delete removes the record; deleting an absent key is fine.
pub async fn delete_is_idempotent(factory: &impl StoreFactory) {
    let c = ctx(factory, "delete", None).await;
    let key = c.session_of(Some("alice")).await;
    let other = c.session_of(Some("alice")).await;
    for round in ["first", "again"] {
        assert_eq!(
            c.commit(Commit::Delete { key }).await,
            CommitOutcome::Applied,
            "{round}"
        );
        assert_eq!(c.load(&key).await, None, "{round}");
    }
    assert!(c.load(&other).await.is_some(), "other sessions untouched");
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([other]));
}

/// Past `expires_at` (by the store's clock) a record is dead everywhere, and its key may
/// be created afresh or moved onto.
pub async fn expired_records_are_never_returned(factory: &impl StoreFactory) {
    let c = ctx(factory, "expiry", None).await;
    let key = c.session_of(Some("alice")).await;
    let moved_from = c.session_of(Some("alice")).await;
    c.clock
        .advance(std::time::Duration::from_secs(TTL as u64 - 1));
    assert!(c.load(&key).await.is_some(), "alive one second before");
    c.clock.advance(std::time::Duration::from_secs(1));
    assert_eq!(c.load(&key).await, None, "dead at expires_at");
    let lookup = c.store.lookup(&moved_from).await.expect("lookup");
    assert!(
        matches!(lookup, Lookup::Expired(_) | Lookup::Missing),
        "lookup reports, never serves, an expired record: {lookup:?}"
    );
    assert_eq!(
        c.patch(key, set(c.now(), "k", json!(1))).await,
        CommitOutcome::Missing
    );
    let to = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: moved_from,
            to,
            patch: refresh(c.now()),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Missing);
    assert_eq!(c.load(&to).await, None);
    assert!(c.keys_of("alice").await.is_empty(), "not listed");
    assert_eq!(
        c.store.delete_sessions_of(&alice()).await.expect("delete"),
        0,
        "not counted"
    );
    let fresh = record(c.now(), None, &[("new", json!(true))]);
    assert_eq!(c.create(key, fresh.clone()).await, CommitOutcome::Applied);
    assert_eq!(c.load(&key).await, Some(fresh));

    // An expired record does not block a move onto its key either.
    let from = c.session_of(None).await;
    let outcome = c
        .commit(Commit::Move {
            from,
            to: moved_from,
            patch: refresh(c.now()),
        })
        .await;
    assert_eq!(
        outcome,
        CommitOutcome::Applied,
        "a move onto an expired key"
    );
    assert_eq!(c.load(&from).await, None);
    assert!(c.load(&moved_from).await.is_some());
}

/// A login's remember-me choice and the time of consent survive a create, are changed by a
/// patch one at a time (the other kept), reset by a patch, and move with the record.
pub async fn remember_and_consent_survive_patches_and_moves(factory: &impl StoreFactory) {
    let c = ctx(factory, "remember_and_consent", None).await;
    let key = new_key();
    let mut r = record(c.now(), Some("alice"), &[]);
    r.set_persistent(Some(false));
    r.set_consented_at(Some(c.now() - 5));
    assert_eq!(c.create(key, r.clone()).await, CommitOutcome::Applied);
    assert_eq!(
        c.load(&key).await,
        Some(r.clone()),
        "both survive the create"
    );

    let mut remember = refresh(c.now());
    remember.replace_persistent(Some(true));
    assert_eq!(c.patch(key, remember).await, CommitOutcome::Applied);
    let loaded = c.load(&key).await.unwrap();
    assert_eq!(
        loaded.persistent(),
        Some(true),
        "the patch changed the choice"
    );
    assert_eq!(
        loaded.consented_at(),
        Some(c.now() - 5),
        "and kept the consent"
    );

    let mut consent = refresh(c.now());
    consent.record_consent(c.now());
    let to = new_key();
    assert_eq!(
        c.commit(Commit::Move {
            from: key,
            to,
            patch: consent
        })
        .await,
        CommitOutcome::Applied
    );
    let moved = c.load(&to).await.unwrap();
    assert_eq!(
        moved.persistent(),
        Some(true),
        "the choice moves with the record"
    );
    assert_eq!(
        moved.consented_at(),
        Some(c.now()),
        "the move's patch recorded consent"
    );

    let mut forget = refresh(c.now());
    forget.replace_persistent(None);
    assert_eq!(c.patch(to, forget).await, CommitOutcome::Applied);
    let reset = c.load(&to).await.unwrap();
    assert_eq!(reset.persistent(), None, "a reset clears the choice");
    assert_eq!(reset.consented_at(), Some(c.now()));
}
