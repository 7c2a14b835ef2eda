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
    pgrp: i64,
    session: i64,
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
    // Field 4 (ppid), 5 (pgrp), 6 (session).
    let pgrp = fields.nth(1)?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    // The start time is field 22: 15 fields further on.
    let start = fields.nth(15)?.parse().ok()?;
    Some(Stat {
        state,
        start,
        pgrp,
        session,
    })
}

/// Live processes of session `leader.pid`, whose leader is `leader`. Nothing when the session
/// id now belongs to another process: Linux does not reuse a pid while it names a live
/// session, so if the pid is alive with another start time, our session is gone.
pub fn session_members(leader: ProcId) -> Vec<ProcId> {
    members(leader, |s| s.session)
}

/// Live processes of process group `leader.pid`, whose leader is `leader` (same rule as
/// [`session_members`]): what a setup step left running in the background.
pub fn group_members(leader: ProcId) -> Vec<ProcId> {
    members(leader, |s| s.pgrp)
}

fn members(leader: ProcId, id_of: impl Fn(&Stat) -> i64) -> Vec<ProcId> {
    let id = i64::from(leader.pid);
    if let Some(now) = stat(leader.pid)
        && now.start != leader.start
        && id_of(&now) == id
    {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let s = stat(pid)?;
            (id_of(&s) == id && s.state != 'Z' && s.start >= leader.start).then_some(ProcId {
                pid,
                start: s.start,
            })
        })
        .collect()
}

/// The short command name of a process (`/proc/PID/comm`).
pub fn name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The process listening on TCP `port` (IPv4 or IPv6), from `/proc/net/tcp*` and the socket
/// inodes in `/proc/*/fd`. Slow-ish (scans every process): only for error reports.
pub fn port_holder(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && targets.iter().any(|t| link.as_os_str() == t.as_str())
            {
                return Some((pid, name(pid).unwrap_or_default()));
            }
        }
    }
    None
}

/// Inodes of sockets listening (state `0A`) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let want = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            (local_port == want && *f.get(3)? == "0A")
                .then(|| f.get(9).map(|s| (*s).to_string()))?
        })
        .collect()
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
        assert_eq!(s.session, 1234);
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.start, 987_654);
    }

    #[test]
    fn finds_listening_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000\n\
   1: 0100007F:0BB9 0100007F:D1D2 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000\n";
        assert_eq!(listening_inodes(table, 3001), vec!["4242"]);
        assert!(listening_inodes(table, 3002).is_empty());
    }

    #[test]
    fn finds_who_listens_on_a_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (pid, _) = port_holder(port).unwrap();
        assert_eq!(pid, std::process::id());
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
