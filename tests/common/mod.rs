//! The test harness: a hermetic workspace with real git repos, and the real `grove` binary.
//!
//! Every test gets its own HOME, XDG folders, GROVE_HOME and git config, and its own block of
//! ports (held with a file lock for the test's life), so tests run in parallel, in threads or
//! processes, without seeing each other.
#![allow(dead_code, clippy::disallowed_methods)]

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The grove under test: this build, or `GROVE_TEST_BIN` (a binary of another revision, to
/// watch a new test fail against the code it is meant to catch).
pub fn grove_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("GROVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_grove").to_string())
    })
}

/// Ports for tests: 20000-29999, clear of well-known services and of Linux's ephemeral range
/// (32768+), cut in blocks of [`BLOCK`].
const PORT_BASE: u16 = 20000;
const BLOCK: u16 = 100;
const BLOCKS: u16 = 100;

/// A block of ports reserved for one test.
pub struct PortBlock {
    pub start: u16,
    _lock: File,
}

impl PortBlock {
    fn take() -> Self {
        let dir = std::env::temp_dir().join("grove-test-ports");
        std::fs::create_dir_all(&dir).unwrap();
        // Start at a pid-dependent block so parallel test processes rarely contend.
        let first = u16::try_from(std::process::id() % u32::from(BLOCKS)).unwrap();
        for i in 0..BLOCKS {
            let n = (first + i) % BLOCKS;
            let file = File::create(dir.join(format!("block-{n}.lock"))).unwrap();
            if file.try_lock().is_ok() {
                return PortBlock {
                    start: PORT_BASE + n * BLOCK,
                    _lock: file,
                };
            }
        }
        panic!("all {BLOCKS} test port blocks are taken");
    }

    /// `count` ports starting `offset` into the block, as a grove.toml range.
    pub fn range(&self, offset: u16, count: u16) -> String {
        assert!(offset + count <= BLOCK);
        format!(
            "{}-{}",
            self.start + offset,
            self.start + offset + count - 1
        )
    }

    pub fn port(&self, offset: u16) -> u16 {
        self.start + offset
    }
}

/// What a grove run printed and how it exited.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[exit status: {}]\n----- stdout -----\n{}\n----- stderr -----\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Out {
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success:\n{self}");
        self
    }

    #[track_caller]
    pub fn failure(self, code: i32) -> Self {
        assert_eq!(self.code, code, "expected exit {code}:\n{self}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{self}"))
    }
}

pub struct TestWorkspace {
    pub tmp: TempDir,
    /// The workspace folder (holds grove.toml and the repos).
    pub root: PathBuf,
    pub home: PathBuf,
    pub grove_home: PathBuf,
    pub ports: PortBlock,
    /// The Docker engine this test's commands reach (`DOCKER_HOST`), once it uses one.
    pub docker_host: std::sync::OnceLock<String>,
}

