//! How a [`Record`] and a [`Patch`] are laid out in a Redis hash (one field per data key,
//! `d:`-prefixed, beside the record's own fields), and how Redis errors map to
//! [`StoreError`]s.

use std::collections::HashMap;

use redis::RedisError;
use serde_json::{Map, Value as Json};

use super::{cluster, DATA};
use crate::error::{StoreError, StoreErrorKind};
use crate::record::{Patch, Record, SessionInfo};
use crate::store::{commit_answer, CommitOutcome};
use crate::token::StoreKey;

pub(super) fn from_redis(err: RedisError) -> StoreError {
    let kind = if err.code() == Some("LATE") || err.is_timeout() {
        // LATE: the script started past its client's deadline and did nothing (prelude.lua).
        StoreErrorKind::Timeout
    } else if err.code() == Some("WRONGTYPE")
        || matches!(
            err.kind(),
            redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
        )
    {
        // WRONGTYPE: a session key that holds no hash was written outside the store.
        StoreErrorKind::Corrupt
    } else {
        StoreErrorKind::Unavailable
    };
    StoreError::new(kind, err)
}

pub(super) fn unavailable(err: RedisError) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, err)
}

pub(super) fn corrupt(err: serde_json::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, err)
}

pub(super) fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

/// A record's own fields and data fields, as the hash holds them.
pub(super) fn record_fields(record: &Record) -> Result<Vec<(String, String)>, StoreError> {
    let mut fields = vec![
        ("c".to_owned(), record.created().to_string()),
        ("l".to_owned(), record.last_seen().to_string()),
        ("e".to_owned(), record.expires_at().to_string()),
    ];
    if let Some(p) = record.principal() {
        fields.push(("p".to_owned(), json(p)?));
        fields.push(("pi".to_owned(), p.index_key().to_owned()));
    }
    if !record.flash().is_empty() {
        fields.push(("f".to_owned(), json(&record.flash())?));
    }
    if let Some(ua) = record.user_agent() {
        fields.push(("u".to_owned(), ua.to_owned()));
    }
    if let Some(hash) = record.bound_user_agent() {
        fields.push(("bu".to_owned(), hash.to_owned()));
    }
    if let Some(ip) = record.bound_ip() {
        fields.push(("bi".to_owned(), ip.to_string()));
    }
    if let Some(persistent) = record.persistent() {
        fields.push(("rm".to_owned(), persistent.to_string()));
    }
    if let Some(at) = record.consented_at() {
        fields.push(("ca".to_owned(), at.to_string()));
    }
    for (k, v) in record.data() {
        fields.push((format!("{DATA}{k}"), json(v)?));
    }
    Ok(fields)
}

/// A whole record as the arguments of the `put` step: expiry, field count, field/value pairs.
/// A row of sessions_of.lua: hex key, created, last seen, expires at, user agent (bytes:
/// one that does not decode makes the row no session to list).
pub(super) type IndexRow = (Vec<u8>, i64, i64, i64, Option<Vec<u8>>);

/// What a session key holds, told apart before decoding.
pub(super) enum Hash {
    /// Nothing.
    Empty,
    /// A record (or something that claims to be one; decoding tells).
    Record(Vec<(Vec<u8>, Vec<u8>)>),
    /// A cluster move's placeholder on its target.
    Stub(cluster::Stub),
    /// What a cluster move leaves on its source: the session is gone from this key.
    Tombstone,
}

impl Hash {
    pub(super) fn of(fields: HashMap<Vec<u8>, Vec<u8>>) -> Self {
        if fields.is_empty() {
            return Self::Empty;
        }
        if fields.contains_key(&b"mv"[..]) {
            return Self::Tombstone;
        }
        if let Some(source) = fields.get(&b"pf"[..]) {
            let get = |name: &[u8]| fields.get(name).cloned().unwrap_or_default();
            return Self::Stub(cluster::Stub {
                source: source.clone(),
                id: get(b"op"),
                deadline: get(b"pd"),
            });
        }
        Self::Record(fields.into_iter().collect())
    }
}

pub(super) fn outcome(answer: &str) -> Result<CommitOutcome, StoreError> {
    commit_answer(answer).unwrap_or_else(|| {
        Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("unexpected answer from the commit script: {answer:?}"),
        ))
    })
}

