//! What the SQL stores ([`SqliteStore`](crate::store::SqliteStore),
//! [`PostgresStore`](crate::store::PostgresStore)) share: their settings, the table name, how a
//! [`Record`] maps to the columns of one row and a [`Patch`] to bound values, how sqlx errors
//! map to [`StoreError`]s, and the time bound on every call.
//!
//! The table layout is documented in [`schema`]; each backend writes its own SQL over it,
//! with the same rules: every statement compares `expires_at` with the store's clock (never
//! the database's), every write is one statement or one transaction that writes only when
//! the store answers `Applied`, and JSON is changed by the database (`json_set` / `json_remove` on
//! SQLite, `-` / `||` on PostgreSQL), never read, changed and written back from Rust.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, StoreError, StoreErrorKind};
use crate::flash::Flash;
use crate::principal::Principal;
use crate::record::{Patch, Record};
use crate::store::LimitPolicy;
use crate::token::StoreKey;

#[cfg(feature = "postgres")]
mod postgres;
pub(crate) mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

pub(crate) const DEFAULT_TABLE: &str = "tessera_sessions";
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest name part: leaves room for the index suffixes within PostgreSQL's 63 bytes.
const MAX_NAME: usize = 48;
/// Rows one sweep statement deletes: short transactions, however many rows are due.
pub(crate) const SWEEP_BATCH: i64 = 1000;

/// A validated `[schema.]table` name, safe to splice into SQL text: ASCII letters, digits and
/// `_` only, so it needs no quoting (PostgreSQL folds it to lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    schema: Option<String>,
    name: String,
}

impl Table {
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidTableName {
            name: text.to_owned(),
        };
        let valid = |part: &str| {
            let mut chars = part.chars();
            part.len() <= MAX_NAME
                && chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, text),
        };
        if !valid(name) || schema.is_some_and(|s| !valid(s)) {
            return Err(invalid());
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// `schema.table` or `table`, for statements.
    pub(crate) fn qualified(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }

    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The unqualified table name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// The options both SQL stores take.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) table: Table,
    pub(crate) timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limit: Option<(usize, LimitPolicy)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            table: Table::parse(DEFAULT_TABLE).expect("the default table name is valid"),
            timeout: DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
            limit: None,
        }
    }
}

impl Settings {
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// `(max, evict)` as the admitting statements take them: `max` 0 means no limit.
    pub(crate) fn limit_args(&self) -> (i64, bool) {
        match self.limit {
            Some((max, policy)) => (
                i64::try_from(max).unwrap_or(i64::MAX),
                policy == LimitPolicy::EvictOldest,
            ),
            None => (0, true),
        }
    }

    /// Runs `op` under the command timeout.
    pub(crate) async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::from_kind(StoreErrorKind::Timeout)),
        }
    }
}

/// The columns of one row that make up a [`Record`], as read back (JSON columns as text).
pub(crate) struct StoredRow {
    pub(crate) created: i64,
    pub(crate) last_seen: i64,
    pub(crate) expires_at: i64,
    pub(crate) principal_data: Option<String>,
    pub(crate) data: String,
    pub(crate) flash: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) bound_user_agent: Option<String>,
    pub(crate) bound_ip: Option<String>,
    /// The `meta` column (see [`Meta`]).
    pub(crate) meta: Option<String>,
}

/// The `meta` column: the rarely set parts of a record (a login's remember-me choice, the
/// time of consent) as one JSON object, so a patch can change either without knowing the
/// other (`||` on PostgreSQL, `json_patch` on SQLite; a `null` member resets one).
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    persistent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consented_at: Option<i64>,
}

impl Meta {
    /// The column of a whole record: NULL when it holds neither.
    fn of(record: &Record) -> Result<Option<String>, StoreError> {
        let meta = Meta {
            persistent: record.persistent(),
            consented_at: record.consented_at(),
        };
        if meta.persistent.is_none() && meta.consented_at.is_none() {
            return Ok(None);
        }
        json(&meta).map(Some)
    }

    /// What a patch merges into the column: only the members it changes (`null` resets),
    /// or NULL when it changes neither.
    fn change(patch: &Patch) -> Option<String> {
        let mut object = serde_json::Map::new();
        if let Some(persistent) = patch.persistent() {
            object.insert(
                "persistent".into(),
                persistent.map_or(Value::Null, Value::Bool),
            );
        }
        if let Some(at) = patch.consented_at() {
            object.insert("consented_at".into(), at.into());
        }
        (!object.is_empty()).then(|| Value::Object(object).to_string())
    }
}

impl StoredRow {
    /// The record this row holds; a column that does not decode makes the row
    /// [`StoreErrorKind::Corrupt`].
    pub(crate) fn decode(self) -> Result<Record, StoreError> {
        let principal: Option<Principal> = self
            .principal_data
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?;
        let data: BTreeMap<String, Value> = serde_json::from_str(&self.data).map_err(corrupt)?;
        let flash: Vec<Flash> = self
            .flash
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?
            .unwrap_or_default();
        let bound_ip: Option<IpAddr> = self
            .bound_ip
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| StoreError::new(StoreErrorKind::Corrupt, e))?;
        let meta: Meta = match self.meta.as_deref() {
            Some(text) => serde_json::from_str(text).map_err(corrupt)?,
            None => Meta::default(),
        };
        Ok(Record {
            created: self.created,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
            principal,
            data,
            flash,
            user_agent: self.user_agent,
            bound_user_agent: self.bound_user_agent,
            bound_ip,
            persistent: meta.persistent,
            consented_at: meta.consented_at,
        })
    }
}

