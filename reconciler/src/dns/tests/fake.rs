//! A table-driven DNS server on a loopback UDP socket, for what pebble-challtestsrv cannot
//! play: a resolver that knows SOA and NS records, and the zone's authoritative servers. It
//! answers exactly the records it holds (NXDOMAIN for unknown names, the enclosing SOA in the
//! authority section of negative answers, as RFC 2308 asks) and remembers every question.
//! It listens on UDP and TCP; with `truncate_udp` set, UDP answers come back empty with the
//! TC bit, as a real server does when the records do not fit, so only TCP gets them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, NS, SOA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// One question the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Asked {
    pub(super) name: String,
    pub(super) record_type: RecordType,
    pub(super) recursion_desired: bool,
    pub(super) over_tcp: bool,
}

/// What both listeners share.
#[derive(Default)]
struct State {
    records: Mutex<Vec<Record>>,
    asked: Mutex<Vec<Asked>>,
    truncate_udp: AtomicBool,
}

/// A running fake server; stops on drop.
pub(super) struct FakeDns {
    pub(super) addr: SocketAddr,
    state: Arc<State>,
    tasks: [JoinHandle<()>; 2],
}

impl FakeDns {
    /// Serves on `ip:port` over UDP and TCP (port 0: any port free for both).
    pub(super) async fn start(ip: IpAddr, port: u16) -> std::io::Result<Self> {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind((ip, port)).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if port != 0 => return Err(e),
                Err(_) => {}
            }
        };
        let addr = udp.local_addr()?;
        let state = Arc::new(State::default());
        let tasks = [
            tokio::spawn(serve_udp(udp, Arc::clone(&state))),
            tokio::spawn(serve_tcp(tcp, Arc::clone(&state))),
        ];
        Ok(Self { addr, state, tasks })
    }

    /// Adds a record to what the server answers.
    pub(super) fn add(&self, name: &str, data: RData) {
        add(&self.state, name, data);
    }

    /// A closure adding a record later, from another task.
    pub(super) fn adder(&self) -> impl Fn(&str, RData) + Send + 'static {
        let state = Arc::clone(&self.state);
        move |name, data| add(&state, name, data)
    }

    /// Makes every UDP answer an empty truncated one.
    pub(super) fn truncate_udp(&self) {
        self.state.truncate_udp.store(true, Ordering::SeqCst);
    }

    /// Every question so far, in order.
    pub(super) fn asked(&self) -> Vec<Asked> {
        self.state.asked.lock().unwrap().clone()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn add(state: &State, name: &str, data: RData) {
    let record = Record::from_rdata(name.parse().unwrap(), 60, data);
    state.records.lock().unwrap().push(record);
}

async fn serve_udp(socket: UdpSocket, state: Arc<State>) {
    let mut buf = vec![0; 4096];
    while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
        let truncate = state.truncate_udp.load(Ordering::SeqCst);
        if let Some(mut response) = respond(&state, &buf[..len], false) {
            if truncate {
                response.answers.clear();
                response.metadata.truncation = true;
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_connection(stream, Arc::clone(&state)));
    }
}

/// Length-prefixed messages, one answer per question (RFC 1035 §4.2.2).
async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    while let Ok(len) = stream.read_u16().await {
        let mut buf = vec![0; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Some(response) = respond(&state, &buf, true) else {
            return;
        };
        let bytes = response.to_vec().unwrap();
        let _ = stream.write_u16(bytes.len() as u16).await;
        let _ = stream.write_all(&bytes).await;
    }
}

/// Records the question in `request` and builds the answer; `None` for garbage.
fn respond(state: &State, request: &[u8], over_tcp: bool) -> Option<Message> {
    let request = Message::from_vec(request).ok()?;
    let query = request.queries.first()?;
    state.asked.lock().unwrap().push(Asked {
        name: query.name().to_ascii(),
        record_type: query.query_type(),
        recursion_desired: request.metadata.recursion_desired,
        over_tcp,
    });
    Some(answer(&request, &state.records.lock().unwrap()))
}

fn answer(request: &Message, records: &[Record]) -> Message {
    let query = &request.queries[0];
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.add_queries(request.queries.clone());
    let name = query.name();
    response.add_answers(
        records
            .iter()
            .filter(|r| r.name == *name && r.data.record_type() == query.query_type())
            .cloned(),
    );
    if response.answers.is_empty() {
        // NODATA when the name holds something (or something below it does), else NXDOMAIN.
        if !records.iter().any(|r| name.zone_of(&r.name)) {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        response.add_authorities(
            records
                .iter()
                .filter(|r| matches!(r.data, RData::SOA(_)) && r.name.zone_of(name))
                .cloned(),
        );
    }
    response
}

/// SOA data for a test zone.
pub(super) fn soa(zone: &str) -> RData {
    let name = |n: &str| -> Name { n.parse().unwrap() };
    RData::SOA(SOA::new(
        name(&format!("ns1.{zone}")),
        name(&format!("hostmaster.{zone}")),
        1,
        3600,
        600,
        86400,
        60,
    ))
}

/// NS data pointing at `host`.
pub(super) fn ns(host: &str) -> RData {
    RData::NS(NS(host.parse().unwrap()))
}

/// An A record's data.
pub(super) fn a(ip: Ipv4Addr) -> RData {
    RData::A(A(ip))
}

/// A one-string TXT record's data.
pub(super) fn txt(value: &str) -> RData {
    RData::TXT(TXT::new(vec![value.to_owned()]))
}
