//! The SQL [`SqliteStore`](super::SqliteStore) runs, written once for the configured
//! table, and the JSON paths and bound values of a patch.

use sqlx::sqlite::Sqlite;

use crate::store::sql::{PatchArgs, Table};
use crate::token::StoreKey;

/// The columns a record is read from, in `stored_row`'s order.
const RECORD_COLUMNS: &str = "created, last_seen, expires_at, principal_data, data, \
                              flash, user_agent, bound_user_agent, bound_ip, meta";
/// Parameters of the patch assignments (see [`assignments`]); data paths and values follow.
const PATCH_PARAMS: usize = 11;

/// The fixed statements, written once for the configured table.
pub(super) struct Statements {
    table: String,
    pub(super) load: String,
    pub(super) lookup: String,
    pub(super) create: String,
    pub(super) is_live: String,
    pub(super) principal_of: String,
    pub(super) count_live: String,
    pub(super) evict: String,
    pub(super) delete: String,
    pub(super) increment: String,
    pub(super) compare_and_set: String,
    pub(super) value_of: String,
    pub(super) sessions_of: String,
    pub(super) delete_sessions_of: String,
    pub(super) sweep: String,
}

impl Statements {
    pub(super) fn new(table: &Table) -> Self {
        let t = table.qualified();
        Self {
            load: format!("SELECT {RECORD_COLUMNS} FROM {t} WHERE key = ?1 AND expires_at > ?2"),
            lookup: format!("SELECT {RECORD_COLUMNS}, expires_at > ?2 FROM {t} WHERE key = ?1"),
            // Create-only, but an expired row under the key is replaced.
            create: format!(
                "INSERT INTO {t} (key, created, last_seen, expires_at, principal, joined, \
                 principal_data, data, flash, user_agent, bound_user_agent, bound_ip, meta) \
                 VALUES (?1, ?3, ?4, ?5, ?6, CASE WHEN ?6 IS NULL THEN NULL ELSE ?2 END, \
                 ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (key) DO UPDATE SET created = excluded.created, \
                 last_seen = excluded.last_seen, expires_at = excluded.expires_at, \
                 principal = excluded.principal, joined = excluded.joined, \
                 principal_data = excluded.principal_data, data = excluded.data, \
                 flash = excluded.flash, user_agent = excluded.user_agent, \
                 bound_user_agent = excluded.bound_user_agent, bound_ip = excluded.bound_ip, \
                 meta = excluded.meta \
                 WHERE expires_at <= ?2 \
                 RETURNING 1"
            ),
            is_live: format!("SELECT 1 FROM {t} WHERE key = ?1 AND expires_at > ?2"),
            principal_of: format!("SELECT principal FROM {t} WHERE key = ?1 AND expires_at > ?2"),
            count_live: format!(
                "SELECT count(*) FROM {t} WHERE principal = ?1 AND expires_at > ?2 AND key <> ?3"
            ),
            evict: format!(
                "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE principal = ?1 \
                 AND expires_at > ?2 AND key <> ?3 ORDER BY joined, key LIMIT ?4) RETURNING key"
            ),
            delete: format!("DELETE FROM {t} WHERE key = ?1"),
            // ?3: the data key's JSON path, ?4: the step, ?5 / ?6: i64::MAX / i64::MIN.
            increment: format!(
                "UPDATE {t} SET data = json_set(data, ?3, \
                 CASE WHEN json_type(data, ?3) = 'integer' \
                 AND typeof(json_extract(data, ?3)) = 'integer' THEN \
                 CASE WHEN ?4 > 0 AND json_extract(data, ?3) > ?5 - ?4 THEN ?5 \
                 WHEN ?4 < 0 AND json_extract(data, ?3) < ?6 - ?4 THEN ?6 \
                 ELSE json_extract(data, ?3) + ?4 END \
                 ELSE ?4 END) \
                 WHERE key = ?1 AND expires_at > ?2 \
                 RETURNING data -> ?3"
            ),
            // ?4: the new value (NULL: remove), ?5: the expected one (NULL: absent).
            compare_and_set: format!(
                "UPDATE {t} SET data = CASE WHEN ?4 IS NULL THEN json_remove(data, ?3) \
                 ELSE json_set(data, ?3, json(?4)) END \
                 WHERE key = ?1 AND expires_at > ?2 AND json(data -> ?3) IS json(?5) \
                 RETURNING 1"
            ),
            value_of: format!("SELECT data -> ?3 FROM {t} WHERE key = ?1 AND expires_at > ?2"),
            sessions_of: format!(
                "SELECT key, created, last_seen, expires_at, user_agent FROM {t} \
                 WHERE principal = ?1 AND expires_at > ?2 ORDER BY last_seen DESC, key"
            ),
            delete_sessions_of: format!(
                "DELETE FROM {t} WHERE principal = ?1 RETURNING key, expires_at > ?2"
            ),
            sweep: format!(
                "DELETE FROM {t} WHERE key IN \
                 (SELECT key FROM {t} WHERE expires_at <= ?1 LIMIT ?2)"
            ),
            table: t,
        }
    }

