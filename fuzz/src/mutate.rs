//! New inputs from old ones: byte-level mutations (libFuzzer's usual set), tokens from a
//! per-target dictionary, splices of two corpus entries, and, for the config loader,
//! whole documents generated from the schema's vocabulary so that inputs get past the YAML
//! syntax check and reach validation.

use std::fmt::Write as _;

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::targets::Target;

/// Tokens that mean something to the config loader: YAML syntax, the schema's field names,
/// interpolation, and numbers at the edges of the types they land in.
const CONFIG_TOKENS: &[&str] = &[
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "? ",
    "---\n",
    "...\n",
    "'",
    "\"",
    "#",
    "${FUZZ}",
    "${UNSET}",
    "$$",
    "${",
    "env:FUZZ",
    "env:",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
    "0x10",
    ".inf",
    "daemon",
    "certs",
    "id",
    "domains",
    "key_path",
    "ca",
    "dcv",
    "install",
    "kind",
    "local",
    "acme",
    "webroot",
    "filesystem",
    "directory",
    "validity_days",
    "renew_threshold_days",
    "check_interval_seconds",
    "max_concurrent_renewals",
    "timeout_seconds",
    "interval_seconds",
    "nameservers",
    "lease_seconds",
    "listen_addr",
    "api_token_file",
    "hmac_key_file",
    "external_account_binding",
    "local_ca",
    "alerts",
    "cluster",
    "smtp_port",
    "*.example.com",
    "127.0.0.1:0",
    "[::1]:53",
];

/// Fragments of DER and PEM: tags and lengths that make the X.509 parser branch.
const CERT_TOKENS: &[&[u8]] = &[
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"\x30\x82",
    b"\x30\x81",
    b"\x30\x80",
    b"\x02\x01\x01",
    b"\x06\x03\x55\x1d\x11",
    b"\x17\x0d",
    b"\x18\x0f",
    b"\xa0\x03",
    b"\x05\x00",
    b"\x04\x00",
    b"\x03\x01\x00",
    b"\x81\xff\xff\xff\xff",
    b"MII",
    b"====",
    b"\n",
];

/// A random token from the dictionary of `target`.
fn token(rng: &mut impl Rng, target: Target) -> &'static [u8] {
    match target {
        Target::Config => CONFIG_TOKENS.choose(rng).map_or(&[], |t| t.as_bytes()),
        Target::Cert => CERT_TOKENS.choose(rng).copied().unwrap_or(&[]),
    }
}

/// A new input for `target`, made from `corpus` (never empty) or, sometimes, from scratch.
pub fn next_input(rng: &mut impl Rng, target: Target, corpus: &[Vec<u8>]) -> Vec<u8> {
    if target == Target::Config && rng.random_bool(0.2) {
        return generate_config(rng);
    }
    let mut input = corpus.choose(rng).cloned().unwrap_or_default();
    for _ in 0..rng.random_range(1..=4) {
        mutate(rng, target, corpus, &mut input);
    }
    input.truncate(target.max_len());
    input
}

/// One mutation of `input` in place.
fn mutate(rng: &mut impl Rng, target: Target, corpus: &[Vec<u8>], input: &mut Vec<u8>) {
    let len = input.len();
    let at = if len == 0 {
        0
    } else {
        rng.random_range(0..=len)
    };
    match rng.random_range(0..8) {
        0 if len > 0 => input[at.min(len - 1)] ^= 1 << rng.random_range(0..8),
        1 if len > 0 => input[at.min(len - 1)] = rng.random(),
        2 => {
            let token = token(rng, target);
            input.splice(at..at, token.iter().copied());
        }
        3 if len > 0 => {
            let end = rng.random_range(at..=len.min(at + 64));
            input.drain(at..end);
        }
        4 if len > 0 => {
            // Repeat a span: deep nesting and long lists come from here.
            let end = rng.random_range(at..=len.min(at + 32));
            let span = input[at..end].to_vec();
            for _ in 0..rng.random_range(1..=16) {
                input.splice(at..at, span.iter().copied());
            }
        }
        5 => {
            if let Some(other) = corpus.choose(rng).filter(|o| !o.is_empty()) {
                let from = rng.random_range(0..other.len());
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
        }
        6 => swap_lines(rng, input),
        _ => {
            let n: u8 = rng.random_range(1..=8);
            input.splice(at..at, (0..n).map(|_| rng.random::<u8>()));
        }
    }
}

/// Moves one line to another place: YAML's structure is its lines.
fn swap_lines(rng: &mut impl Rng, input: &mut Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = input.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.len() < 2 {
        return;
    }
    let from = rng.random_range(0..lines.len());
    let line = lines.remove(from);
    let to = rng.random_range(0..=lines.len());
    lines.insert(to, line);
    *input = lines.join(&b'\n');
}

/// A syntactically valid YAML document in the schema's vocabulary, with random shapes and
/// values: most fields are wrong in some way, which is the point.
fn generate_config(rng: &mut impl Rng) -> Vec<u8> {
    let mut out = String::new();
    let blocks = [
        "daemon", "local_ca", "acme", "cluster", "audit", "alerts", "certs",
    ];
    for block in blocks {
        if rng.random_bool(0.6) {
            out.push_str(block);
            out.push(':');
            value(rng, &mut out, 1, 3);
        }
    }
    out.into_bytes()
}

/// Appends a value indented `depth` levels, nesting at most `budget` more.
fn value(rng: &mut impl Rng, out: &mut String, depth: usize, budget: usize) {
    let indent = "  ".repeat(depth);
    match rng.random_range(0..6) {
        0 | 1 if budget > 0 => {
            for _ in 0..rng.random_range(1..=4) {
                let key = word(rng);
                let _ = write!(out, "\n{indent}{key}:");
                value(rng, out, depth + 1, budget - 1);
            }
        }
        2 if budget > 0 => {
            for _ in 0..rng.random_range(1..=3) {
                let _ = write!(out, "\n{indent}- ");
                let mut item = String::new();
                value(rng, &mut item, depth + 1, budget - 1);
                out.push_str(item.trim_start_matches('\n').trim_start());
            }
        }
        3 => {
            let _ = write!(out, " {{ kind: {} }}", word(rng));
        }
        _ => {
            out.push(' ');
            out.push_str(word(rng));
        }
    }
    out.push('\n');
}

/// A token usable as a plain YAML scalar or key.
fn word(rng: &mut impl Rng) -> &'static str {
    let plain = |t: &&&str| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:*${}-".contains(c))
    };
    (0..64)
        .find_map(|_| CONFIG_TOKENS.choose(rng).filter(plain))
        .copied()
        .unwrap_or("x")
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn inputs_stay_within_the_target_limit() {
        let mut rng = SmallRng::seed_from_u64(7);
        let corpus = vec![vec![b'a'; Target::Cert.max_len()]];
        for _ in 0..500 {
            assert!(next_input(&mut rng, Target::Cert, &corpus).len() <= Target::Cert.max_len());
        }
    }

    #[test]
    fn generated_configs_are_yaml_that_reaches_the_schema() {
        let mut rng = SmallRng::seed_from_u64(1);
        let reached = (0..200)
            .map(|_| String::from_utf8(generate_config(&mut rng)).unwrap_or_default())
            .filter(|text| {
                !Target::Config
                    .run(text.as_bytes())
                    .iter()
                    .any(|l| l.contains("YAML syntax"))
            })
            .count();
        assert!(
            reached > 100,
            "only {reached} of 200 generated documents parsed as YAML"
        );
    }
}
