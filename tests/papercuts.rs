//! Papercuts a new user hit (issue #12, item 5): each test failed on the grove that had them.

use std::path::Path;

use crate::common::{TestWorkspace, env_json, layer, run, wait_until};

/// `grove init`: the repos with a dev server are the default layers (not the first by name),
/// `start` counts as well as `dev`, and the lockfile names the package manager.
#[test]
fn init_prefers_repos_that_run_and_reads_the_lockfile() {
    let ws = TestWorkspace::empty();
    let repo = |name: &str, files: &[(&str, &str)]| {
        let dir = ws.init_repo(name);
        for (file, text) in files {
            ws.commit(&dir, file, text, &format!("add {file}"));
        }
    };
    // First by name, and nothing to run.
    repo("api", &[]);
    repo(
        "shop",
        &[
            (
                "package.json",
                r#"{"scripts": {"start": "node server.js"}}"#,
            ),
            ("yarn.lock", ""),
        ],
    );
    repo(
        "web",
        &[
            (
                "package.json",
                r#"{"scripts": {"dev": "vite", "start": "vite preview"}}"#,
            ),
            ("pnpm-lock.yaml", ""),
        ],
    );
    repo(
        "zeta",
        &[
            ("package.json", r#"{"scripts": {"dev": "next dev"}}"#),
            ("bun.lock", ""),
        ],
    );
    repo(
        "old",
        &[("package.json", r#"{"scripts": {"dev": "nodemon"}}"#)],
    );
    let out = ws.grove(&["init"]).success();
    assert!(!out.stderr.contains("needs a look"), "{out}");
    let toml = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    let lines: Vec<&str> = toml
        .lines()
        .filter(|l| l.starts_with("default_layers") || l.starts_with("run ="))
        .collect();
    assert_eq!(
        lines,
        [
            r#"default_layers = ["old", "shop", "web", "zeta"]"#,
            r#"run = "npm run dev -- --port $PORT""#,
            r#"run = "yarn run start --port $PORT""#,
            r#"run = "pnpm run dev --port $PORT --strictPort""#,
            r#"run = "bun run dev --port $PORT""#,
        ],
        "{toml}"
    );
    // None runs anything: the first is the default layer, so that the file is valid.
    let ws = TestWorkspace::with_repos(&["b", "a"]);
    ws.grove(&["init"]).success();
    let toml = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    assert!(toml.contains("\ndefault_layers = [\"a\"]\n"), "{toml}");
}

/// The standard two-server config with the api's `run` taken out.
fn without_api_run(config: &str) -> String {
    let (front, api) = config.split_once("[layers.api]").unwrap();
    let api: String = api
        .lines()
        .filter(|l| !l.starts_with("run = "))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{front}[layers.api]{api}")
}

/// A `run` added to grove.toml after the env was made reaches it with `grove restart`.
#[test]
fn restart_picks_up_a_new_run() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let full = ws.servers_config("", "");
    ws.write_config(&without_api_run(&full));
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    assert!(crate::common::http_get(ws.api_port(0), "/health").is_none());
    ws.write_config(&full);
    let out = ws.grove(&["restart", "feat-01", "api"]).success();
    assert!(out.stderr.contains("api  restarted"), "{out}");
    assert_eq!(
        crate::common::http_get(ws.api_port(0), "/health").map(|r| r.0),
        Some(200),
        "{out}"
    );
    assert_eq!(layer(&env_json(&ws, "feat-01"), "api")["state"], "ready");
    // A layer with no `run` still says so, and how to give it one.
    ws.write_config(&without_api_run(&full));
    ws.grove(&["create", "feat-02", "--from-api=main"])
        .success();
    let out = ws.grove(&["restart", "feat-02", "api"]).failure(1);
    assert!(
        out.stderr.contains("runs no server") && out.stderr.contains("hint: give it `run"),
        "{out}"
    );
    // And a `run` taken away: refused before the server is touched, which keeps serving.
    let out = ws.grove(&["restart", "feat-01", "api"]).failure(1);
    assert!(out.stderr.contains("has no `run`"), "{out}");
    assert!(
        out.stderr.contains("hint: `grove restart feat-01`"),
        "{out}"
    );
    assert_eq!(
        crate::common::http_get(ws.api_port(0), "/health").map(|r| r.0),
        Some(200),
        "{out}"
    );
}

/// `--isolate-<layer>` on a layer that exists but has no `isolate`: says so, and how to give
/// it one (by its URL's kind), or for a code layer, how it gets its own instance.
#[test]
fn isolate_flag_on_a_layer_without_a_recipe() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.write_config(
        &(ws.standard_config("")
            + "\n[layers.db]\nshared_url = \"postgres://localhost/app\"\n\
               \n[layers.cache]\nshared_url = \"redis://localhost:6379/0\"\n\
               \n[layers.events]\nshared_url = \"kafka://localhost:9092\"\n"),
    );
    let before = ws.snapshot(&["front", "api"]);
    for (args, stderr) in [
        (
            &["create", "x", "--isolate-db"][..],
            "error: layer `db` has no `isolate` recipe: `--isolate-db` does not exist\n\n\
             hint: add `isolate = { kind = \"postgres\", template = \"<database>\" }` to [layers.db] in grove.toml (see the README's grove.toml section)\n",
        ),
        (
            &["create", "x", "--isolate", "cache"],
            "error: layer `cache` has no `isolate` recipe: `--isolate cache` does not apply\n\n\
             hint: add `isolate = { kind = \"redis\" }` to [layers.cache] in grove.toml (see the README's grove.toml section)\n",
        ),
        (
            &["create", "x", "--isolate-events"],
            "error: layer `events` has no `isolate` recipe: `--isolate-events` does not exist\n\n\
             hint: add `isolate.create = \"…\"` and `isolate.destroy = \"…\"` to [layers.events] in grove.toml (see the README's grove.toml section)\n",
        ),
        (
            &["create", "x", "--isolate-api"],
            "error: layer `api` has no `isolate` recipe: `--isolate-api` does not exist (it is a code layer)\n\n\
             hint: `--from-api=BASE` gives the env its own `api` (worktree, branch and server); `isolate` is for infra layers\n",
        ),
    ] {
        let out = ws.grove(args).failure(2);
        assert_eq!(out.stderr, stderr, "{args:?}");
    }
    assert_eq!(ws.snapshot(&["front", "api"]), before);
}

/// `diff --dirty` shows the untracked files `review` counts, as new files, and leaves the
/// worktree's index as it was.
#[test]
fn diff_dirty_shows_untracked_files() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    std::fs::write(wt.join("README.md"), "# front, edited\n").unwrap();
    std::fs::create_dir_all(wt.join("src")).unwrap();
    std::fs::write(wt.join("src/new page.txt"), "a new file\n").unwrap();
    std::fs::write(wt.join("*.txt"), "a star\n").unwrap();
    // Ignored: not work, in neither review nor diff.
    std::fs::write(wt.join(".env"), "SECRET=1\n").unwrap();
    let status = ws.git(&wt, &["status", "--porcelain"]);
    let review = ws.grove(&["review", "feat-01"]).success();
    assert!(
        review.stdout.contains("uncommitted: src/new page.txt"),
        "{review}"
    );
    let out = ws.grove(&["diff", "feat-01", "--dirty"]).success();
    for want in [
        "diff --git a/front/README.md b/front/README.md",
        "+# front, edited",
        "diff --git a/front/src/new page.txt b/front/src/new page.txt",
        "+a new file",
        "diff --git a/front/*.txt b/front/*.txt",
        "+a star",
    ] {
        assert!(out.stdout.contains(want), "no `{want}` in:\n{out}");
    }
    assert!(!out.stdout.contains("SECRET"), "{out}");
    // Nothing was staged in the worktree.
    assert_eq!(ws.git(&wt, &["status", "--porcelain"]), status);
    // Without --dirty: the branch's commits only.
    let out = ws.grove(&["diff", "feat-01"]).success();
    assert!(!out.stdout.contains("new page"), "{out}");
}