#[cfg(test)]
pub(super) fn put_args(record: &Record) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(field_args(
        record_fields(record)?
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v.into_bytes())),
    ))
}

/// Fields as the scripts' `write` reads them: expiry, field count, then the pairs.
pub(super) fn field_args(fields: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Vec<Vec<u8>> {
    let mut expires = b"0".to_vec();
    let mut args = vec![Vec::new(), Vec::new()];
    for (k, v) in fields {
        if k == b"e" {
            expires.clone_from(&v);
        }
        args.push(k);
        args.push(v);
    }
    args[0] = expires;
    args[1] = ((args.len() - 2) / 2).to_string().into_bytes();
    args
}

/// A flat `[field, value, ...]` script answer as pairs (an odd last element is dropped).
pub(super) fn pairs(flat: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// A patch in the layout the scripts' `apply` reads.
pub(super) fn patch_args(patch: &Patch) -> Result<Vec<String>, StoreError> {
    let mut args = vec![
        patch.last_seen().to_string(),
        patch.expires_at().to_string(),
    ];
    match patch.principal() {
        None => args.extend([String::new(), String::new(), String::new()]),
        Some(None) => args.extend(["clear".to_owned(), String::new(), String::new()]),
        Some(Some(p)) => args.extend(["set".to_owned(), json(p)?, p.index_key().to_owned()]),
    }
    match patch.flash() {
        None => args.extend([String::new(), String::new()]),
        Some([]) => args.extend(["set".to_owned(), String::new()]),
        Some(flash) => args.extend(["set".to_owned(), json(&flash)?]),
    }
    // The cookie choice and the consent time ride in the scripts' generic field removals
    // and sets (`rm`, `ca`: not `d:`-prefixed, so never a data key).
    let mut removes: Vec<String> = patch
        .removes()
        .iter()
        .map(|k| format!("{DATA}{k}"))
        .collect();
    let mut sets = Vec::with_capacity(2 * patch.sets().len() + 4);
    for (k, v) in patch.sets() {
        sets.push(format!("{DATA}{k}"));
        sets.push(json(v)?);
    }
    match patch.persistent() {
        None => {}
        Some(None) => removes.push("rm".to_owned()),
        Some(Some(on)) => sets.extend(["rm".to_owned(), on.to_string()]),
    }
    if let Some(at) = patch.consented_at() {
        sets.extend(["ca".to_owned(), at.to_string()]);
    }
    args.push(removes.len().to_string());
    args.extend(removes);
    args.push((sets.len() / 2).to_string());
    args.extend(sets);
    Ok(args)
}

/// Rebuilds a record from the raw bytes of its hash: any field that is not UTF-8 makes the
/// record corrupt (never a conversion error of the client, which would read as "unavailable").
pub(super) fn decode_hash(
    fields: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<Record, StoreError> {
    let mut text = HashMap::new();
    for (k, v) in fields {
        let k = String::from_utf8(k).map_err(|_| {
            StoreError::new(StoreErrorKind::Corrupt, "a session field name is not UTF-8")
        })?;
        let v = String::from_utf8(v).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("session field {k:?} is not UTF-8"),
            )
        })?;
        text.insert(k, v);
    }
    decode(text)
}

/// A JSON value the store holds, or `Corrupt`.
pub(super) fn parse_json(text: &[u8]) -> Result<Json, StoreError> {
    serde_json::from_slice(text).map_err(corrupt)
}

