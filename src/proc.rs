//! Process identity. A pid alone is not an identity: pids are reused. grove records a pid
//! together with the process's start time (field 22 of `/proc/PID/stat`, clock ticks since
//! boot) and calls a process alive only when both match and it is not a zombie.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: u32,
    pub start: u64,
}

impl ProcId {
    /// This grove process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: stat(pid).map_or(0, |s| s.start),
        }
    }

    pub fn of(pid: u32) -> Option<Self> {
        stat(pid).map(|s| Self {
            pid,
            start: s.start,
        })
    }

    /// Whether this very process (same pid, same start time) is still running.
    pub fn alive(&self) -> bool {
        match stat(self.pid) {
            Some(s) => s.state != 'Z' && s.state != 'X' && s.start == self.start,
            None => false,
        }
    }
}

struct Stat {
    state: char,
    start: u64,
}

/// Reads `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), the start time is field 22: 18 fields further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_tricky_command_name() {
        let line =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start, 987_654);
    }

    #[test]
    fn current_process_is_alive_and_a_changed_start_is_not() {
        let me = ProcId::current();
        assert!(me.alive());
        assert!(
            !ProcId {
                start: me.start + 1,
                ..me
            }
            .alive()
        );
    }
}