/// A workspace whose front runs the test server, with the fake agent in `mode`.
fn ws_with_agent(mode: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let config = ws.servers_config("", "") + &ws.agent_config(mode, "");
    ws.write_config(&config);
    ws
}

fn agent_json(ws: &TestWorkspace, env: &str) -> serde_json::Value {
    env_json(ws, env)["agent"].clone()
}

/// What `review --json` says of env `name`'s agent.
fn review_agent(ws: &TestWorkspace, name: &str) -> serde_json::Value {
    let v = ws.grove(&["review", "--json"]).success().json();
    v["envs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap()["agent"]
        .clone()
}

/// A headless agent that reports `done` and then exits (as `claude -p` does) stays `done`.
#[test]
fn done_survives_the_headless_agent_exiting() {
    let ws = ws_with_agent("headless");
    ws.grove(&["create", "feat-01"]).success();
    run(ws
        .cmd()
        .env("FAKE_AGENT_EXIT", "1")
        .args(["agent", "feat-01"]))
    .success();
    ws.agent_step("feat-01", "go-waiting");
    ws.agent_step("feat-01", "go-done");
    assert!(
        wait_until(20, || agent_json(&ws, "feat-01")["last_exit"] == "exit 0"),
        "{}",
        agent_json(&ws, "feat-01")
    );
    assert_eq!(agent_json(&ws, "feat-01")["state"], "done");
    assert_eq!(review_agent(&ws, "feat-01"), "done");
    // Done and gone: a new agent may start.
    ws.grove(&["agent", "feat-01", "--command", "sleep 30"])
        .success();
}

/// An agent killed after it said `done` (its Stop hook fires after every turn, idle ones too)
/// did not finish: it died, and the queue says `exited`.
#[test]
fn an_agent_killed_after_done_is_exited() {
    let ws = ws_with_agent("headless");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["agent", "feat-01"]).success();
    ws.agent_step("feat-01", "go-waiting");
    ws.agent_step("feat-01", "go-done");
    assert!(
        wait_until(20, || agent_json(&ws, "feat-01")["state"] == "done"),
        "{}",
        agent_json(&ws, "feat-01")
    );
    let pid = agent_json(&ws, "feat-01")["pid"].as_i64().unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(20, || agent_json(&ws, "feat-01")["last_exit"].is_string()),
        "{}",
        agent_json(&ws, "feat-01")
    );
    assert_eq!(agent_json(&ws, "feat-01")["state"], "exited");
    assert_eq!(review_agent(&ws, "feat-01"), "exited");
}

