//! The review loop: the gate when an agent stops (checks, a reviewer agent, the ticket's
//! criteria), feedback carried back into the agent (Claude Code's Stop hook, a tmux pane,
//! a headless relaunch), auto-fix rounds, and the landing plan. The implementing agent is
//! `tests/fixtures/loop_agent.py`, the reviewer `tests/fixtures/fake_reviewer.sh`: both
//! record what they were given.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::common::{TestWorkspace, fixture, wait_until};

/// front (default) and api, no servers; `front_extra` goes in front's table, `tail` after.
fn ws(front_extra: &str, tail: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.write_config(&(ws.standard_config(front_extra) + tail));
    std::fs::create_dir_all(ws.root.join("tickets")).unwrap();
    ws
}

fn agent(mode: &str, extra: &str) -> String {
    format!(
        "\n[agent]\ncommand = \"python3 {}\"\nmode = \"{mode}\"\n{extra}\n",
        fixture("loop_agent.py").display()
    )
}

fn reviewer(extra: &str) -> String {
    format!(
        "\n[review]\ncommand = \"sh {}\"\n{extra}\n",
        fixture("fake_reviewer.sh").display()
    )
}

fn record_dir(ws: &TestWorkspace, env: &str) -> PathBuf {
    ws.tmp
        .path()
        .canonicalize()
        .unwrap()
        .join("agents")
        .join(env)
}

/// Waits for the record `name` of `env` and reads it.
fn record(ws: &TestWorkspace, env: &str, name: &str) -> String {
    let p = record_dir(ws, env).join(name);
    assert!(
        wait_until(30, || p.exists()),
        "{} never written\n{}",
        p.display(),
        logs(ws, env)
    );
    std::fs::read_to_string(p).unwrap()
}

/// What to look at when a wait fails: the env's gate, agent and supervisor logs, its messages.
fn logs(ws: &TestWorkspace, env: &str) -> String {
    let mut s = String::new();
    for log in ["gate", "agent", "supervisor"] {
        let out = ws.grove(&["logs", env, log, "-n", "60"]);
        s.push_str(&format!("--- {log}\n{}{}", out.stdout, out.stderr));
    }
    s.push_str(&format!(
        "--- status.log\n{}",
        std::fs::read_to_string(record_dir(ws, env).join("status.log")).unwrap_or_default()
    ));
    let list = ws.grove(&["feedback", env, "--list"]);
    s.push_str(&format!("--- feedback\n{}{}", list.stdout, list.stderr));
    s
}

fn step(ws: &TestWorkspace, env: &str, name: &str) {
    let d = record_dir(ws, env);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), "").unwrap();
}

fn next_verdict(ws: &TestWorkspace, env: &str, text: &str) {
    let d = record_dir(ws, env);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("next-verdict"), text).unwrap();
}

fn review_env(ws: &TestWorkspace, env: &str) -> Value {
    let json = ws.grove(&["review", env, "--json"]).success().json();
    assert_eq!(json["version"], 2);
    json["env"].clone()
}

/// Waits until the env's gate has finished `n` runs in all (its log says so each time).
fn gate_runs(ws: &TestWorkspace, env: &str, n: usize) -> Value {
    let log = || ws.grove(&["logs", env, "gate", "-n", "1000"]).stdout;
    assert!(
        wait_until(60, || log().matches("[grove] gate: ").count() >= n
            && review_env(ws, env)["gate"]["phase"] == "finished"),
        "the gate did not finish {n} run(s)\n{}",
        logs(ws, env)
    );
    review_env(ws, env)
}

