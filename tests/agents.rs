//! Agents: launched in the env with the ticket and the env's context, under real tmux or
//! headless; state from their hooks; stopped with the env. The agent is
//! `tests/fixtures/fake_agent.sh`, which records how it was started.

use serde_json::Value;

use crate::common::{TestWorkspace, group_members, run, wait_until};

const REPOS: &[&str] = &["front", "api"];

/// A workspace whose front runs the test server, with the fake agent in `mode`, a technical
/// solution and a ticket `tickets/<env>.md`.
fn ws_with_agent(mode: &str, agent_extra: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(REPOS);
    std::fs::write(ws.root.join("SOLUTION.md"), "# The plan\n").unwrap();
    std::fs::create_dir_all(ws.root.join("tickets")).unwrap();
    let config = ws.servers_config("ready = { http = \"/health\" }", "")
        + &ws.agent_config(mode, &format!("solution = \"SOLUTION.md\"\n{agent_extra}"));
    ws.write_config(&config);
    ws
}

fn ticket(ws: &TestWorkspace, name: &str, text: &str) -> String {
    let path = ws.root.join("tickets").join(format!("{name}.md"));
    std::fs::write(&path, text).unwrap();
    format!("tickets/{name}.md")
}

fn agent_json(ws: &TestWorkspace, env: &str) -> Value {
    ws.ps().into_iter().find(|e| e["name"] == env).unwrap()["agent"].clone()
}

fn agent_state_becomes(ws: &TestWorkspace, env: &str, state: &str) -> bool {
    wait_until(20, || agent_json(ws, env)["state"] == state)
}

fn tmux(ws: &TestWorkspace, args: &[&str]) -> crate::common::Out {
    run(ws.command("tmux").args(args))
}

/// What every mode must show: how the agent was started, the context file, the states.
fn check_launch_and_states(ws: &TestWorkspace) {
    // Started in the front worktree, with the env's variables and the prompt as its argument.
    let front = ws.worktree("feat-01", "front");
    assert_eq!(
        ws.agent_record("feat-01", "cwd").trim(),
        front.to_string_lossy()
    );
    let env = ws.agent_record("feat-01", "env");
    assert!(env.contains("GROVE_ENV=feat-01\n"), "{env}");
    assert!(
        env.contains(&format!("PORT={}\n", ws.front_port(0))),
        "{env}"
    );
    assert!(
        env.contains(&format!("API_URL=http://127.0.0.1:{}\n", ws.ports.port(99))),
        "{env}"
    );
    let argv = ws.agent_record("feat-01", "argv");
    assert!(
        argv.contains("Make the login page remember me"),
        "the ticket is in the prompt: {argv}"
    );
    assert!(
        argv.contains(&*ws.root.join("SOLUTION.md").to_string_lossy()),
        "{argv}"
    );
    assert!(argv.contains("grove-context.md"), "{argv}");

    // The context file lists dedicated and shared URLs, and no repo sees it.
    let context = std::fs::read_to_string(ws.env_dir("feat-01").join("grove-context.md")).unwrap();
    assert!(
        context.contains(&format!(
            "`front`: dedicated to this env, http://localhost:{}",
            ws.front_port(0)
        )),
        "{context}"
    );
    assert!(
        context.contains(&format!(
            "`api`: shared with the main stack, http://127.0.0.1:{}",
            ws.ports.port(99)
        )),
        "{context}"
    );
    assert!(
        context.contains("Make the login page remember me"),
        "{context}"
    );
    assert!(context.contains("grove logs feat-01"), "{context}");
    assert_eq!(ws.git(&front, &["status", "--porcelain"]), "");

    // State, from the agent's own reports.
    assert!(agent_state_becomes(ws, "feat-01", "working"));
    ws.agent_step("feat-01", "go-waiting");
    assert!(agent_state_becomes(ws, "feat-01", "waiting"));
    let ps = ws.grove(&["ps"]).success();
    assert!(
        ps.stdout.contains("AGENT") && ps.stdout.contains("waiting"),
        "{ps}"
    );
    ws.agent_step("feat-01", "go-done");
    assert!(agent_state_becomes(ws, "feat-01", "done"));
}