/// The agent's SessionEnd hook after its Stop hook (Claude Code sends both when a session
/// ends) leaves `done`; a session that ends while working is `exited`.
#[test]
fn session_end_after_done_stays_done() {
    let ws = ws_with_agent("headless");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["agent", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    let hook = |event: &str| {
        let json = format!(
            r#"{{"hook_event_name":"{event}","cwd":"{}"}}"#,
            wt.display()
        );
        ws.agent_hook(&wt, &json).success();
    };
    // The fake agent reports `working` once started: only after that do the hooks below
    // speak last (else its report can land after them).
    assert!(
        wait_until(20, || agent_json(&ws, "feat-01")["state"] == "working"),
        "{}",
        agent_json(&ws, "feat-01")
    );
    hook("Stop");
    assert_eq!(agent_json(&ws, "feat-01")["state"], "done");
    hook("SessionEnd");
    assert_eq!(agent_json(&ws, "feat-01")["state"], "done");
    assert_eq!(review_agent(&ws, "feat-01"), "done");
    hook("UserPromptSubmit");
    hook("SessionEnd");
    assert_eq!(agent_json(&ws, "feat-01")["state"], "exited");
}

/// In tmux, the window's program returning after `done` leaves `done`.
#[test]
fn done_survives_the_tmux_agent_exiting() {
    let ws = ws_with_agent("tmux");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&[
        "agent",
        "feat-01",
        "--command",
        "grove agent-status done; echo finished",
    ])
    .success();
    // The window's program is gone once `ps` shows no pid for it.
    assert!(
        wait_until(20, || {
            let a = agent_json(&ws, "feat-01");
            a["pid"].is_null() && a["state"] != "running"
        }),
        "{}",
        agent_json(&ws, "feat-01")
    );
    assert_eq!(agent_json(&ws, "feat-01")["state"], "done");
}

