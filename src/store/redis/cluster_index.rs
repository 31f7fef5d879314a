//! The per-principal index of [`RedisStore`] in cluster mode: admitting a session under a
//! principal's limit, pruning entries that no longer name a live session, listing and
//! deleting a principal's sessions, and the TTL that keeps an abandoned index from staying
//! forever.

use super::cluster::*;
use super::codec::*;
use super::*;

impl RedisStore {
    /// Adds `key` to the index of `owner`, taking the place of `rotating` if that is
    /// already indexed, and extends the index to `ttl`; answers the members to evict, or
    /// `LimitReached`.
    pub(super) async fn admit(
        &self,
        owner: &[u8],
        key: &StoreKey,
        rotating: Option<&StoreKey>,
        enforce: bool,
        ttl: i64,
        deadline: i64,
    ) -> Result<Admitted, StoreError> {
        let (limit, policy) = if enforce {
            self.limit_args()
        } else {
            (0, "evict")
        };
        if limit > 0 {
            // Only live members may count against the limit; the index step cannot see the
            // records, so prune first.
            self.sessions_in_cluster(&String::from_utf8_lossy(owner), deadline)
                .await?;
        }
        let args = args![
            owner,
            key.to_hex(),
            rotating.map(StoreKey::to_hex).unwrap_or_default(),
            limit,
            policy,
            ttl,
        ];
        let answer: Vec<Vec<u8>> = self
            .step(self.index_key_of(owner), "admit", deadline, args)
            .await?;
        if !is(answer.first(), b"ok") {
            return Err(StoreError::from_kind(StoreErrorKind::LimitReached));
        }
        Ok(Admitted {
            added: is(answer.get(1), b"1"),
            evicted: answer.into_iter().skip(2).collect(),
        })
    }
    /// Removes `members` from the index of `owner` and extends it to `ttl` (0: as it is).
    pub(super) async fn prune(
        &self,
        owner: &[u8],
        members: Vec<Vec<u8>>,
        ttl: i64,
        deadline: i64,
    ) -> Result<(), StoreError> {
        if owner.is_empty() {
            return Ok(());
        }
        self.step::<String>(
            self.index_key_of(owner),
            "prune",
            deadline,
            args![ttl, members],
        )
        .await
        .map(drop)
    }
    /// Undoes what a commit refused after admitting did to the index (nothing when the
    /// member was there before). Best effort: the commit's answer is known, and an entry
    /// left behind is pruned by the next reader once it is no login in flight.
    pub(super) async fn unadmit(
        &self,
        owner: &[u8],
        key: &StoreKey,
        admitted: &Admitted,
        deadline: i64,
    ) {
        if admitted.added {
            let member = vec![key.to_hex().into_bytes()];
            if self.prune(owner, member, 0, deadline).await.is_err() {
                tracing::debug!("index entry of a refused commit left to readers");
            }
        }
    }
    /// The index members of `principal` with their join times, and the index's TTL (ms;
    /// negative: none).
    pub(super) async fn members(
        &self,
        principal: &[u8],
        deadline: i64,
    ) -> Result<(i64, Vec<(Vec<u8>, f64)>), StoreError> {
        let reply: Vec<Vec<u8>> = self
            .step(
                self.index_key_of(principal),
                "members",
                deadline,
                Vec::new(),
            )
            .await?;
        let mut reply = reply.into_iter();
        let pttl = int(reply.next().as_ref()).unwrap_or(-1);
        let members = pairs(reply.collect())
            .into_iter()
            .map(|(m, score)| {
                let score = std::str::from_utf8(&score)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0);
                (m, score)
            })
            .collect();
        Ok((pttl, members))
    }
    /// Whether an index member without a record may be a login still in flight (admitted,
    /// record not yet written): such a member must be neither pruned nor forgotten.
    pub(super) fn in_flight(&self, joined: f64, now: i64) -> bool {
        let grace = i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX / 2) + 1;
        joined > now.saturating_sub(grace) as f64
    }
    /// The live sessions of `principal`, pruning index entries that are not, finishing
    /// moves left half-tidied, and extending the index to its longest-lived session.
    pub(super) async fn sessions_in_cluster(
        &self,
        principal: &str,
        deadline: i64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let now = self.clock.now();
        let (pttl, members) = self.members(principal.as_bytes(), deadline).await?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        let mut until = 0i64;
        for (hex, joined) in members {
            let Some(key) = std::str::from_utf8(&hex).ok().and_then(StoreKey::from_hex) else {
                stale.push(hex);
                continue;
            };
            let row: Vec<Option<Vec<u8>>> = self
                .query(
                    redis::cmd("HMGET")
                        .arg(self.session_key_of(&hex))
                        .arg(&["c", "l", "e", "pi", "u", "ix", "pf", "op", "pd"]),
                )
                .await?;
            let mut row: Vec<Option<Vec<u8>>> = row
                .into_iter()
                .chain(std::iter::repeat(None))
                .take(9)
                .collect();
            if let Some(source) = row[6].take() {
                let stub = Stub {
                    source,
                    id: row[7].take().unwrap_or_default(),
                    deadline: row[8].take().unwrap_or_default(),
                };
                match self.resolve(&key, &stub, deadline).await? {
                    Resolved::Committed(fields) => {
                        let fields: HashMap<Vec<u8>, Vec<u8>> = fields.into_iter().collect();
                        for (i, name) in ["c", "l", "e", "pi", "u", "ix"].iter().enumerate() {
                            row[i] = fields.get(name.as_bytes()).cloned();
                        }
                    }
                    Resolved::Pending => continue,
                    Resolved::Gone => {
                        stale.push(hex);
                        continue;
                    }
                }
            }
            match (
                int(row[0].as_ref()),
                int(row[1].as_ref()),
                int(row[2].as_ref()),
                &row[3],
            ) {
                (Some(c), Some(l), Some(e), Some(pi))
                    if e > now && pi.as_slice() == principal.as_bytes() =>
                {
                    until = until.max(int(row[5].as_ref()).unwrap_or(e).max(e));
                    // A user agent that does not decode makes a record corrupt, not dead:
                    // it stays indexed (so "log out everywhere" still reaches it) but is
                    // not listed.
                    let ua = match row[4].take() {
                        Some(ua) => match String::from_utf8(ua) {
                            Ok(ua) => Some(ua),
                            Err(_) => continue,
                        },
                        None => None,
                    };
                    out.push(info(key, c, l, e, principal, ua)?);
                }
                _ if row[2].is_none() && self.in_flight(joined, now) => {}
                _ => stale.push(hex),
            }
        }
        let ttl = until.saturating_sub(now).max(0);
        if !stale.is_empty() || (ttl > 0 && pttl / 1000 < ttl) {
            self.prune(principal.as_bytes(), stale, ttl, deadline)
                .await?;
        }
        Ok(out)
    }
    pub(super) async fn delete_in_cluster(
        &self,
        principal: &str,
        deadline: i64,
    ) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut deleted = 0;
        let mut removed = Vec::new();
        let (_, members) = self.members(principal.as_bytes(), deadline).await?;
        for (hex, joined) in members {
            let (owner, live): (Vec<u8>, i64) = self
                .step(
                    self.session_key_of(&hex),
                    "delete",
                    deadline,
                    args![principal, "a"],
                )
                .await?;
            deleted += u64::from(live == 1);
            if owner.is_empty() && self.in_flight(joined, now) {
                continue;
            }
            // Member by member, not the whole index: a login meanwhile stays indexed.
            removed.push(hex);
        }
        if !removed.is_empty() {
            self.prune(principal.as_bytes(), removed, 0, deadline)
                .await?;
        }
        Ok(deleted)
    }
}

/// The eviction a login's admit asked for, as tidying work (none when nothing was evicted).
pub(super) fn evict(owner: Vec<u8>, members: Vec<Vec<u8>>) -> Vec<Tidy> {
    if members.is_empty() {
        Vec::new()
    } else {
        vec![Tidy::Evict { owner, members }]
    }
}

/// Until when (store clock) an index must live for a session expiring at `expires_at`, and
/// that as a TTL from `now`. Twice the session's remaining life, so that a session kept
/// alive by activity needs its index extended only about once per idle timeout.
pub(super) fn index_until(expires_at: i64, now: i64) -> (i64, i64) {
    let ttl = expires_at.saturating_sub(now).max(0).saturating_mul(2);
    (now.saturating_add(ttl), ttl)
}
