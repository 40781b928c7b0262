//! `rota completions <shell>` and `rota man --dir DIR`: shell completion scripts and man pages,
//! both generated from the clap definition of the command line, so they cannot drift from it.

use std::path::Path;

use clap::{Command, ValueEnum};
use clap_complete::Shell;

use crate::exit::CliError;

/// The shells `rota completions` writes a script for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => Self::Bash,
            CompletionShell::Zsh => Self::Zsh,
            CompletionShell::Fish => Self::Fish,
        }
    }
}

/// The completion script of `command` for `shell`.
pub(crate) fn script(shell: CompletionShell, mut command: Command) -> Vec<u8> {
    let mut out = Vec::new();
    let name = command.get_name().to_owned();
    clap_complete::generate(Shell::from(shell), &mut command, name, &mut out);
    out
}

/// Writes one man page per command and subcommand of each of `commands` into `dir`
/// (`rota.1`, `rota-get-certs.1`, `rotad.8`, ...), and returns the file names written.
pub(crate) fn write_man_pages(
    dir: &Path,
    commands: Vec<(Command, &'static str)>,
) -> Result<Vec<String>, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    for (command, section) in commands {
        let command = command.version(env!("CARGO_PKG_VERSION"));
        write_pages(dir, command, section, &mut written)?;
    }
    Ok(written)
}

/// `command`'s page, then its subcommands' pages, named `parent-child.<section>`.
fn write_pages(
    dir: &Path,
    mut command: Command,
    section: &'static str,
    written: &mut Vec<String>,
) -> Result<(), CliError> {
    command.build();
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned();
    let file = format!("{name}.{section}");
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .section(section)
        .render(&mut page)
        .map_err(|e| CliError::failed(format!("cannot render {file}: {e}")))?;
    let path = dir.join(&file);
    std::fs::write(&path, page)
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?;
    written.push(file);
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let sub = sub
            .clone()
            .display_name(format!("{name}-{}", sub.get_name()));
        write_pages(dir, sub, section, written)?;
    }
    Ok(())
}
