//! How a projection's batch meets its table, the same for every read
//! model: the rows it touches loaded in one query, by key; and every row
//! written in one statement, each column as an array (`UNNEST`), inserted
//! or replacing the row with the same key. Each read model names its
//! columns once; the statements are built here.

use std::collections::HashMap;

use tokio_postgres::{Row, Transaction};

/// The rows of `{schema}.{table}` whose `key` is among `ids`, read with
/// `columns` by `read`, by their key (`key_of`).
pub(crate) async fn load<R>(
    tx: &Transaction<'_>,
    (schema, table, key): (&str, &str, &str),
    (columns, ids): (&str, &[String]),
    read: impl Fn(&Row) -> R,
    key_of: impl Fn(&R) -> String,
) -> Result<HashMap<String, R>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!("SELECT {columns} FROM {schema}.{table} WHERE {key} = ANY($1)"),
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let read = read(row);
            (key_of(&read), read)
        })
        .collect())
}

/// `INSERT INTO {schema}.{table} (columns) SELECT * FROM UNNEST($1::type[],
/// ...) ON CONFLICT (key) DO UPDATE SET` every column but the key. `columns`
/// are `(name, PostgreSQL type)`, in the order of the statement's
/// parameters (one array each), the key among them.
pub(crate) fn upsert_sql(schema: &str, table: &str, key: &str, columns: &[(&str, &str)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|name| **name != key)
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect();
    format!(
        "INSERT INTO {schema}.{table} ({}) SELECT * FROM UNNEST({}) \
         ON CONFLICT ({key}) DO UPDATE SET {}",
        names.join(", "),
        arrays.join(", "),
        updates.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::upsert_sql;

    #[test]
    fn every_column_but_the_key_is_replaced() {
        let sql = upsert_sql(
            "s",
            "t",
            "id",
            &[("id", "text"), ("n", "int8"), ("at", "timestamptz")],
        );
        assert_eq!(
            sql,
            "INSERT INTO s.t (id, n, at) SELECT * FROM UNNEST($1::text[], $2::int8[], \
             $3::timestamptz[]) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n, at = EXCLUDED.at"
        );
    }
}
