//! The SQL [`PostgresStore`](super::PostgresStore) runs, written once for the configured
//! table.
//!
//! Parameters of the commit statements: `$1` key (for a move: the source), `$2` now (the
//! store's clock), then the record or the patch. A patch binds `$3` last_seen, `$4`
//! expires_at, `$5` the removed keys (`text[]`), `$6` the set keys (one JSON object), `$7`
//! the principal mode (0 keep, 1 set, 2 clear), `$8` the principal's index key, `$9` its
//! JSON, `$10` whether the flash changes, `$11` the flash. The admitting statements add
//! the limit (`max`, 0 for none) and whether to evict (`false`: reject). Every write
//! statement ends with two more: its deadline (Unix milliseconds) and its lock timeout
//! (milliseconds).
//!
//! A write is one statement in its own implicit transaction, so it is applied exactly when
//! the statement succeeds. Each write sets `lock_timeout` in its first row-locking scan
//! ([`arm`]) and answers through [`checked`]: past the deadline on the server's clock, the
//! statement fails after its CTEs ran, which undoes everything they wrote. The answer is
//! computed in a `MATERIALIZED` CTE that reads every data-modifying CTE to the end, so the
//! deadline is checked after the last write, just before the commit.
//!
//! A statement that ends, moves, re-owns or evicts a session also tells live handles on
//! every instance (see `notify`): a `MATERIALIZED` CTE calls `pg_notify` with the notice
//! (store keys and the cause, in the wording of `live::notice`), and the answer reads it, so
//! it runs before the deadline check. PostgreSQL delivers it when the implicit transaction
//! commits, and drops it when the statement fails.
//!
//! In an `UPDATE`, the right-hand sides read the row as it was, so
//! `s.principal IS NOT DISTINCT FROM $8` compares with the old owner. The data-modifying
//! CTEs of one statement all see one snapshot; each admitting statement runs after the
//! principal's advisory lock was taken by an earlier statement of its transaction, so its
//! snapshot already holds every session an earlier login of that principal added.

use crate::store::sql::Table;

const COLUMNS: &str = "key, created, last_seen, expires_at, principal, joined, \
                       principal_data, data, flash, user_agent, bound_user_agent, bound_ip, meta";
/// What replaces an expired row under a key a create or a move targets.
const REPLACE: &str = "created = EXCLUDED.created, last_seen = EXCLUDED.last_seen, \
     expires_at = EXCLUDED.expires_at, principal = EXCLUDED.principal, \
     joined = EXCLUDED.joined, principal_data = EXCLUDED.principal_data, \
     data = EXCLUDED.data, flash = EXCLUDED.flash, user_agent = EXCLUDED.user_agent, \
     bound_user_agent = EXCLUDED.bound_user_agent, bound_ip = EXCLUDED.bound_ip, \
     meta = EXCLUDED.meta";
const RECORD_COLUMNS: &str = "created, last_seen, expires_at, principal_data::text, \
     data::text, flash::text, user_agent, bound_user_agent, bound_ip, meta::text";

/// `meta` of row `src` merged with the patch's change in parameter `param` (NULL: none).
fn merged_meta(src: &str, param: &str) -> String {
    format!(
        "CASE WHEN {param}::text IS NULL THEN {src}.meta \
         ELSE COALESCE({src}.meta, '{{}}'::jsonb) || {param}::jsonb END"
    )
}

/// The `SET` list of a patch of row `s`; `meta` names the parameter of its `meta` change.
fn assignments(meta: &str) -> String {
    "last_seen = $3, expires_at = $4, \
     data = (s.data - $5::text[]) || $6::jsonb, \
     principal = CASE $7 WHEN 0 THEN s.principal WHEN 1 THEN $8 ELSE NULL END, \
     principal_data = CASE $7 WHEN 0 THEN s.principal_data WHEN 1 THEN $9::jsonb ELSE NULL END, \
     joined = CASE WHEN $7 = 0 OR ($7 = 1 AND s.principal IS NOT DISTINCT FROM $8) \
     THEN s.joined WHEN $7 = 1 THEN $2 ELSE NULL END, \
     flash = CASE WHEN $10 THEN $11::jsonb ELSE s.flash END, meta = "
        .to_owned()
        + &merged_meta("s", meta)
}