/// Rebuilds a record from its hash through `Record`'s serde form.
pub(super) fn decode(mut fields: HashMap<String, String>) -> Result<Record, StoreError> {
    let mut record = Map::new();
    for (field, name) in [("c", "created"), ("l", "last_seen"), ("e", "expires_at")] {
        let n: i64 = fields
            .remove(field)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                StoreError::new(StoreErrorKind::Corrupt, format!("session lacks {name}"))
            })?;
        record.insert(name.to_owned(), n.into());
    }
    if let Some(p) = fields.remove("p") {
        record.insert(
            "principal".into(),
            serde_json::from_str(&p).map_err(corrupt)?,
        );
    }
    if let Some(f) = fields.remove("f") {
        record.insert("flash".into(), serde_json::from_str(&f).map_err(corrupt)?);
    }
    if let Some(ua) = fields.remove("u") {
        record.insert("user_agent".into(), Json::String(ua));
    }
    if let Some(hash) = fields.remove("bu") {
        record.insert("bound_user_agent".into(), Json::String(hash));
    }
    if let Some(ip) = fields.remove("bi") {
        record.insert("bound_ip".into(), Json::String(ip));
    }
    if let Some(rm) = fields.remove("rm") {
        let on: bool = rm.parse().map_err(|_| {
            StoreError::new(StoreErrorKind::Corrupt, "session cookie choice not a bool")
        })?;
        record.insert("persistent".into(), on.into());
    }
    if let Some(ca) = fields.remove("ca") {
        let at: i64 = ca.parse().map_err(|_| {
            StoreError::new(StoreErrorKind::Corrupt, "session consent time not a number")
        })?;
        record.insert("consented_at".into(), at.into());
    }
    let mut data = Map::new();
    for (field, value) in fields {
        if let Some(key) = field.strip_prefix(DATA) {
            data.insert(
                key.to_owned(),
                serde_json::from_str(&value).map_err(corrupt)?,
            );
        }
    }
    record.insert("data".into(), Json::Object(data));
    serde_json::from_value(Json::Object(record)).map_err(corrupt)
}

pub(super) fn info(
    key: StoreKey,
    created: i64,
    last_seen: i64,
    expires_at: i64,
    principal: &str,
    user_agent: Option<String>,
) -> Result<SessionInfo, StoreError> {
    Ok(SessionInfo::new(
        key,
        created,
        last_seen,
        expires_at,
        Some(id_of_index_key(principal).to_owned()),
        user_agent,
    ))
}

/// The principal ID inside a [`crate::Principal::index_key`] (`<kind length>:<kind>:<id>`).
pub(super) fn id_of_index_key(index_key: &str) -> &str {
    index_key
        .split_once(':')
        .and_then(|(len, rest)| rest.get(len.parse::<usize>().ok()? + 1..))
        .unwrap_or(index_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_survives_the_hash_encoding() {
        let mut record = Record::new(10, 100);
        record.set_principal(Some(crate::Principal::user("u").with_scopes(["a"])));
        record.set_user_agent(Some("ua"));
        record.set_binding(Some("ab".repeat(32)), Some("2001:db8::1".parse().unwrap()));
        record
            .data_mut()
            .insert("k".into(), json!({"x": [1, null]}));
        record
            .data_mut()
            .insert("c".into(), json!("not the created field"));
        record.flash_mut().push("hi".into());
        record.flash_mut().push(crate::Flash::error("no"));
        record.set_persistent(Some(false));
        record.set_consented_at(Some(7));
        let args = put_args(&record).unwrap();
        assert_eq!(args[0], record.expires_at().to_string().into_bytes());
        let n: usize = String::from_utf8(args[1].clone()).unwrap().parse().unwrap();
        let fields = pairs(args[2..].to_vec());
        assert_eq!(fields.len(), n);
        assert_eq!(decode_hash(fields).unwrap(), record);
    }

    #[test]
    fn non_utf8_and_non_json_fields_are_corrupt() {
        let mut fields = vec![
            (b"c".to_vec(), b"1".to_vec()),
            (b"l".to_vec(), b"1".to_vec()),
            (b"e".to_vec(), b"2".to_vec()),
        ];
        assert!(decode_hash(fields.clone()).is_ok());
        fields.push((b"u".to_vec(), vec![0xff, 0xfe]));
        let err = decode_hash(fields.clone()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
        fields.pop();
        fields.push((b"d:k".to_vec(), b"{not json".to_vec()));
        assert_eq!(
            decode_hash(fields).unwrap_err().kind(),
            StoreErrorKind::Corrupt
        );
    }

    #[test]
    fn flash_of_the_previous_release_loads() {
        let fields = HashMap::from([
            ("c".to_owned(), "1".to_owned()),
            ("l".to_owned(), "1".to_owned()),
            ("e".to_owned(), "9".to_owned()),
            ("f".to_owned(), r#"["Signed in."]"#.to_owned()),
        ]);
        let record = decode(fields).unwrap();
        assert_eq!(record.flash(), [crate::Flash::info("Signed in.")]);
    }

    #[test]
    fn a_hash_without_times_is_corrupt() {
        let fields = HashMap::from([("d:k".to_owned(), "1".to_owned())]);
        assert_eq!(decode(fields).unwrap_err().kind(), StoreErrorKind::Corrupt);
    }
}
