//! A real SurrealDB server for the federation tests: the workspace's `rota-surreal-test-server`
//! (SurrealDB's own server, built from the `surrealdb-server` crate) on a free loopback port,
//! with a root user and its data in a SurrealKV directory of its own, so a test can stop it
//! and start it again on the same port with the data still there. Killed on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rota_store::{StoreError, SurrealOptions, SurrealStore};
use surrealdb::types::Value;

use crate::bin_dir;
use crate::pebble::{free_port, retry_start};

/// The root user the server is started with.
pub const USER: &str = "root";
/// The root user's password (given to rotad through a 0600 `password_file`).
pub const PASSWORD: &str = "rota-federation-test-secret";
/// How long the server may take to answer after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running SurrealDB server; killed on drop.
pub struct SurrealServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl SurrealServer {
    /// Starts a server with an empty database on a free loopback port.
    #[must_use]
    pub fn start() -> Self {
        retry_start("rota-surreal-test-server", || {
            let mut server = Self {
                dir: tempfile::tempdir().expect("surreal temp dir"),
                port: free_port(),
                child: None,
            };
            server.spawn()?;
            Ok(server)
        })
    }

    /// `ws://127.0.0.1:PORT`, the endpoint rotad and `SurrealStore` connect to.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The loopback port it listens on (the same across [`SurrealServer::stop`] and
    /// [`SurrealServer::start_again`]).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Writes the root password to `path` with mode 0600, as rotad's `password_file` must be.
    pub fn write_password_file(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("password file's directory");
        }
        fs::write(path, PASSWORD).expect("write the password file");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    }

    /// Kills the server (SIGKILL, as a crashed database host would vanish); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory, and waits until it answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        let deadline = Instant::now() + READY_TIMEOUT;
        // The port may linger for a moment after the kill; another process taking it in
        // between would be a bug in the test's own ports, so retry only until the deadline.
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("SurrealDB did not start again on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// [`SurrealServer::stop`], then [`SurrealServer::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Whether the server process is running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// What the server printed so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("surreal.log")
    }

    fn data_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the process and waits until it serves `/health`; on failure, kills it and says why.
    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("surreal log file");
        let mut child = Command::new(bin_dir().join("rota-surreal-test-server"))
            .arg("start")
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--user", USER, "--pass", PASSWORD, "--log", "warn"])
            .arg(format!("surrealkv:{}", self.data_path().display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn rota-surreal-test-server");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited with {status}; log:\n{}", self.log()));
            }
            if health_ok(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer on /health within {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `GET /health` on the port answers 200 (SurrealDB's check that the datastore works).
fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0_u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    head[..read].starts_with(b"HTTP/1.1 200")
}

impl Drop for SurrealServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The SurrealDB namespace the tests use.
pub const NAMESPACE: &str = "rota";

impl SurrealServer {
    /// Connects a `SurrealStore` to `database` as node `node`, signed in as root.
    pub async fn store(&self, database: &str, node: &str) -> Result<SurrealStore, StoreError> {
        self.store_with_password(database, node, PASSWORD).await
    }

    /// [`SurrealServer::store`] with another password (to see a wrong one refused).
    pub async fn store_with_password(
        &self,
        database: &str,
        node: &str,
        password: &str,
    ) -> Result<SurrealStore, StoreError> {
        SurrealStore::connect(&SurrealOptions {
            endpoint: self.endpoint(),
            namespace: NAMESPACE.to_owned(),
            database: database.to_owned(),
            credentials: Some((USER.to_owned(), password.to_owned())),
            node: node.to_owned(),
        })
        .await
    }

    /// rotad's `audit:` block for `database`, reading the password from `password_file`.
    #[must_use]
    pub fn audit_yaml(&self, database: &str, password_file: &Path) -> String {
        format!(
            "audit:\n  kind: surrealdb\n  endpoint: {endpoint}\n  namespace: {NAMESPACE}\n  \
             database: {database}\n  username: {USER}\n  password_file: {password}\n",
            endpoint = self.endpoint(),
            password = password_file.display(),
        )
    }
}

/// Every table of the store's database (from `INFO FOR DB`), each with its rows as JSON.
pub async fn dump_tables(store: &SurrealStore) -> Vec<(String, Vec<serde_json::Value>)> {
    let db = store.connection();
    let mut info = db.query("INFO FOR DB").await.expect("INFO FOR DB");
    let info: Option<Value> = info.take(0).expect("INFO FOR DB's result");
    let info = info.expect("INFO FOR DB answers").into_json_value();
    let tables: Vec<String> = info["tables"]
        .as_object()
        .unwrap_or_else(|| panic!("INFO FOR DB lists no tables: {info}"))
        .keys()
        .cloned()
        .collect();
    let mut dump = Vec::with_capacity(tables.len());
    for table in tables {
        // Table names come from the database itself; backticks keep any name an identifier.
        let mut rows = db
            .query(format!("SELECT * FROM `{table}`"))
            .await
            .unwrap_or_else(|e| panic!("reading table {table}: {e}"));
        let rows: Vec<Value> = rows
            .take(0)
            .unwrap_or_else(|e| panic!("decoding table {table}: {e}"));
        dump.push((
            table,
            rows.into_iter().map(Value::into_json_value).collect(),
        ));
    }
    dump
}

/// The rows, as `table: json`, of any table holding `needle` anywhere in a value.
pub async fn rows_containing(store: &SurrealStore, needle: &str) -> Vec<String> {
    dump_tables(store)
        .await
        .into_iter()
        .flat_map(|(table, rows)| {
            rows.into_iter()
                .map(move |row| format!("{table}: {row}"))
                .collect::<Vec<_>>()
        })
        .filter(|row| row.contains(needle))
        .collect()
}
