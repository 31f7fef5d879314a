//! The stored form of a session ([`Record`]), the [`Patch`] a commit applies to it, and the
//! [`SessionInfo`] summary shown to users and operators.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::clock::to_datetime;
use crate::flash::Flash;
use crate::principal::Principal;
use crate::token::StoreKey;

/// Longest user agent kept with a session; the rest is cut so a client cannot bloat records.
pub(crate) const MAX_USER_AGENT: usize = 256;

/// A session as a store keeps it. Times are Unix seconds.
///
/// Stores treat it as opaque apart from [`Record::expires_at`] (for TTLs) and
/// [`Record::principal`] (for the per-principal index); it serialises with serde.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub(crate) created: i64,
    pub(crate) last_seen: i64,
    pub(crate) expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) principal: Option<Principal>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) data: BTreeMap<String, Value>,
    /// Plain strings in records of the previous release; [`Flash`] reads both forms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) flash: Vec<Flash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<String>,
    /// Hex SHA-256 of the creating request's `User-Agent`, when user-agent binding is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bound_user_agent: Option<String>,
    /// The creating request's client IP, when IP binding is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bound_ip: Option<IpAddr>,
    /// The login's cookie choice ("remember me"): `Some(true)` a persistent cookie, `Some(false)`
    /// a browser-session cookie, `None` the configured default. Kept so every later token of
    /// the session goes out the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) persistent: Option<bool>,
    /// When the visitor consented to the session cookie (Unix seconds), under consent mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) consented_at: Option<i64>,
}

impl Record {
    /// An empty record created at `now` that expires at `expires_at`.
    pub fn new(now: i64, expires_at: i64) -> Self {
        Self {
            created: now,
            last_seen: now,
            expires_at,
            principal: None,
            data: BTreeMap::new(),
            flash: Vec::new(),
            user_agent: None,
            bound_user_agent: None,
            bound_ip: None,
            persistent: None,
            consented_at: None,
        }
    }

    /// Creation time (Unix seconds); the absolute timeout counts from here and is never extended.
    pub fn created(&self) -> i64 {
        self.created
    }

    /// Last time a request refreshed the session (Unix seconds).
    pub fn last_seen(&self) -> i64 {
        self.last_seen
    }

    /// When the session stops being valid (Unix seconds): the earlier of the idle and the
    /// absolute deadline. A store must never return a record at or past this time.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Whether the record is dead at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// The logged-in principal, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The user agent of the request that created the session, cut to 256 bytes.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// The session's data map.
    pub fn data(&self) -> &BTreeMap<String, Value> {
        &self.data
    }

    pub(crate) fn flash(&self) -> &[Flash] {
        &self.flash
    }

    /// The login's cookie choice: `Some(true)` persistent, `Some(false)` browser-session,
    /// `None` the layer's configured default.
    pub fn persistent(&self) -> Option<bool> {
        self.persistent
    }

    /// When the visitor consented to the session cookie (Unix seconds), if recorded.
    pub fn consented_at(&self) -> Option<i64> {
        self.consented_at
    }

    pub(crate) fn set_persistent(&mut self, persistent: Option<bool>) {
        self.persistent = persistent;
    }

    pub(crate) fn set_consented_at(&mut self, at: Option<i64>) {
        self.consented_at = at;
    }

    pub(crate) fn data_mut(&mut self) -> &mut BTreeMap<String, Value> {
        &mut self.data
    }

    pub(crate) fn set_principal(&mut self, principal: Option<Principal>) {
        self.principal = principal;
    }

    pub(crate) fn principal_mut(&mut self) -> Option<&mut Principal> {
        self.principal.as_mut()
    }

    pub(crate) fn flash_mut(&mut self) -> &mut Vec<Flash> {
        &mut self.flash
    }