/// A whole record as the values of one new row.
pub(crate) struct NewRow {
    pub(crate) created: i64,
    pub(crate) last_seen: i64,
    pub(crate) expires_at: i64,
    /// [`Principal::index_key`], the indexed column.
    pub(crate) principal: Option<String>,
    pub(crate) principal_data: Option<String>,
    pub(crate) data: String,
    pub(crate) flash: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) bound_user_agent: Option<String>,
    pub(crate) bound_ip: Option<String>,
    pub(crate) meta: Option<String>,
}

impl NewRow {
    pub(crate) fn encode(record: &Record) -> Result<Self, StoreError> {
        Ok(Self {
            created: record.created(),
            last_seen: record.last_seen(),
            expires_at: record.expires_at(),
            principal: record.principal().map(Principal::index_key),
            principal_data: record.principal().map(json).transpose()?,
            data: json(record.data())?,
            flash: flash_column(record.flash())?,
            user_agent: record.user_agent().map(str::to_owned),
            bound_user_agent: record.bound_user_agent().map(str::to_owned),
            bound_ip: record.bound_ip().map(|ip| ip.to_string()),
            meta: Meta::of(record)?,
        })
    }
}

/// How a patch changes the principal, in the `principal_mode` the statements take.
pub(crate) enum PrincipalChange {
    Keep,
    Set { index_key: String, json: String },
    Clear,
}

impl PrincipalChange {
    /// 0 keep, 1 set, 2 clear.
    pub(crate) fn mode(&self) -> i16 {
        match self {
            Self::Keep => 0,
            Self::Set { .. } => 1,
            Self::Clear => 2,
        }
    }

    pub(crate) fn index_key(&self) -> Option<&str> {
        match self {
            Self::Set { index_key, .. } => Some(index_key),
            Self::Keep | Self::Clear => None,
        }
    }

    pub(crate) fn json(&self) -> Option<&str> {
        match self {
            Self::Set { json, .. } => Some(json),
            Self::Keep | Self::Clear => None,
        }
    }
}

/// A [`Patch`] as bound values.
pub(crate) struct PatchArgs {
    pub(crate) last_seen: i64,
    pub(crate) expires_at: i64,
    pub(crate) removes: Vec<String>,
    /// Data keys to set with their JSON text, in the patch's order (a later one wins).
    pub(crate) sets: Vec<(String, String)>,
    pub(crate) principal: PrincipalChange,
    /// `Some(column)` when the flash changes (`Some(None)`: no messages).
    pub(crate) flash: Option<Option<String>>,
    /// What to merge into the `meta` column; `None` when the patch changes neither member.
    pub(crate) meta: Option<String>,
}

impl PatchArgs {
    pub(crate) fn encode(patch: &Patch) -> Result<Self, StoreError> {
        Ok(Self {
            last_seen: patch.last_seen(),
            expires_at: patch.expires_at(),
            removes: patch.removes().to_vec(),
            sets: patch
                .sets()
                .iter()
                .map(|(k, v)| Ok((k.clone(), json(v)?)))
                .collect::<Result<_, StoreError>>()?,
            principal: match patch.principal() {
                None => PrincipalChange::Keep,
                Some(None) => PrincipalChange::Clear,
                Some(Some(p)) => PrincipalChange::Set {
                    index_key: p.index_key(),
                    json: json(p)?,
                },
            },
            flash: patch.flash().map(flash_column).transpose()?,
            meta: Meta::change(patch),
        })
    }

    /// The sets as one JSON object (a later set of a key wins).
    #[cfg(feature = "postgres")]
    pub(crate) fn sets_object(&self) -> String {
        let mut object = serde_json::Map::new();
        for (key, value) in &self.sets {
            // Each value was serialised by `json` just above, so it parses back.
            let value = serde_json::from_str(value).unwrap_or(Value::Null);
            object.insert(key.clone(), value);
        }
        Value::Object(object).to_string()
    }
}

/// The `flash` column: a JSON array, NULL when there are no messages.
fn flash_column(flash: &[Flash]) -> Result<Option<String>, StoreError> {
    if flash.is_empty() {
        Ok(None)
    } else {
        json(&flash).map(Some)
    }
}

pub(crate) fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::new(StoreErrorKind::InvalidValue, e))
}

pub(crate) fn corrupt(err: serde_json::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, err)
}

/// A JSON value read back from the database.
pub(crate) fn parse_value(text: Option<&str>) -> Result<Option<Value>, StoreError> {
    text.map(serde_json::from_str).transpose().map_err(corrupt)
}