impl TestWorkspace {
    /// An empty workspace folder.
    pub fn empty() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("grove-test")
            .tempdir()
            .unwrap();
        // Canonical: git reports real paths, and so must we when comparing.
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("ws");
        let home = base.join("home");
        for d in [
            &root,
            &home,
            &base.join("state"),
            &base.join("config"),
            &base.join("tmux"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Grove Test\n\temail = test@grove.invalid\n\
             [init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n",
        )
        .unwrap();
        let grove_home = base.join("state/grove");
        TestWorkspace {
            tmp,
            root,
            home,
            grove_home,
            ports: PortBlock::take(),
            docker_host: std::sync::OnceLock::new(),
        }
    }

    /// A workspace with repos `names`, each with one commit on `main`, and the standard
    /// two-layer config when they are `front` and `api`.
    pub fn with_repos(names: &[&str]) -> Self {
        let ws = Self::empty();
        for name in names {
            ws.init_repo(name);
        }
        if names == ["front", "api"] {
            ws.write_config(&ws.standard_config(""));
        }
        ws
    }

    /// The reference two-layer config: `front` default, `api` shared unless asked;
    /// `front_extra` is appended to the front layer's table.
    pub fn standard_config(&self, front_extra: &str) -> String {
        format!(
            r#"[workspace]
default_layers = ["front"]

[layers.front]
repo = "front"
ports = "{front}"
shared_url = "http://127.0.0.1:{shared_front}"
env.API_URL = "{{{{ layers.api.url }}}}"
{front_extra}

[layers.api]
repo = "api"
ports = "{api}"
shared_url = "http://127.0.0.1:{shared_api}"
"#,
            front = self.ports.range(0, 40),
            api = self.ports.range(40, 40),
            shared_front = self.ports.port(98),
            shared_api = self.ports.port(99),
        )
    }

    /// Two layers running the test server (`tests/fixtures/server.py`), front wired to api,
    /// each probed on `/health`, with a short stop grace. `front_extra` / `api_extra` are
    /// appended to each layer's table (`env.CRASH = "1"`, `ready = …`).
    pub fn servers_config(&self, front_extra: &str, api_extra: &str) -> String {
        let layer = |name: &str, ports: String, shared: u16, extra: &str| {
            format!(
                r#"
[layers.{name}]
repo = "{name}"
run = "exec python3 -u {fixture}"
ports = "{ports}"
shared_url = "http://127.0.0.1:{shared}"
stop_timeout = 2
env.PID_DIR = "{pids}/{{{{ env }}}}"
{extra}
"#,
                fixture = fixture("server.py").display(),
                pids = self.pid_dir().display(),
            )
        };
        let front_extra = format!("env.API_URL = \"{{{{ layers.api.url }}}}\"\n{front_extra}");
        let mut toml = String::from("[workspace]\ndefault_layers = [\"front\"]\n");
        toml.push_str(&layer(
            "front",
            self.ports.range(0, 40),
            self.ports.port(98),
            &front_extra,
        ));
        toml.push_str(&layer(
            "api",
            self.ports.range(40, 40),
            self.ports.port(99),
            api_extra,
        ));
        toml
    }

    /// What the fake agent recorded for `env`: `argv`, `cwd`, `env`, `stdin`, `pid`.
    pub fn agent_record(&self, env: &str, what: &str) -> String {
        let path = self.tmp.path().join("agents").join(env).join(what);
        assert!(
            wait_until(30, || path.exists()),
            "{} never written",
            path.display()
        );
        std::fs::read_to_string(path).unwrap()
    }

    /// Lets the fake agent of `env` go on to its next state (`go-waiting`, `go-done`).
    pub fn agent_step(&self, env: &str, step: &str) {
        let dir = self.tmp.path().join("agents").join(env);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(step), "").unwrap();
    }

    /// `[agent]` running the fake agent.
    pub fn agent_config(&self, mode: &str, extra: &str) -> String {
        format!(
            "\n[agent]\ncommand = \"sh {}\"\nmode = \"{mode}\"\n{extra}\n",
            fixture("fake_agent.sh").display()
        )
    }

    /// Where the test server writes `<env>/<layer>.pid` and `<env>/<layer>.grandchild.pid`.
    pub fn pid_dir(&self) -> PathBuf {
        self.tmp.path().join("pids")
    }

