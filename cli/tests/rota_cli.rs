//! Runs the real `rota` binary against a fake rotad: a hyper server on a UNIX socket in a temp
//! dir that answers each request with a canned response (and refuses requests without the
//! protocol header, as rotad does), so the CLI's wire handling and exit codes are checked end to
//! end without the daemon.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{Channel, Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rota_api::status::{ConditionStatus, Reason, RenewalStatus};
use rota_api::wire::{CertSummary, PROTOCOL_HEADER};
use rota_api::{CertId, DomainName};
use tokio::sync::{Notify, oneshot};

type Body = Either<Full<Bytes>, Channel<Bytes>>;

/// The fake's behaviour: an answer per method and path (with query).
type Answers = dyn Fn(&Method, &str) -> Answer + Send + Sync;

/// What the fake rotad does for one request.
enum Answer {
    /// A whole body with this status, sent with `x-rota-protocol: <protocol>`.
    Whole {
        status: StatusCode,
        protocol: &'static str,
        body: String,
    },
    /// A 200 NDJSON body sent piece by piece.
    Stream(Vec<Piece>),
}

/// One step of a streamed answer.
enum Piece {
    /// Send these bytes as one chunk.
    Chunk(String),
    /// Pause.
    Sleep(Duration),
    /// Wait until the test says go.
    Gate(Arc<Notify>),
}

/// A fake rotad on `socket`; stops and removes its directory on drop.
struct FakeRotad {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FakeRotad {
    /// Listens before returning, so the CLI can connect at once.
    fn start(answer: impl Fn(&Method, &str) -> Answer + Send + Sync + 'static) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("rota.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind the socket");
        listener.set_nonblocking(true).expect("non-blocking socket");
        let answer = Arc::new(answer);
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test runtime");
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
                tokio::select! {
                    () = serve(listener, answer) => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            socket,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Runs `rota --socket <socket> args…` to completion.
    fn rota(&self, args: &[&str]) -> Output {
        rota(&self.socket).args(args).output().expect("run rota")
    }
}

impl Drop for FakeRotad {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

async fn serve(listener: tokio::net::UnixListener, answer: Arc<Answers>) {
    while let Ok((stream, _)) = listener.accept().await {
        let answer = Arc::clone(&answer);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(answer.as_ref(), &request);
                async move { Ok::<_, Infallible>(response) }
            });
            http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
                .ok();
        });
    }
}

fn respond(answer: &Answers, request: &Request<Incoming>) -> Response<Body> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    if request
        .headers()
        .get(PROTOCOL_HEADER)
        .is_none_or(|v| v != "2")
    {
        let body = r#"{"code":"bad_request","message":"send x-rota-protocol: 2"}"#;
        return whole(StatusCode::BAD_REQUEST, "2", body.to_owned());
    }
    match answer(request.method(), path) {
        Answer::Whole {
            status,
            protocol,
            body,
        } => whole(status, protocol, body),
        Answer::Stream(pieces) => {
            let (mut sender, body) = Channel::new(4);
            tokio::spawn(async move {
                for piece in pieces {
                    match piece {
                        Piece::Chunk(text) => {
                            if sender.send_data(Bytes::from(text)).await.is_err() {
                                return;
                            }
                        }
                        Piece::Sleep(pause) => tokio::time::sleep(pause).await,
                        Piece::Gate(gate) => gate.notified().await,
                    }
                }
            });
            Response::builder()
                .header(PROTOCOL_HEADER, "2")
                .header("content-type", "application/x-ndjson")
                .body(Either::Right(body))
                .expect("valid response")
        }
    }
}

fn whole(status: StatusCode, protocol: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(PROTOCOL_HEADER, protocol)
        .header("content-type", "application/json")
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("valid response")
}

fn ok_json(body: String) -> Answer {
    Answer::Whole {
        status: StatusCode::OK,
        protocol: "2",
        body,
    }
}

fn rota(socket: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rota"));
    command
        .arg("--socket")
        .arg(socket)
        .env_remove("ROTA_SOCKET");
    command
}

/// Starts `rota ARGS` against `socket` and hands each line of its stdout to the receiver as
/// it is printed, so a test can watch a command that is still running.
fn spawn_reading_lines(
    socket: &Path,
    args: &[&str],
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = rota(socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rota");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines_tx.send(line).ok();
        }
    });
    (child, lines)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn certs() -> Vec<CertSummary> {
    vec![CertSummary {
        id: CertId::new("web").expect("valid id"),
        description: None,
        domains: vec![DomainName::new("example.com").expect("valid name")],
        ca_backend: "local".into(),
        dcv_backend: None,
        install_backend: "filesystem".into(),
        not_after: None,
        ready: ConditionStatus::False,
        ready_reason: Reason::NotInstalled,
        issuing: false,
        last_renewal_status: Some(RenewalStatus::Failed),
    }]
}

