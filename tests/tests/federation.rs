//! Federation end to end: three real rotad processes sharing one real SurrealDB server (the
//! workspace's `rota-surreal-test-server`), renewing through the in-process ACME double, which
//! counts what it signs. Each node has its own state directory, its own copy of every key
//! (byte-identical, as the runbook has the operator provision them) and installs into its own
//! directory. The tests kill, freeze and resume nodes and the database, and check on what
//! the CA signed, what each node installed and what each node's API says.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rota_e2e::acme_double::{AcmeDouble, DoubleOptions, Issuance};
use rota_e2e::surreal::{SurrealServer, rows_containing};
use rota_e2e::{Rotad, condition, serial_hex, wait_for};
use serde_json::Value;

/// `cluster.lease_seconds`: the smallest the config accepts, so failovers are quick.
const LEASE_SECONDS: u64 = 3;
const NODE_IDS: [&str; 3] = ["node-a", "node-b", "node-c"];
const DATABASE: &str = "federation";
/// Bound on anything that should happen within a few election ticks or one renewal.
const WAIT: Duration = Duration::from_secs(30);
/// How long nothing may happen for "nothing renews" to hold: more than two leases.
const QUIET: Duration = Duration::from_secs(7);
/// How many times a test asks the leader to renew while leadership may still be settling.
const RENEW_ATTEMPTS: usize = 3;
/// The failover bound the issue sets: the lease plus two seconds.
const FAILOVER_BOUND: Duration = Duration::from_secs(LEASE_SECONDS + 2);
/// The install-lag bound the issue sets for followers.
const INSTALL_LAG_BOUND: Duration = Duration::from_secs(2);

/// One rotad of the cluster.
struct Node {
    id: &'static str,
    rotad: Rotad,
    /// Frozen with SIGSTOP: its socket would accept and never answer, so it is not asked.
    frozen: bool,
    /// Killed and not restarted.
    dead: bool,
}

/// A SurrealDB server, the ACME double and three rotad nodes on them.
struct Cluster {
    surreal: SurrealServer,
    double: AcmeDouble,
    /// Each node's keys and the database password, outside its state directory so they can
    /// be in place before it starts.
    secrets: tempfile::TempDir,
    certs: Vec<&'static str>,
    nodes: Vec<Node>,
}