#[test]
fn tmux_agent_in_a_window_of_the_workspace_session() {
    let ws = ws_with_agent("tmux", "");
    let t = ticket(&ws, "feat-01", "Make the login page remember me.\n");
    let out = ws
        .grove(&["create", "feat-01", "--agent", "--ticket", &t])
        .success();
    assert!(out.stderr.contains("started in tmux window"), "{out}");
    check_launch_and_states(&ws);

    let windows = tmux(
        &ws,
        &[
            "list-windows",
            "-a",
            "-F",
            "#{session_name} #{window_name} #{pane_current_path}",
        ],
    )
    .success();
    let line = windows
        .stdout
        .lines()
        .find(|l| l.contains(" feat-01 "))
        .unwrap_or_else(|| panic!("{windows}"));
    assert!(line.starts_with("grove-"), "{line}");
    assert!(
        line.ends_with(&*ws.worktree("feat-01", "front").to_string_lossy()),
        "{line}"
    );
    let pid: i32 = ws.agent_record("feat-01", "pid").trim().parse().unwrap();

    // No terminal here: attach says what to run instead of hanging.
    let out = ws.grove(&["attach", "feat-01"]).failure(1);
    assert!(
        out.stderr.contains("no terminal") && out.stderr.contains("tmux -S"),
        "{out}"
    );

    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(wait_until(10, || group_members(pid).is_empty()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    let windows = tmux(&ws, &["list-windows", "-a", "-F", "#{window_name}"]);
    assert!(!windows.stdout.contains("feat-01"), "{windows}");
}

#[test]
fn headless_agent_under_the_supervisor_with_its_log() {
    let ws = ws_with_agent("headless", "");
    let t = ticket(&ws, "feat-01", "Make the login page remember me.\n");
    ws.grove(&["create", "feat-01"]).success();
    let out = ws.grove(&["agent", "feat-01", "--ticket", &t]).success();
    assert!(out.stderr.contains("started headless"), "{out}");
    check_launch_and_states(&ws);
    let log = ws.grove(&["logs", "feat-01", "agent"]).success().stdout;
    assert!(
        log.contains("fake agent of feat-01 starting") && log.contains("done"),
        "{log}"
    );
    let all = ws.grove(&["logs", "feat-01"]).success().stdout;
    assert!(all.contains("agent | working on it"), "{all}");
    let agent = agent_json(&ws, "feat-01");
    assert_eq!(agent["mode"], "headless");
    let pid: i32 = ws.agent_record("feat-01", "pid").trim().parse().unwrap();

    let out = ws.grove(&["attach", "feat-01"]).failure(1);
    assert!(out.stderr.contains("grove logs feat-01 agent -f"), "{out}");
    // A second agent is refused while this one runs.
    let out = ws.grove(&["agent", "feat-01"]).failure(1);
    assert!(out.stderr.contains("already has a running agent"), "{out}");

    ws.grove(&["down", "feat-01"]).success();
    assert!(wait_until(15, || !std::path::Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()));
    assert!(agent_json(&ws, "feat-01").is_null());
    ws.grove(&["destroy", "feat-01"]).success();
}

#[test]
fn prompt_on_stdin_and_an_agent_that_exits() {
    let ws = ws_with_agent(
        "headless",
        "prompt_via = \"stdin\"\nprompt = \"Do {{ ticket_text }} in {{ env }}\"",
    );
    let t = ticket(&ws, "feat-01", "the thing");
    ws.grove(&["create", "feat-01"]).success();
    let out = run(ws
        .cmd()
        .env("FAKE_AGENT_STDIN", "1")
        .env("FAKE_AGENT_EXIT", "1")
        .args(["agent", "feat-01", "--ticket", &t]));
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        ws.agent_record("feat-01", "stdin"),
        "Do the thing in feat-01"
    );
    ws.agent_step("feat-01", "go-waiting");
    ws.agent_step("feat-01", "go-done");
    // The process is gone after it reported `done`: its work stays done.
    assert!(wait_until(20, || agent_json(&ws, "feat-01")["last_exit"] == "exit 0"));
    assert_eq!(agent_json(&ws, "feat-01")["state"], "done");
}

#[test]
fn claude_hook_json_maps_to_states() {
    let ws = ws_with_agent("headless", "");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["agent", "feat-01"]).success();
    assert!(agent_state_becomes(&ws, "feat-01", "working"));
    let wt = ws.worktree("feat-01", "front");
    let hook = |json: &str| {
        ws.agent_hook(&wt, json).success();
    };
    let cwd = wt.to_string_lossy();
    for (json, state) in [
        (
            format!(
                r#"{{"hook_event_name":"Notification","notification_type":"permission_prompt","cwd":"{cwd}"}}"#
            ),
            "waiting",
        ),
        (
            format!(r#"{{"hook_event_name":"PreToolUse","tool_name":"Bash","cwd":"{cwd}"}}"#),
            "working",
        ),
        (
            format!(
                r#"{{"hook_event_name":"Notification","notification_type":"idle_prompt","cwd":"{cwd}"}}"#
            ),
            "waiting",
        ),
        (
            format!(r#"{{"hook_event_name":"UserPromptSubmit","cwd":"{cwd}"}}"#),
            "working",
        ),
        (
            format!(r#"{{"hook_event_name":"Stop","cwd":"{cwd}"}}"#),
            "done",
        ),
    ] {
        hook(&json);
        assert_eq!(agent_json(&ws, "feat-01")["state"], state, "after {json}");
    }
    // A hook outside any env (or with junk) says nothing and never fails the agent.
    hook("not json");
    let out = run(ws
        .cmd()
        .current_dir(ws.tmp.path())
        .args(["agent-status", "--hook"]));
    assert_eq!(out.code, 0, "{out}");
    // Explicit states, and a bad one.
    ws.grove(&["agent-status", "waiting", "--env", "feat-01"])
        .success();
    assert_eq!(agent_json(&ws, "feat-01")["state"], "waiting");
    ws.grove(&["agent-status", "sleeping", "--env", "feat-01"])
        .failure(2);
}

#[test]
fn hooks_install_merges_into_the_users_settings() {
    let ws = ws_with_agent("headless", "");
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    let wt = ws.worktree("feat-01", "front");
    std::fs::create_dir_all(wt.join(".claude")).unwrap();
    std::fs::write(
        wt.join(".claude/settings.local.json"),
        r#"{"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "say done"}]}]}}"#,
    )
    .unwrap();
    ws.grove(&["hooks", "install", "claude", "feat-01"])
        .success();
    ws.grove(&["hooks", "install", "claude", "feat-01"])
        .success();
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(wt.join(".claude/settings.local.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["model"], "opus");
    let stop = v["hooks"]["Stop"].as_array().unwrap();
    assert_eq!(stop.len(), 2, "{v}");
    assert_eq!(stop[0]["hooks"][0]["command"], "say done");
    assert_eq!(stop[1]["hooks"][0]["command"], "grove agent-status --hook");
    for event in [
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
        "Notification",
        "SessionEnd",
    ] {
        assert_eq!(
            v["hooks"][event].as_array().unwrap().len(),
            1,
            "{event}: {v}"
        );
    }
    assert_eq!(
        ws.git(&wt, &["status", "--porcelain"]),
        "",
        "the settings file stays out of git"
    );
    // Without NAME: the worktree holding the current folder.
    let out = ws
        .grove_in(
            &ws.worktree("feat-01", "front"),
            &["hooks", "install", "claude"],
        )
        .success();
    assert!(out.stderr.contains("installed grove's hooks in"), "{out}");
}

#[test]
fn fan_out_five_tickets() {
    let ws = ws_with_agent("headless", "");
    for i in 1..=5 {
        ticket(&ws, &format!("t{i}"), &format!("Ticket number {i}.\n"));
    }
    let out = ws
        .grove(&[
            "create",
            "--tickets",
            "tickets/*.md",
            "--agent",
            "--jobs",
            "3",
        ])
        .success();
    for i in 1..=5 {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("t{i} ")) && l.contains(" up ")),
            "{out}"
        );
    }
    let envs = ws.ps();
    assert_eq!(envs.len(), 5);
    let mut ports = std::collections::BTreeSet::new();
    for e in &envs {
        assert_eq!(e["status"], "running", "{e}");
        assert!(ports.insert(e["layers"][0]["port"].as_u64().unwrap()));
        let env = e["name"].as_str().unwrap();
        let argv = ws.agent_record(env, "argv");
        assert!(
            argv.contains(&format!("Ticket number {}", &env[1..])),
            "{argv}"
        );
    }
    assert!(envs.iter().all(|e| wait_until(20, || {
        !agent_json(&ws, e["name"].as_str().unwrap()).is_null()
    })));
}

#[test]
fn fan_out_with_one_failing_setup_makes_the_other_four() {
    let ws = TestWorkspace::with_repos(REPOS);
    std::fs::create_dir_all(ws.root.join("tickets")).unwrap();
    let config = ws.servers_config("setup = [\"test \\\"$GROVE_ENV\\\" != t3\"]", "")
        + &ws.agent_config("headless", "");
    ws.write_config(&config);
    for i in 1..=5 {
        ticket(&ws, &format!("t{i}"), "x");
    }
    let out = ws
        .grove(&["create", "--tickets", "tickets/t1.md", "tickets/t[2-5].md"])
        .failure(1);
    assert!(
        out.stderr.contains("ticket `tickets/t[2-5].md` not found"),
        "`[` is not a pattern: {out}"
    );
    let out = ws
        .grove(&["create", "--tickets", "tickets/*.md", "--agent"])
        .failure(1);
    let t3 = out
        .stdout
        .lines()
        .find(|l| l.starts_with("t3 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        t3.contains("failed") && t3.contains("setup command"),
        "{t3}"
    );
    assert!(out.stderr.contains("1 of 5 envs failed"), "{out}");
    let names: Vec<String> = ws
        .ps()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(!names.contains(&"t3".to_string()));
    assert!(
        !ws.branches("front").contains(&"t3".to_string()),
        "the failed env left nothing"
    );
}

#[test]
fn tmux_missing_is_a_clear_error() {
    let ws = ws_with_agent("tmux", "");
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    let empty = ws.tmp.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(ws.cmd().env("PATH", &empty).args(["agent", "feat-01"]));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("tmux is not installed"), "{out}");
    assert!(out.stderr.contains("mode = \"headless\""), "{out}");
}

#[test]
fn no_agent_configured() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    let out = ws.grove(&["agent", "feat-01"]).failure(1);
    assert!(out.stderr.contains("has no `[agent]`"), "{out}");
    let out = ws.grove(&["attach", "feat-01"]).failure(1);
    assert!(out.stderr.contains("env `feat-01` has no agent"), "{out}");
}

#[test]
fn an_agent_that_never_reports_is_running_then_exited() {
    let ws = ws_with_agent("headless", "");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["agent", "feat-01", "--command", "sleep 30; :"])
        .success();
    let agent = agent_json(&ws, "feat-01");
    assert_eq!(agent["state"], "running", "{agent}");
    let pid = i32::try_from(agent["pid"].as_i64().unwrap()).unwrap();
    // The agent dies: its own process, not a report, says so.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(agent_state_becomes(&ws, "feat-01", "exited"));
    assert_eq!(agent_json(&ws, "feat-01")["last_exit"], "killed by SIGKILL");
    // A new agent may start once the old one is gone.
    ws.grove(&["agent", "feat-01", "--command", "sleep 30; :"])
        .success();
    assert_eq!(agent_json(&ws, "feat-01")["state"], "running");
}

