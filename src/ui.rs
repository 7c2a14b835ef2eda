//! The only place that writes to the terminal. stdout carries data (tables, JSON, paths) and
//! stderr carries progress and messages, so `grove ps --json | jq` never sees a progress line.
//! A closed stdout (`grove ps | head -1`) ends the program quietly with exit 0.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, IsTerminal, Write};

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
    info(format!("warning: {}", line.as_ref()));
}

pub fn hint(line: impl AsRef<str>) {
    info(format!("hint: {}", line.as_ref()));
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
    let _ = writeln!(err, "error: {msg}");
    for cause in causes {
        let _ = writeln!(err, "caused by: {cause}");
    }
    if let Some(hint) = hint {
        let _ = writeln!(err, "\nhint: {hint}");
    }
}

/// Renders rows as left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
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
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}
