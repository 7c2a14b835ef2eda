//! The only place that writes to the terminal. stdout carries data (tables, JSON, paths) and
//! stderr carries progress and messages, so `grove ps --json | jq` never sees a progress line.
//! A closed stdout (`grove ps | head -1`) ends the program quietly with exit 0.
//!
//! Colour: decided once per stream ([`set_color`], then anstream's rules: `NO_COLOR`,
//! `CLICOLOR_FORCE`, `CLICOLOR=0`, a terminal whose `TERM` is not `dumb`). Callers mark up text
//! with [`paint`] / [`paint_err`], which give plain text when that stream gets no colour; data
//! (paths, JSON, log lines) is written as it is, never stripped. Colour only ever repeats what
//! the words say: every status, error and hint reads the same without it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

use anstream::ColorChoice;
use anstyle::{AnsiColor, Style};

/// `--color`: `auto` follows the environment and the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    #[default]
    Auto,
    Always,
    Never,
}

/// Applies `--color` before anything is printed, clap's help and errors included (clap asks
/// anstream's global choice too).
pub fn set_color(when: ColorWhen) {
    let choice = match when {
        ColorWhen::Auto => return,
        ColorWhen::Always => ColorChoice::Always,
        ColorWhen::Never => ColorChoice::Never,
    };
    choice.write_global();
}

fn stdout_color() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| anstream::AutoStream::choice(&io::stdout()) != ColorChoice::Never)
}

fn stderr_color() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| anstream::AutoStream::choice(&io::stderr()) != ColorChoice::Never)
}

/// What a piece of text means, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Running, ready, passed, merged cleanly.
    Good,
    /// Starting, waiting for the human, a warning.
    Pending,
    /// Failed, broken, a conflict, an error.
    Bad,
    /// Stopped, shared, exited: nothing to look at.
    Dim,
    /// A URL or a path to open.
    Link,
    /// A heading or a name to spot.
    Strong,
    /// `hint:`.
    Hint,
}

fn style(tone: Tone) -> Style {
    let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match tone {
        Tone::Good => fg(AnsiColor::Green),
        Tone::Pending => fg(AnsiColor::Yellow),
        Tone::Bad => fg(AnsiColor::Red).bold(),
        Tone::Dim => Style::new().dimmed(),
        Tone::Link => fg(AnsiColor::Cyan).underline(),
        Tone::Strong => Style::new().bold(),
        Tone::Hint => fg(AnsiColor::Cyan).bold(),
    }
}

fn painted(on: bool, tone: Tone, text: impl Display) -> String {
    if on {
        let s = style(tone);
        format!("{s}{text}{s:#}")
    } else {
        text.to_string()
    }
}

/// `text` styled for a line on stdout.
pub fn paint(tone: Tone, text: impl Display) -> String {
    painted(stdout_color(), tone, text)
}

/// `text` styled for a line on stderr.
pub fn paint_err(tone: Tone, text: impl Display) -> String {
    painted(stderr_color(), tone, text)
}

/// The tone of a status word of `ps` and `review`: env status, server state, agent state.
pub fn status_tone(word: &str) -> Option<Tone> {
    Some(match word {
        "running" | "ready" | "done" | "passed" | "approved" => Tone::Good,
        "starting" | "partial" | "waiting" | "creating" | "destroying" | "backoff"
        | "unhealthy" | "working" => Tone::Pending,
        "failed" | "broken" | "FAILED" => Tone::Bad,
        "stopped" | "exited" | "shared" | "-" => Tone::Dim,
        _ => return None,
    })
}

/// `word` in its status colour on stdout.
pub fn paint_status(word: &str) -> String {
    match status_tone(word) {
        Some(tone) => paint(tone, word),
        None => word.to_string(),
    }
}

/// A line of data on stdout.
pub fn out(line: impl AsRef<str>) {
    let mut stdout = io::stdout().lock();
    let res = writeln!(stdout, "{}", line.as_ref()).and_then(|()| stdout.flush());
    if let Err(e) = res
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        // A closed pipe means the reader has what it wanted: not an error (ripgrep does this).
        std::process::exit(0);
    }
}

/// A progress or status line on stderr.
pub fn info(line: impl AsRef<str>) {
    let _ = writeln!(io::stderr().lock(), "{}", line.as_ref());
}

pub fn warn(line: impl AsRef<str>) {
    info(format!(
        "{} {}",
        paint_err(Tone::Pending, "warning:"),
        line.as_ref()
    ));
}

pub fn hint(line: impl AsRef<str>) {
    info(format!(
        "{} {}",
        paint_err(Tone::Hint, "hint:"),
        line.as_ref()
    ));
}

/// Both stdin and stderr are terminals: a person is there to answer a prompt.
pub fn interactive() -> bool {
    io::stdin().is_terminal() && io::stderr().is_terminal()
}

/// Asks a yes/no question on stderr; anything but `y`/`yes` is no.
pub fn confirm(question: &str) -> bool {
    let _ = write!(io::stderr().lock(), "{question} [y/N] ");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    if io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Prints an error the way every grove error looks:
/// `error: …`, `caused by: …` lines, then `hint: …`.
pub fn error(msg: &str, causes: &[String], hint: Option<&str>) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{} {msg}", paint_err(Tone::Bad, "error:"));
    for cause in causes {
        let _ = writeln!(err, "{} {cause}", paint_err(Tone::Dim, "caused by:"));
    }
    if let Some(hint) = hint {
        let _ = writeln!(err, "\n{} {hint}", paint_err(Tone::Hint, "hint:"));
    }
}

/// How wide `s` shows on a terminal: its colour codes take no room.
fn visible_width(s: &str) -> usize {
    anstream::adapter::strip_str(s)
        .map(|part| part.chars().count())
        .sum()
}

/// `head`, then each of `lines` indented on a line of its own: a message that lists what it
/// is about (the work a destroy would lose, why a land cannot go).
pub fn listed(head: impl Into<String>, lines: &[String]) -> String {
    let mut msg = head.into();
    for l in lines {
        msg.push_str(&format!("\n  {l}"));
    }
    msg
}

/// Renders rows as left-aligned columns separated by two spaces; the last column is not padded.
/// Cells may be painted: widths count what shows.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(visible_width(cell));
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - visible_width(cell) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}
