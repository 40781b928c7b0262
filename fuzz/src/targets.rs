//! The two parsers under test and what counts as a distinct outcome of each. Without
//! coverage instrumentation (no nightly toolchain here), the kind of error an input provokes
//! is the signal that it reached a new part of the parser, so an input with a new outcome
//! joins the corpus.

use std::path::Path;

use base64::Engine as _;

/// A fuzz target: a parser rota feeds with input an operator or a peer controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `rota_api::config::load_str_with_env`: YAML text → validated config.
    Config,
    /// `rota_reconciler::inspect_pem`: an installed cert (PEM text, or DER bytes) → facts.
    Cert,
}

/// The secret every `${FUZZ_*}` and `env:FUZZ_*` reference resolves to.
const FUZZ_ENV_VALUE: &str = "fuzz-env-value";

/// Where the fuzzed config pretends to live; relative paths resolve under it and find nothing.
const CONFIG_PATH: &str = "/nonexistent/rota-fuzz/rota.yaml";

impl Target {
    /// Every target, in the order `scripts/fuzz` runs them.
    pub const ALL: [Self; 2] = [Self::Config, Self::Cert];

    /// The name used on the command line and for corpus directories.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Cert => "cert",
        }
    }

    /// The target called `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The largest input worth generating: the loader refuses configs over 1 MiB before
    /// parsing, so longer inputs only test that one check, slowly.
    #[must_use]
    pub fn max_len(self) -> usize {
        match self {
            Self::Config => 16 * 1024,
            Self::Cert => 8 * 1024,
        }
    }

    /// Feeds `input` to the parser; a panic escapes to the caller. Returns a label for each
    /// kind of result, with the details that vary per input (numbers, quoted text) removed.
    #[must_use]
    pub fn run(self, input: &[u8]) -> Vec<String> {
        match self {
            Self::Config => run_config(input),
            Self::Cert => run_cert(input),
        }
    }
}

fn run_config(input: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(input).into_owned();
    let env = |name: &str| name.starts_with("FUZZ").then(|| FUZZ_ENV_VALUE.to_owned());
    match rota_api::config::load_str_with_env(Path::new(CONFIG_PATH), text, &env) {
        Ok(_) => vec!["ok".to_owned()],
        Err(errors) => errors.0.iter().map(|i| shape(&i.message)).collect(),
    }
}

/// An even first byte makes the rest PEM text; an odd one makes it the DER of a certificate,
/// wrapped in PEM, so the X.509 parser sees bytes the PEM decoder would never produce.
fn run_cert(input: &[u8]) -> Vec<String> {
    let Some((&mode, body)) = input.split_first() else {
        return vec!["empty".to_owned()];
    };
    let pem = if mode % 2 == 0 {
        String::from_utf8_lossy(body).into_owned()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
    };
    let outcome = match rota_reconciler::inspect_pem(&pem) {
        Ok(_) => "ok".to_owned(),
        Err(message) => shape(&message),
    };
    vec![outcome]
}

/// The template of `message`: its plain lower-case prose before the first quote (backtick or
/// double quote) and after the last one, a few words of each. What lies between quotes, and
/// numbers and field paths, vary per input (and an input may itself hold quotes, so spans
/// cannot be paired reliably); without this every input would look new.
fn shape(message: &str) -> String {
    let quote = ['`', '"'];
    let head = message.split(quote).next().unwrap_or("");
    let tail = message
        .rsplit(quote)
        .next()
        .filter(|_| message.contains(quote))
        .unwrap_or("");
    let prose = |text: &str| {
        let words: Vec<&str> = text
            .split_whitespace()
            .filter(|w| {
                w.chars()
                    .all(|c| c.is_ascii_lowercase() || "-(),".contains(c))
            })
            .take(6)
            .collect();
        words.join(" ")
    };
    format!("{}|{}", prose(head), prose(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_drop_what_varies() {
        for (message, expected, why) in [
            (
                "at line 3 column 5",
                "at line column|",
                "numbers vary with the input",
            ),
            (
                "unknown field `foo`",
                "unknown field|",
                "quoted text is the input",
            ),
            (
                "certs[0].id: invalid type",
                "invalid type|",
                "field paths vary",
            ),
            (
                "a `x` b \"y z\" c",
                "a|c",
                "everything from the first quote to the last goes",
            ),
            (
                "block `a\"b` here",
                "block|here",
                "a quote inside quoted input",
            ),
            (
                "one two three four five six seven",
                "one two three four five six|",
                "a template, not its tail",
            ),
        ] {
            assert_eq!(shape(message), expected, "{why}");
        }
    }

    #[test]
    fn both_targets_tell_success_from_failure() {
        let config = "certs: []\ndaemon: { database_path: /tmp/x.db }\n";
        assert_eq!(Target::Config.run(config.as_bytes()), ["ok"]);
        assert_ne!(Target::Config.run(b"certs: 5\n"), ["ok"]);
        assert_ne!(Target::Cert.run(b"\x01\x30\x03"), ["ok"]);
    }
}