/// CTEs `excess` (how many live sessions of the principal stand in the way: 0 without a
/// limit) and `evicted` (deletes that many, oldest first, when the policy evicts), over a
/// CTE `live` the caller defines; `max` and `evict` name the parameters.
fn make_room(t: &str, max: &str, evict: &str) -> String {
    format!(
        "excess AS (\
             SELECT CASE WHEN {max} > 0 THEN greatest(count(*) + 1 - {max}, 0) ELSE 0 END AS n \
             FROM live\
         ), evicted AS (\
             DELETE FROM {t} WHERE {evict} AND key IN (\
                 SELECT key FROM live ORDER BY joined, key LIMIT (SELECT n FROM excess)) \
             RETURNING key\
         )"
    )
}

/// Longest `NOTIFY` payload the statements send: the server refuses 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
/// Store keys per `e` notice (65 bytes each): a long list is sent in several notices.
const KEYS_PER_NOTICE: usize = 100;

/// The `NOTIFY` channel of the live-session notices of `table`: its qualified name in lower
/// case followed by `_live`; a name longer than an identifier may be (63 bytes) is cut to
/// 54 bytes and followed by `_` and 8 hex digits of its SHA-256.
pub(super) fn channel(table: &Table) -> String {
    use sha2::{Digest as _, Sha256};
    let name = format!("{}_live", table.qualified().to_ascii_lowercase());
    if name.len() <= 63 {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}_{hex}", &name[..54])
}

/// A query that sends `e <code> <hex>...` on `ch` for the keys in CTE `cte` (the SQL text
/// expression `code`), at most [`KEYS_PER_NOTICE`] keys a notice; one row per notice. NOTIFY is
/// delivered when the transaction commits: a statement that fails notifies nobody.
fn ended_notice(ch: &str, code: &str, cte: &str) -> String {
    format!(
        "SELECT pg_notify('{ch}', 'e ' || {code} || ' ' || string_agg(encode(key, 'hex'), ' ')) \
         AS sent FROM (SELECT key, (row_number() OVER () - 1) / {KEYS_PER_NOTICE} AS g \
         FROM {cte}) AS k GROUP BY g"
    )
}

/// A query that sends `m <from> <to> <last seen><tail>` on `ch` for each row of `rows` (a
/// `FROM` list with its `WHERE`), `tail` being the principal's mode and JSON; a notice too
/// long for the server goes out with the mode `r` (read it from the store) instead.
fn moved_notice(ch: &str, from: &str, to: &str, last_seen: &str, tail: &str, rows: &str) -> String {
    format!(
        "SELECT pg_notify('{ch}', CASE WHEN octet_length(head || tail) < {MAX_PAYLOAD} \
         THEN head || tail ELSE head || ' r' END) AS sent FROM (\
             SELECT 'm ' || encode({from}, 'hex') || ' ' || encode({to}, 'hex') || ' ' \
             || ({last_seen})::bigint::text AS head, {tail} AS tail FROM {rows}\
         ) AS m"
    )
}

/// The tail of an `m` notice: the mode `r` (read the session from the store). The principal
/// is never sent: any role can `LISTEN`, and receivers take nothing but keys from a notice.
const MOVED_TAIL: &str = "' r'";

/// The server's clock in Unix milliseconds, read when evaluated (not at statement start).
const CLOCK_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// What a write statement's first row-locking scan also checks: sets `lock_timeout` for the
/// rest of the statement's implicit transaction to parameter `ms`, so the server itself gives
/// up a row lock wait the client no longer waits for (`statement_timeout` set inside a
/// statement would only govern the next one; `lock_timeout` is read when a wait begins).
fn arm(ms: &str) -> String {
    format!("(SELECT set_config('lock_timeout', {ms}::bigint::text, true)) IS NOT NULL")
}

