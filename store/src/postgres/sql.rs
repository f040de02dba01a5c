//! The adapter's SQL in one place, with the JSON column codec.

use std::error::Error;

use bytes::{BufMut, Bytes, BytesMut};
use postgres_types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

// Statement text is built at compile time (`concat!`): the statement cache is
// keyed by it, and these run on every append.
macro_rules! insert_into {
    () => {
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, \
         schema_version, data, correlation_id, causation_id, trace_parent, actor) "
    };
}
macro_rules! unnest_events {
    () => {
        " FROM unnest($2::uuid[], $3::text[], $4::int4[], $5::json[], $6::uuid[], $7::uuid[], \
         $8::text[], $9::text[]) WITH ORDINALITY AS e(id, ty, sv, data, corr, caus, trace, actor, ord) "
    };
}
macro_rules! one_event {
    () => {
        "$2::uuid, $3::text, $4::int4, $5::json, $6::uuid, $7::uuid, $8::text, $9::text"
    };
}
macro_rules! returning {
    () => {
        " RETURNING tx_id, global_position, stream_version"
    };
}

// Each append statement is a macro (its text, for the keyed variant to
// wrap) and a const.
macro_rules! append_no_stream {
    () => {
        concat!(
            insert_into!(),
            "SELECT $1, e.ord - 1, e.id, e.ty, e.sv, e.data, e.corr, e.caus, e.trace, e.actor",
            unnest_events!(),
            "ORDER BY e.ord",
            returning!()
        )
    };
}
macro_rules! append_exact {
    () => {
        concat!(
            insert_into!(),
            "SELECT $1, $10 + e.ord, e.id, e.ty, e.sv, e.data, e.corr, e.caus, e.trace, e.actor",
            unnest_events!(),
            "WHERE EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND stream_version = $10) ORDER BY e.ord",
            returning!()
        )
    };
}
macro_rules! append_any {
    () => {
        concat!(
            insert_into!(),
            "SELECT $1, base.v + e.ord, e.id, e.ty, e.sv, e.data, e.corr, e.caus, e.trace, e.actor",
            unnest_events!(),
            ", (SELECT coalesce(max(stream_version), -1) AS v FROM events WHERE stream_id = $1) base ORDER BY e.ord",
            returning!()
        )
    };
}
macro_rules! append_one_no_stream {
    () => {
        concat!(insert_into!(), "SELECT $1, 0, ", one_event!(), returning!())
    };
}
macro_rules! append_one_exact {
    () => {
        concat!(
            insert_into!(),
            "SELECT $1, $10::bigint + 1, ",
            one_event!(),
            " WHERE EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND stream_version = $10::bigint)",
            returning!()
        )
    };
}
macro_rules! append_one_any {
    () => {
        concat!(
            insert_into!(),
            "SELECT $1, coalesce(max(stream_version), -1) + 1, ",
            one_event!(),
            " FROM events WHERE stream_id = $1",
            returning!()
        )
    };
}
/// A single-stream append that also writes its request key (`$key`,
/// `$request`) when it inserts its events, in the same statement: a key
/// written before clashes on the key's primary key and fails the statement.
/// An exact append whose expected version is missing inserts neither.
macro_rules! keyed {
    ($append:expr, $key:literal, $request:literal) => {
        concat!(
            "WITH ins AS (",
            $append,
            "), req AS (INSERT INTO request_keys (key, request) SELECT ",
            $key,
            "::uuid, ",
            $request,
            "::uuid WHERE EXISTS (SELECT 1 FROM ins)) \
             SELECT tx_id, global_position, stream_version FROM ins"
        )
    };
}

/// Several events to a stream that must not exist yet: versions 0..n.
pub(super) const APPEND_NO_STREAM: &str = append_no_stream!();

/// Several events after version `$10`, which must exist; a concurrent writer
/// at the same version trips the (stream, version) unique index.
pub(super) const APPEND_EXACT: &str = append_exact!();

/// Several events after whatever the last version is.
pub(super) const APPEND_ANY: &str = append_any!();

/// One event to a new stream (the common case: scalar parameters, no arrays).
pub(super) const APPEND_ONE_NO_STREAM: &str = append_one_no_stream!();

/// One event after version `$10`, which must exist.
pub(super) const APPEND_ONE_EXACT: &str = append_one_exact!();

/// One event after whatever the last version is.
pub(super) const APPEND_ONE_ANY: &str = append_one_any!();

/// The statements above, writing a request key with their events: `$10`
/// and `$11` the key and the request, `$11` and `$12` after an exact
/// append's expected version.
pub(super) const KEYED_APPEND_NO_STREAM: &str = keyed!(append_no_stream!(), "$10", "$11");
/// See [`KEYED_APPEND_NO_STREAM`].
pub(super) const KEYED_APPEND_EXACT: &str = keyed!(append_exact!(), "$11", "$12");
/// See [`KEYED_APPEND_NO_STREAM`].
pub(super) const KEYED_APPEND_ANY: &str = keyed!(append_any!(), "$10", "$11");
/// See [`KEYED_APPEND_NO_STREAM`].
pub(super) const KEYED_APPEND_ONE_NO_STREAM: &str = keyed!(append_one_no_stream!(), "$10", "$11");
/// See [`KEYED_APPEND_NO_STREAM`].
pub(super) const KEYED_APPEND_ONE_EXACT: &str = keyed!(append_one_exact!(), "$11", "$12");
/// See [`KEYED_APPEND_NO_STREAM`].
pub(super) const KEYED_APPEND_ONE_ANY: &str = keyed!(append_one_any!(), "$10", "$11");