#[test]
fn inside_tmux_the_window_opens_in_the_users_server() {
    let ws = ws_with_agent("tmux", "");
    let socket = ws.tmp.path().join("users-tmux");
    let socket_s = socket.to_string_lossy().into_owned();
    /// Stops the user's tmux server, even when the test fails half-way.
    struct Server<'a>(&'a TestWorkspace, String);
    impl Drop for Server<'_> {
        fn drop(&mut self) {
            let _ = run(self.0.command("tmux").args(["-S", &self.1, "kill-server"]));
        }
    }
    let _server = Server(&ws, socket_s.clone());
    run(ws
        .command("tmux")
        .args(["-S", &socket_s, "new-session", "-d", "-s", "mine"]))
    .success();
    ws.grove(&["create", "feat-01"]).success();
    let out = run(ws
        .cmd()
        .env("TMUX", format!("{socket_s},1,0"))
        .args(["agent", "feat-01"]));
    assert_eq!(out.code, 0, "{out}");
    let windows = run(ws.command("tmux").args([
        "-S",
        &socket_s,
        "list-windows",
        "-a",
        "-F",
        "#{session_name}:#{window_name}",
    ]))
    .success();
    assert!(
        windows
            .stdout
            .lines()
            .any(|l| l.starts_with("grove-") && l.ends_with(":feat-01")),
        "{windows}"
    );
    assert!(agent_state_becomes(&ws, "feat-01", "working"));
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    let windows = run(ws.command("tmux").args([
        "-S",
        &socket_s,
        "list-windows",
        "-a",
        "-F",
        "#{window_name}",
    ]))
    .success();
    assert!(!windows.stdout.contains("feat-01"), "{windows}");
}