fn step(seq: u32, step: &str, status: &str, message: &str) -> String {
    format!(
        r#"{{"type":"step","renewal_id":9,"seq":{seq},"step":"{step}","status":"{status}","message":"{message}","at":"2025-03-01T12:00:0{seq}Z"}}"#
    )
}

fn not_found() -> Answer {
    Answer::Whole {
        status: StatusCode::NOT_FOUND,
        protocol: "2",
        body: String::new(),
    }
}

#[test]
fn get_certs_json_prints_the_object_list() {
    let list = serde_json::json!({
        "apiVersion": "rota.dev/v1",
        "kind": "CertificateList",
        "items": [{
            "apiVersion": "rota.dev/v1",
            "kind": "Certificate",
            "metadata": { "name": "web", "generation": 2 },
            "spec": { "id": "web", "domains": ["example.com"] },
            "status": { "conditions": [], "notAfter": "2025-05-01T12:00:00Z" },
        }],
    });
    let answer = list.to_string();
    let fake = FakeRotad::start(move |method, path| match (method, path) {
        (&Method::GET, "/api/certificates") => ok_json(answer.clone()),
        _ => not_found(),
    });
    let output = fake.rota(&["get", "certs", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(printed, list, "the objects are printed whole");
}

#[test]
fn get_certs_watch_prints_a_row_when_a_cert_changes() {
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&polls);
    let fake = FakeRotad::start(move |method, path| {
        assert_eq!((method, path), (&Method::GET, "/api/certs"));
        let mut certs = certs();
        // From the third poll on, the cert is renewing.
        if counted.fetch_add(1, Ordering::SeqCst) >= 2 {
            certs[0].issuing = true;
            certs[0].ready_reason = Reason::Renewing;
        }
        ok_json(serde_json::to_string(&certs).expect("json"))
    });
    let (mut child, lines) = spawn_reading_lines(&fake.socket, &["get", "certs", "-w"]);
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from the watcher")
    };
    let (header, first, changed) = (next(), next(), next());
    assert!(header.starts_with("ID "), "{header}");
    assert!(
        first.starts_with("web ") && first.contains("NotInstalled") && first.ends_with("failed"),
        "{first}"
    );
    assert!(
        changed.starts_with("web ") && changed.contains("Renewing") && changed.ends_with("running"),
        "{changed}"
    );
    assert!(
        polls.load(Ordering::SeqCst) >= 3,
        "the change came from polling"
    );
    assert!(
        lines.recv_timeout(Duration::from_millis(1500)).is_err(),
        "an unchanged cert prints no further row"
    );
    assert!(
        child.try_wait().expect("child status").is_none(),
        "it watches until stopped"
    );
    child.kill().expect("stop the watcher");
    child.wait().expect("reap the watcher");
}

#[test]
fn renew_prints_each_step_as_it_arrives_and_exits_0() {
    let gate = Arc::new(Notify::new());
    let server_gate = Arc::clone(&gate);
    let fake = FakeRotad::start(move |method, path| {
        assert_eq!((method, path), (&Method::POST, "/api/certs/web/renew"));
        let load_key = step(1, "load_key", "succeeded", "generated ECDSA P-256 key");
        let (head, tail) = load_key.split_at(40);
        Answer::Stream(vec![
            Piece::Chunk(format!("{{\"type\":\"started\",\"renewal_id\":9}}\n{head}")),
            Piece::Sleep(Duration::from_millis(50)),
            Piece::Chunk(format!("{tail}\n")),
            Piece::Gate(Arc::clone(&server_gate)),
            Piece::Sleep(Duration::from_millis(50)),
            Piece::Chunk(step(2, "install", "succeeded", "wrote 4 files") + "\n"),
            Piece::Sleep(Duration::from_millis(50)),
            Piece::Chunk(
                "{\"type\":\"finished\",\"status\":\"succeeded\",\"error\":null}\n".into(),
            ),
        ])
    });
    let (mut child, lines) = spawn_reading_lines(&fake.socket, &["renew", "web"]);
    let first: Vec<String> = (0..2)
        .map(|_| {
            lines
                .recv_timeout(Duration::from_secs(10))
                .expect("a line before the gate")
        })
        .collect();
    assert_eq!(first[0], "renewal 9 started");
    assert!(first[1].starts_with("✓ load_key") && first[1].ends_with("generated ECDSA P-256 key"));
    assert!(
        child.try_wait().expect("child status").is_none(),
        "rota waits for the rest"
    );
    gate.notify_one();
    let status = child.wait().expect("rota exits");
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(rest[0].starts_with("✓ install"), "{rest:?}");
    assert!(rest[1].starts_with("renewed web in ") && rest[1].ends_with("(renewal 9)"));
}

