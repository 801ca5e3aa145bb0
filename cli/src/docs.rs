//! `completions` and `manpage`: made from the clap definitions in [`crate::args`], so
//! they cannot drift from the commands.

use clap::CommandFactory;

use crate::args::{Cli, Shell};
use crate::error::{CliError, Result};

pub fn completions(shell: Shell) -> Result<()> {
    use clap_complete::Shell as S;
    let shell = match shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Elvish => S::Elvish,
        Shell::Powershell => S::PowerShell,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "fastchat", &mut script);
    write(&script)
}

pub fn manpage() -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| CliError::local("writing the manual page", e))?;
    write(&page)
}

fn write(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::local("writing", e)),
    }
}