/// Runs `grove args` on a terminal (a pty from `script`); `None` if it has not ended within
/// `secs` (it is then killed).
fn on_a_terminal(ws: &TestWorkspace, args: &str, secs: u64) -> Option<crate::common::Out> {
    let mut child = ws
        .command("script")
        .args(["-qec", &format!("grove {args}"), "/dev/null"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if wait_until(secs, || child.try_wait().unwrap().is_some()) {
        return Some(crate::common::finish(child));
    }
    // Its pty's hang-up stops the grove inside.
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `attach` on a headless agent follows its log while it runs, stops when it exits, and on
/// one that has exited prints the log and returns (with or without a terminal).
#[test]
fn attach_to_a_headless_agent_that_exits() {
    let ws = ws_with_agent("headless");
    ws.grove(&["create", "feat-01"]).success();
    run(ws
        .cmd()
        .env("FAKE_AGENT_EXIT", "1")
        .args(["agent", "feat-01"]))
    .success();
    // Following, on a terminal, while the agent works: it ends when the agent does.
    let mut child = ws
        .command("script")
        .args(["-qec", "grove attach feat-01", "/dev/null"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(20, || agent_json(&ws, "feat-01")["state"] == "working"));
    ws.agent_step("feat-01", "go-waiting");
    ws.agent_step("feat-01", "go-done");
    let ended = wait_until(30, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = crate::common::finish(child);
    assert!(
        ended,
        "attach still follows the log of an agent that exited:\n{out}"
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("working on it") && out.stdout.contains("agent exited (exit 0)"),
        "{out}"
    );
    // Exited already: the log, and an end.
    let out = on_a_terminal(&ws, "attach feat-01", 20).expect("attach returns");
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("agent exited (exit 0)"), "{out}");
    assert!(
        out.stdout.contains("is not running (done; exit 0)"),
        "{out}"
    );
    let out = ws.grove(&["attach", "feat-01"]).success();
    assert!(
        out.stdout.contains("fake agent of feat-01 starting"),
        "{out}"
    );
    assert_eq!(
        out.stderr,
        "the agent of `feat-01` is not running (done; exit 0)\n\
         hint: `grove agent feat-01` starts a new one; `grove review feat-01` shows its work\n"
    );
}

/// A server that answers `/health` slowly (its head, then its body in two writes, as a
/// framework that streams does), and writes a line per request to `$PROBE_LOG`: `ok`, or
/// `reset` when the client went away before the answer was read.
const PROBE_SERVER: &str = r#"
import http.server, os, socketserver, time
LOG = os.environ["PROBE_LOG"]
def note(what):
    with open(LOG, "a") as f:
        f.write(what + "\n")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok, and some more words\n"
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(2 * len(body)))
            self.end_headers()
            time.sleep(0.1)
            self.wfile.write(body)
            time.sleep(0.1)
            self.wfile.write(body)
            note("ok")
        except OSError as e:
            note("reset " + type(e).__name__)
    def log_message(self, *args):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A workspace whose front and api run [`PROBE_SERVER`], probed with `GET /health`, each
/// logging to `<tmp>/<layer>.probes`; `workspace`, `front` and `api` are added to each table.
fn probe_ws(workspace: &str, front: &str, api: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let script = ws.tmp.path().join("probe_server.py");
    std::fs::write(&script, PROBE_SERVER).unwrap();
    let layer = |name: &str, ports: String, extra: &str| {
        format!(
            "\n[layers.{name}]\nrepo = \"{name}\"\nrun = \"exec python3 -u {script}\"\n\
             ports = \"{ports}\"\nready = {{ http = \"/health\" }}\nstop_timeout = 2\n\
             env.PROBE_LOG = \"{log}\"\n{extra}\n",
            script = script.display(),
            log = ws.tmp.path().join(format!("{name}.probes")).display(),
        )
    };
    let config = format!(
        "[workspace]\ndefault_layers = [\"front\", \"api\"]\n{workspace}\n{}{}",
        layer("front", ws.ports.range(0, 40), front),
        layer("api", ws.ports.range(40, 40), api),
    );
    ws.write_config(&config);
    ws
}

/// The requests the probe server of `layer` answered (`ok`), or saw reset.
fn probes(ws: &TestWorkspace, layer: &str) -> Vec<String> {
    std::fs::read_to_string(ws.tmp.path().join(format!("{layer}.probes")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// HTTP probes read the whole answer before they close: the server never writes into a
/// connection reset under it (the demo's Python servers logged a traceback per probe).
#[test]
fn http_probes_read_the_whole_answer() {
    let ws = probe_ws("", "", "");
    // Health checks every 200 ms, for a few of them in a short test.
    run(ws
        .cmd()
        .env("GROVE_HEALTH_EVERY_MS", "200")
        .args(["create", "feat-01"]))
    .success();
    assert!(
        wait_until(30, || probes(&ws, "front").len() >= 4),
        "{:?}",
        probes(&ws, "front")
    );
    let seen = probes(&ws, "front");
    assert!(seen.iter().all(|p| p == "ok"), "{seen:?}");
    assert_eq!(layer(&env_json(&ws, "feat-01"), "front")["state"], "ready");
}

/// `health_every` in grove.toml: per workspace, per layer, or `false` for none.
#[test]
fn health_check_interval_is_configurable() {
    let ws = probe_ws("health_every = 1", "", "health_every = false");
    ws.grove(&["create", "feat-01"]).success();
    // Each has answered its readiness probe by now.
    let api_at_ready = probes(&ws, "api").len();
    assert!(api_at_ready >= 1);
    // Three health checks of the front, a second apart: time enough for the api's.
    assert!(
        wait_until(30, || probes(&ws, "front").len() >= 4),
        "{:?}",
        probes(&ws, "front")
    );
    assert_eq!(
        probes(&ws, "api").len(),
        api_at_ready,
        "the api was checked"
    );
}

/// A bad `health_every` is an error at its place in the file, like every config error.
#[test]
fn a_bad_health_every_is_a_config_error() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let hint = "hint: seconds between health checks of a ready server, 1 to 3600 (default 10), or `false` for none";
    for (extra, at, what) in [
        ("health_every = 0", "15:16", "`health_every` is 0"),
        ("health_every = true", "15:16", "`health_every` is `true`"),
        ("health_every = 86400", "15:16", "`health_every` is 86400"),
        (
            "health_every = \"30s\"",
            "15:16",
            "`health_every` is the text `30s` (write a number: `30`)",
        ),
        ("health_every = 2.5", "15:16", "`health_every` is `2.5`"),
    ] {
        ws.write_config(&(ws.standard_config("") + extra + "\n"));
        let out = ws.grove(&["ps"]).failure(1);
        assert!(
            out.stderr.contains(&format!("grove.toml:{at}: {what}")) && out.stderr.contains(hint),
            "{extra}:\n{out}"
        );
    }
    ws.write_config(
        &(ws.standard_config("")
            + "\n[layers.db]\nshared_url = \"postgres://x/app\"\nhealth_every = 5\n"),
    );
    let out = ws.grove(&["ps"]).failure(1);
    assert!(
        out.stderr
            .contains("`health_every` needs `repo`: layer `db` has no repo"),
        "{out}"
    );
}

/// A failing `check` is logged as a failed check, not as a setup step, and says what next.
#[test]
fn a_check_failure_is_logged_as_a_check() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.write_config(&ws.standard_config("check = [\"echo checking; exit 3\"]"));
    ws.grove(&["create", "feat-01"]).success();
    let out = ws.grove(&["check", "feat-01"]).failure(1);
    assert!(
        out.stderr
            .contains("  | checking\n  | [grove] check command failed (exit 3)\n"),
        "{out}"
    );
    assert!(!out.stderr.contains("setup"), "{out}");
    assert!(
        out.stderr.ends_with(
            "error: check failed in front\n\n\
             hint: fix what failed, then `grove check feat-01` again (each layer's whole log is named above)\n"
        ),
        "{out}"
    );
}

/// Errors a new user met without a `hint:` now have one.
#[test]
fn errors_come_with_a_hint() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.write_config(&(ws.standard_config("") + &ws.agent_config("headless", "")));
    ws.grove(&["create", "feat-01"]).success();
    std::fs::create_dir_all(ws.root.join("tickets")).unwrap();
    std::fs::write(ws.root.join("tickets/login.md"), "Log in\n").unwrap();
    let before = ws.snapshot(&["front", "api"]);
    for (args, error, hint) in [
        (
            &["create", "--tickets", "nope/*.md"][..],
            "error: no folder `nope` for the tickets `nope/*.md`\n",
            "hint: ticket paths are relative to the current folder, e.g. `--tickets 'tickets/*.md'`\n",
        ),
        (
            &["create", "--tickets", "tickets/*.txt"],
            "error: no ticket matches `tickets/*.txt`\n",
            "hint: files in tickets: login.md (`*` and `?` match in the file name; quote the pattern)\n",
        ),
        (
            &["create", "--tickets", "tickets/logout.md"],
            "error: ticket `tickets/logout.md` not found\n",
            "hint: files in tickets: login.md (`*` and `?` match in the file name; quote the pattern)\n",
        ),
        (
            &["agent", "feat-01", "--ticket", "tickets/logout.md"],
            "error: cannot read the ticket tickets/logout.md: No such file or directory (os error 2)\n",
            "hint: `--ticket` is the path of a text file (Markdown), relative to the current folder\n",
        ),
        (
            &["init", "nosuch"],
            "is not a folder\n",
            "hint: pass the folder holding your repos (or a repo): `grove init DIR`\n",
        ),
        (
            &["diff", "feat-01", "api"],
            "error: env `feat-01` has no worktree for layer `api`\n",
            "hint: its layers: front\n",
        ),
    ] {
        let out = ws.grove(args).failure(1);
        assert!(
            out.stderr.contains(error) && out.stderr.ends_with(&format!("\n{hint}")),
            "{args:?}:\n{out}"
        );
    }
    assert_eq!(ws.snapshot(&["front", "api"]), before);
    assert!(env_json(&ws, "feat-01")["agent"].is_null());
}

/// `grove exec NAME git status` (no `--`): a usage error that shows the line with `--`.
#[test]
fn exec_without_separator_suggests_it() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    for (args, hint) in [
        (
            &["exec", "feat-01", "git", "status"][..],
            "`grove exec feat-01 -- git status`",
        ),
        (
            &["exec", "-l", "front", "feat-01", "git", "log", "-n", "1"],
            "`grove exec feat-01 -l front -- git log -n 1`",
        ),
        (
            &["exec", "feat-01", "-l", "front", "git", "status"],
            "`grove exec feat-01 -l front -- git status`",
        ),
        (
            &["--color", "never", "exec", "feat-01", "git", "status"],
            "`grove --color never exec feat-01 -- git status`",
        ),
    ] {
        let out = ws.grove(args).failure(2);
        assert_eq!(
            out.stderr,
            format!("error: `grove exec` takes the command to run after `--`\n\nhint: {hint}\n"),
            "{args:?}"
        );
    }
    let out = ws
        .grove(&["exec", "feat-01", "--", "git", "status", "--short"])
        .success();
    assert_eq!(out.stdout, "");
    // Inside the env, NAME is left out: the first word is the command's.
    let out = ws
        .grove_in(&ws.worktree("feat-01", "front"), &["exec", "git", "status"])
        .failure(2);
    assert!(
        out.stderr.contains("hint: `grove exec -- git status`"),
        "{out}"
    );
}

/// `destroy --force` with nobody to ask and no `--yes` changes nothing when it would throw
/// work away; `--yes` does it; a clean env needs neither.
#[test]
fn destroy_force_without_a_terminal_needs_yes() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    std::fs::write(wt.join("notes.txt"), "mine\n").unwrap();
    let before = ws.snapshot(&["front", "api"]);
    let out = ws.grove(&["destroy", "feat-01", "--force"]).failure(1);
    assert_eq!(
        out.stderr,
        "error: `--force` would throw away work of env `feat-01`, and there is no terminal to ask on; nothing was removed\n  \
         front: uncommitted: notes.txt\n\n\
         hint: `grove destroy feat-01 --force --yes` throws it away; `grove review feat-01` shows it first\n"
    );
    assert_eq!(ws.snapshot(&["front", "api"]), before);
    assert_eq!(
        std::fs::read_to_string(wt.join("notes.txt")).unwrap(),
        "mine\n"
    );

    // A commit that no other branch holds: deleting the branch would lose it.
    std::fs::remove_file(wt.join("notes.txt")).unwrap();
    ws.commit(&wt, "work.txt", "work\n", "Work");
    let before = ws.snapshot(&["front", "api"]);
    let out = ws.grove(&["destroy", "feat-01", "--force"]).failure(1);
    assert!(
        out.stderr
            .contains("\n  front: branch `feat-01` with 1 commit(s) in no other branch: "),
        "{out}"
    );
    assert_eq!(ws.snapshot(&["front", "api"]), before);
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(ws.ps().is_empty());

    // Nothing to lose: `--force` alone goes ahead.
    ws.grove(&["create", "feat-02"]).success();
    ws.grove(&["destroy", "feat-02", "--force"]).success();
    assert!(ws.ps().is_empty());
}

/// The README's first screen: still exactly two set-up commands, then how to get `grove` on
/// PATH (its examples call it by name) and the ports the tests take.
#[test]
fn readme_says_how_to_get_grove_on_path() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (first_block, after) = readme
        .split_once("```console\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .unwrap();
    assert_eq!(
        first_block.lines().filter(|l| l.starts_with("$ ")).count(),
        2,
        "{first_block}"
    );
    let next = after.split("```").next().unwrap();
    assert!(next.contains("`cargo install --locked --path .`"), "{next}");
    assert!(next.contains("20000-29999"), "{next}");
}

/// What the caller left open without close-on-exec (a harness's pipe, a shell's `exec 7>`)
/// stays with the caller: a supervisor, server or review watcher holding it would keep the
/// caller's pipe open for as long as it runs, and whoever reads that pipe to its end would hang.
#[test]
fn a_file_the_caller_left_open_does_not_reach_what_grove_starts() {
    let ws = crate::common::servers_ws("", "");
    let held = ws.tmp.path().join("held-by-the-caller");
    // Above 9 too: a POSIX shell cannot name those, bash can (`exec 12>`).
    let with_fds = |args: &str| {
        run(ws
            .command("bash")
            .env("GROVE_REVIEW_WATCH", "always")
            .arg("-c")
            .arg(format!(
                "exec 7>>'{held}' 12>>'{held}'; exec '{grove}' {args}",
                held = held.display(),
                grove = crate::common::grove_bin()
            )))
    };
    let holds = |pid: i32| -> Option<String> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .find(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == held))
            .map(|fd| fd.file_name().to_string_lossy().into_owned())
    };
    // `create` returns once the supervisor registered, which it does after closing them; the
    // servers it starts never had them.
    with_fds("create feat-01").success();
    let procs = ws.tagged_processes();
    assert!(procs.len() >= 2, "a supervisor and a server run: {procs:?}");
    for (pid, what) in procs {
        assert_eq!(holds(pid), None, "{what} (pid {pid}) holds the caller's fd");
    }
    // The watcher is started in the background, and closes them as it starts: looked at once
    // it serves (the next review asks it; it carries no tag, and is found by its command line).
    with_fds("review --json").success();
    assert!(
        wait_until(10, || !ws.watchers().is_empty()),
        "no review watcher started"
    );
    assert!(
        wait_until(10, || {
            with_fds("review --json").success();
            ws.watchers().iter().all(|p| holds(*p).is_none())
        }),
        "the watcher holds the caller's fd"
    );
    // `grove exec` is the exception: its command is the caller's, and gets the caller's fds.
    with_fds("exec feat-01 -- bash -c 'echo through-exec >&12'").success();
    assert_eq!(std::fs::read_to_string(&held).unwrap(), "through-exec\n");
    // The watcher exits on its own once the workspace is gone.
    ws.grove(&["destroy", "feat-01"]).success();
}

