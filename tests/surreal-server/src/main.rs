//! SurrealDB's own server, as `surreal start` runs it, for the federation tests: the tests
//! start it on loopback (`start --bind 127.0.0.1:PORT --user root --pass root memory`), stop
//! and restart it, and point several rotad processes at it.

fn main() -> std::process::ExitCode {
    surrealdb_server::init(surrealdb_server::core::CommunityComposer())
}