    /// The pid the test server of `layer` in `env` wrote, once it has.
    pub fn server_pid(&self, env: &str, name: &str) -> i32 {
        let path = self.pid_dir().join(env).join(name);
        assert!(
            wait_until(30, || path.exists()),
            "{} never written",
            path.display()
        );
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn front_port(&self, n: u16) -> u16 {
        self.ports.port(n)
    }

    pub fn api_port(&self, n: u16) -> u16 {
        self.ports.port(40 + n)
    }

    pub fn shared_api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.port(99))
    }

    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.root.join("grove.toml"), toml).unwrap();
    }

    pub fn repo(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn init_repo(&self, name: &str) -> PathBuf {
        let dir = self.repo(name);
        std::fs::create_dir_all(&dir).unwrap();
        self.git(&dir, &["init", "--quiet", "-b", "main"]);
        std::fs::write(dir.join("README.md"), format!("# {name}\n")).unwrap();
        std::fs::write(dir.join(".gitignore"), ".env\nnode_modules/\n").unwrap();
        self.git(&dir, &["add", "--all"]);
        self.git(&dir, &["commit", "--quiet", "-m", "Initial commit"]);
        dir
    }

    /// The hermetic environment of every process the tests start.
    fn apply_env(&self, cmd: &mut Command) {
        let base = self.tmp.path().canonicalize().unwrap();
        // grove on PATH, as once installed: agents and hooks call it by name.
        let bin = Path::new(grove_bin()).parent().unwrap().to_path_buf();
        let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .unwrap();
        cmd.env_clear()
            .env("PATH", path)
            // A tmux server of this test's own (its socket lives under TMUX_TMPDIR).
            .env("TMUX_TMPDIR", base.join("tmux"))
            .env("AGENT_RECORD", base.join("agents"))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", base.join("config"))
            .env("XDG_STATE_HOME", base.join("state"))
            .env("GROVE_HOME", &self.grove_home)
            .env("GIT_CONFIG_GLOBAL", self.home.join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env("LC_ALL", "C")
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .env("TMPDIR", std::env::temp_dir());
        if let Some(host) = self.docker_host.get() {
            cmd.env("DOCKER_HOST", host);
        }
    }

    /// Runs git in `dir`; panics on failure; returns trimmed stdout.
    #[track_caller]
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.apply_env(&mut cmd);
        let out = cmd.arg("-C").arg(dir).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `file` in `dir` and commits it.
    pub fn commit(&self, dir: &Path, file: &str, text: &str, msg: &str) {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
        self.git(dir, &["add", "--all"]);
        self.git(dir, &["commit", "--quiet", "-m", msg]);
    }

    /// Branch `name` in repo `repo`, with one commit of its own.
    pub fn branch_with_commit(&self, repo: &str, name: &str) {
        let dir = self.repo(repo);
        self.git(&dir, &["switch", "--quiet", "-c", name]);
        self.commit(
            &dir,
            &format!("{}.txt", name.replace('/', "_")),
            name,
            &format!("Work on {name}"),
        );
        self.git(&dir, &["switch", "--quiet", "main"]);
    }

    pub fn branches(&self, repo: &str) -> Vec<String> {
        let out = self.git(&self.repo(repo), &["branch", "--format=%(refname:short)"]);
        out.lines().map(str::to_string).collect()
    }

    /// Paths of the repo's worktrees, main checkout first.
    pub fn worktrees(&self, repo: &str) -> Vec<PathBuf> {
        let out = self.git(&self.repo(repo), &["worktree", "list", "--porcelain"]);
        out.lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .map(PathBuf::from)
            .collect()
    }

    pub fn env_dir(&self, env: &str) -> PathBuf {
        self.root.join(".grove/envs").join(env)
    }

    pub fn worktree(&self, env: &str, layer: &str) -> PathBuf {
        self.env_dir(env).join(layer)
    }

    /// A `grove` command with the hermetic environment, run in the workspace folder.
    pub fn cmd(&self) -> Command {
        self.command(grove_bin())
    }

    /// Any program, with the hermetic environment, run in the workspace folder.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.apply_env(&mut cmd);
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    #[must_use = "check the outcome with .success() or .failure(code)"]
    pub fn grove(&self, args: &[&str]) -> Out {
        run(self.cmd().args(args))
    }

    #[must_use = "check the outcome with .success() or .failure(code)"]
    pub fn grove_in(&self, dir: &Path, args: &[&str]) -> Out {
        run(self.cmd().current_dir(dir).args(args))
    }

    /// `grove agent-status --hook` run in `dir`, fed `input` on stdin as an agent's hook is.
    pub fn agent_hook(&self, dir: &Path, input: &str) -> Out {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(["agent-status", "--hook"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        finish(child)
    }

    /// `grove ps --json`'s env records.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        let json = self.grove(&["ps", "--json"]).success().json();
        assert_eq!(json["version"], 1);
        json["envs"].as_array().unwrap().clone()
    }

    /// Leased ports according to the store, read with sqlite directly (not through grove).
    pub fn leased_ports(&self) -> Vec<u16> {
        let db = self.grove_home.join("state.db");
        if !db.exists() {
            return Vec::new();
        }
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare("SELECT port FROM port_leases ORDER BY port")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The whole state as grove sees it and as git sees it, for "nothing changed" checks.
    pub fn snapshot(&self, repos: &[&str]) -> String {
        let mut s = String::new();
        for repo in repos {
            s.push_str(&format!("{repo} branches: {:?}\n", self.branches(repo)));
            s.push_str(&format!("{repo} worktrees: {:?}\n", self.worktrees(repo)));
        }
        s.push_str(&format!("leases: {:?}\n", self.leased_ports()));
        s.push_str(&format!(
            "envs dir: {:?}\n",
            list_dir(&self.root.join(".grove/envs"))
        ));
        s
    }
}

impl TestWorkspace {
    /// Live processes grove started for this test (they carry `GROVE_TOKEN` and this test's
    /// `GROVE_HOME`), with their tag: `(pid, tag)`.
    /// The review watchers of this workspace (untagged: found by their command line).
    pub fn watchers(&self) -> Vec<i32> {
        let root = self.root.display().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.contains(&b"__watch".as_slice()) && args.contains(&root.as_bytes())
            })
            .collect()
    }

    pub fn tagged_processes(&self) -> Vec<(i32, String)> {
        let home = format!("GROVE_HOME={}", self.grove_home.display());
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            let vars: Vec<String> = environ
                .split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            let Some(tag) = vars.iter().find_map(|v| v.strip_prefix("GROVE_TOKEN=")) else {
                continue;
            };
            if !vars.contains(&home) || is_zombie(pid) {
                continue;
            }
            out.push((pid, tag.to_string()));
        }
        out
    }
}

