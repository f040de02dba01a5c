//! Test support shared by every crate's integration tests: a fresh database
//! per test on the throwaway server that `deploy/local/test.sh` starts.

use uuid::Uuid;

/// The variable that points tests at a PostgreSQL server.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// The maintenance URL of the test server. Panics with instructions when it
/// is not set: a store test must never pass without a database.
pub fn server_url() -> String {
    std::env::var(DATABASE_URL).unwrap_or_else(|_| {
        panic!(
            "{DATABASE_URL} is not set. Run the tests with `bash deploy/local/test.sh`, which starts a \
             throwaway PostgreSQL, or point {DATABASE_URL} at a server you own."
        )
    })
}

/// Creates a new, empty database on the test server and returns its URL.
pub async fn fresh_database() -> String {
    let server = server_url();
    let name = format!("test_{}", Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("the test PostgreSQL at {DATABASE_URL} should accept connections: {e}")
        });
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("the test server should let us create a database");
    drop(client);
    let _ = driver.await;
    with_database(&server, &name)
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_database("postgres://u@h:1/db?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
    }
}