/// An error that aborts the statement (and so everything its CTEs wrote), carrying
/// `marker` in its message, as a value of type `ty`. Built from the volatile clock so the
/// planner cannot fold it into a planning-time error.
fn fail(marker: &str, ty: &str) -> String {
    fail_with(&format!("'{marker}'"), ty)
}

/// [`fail`] with the SQL text expression `message` (which must not be constant).
fn fail_with(message: &str, ty: &str) -> String {
    let cast = if ty == "text" { "int::text" } else { ty };
    format!("(({message} || ' at ' || {CLOCK_MS}))::{cast}")
}

/// `value` (of type `ty`) when the server's clock has not passed the deadline in parameter
/// `deadline`; otherwise the statement fails with [`PAST_DEADLINE`], which rolls back all it
/// wrote. Evaluated after everything `value` reads, so after the statement's writes.
fn checked(value: &str, ty: &str, deadline: &str) -> String {
    format!(
        "CASE WHEN {CLOCK_MS} <= {deadline}::bigint THEN {value} \
         ELSE {} END",
        fail_with(&format!("'{PAST_DEADLINE} ' || {deadline}::bigint"), ty)
    )
}

/// The marker of the error a write statement raises when it runs past its deadline.
pub(super) const PAST_DEADLINE: &str = "tessera: past the commit deadline";
/// The marker of the error a move raises when it deleted its source but the target key
/// was taken meanwhile: the error undoes the delete.
pub(super) const KEY_TAKEN: &str = "tessera: the target key is taken";

pub(super) struct Statements {
    /// The channel the write statements notify live handles on (see [`channel`]).
    pub(super) channel: String,
    /// Reads every session a re-validation asks about: `$1` the keys (`bytea[]`), `$2` now.
    pub(super) revalidate: String,
    pub(super) load: String,
    pub(super) lookup: String,
    pub(super) create: String,
    pub(super) patch: String,
    pub(super) patch_admitting: String,
    pub(super) move_to: String,
    pub(super) delete: String,
    pub(super) increment: String,
    pub(super) compare_and_set: String,
    pub(super) sessions_of: String,
    pub(super) delete_sessions_of: String,
    pub(super) sweep: String,
}

