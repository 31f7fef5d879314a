-- One row per session, filed under the SHA-256 of its ID (never the ID itself).
CREATE TABLE IF NOT EXISTS tessera_sessions (
    key              BYTEA PRIMARY KEY,      -- SHA-256 of the session ID (32 bytes)
    created          BIGINT NOT NULL,        -- Unix seconds; the absolute timeout counts from here
    last_seen        BIGINT NOT NULL,        -- Unix seconds
    expires_at       BIGINT NOT NULL,        -- Unix seconds; the row is dead from this second on
    principal        TEXT,                   -- Principal::index_key() ("4:user:42"), NULL when anonymous
    joined           BIGINT,                 -- when the session joined its principal (the limit's "oldest")
    principal_data   JSONB,                  -- the principal: kind, id, attributes, scopes
    data             JSONB NOT NULL DEFAULT '{}', -- the data map, one member per key
    flash            JSONB,                  -- array of flash messages, NULL when none
    user_agent       TEXT,                   -- the creating request's User-Agent, cut to 256 bytes
    bound_user_agent TEXT,                   -- hex SHA-256 of the User-Agent, with user-agent binding
    bound_ip         TEXT,                   -- the client IP, with IP binding
    meta             JSONB                   -- remember-me choice and consent time, NULL when neither
);
-- The sweep deletes by expiry.
CREATE INDEX IF NOT EXISTS tessera_sessions_expires_at ON tessera_sessions (expires_at);
-- sessions_of, delete_sessions_of and the per-principal limit (oldest first).
CREATE INDEX IF NOT EXISTS tessera_sessions_principal ON tessera_sessions (principal, joined)
    WHERE principal IS NOT NULL;
