//! The real RFC 2136 peer: BIND 9's `named` (Debian `bind9`), started in the foreground on a
//! free loopback port with its config, zone and journal in a temporary directory, serving one
//! primary zone that a TSIG key may update. What the zone serves is read back with the real
//! `dig` (Debian `bind9-dnsutils`), as an operator would check it.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::pebble::{Process, free_dns_port, retry_start};

/// The name of the TSIG key `named` accepts updates signed with.
pub const KEY_NAME: &str = "rota-update";

/// A running `named` that is primary for one zone; killed on drop.
pub struct Bind {
    process: Process,
    addr: SocketAddr,
    zone: String,
    secret: String,
    /// Holds the config, zone and journal; removed on drop.
    _dir: tempfile::TempDir,
}

impl Bind {
    /// Starts `named` as primary for `zone` (SOA and NS only), accepting TXT updates anywhere
    /// in the zone signed with the HMAC-SHA256 key [`KEY_NAME`]; its secret is fresh.
    #[must_use]
    pub fn start(zone: &str) -> Self {
        let secret = STANDARD.encode(rand_bytes());
        retry_start("named", || {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_dns_port();
            write_config(dir.path(), port, zone, &secret);
            let mut command = Command::new("named");
            // -g: foreground, logging to stderr; -n 1: one worker, enough for a test. Run as
            // the test's own user (no -u), so the temporary directory is writable for the
            // zone's journal.
            command
                .arg("-g")
                .args(["-n", "1"])
                .arg("-c")
                .arg(dir.path().join("named.conf"));
            let mut process = Process::spawn(command, "named");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            process.wait_until_ready(|| !dig(addr, &["SOA", zone]).trim().is_empty())?;
            Ok(Self {
                process,
                addr,
                zone: zone.to_owned(),
                secret: secret.clone(),
                _dir: dir,
            })
        })
    }

    /// Where `named` answers queries and updates, UDP and TCP.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key's secret, base64, as `tsig-keygen` prints it.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Writes the key's secret to `path`, for `tsig_secret_file`.
    pub fn write_secret_file(&self, path: &Path) {
        fs::write(path, format!("{}\n", self.secret)).expect("write the TSIG secret file");
    }

    /// The TXT values at `name`, as `dig` reads them from the server (sorted).
    #[must_use]
    pub fn txt(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = dig(self.addr, &["TXT", name])
            .lines()
            .map(|line| line.trim().trim_matches('"').to_owned())
            .filter(|line| !line.is_empty())
            .collect();
        values.sort();
        values
    }

    /// Adds a TXT record at `name` with `nsupdate` (bind9-dnsutils), signed with the key: a
    /// record rota did not write, which rota must leave alone.
    pub fn add_foreign_txt(&self, name: &str, value: &str) {
        let script = format!(
            "server 127.0.0.1 {port}\nzone {zone}\nupdate add {name}. 60 TXT \"{value}\"\nsend\n",
            port = self.addr.port(),
            zone = self.zone,
        );
        let key = format!("hmac-sha256:{KEY_NAME}:{}", self.secret);
        let mut child = Command::new("nsupdate")
            .args(["-y", &key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run nsupdate (Debian package `bind9-dnsutils`)");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), script.as_bytes())
            .expect("write to nsupdate");
        let out = child.wait_with_output().expect("nsupdate");
        assert!(
            out.status.success(),
            "nsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What `named` logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// `dig`'s short answer for `args` from `server`: one try, one second, no recursion.
fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+short", "+norecurse", "+time=1", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig (Debian package `bind9-dnsutils`)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 32 random bytes, an HMAC-SHA256 key's size, from the kernel.
fn rand_bytes() -> Vec<u8> {
    let mut bytes = vec![0; 32];
    let mut urandom = fs::File::open("/dev/urandom").expect("open /dev/urandom");
    std::io::Read::read_exact(&mut urandom, &mut bytes).expect("read /dev/urandom");
    bytes
}

fn write_config(dir: &Path, port: u16, zone: &str, secret: &str) {
    let d = dir.display();
    let mut conf = String::new();
    let _ = write!(
        conf,
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
}};
controls {{ }};
key "{KEY_NAME}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};
zone "{zone}" {{
    type primary;
    file "{d}/{zone}.zone";
    update-policy {{ grant {KEY_NAME} zonesub TXT; }};
}};
"#
    );
    fs::write(dir.join("named.conf"), conf).expect("write named.conf");
    let records = format!(
        "$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n\
         @ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"
    );
    fs::write(dir.join(format!("{zone}.zone")), records).expect("write the zone file");
}
