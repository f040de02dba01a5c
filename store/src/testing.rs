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

/// Whether this process has dropped the databases of ended ones.
static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Creates a new, empty database on the test server and returns its URL.
/// Its name carries this process's id: the first database a test process
/// asks for drops those of test processes that have ended
/// ([`drop_databases_of_ended_processes`]), so a whole run's databases never
/// pile up on the server's disk.
pub async fn fresh_database() -> String {
    let server = server_url();
    let name = format!("test_{}_{}", std::process::id(), Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("the test PostgreSQL at {DATABASE_URL} should accept connections: {e}")
        });
    let driver = tokio::spawn(connection);
    if !SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        drop_databases_of_ended_processes(&client).await;
    }
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("the test server should let us create a database");
    drop(client);
    let _ = driver.await;
    with_database(&server, &name)
}

/// Drops the test databases ([`fresh_database`]) whose process has ended
/// (no `/proc/{pid}`), terminating what is still connected to them (a
/// service a killed test left running). Databases of running test
/// processes, and any other database, are left alone. A drop that fails is
/// skipped: it only costs disk.
pub async fn drop_databases_of_ended_processes(client: &tokio_postgres::Client) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let Some(pid) = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
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

/// Starts the service `binary` with only `env` (and `PATH`) set, expects it
/// to refuse: exit non-zero within 30 s, before serving anything, its last
/// words one line that names `setting` (only start-up logs before it).
/// Returns that line for further checks. A service handed bad settings must
/// say which one and stop.
pub fn assert_refuses_to_start(binary: &str, env: &[(&str, &str)], setting: &str) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the service") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{binary} kept running with {env:?}; it should refuse to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .map(|mut s| s.read_to_string(&mut stdout));
    child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    assert!(
        !status.success(),
        "{binary} with {env:?} exited 0: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("Error: ") && last.contains(setting),
        "{binary} with {env:?} should end with one error line naming {setting}, printed:\n{stderr}"
    );
    assert_eq!(
        lines.iter().filter(|l| !l.contains("INFO")).count(),
        1,
        "{binary} with {env:?} should print only its error (and start-up logs), printed:\n{stderr}"
    );
    assert!(
        !stdout.contains("listening") && !stderr.contains("listening"),
        "{binary} opened its port before refusing: {stdout}{stderr}"
    );
    last.to_owned()
}

/// A service process started by a test, stopped when the test ends, pass or
/// fail, so a failing test leaves nothing running. Stopping sends SIGTERM
/// first (an nginx master killed outright leaves its workers behind), then
/// kills what is still there after two seconds.
pub struct Service(pub std::process::Child);

impl Service {
    /// Sends SIGTERM, as an orchestrator stopping a pod does, and waits up to
    /// `within` for the exit. Panics when the process does not exit in time.
    pub async fn terminate(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        self.signal_term();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(exit) = self.0.try_wait().expect("wait for the service") {
                return exit;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit {within:?} after SIGTERM"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn signal_term(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
        debug_assert!(sent.is_ok(), "cannot run kill: {sent:?}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal_term();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
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