impl Cluster {
    /// The server, the double and keys for `certs`, copied to every node; no node started.
    fn prepare(certs: &[&'static str]) -> Self {
        let surreal = SurrealServer::start();
        let double = AcmeDouble::start(DoubleOptions::default());
        let secrets = tempfile::tempdir().expect("secrets dir");
        for id in certs {
            let original = secrets.path().join(format!("{id}.key"));
            generate_key(&original);
            for node in NODE_IDS {
                let copy = key_path(secrets.path(), node, id);
                fs::create_dir_all(copy.parent().expect("keys dir")).expect("keys dir");
                fs::copy(&original, &copy).expect("copy the key");
                chmod_600(&copy);
            }
        }
        SurrealServer::write_password_file(&secrets.path().join("surreal.pass"));
        Self {
            surreal,
            double,
            secrets,
            certs: certs.to_vec(),
            nodes: Vec::new(),
        }
    }

    /// [`Cluster::prepare`], then all three nodes started.
    fn start(certs: &[&'static str], renew_before_days: u32) -> Self {
        let mut cluster = Self::prepare(certs);
        for id in NODE_IDS {
            cluster.start_node(id, renew_before_days);
        }
        cluster
    }

    fn start_node(&mut self, id: &'static str, renew_before_days: u32) {
        let rotad = Rotad::start(&self.config(id, renew_before_days));
        self.nodes.push(Node {
            id,
            rotad,
            frozen: false,
            dead: false,
        });
    }

    fn config(&self, node: &str, renew_before_days: u32) -> String {
        let mut yaml = format!(
            "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
             socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 1\n\
             acme:\n  directory_url: {url}\n  account_credentials_file: {{dir}}/acme/account.json\n  \
             ca_bundle_file: {bundle}\n\
             {audit}\
             cluster:\n  enabled: true\n  node_id: {node}\n  lease_seconds: {LEASE_SECONDS}\n\
             certs:\n",
            url = self.double.directory_url(),
            bundle = self.double.ca_bundle_path().display(),
            audit = self
                .surreal
                .audit_yaml(DATABASE, &self.secrets.path().join("surreal.pass")),
        );
        for id in &self.certs {
            let _ = write!(
                yaml,
                "  - id: {id}\n    domains: [{id}.rota.test]\n    key_path: {key}\n    \
                 renew_before_days: {renew_before_days}\n    ca: {{ kind: acme }}\n    \
                 dcv: {{ kind: webroot, directory: {{dir}}/webroot }}\n    \
                 install: {{ kind: filesystem, directory: {{dir}}/installed/{id} }}\n",
                key = key_path(self.secrets.path(), node, id).display(),
            );
        }
        yaml
    }

    /// The nodes that can answer (neither frozen nor dead).
    fn live(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.frozen && !n.dead)
    }

    /// The node every live node agrees leads, once exactly one says it leads and every other
    /// names it as the lease holder; panics if two live nodes ever both say they lead.
    fn wait_leader(&self, not: Option<usize>) -> usize {
        wait_for("one agreed leader", WAIT, || {
            let views: Vec<(usize, Value)> = self
                .live()
                .map(|(i, n)| cluster_view(&n.rotad).map(|v| (i, v)))
                .collect::<Option<_>>()?;
            let leaders: Vec<usize> = views
                .iter()
                .filter(|(_, v)| v["role"] == "leader")
                .map(|(i, _)| *i)
                .collect();
            assert!(
                leaders.len() <= 1,
                "two nodes lead at once: {views:?}\n{}",
                self.logs()
            );
            let leader = *leaders.first()?;
            let holder = self.nodes[leader].id;
            let agreed = views
                .iter()
                .all(|(_, v)| v["lease"]["holder"].as_str() == Some(holder));
            (agreed && Some(leader) != not).then_some(leader)
        })
    }

    /// Waits until no live node says it leads.
    fn wait_no_leader(&self, timeout: Duration) {
        wait_for("every node to follow", timeout, || {
            self.live()
                .all(|(_, n)| cluster_view(&n.rotad).is_some_and(|v| v["role"] == "follower"))
                .then_some(())
        });
    }

    fn installed(&self, node: usize, id: &str) -> PathBuf {
        self.nodes[node]
            .rotad
            .path(&format!("installed/{id}/cert.pem"))
    }

    /// Waits until every live node has installed the same cert for `id`; returns its serial.
    fn wait_same_cert_everywhere(&self, id: &str) -> String {
        wait_for(&format!("{id} installed alike on every node"), WAIT, || {
            let certs: Vec<Vec<u8>> = self
                .live()
                .map(|(i, _)| fs::read(self.installed(i, id)).ok())
                .collect::<Option<_>>()?;
            certs.windows(2).all(|w| w[0] == w[1]).then_some(())
        });
        let (first, _) = self.live().next().expect("a live node");
        serial_hex(&self.installed(first, id))
    }

    fn kill9(&mut self, node: usize) {
        self.nodes[node].rotad.kill9();
        self.nodes[node].dead = true;
    }

    fn revive(&mut self, node: usize) {
        self.nodes[node].rotad.restart();
        self.nodes[node].dead = false;
    }

    fn freeze(&mut self, node: usize) {
        self.nodes[node].rotad.signal("STOP");
        self.nodes[node].frozen = true;
    }

    fn thaw(&mut self, node: usize) {
        self.nodes[node].rotad.signal("CONT");
        self.nodes[node].frozen = false;
    }

    /// The CA's signatures for `id`, oldest first.
    fn issued_for(&self, id: &str) -> Vec<Issuance> {
        let name = format!("{id}.rota.test");
        self.double
            .issuances()
            .into_iter()
            .filter(|i| i.names == [name.clone()])
            .collect()
    }

    /// Every node's log, for a failure message.
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.id, n.rotad.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Panics if any rotad exited by itself.
    fn assert_all_running(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| !n.dead) {
            if let Some(status) = node.rotad.exit_status() {
                panic!("{} exited with {status}:\n{}", node.id, node.rotad.log());
            }
        }
    }
}

fn key_path(secrets: &Path, node: &str, id: &str) -> PathBuf {
    secrets.join(node).join(format!("{id}.key"))
}

/// A P-256 key in PKCS#8 PEM, made with the real openssl as an operator would.
fn generate_key(path: &Path) {
    let path = path.display().to_string();
    let _ = rota_e2e::openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &path,
    ]);
}

fn chmod_600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// `GET /api/cluster` over the node's socket with the real curl (bounded, so a node that hangs
/// fails the wait rather than the whole test), or `None` while it does not answer.
fn cluster_view(rotad: &Rotad) -> Option<Value> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "2", "--unix-socket"])
        .arg(rotad.socket())
        .arg("http://localhost/api/cluster")
        .output()
        .expect("run curl");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Runs `rota ARGS` on `rotad`, killed if it has not finished within `WAIT`; whether it
