-- The event log. One row per event; the global order is (tx_id, global_position):
-- a reader only returns rows whose transaction id is below the oldest
-- transaction still running, so no event can commit later "behind" a reader.
CREATE TABLE IF NOT EXISTS events (
    global_position bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version >= 0),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version BETWEEN 1 AND 65535),
    data            json        NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX IF NOT EXISTS events_global_order ON events (tx_id, global_position);
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);

-- Per-person keys that seal personal data in events. Deleting a row erases
-- that person's data from every event, replay and read model.
CREATE TABLE IF NOT EXISTS person_keys (
    key_id     text        PRIMARY KEY,
    secret     bytea       NOT NULL CHECK (length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
