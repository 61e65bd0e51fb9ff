//! `ct-cli completions` and `ct-cli man`: generated from the clap definitions in cli.rs, so
//! they never disagree with what the parser accepts.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell};

/// The completion script for `shell` on stdout.
pub fn completions(shell: CompletionShell) -> anyhow::Result<ExitCode> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "ct-cli", &mut script);
    if shell == Shell::Bash {
        script = fix_bash_state_names(&script);
    }
    write_stdout(&script)
}

/// clap_complete (4.6) spells the state of a subcommand of a hyphenated program one way
/// where it computes it (`ct__cli__subcmd__collect`) and another in the `case` arms
/// (`ct__subcmd__cli__subcmd__collect`), so no subcommand's options ever complete
/// (clap-rs/clap#6421). The arms are respelled the way the state is computed; once
/// clap_complete agrees with itself this changes nothing. tests/docs.rs completes a
/// subcommand's options through bash.
fn fix_bash_state_names(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("ct__subcmd__cli__subcmd__", "ct__cli__subcmd__")
        .into_bytes()
}

/// The roff man page of ct-cli, or of one of its commands (`ct-cli-collect(1)`), on stdout.
pub fn man(name: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut top = Cli::command();
    top.build();
    let page = match name {
        None => top,
        Some(name) => {
            // The parser only takes names in cli::COMMAND_NAMES.
            let Some(sub) = top.find_subcommand(name) else {
                bail!("no command {name:?}");
            };
            // Named as man(1) expects: ct-cli-collect, with the version of the whole.
            sub.clone()
                .name(format!("ct-cli-{name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("rendering the man page failed")?;
    write_stdout(&roff)
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("writing to stdout failed"),
    }
}
