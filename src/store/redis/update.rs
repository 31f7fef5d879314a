//! [`SessionStore::update`] for [`RedisStore`]: the update script (increment and
//! compare-and-set of one data field, applied on the server).

use super::codec::*;
use super::*;

impl RedisStore {
    /// The update script against `key`'s `field`, with the operation's own arguments.
    pub(super) async fn run_update(
        &self,
        key: &StoreKey,
        deadline: i64,
        field: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        UPDATE
            .key(self.session_key(key))
            .arg(deadline)
            .arg(self.clock.now())
            .arg(field)
            .arg(args)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(from_redis)
    }
    pub(super) async fn update_once(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
        deadline: i64,
    ) -> Result<UpdateOutcome, StoreError> {
        let field = format!("{DATA}{field}");
        match update {
            Update::Increment { by } => {
                let answer = self
                    .run_update(key, deadline, &field, args!["incr", by])
                    .await?;
                update_outcome(answer)
            }
            Update::CompareAndSet { expected, new } => {
                let new_text = new.as_ref().map(json).transpose()?.unwrap_or_default();
                let mut expected_text = expected
                    .as_ref()
                    .map(|v| json(v).map(String::into_bytes))
                    .transpose()?;
                for attempt in 0..2 {
                    let args = args![
                        "cas",
                        flag(expected_text.is_some()),
                        expected_text.clone().unwrap_or_default(),
                        flag(new.is_some()),
                        new_text,
                    ];
                    let answer = self.run_update(key, deadline, &field, args).await?;
                    if answer.first().map(Vec::as_slice) != Some(b"conflict") {
                        return update_outcome(answer);
                    }
                    let held = answer.into_iter().nth(1);
                    let current = held.as_deref().map(parse_json).transpose()?;
                    // The same value in other JSON text (written by another serialiser):
                    // compare against the exact text the store holds, once.
                    if attempt == 0 && current.is_some() && current == expected {
                        expected_text = held;
                        continue;
                    }
                    return Ok(UpdateOutcome::Conflict(current));
                }
                unreachable!("the second attempt returns")
            }
        }
    }
}

/// How the update script answered, as an [`UpdateOutcome`].
fn update_outcome(answer: Vec<Vec<u8>>) -> Result<UpdateOutcome, StoreError> {
    let mut answer = answer.into_iter();
    let tag = answer.next().unwrap_or_default();
    let value = answer.next().as_deref().map(parse_json).transpose()?;
    match tag.as_slice() {
        b"applied" => Ok(UpdateOutcome::Applied(value)),
        b"conflict" => Ok(UpdateOutcome::Conflict(value)),
        b"missing" => Ok(UpdateOutcome::Missing),
        other => Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "unexpected answer from the update script: {:?}",
                String::from_utf8_lossy(other)
            ),
        )),
    }
}
