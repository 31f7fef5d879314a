//! Checks of atomic updates ([`SessionStore::update`]): increments and compare-and-set that
//! concurrent writers never lose, and that never touch a gone record.

use super::*;
use crate::store::{Update, UpdateOutcome};

impl<S: SessionStore> Ctx<S> {
    async fn update(&self, key: &StoreKey, field: &str, update: Update) -> UpdateOutcome {
        self.store.update(key, field, update).await.expect("update")
    }
}

/// Increments from many tasks at once all count; an absent key starts at 0, a value that is
/// not an integer is replaced, and other keys and the times stay as they were.
pub async fn concurrent_increments_all_count(factory: &impl StoreFactory) {
    let c = ctx(factory, "concurrent_increments", None).await;
    let key = new_key();
    let r = record(
        c.now(),
        None,
        &[("other", json!("kept")), ("word", json!("x"))],
    );
    assert_eq!(c.create(key, r.clone()).await, CommitOutcome::Applied);
    assert_eq!(
        c.update(&key, "n", Update::Increment { by: 5 }).await,
        UpdateOutcome::Applied(Some(json!(5))),
        "an absent key counts as 0"
    );
    assert_eq!(
        c.update(&key, "word", Update::Increment { by: 2 }).await,
        UpdateOutcome::Applied(Some(json!(2))),
        "a value that is not an integer counts as 0"
    );
    let tasks: Vec<_> = (0..TASKS * 4)
        .map(|_| {
            let store = c.store.clone();
            tokio::spawn(async move {
                store
                    .update(&key, "n", Update::Increment { by: 1 })
                    .await
                    .expect("increment")
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.expect("task"),
            UpdateOutcome::Applied(_)
        ));
    }
    let loaded = c.load(&key).await.expect("the session is live");
    assert_eq!(
        loaded.data().get("n"),
        Some(&json!(5 + TASKS as i64 * 4)),
        "every concurrent increment counts"
    );
    assert_eq!(loaded.data().get("other"), Some(&json!("kept")));
    assert_eq!(
        (loaded.last_seen(), loaded.expires_at()),
        (r.last_seen(), r.expires_at()),
        "an update is not activity: the times do not move"
    );
    assert_eq!(
        c.update(&key, "n", Update::Increment { by: -3 }).await,
        UpdateOutcome::Applied(Some(json!(2 + TASKS as i64 * 4))),
        "negative steps subtract"
    );
}

/// Compare-and-set writes only over the value it expects, and reports the value it found
/// otherwise; `None` stands for an absent key on both sides.
pub async fn compare_and_set_refuses_a_changed_value(factory: &impl StoreFactory) {
    let c = ctx(factory, "compare_and_set", None).await;
    let key = new_key();
    let r = record(c.now(), None, &[("v", json!({"a": 1}))]);
    assert_eq!(c.create(key, r).await, CommitOutcome::Applied);
    let cas = |expected: Option<Value>, new: Option<Value>| Update::CompareAndSet { expected, new };
    assert_eq!(
        c.update(&key, "v", cas(Some(json!({"a": 2})), Some(json!(3))))
            .await,
        UpdateOutcome::Conflict(Some(json!({"a": 1}))),
        "a stale expectation changes nothing"
    );
    assert_eq!(
        c.update(
            &key,
            "v",
            cas(Some(json!({"a": 1})), Some(json!([1, "two"])))
        )
        .await,
        UpdateOutcome::Applied(Some(json!([1, "two"])))
    );
    assert_eq!(
        c.load(&key).await.unwrap().data().get("v"),
        Some(&json!([1, "two"]))
    );
    assert_eq!(
        c.update(&key, "absent", cas(Some(json!(1)), Some(json!(2))))
            .await,
        UpdateOutcome::Conflict(None)
    );
    assert_eq!(
        c.update(&key, "absent", cas(None, Some(json!("new"))))
            .await,
        UpdateOutcome::Applied(Some(json!("new"))),
        "None expects an absent key"
    );
    assert_eq!(
        c.update(&key, "v", cas(Some(json!([1, "two"])), None))
            .await,
        UpdateOutcome::Applied(None),
        "None as the new value removes the key"
    );
    assert_eq!(c.load(&key).await.unwrap().data().get("v"), None);
}

/// An update of a deleted, expired or never written record answers `Missing` and creates
/// nothing.
pub async fn update_never_resurrects(factory: &impl StoreFactory) {
    let c = ctx(factory, "update_never_resurrects", None).await;
    let never = new_key();
    assert_eq!(
        c.update(&never, "n", Update::Increment { by: 1 }).await,
        UpdateOutcome::Missing
    );
    assert_eq!(c.load(&never).await, None);

    let deleted = c.session_of(None).await;
    c.commit(Commit::Delete { key: deleted }).await;
    assert_eq!(
        c.update(&deleted, "n", Update::Increment { by: 1 }).await,
        UpdateOutcome::Missing
    );
    assert_eq!(c.load(&deleted).await, None, "no resurrection");

    let expired = c.session_of(Some("alice")).await;
    c.clock.set(c.now() + TTL);
    let cas = Update::CompareAndSet {
        expected: None,
        new: Some(json!(1)),
    };
    assert_eq!(c.update(&expired, "n", cas).await, UpdateOutcome::Missing);
    assert_eq!(c.load(&expired).await, None);
}