    pub(crate) fn set_user_agent(&mut self, user_agent: Option<&str>) {
        self.user_agent = user_agent.map(|ua| {
            let mut end = ua.len().min(MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_owned()
        });
    }

    pub(crate) fn set_binding(&mut self, user_agent: Option<String>, ip: Option<IpAddr>) {
        self.bound_user_agent = user_agent;
        self.bound_ip = ip;
    }

    pub(crate) fn bound_user_agent(&self) -> Option<&str> {
        self.bound_user_agent.as_deref()
    }

    pub(crate) fn bound_ip(&self) -> Option<IpAddr> {
        self.bound_ip
    }

    /// Stamps a record that is about to be created.
    pub(crate) fn set_created(&mut self, now: i64, expires_at: i64) {
        self.created = now;
        self.last_seen = now;
        self.expires_at = expires_at;
    }

    /// A summary of this record filed under `key`.
    pub fn info(&self, key: StoreKey) -> SessionInfo {
        SessionInfo {
            key,
            created: self.created,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
            absolute_at: None,
            principal: self.principal.as_ref().map(|p| p.id().to_owned()),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// The changes one request made to a session, applied by a store at commit.
///
/// A patch names only what changed, so two concurrent requests that touch different keys both
/// survive. `set` and `remove` act on data keys; `principal` and `flash`, when present, replace
/// those fields whole; the times are always written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    set: Vec<(String, Value)>,
    remove: Vec<String>,
    principal: Option<Option<Principal>>,
    flash: Option<Vec<Flash>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    persistent: Option<Option<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consented_at: Option<i64>,
    last_seen: i64,
    expires_at: i64,
}

/// A field that is present is `Some`, even when it is `null` (which means "reset"): plain
/// `Option<Option<_>>` would read that `null` as absent.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl Patch {
    pub(crate) fn new(last_seen: i64, expires_at: i64) -> Self {
        Self {
            last_seen,
            expires_at,
            ..Self::default()
        }
    }

    pub(crate) fn set(&mut self, key: String, value: Value) {
        self.set.push((key, value));
    }

    pub(crate) fn remove(&mut self, key: String) {
        self.remove.push(key);
    }

    pub(crate) fn replace_principal(&mut self, principal: Option<Principal>) {
        self.principal = Some(principal);
    }

    pub(crate) fn replace_flash(&mut self, flash: Vec<Flash>) {
        self.flash = Some(flash);
    }

    pub(crate) fn replace_persistent(&mut self, persistent: Option<bool>) {
        self.persistent = Some(persistent);
    }

    pub(crate) fn record_consent(&mut self, at: i64) {
        self.consented_at = Some(at);
    }

    /// Data keys to set, with their new values.
    pub fn sets(&self) -> &[(String, Value)] {
        &self.set
    }

    /// Data keys to remove.
    pub fn removes(&self) -> &[String] {
        &self.remove
    }

    /// `Some(new)` when the principal changed (`Some(None)`: logged out).
    pub fn principal(&self) -> Option<Option<&Principal>> {
        self.principal.as_ref().map(Option::as_ref)
    }

    /// `Some(list)` when the flash messages changed.
    pub fn flash(&self) -> Option<&[Flash]> {
        self.flash.as_deref()
    }

    /// `Some(choice)` when the login's cookie choice changed (see [`Record::persistent`]).
    pub fn persistent(&self) -> Option<Option<bool>> {
        self.persistent
    }

    /// `Some(time)` when consent was recorded (see [`Record::consented_at`]).
    pub fn consented_at(&self) -> Option<i64> {
        self.consented_at
    }

    /// New last-seen time (Unix seconds).
    pub fn last_seen(&self) -> i64 {
        self.last_seen
    }

    /// New expiry (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Whether the patch changes anything beyond the times.
    pub fn touches_data(&self) -> bool {
        !self.set.is_empty()
            || !self.remove.is_empty()
            || self.principal.is_some()
            || self.flash.is_some()
            || self.persistent.is_some()
            || self.consented_at.is_some()
    }

    /// Applies the patch to `record`: what a store does under its lock or script.
    pub fn apply(&self, record: &mut Record) {
        for key in &self.remove {
            record.data.remove(key);
        }
        for (key, value) in &self.set {
            record.data.insert(key.clone(), value.clone());
        }
        if let Some(principal) = &self.principal {
            record.principal.clone_from(principal);
        }
        if let Some(flash) = &self.flash {
            record.flash.clone_from(flash);
        }
        if let Some(persistent) = self.persistent {
            record.persistent = persistent;
        }
        if let Some(at) = self.consented_at {
            record.consented_at = Some(at);
        }
        record.last_seen = self.last_seen;
        record.expires_at = self.expires_at;
    }
}

/// A summary of one session: for [`Session::info`](crate::Session::info), for listing a
/// principal's sessions and for "log out this device" pages. Holds no secret: the session is
/// named by a short hash.
///
/// The relative figures (`elapsed`, `remaining`, `is_active`...) take the time to measure
/// from, so a page shows them as of its request.
///
/// # Example
///
/// ```
/// use axum_tessera::Session;
///
/// async fn status(session: Session) -> String {
///     let now = time::OffsetDateTime::now_utc();
///     match session.info() {
///         Some(info) => format!(
///             "signed in for {} s, {} s left (at most {} s)",
///             info.elapsed(now).as_secs(),
///             info.remaining(now).as_secs(),
///             info.absolute_remaining(now).map_or(0, |d| d.as_secs()),
///         ),
///         None => "no session".into(),
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    key: StoreKey,
    created: i64,
    last_seen: i64,
    expires_at: i64,
    /// `created` plus the absolute timeout, once the layer (which knows the timeout) has
    /// seen this summary; a store alone cannot tell.
    absolute_at: Option<i64>,
    principal: Option<String>,
    user_agent: Option<String>,
}

impl SessionInfo {
    /// A summary assembled by a store that keeps sessions field by field. Times are Unix
    /// seconds; `principal` is the principal's ID (not its index key).
    pub fn new(
        key: StoreKey,
        created: i64,
        last_seen: i64,
        expires_at: i64,
        principal: Option<String>,
        user_agent: Option<String>,
    ) -> Self {
        Self {
            key,
            created,
            last_seen,
            expires_at,
            absolute_at: None,
            principal,
            user_agent,
        }
    }