#[test]
fn a_failed_renewal_exits_1_with_the_reason() {
    let fake = FakeRotad::start(|_, _| {
        Answer::Stream(vec![
            Piece::Chunk("{\"type\":\"started\",\"renewal_id\":9}\n".into()),
            Piece::Sleep(Duration::from_millis(30)),
            Piece::Chunk(step(1, "submit_order", "failed", "CA said no") + "\n"),
            Piece::Sleep(Duration::from_millis(30)),
            Piece::Chunk(
                r#"{"type":"finished","status":"failed","error":"submit_order: CA said no"}"#
                    .to_owned()
                    + "\n",
            ),
        ])
    });
    let output = fake.rota(&["renew", "web"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("✗ submit_order"));
    assert_eq!(
        stderr(&output),
        "error: renewal 9 of web failed: submit_order: CA said no\n"
    );
}

#[test]
fn another_protocol_version_exits_76() {
    let fake = FakeRotad::start(|_, _| Answer::Whole {
        status: StatusCode::OK,
        protocol: "1",
        body: "[]".into(),
    });
    let output = fake.rota(&["get", "certs"]);
    assert_eq!(output.status.code(), Some(76));
    assert!(stderr(&output).contains("rotad speaks protocol 1, this rota speaks 2"));
    assert!(output.stdout.is_empty());
}

#[test]
fn a_missing_socket_exits_69_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rota.sock");
    let output = rota(&socket).arg("status").output().expect("run rota");
    assert_eq!(output.status.code(), Some(69));
    let hint = format!(
        "hint: is rotad running? it listens on {}; ",
        socket.display()
    );
    assert!(stderr(&output).contains(&hint), "{}", stderr(&output));
}

#[test]
fn an_unknown_cert_exits_4() {
    let fake = FakeRotad::start(|_, _| Answer::Whole {
        status: StatusCode::NOT_FOUND,
        protocol: "2",
        body: r#"{"code":"not_found","message":"no cert `nope`"}"#.into(),
    });
    let output = fake.rota(&["describe", "cert", "nope"]);
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(stderr(&output), "error: no cert `nope`\n");
}

#[test]
fn a_refused_apply_exits_3_listing_problems_in_the_local_file() {
    let fake = FakeRotad::start(|method, path| {
        assert_eq!((method, path), (&Method::POST, "/api/config"));
        Answer::Whole {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            protocol: "2",
            body: r#"{"code":"invalid_config","message":"the config was refused","config_errors":[
                {"file":"/etc/rota/rota.yaml","line":3,"column":7,"path":"certs[0].domains[0]",
                 "message":"`a..b` has an empty label","hint":null}]}"#
                .into(),
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rota.yaml");
    std::fs::write(&file, "certs: []\n").expect("write the config");
    let file = file.to_str().expect("UTF-8 temp path");
    let output = fake.rota(&["apply", "-f", file, "--dry-run"]);
    assert_eq!(output.status.code(), Some(3));
    let expected = format!("{file}:3:7: certs[0].domains[0]: `a..b` has an empty label\n");
    assert!(
        stderr(&output).starts_with(&expected),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_on_a_bad_file_exits_3_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "certs:\n  - id: web\n    domains: [example.com]\n    bogus: 1\n",
    )
    .expect("write the config");
    let output = rota(&dir.path().join("absent.sock"))
        .args(["check", "-f"])
        .arg(&file)
        .output()
        .expect("run rota");
    assert_eq!(output.status.code(), Some(3));
    let stderr = stderr(&output);
    let prefix = format!("{}:", file.display());
    let located = stderr.lines().any(|line| {
        line.strip_prefix(&prefix).is_some_and(|rest| {
            let mut parts = rest.splitn(3, ':');
            let mut number = || parts.next().is_some_and(|n| n.parse::<usize>().is_ok());
            number() && number()
        })
    });
    assert!(located, "no file:line:col in\n{stderr}");
}