    /// `UPDATE` of a patch: in place, or re-keyed to `?10` for a move (whose target must be
    /// free of any row, live or expired).
    pub(super) fn patch(&self, patch: &PatchArgs, to: bool) -> String {
        let t = &self.table;
        let set = assignments(patch);
        if to {
            format!(
                "UPDATE {t} SET key = ?10, {set} WHERE key = ?1 AND expires_at > ?2 \
                 AND NOT EXISTS (SELECT 1 FROM {t} WHERE key = ?10) RETURNING 1"
            )
        } else {
            format!("UPDATE {t} SET {set} WHERE key = ?1 AND expires_at > ?2 RETURNING 1")
        }
    }
}

/// The `SET` list of a patch. Parameters: ?1 key, ?2 now, ?3 last_seen, ?4 expires_at,
/// ?5 principal mode (0 keep, 1 set, 2 clear), ?6 principal index key, ?7 principal JSON,
/// ?8 whether the flash changes, ?9 the flash, ?10 a move's target, ?11 the `meta` change
/// (merged with `json_patch`, whose `null` members remove); then one path per
/// removed key, and a path and a value per set key. SQLite evaluates every expression
/// against the row as it was, so `principal IS ?6` compares with the old owner.
fn assignments(patch: &PatchArgs) -> String {
    let mut n = PATCH_PARAMS;
    let mut param = || {
        n += 1;
        format!("?{n}")
    };
    let mut data = String::from("data");
    if !patch.removes.is_empty() {
        let paths: Vec<String> = patch.removes.iter().map(|_| param()).collect();
        data = format!("json_remove({data}, {})", paths.join(", "));
    }
    if !patch.sets.is_empty() {
        let pairs: Vec<String> = patch
            .sets
            .iter()
            .map(|_| format!("{}, json({})", param(), param()))
            .collect();
        data = format!("json_set({data}, {})", pairs.join(", "));
    }
    format!(
        "last_seen = ?3, expires_at = ?4, data = {data}, \
         principal = CASE ?5 WHEN 0 THEN principal WHEN 1 THEN ?6 ELSE NULL END, \
         principal_data = CASE ?5 WHEN 0 THEN principal_data WHEN 1 THEN ?7 ELSE NULL END, \
         joined = CASE WHEN ?5 = 0 OR (?5 = 1 AND principal IS ?6) THEN joined \
         WHEN ?5 = 1 THEN ?2 ELSE NULL END, \
         flash = CASE WHEN ?8 THEN ?9 ELSE flash END, \
         meta = CASE WHEN ?11 IS NULL THEN meta ELSE json_patch(COALESCE(meta, '{{}}'), ?11) END"
    )
}

/// The SQLite JSON path of data key `key`: `$."<key>"`, with `"`, `\` and control
/// characters written as JSON escapes (SQLite ends a quoted label at the first `"`, and
/// decodes escapes inside it).
pub(super) fn path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    out.push_str("$.\"");
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\u0022"),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds ?1 to ?11 and the data paths and values of [`assignments`].
pub(super) fn bind_patch<'q>(
    sql: &'q str,
    key: &StoreKey,
    now: i64,
    patch: &'q PatchArgs,
    to: Option<&StoreKey>,
) -> Query<'q> {
    let mut q = sqlx::query(sql)
        .bind(key.as_bytes().to_vec())
        .bind(now)
        .bind(patch.last_seen)
        .bind(patch.expires_at)
        .bind(patch.principal.mode())
        .bind(patch.principal.index_key())
        .bind(patch.principal.json())
        .bind(patch.flash.is_some())
        .bind(patch.flash.clone().flatten())
        .bind(to.map(|k| k.as_bytes().to_vec()))
        .bind(patch.meta.as_deref());
    for key in &patch.removes {
        q = q.bind(path(key));
    }
    for (key, value) in &patch.sets {
        q = q.bind(path(key)).bind(value.as_str());
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_every_key() {
        assert_eq!(path("cart"), r#"$."cart""#);
        assert_eq!(path("a\"b"), r#"$."a\u0022b""#);
        assert_eq!(path("a\\b"), r#"$."a\\b""#);
        assert_eq!(path("\n"), r#"$."\u000a""#);
    }
}