fn agent_state(ws: &TestWorkspace, env: &str) -> String {
    ws.ps().into_iter().find(|e| e["name"] == env).unwrap()["agent"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

const TICKET: &str = "# Remember me\n\nThe login page forgets the user.\n\n\
    ## Acceptance criteria\n\n- [ ] a \"remember me\" box on the form\n\
    - [ ] the session lasts 30 days when ticked\n- [x] no change to the API\n";

/// The first auto-fix round carries the failing `check` and the end of its log.
fn assert_failed_check_sent(got: &str) {
    assert!(got.contains("round 1 of 1"), "{got}");
    assert!(got.contains("`check` of layer `front` failed"), "{got}");
    assert!(got.contains("still broken"), "{got}");
}

#[test]
fn done_runs_the_checks_then_the_reviewer_and_review_shows_the_verdict() {
    let ws = ws(
        "check = [\"cat app.txt\", \"grep -q fixed app.txt\"]",
        &(agent("tmux", "") + &reviewer("")),
    );
    std::fs::write(ws.root.join("tickets/feat-01.md"), TICKET).unwrap();
    ws.grove(&[
        "create",
        "feat-01",
        "--agent",
        "--ticket",
        "tickets/feat-01.md",
    ])
    .success();
    // The criteria reach the agent's context.
    let context = std::fs::read_to_string(ws.env_dir("feat-01").join("grove-context.md")).unwrap();
    assert!(
        context.contains("## Acceptance criteria")
            && context.contains("- [ ] the session lasts 30 days when ticked")
            && context.contains("- [x] no change to the API"),
        "{context}"
    );
    // The agent's work: a commit, an uncommitted edit, a new file.
    let front = ws.worktree("feat-01", "front");
    ws.commit(&front, "app.txt", "fixed\n", "remember me");
    std::fs::write(front.join("app.txt"), "fixed\nand more\n").unwrap();
    std::fs::write(front.join("new.txt"), "a new file\n").unwrap();
    next_verdict(
        &ws,
        "feat-01",
        r#"{"version": 1, "verdict": "approve", "summary": "looks right",
            "findings": [{"layer": "front", "path": "app.txt", "line": 2, "severity": "note", "text": "extra line"}],
            "criteria": [{"text": "a \"remember me\" box on the form", "met": true, "evidence": "app.txt"},
                         {"text": "the session lasts 30 days when ticked", "met": false},
                         {"text": "no change to the API", "met": true}]}"#,
    );
    step(&ws, "feat-01", "go-done-1");
    let env = gate_runs(&ws, "feat-01", 1);

    // The reviewer ran in the env folder with the ticket, the criteria, a patch per layer
    // (committed, uncommitted and untracked work) and the check results.
    let given = record_dir(&ws, "feat-01").join("review-1");
    let prompt = std::fs::read_to_string(given.join("prompt")).unwrap();
    assert!(prompt.contains("tickets/feat-01.md"), "{prompt}");
    assert!(
        prompt.contains("- [ ] the session lasts 30 days when ticked"),
        "{prompt}"
    );
    assert!(prompt.contains("front.diff"), "{prompt}");
    assert_eq!(
        std::fs::read_to_string(given.join("cwd")).unwrap().trim(),
        ws.env_dir("feat-01").to_string_lossy()
    );
    let diff = std::fs::read_to_string(given.join("front.diff")).unwrap();
    assert!(
        diff.contains("+fixed") && diff.contains("+and more") && diff.contains("+a new file"),
        "{diff}"
    );
    assert!(diff.contains("b/front/app.txt"), "{diff}");
    let checks = std::fs::read_to_string(given.join("checks.md")).unwrap();
    assert!(checks.contains("front: passed"), "{checks}");
    let vars = std::fs::read_to_string(given.join("env")).unwrap();
    assert!(
        vars.contains("GROVE_VERDICT=") && vars.contains("GROVE_ENV=feat-01"),
        "{vars}"
    );
    // The gate was started by the agent's hook, whose Claude Code session variables stay
    // behind; and the reviewer's own report is not the agent's.
    assert!(
        !vars.contains("CLAUDECODE") && !vars.contains("CLAUDE_CODE_"),
        "{vars}"
    );
    assert_eq!(agent_state(&ws, "feat-01"), "done");

    // The verdict, in review --json and in the queue.
    let result = &env["gate"]["result"];
    assert_eq!(result["outcome"], "approved", "{env:#}");
    assert_eq!(result["checks"][0]["passed"], true);
    assert_eq!(result["reviewer"]["verdict"]["findings"][0]["line"], 2);
    assert_eq!(env["state"], "approved");
    assert_eq!(env["urgency"], 1);
    assert_eq!(env["criteria"]["total"], 3);
    assert_eq!(env["criteria"]["met"], 2);
    assert_eq!(env["criteria"]["items"][1]["met"], false);
    let queue = ws.grove(&["review"]).success();
    assert!(
        queue
            .stdout
            .contains("[approved] gate approved, checks green"),
        "{queue}"
    );
    // The criteria are counted once in the env's line, in the queue and in the env's page.
    assert_eq!(queue.stdout.matches("criteria 2/3").count(), 1, "{queue}");
    assert!(queue.stdout.contains("next: look at it"), "{queue}");
    let page = ws.grove(&["review", "feat-01"]).success();
    assert_eq!(page.stdout.matches("criteria 2/3").count(), 1, "{page}");
    let log = ws.grove(&["logs", "feat-01", "gate"]).success();
    assert!(log.stdout.contains("gate: approved: looks right"), "{log}");

    // A new commit makes the verdict stale: the env goes back to be judged.
    ws.commit(&front, "other.txt", "x\n", "more");
    let env = review_env(&ws, "feat-01");
    assert_eq!(env["gate"]["stale"], true);
    assert_ne!(env["state"], "approved");
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

#[test]
fn a_failing_check_goes_back_to_the_agent_once_then_the_env_waits_for_the_human() {
    let ws = ws(
        "check = [\"cat app.txt\", \"grep -q fixed app.txt\"]",
        &(agent("tmux", "") + "\n[review]\nauto_fix = 1\n"),
    );
    std::fs::write(ws.root.join("tickets/feat-01.md"), TICKET).unwrap();
    ws.grove(&[
        "create",
        "feat-01",
        "--agent",
        "--ticket",
        "tickets/feat-01.md",
    ])
    .success();
    let front = ws.worktree("feat-01", "front");
    ws.commit(&front, "app.txt", "still broken\n", "try");
    step(&ws, "feat-01", "go-done-1");

    // Round 1: the failing check, with the end of its log, typed into the agent.
    let got = record(&ws, "feat-01", "received-1");
    assert_failed_check_sent(&got);
    let env = gate_runs(&ws, "feat-01", 1);
    assert_eq!(env["gate"]["rounds"], 1);
    assert_eq!(env["gate"]["result"]["auto_fix_round"], 1);

    // The agent changes something and stops again, still failing: no round 2, the human's turn.
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    ws.commit(
        &front,
        "app.txt",
        "still broken, differently\n",
        "try again",
    );
    step(&ws, "feat-01", "go-done-2");
    let env = gate_runs(&ws, "feat-01", 2);
    let log = ws.grove(&["logs", "feat-01", "gate"]).success().stdout;
    assert!(!log.contains("nothing changed"), "{log}");
    // It stops once more without changing anything: the last result stands.
    ws.grove(&["agent-status", "--env", "feat-01", "done"])
        .success();
    let env3 = gate_runs(&ws, "feat-01", 3);
    assert_eq!(env3["gate"]["result"]["outcome"], "checks-failed");
    assert_eq!(env["gate"]["result"]["outcome"], "checks-failed");
    assert_eq!(env["gate"]["result"]["auto_fix_round"], Value::Null);
    assert_eq!(env["gate"]["rounds"], 1);
    assert_eq!(env["state"], "changes", "{env:#}");
    let log = ws.grove(&["logs", "feat-01", "gate"]).success().stdout;
    assert!(log.contains("nothing changed since the last run"), "{log}");
    assert!(
        env["reason"]
            .as_str()
            .unwrap()
            .contains("after 1 auto-fix round(s)"),
        "{env:#}"
    );
    assert!(env["next"].as_str().unwrap().contains("grove feedback"));
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{list:#}");
    assert_eq!(msgs[0]["source"], "gate");
    assert_eq!(msgs[0]["via"], "tmux");
    assert!(!record_dir(&ws, "feat-01").join("received-2").exists());
    let file = std::fs::read_to_string(ws.env_dir("feat-01").join("grove-feedback.md")).unwrap();
    assert!(file.contains("from grove's review gate"), "{file}");
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

#[test]
fn a_malformed_or_missing_verdict_is_an_error_never_an_approval() {
    let ws = ws("", &reviewer(""));
    ws.grove(&["create", "feat-01"]).success();
    for (verdict, outcome, says) in [
        (
            Some("{\"verdict\": \"approve\""),
            "malformed",
            "verdict is malformed: EOF while parsing",
        ),
        (
            Some("{\"verdict\": \"lgtm\"}"),
            "malformed",
            "verdict is malformed: unknown variant `lgtm`",
        ),
        (None, "no-verdict", "no verdict at $GROVE_VERDICT"),
    ] {
        let _ = std::fs::remove_file(record_dir(&ws, "feat-01").join("next-verdict"));
        if let Some(v) = verdict {
            next_verdict(&ws, "feat-01", v);
        }
        let out = ws.grove(&["gate", "feat-01"]).failure(1);
        assert!(out.stderr.contains(says), "{out}");
        // Said once: what went wrong is not repeated in its own explanation.
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with("error: gate of `feat-01`:"))
            .unwrap_or_else(|| panic!("{out}"));
        let word = if outcome == "malformed" {
            "malformed"
        } else {
            "no verdict"
        };
        assert_eq!(line.matches(word).count(), 1, "{line}");
        let env = review_env(&ws, "feat-01");
        assert_eq!(env["gate"]["result"]["outcome"], outcome, "{env:#}");
        assert_ne!(env["state"], "approved");
        // The reviewer failed, not the agent: the next step is the reviewer's log and a rerun.
        let next = env["next"].as_str().unwrap();
        assert!(next.contains("grove logs feat-01 gate"), "{env:#}");
        assert!(next.contains("grove gate feat-01"), "{env:#}");
        assert!(!next.contains("grove feedback"), "{env:#}");
    }
    next_verdict(&ws, "feat-01", r#"{"verdict": "approve"}"#);
    ws.grove(&["gate", "feat-01"]).success();
    // A verdict left by that run is never read as the next one's.
    let _ = std::fs::remove_file(record_dir(&ws, "feat-01").join("next-verdict"));
    ws.grove(&["gate", "feat-01"]).failure(1);
    assert_eq!(
        review_env(&ws, "feat-01")["gate"]["result"]["outcome"],
        "no-verdict"
    );
}

#[test]
fn a_failing_check_goes_back_to_the_agent_even_when_the_reviewer_writes_no_verdict() {
    let ws = ws(
        "check = [\"cat app.txt\", \"grep -q fixed app.txt\"]",
        &(agent("tmux", "") + &reviewer("auto_fix = 1")),
    );
    ws.grove(&["create", "feat-01", "--agent"]).success();
    let front = ws.worktree("feat-01", "front");
    ws.commit(&front, "app.txt", "still broken\n", "try");
    // No `next-verdict`: the reviewer writes nothing.
    step(&ws, "feat-01", "go-done-1");

    // The failing check reaches the agent all the same; the reviewer's failure does not.
    let got = record(&ws, "feat-01", "received-1");
    assert_failed_check_sent(&got);
    assert!(!got.contains("verdict"), "{got}");
    let env = gate_runs(&ws, "feat-01", 1);
    assert_eq!(env["gate"]["result"]["outcome"], "no-verdict", "{env:#}");
    assert_eq!(env["gate"]["result"]["auto_fix_round"], 1, "{env:#}");
    assert_eq!(env["gate"]["rounds"], 1);

    // Stopped again, still failing, the reviewer still silent: no second round.
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    ws.commit(&front, "app.txt", "still broken, again\n", "try again");
    step(&ws, "feat-01", "go-done-2");
    let env = gate_runs(&ws, "feat-01", 2);
    assert_eq!(env["gate"]["result"]["outcome"], "no-verdict", "{env:#}");
    assert_eq!(env["gate"]["result"]["auto_fix_round"], Value::Null);
    assert_eq!(env["gate"]["rounds"], 1);
    assert!(
        record_dir(&ws, "feat-01").join("review-2").exists(),
        "{}",
        logs(&ws, "feat-01")
    );
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{list:#}");
    assert_eq!(msgs[0]["source"], "gate");
    assert!(!record_dir(&ws, "feat-01").join("received-2").exists());
    // The human is told both: the check failed, and the reviewer is theirs to look at.
    let reason = env["reason"].as_str().unwrap();
    assert!(reason.contains("check failed in front"), "{env:#}");
    assert!(reason.contains("no verdict"), "{env:#}");
    let next = env["next"].as_str().unwrap();
    assert!(next.contains("grove logs feat-01 gate"), "{env:#}");
    let log = ws.grove(&["logs", "feat-01", "gate"]).success().stdout;
    assert!(log.contains("auto-fix round 1 of 1 sent"), "{log}");
    assert!(
        log.contains("the reviewer's failure is for the human"),
        "{log}"
    );
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

/// What Claude Code sends a Stop hook, from `dir`.
fn stop_hook(ws: &TestWorkspace, dir: &std::path::Path, active: bool) -> crate::common::Out {
    let input = serde_json::json!({
        "session_id": "s1", "transcript_path": "/dev/null", "cwd": dir,
        "hook_event_name": "Stop", "stop_hook_active": active,
    });
    hook(ws, dir, &input)
}

#[test]
fn feedback_through_a_claude_code_stop_hook() {
    let ws = ws("", &agent("headless", ""));
    ws.grove(&["create", "feat-01", "--agent"]).success();
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    let front = ws.worktree("feat-01", "front");
    // Nothing queued: the hook says nothing, the agent is done.
    let out = stop_hook(&ws, &front, false);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out}");
    assert_eq!(agent_state(&ws, "feat-01"), "done");
    ws.grove(&["agent-status", "--env", "feat-01", "working"])
        .success();

    let text = "Use the `Session` type; not $HOME; \"quoted\"";
    let sent = ws.grove(&["feedback", "feat-01", text]).success();
    assert!(sent.stderr.contains("queued"), "{sent}");
    let out = stop_hook(&ws, &front, false);
    assert_eq!(out.code, 0, "{out}");
    let answer: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(answer["decision"], "block");
    assert!(
        answer["reason"].as_str().unwrap().starts_with(text),
        "{answer}"
    );
    assert_eq!(agent_state(&ws, "feat-01"), "working");

    // Delivered once; and a Stop while already continuing never blocks.
    ws.grove(&["feedback", "feat-01", "second"]).success();
    let out = stop_hook(&ws, &front, true);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out}");
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    assert_eq!(list["messages"][0]["via"], "stop-hook");
    assert_eq!(list["messages"][1]["via"], Value::Null, "{list:#}");
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

#[test]
fn feedback_in_tmux_waits_for_the_agent_and_arrives_exactly() {
    let ws = ws("", &agent("tmux", ""));
    ws.grove(&["create", "feat-01", "--agent"]).success();
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    let marker = ws.tmp.path().join("pwned");
    let text = format!(
        "Rename it.\n$(touch {m}); touch {m}; `touch {m}`\n#{{pane_id}} #(touch {m}) \"q\" 'q' \\ done",
        m = marker.display()
    );
    // The human opened a shell beside the agent, and it has the focus.
    let window = ws.ps()[0]["agent"]["window"].as_str().unwrap().to_string();
    let shell_got = ws.tmp.path().join("shell-got");
    let split = crate::common::run(ws.command("tmux").args([
        "split-window",
        "-t",
        &window,
        &format!("cat > {}", shell_got.display()),
    ]));
    assert_eq!(split.code, 0, "{split}");
    let sent = ws.grove(&["feedback", "feat-01", &text]).success();
    assert!(
        sent.stderr.contains("queued: the agent is working"),
        "{sent}"
    );
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    assert_eq!(list["messages"][0]["delivered_at"], Value::Null);

    step(&ws, "feat-01", "go-done-1");
    assert_eq!(record(&ws, "feat-01", "received-1"), text);
    assert!(!marker.exists(), "something in the message was run");
    assert_eq!(std::fs::read_to_string(&shell_got).unwrap_or_default(), "");
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    assert_eq!(list["messages"][0]["via"], "tmux");

    // Once it waits again, a message goes in at once.
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    step(&ws, "feat-01", "go-done-2");
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "done"));
    let sent = ws.grove(&["feedback", "feat-01", "--file", "-"]);
    assert_eq!(sent.code, 1, "`--file -` is a file named `-`: {sent}");
    // An escape sequence cannot end the paste early: control characters are not typed.
    std::fs::write(
        ws.tmp.path().join("msg.md"),
        "from a file\u{1b}[201~\u{3}, still\n",
    )
    .unwrap();
    let msg = ws.tmp.path().join("msg.md");
    let sent = ws
        .grove(&["feedback", "feat-01", "--file", msg.to_str().unwrap()])
        .success();
    assert!(
        sent.stderr.contains("pasted into the agent's tmux pane"),
        "{sent}"
    );
    assert_eq!(
        record(&ws, "feat-01", "received-2"),
        "from a file[201~, still"
    );
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

/// Writes the step `name` of `env` with `text` in it, whole (the agent reads it once it exists).
fn step_with(ws: &TestWorkspace, env: &str, name: &str, text: &str) {
    let d = record_dir(ws, env);
    std::fs::create_dir_all(&d).unwrap();
    let tmp = d.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, d.join(name)).unwrap();
}

fn feedback_list(ws: &TestWorkspace, env: &str) -> Value {
    ws.grove(&["feedback", env, "--list", "--json"])
        .success()
        .json()
}

#[test]
fn feedback_in_tmux_goes_in_when_the_agent_waits_at_its_prompt() {
    let ws = ws("", &agent("tmux", ""));
    ws.grove(&["create", "feat-01", "--agent"]).success();
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    // Queued while it works; the agent then waits for input without ever being done (no
    // gate, no Stop): that is enough for the message to go in.
    let text = "Use the `Session` type; not $HOME";
    let sent = ws.grove(&["feedback", "feat-01", text]).success();
    assert!(
        sent.stderr.contains("queued: the agent is working"),
        "{sent}"
    );
    step(&ws, "feat-01", "go-waiting-1");
    assert_eq!(record(&ws, "feat-01", "received-1"), text);
    let list = feedback_list(&ws, "feat-01");
    assert_eq!(list["messages"][0]["via"], "tmux", "{list:#}");

    // Already waiting at its prompt: a message goes in at once.
    step(&ws, "feat-01", "go-waiting-2");
    assert!(
        wait_until(20, || agent_state(&ws, "feat-01") == "waiting"),
        "{}",
        logs(&ws, "feat-01")
    );
    let sent = ws.grove(&["feedback", "feat-01", "second"]).success();
    assert!(
        sent.stderr.contains("pasted into the agent's tmux pane"),
        "{sent}"
    );
    assert_eq!(record(&ws, "feat-01", "received-2"), "second");
    // It took the message: it works on it.
    assert_eq!(agent_state(&ws, "feat-01"), "working");
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

#[test]
fn feedback_in_tmux_is_never_typed_into_a_permission_dialog() {
    let ws = ws("", &agent("tmux", ""));
    ws.grove(&["create", "feat-01", "--agent"]).success();
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    let waiting = || {
        assert!(
            wait_until(20, || agent_state(&ws, "feat-01") == "waiting"),
            "{}",
            logs(&ws, "feat-01")
        );
    };
    let held = "queued: the agent is waiting; it gets it once its permission dialog is answered";

    // Claude Code asks to run a tool (its Notification hook): the dialog takes any key typed.
    let ask = serde_json::json!({
        "hook_event_name": "Notification", "notification_type": "permission_prompt",
        "message": "Claude needs your permission to use Bash", "session_id": "s1",
    });
    step_with(&ws, "feat-01", "go-permission-1", &ask.to_string());
    waiting();
    let text = "No; use the `Session` type";
    let sent = ws.grove(&["feedback", "feat-01", text]).success();
    let list = feedback_list(&ws, "feat-01");
    // The human denies it: the agent is back at its prompt without a Stop, and says so.
    step_with(&ws, "feat-01", "answer-1", "deny");
    assert_eq!(
        record(&ws, "feat-01", "dialog-1"),
        "",
        "the message was typed into the permission dialog"
    );
    assert!(sent.stderr.contains(held), "{sent}");
    assert_eq!(list["messages"][0]["delivered_at"], Value::Null, "{list:#}");
    assert_eq!(record(&ws, "feat-01", "received-1"), text);
    let list = feedback_list(&ws, "feat-01");
    assert_eq!(list["messages"][0]["via"], "tmux", "{list:#}");

    // Its PermissionRequest event; allowed: the tool runs, the turn goes on, and the message
    // waits for the turn's end.
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    let ask = serde_json::json!({
        "hook_event_name": "PermissionRequest", "tool_name": "Bash",
        "tool_input": {"command": "rm -rf build"}, "session_id": "s1",
    });
    step_with(&ws, "feat-01", "go-permission-2", &ask.to_string());
    waiting();
    let sent = ws.grove(&["feedback", "feat-01", "second"]).success();
    step_with(&ws, "feat-01", "answer-2", "allow");
    assert_eq!(
        record(&ws, "feat-01", "dialog-2"),
        "",
        "the message was typed into the permission dialog"
    );
    assert!(sent.stderr.contains(held), "{sent}");
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    let list = feedback_list(&ws, "feat-01");
    assert_eq!(list["messages"][1]["delivered_at"], Value::Null, "{list:#}");
    step(&ws, "feat-01", "go-done-2");
    assert_eq!(record(&ws, "feat-01", "received-2"), "second");
    let list = feedback_list(&ws, "feat-01");
    assert_eq!(list["messages"][1]["via"], "tmux", "{list:#}");
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

#[test]
fn headless_feedback_relaunches_the_agent_with_continue() {
    let ws = ws(
        "",
        &agent(
            "headless",
            &format!(
                "continue = \"python3 {} --continued\"",
                fixture("loop_agent.py").display()
            ),
        ),
    );
    ws.grove(&["create", "feat-01", "--agent"]).success();
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    // Running: queued; it ends; the supervisor relaunches it with the message.
    let sent = ws
        .grove(&["feedback", "feat-01", "first; $(nothing)"])
        .success();
    assert!(
        sent.stderr.contains("queued: the agent is running"),
        "{sent}"
    );
    step(&ws, "feat-01", "go-done-1");
    let argv = record(&ws, "feat-01", "argv-2");
    assert_eq!(argv, "--continued\n---\nfirst; $(nothing)");
    // Exited (after saying it is done): relaunched at once.
    step(&ws, "feat-01", "go-done-2");
    assert!(wait_until(20, || {
        let env = ws
            .ps()
            .into_iter()
            .find(|e| e["name"] == "feat-01")
            .unwrap();
        env["agent"]["pid"].is_null() && env["agent"]["last_exit"].is_string()
    }));
    assert_eq!(agent_state(&ws, "feat-01"), "done");
    let sent = ws.grove(&["feedback", "feat-01", "second"]).success();
    assert!(sent.stderr.contains("relaunched"), "{sent}");
    assert_eq!(record(&ws, "feat-01", "argv-3"), "--continued\n---\nsecond");
    let file = std::fs::read_to_string(ws.env_dir("feat-01").join("grove-feedback.md")).unwrap();
    assert!(
        file.contains("first; $(nothing)") && file.contains("second"),
        "{file}"
    );
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

#[test]
fn a_comment_carries_the_hunk_it_is_about() {
    let ws = ws("", &agent("headless", ""));
    let body: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    ws.commit(&ws.repo("front"), "app.txt", &body, "base text");
    ws.grove(&["create", "feat-01"]).success();
    let front = ws.worktree("feat-01", "front");
    let changed = body.replace("line 20\n", "line twenty\n");
    std::fs::write(front.join("app.txt"), &changed).unwrap();
    let out = ws
        .grove(&[
            "review",
            "feat-01",
            "--comment",
            "front:app.txt:20",
            "spell it as a number",
        ])
        .success();
    assert!(out.stderr.contains("has no agent"), "{out}");
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    let msg = list["messages"][0]["text"].as_str().unwrap();
    assert!(
        msg.starts_with("Review comment on front:app.txt:20"),
        "{msg}"
    );
    assert!(
        msg.contains("+line twenty") && msg.contains("-line 20"),
        "{msg}"
    );
    assert!(msg.ends_with("spell it as a number"), "{msg}");
    assert_eq!(list["messages"][0]["source"], "comment");

    // A path is literal, never a pattern; a long hunk is quoted around the line.
    std::fs::create_dir_all(front.join("pages")).unwrap();
    std::fs::write(front.join("pages/[Id].vue"), "THE PAGE\n").unwrap();
    std::fs::write(front.join("pages/I.vue"), "OTHER FILE\n").unwrap();
    let long: String = (1..=200).map(|i| format!("row {i}\n")).collect();
    std::fs::write(front.join("long.txt"), &long).unwrap();
    ws.git(&front, &["add", "-A"]);
    ws.grove(&[
        "review",
        "feat-01",
        "--comment",
        "front:pages/[Id].vue:1",
        "x",
    ])
    .success();
    ws.grove(&["review", "feat-01", "--comment", "front:long.txt:150", "y"])
        .success();
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    let page = list["messages"][1]["text"].as_str().unwrap();
    assert!(
        page.contains("+THE PAGE") && !page.contains("OTHER FILE"),
        "{page}"
    );
    let cut = list["messages"][2]["text"].as_str().unwrap();
    assert!(
        cut.contains("+row 150\n") && !cut.contains("+row 100\n"),
        "{cut}"
    );

    for (at, says) in [
        ("front:app.txt:99", "has no line 99"),
        ("front:app.txt:0", "is not LAYER:PATH:LINE"),
        ("front:app.txt", "is not LAYER:PATH:LINE"),
        ("api:app.txt:1", "has no worktree for layer `api`"),
        ("front:../x:1", "is not a path inside"),
    ] {
        let out = ws
            .grove(&["review", "feat-01", "--comment", at, "x"])
            .failure(1);
        assert!(out.stderr.contains(says), "{at}: {out}");
    }
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    assert_eq!(list["messages"].as_array().unwrap().len(), 3);
    // The feedback file is never written through a link to elsewhere.
    let outside = ws.tmp.path().join("outside.txt");
    std::fs::write(&outside, "mine\n").unwrap();
    let file = ws.env_dir("feat-01").join("grove-feedback.md");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&outside, &file).unwrap();
    let out = ws.grove(&["feedback", "feat-01", "z"]).success();
    assert!(out.stderr.contains("could not append"), "{out}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "mine\n");
}

#[test]
fn ctrl_c_stops_the_gate_without_a_verdict_or_an_auto_fix_round() {
    let ws = ws("check = [\"sleep 30\"]", "\n[review]\nauto_fix = 1\n");
    ws.grove(&["create", "feat-01"]).success();
    let child = ws
        .cmd()
        .args(["gate", "feat-01"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = || ws.grove(&["logs", "feat-01", "gate"]).stdout;
    assert!(
        wait_until(20, || log().contains("running the checks")),
        "{}",
        log()
    );
    let pid = child.id().to_string();
    crate::common::run(ws.command("kill").args(["-INT", &pid])).success();
    let out = crate::common::finish(child);
    assert_eq!(out.code, 130, "{out}");
    let env = review_env(&ws, "feat-01");
    assert_eq!(env["gate"]["result"]["outcome"], "interrupted", "{env:#}");
    assert_eq!(env["gate"]["rounds"], 0);
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    assert!(list["messages"].as_array().unwrap().is_empty(), "{list:#}");
}

#[test]
fn the_plan_lands_the_envs_without_conflicts_first() {
    let ws = ws("", "");
    let main = ws.repo("front");
    let body: String = (1..=40).map(|i| format!("line {i}\n")).collect();
    ws.commit(&main, "shared.txt", &body, "shared");
    for e in ["a", "b", "c", "d"] {
        ws.grove(&["create", e]).success();
    }
    let edit = |env: &str, file: &str, from: &str, to: &str| {
        let wt = ws.worktree(env, "front");
        let text = std::fs::read_to_string(wt.join(file))
            .unwrap_or_default()
            .replace(from, to);
        ws.commit(&wt, file, &text, &format!("{env} edits"));
    };
    // A and B change the same line; C changes another line of that file; D its own file.
    edit("a", "shared.txt", "line 3\n", "line three (a)\n");
    edit("b", "shared.txt", "line 3\n", "line 3 (b)\n");
    edit("c", "shared.txt", "line 35\n", "line thirty-five\n");
    ws.commit(&ws.worktree("d", "front"), "d.txt", "d\n", "d alone");
    let plan = ws.grove(&["review", "--plan", "--json"]).success().json();
    let order: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["env"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 4, "{plan:#}");
    assert_eq!(&order[..2], ["d", "c"], "{plan:#}");
    let last = &plan["steps"][3];
    let conflict = last["rebase_after"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| !r["conflicts"].as_array().unwrap().is_empty())
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(conflict["conflicts"][0], "shared.txt");
    let text = ws.grove(&["review", "--plan"]).success();
    assert!(
        text.stdout.contains("CONFLICT to resolve in shared.txt"),
        "{text}"
    );
    assert!(text.stdout.contains("merges cleanly"), "{text}");
}

/// `grove agent-status --hook` fed `input` from `dir`.
fn hook(ws: &TestWorkspace, dir: &std::path::Path, input: &Value) -> crate::common::Out {
    ws.agent_hook(dir, &input.to_string())
}

#[test]
fn codex_and_gemini_hooks_install_and_map_onto_the_same_states() {
    let ws = ws("", &agent("headless", ""));
    ws.grove(&["create", "feat-01", "--agent"]).success();
    assert!(wait_until(20, || agent_state(&ws, "feat-01") == "working"));
    let front = ws.worktree("feat-01", "front");
    // The user's own settings are kept.
    std::fs::create_dir_all(front.join(".gemini")).unwrap();
    std::fs::write(
        front.join(".gemini/settings.json"),
        r#"{"theme": "Dracula", "hooks": {"AfterAgent": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}"#,
    )
    .unwrap();
    for kind in ["codex", "gemini"] {
        let out = ws.grove(&["hooks", "install", kind, "feat-01"]).success();
        assert!(out.stderr.contains("installed grove's hooks in"), "{out}");
    }
    let codex: Value =
        serde_json::from_str(&std::fs::read_to_string(front.join(".codex/hooks.json")).unwrap())
            .unwrap();
    for event in ["UserPromptSubmit", "PermissionRequest", "Stop"] {
        let cmd = codex["hooks"][event][0]["hooks"][0]["command"]
            .as_str()
            .unwrap();
        assert!(cmd.ends_with("agent-status --hook"), "{codex:#}");
    }
    let gemini: Value = serde_json::from_str(
        &std::fs::read_to_string(front.join(".gemini/settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(gemini["theme"], "Dracula");
    assert_eq!(
        gemini["hooks"]["AfterAgent"][0]["hooks"][0]["command"],
        "notify-send done"
    );
    assert!(
        gemini["hooks"]["AfterAgent"][1]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("agent-status --hook"),
        "{gemini:#}"
    );
    assert_eq!(
        ws.git(&front, &["status", "--porcelain"]),
        "",
        "kept out of git's sight"
    );

    // Gemini CLI's events.
    let ev = |name: &str, extra: Value| {
        let mut v = serde_json::json!({"hook_event_name": name, "cwd": front, "session_id": "g1"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    for (input, state) in [
        (
            ev("BeforeAgent", serde_json::json!({"prompt": "go"})),
            "working",
        ),
        (
            ev(
                "Notification",
                serde_json::json!({"notification_type": "ToolPermission"}),
            ),
            "waiting",
        ),
        (ev("AfterTool", serde_json::json!({})), "working"),
        (
            ev("AfterAgent", serde_json::json!({"stop_hook_active": false})),
            "done",
        ),
        // The session's end after its work is done leaves it done.
        (
            ev("SessionEnd", serde_json::json!({"reason": "exit"})),
            "done",
        ),
        // Codex's.
        (
            ev("UserPromptSubmit", serde_json::json!({"turn_id": "t"})),
            "working",
        ),
        (ev("PermissionRequest", serde_json::json!({})), "waiting"),
    ] {
        let out = hook(&ws, &front, &input);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out}");
        assert_eq!(agent_state(&ws, "feat-01"), state, "{input}");
    }
    // Codex's notify program gets its JSON as the last argument.
    let notify = serde_json::json!({"type": "agent-turn-complete", "cwd": front, "turn-id": "1"});
    ws.grove(&["agent-status", "--notify", &notify.to_string()])
        .success();
    assert_eq!(agent_state(&ws, "feat-01"), "done");
    // Gemini's AfterAgent takes queued feedback like Claude Code's Stop.
    ws.grove(&["agent-status", "--env", "feat-01", "working"])
        .success();
    ws.grove(&["feedback", "feat-01", "use the cache"])
        .success();
    let out = hook(
        &ws,
        &front,
        &ev("AfterAgent", serde_json::json!({"stop_hook_active": false})),
    );
    let answer: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(answer["decision"], "block", "{out}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .starts_with("use the cache")
    );

    // A settings file the repo tracks is not touched.
    std::fs::write(front.join(".gemini/settings.json"), "{}\n").unwrap();
    ws.git(&front, &["add", "-f", ".gemini/settings.json"]);
    ws.git(&front, &["commit", "-qm", "team settings"]);
    let out = ws
        .grove(&["hooks", "install", "gemini", "feat-01"])
        .failure(1);
    assert!(out.stderr.contains("is tracked by the repo"), "{out}");
    assert_eq!(
        std::fs::read_to_string(front.join(".gemini/settings.json")).unwrap(),
        "{}\n"
    );
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}

#[test]
fn headless_gate_sends_requested_changes_back_by_relaunching_the_agent() {
    let ws = ws(
        "",
        &(agent(
            "headless",
            &format!(
                "continue = \"python3 {} --continued\"",
                fixture("loop_agent.py").display()
            ),
        ) + &reviewer("auto_fix = 1")),
    );
    std::fs::write(ws.root.join("tickets/feat-01.md"), TICKET).unwrap();
    ws.grove(&[
        "create",
        "feat-01",
        "--agent",
        "--ticket",
        "tickets/feat-01.md",
    ])
    .success();
    next_verdict(
        &ws,
        "feat-01",
        r#"{"verdict": "changes", "summary": "the box is missing",
            "findings": [{"layer": "front", "path": "login.vue", "line": 7, "severity": "error", "text": "no checkbox"}],
            "criteria": [{"text": "a \"remember me\" box on the form", "met": false, "evidence": "not in the diff"}]}"#,
    );
    step(&ws, "feat-01", "go-done-1");
    // The agent said done and exited; the gate's findings relaunch it (`[agent] continue`).
    let argv = record(&ws, "feat-01", "argv-2");
    assert!(argv.starts_with("--continued\n---\n"), "{argv}");
    assert!(
        argv.contains("The reviewer asks for changes: the box is missing"),
        "{argv}"
    );
    assert!(
        argv.contains("- [error] front:login.vue:7 no checkbox"),
        "{argv}"
    );
    assert!(
        argv.contains("criterion not met: a \"remember me\" box on the form"),
        "{argv}"
    );
    let env = gate_runs(&ws, "feat-01", 1);
    assert_eq!(env["gate"]["result"]["outcome"], "changes");
    assert_eq!(env["gate"]["rounds"], 1);
    assert_eq!(env["criteria"]["met"], 0);
    let given =
        std::fs::read_to_string(record_dir(&ws, "feat-01").join("review-1/prompt")).unwrap();
    assert!(
        given.contains("Remember me") || given.contains("tickets/feat-01.md"),
        "{given}"
    );
    // The relaunched agent stops again; the gate runs once more and hands the env to the human.
    step(&ws, "feat-01", "go-done-2");
    let env = gate_runs(&ws, "feat-01", 2);
    assert_eq!(env["state"], "changes", "{env:#}");
    assert!(!record_dir(&ws, "feat-01").join("argv-3").exists());
    // Nothing changed since the reviewer's verdict: it was not asked again.
    assert!(!record_dir(&ws, "feat-01").join("review-2").exists());
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
}
