//! Hostile config text: too large, too deep, or a few lines of aliases that expand to
//! billions of nodes. Each must be refused with a located error, quickly and without the
//! memory the expanded document would take. The time and memory bounds are generous on
//! purpose (machines are noisy); what they catch is exponential work, a stack overflow
//! (which aborts the test process) or a parse of the whole thing.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rota_api::config::{ConfigErrors, MAX_CONFIG_BYTES, load_file, load_str_with_env};

const TIME_BOUND: Duration = Duration::from_secs(2);
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// The process's peak resident set so far, in KiB (Linux).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Loads `text`, returning its errors, how long it took and how much the peak RSS grew.
fn refuse(text: &str) -> (ConfigErrors, Duration, u64) {
    let before = peak_rss_kib();
    let start = Instant::now();
    let result = load_str_with_env(Path::new("/etc/rota/rota.yaml"), text.to_owned(), &|_| None);
    let took = start.elapsed();
    let grew = peak_rss_kib().saturating_sub(before);
    (
        result.expect_err("a hostile config must be refused"),
        took,
        grew,
    )
}

/// A billion laughs: ten levels of ten aliases each, 10^9 scalars once expanded.
fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 lol\n");
    for level in 1..=9 {
        let prev = format!("*a{}", level - 1);
        let items = vec![prev; 10].join(", ");
        let _ = writeln!(text, "a{level}: &a{level} [{items}]");
    }
    text.push_str("certs: [*a9]\n");
    text
}

#[test]
fn hostile_documents_are_refused_fast_in_bounded_memory() {
    let deep_flow = format!("certs: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let deep_block = format!("certs:\n{}x\n", "- ".repeat(10_000));
    let deep_map = format!("certs: {}\n", "{a: ".repeat(10_000) + &"}".repeat(10_000));
    for (why, text, says, line) in [
        (
            "aliases of aliases",
            billion_laughs(),
            "counting each alias",
            7,
        ),
        ("10,000 nested flow lists", deep_flow, "levels deep", 1),
        ("10,000 nested block lists", deep_block, "levels deep", 2),
        ("10,000 nested flow mappings", deep_map, "levels deep", 1),
        (
            "over 1 MiB",
            "#".repeat(MAX_CONFIG_BYTES + 1),
            "larger than 1 MiB",
            1,
        ),
    ] {
        let (errors, took, grew) = refuse(&text);
        let issue = &errors.0[0];
        eprintln!("{why}: refused in {took:?}, peak RSS +{grew} KiB: {issue}");
        assert!(issue.message.contains(says), "{why}: {issue}");
        assert_eq!(
            issue.line, line,
            "{why}: located at the line that crosses the bound"
        );
        assert!(took < TIME_BOUND, "{why}: took {took:?}");
        assert!(grew < RSS_BOUND_KIB, "{why}: peak RSS grew {grew} KiB");
    }
}

#[test]
fn a_flat_list_over_the_node_bound_is_refused_without_building_it() {
    // 300,000 items in 900 KB: under the size limit, over the node limit. Scanning it is
    // linear work (seconds in a debug build on a busy machine), so only memory is bounded
    // here: the refusal comes from the index walk, before serde_yaml builds a tree.
    let wide = format!("certs: [{}]\n", "x, ".repeat(300_000));
    let (errors, took, grew) = refuse(&wide);
    let issue = &errors.0[0];
    eprintln!("300,000 items: refused in {took:?}, peak RSS +{grew} KiB: {issue}");
    assert!(issue.message.contains("more than 200000 values"), "{issue}");
    assert!(grew < RSS_BOUND_KIB / 4, "peak RSS grew {grew} KiB");
}

#[test]
fn an_oversized_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rota.yaml");
    std::fs::write(&path, vec![b'#'; 3 * MAX_CONFIG_BYTES]).unwrap();
    let issue = &load_file(&path).unwrap_err().0[0];
    assert!(issue.message.contains("larger than 1 MiB"), "{issue}");
    assert_eq!((issue.line, issue.column), (1, 1));
}

#[test]
fn aliases_within_the_bounds_still_load() {
    let text = "certs:\n  - &web { id: web, domains: [a.test], key_path: k, ca: { kind: local }, \
                install: { kind: filesystem, directory: d } }\n  - { <<: *web, id: api }\n";
    let loaded = load_str_with_env(Path::new("/etc/rota/rota.yaml"), text.into(), &|_| None);
    assert_eq!(loaded.map(|l| l.config.certs.len()).ok(), Some(2));
}