/// A file deleted with `git rm` (staged), one deleted by hand and one taken out of the index
/// but kept (`git rm --cached`: deleted in the index, untracked in the worktree) are each one
/// file of work, in `review`, in what `destroy` refuses to lose and in `diff --dirty`.
#[test]
fn a_staged_deletion_is_shown_once() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let front = ws.repo("front");
    ws.commit(&front, "gone-staged.txt", "a\n", "add one");
    ws.commit(&front, "gone-by-hand.txt", "b\n", "add two");
    ws.grove(&["create", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    ws.git(&wt, &["rm", "--quiet", "gone-staged.txt"]);
    std::fs::remove_file(wt.join("gone-by-hand.txt")).unwrap();
    // Deleted in the index and untracked in the worktree: one file of work.
    ws.git(&wt, &["rm", "--quiet", "--cached", "README.md"]);
    let out = ws.grove(&["diff", "feat-01", "--dirty"]).success();
    for file in ["gone-staged.txt", "gone-by-hand.txt"] {
        let header = format!("diff --git a/front/{file} b/front/{file}");
        assert_eq!(out.stdout.matches(&header).count(), 1, "{file}:\n{out}");
    }
    let review = ws.grove(&["review", "feat-01"]).success();
    assert!(review.stdout.contains("3 uncommitted"), "{review}");
    let refused = ws.grove(&["destroy", "feat-01", "--yes"]).failure(1);
    for file in ["README.md", "gone-staged.txt", "gone-by-hand.txt"] {
        assert_eq!(
            review
                .stdout
                .matches(&format!("uncommitted: {file}"))
                .count(),
            1,
            "{file}:\n{review}"
        );
        assert_eq!(
            refused.stderr.matches(file).count(),
            1,
            "{file}:\n{refused}"
        );
    }
}
