//! A real SurrealDB server (the workspace's `rota-surreal-test-server`) on a loopback port,
//! in memory, stopped on drop; several stores connect to it as different nodes.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rota_store::{SurrealOptions, SurrealStore};

/// The running server.
pub struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts it and waits until it accepts connections.
    pub fn start() -> Self {
        let exe = std::env::current_exe().unwrap();
        // Test executables live in target/<profile>/deps/.
        let bin: PathBuf = exe
            .parent()
            .and_then(std::path::Path::parent)
            .unwrap()
            .join("rota-surreal-test-server");
        assert!(
            bin.exists(),
            "{} is missing: build the binaries first (`cargo build --bins`, as scripts/test does)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["start", "--bind", &format!("127.0.0.1:{port}")])
            .args([
                "--user", "root", "--pass", "root", "--log", "warn", "memory",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "SurrealDB did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    /// A store connected over WebSocket, writing as `node`.
    pub async fn store(&self, node: &str) -> SurrealStore {
        SurrealStore::connect(&SurrealOptions {
            endpoint: format!("ws://127.0.0.1:{}", self.port),
            namespace: "rota".to_owned(),
            database: "cluster".to_owned(),
            credentials: Some(("root".to_owned(), "root".to_owned())),
            node: node.to_owned(),
        })
        .await
        .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
