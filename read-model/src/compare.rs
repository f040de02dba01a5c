//! A read model's table compared between two schemas (the live copy and a
//! rebuild of it): what `replay verify` reports.

use tokio_postgres::GenericClient;

/// One table of two copies compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Rows in the live copy.
    pub live_rows: i64,
    /// Rows in the rebuilt copy.
    pub rebuilt_rows: i64,
    /// Live rows changed after the rebuild's end (not compared).
    pub changed_since: i64,
    /// Rows that differ, among those compared.
    pub differences: i64,
    /// The first differences, by key: the key, and each copy's row as JSON
    /// (`None` where the copy has no such row).
    pub first: Vec<(String, Option<String>, Option<String>)>,
}

/// Compares `table` (keyed by `key`) of schema `live` with the same table
/// of schema `rebuilt`, up to the position `(commit, prepare)` the rebuild
/// reached: rows the live copy changed after it are counted, not compared.
/// Lists up to `show` differences. The names must be plain identifiers.
pub async fn compare(
    client: &impl GenericClient,
    (live, rebuilt): (&str, &str),
    (table, key): (&str, &str),
    (commit, prepare): (i64, i64),
    show: i64,
) -> Result<Comparison, tokio_postgres::Error> {
    let count = |schema: &str| format!("SELECT count(*) FROM {schema}.{table}");
    let live_rows: i64 = client.query_one(&count(live), &[]).await?.get(0);
    let rebuilt_rows: i64 = client.query_one(&count(rebuilt), &[]).await?.get(0);
    let after = "(split_part(l.lp, '-', 1)::bigint, split_part(l.lp, '-', 2)::bigint) > ($1, $2)";
    let changed_since: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM (SELECT last_position AS lp FROM {live}.{table}) l WHERE {after}"
            ),
            &[&commit, &prepare],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            &format!(
                "WITH l AS (SELECT {key}::text AS k, row_to_json(t)::text AS j, t.last_position AS lp
                              FROM {live}.{table} t),
                      s AS (SELECT {key}::text AS k, row_to_json(t)::text AS j FROM {rebuilt}.{table} t)
                 SELECT coalesce(l.k, s.k), l.j, s.j, count(*) OVER ()
                   FROM l FULL JOIN s ON l.k = s.k
                  WHERE l.j IS DISTINCT FROM s.j AND (l.lp IS NULL OR NOT {after})
                  ORDER BY 1 LIMIT $3"
            ),
            &[&commit, &prepare, &show.max(1)],
        )
        .await?;
    Ok(Comparison {
        live_rows,
        rebuilt_rows,
        changed_since,
        differences: rows.first().map_or(0, |r| r.get::<_, i64>(3)),
        first: rows
            .iter()
            .take(usize::try_from(show).unwrap_or(0))
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect(),
    })
}
