//! `rota-fuzz TARGET SECONDS [SEED]`: fuzzes one target and prints what it did. Run it
//! through `scripts/fuzz`, which builds it in release mode with overflow checks on.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use rota_fuzz::{Dirs, Target};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
    let usage = format!("usage: rota-fuzz {{{}}} SECONDS [SEED]", names.join("|"));
    let target = args.first().and_then(|n| Target::from_name(n));
    let seconds = args.get(1).and_then(|s| s.parse::<u64>().ok());
    let (Some(target), Some(seconds)) = (target, seconds) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let seed = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    // A crash is reported once, by the loop, with the file it was saved to.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let dirs = Dirs::under(Path::new(env!("CARGO_MANIFEST_DIR")), target);
    match rota_fuzz::run(target, Duration::from_secs(seconds), &dirs, seed) {
        Ok(report) => {
            let secs = report.elapsed.as_secs_f64();
            println!(
                "{}: {} executions in {secs:.0} s ({:.0}/s), seed {seed}, {} distinct outcomes, slowest {:?}, {} crashes",
                target.name(),
                report.executions,
                report.executions as f64 / secs.max(f64::EPSILON),
                report.outcomes,
                report.slowest,
                report.crashes.len(),
            );
            for crash in &report.crashes {
                println!("  crash saved to {}", crash.display());
            }
            if report.crashes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("rota-fuzz: cannot use {}: {e}", dirs.corpus.display());
            ExitCode::FAILURE
        }
    }
}