    /// Adds the absolute deadline, from the layer's absolute timeout.
    pub(crate) fn with_absolute_timeout(mut self, absolute: i64) -> Self {
        self.absolute_at = Some(self.created.saturating_add(absolute));
        self
    }

    /// Replaces the times with those the current request's commit writes.
    pub(crate) fn with_times(mut self, created: i64, last_seen: i64, expires_at: i64) -> Self {
        self.created = created;
        self.last_seen = last_seen;
        self.expires_at = expires_at;
        self
    }

    /// The store key; [`StoreKey::short`] is the label to show.
    pub fn key(&self) -> StoreKey {
        self.key
    }

    /// When the session was created.
    pub fn created(&self) -> OffsetDateTime {
        to_datetime(self.created)
    }

    /// The last activity: when a request last refreshed the idle clock (a login, a write, a
    /// due sliding refresh, [`Session::extend`](crate::Session::extend)).
    pub fn last_seen(&self) -> OffsetDateTime {
        to_datetime(self.last_seen)
    }

    /// When it expires unless refreshed: the earlier of the idle and the absolute deadline.
    pub fn expires(&self) -> OffsetDateTime {
        to_datetime(self.expires_at)
    }

    /// The absolute deadline (creation plus the absolute timeout), which no activity moves.
    /// `None` only for a summary straight from a store's
    /// [`sessions_of`](crate::store::SessionStore::sessions_of), which does not know the
    /// timeout; those from [`Session::info`](crate::Session::info) and
    /// [`Session::sessions_of_principal`](crate::Session::sessions_of_principal) have it.
    pub fn absolute_expires(&self) -> Option<OffsetDateTime> {
        self.absolute_at.map(to_datetime)
    }

    /// Time since creation at `now`, never negative.
    pub fn elapsed(&self, now: OffsetDateTime) -> Duration {
        Duration::try_from(now - self.created()).unwrap_or(Duration::ZERO)
    }

    /// Time left at `now` before the session expires (idle or absolute, whichever comes
    /// first), never negative.
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        // The conversion fails only for a negative span: expired.
        Duration::try_from(self.expires() - now).unwrap_or(Duration::ZERO)
    }

    /// Time left at `now` before the absolute deadline, never negative; `None` when the
    /// deadline is unknown (see [`SessionInfo::absolute_expires`]).
    pub fn absolute_remaining(&self, now: OffsetDateTime) -> Option<Duration> {
        self.absolute_expires()
            .map(|at| Duration::try_from(at - now).unwrap_or(Duration::ZERO))
    }

    /// Whether the session is still valid at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        now < self.expires()
    }

    /// The principal ID, when logged in.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The user agent that created it.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_applies_sets_removes_and_times_only() {
        let mut record = Record::new(10, 100);
        record.data.insert("keep".into(), json!(1));
        record.data.insert("drop".into(), json!(2));
        record.set_principal(Some(Principal::user("u")));
        let mut patch = Patch::new(20, 110);
        patch.set("new".into(), json!("x"));
        patch.remove("drop".into());
        patch.apply(&mut record);
        assert_eq!(record.data.get("keep"), Some(&json!(1)));
        assert_eq!(record.data.get("new"), Some(&json!("x")));
        assert!(!record.data.contains_key("drop"));
        assert_eq!(
            record.principal().map(Principal::id),
            Some("u"),
            "untouched field survives"
        );
        assert_eq!(
            (record.created, record.last_seen, record.expires_at),
            (10, 20, 110)
        );
    }

    #[test]
    fn user_agent_is_cut_on_a_char_boundary() {
        let mut record = Record::new(0, 1);
        let long = "é".repeat(200);
        record.set_user_agent(Some(&long));
        let kept = record.user_agent().unwrap();
        assert!(kept.len() <= MAX_USER_AGENT);
        assert!(long.starts_with(kept));
    }
}
