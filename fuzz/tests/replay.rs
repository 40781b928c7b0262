//! Replays the corpus and every input that once made a target panic (`fuzz/regressions/`),
//! and runs each target for a moment, so a parser change that brings a crash back fails the
//! normal test run. The long runs are `scripts/fuzz`'s job.

use std::path::Path;
use std::time::Duration;

use rota_fuzz::{Dirs, Target, read_dir_files};

fn fuzz_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn corpus_and_regressions_replay_without_panicking() {
    for target in Target::ALL {
        let corpus = read_dir_files(&fuzz_dir().join("corpus").join(target.name())).unwrap();
        assert!(
            !corpus.is_empty(),
            "{}: the seed corpus is missing",
            target.name()
        );
        let regressions = fuzz_dir().join("regressions").join(target.name());
        for input in corpus.iter().chain(&read_dir_files(&regressions).unwrap()) {
            let _ = target.run(input);
        }
    }
}

#[test]
fn a_short_run_finds_no_crash() {
    for target in Target::ALL {
        let scratch = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            corpus: scratch.path().join("corpus"),
            crashes: scratch.path().join("crashes"),
        };
        std::fs::create_dir_all(&dirs.corpus).unwrap();
        for (i, seed) in read_dir_files(&Dirs::under(fuzz_dir(), target).corpus)
            .unwrap()
            .iter()
            .enumerate()
        {
            std::fs::write(dirs.corpus.join(format!("seed-{i}")), seed).unwrap();
        }
        let report = rota_fuzz::run(target, Duration::from_secs(2), &dirs, 42).unwrap();
        assert!(report.executions > 0, "{}: nothing ran", target.name());
        assert!(
            report.crashes.is_empty(),
            "{}: {:?}",
            target.name(),
            report.crashes
        );
    }
}
