//! Process identity. A pid alone is not an identity: pids are reused. grove records a pid
//! together with the process's start time (field 22 of `/proc/PID/stat`, clock ticks since
//! boot) and calls a process alive only when both match and it is not a zombie.
//!
//! And a process grove started is known by its *tag*: every one of them carries
//! `GROVE_TOKEN=<env token>:<role>…` in its environment, and so does everything it starts, even
//! a daemon that double-forked and left its session. A sweep reads `/proc/*/environ`; it never
//! goes by process names.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The variable that tags a process grove started (and all its descendants).
pub const TOKEN_VAR: &str = "GROVE_TOKEN";

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

pub(crate) struct Stat {
    pub(crate) state: char,
    start: u64,
    ppid: u32,
    pgrp: i64,
    session: i64,
}

/// Reads `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 4 (ppid), 5 (pgrp), 6 (session).
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    // The start time is field 22: 15 fields further on.
    let start = fields.nth(15)?.parse().ok()?;
    Some(Stat {
        state,
        start,
        ppid,
        pgrp,
        session,
    })
}

/// A new env token: 96 random bits in hex.
pub fn new_token() -> String {
    use std::io::Read;
    let mut buf = [0u8; 12];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if random.is_err() {
        // No /dev/urandom: unique enough from the clock and the pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let h = crate::paths::fnv1a(format!("{t}-{}", std::process::id()).as_bytes());
        buf[..8].copy_from_slice(&h.to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a process grove started is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A `setup` step of a create.
    Setup,
    /// An `isolate` command (psql, a recipe).
    Isolate,
    /// A supervised server (its guard, its shell, and all it starts).
    Server,
    /// An `exec` readiness probe.
    Probe,
    /// The env's coding agent.
    Agent,
    /// `grove exec`, and `grove check`.
    Exec,
    /// The env's supervisor: found even when the store that registered it is gone.
    Supervisor,
    /// A workspace's pool filler (its token is the workspace's, not an env's).
    Pool,
    /// The env's review gate (`grove gate`): its checks and its reviewer.
    Gate,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Setup => "setup",
            Role::Isolate => "isolate",
            Role::Server => "server",
            Role::Probe => "probe",
            Role::Agent => "agent",
            Role::Exec => "exec",
            Role::Supervisor => "supervisor",
            Role::Pool => "pool",
            Role::Gate => "gate",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Role::Setup,
            Role::Isolate,
            Role::Server,
            Role::Probe,
            Role::Agent,
            Role::Exec,
            Role::Supervisor,
            Role::Pool,
            Role::Gate,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// The value of [`TOKEN_VAR`]: `<home>.<env token>:<role>[:<layer>][@<pid>.<start>]`. `home`
/// names the grove home (the store) the env belongs to, so that `doctor` never judges the
/// processes of another one (another user's, a test's) as strays of its own; the owner is the
/// grove process that started it, when it matters (a `grove exec` still running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub home: String,
    pub env: String,
    pub role: Role,
    pub layer: Option<String>,
    pub owner: Option<ProcId>,
}

/// This grove home's id in tags: a hash of its path.
pub fn home_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let home = crate::paths::grove_home().unwrap_or_default();
        let home = std::fs::canonicalize(&home).unwrap_or(home);
        format!(
            "{:08x}",
            crate::paths::fnv1a(home.as_os_str().as_encoded_bytes()) & 0xffff_ffff
        )
    })
    .clone()
}

impl Tag {
    pub fn new(env: &str, role: Role) -> Self {
        Self {
            home: home_id(),
            env: env.to_string(),
            role,
            layer: None,
            owner: None,
        }
    }

    #[must_use]
    pub fn layer(mut self, layer: &str) -> Self {
        self.layer = Some(layer.to_string());
        self
    }