/// succeeded.
fn rota_bounded(rotad: &Rotad, args: &[&str]) -> bool {
    let (mut child, _lines) = rotad.spawn_rota(args);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("poll rota") {
            return status.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn median(mut figures: Vec<Duration>) -> Duration {
    figures.sort_unstable();
    figures[figures.len() / 2]
}

#[test]
fn one_leader_fails_over_within_the_lease_and_followers_install_within_two_seconds() {
    let mut cluster = Cluster::start(&["web"], 30);
    let leader = cluster.wait_leader(None);
    let first = cluster.wait_same_cert_everywhere("web");
    assert_eq!(
        cluster.issued_for("web").len(),
        1,
        "one first issuance for the cluster"
    );

    for (i, node) in cluster.nodes.iter().enumerate() {
        let log = node.rotad.log();
        let line = if i == leader {
            "cluster: acquired leader lock (term "
        } else {
            "cluster: still follower"
        };
        assert!(log.contains(line), "{} logs `{line}`:\n{log}", node.id);
        // Every node lists the others once their first heartbeats have landed.
        let view = wait_for("every node's heartbeat", WAIT, || {
            let view: Value = serde_json::from_str(&node.rotad.rota_ok(&["cluster", "-o", "json"]))
                .expect("`rota cluster -o json` is JSON");
            (view["nodes"].as_array().map(Vec::len) == Some(3)).then_some(view)
        });
        let role = if i == leader { "leader" } else { "follower" };
        assert_eq!(view["role"], role, "{}: {view}", node.id);
        assert_eq!(view["node_id"], node.id);
        assert_eq!(view["lease_seconds"], LEASE_SECONDS);
    }

    // A renewal on the leader lands on both followers: time each node's cert file changing.
    let before: Vec<Vec<u8>> = (0..3)
        .map(|i| fs::read(cluster.installed(i, "web")).expect("installed"))
        .collect();
    let (mut renew, _lines) = cluster.nodes[leader].rotad.spawn_rota(&["renew", "web"]);
    let mut changed_at: Vec<Option<Instant>> = vec![None; 3];
    wait_for("the renewal on every node", WAIT, || {
        for (i, at) in changed_at.iter_mut().enumerate() {
            if at.is_none() && fs::read(cluster.installed(i, "web")).ok() != Some(before[i].clone())
            {
                *at = Some(Instant::now());
            }
        }
        changed_at.iter().all(Option::is_some).then_some(())
    });
    assert!(
        renew.wait().expect("rota renew").success(),
        "rota renew on the leader"
    );
    let renewed = serial_hex(&cluster.installed(leader, "web"));
    assert_ne!(renewed, first, "the renewal installed a new cert");
    let leader_at = changed_at[leader].expect("leader installed");
    for (i, at) in changed_at.iter().enumerate().filter(|(i, _)| *i != leader) {
        assert_eq!(
            serial_hex(&cluster.installed(i, "web")),
            renewed,
            "{}",
            NODE_IDS[i]
        );
        let lag = at.expect("installed").saturating_duration_since(leader_at);
        println!("install lag on {}: {} ms", NODE_IDS[i], lag.as_millis());
        assert!(
            lag <= INSTALL_LAG_BOUND,
            "{} installed {lag:?} after the leader",
            NODE_IDS[i]
        );
    }
    assert_eq!(
        cluster.issued_for("web").len(),
        2,
        "one issuance per renewal"
    );

    // kill -9 the leader: another leads within the lease plus two seconds.
    let killed_at = Instant::now();
    cluster.kill9(leader);
    let next = cluster.wait_leader(Some(leader));
    let failover = killed_at.elapsed();
    println!("failover after kill -9: {} ms", failover.as_millis());
    assert!(
        failover <= FAILOVER_BOUND,
        "{} took over {failover:?} after the kill:\n{}",
        NODE_IDS[next],
        cluster.logs()
    );
}

#[test]
fn twenty_failovers_with_certs_due_issue_each_cert_once_per_due_period() {
    const CYCLES: usize = 20;
    // Certs live 30 days and DUE seconds; renewed 30 days before expiry, each comes due DUE
    // seconds after it is signed, again and again, through every failover.
    const DUE: i64 = 4;
    let certs = ["web", "api"];
    let mut cluster = Cluster::prepare(&certs);
    cluster
        .double
        .set_validity(time::Duration::days(30) + time::Duration::seconds(DUE));
    for id in NODE_IDS {
        cluster.start_node(id, 30);
    }
    // Every cycle below must be a renewal: the first issue is done before the first one.
    for id in certs {
        cluster.wait_same_cert_everywhere(id);
    }
    let mut failovers = Vec::with_capacity(CYCLES);
    for cycle in 0..CYCLES {
        let leader = cluster.wait_leader(None);
        let issued_before: Vec<usize> = certs
            .iter()
            .map(|id| cluster.issued_for(id).len())
            .collect();
        // Mostly a leader frozen past its lease (it must not issue when it wakes); every
        // fourth cycle a crash.
        let crash = cycle % 4 == 3;
        let started = Instant::now();
        if crash {
            cluster.kill9(leader);
        } else {
            cluster.freeze(leader);
        }
        let next = cluster.wait_leader(Some(leader));
        failovers.push(started.elapsed());
        // The new leader renews what is due: each cert is signed again.
        wait_for(
            &format!("cycle {cycle}: renewals under {}", NODE_IDS[next]),
            WAIT,
            || {
                certs
                    .iter()
                    .zip(&issued_before)
                    .all(|(id, before)| cluster.issued_for(id).len() > *before)
                    .then_some(())
            },
        );
        if crash {
            cluster.revive(leader);
        } else {
            cluster.thaw(leader);
        }
        // The old leader, back, follows the new one.
        wait_for(
            &format!("cycle {cycle}: {} to follow", NODE_IDS[leader]),
            WAIT,
            || {
                cluster_view(&cluster.nodes[leader].rotad)
                    .is_some_and(|v| v["role"] == "follower")
                    .then_some(())
            },
        );
        cluster.assert_all_running();
    }
    println!(
        "failover over {CYCLES} cycles: median {} ms, max {} ms",
        median(failovers.clone()).as_millis(),
        failovers.iter().max().expect("cycles").as_millis()
    );

    let freezes = (0..CYCLES).filter(|cycle| cycle % 4 != 3).count();
    assert_recorded_once_per_due_period(&cluster, &certs, DUE, CYCLES, freezes);
}

/// Each of `certs` recorded (and so installed) once per due period of `due` seconds through
/// every one of `cycles` failovers, and no private key in the store. The CA may have signed
/// a few more: a leader frozen between its last fence check and the CA's answer gets a cert
/// signed that the store then refuses (see docs/federation.md), at most one per freeze.
fn assert_recorded_once_per_due_period(
    cluster: &Cluster,
    certs: &[&str],
    due: i64,
    cycles: usize,
    freezes: usize,
) {
    let store = tokio::runtime::Runtime::new().expect("runtime");
    let recorded = store.block_on(async {
        let store = cluster
            .surreal
            .store(DATABASE, "inspector")
            .await
            .expect("connect");
        let mut recorded = Vec::new();
        for id in certs {
            let rows = rows_containing(&store, &format!("\"cert_id\":\"{id}\"")).await;
            let mut times: Vec<String> = rows
                .iter()
                .filter_map(|r| r.strip_prefix("issued_cert: "))
                .map(|json| {
                    let row: Value = serde_json::from_str(json).expect("a JSON row");
                    row["not_after"].as_str().expect("not_after").to_owned()
                })
                .collect();
            times.sort();
            recorded.push(times);
        }
        let keys = rows_containing(&store, "PRIVATE KEY").await;
        assert!(
            keys.is_empty(),
            "private key material in the store: {keys:?}"
        );
        recorded
    });
    for (id, times) in certs.iter().zip(recorded) {
        let signed = cluster.issued_for(id).len();
        let refused = signed.saturating_sub(times.len());
        println!(
            "{id}: {} recorded, {refused} signed by a deposed leader and refused",
            times.len()
        );
        assert!(
            signed >= times.len() && refused <= freezes,
            "{id}: the CA signed {signed} certs, the store holds {}:\n{}",
            times.len(),
            cluster.logs()
        );
        // Once per due period: each recorded cert was signed (its notAfter less the fixed
        // validity) only once the one before came due; notAfter has whole seconds, so a due
        // time can be up to a second early.
        for pair in times.windows(2) {
            let parse = |t: &str| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .expect("an RFC 3339 time")
            };
            let gap = parse(&pair[1]) - parse(&pair[0]);
            assert!(
                gap >= time::Duration::seconds(due - 1),
                "{id}: two certs recorded whose notAfters are {gap} apart (due every {due}s): {times:?}\n{}",
                cluster.logs()
            );
        }
        // Every cycle waits for a signature; one that only a deposed leader got is refused,
        // and the cert is renewed in the next cycle instead.
        assert!(
            signed > cycles && times.len() + refused > cycles,
            "{id} renewed through every cycle: {} recorded, {refused} refused",
            times.len()
        );
    }
}

#[test]
fn with_surrealdb_down_nobody_leads_or_renews_and_a_leader_returns_with_it() {
    let mut cluster = Cluster::start(&["web"], 30);
    let leader = cluster.wait_leader(None);
    let serial = cluster.wait_same_cert_everywhere("web");
    let signed = cluster.issued_for("web").len();

    cluster.surreal.stop();
    cluster.wait_no_leader(FAILOVER_BOUND);
    println!("every node follows once SurrealDB is down");
    // Asked to renew, no node may: the leader demoted itself, and a follower's request has
    // nowhere to go.
    for node in &cluster.nodes {
        rota_bounded(&node.rotad, &["renew", "web"]);
    }
    let quiet_until = Instant::now() + QUIET;
    while Instant::now() < quiet_until {
        assert_eq!(
            cluster.issued_for("web").len(),
            signed,
            "nothing renews without the store"
        );
        cluster.assert_all_running();
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, id) in NODE_IDS.iter().enumerate() {
        assert_eq!(serial_hex(&cluster.installed(i, "web")), serial, "{id}");
    }

    cluster.surreal.start_again();
    // Right after the store returns, each client sends what it held during the outage, and
    // a lease check slower than a third of the lease makes the leader step down for a round
    // (and take the lease back the next): a renewal asked of it then is fenced out. Ask
    // whoever leads, a few times.
    let mut asked = 0;
    let renewed_on = loop {
        let back = cluster.wait_leader(None);
        asked += 1;
        if rota_bounded(&cluster.nodes[back].rotad, &["renew", "web"]) {
            break back;
        }
        assert!(
            asked < RENEW_ATTEMPTS,
            "a forced renewal on the leader works again:\n{}",
            cluster.logs()
        );
    };
    println!(
        "renewed on {} after SurrealDB returned (the leader was {}), asked {asked} time(s)",
        NODE_IDS[renewed_on], NODE_IDS[leader]
    );
    let renewed = cluster.wait_same_cert_everywhere("web");
    assert_ne!(
        renewed, serial,
        "the renewal installed a new cert on every node"
    );
    // The renewals asked for during the outage may be delivered once the store is back (the
    // client holds a request until it reconnects): at most one more per node, and one per
    // time the leader was asked.
    let after = cluster.issued_for("web").len();
    assert!(
        (signed + 1..=signed + asked + NODE_IDS.len()).contains(&after),
        "{after} signed after {signed}"
    );
    cluster.assert_all_running();
}

#[test]
fn a_follower_holding_another_key_reports_key_mismatch_and_keeps_its_cert() {
    let mut cluster = Cluster::prepare(&["web"]);
    // node-a starts alone, so it leads; the others join as followers.
    cluster.start_node("node-a", 30);
    assert_eq!(cluster.wait_leader(None), 0);
    cluster.start_node("node-b", 30);
    cluster.start_node("node-c", 30);
    assert_eq!(cluster.wait_leader(None), 0);
    let first = cluster.wait_same_cert_everywhere("web");

    // node-c's operator provisions the wrong key.
    let c_key = key_path(cluster.secrets.path(), "node-c", "web");
    generate_key(&c_key);
    chmod_600(&c_key);
    let c_cert = cluster.installed(2, "web");
    let c_before = fs::read(&c_cert).expect("node-c's cert");

    assert!(
        rota_bounded(&cluster.nodes[0].rotad, &["renew", "web"]),
        "renewal on the leader"
    );
    let renewed = serial_hex(&cluster.installed(0, "web"));
    assert_ne!(renewed, first);
    wait_for("node-b to install the renewal", WAIT, || {
        (serial_hex(&cluster.installed(1, "web")) == renewed).then_some(())
    });
    let failing = wait_for("node-c to report KeyMismatch", WAIT, || {
        let text = cluster.nodes[2]
            .rotad
            .rota_ok(&["get", "cert", "web", "-o", "json"]);
        let cert: Value = serde_json::from_str(&text).expect("json");
        let failing = condition(&cert, "Failing").clone();
        (failing["status"] == "True" && failing["reason"] == "KeyMismatch").then_some(failing)
    });
    let message = failing["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&c_key.display().to_string()),
        "the message names the key file: {failing}"
    );
    assert_eq!(
        fs::read(&c_cert).expect("node-c's cert"),
        c_before,
        "node-c installed nothing"
    );
    assert!(!message.contains("PRIVATE KEY"), "{failing}");
}
