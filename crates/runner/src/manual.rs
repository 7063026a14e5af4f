//! What `runner completions SHELL` and `runner man` print: a shell completion script
//! (clap_complete) and one roff man page that documents every command (clap_mangen), both
//! generated from the clap definition in [`crate::cli`], so they never drift from it.
//! <https://docs.rs/clap_complete>, <https://docs.rs/clap_mangen>

use crate::app::{AppError, exit};
use crate::cli::{Cli, Shell};
use crate::output::Stdout;
use clap_mangen::Man;

/// Prints the completion script for `shell` on stdout.
pub fn print_completions(shell: Shell) -> Result<u8, AppError> {
    print(&completions(shell))
}

/// Prints the man page on stdout.
pub fn print_man_page() -> Result<u8, AppError> {
    let page = man_page().map_err(|source| AppError::Io {
        what: "cannot render the man page".to_owned(),
        source,
    })?;
    print(&page)
}

/// A closed stdout (`runner man | head`) ends in [`AppError::StdoutClosed`], which exits 0.
fn print(text: &str) -> Result<u8, AppError> {
    let mut stdout = Stdout::lock();
    stdout.line(text.trim_end())?;
    stdout.finish()?;
    Ok(exit::OK)
}

fn completions(shell: Shell) -> String {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "runner", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// `runner(1)`: the top-level sections, then one section per command (`RUNNER SYNC`,
/// `RUNNER STATE RESET`, …) with its synopsis, description and options as subsections.
/// One page rather than a page per command: `man runner` shows everything, and the
/// `runner-sync(1)` references clap_mangen would write would name pages nobody installs.
fn man_page() -> Result<String, std::io::Error> {
    let mut root = Cli::command();
    root.build();
    let man = Man::new(root.clone()).manual("User Commands");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut commands = Vec::new();
    collect(&root, &mut commands);
    for command in commands {
        page.extend_from_slice(command_section(&command)?.as_bytes());
    }
    // The after-help is the exit codes (cli::EXIT_CODES): named as man pages name them.
    let mut extra = Vec::new();
    man.render_extra_section(&mut extra)?;
    let extra = String::from_utf8_lossy(&extra).replacen(".SH EXTRA", ".SH \"EXIT STATUS\"", 1);
    page.extend_from_slice(extra.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(title_first(&String::from_utf8_lossy(&page)))
}

/// Each clap_mangen render starts with the roff crate's preamble (two lines defining the
/// apostrophe string `Aq`): keep one copy, after `.TH`, so that the page starts with its
/// title as man pages do.
fn title_first(page: &str) -> String {
    let is_preamble =
        |line: &str| line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
    let preamble: Vec<&str> = page
        .lines()
        .filter(|line| is_preamble(line))
        .take(2)
        .collect();
    let mut out = String::new();
    for line in page.lines().filter(|line| !is_preamble(line)) {
        out.push_str(line);
        out.push('\n');
        if line.starts_with(".TH ") {
            for line in &preamble {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Every command below `command`, depth first, in the order of `--help`, without `help`.
fn collect(command: &clap::Command, into: &mut Vec<clap::Command>) {
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" || sub.is_hide_set() {
            continue;
        }
        into.push(sub.clone());
        collect(sub, into);
    }
}

/// A `.SH` section for one command; its parts are subsections (`.SS`).
fn command_section(command: &clap::Command) -> Result<String, std::io::Error> {
    let name = command
        .get_bin_name()
        .unwrap_or_else(|| command.get_name())
        .to_uppercase();
    let man = Man::new(command.clone());
    let mut parts = Vec::new();
    man.render_synopsis_section(&mut parts)?;
    man.render_description_section(&mut parts)?;
    man.render_options_section(&mut parts)?;
    let parts = String::from_utf8_lossy(&parts);
    let mut section = format!(".SH \"{name}\"\n");
    for line in parts.lines() {
        match line.strip_prefix(".SH ") {
            Some(heading) => section.push_str(&format!(".SS {heading}\n")),
            None => {
                section.push_str(line);
                section.push('\n');
            }
        }
    }
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_has_a_section_per_command() {
        let page = man_page().unwrap_or_else(|e| panic!("{e}"));
        assert!(page.starts_with(".TH runner 1"), "{page}");
        for heading in [
            ".SH \"RUNNER SYNC\"",
            ".SH \"RUNNER STATE RESET\"",
            ".SH \"RUNNER DEAD-LETTER REPLAY\"",
            ".SH \"RUNNER MAN\"",
        ] {
            assert!(page.contains(heading), "{heading} not in:\n{page}");
        }
        assert!(!page.contains("runner-sync(1)"), "{page}");
        assert!(!page.contains("RUNNER HELP"), "{page}");
    }

    #[test]
    fn completions_name_the_binary() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completions(shell);
            assert!(script.contains("runner"), "{shell:?}: {script}");
            assert!(script.contains("dead-letter"), "{shell:?}: {script}");
        }
    }
}