    #[must_use]
    pub fn owned_by(mut self, owner: ProcId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// What the tagged process is, for messages: "a server of `front`".
    pub fn describe(&self) -> String {
        let role = match self.role {
            Role::Setup => "a setup step",
            Role::Isolate => "an isolate command",
            Role::Server => "a server",
            Role::Probe => "a readiness probe",
            Role::Agent => "its agent",
            Role::Exec => "`grove exec`",
            Role::Supervisor => "its supervisor",
            Role::Pool => "the pool filler",
            Role::Gate => "its review gate",
        };
        match &self.layer {
            Some(l) => format!("{role} of `{l}`"),
            None => role.to_string(),
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("{}.{}:{}", self.home, self.env, self.role.as_str());
        if let Some(l) = &self.layer {
            s.push(':');
            s.push_str(l);
        }
        if let Some(o) = self.owner {
            s.push_str(&format!("@{}.{}", o.pid, o.start));
        }
        s
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (body, owner) = match s.split_once('@') {
            Some((b, o)) => {
                let (pid, start) = o.split_once('.')?;
                let owner = ProcId {
                    pid: pid.parse().ok()?,
                    start: start.parse().ok()?,
                };
                (b, Some(owner))
            }
            None => (s, None),
        };
        let mut parts = body.splitn(3, ':');
        let (home, env) = parts.next()?.split_once('.')?;
        if home.is_empty() || env.is_empty() {
            return None;
        }
        let role = Role::parse(parts.next()?)?;
        let layer = parts.next().map(str::to_string);
        Some(Self {
            home: home.to_string(),
            env: env.to_string(),
            role,
            layer,
            owner,
        })
    }
}

/// The tag a process carries, if any: its environment as it was started.
fn tag_of(pid: u32) -> Option<Tag> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{TOKEN_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(Tag::parse)
}

/// Every live process (but this one) whose tag `want` accepts. Costs one read per process on
/// the machine: for down, destroy, doctor and recovery, never for `ps`.
pub fn tagged(want: impl Fn(&Tag) -> bool) -> Vec<(ProcId, Tag)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let tag = tag_of(pid)?;
            if !want(&tag) {
                return None;
            }
            let s = stat(pid)?;
            (s.state != 'Z' && s.state != 'X').then_some((
                ProcId {
                    pid,
                    start: s.start,
                },
                tag,
            ))
        })
        .collect()
}

/// This process and every process above it: a sweep never stops the one asking (an agent
/// that runs `grove down` on its own env, a `grove exec … -- grove destroy`).
pub fn ancestors() -> HashSet<u32> {
    let mut out = HashSet::new();
    let mut pid = std::process::id();
    while pid > 1 && out.insert(pid) {
        match stat(pid) {
            Some(s) => pid = s.ppid,
            None => break,
        }
    }
    out
}

/// Stops `procs`: SIGTERM, then SIGKILL to those still there after `grace`. A pid reused
/// since it was found is never signalled. Returns what was stopped, with command names.
pub fn stop_all(procs: &[ProcId], grace: Duration) -> Vec<(ProcId, String)> {
    let live: Vec<ProcId> = procs.iter().copied().filter(ProcId::alive).collect();
    let named: Vec<(ProcId, String)> = live
        .iter()
        .map(|p| (*p, name(p.pid).unwrap_or_default()))
        .collect();
    let signal = |sig| {
        for p in live.iter().filter(|p| p.alive()) {
            let _ = kill(Pid::from_raw(p.pid.cast_signed()), sig);
        }
    };
    signal(Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while live.iter().any(ProcId::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while live.iter().any(ProcId::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    named
}

/// Waits until none of `procs` runs; false if some still do after `timeout`.
pub fn wait_gone(procs: &[ProcId], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !procs.iter().any(ProcId::alive) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Children of `pid`, from `/proc/PID/task/*/children` (no scan of the whole table).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// `root` and its descendants that are stopped by a signal (SIGSTOP, SIGTSTP, a debugger): a
/// server frozen like that still accepts TCP connections (the kernel queues them) and never
/// answers. Walks the tree from `root` only.
pub fn stopped_in_tree(root: ProcId) -> Option<ProcId> {
    if !root.alive() {
        return None;
    }
    let mut todo = vec![root.pid];
    let mut seen = HashSet::new();
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(s) = stat(pid)
            && (s.state == 'T' || s.state == 't')
        {
            return Some(ProcId {
                pid,
                start: s.start,
            });
        }
        todo.extend(children(pid));
    }
    None
}

/// The session id of process `pid`, while it lives.
pub fn session_of(pid: u32) -> Option<i64> {
    stat(pid).map(|s| s.session)
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

/// Whether one of `pids` holds a socket listening on TCP `port`: `None` when nothing listens
/// there at all. Reads only those processes' descriptors, so it is cheap for a server's few.
pub fn listener_held_by(port: u16, pids: &[u32]) -> Option<bool> {
    let inodes: HashSet<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .map(|i| format!("socket:[{i}]"))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let held = pids.iter().any(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|l| inodes.contains(l.to_string_lossy().as_ref()))
            })
        })
    });
    Some(held)
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