impl TestWorkspace {
    /// Kills whatever grove started for this test that is still running (a failed test's).
    fn kill_tagged(&self) {
        for (pid, _) in self.tagged_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_none_or(|st| st == "Z" || st == "X")
    })
}

impl Drop for TestWorkspace {
    /// No test leaves a process behind, even one that failed half-way: every supervisor this
    /// GROVE_HOME knows is asked to stop (its guards stop the servers), then anything left in
    /// the recorded server sessions is killed.
    fn drop(&mut self) {
        let _ = self.command("tmux").arg("kill-server").output();
        let db = self.grove_home.join("state.db");
        let conn = match rusqlite::Connection::open(db) {
            Ok(conn) => conn,
            Err(_) => {
                self.kill_tagged();
                return;
            }
        };
        let pids = |sql: &str| -> Vec<i32> {
            conn.prepare(sql)
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .unwrap_or_default()
        };
        let supervisors = pids("SELECT pid FROM supervisors");
        let leaders = pids("SELECT pid FROM servers WHERE pid IS NOT NULL");
        for pid in &supervisors {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        wait_until(10, || leaders.iter().all(|l| group_members(*l).is_empty()));
        for l in &leaders {
            for pid in group_members(*l) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.kill_tagged();
    }
}

/// A workspace with repos `front` and `api` running the test server (see
/// [`TestWorkspace::servers_config`]).
pub fn servers_ws(front_extra: &str, api_extra: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.write_config(&ws.servers_config(front_extra, api_extra));
    ws
}

/// The env record of `name` in `ps --json`.
pub fn env_json(ws: &TestWorkspace, name: &str) -> serde_json::Value {
    ws.ps()
        .into_iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// Layer `name` of an env record.
pub fn layer<'a>(env: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    env["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap()
}

/// Waits for a child started with piped output and collects it.
#[must_use = "check the outcome with .success() or .failure(code)"]
pub fn finish(child: std::process::Child) -> Out {
    let out = child.wait_with_output().expect("the child runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[must_use = "check the outcome with .success() or .failure(code)"]
pub fn run(cmd: &mut Command) -> Out {
    let out = cmd.output().expect("grove runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `GET path` on 127.0.0.1:`port`: the status and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Entries of a folder except grove's `.gitignore`, sorted; empty when it does not exist.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".gitignore")
        .collect();
    v.sort();
    v
}

/// Polls `cond` every 20 ms until it holds or `secs` pass; returns whether it held.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of live (non-zombie) processes in process group `pgid`, read from /proc.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] = state, [1] = ppid, [2] = pgrp
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            pids.push(pid);
        }
    }
    pids
}

/// Normalizes output for snapshots: temp paths and this test's ports.
pub fn redact(ws: &TestWorkspace, text: &str) -> String {
    let mut s = text.replace(&ws.root.to_string_lossy().into_owned(), "[WS]");
    s = s.replace(
        &ws.tmp
            .path()
            .canonicalize()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        "[TMP]",
    );
    for i in (0..BLOCK).rev() {
        let port = ws.ports.start + i;
        s = s.replace(&port.to_string(), &format!("[P{i}]"));
    }
    s
}

/// A throwaway PostgreSQL cluster on a test port, with a database `app` holding a table
/// `items (v text)`. PostgreSQL refuses to run as root: as root, it runs as `postgres`.
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl Postgres {
    pub fn start(port: u16) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (.ci/run installs it)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("an initdb");
        // Outside the test's own temp dir: the `postgres` user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("grove-pg")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let as_root = nix::unistd::getuid().is_root();
        if as_root {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        }
        let pg = Postgres { port, dir, bin };
        let data = pg.dir.join("data");
        pg.as_owner(&[
            pg.bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
        ]);
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            pg.dir.display()
        );
        // pg_ctl only says "examine the log": a failed start must show it (a taken port, say).
        let log = pg.dir.join("log");
        // A test's stderr is where a failure is read.
        #[allow(clippy::print_stderr)]
        let _show_log = OnPanic(|| {
            eprintln!(
                "PostgreSQL on port {port} (log {}):\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        });
        pg.as_owner(&[
            pg.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]);
        pg.psql("postgres", "CREATE DATABASE app");
        pg.psql("app", "CREATE TABLE items (v text)");
        drop(_show_log);
        pg
    }

    fn as_owner(&self, argv: &[&str]) {
        let out = self.as_owner_output(argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn as_owner_output(&self, argv: &[&str]) -> std::process::Output {
        let mut cmd = if nix::unistd::getuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c
        } else {
            Command::new(argv[0])
        };
        let args = if nix::unistd::getuid().is_root() {
            argv
        } else {
            &argv[1..]
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` on database `db`; returns the unaligned output.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-qtA", "-d", &self.url(db), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn databases(&self) -> Vec<String> {
        self.psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
        )
        .lines()
        .map(str::to_string)
        .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        // Unchecked: a server that never started (the test already failing) has nothing to stop,
        // and a second panic would abort the test's output.
        let _ = self.as_owner_output(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway redis-server on a test port.
pub struct Redis {
    pub port: u16,
    child: std::process::Child,
}

impl Redis {
    pub fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        assert!(wait_until(20, || listening(port)));
        Redis { port, child }
    }

    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    #[track_caller]
    pub fn cli(&self, db: u32, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "-n", &db.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Docker engine for the compose runner's tests: the one `.ci/run` started
/// (`GROVE_TEST_DOCKER_HOST`). Without one the test says so, loudly, and returns early; a run
/// of `.ci/run` in which that happened fails (`GROVE_TEST_SKIPPED`).
pub struct Docker {
    pub host: String,
}

/// The engine of `GROVE_TEST_DOCKER_HOST` (`second`: `GROVE_TEST_DOCKER_HOST2`), if it answers.
#[allow(clippy::print_stderr)]
pub fn docker(test: &str, second: bool) -> Option<Docker> {
    let var = if second {
        "GROVE_TEST_DOCKER_HOST2"
    } else {
        "GROVE_TEST_DOCKER_HOST"
    };
    let host = std::env::var(var).ok().filter(|h| !h.is_empty());
    let answers = host.as_ref().is_some_and(|h| {
        Command::new("docker")
            .args(["--host", h, "info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !answers {
        eprintln!(
            "\n*** SKIPPED {test}: no Docker engine ({var} is {}) — run the suite through .ci/run ***\n",
            host.as_deref().unwrap_or("unset")
        );
        if let Ok(dir) = std::env::var("GROVE_TEST_SKIPPED") {
            let _ = std::fs::write(Path::new(&dir).join(test.replace("::", "-")), "");
        }
        return None;
    }
    Some(Docker {
        host: host.unwrap_or_default(),
    })
}

/// The image the tests' services run: `/bin/busybox` (its `httpd` serves files), imported
/// once per engine; no registry is needed.
pub const BUSYBOX: &str = "grove-test/busybox:3";

impl Docker {
    pub fn cli(&self, args: &[&str]) -> Out {
        run(Command::new("docker")
            .arg("--host")
            .arg(&self.host)
            .args(args))
    }

    /// Imports [`BUSYBOX`] unless the engine has it (under a lock: tests run in parallel).
    pub fn busybox(&self) -> &'static str {
        let lock = File::create(std::env::temp_dir().join("grove-test-busybox.lock")).unwrap();
        lock.lock().unwrap();
        if self.cli(&["image", "inspect", BUSYBOX]).code == 0 {
            return BUSYBOX;
        }
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in [
            "sh", "ls", "cat", "echo", "sleep", "httpd", "rm", "kill", "mkdir", "wget", "env",
            "chmod",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let tarball = root.path().with_extension("tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(root.path())
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success());
        let import = Command::new("docker")
            .args(["--host", &self.host, "import"])
            .arg(&tarball)
            .arg(BUSYBOX)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&tarball);
        assert!(import.status.success(), "{import:?}");
        BUSYBOX
    }

    /// What the engine holds with `label`: containers, networks, volumes, images.
    pub fn labelled(&self, label: &str) -> Vec<String> {
        let filter = format!("label={label}");
        let mut out = Vec::new();
        for (kind, args) in [
            ("container", &["ps", "--all", "--quiet"][..]),
            ("network", &["network", "ls", "--quiet"]),
            ("volume", &["volume", "ls", "--quiet"]),
            ("image", &["image", "ls", "--quiet", "--all"]),
        ] {
            let mut a = args.to_vec();
            a.extend(["--filter", &filter]);
            for id in self.cli(&a).stdout.split_whitespace() {
                out.push(format!("{kind} {id}"));
            }
        }
        out
    }
}

impl TestWorkspace {
    /// Commands of this test reach `docker`'s engine.
    pub fn use_docker(&self, docker: &Docker) {
        let _ = self.docker_host.set(docker.host.clone());
    }

    /// The env's token, from the store (what grove labels its containers with).
    pub fn env_token(&self, env: &str) -> String {
        let conn = rusqlite::Connection::open(self.grove_home.join("state.db")).unwrap();
        conn.query_row("SELECT token FROM envs WHERE name = ?1", [env], |r| {
            r.get(0)
        })
        .unwrap()
    }
}

/// Runs its closure if dropped while the thread panics: what to print when a setup step fails.
struct OnPanic<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnPanic<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}
