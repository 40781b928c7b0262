//! A real Chromium (Debian's `chromium`), headless, driven over WebDriver through Debian's
//! `chromedriver` (`chromium-driver`) with fantoccini.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

use crate::wait_for;

/// A chromedriver process and a browser session on it; both end on drop.
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: Client,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session
    /// with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian package chromium-driver)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for("chromedriver to listen", Duration::from_secs(20), || {
            TcpStream::connect(addr).ok()
        });
        // A root container has no user namespace for Chromium's sandbox.
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                ]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .expect("a Chromium session");
        Self { driver, client }
    }

    /// Saves a screenshot of the page as `name`.png in the screenshot directory; returns the
    /// file's path (printed too, so a reader of the test output can open it).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let png = self.client.screenshot().await.expect("screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `$ROTA_SCREENSHOT_DIR`, else `dashboard-screenshots/` beside the
/// test binaries in the target directory.
#[must_use]
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("ROTA_SCREENSHOT_DIR").map_or_else(
        || {
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent()
                .and_then(std::path::Path::parent)
                .expect("target dir")
                .join("dashboard-screenshots")
        },
        PathBuf::from,
    )
}