/// Closes the descriptors above stderr that this process inherited without close-on-exec
/// (a harness's pipe, a shell's `exec 7>`), for the grove processes that live on detached
/// (the supervisor, and through it the servers; the watcher; a background gate or pool
/// filler): holding the caller's pipe, they would keep it open for as long as an env runs.
/// The grove the caller started keeps them (a wrapper's `flock` on one holds while it runs,
/// and `grove exec` hands them on to its command). Whatever grove opens itself is
/// close-on-exec (Rust's default), so an fd without the flag was inherited;
/// `/proc/self/fdinfo` tells which, with no unsafe code.
pub fn close_inherited_fds() {
    const O_CLOEXEC: u32 = 0o2_000_000;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let mut fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    fds.sort_unstable();
    // In ascending order: a number this loop closed is the lowest free, so the fdinfo file
    // read next may take it, but never one still to be looked at.
    for fd in fds {
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        if flags.is_some_and(|f| f & O_CLOEXEC == 0) {
            let _ = nix::unistd::close(fd);
        }
    }
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
    fn tags_round_trip() {
        let me = ProcId::current();
        for tag in [
            Tag::new("abc123", Role::Server).layer("front"),
            Tag::new("abc123", Role::Exec).owned_by(me),
            Tag::new("abc123", Role::Agent),
            Tag::new("abc123", Role::Probe)
                .layer("web-app")
                .owned_by(me),
        ] {
            assert_eq!(
                Tag::parse(&tag.render()),
                Some(tag.clone()),
                "{}",
                tag.render()
            );
        }
        assert_eq!(Tag::parse("h.abc:bogus"), None);
        assert_eq!(Tag::parse("h.:server"), None);
        assert_eq!(Tag::parse("abc:server"), None);
        assert_eq!(Tag::parse("h.abc:exec@12"), None);
        let t = Tag::parse("0a0b.abc:server:front").unwrap();
        assert_eq!((t.home.as_str(), t.env.as_str()), ("0a0b", "abc"));
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 24);
    }

    #[test]
    fn a_tagged_child_is_found_and_stopped() {
        let token = new_token();
        let tag = Tag::new(&token, Role::Exec).render();
        let mut child = crate::exec::Cmd::new("sleep")
            .arg("30")
            .env(TOKEN_VAR, &tag)
            .spawn_inherit()
            .unwrap();
        let found = tagged(|t| t.env == token);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0.pid, child.id());
        assert_eq!(found[0].1.role, Role::Exec);
        let stopped = stop_all(&[found[0].0], Duration::from_secs(2));
        assert_eq!(stopped[0].1, "sleep");
        assert!(child.wait().is_ok());
        assert!(tagged(|t| t.env == token).is_empty());
        assert!(ancestors().contains(&std::process::id()));
    }

    #[test]
    fn a_stopped_process_is_seen_in_the_tree() {
        let mut child = crate::exec::Cmd::new("sleep")
            .arg("30")
            .spawn_inherit()
            .unwrap();
        let id = ProcId::of(child.id()).unwrap();
        assert_eq!(stopped_in_tree(ProcId::current()), None);
        let _ = kill(Pid::from_raw(id.pid.cast_signed()), Signal::SIGSTOP);
        assert!(wait_until_stopped(id));
        assert_eq!(stopped_in_tree(ProcId::current()), Some(id));
        let _ = kill(Pid::from_raw(id.pid.cast_signed()), Signal::SIGKILL);
        let _ = child.wait();
    }

    fn wait_until_stopped(p: ProcId) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if stat(p.pid).is_some_and(|s| s.state == 'T') {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_listener_is_held_by_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener_held_by(port, &[std::process::id()]), Some(true));
        assert_eq!(listener_held_by(port, &[1]), Some(false));
        drop(l);
        assert_eq!(listener_held_by(port, &[std::process::id()]), None);
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