/// The store key in a `key` column.
pub(crate) fn key_of(bytes: &[u8]) -> Result<StoreKey, StoreError> {
    if bytes.len() != 32 {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            "a session key is not 32 bytes",
        ));
    }
    StoreKey::from_hex(&crate::token::hex(bytes))
        .ok_or_else(|| StoreError::new(StoreErrorKind::Corrupt, "a session key does not parse"))
}

/// The principal ID inside a [`Principal::index_key`] (`<kind length>:<kind>:<id>`).
pub(crate) fn principal_id(index_key: &str) -> &str {
    index_key
        .split_once(':')
        .and_then(|(len, rest)| rest.get(len.parse::<usize>().ok()? + 1..))
        .unwrap_or(index_key)
}

/// Maps a sqlx error to a store error; `database` classifies the database's own errors.
pub(crate) fn store_error(
    err: sqlx::Error,
    database: impl FnOnce(&dyn sqlx::error::DatabaseError) -> StoreErrorKind,
) -> StoreError {
    let kind = match &err {
        sqlx::Error::Database(db) => database(db.as_ref()),
        sqlx::Error::PoolTimedOut => StoreErrorKind::Timeout,
        // The row does not fit the schema (SQLite keeps any type in any column).
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreErrorKind::Corrupt,
        sqlx::Error::Encode(_) => StoreErrorKind::InvalidValue,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_names_are_plain_identifiers() {
        struct Case {
            name: &'static str,
            text: &'static str,
            expect: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "default",
                text: "tessera_sessions",
                expect: Some("tessera_sessions"),
            },
            Case {
                name: "schema-qualified",
                text: "auth.sessions",
                expect: Some("auth.sessions"),
            },
            Case {
                name: "leading underscore and digits",
                text: "_s2",
                expect: Some("_s2"),
            },
            Case {
                name: "quote",
                text: "s\"; DROP TABLE x; --",
                expect: None,
            },
            Case {
                name: "space",
                text: "my sessions",
                expect: None,
            },
            Case {
                name: "empty",
                text: "",
                expect: None,
            },
            Case {
                name: "empty schema",
                text: ".sessions",
                expect: None,
            },
            Case {
                name: "two dots",
                text: "a.b.c",
                expect: None,
            },
            Case {
                name: "leading digit",
                text: "1sessions",
                expect: None,
            },
            Case {
                name: "too long",
                text: "sessions_sessions_sessions_sessions_sessions_sessions",
                expect: None,
            },
        ];
        for case in cases {
            let got = Table::parse(case.text).ok().map(|t| t.qualified());
            assert_eq!(got.as_deref(), case.expect, "{}", case.name);
        }
    }

    #[test]
    fn a_record_survives_the_row_encoding() {
        let mut record = Record::new(10, 100);
        record.set_principal(Some(Principal::user("u").with_scopes(["a"])));
        record.set_user_agent(Some("ua"));
        record.set_binding(Some("ab".repeat(32)), Some("2001:db8::1".parse().unwrap()));
        record
            .data_mut()
            .insert("k".into(), json!({"x": [1, null]}));
        record.flash_mut().push("hi".into());
        record.set_persistent(Some(false));
        record.set_consented_at(Some(7));
        let row = NewRow::encode(&record).unwrap();
        assert_eq!(row.principal.as_deref(), Some("4:user:u"));
        let back = StoredRow {
            created: row.created,
            last_seen: row.last_seen,
            expires_at: row.expires_at,
            principal_data: row.principal_data,
            data: row.data,
            flash: row.flash,
            user_agent: row.user_agent,
            bound_user_agent: row.bound_user_agent,
            bound_ip: row.bound_ip,
            meta: row.meta,
        };
        assert_eq!(back.decode().unwrap(), record);
    }

    #[test]
    fn undecodable_columns_are_corrupt() {
        let row = |data: &str, principal: Option<&str>, ip: Option<&str>| StoredRow {
            created: 1,
            last_seen: 1,
            expires_at: 2,
            principal_data: principal.map(str::to_owned),
            data: data.to_owned(),
            flash: None,
            user_agent: None,
            bound_user_agent: None,
            bound_ip: ip.map(str::to_owned),
            meta: None,
        };
        for (name, row) in [
            ("data not JSON", row("{not json", None, None)),
            ("data not an object", row("[1, 2]", None, None)),
            (
                "principal of the wrong type",
                row("{}", Some(r#"{"kind": 5}"#), None),
            ),
            ("bound ip not an address", row("{}", None, Some("nope"))),
        ] {
            let err = row.decode().unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{name}");
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn later_sets_of_a_key_win() {
        let mut patch = Patch::new(1, 2);
        patch.set("k".into(), json!(1));
        patch.set("k".into(), json!({"a": null}));
        let args = PatchArgs::encode(&patch).unwrap();
        assert_eq!(args.sets_object(), r#"{"k":{"a":null}}"#);
    }

    #[test]
    fn principal_id_reads_the_index_key() {
        for p in [
            Principal::user("42"),
            Principal::new("svc:x", "a:b"),
            Principal::new("", ""),
        ] {
            assert_eq!(principal_id(&p.index_key()), p.id());
        }
    }
}
