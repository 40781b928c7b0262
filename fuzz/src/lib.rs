//! Fuzzing for rota's parsers of untrusted input, on stable Rust: a nightly toolchain (and
//! so `cargo fuzz`/libFuzzer) cannot be installed where rota is built, so this is a
//! coverage-free mutational fuzzer with a dictionary and a schema-aware YAML generator.
//! `scripts/fuzz` runs it in release mode; `tests/replay.rs` replays the corpus and every
//! input that once crashed, as part of the normal test run.

pub mod mutate;
pub mod runner;
pub mod targets;

pub use runner::{Dirs, Report, read_dir_files, run};
pub use targets::Target;
