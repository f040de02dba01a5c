-- The request keys of keyed commands (an `Idempotency-Key` within its
-- caller and route, hashed to a uuid): written by the append that applies
-- the command, in its own statement, or by the command API for a refusal.
-- The first of the two wins by the primary key, so one key is applied at
-- most once, or refused, never both. `request` names the request (key and
-- body): another request under the key is refused (422). `status`,
-- `headers` and `body` hold a refusal's answer; NULL for an applied
-- command, whose answer the log gives.
CREATE TABLE IF NOT EXISTS request_keys (
    key        uuid        PRIMARY KEY,
    request    uuid        NOT NULL,
    status     smallint,
    headers    jsonb,
    body       bytea,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The purge's index (rows arrive in time order).
CREATE INDEX IF NOT EXISTS request_keys_created_brin ON request_keys USING brin (created_at);