#[test]
fn tmux_gets_no_format_from_a_branch_name_and_long_tickets_fit() {
    let ws = ws_with_agent("tmux", "");
    let name = "y#(touch${IFS}PWNED)";
    let t = ticket(&ws, "big", &"A long ticket line.\n".repeat(1200));
    ws.grove(&["create", name, "--agent", "--ticket", &t])
        .success();
    let argv = ws.agent_record(name, "argv");
    assert!(
        argv.matches("A long ticket line.").count() >= 1200,
        "the whole ticket reached the agent"
    );
    assert_eq!(
        ws.agent_record(name, "cwd").trim(),
        ws.worktree(name, "front").to_string_lossy()
    );
    let walk = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .any(|e| e.file_name() == "PWNED")
    };
    assert!(
        !walk(&ws.root) && !walk(&ws.worktree(name, "front")),
        "a branch name ran as a tmux command"
    );
}

#[test]
fn an_agent_that_exits_at_once_leaves_its_window_and_state() {
    let ws = ws_with_agent("tmux", "");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&[
        "agent",
        "feat-01",
        "--command",
        "echo last words; sleep 0.5; :",
    ])
    .success();
    assert!(agent_state_becomes(&ws, "feat-01", "exited"));
    let window = agent_json(&ws, "feat-01")["window"]
        .as_str()
        .unwrap()
        .to_string();
    let id = window.rsplit(':').next().unwrap().to_string();
    // The window stays, with the agent's last output on screen.
    let screen = tmux(&ws, &["capture-pane", "-p", "-S", "-", "-t", &id])
        .success()
        .stdout;
    assert!(screen.contains("last words"), "{screen}");
}

#[test]
fn two_tickets_for_one_env_are_refused() {
    let ws = ws_with_agent("headless", "");
    std::fs::create_dir_all(ws.root.join("other")).unwrap();
    ticket(&ws, "same", "one");
    std::fs::write(ws.root.join("other/same.md"), "two").unwrap();
    let out = ws
        .grove(&["create", "--tickets", "tickets/same.md", "other/same.md"])
        .failure(1);
    assert!(
        out.stderr.contains("two tickets would make env `same`"),
        "{out}"
    );
    assert!(ws.ps().is_empty());
}

#[test]
fn the_tmux_agents_process_is_the_one_watched() {
    let ws = ws_with_agent("tmux", "");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["agent", "feat-01", "--command", "sleep 30; :"])
        .success();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(agent_json(&ws, "feat-01")["state"], "running");
}