/// Who holds request key `$1`: its request, and whether it holds a
/// refusal.
pub(super) const REQUEST_KEY_HOLDER: &str =
    "SELECT request, status IS NOT NULL FROM request_keys WHERE key = $1";

/// Columns of a recorded event, in the order `read::row_to_event` reads them.
pub(super) const EVENT_COLUMNS: &str = "tx_id, global_position, event_id, stream_id, stream_version, \
     event_type, schema_version, data, correlation_id, causation_id, recorded_at, trace_parent, actor";

/// Global log after ($1, $2), only rows of transactions older than every
/// running one: the gap-free read.
pub(super) fn read_all() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (tx_id, global_position) > ($1, $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         ORDER BY tx_id, global_position LIMIT $3"
    )
}

/// One stream from version $2.
pub(super) fn read_stream() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 \
         ORDER BY stream_version LIMIT $3"
    )
}

/// The event $2 of stream $1.
pub(super) fn find_in_stream() -> String {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $2 AND stream_id = $1")
}

/// How many events a reader after ($1, $2) has still to read, up to $3, and
/// when the first of them was recorded (the same rows [`read_all`] returns).
pub(super) const BACKLOG: &str = "SELECT count(*), min(recorded_at) FROM (\
     SELECT recorded_at FROM events \
     WHERE (tx_id, global_position) > ($1, $2) \
       AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
     ORDER BY tx_id, global_position LIMIT $3) AS pending";

/// This store's id.
pub(super) const IDENTITY: &str = "SELECT store_id FROM store_identity";

/// The last position a reader can see.
pub(super) const HEAD: &str = "SELECT tx_id, global_position FROM events \
     WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
     ORDER BY tx_id DESC, global_position DESC LIMIT 1";

/// Where already-stored event ids are, to tell a retry from a clash.
pub(super) const FIND_IDS: &str = "SELECT event_id, stream_id, stream_version, tx_id, global_position FROM events WHERE event_id = ANY($1)";

/// A stream's last version.
pub(super) const LAST_VERSION: &str = "SELECT max(stream_version) FROM events WHERE stream_id = $1";

/// JSON text passed to or read from a `json`/`jsonb` column without parsing
/// it into a tree on our side.
#[derive(Debug, Clone)]
pub(super) struct RawJson(pub Bytes);

impl ToSql for RawJson {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for RawJson {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(Self(Bytes::copy_from_slice(text)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

macro_rules! append_group {
    () => {
        concat!(
            insert_into!(),
            "SELECT e.stream, e.version, e.id, e.ty, e.sv, e.data, e.corr, e.caus, e.trace, e.actor \
             FROM unnest($1::text[], $2::int8[], $3::int8[], $4::uuid[], $5::text[], $6::int4[], $7::json[], \
                         $8::uuid[], $9::uuid[], $10::int4[], $11::text[], $12::text[]) \
             WITH ORDINALITY AS e(stream, version, expected, id, ty, sv, data, corr, caus, append, trace, actor, ord) \
             WHERE e.append NOT IN (SELECT p.append FROM unnest($1::text[], $3::int8[], $10::int4[]) AS p(stream, expected, append) \
                                    WHERE p.expected >= 0 AND NOT EXISTS \
                                      (SELECT 1 FROM events x WHERE x.stream_id = p.stream AND x.stream_version = p.expected)) \
             ORDER BY e.ord RETURNING tx_id, global_position, stream_version, event_id"
        )
    };
}
/// Appends to several streams in one statement: a group commit's appends,
/// or one atomic multi-stream append. Each row carries its stream, its
/// version, the version that must exist before it (`-1`: none, for a new
/// stream) and the append it belongs to (`$10`). An append any of whose
/// expected versions is missing inserts no row at all (the others of the
/// statement go ahead); a clash on either unique index fails the whole
/// statement.
pub(super) const APPEND_GROUP: &str = append_group!();

/// [`APPEND_GROUP`] with request keys: `$13`, `$14` and `$15` are each
/// keyed append's key, request and first event id. A key is written when
/// its append's events are (its first event among those inserted), in the
/// same statement; a key written before fails the statement.
pub(super) const KEYED_APPEND_GROUP: &str = concat!(
    "WITH ins AS (",
    append_group!(),
    "), req AS (INSERT INTO request_keys (key, request) \
       SELECT k.key, k.request FROM unnest($13::uuid[], $14::uuid[], $15::uuid[]) AS k(key, request, first) \
        WHERE k.first IN (SELECT event_id FROM ins)) \
     SELECT tx_id, global_position, stream_version, event_id FROM ins"
);
