//! The fuzzing loop: mutate, run, keep what is new, save what panics. The input being run is
//! written to `in-flight` first, so that an abort no panic hook sees (a stack overflow, an
//! out-of-memory kill) still leaves the input behind.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::mutate::next_input;
use crate::targets::Target;

/// Inputs slower than this are saved as `slow-*`: the loader must refuse hostile input fast.
const SLOW: Duration = Duration::from_secs(1);

/// At most this many new corpus files per run, so the committed corpus stays small.
const MAX_NEW_CORPUS_FILES: usize = 64;

/// Where one target keeps its files.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Seeds and inputs that produced a new outcome.
    pub corpus: PathBuf,
    /// Inputs that panicked, aborted or were slow.
    pub crashes: PathBuf,
}

impl Dirs {
    /// `fuzz/corpus/<target>` and `fuzz/crashes/<target>` under `root`.
    #[must_use]
    pub fn under(root: &Path, target: Target) -> Self {
        Self {
            corpus: root.join("corpus").join(target.name()),
            crashes: root.join("crashes").join(target.name()),
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Inputs executed.
    pub executions: u64,
    /// Wall time spent.
    pub elapsed: Duration,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// Inputs that panicked, saved under the crash directory.
    pub crashes: Vec<PathBuf>,
    /// The slowest single execution.
    pub slowest: Duration,
}

/// Fuzzes `target` for `duration`, starting from the corpus in `dirs`.
pub fn run(target: Target, duration: Duration, dirs: &Dirs, seed: u64) -> io::Result<Report> {
    fs::create_dir_all(&dirs.corpus)?;
    fs::create_dir_all(&dirs.crashes)?;
    let mut corpus = read_dir_files(&dirs.corpus)?;
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let in_flight_path = dirs.crashes.join("in-flight");
    let in_flight = File::create(&in_flight_path)?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut outcomes: HashSet<String> = corpus.iter().flat_map(|input| target.run(input)).collect();
    let mut report = Report::default();
    let mut new_files = 0;
    let start = Instant::now();
    while start.elapsed() < duration {
        let input = next_input(&mut rng, target, &corpus);
        in_flight.set_len(0)?;
        in_flight.write_all_at(&input, 0)?;
        let began = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| target.run(&input)));
        let took = began.elapsed();
        report.executions += 1;
        report.slowest = report.slowest.max(took);
        match outcome {
            Err(_) => report.crashes.push(save(&dirs.crashes, "crash", &input)?),
            Ok(_) if took > SLOW => {
                save(&dirs.crashes, "slow", &input)?;
            }
            Ok(labels) if labels.iter().any(|l| !outcomes.contains(l)) => {
                outcomes.extend(labels);
                if new_files < MAX_NEW_CORPUS_FILES {
                    save(&dirs.corpus, "found", &input)?;
                    new_files += 1;
                }
                corpus.push(input);
            }
            Ok(_) => {}
        }
    }
    fs::remove_file(in_flight_path)?;
    report.elapsed = start.elapsed();
    report.outcomes = outcomes.len();
    Ok(report)
}

/// Every regular file in `dir`, in name order (missing directory: none).
pub fn read_dir_files(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    paths.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != "in-flight"));
    paths.sort();
    paths.iter().map(fs::read).collect()
}

/// Writes `input` as `<kind>-<hash>` in `dir`; the name is stable, so a rerun that finds the
/// same input does not add a file.
fn save(dir: &Path, kind: &str, input: &[u8]) -> io::Result<PathBuf> {
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let path = dir.join(format!("{kind}-{hash:016x}"));
    fs::write(&path, input)?;
    Ok(path)
}