impl Statements {
    pub(super) fn new(table: &Table) -> Self {
        let t = table.qualified();
        // The meta change is the last parameter of each statement.
        let set = assignments("$12");
        let set_admitting = assignments("$14");
        let ch = channel(table);
        let evictions = ended_notice(&ch, "'l'", "evicted");
        Self {
            revalidate: format!(
                "SELECT key, expires_at > $2, last_seen, principal, principal_data::text \
                 FROM {t} WHERE key = ANY($1)"
            ),
            load: format!("SELECT {RECORD_COLUMNS} FROM {t} WHERE key = $1 AND expires_at > $2"),
            lookup: format!("SELECT {RECORD_COLUMNS}, expires_at > $2 FROM {t} WHERE key = $1"),
            // $3..$12: the row; $13 max, $14 evict, $15 meta; $16 deadline, $17 lock timeout.
            // Answers applied / collision / limit.
            create: format!(
                "WITH taken AS (\
                     SELECT 1 FROM {t} WHERE key = $1 AND expires_at > $2\
                 ), live AS (\
                     SELECT key, joined FROM {t} \
                     WHERE $13 > 0 AND principal = $6 AND expires_at > $2 AND key <> $1 \
                     AND NOT EXISTS (SELECT 1 FROM taken)\
                 ), {room}, inserted AS (\
                     INSERT INTO {t} AS s ({COLUMNS}) \
                     SELECT $1, $3, $4, $5, $6, CASE WHEN $6::text IS NULL THEN NULL ELSE $2 END, \
                     $7::jsonb, $8::jsonb, $9::jsonb, $10, $11, $12, $15::jsonb \
                     WHERE NOT EXISTS (SELECT 1 FROM taken) \
                     AND ($14 OR (SELECT n FROM excess) = 0) AND {arm} \
                     ON CONFLICT (key) DO UPDATE SET {REPLACE} WHERE s.expires_at <= $2 \
                     RETURNING 1\
                 ), evict_note AS MATERIALIZED ({evictions}), answer AS MATERIALIZED (\
                     SELECT CASE WHEN EXISTS (SELECT 1 FROM inserted) THEN 'applied' \
                     WHEN EXISTS (SELECT 1 FROM taken) THEN 'collision' \
                     WHEN (SELECT n FROM excess) > 0 AND NOT $14 THEN 'limit' \
                     ELSE 'collision' END AS a, (SELECT count(*) FROM evicted) AS n, \
                     (SELECT count(*) FROM evict_note) AS sent\
                 ) \
                 SELECT {answer} FROM answer",
                room = make_room(&t, "$13", "$14"),
                arm = arm("$17"),
                answer = checked("a", "text", "$16"),
            ),
            // $13 deadline, $14 lock timeout.
            // Joined with the row as it was (`o`), so a principal or scope change is told.
            patch: format!(
                "WITH updated AS (\
                     UPDATE {t} AS s SET {set} FROM {t} AS o \
                     WHERE s.key = $1 AND o.key = $1 AND s.expires_at > $2 AND {arm} \
                     RETURNING s.key, s.principal_data AS pd, o.principal_data AS old\
                 ), note AS MATERIALIZED ({note}), answer AS MATERIALIZED (\
                     SELECT (SELECT count(*) FROM updated) AS u, (SELECT count(*) FROM note) AS n\
                 ) \
                 SELECT {answer} FROM answer WHERE u > 0",
                arm = arm("$14"),
                answer = checked("1", "int", "$13"),
                note = moved_notice(
                    &ch,
                    "key",
                    "key",
                    "$3",
                    MOVED_TAIL,
                    "updated WHERE $7 <> 0 AND pd IS DISTINCT FROM old",
                ),
            ),
            // A patch that sets a principal under a limit; $12 max, $13 evict, $14 meta, $15
            // deadline, $16 lock timeout. The row lock
            // of `cur` keeps its owner from changing until the transaction ends.
            patch_admitting: format!(
                "WITH cur AS (\
                     SELECT principal, principal_data FROM {t} \
                     WHERE key = $1 AND expires_at > $2 AND {arm} FOR UPDATE\
                 ), live AS (\
                     SELECT key, joined FROM {t} \
                     WHERE principal = $8 AND expires_at > $2 AND key <> $1 \
                     AND EXISTS (SELECT 1 FROM cur WHERE cur.principal IS DISTINCT FROM $8)\
                 ), {room}, updated AS (\
                     UPDATE {t} AS s SET {set_admitting} FROM cur \
                     WHERE s.key = $1 AND ($13 OR (SELECT n FROM excess) = 0) \
                     RETURNING s.key, s.principal_data AS pd\
                 ), evict_note AS MATERIALIZED ({evictions}), note AS MATERIALIZED ({note}), \
                 answer AS MATERIALIZED (\
                     SELECT CASE WHEN EXISTS (SELECT 1 FROM updated) THEN 'applied' \
                     WHEN NOT EXISTS (SELECT 1 FROM cur) THEN 'missing' ELSE 'limit' END AS a, \
                     (SELECT count(*) FROM evicted) AS n, \
                     (SELECT count(*) FROM evict_note) + (SELECT count(*) FROM note) AS sent\
                 ) \
                 SELECT {answer} FROM answer",
                room = make_room(&t, "$12", "$13"),
                arm = arm("$16"),
                answer = checked("a", "text", "$15"),
                note = moved_notice(
                    &ch,
                    "updated.key",
                    "updated.key",
                    "$3",
                    MOVED_TAIL,
                    "updated, cur WHERE updated.pd IS DISTINCT FROM cur.principal_data",
                ),
            ),
            // $1 from, $3 to; the patch shifted by one ($4..$12); $13 max, $14 evict, $15 meta;
            // $16 deadline, $17 lock timeout. The old row is deleted and the patched one
            // inserted under `to` (create-only). When `to` was taken after the statement's
            // snapshot (a lost race), the statement fails with KEY_TAKEN, which undoes the
            // delete.
            move_to: format!(
                "WITH src0 AS (\
                     SELECT principal FROM {t} WHERE key = $1 AND expires_at > $2 AND {arm} \
                     FOR UPDATE\
                 ), to_live AS (\
                     SELECT 1 FROM {t} WHERE key = $3 AND expires_at > $2\
                 ), live AS (\
                     SELECT key, joined FROM {t} \
                     WHERE $13 > 0 AND $8 = 1 AND principal = $9 AND expires_at > $2 \
                     AND key <> $1 \
                     AND EXISTS (SELECT 1 FROM src0 WHERE src0.principal IS DISTINCT FROM $9) \
                     AND NOT EXISTS (SELECT 1 FROM to_live)\
                 ), {room}, src AS (\
                     DELETE FROM {t} WHERE key = $1 AND EXISTS (SELECT 1 FROM src0) \
                     AND NOT EXISTS (SELECT 1 FROM to_live) \
                     AND ($14 OR (SELECT n FROM excess) = 0) \
                     RETURNING *\
                 ), moved AS (\
                     INSERT INTO {t} AS s ({COLUMNS}) \
                     SELECT $3, src.created, $4, $5, \
                     CASE $8 WHEN 0 THEN src.principal WHEN 1 THEN $9 ELSE NULL END, \
                     CASE WHEN $8 = 0 OR ($8 = 1 AND src.principal IS NOT DISTINCT FROM $9) \
                     THEN src.joined WHEN $8 = 1 THEN $2 ELSE NULL END, \
                     CASE $8 WHEN 0 THEN src.principal_data WHEN 1 THEN $10::jsonb ELSE NULL END, \
                     (src.data - $6::text[]) || $7::jsonb, \
                     CASE WHEN $11 THEN $12::jsonb ELSE src.flash END, \
                     src.user_agent, src.bound_user_agent, src.bound_ip, {meta} \
                     FROM src \
                     ON CONFLICT (key) DO UPDATE SET {REPLACE} WHERE s.expires_at <= $2 \
                     RETURNING s.principal_data AS pd\
                 ), evict_note AS MATERIALIZED ({evictions}), note AS MATERIALIZED ({note}), \
                 answer AS MATERIALIZED (\
                     SELECT CASE WHEN EXISTS (SELECT 1 FROM moved) THEN 'applied' \
                     WHEN NOT EXISTS (SELECT 1 FROM src0) THEN 'missing' \
                     WHEN EXISTS (SELECT 1 FROM src) THEN {taken} \
                     WHEN EXISTS (SELECT 1 FROM to_live) THEN 'collision' \
                     WHEN (SELECT n FROM excess) > 0 THEN 'limit' \
                     ELSE 'missing' END AS a, (SELECT count(*) FROM evicted) AS n, \
                     (SELECT count(*) FROM evict_note) + (SELECT count(*) FROM note) AS sent\
                 ) \
                 SELECT {answer} FROM answer",
                room = make_room(&t, "$13", "$14"),
                arm = arm("$17"),
                taken = fail(KEY_TAKEN, "text"),
                answer = checked("a", "text", "$16"),
                meta = merged_meta("src", "$15"),
                note = moved_notice(&ch, "$1", "$3", "$4", MOVED_TAIL, "moved"),
            ),
            // $2 deadline, $3 lock timeout, $4 the code of the cause live handles end with.
            delete: format!(
                "WITH gone AS (\
                     DELETE FROM {t} WHERE key = $1 AND {arm} RETURNING key\
                 ), note AS MATERIALIZED ({note}), answer AS MATERIALIZED (\
                     SELECT (SELECT count(*) FROM gone) AS g, (SELECT count(*) FROM note) AS n\
                 ) \
                 SELECT {answer} FROM answer WHERE g > 0",
                arm = arm("$3"),
                answer = checked("1", "int", "$2"),
                note = ended_notice(&ch, "$4::text", "gone"),
            ),
            // $3 the data key, $4 the step; $5 deadline, $6 lock timeout. A value that is not an integer in i64 counts
            // as 0; the sum saturates at the i64 bounds. `jsonb_set` refuses a `data` that
            // is not an object (a corrupt row) instead of turning it into something else.
            increment: format!(
                "UPDATE {t} AS s SET data = jsonb_set(s.data, ARRAY[$3::text], to_jsonb(\
                 least(greatest(\
                 CASE WHEN jsonb_typeof(s.data -> $3) = 'number' \
                 AND (s.data ->> $3) ~ '^-?[0-9]+$' THEN \
                 CASE WHEN (s.data ->> $3)::numeric \
                 BETWEEN -9223372036854775808 AND 9223372036854775807 \
                 THEN (s.data ->> $3)::numeric ELSE 0 END \
                 ELSE 0 END + $4::bigint, \
                 -9223372036854775808), 9223372036854775807)::bigint)) \
                 WHERE s.key = $1 AND s.expires_at > $2 AND {arm} \
                 RETURNING {answer}",
                arm = arm("$6"),
                answer = checked("(s.data -> $3)::text", "text", "$5"),
            ),
            // $3 the data key, $4 the expected JSON (NULL: absent), $5 the new one (NULL:
            // remove); $6 deadline, $7 lock timeout. Answers (live, applied, current value).
            compare_and_set: format!(
                "WITH cur AS (\
                     SELECT data -> $3 AS v FROM {t} \
                     WHERE key = $1 AND expires_at > $2 AND {arm} FOR UPDATE\
                 ), updated AS (\
                     UPDATE {t} AS s SET data = CASE WHEN $5::text IS NULL \
                     THEN s.data - $3::text \
                     ELSE jsonb_set(s.data, ARRAY[$3::text], $5::jsonb) END \
                     FROM cur WHERE s.key = $1 AND cur.v IS NOT DISTINCT FROM $4::jsonb \
                     RETURNING 1\
                 ), answer AS MATERIALIZED (\
                     SELECT EXISTS (SELECT 1 FROM cur) AS live, \
                     EXISTS (SELECT 1 FROM updated) AS applied, (SELECT v::text FROM cur) AS v\
                 ) \
                 SELECT live, {applied}, v FROM answer",
                arm = arm("$7"),
                applied = checked("applied", "boolean", "$6"),
            ),
            sessions_of: format!(
                "SELECT key, created, last_seen, expires_at, user_agent FROM {t} \
                 WHERE principal = $1 AND expires_at > $2 ORDER BY last_seen DESC, key"
            ),
            // $3 deadline, $4 lock timeout. Answers how many of the deleted rows were live.
            delete_sessions_of: format!(
                "WITH gone AS (\
                     DELETE FROM {t} WHERE principal = $1 AND {arm} RETURNING key, expires_at\
                 ), note AS MATERIALIZED ({note}), answer AS MATERIALIZED (\
                     SELECT count(*) FILTER (WHERE expires_at > $2) AS n, \
                     (SELECT count(*) FROM note) AS sent FROM gone\
                 ) \
                 SELECT {answer} FROM answer",
                arm = arm("$4"),
                answer = checked("n", "bigint", "$3"),
                note = ended_notice(&ch, "'a'", "gone"),
            ),
            sweep: format!(
                "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= $1 \
                 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            channel: ch,
        }
    }
}
