//! The warm pool: prepared worktrees handed out by `create`, refilled in the background,
//! brought to a moved base, prepared again when a `prepare_key` file changed, and drained
//! without a trace. (Crashes of the filler and of a claim are in the crash suite.)

use std::path::{Path, PathBuf};

use crate::common::{TestWorkspace, list_dir, wait_until};

/// front keeps `size` prepared worktrees; `prepare` records each run in a log outside the
/// repos (one line: the worktree it ran in) and leaves a marker in an ignored folder.
fn ws(size: u32) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    std::fs::create_dir_all(ws.repo("front").join("node_modules/dep")).unwrap();
    std::fs::write(ws.repo("front").join("node_modules/dep/index.js"), "1\n").unwrap();
    ws.commit(&ws.repo("front"), "package-lock.json", "{}\n", "lock file");
    ws.write_config(&ws.standard_config(&format!(
        "pool = {size}\n\
         copy = [{{ path = \"node_modules\", mode = \"hardlink\" }}]\n\
         prepare = [\"echo \\\"$GROVE_WORKTREE\\\" >> {log}; echo ok > node_modules/.prepared\"]\n\
         prepare_key = [\"package-lock.json\"]",
        log = prepare_log(&ws).display()
    )));
    ws
}

fn prepare_log(ws: &TestWorkspace) -> PathBuf {
    ws.tmp.path().join("prepare.log")
}

fn prepare_runs(ws: &TestWorkspace) -> usize {
    std::fs::read_to_string(prepare_log(ws)).map_or(0, |s| s.lines().count())
}

fn status(ws: &TestWorkspace) -> serde_json::Value {
    ws.grove(&["pool", "status", "--json"]).success().json()
}

fn ready(ws: &TestWorkspace) -> u64 {
    status(ws)["layers"][0]["ready"].as_u64().unwrap()
}

/// Waits for the background filler to finish.
fn settled(ws: &TestWorkspace) {
    assert!(
        wait_until(60, || status(ws)["filler"].is_null()),
        "the filler never finished: {}",
        status(ws)
    );
}

fn pool_dir(ws: &TestWorkspace) -> PathBuf {
    ws.root.join(".grove/envs/.pool")
}

fn head(ws: &TestWorkspace, dir: &Path) -> String {
    ws.git(dir, &["rev-parse", "HEAD"])
}

fn made_pool(made: &serde_json::Value) -> serde_json::Value {
    made["made"]["layers"][0]["pool"].clone()
}

#[test]
fn create_takes_a_prepared_worktree_and_the_pool_refills() {
    let ws = ws(1);
    let out = ws.grove(&["pool", "fill"]).success();
    assert!(
        out.stderr.contains("pool full (1 worktree(s) prepared)"),
        "{out}"
    );
    assert_eq!(ready(&ws), 1);
    assert_eq!(prepare_runs(&ws), 1);
    let entry = PathBuf::from(status(&ws)["entries"][0]["path"].as_str().unwrap());
    assert!(entry.starts_with(pool_dir(&ws)));
    // Detached at the base's tip, copied and prepared.
    let main_tip = head(&ws, &ws.repo("front"));
    assert_eq!(head(&ws, &entry), main_tip);
    assert!(entry.join("node_modules/.prepared").is_file());
    assert!(entry.join("node_modules/dep/index.js").is_file());

    let made = ws
        .grove(&["create", "feat", "--no-start", "--json"])
        .success()
        .json();
    assert_eq!(made_pool(&made), "claimed", "{made}");
    assert_eq!(
        made["made"]["layers"][0]["copies"],
        serde_json::json!([]),
        "nothing copied again"
    );
    let wt = ws.worktree("feat", "front");
    assert!(
        wt.join("node_modules/.prepared").is_file(),
        "the prepared worktree"
    );
    assert!(!entry.exists(), "moved out of the pool");
    assert_eq!(ws.git(&wt, &["branch", "--show-current"]), "feat");
    assert_eq!(head(&ws, &wt), main_tip);
    assert_eq!(ws.git(&wt, &["status", "--porcelain"]), "");
    // git ties the untracked cache to a worktree's place: made again for the new one, so the
    // agent's `git status` has nothing to warn about.
    let git_status = ws
        .command("git")
        .args(["status", "--porcelain"])
        .current_dir(&wt)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&git_status.stderr), "");
    assert_eq!(
        prepare_runs(&ws),
        1,
        "not prepared again: the lock file did not change"
    );

    // The filler replaced it, in the background. (`git worktree list` only now: it fails on a
    // worktree the filler is adding.)
    settled(&ws);
    assert!(
        !ws.worktrees("front").contains(&entry),
        "git knows it at its new place"
    );
    assert_eq!(ready(&ws), 1, "{}", status(&ws));
    assert_eq!(prepare_runs(&ws), 2);

    // An env's worktree never goes back to the pool.
    ws.grove(&["destroy", "feat", "--yes"]).success();
    assert_eq!(ready(&ws), 1);
    assert_eq!(list_dir(&pool_dir(&ws)).len(), 1);
    ws.grove(&["pool", "drain"]).success();
}

#[test]
fn a_moved_base_is_checked_out_and_a_changed_lock_file_prepares_again() {
    let ws = ws(2);
    ws.grove(&["pool", "fill"]).success();
    assert_eq!(ready(&ws), 2);
    let runs = prepare_runs(&ws);
    // The base moves on: a new file, same lock file.
    ws.commit(&ws.repo("front"), "src/new.js", "new\n", "more code");
    let tip = head(&ws, &ws.repo("front"));
    let made = ws
        .grove(&["create", "a", "--no-start", "--json"])
        .success()
        .json();
    assert_eq!(made_pool(&made), "claimed", "{made}");
    let wt = ws.worktree("a", "front");
    assert_eq!(head(&ws, &wt), tip, "brought to the base's tip");
    assert!(wt.join("src/new.js").is_file());
    assert_eq!(ws.git(&wt, &["status", "--porcelain"]), "");
    assert_eq!(
        prepare_runs(&ws),
        runs,
        "the lock file is the same: no prepare"
    );

    // The lock file changes: the next claim prepares again, in the env's worktree.
    ws.commit(
        &ws.repo("front"),
        "package-lock.json",
        "{\"v\": 2}\n",
        "bump deps",
    );
    let runs = prepare_runs(&ws);
    let made = ws
        .grove(&["create", "b", "--no-start", "--json"])
        .success()
        .json();
    assert_eq!(made_pool(&made), "claimed, prepared again", "{made}");
    let log = std::fs::read_to_string(prepare_log(&ws)).unwrap();
    let b = ws.worktree("b", "front");
    assert!(
        log.lines().skip(runs).any(|l| Path::new(l) == b),
        "prepare ran in b's worktree: {log}"
    );
    settled(&ws);
    ws.grove(&["pool", "drain"]).success();
}

#[test]
fn drain_stops_the_filler_and_leaves_nothing() {
    let ws = ws(3);
    // A slow prepare keeps the filler at work while it is drained.
    let config = std::fs::read_to_string(ws.root.join("grove.toml"))
        .unwrap()
        .replace("prepare = [\"", "prepare = [\"sleep 5; ");
    ws.write_config(&config);
    // The first create finds the pool empty and starts the filler.
    ws.grove(&["create", "feat", "--no-start"]).success();
    assert!(
        wait_until(20, || !status(&ws)["filler"].is_null()
            && !list_dir(&pool_dir(&ws)).is_empty()),
        "{}",
        status(&ws)
    );
    let out = ws.grove(&["pool", "drain"]).success();
    assert!(out.stderr.contains("stopping the pool filler"), "{out}");
    let s = status(&ws);
    assert!(s["filler"].is_null(), "{s}");
    assert_eq!(s["entries"], serde_json::json!([]), "{s}");
    assert!(list_dir(&pool_dir(&ws)).is_empty());
    assert!(
        ws.worktrees("front")
            .iter()
            .all(|w| !w.starts_with(pool_dir(&ws))),
        "{:?}",
        ws.worktrees("front")
    );
    assert!(
        wait_until(10, || ws
            .tagged_processes()
            .iter()
            .all(|(_, t)| !t.contains(":pool") && !t.contains(":setup"))),
        "{:?}",
        ws.tagged_processes()
    );
    // The env is untouched.
    assert!(
        ws.worktree("feat", "front")
            .join("node_modules/.prepared")
            .is_file()
    );
    // And doctor finds nothing wrong with a pool in use.
    ws.write_config(&config.replace("sleep 5; ", ""));
    ws.grove(&["pool", "fill"]).success();
    let doctor = ws.grove(&["doctor", "--json"]).success().json();
    assert_eq!(doctor["problems"], serde_json::json!([]), "{doctor}");
    ws.grove(&["pool", "drain"]).success();
}

#[test]
fn two_creates_at_once_take_different_entries() {
    let ws = ws(2);
    ws.grove(&["pool", "fill"]).success();
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| {
            ws.cmd()
                .args(["create", n, "--no-start", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let made = crate::common::finish(c).success().json();
        assert_eq!(made_pool(&made), "claimed", "{made}");
    }
    assert_ne!(ws.worktree("a", "front"), ws.worktree("b", "front"));
    for n in ["a", "b"] {
        assert!(
            ws.worktree(n, "front")
                .join("node_modules/.prepared")
                .is_file()
        );
    }
    settled(&ws);
    ws.grove(&["pool", "drain"]).success();
}

#[test]
fn ps_shows_the_pool_and_pool_needs_a_layer_with_one() {
    let ws = ws(1);
    ws.grove(&["pool", "fill"]).success();
    let ps = ws.grove(&["ps", "--pool", "--json"]).success().json();
    assert_eq!(ps["pool"]["layers"][0]["ready"], 1, "{ps}");
    let human = ws.grove(&["ps", "--pool"]).success().stdout;
    assert!(human.contains("front") && human.contains("1/1"), "{human}");
    ws.grove(&["pool", "drain"]).success();

    let plain = TestWorkspace::with_repos(&["front", "api"]);
    let out = plain.grove(&["pool", "fill"]).failure(1);
    assert!(out.stderr.contains("no layer keeps a pool"), "{out}");
    assert!(out.stderr.contains("pool = N"), "{out}");
}

/// Fills a pool of one, rewrites grove.toml with `edit`, and creates `t6`: the entry made
/// with the old config is not handed out but removed, the env is made afresh, and the
/// filler replaces the entry with one made with the new config. Returns the create's output.
fn create_after_config_change(
    ws: &TestWorkspace,
    edit: impl Fn(&str) -> String,
) -> crate::common::Out {
    ws.grove(&["pool", "fill"]).success();
    assert_eq!(ready(ws), 1);
    let stale = PathBuf::from(status(ws)["entries"][0]["path"].as_str().unwrap());
    let config = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    let changed = edit(&config);
    assert_ne!(changed, config, "the edit changed nothing");
    ws.write_config(&changed);
    let out = ws
        .grove(&["create", "t6", "--no-start", "--json"])
        .success();
    let made = out.json();
    assert!(made_pool(&made).is_null(), "made afresh: {made}");
    assert!(
        out.stderr.contains("prepared with another config"),
        "said why: {out}"
    );
    assert!(!stale.exists(), "the stale entry is removed");
    // `git worktree list` once the refill is done: it fails on a worktree being added.
    settled(ws);
    assert!(
        !ws.worktrees("front").contains(&stale),
        "and git forgot it: {:?}",
        ws.worktrees("front")
    );
    let s = status(ws);
    assert_eq!(s["layers"][0]["ready"], 1, "refilled: {s}");
    let fresh = PathBuf::from(s["entries"][0]["path"].as_str().unwrap());
    assert_ne!(fresh, stale);
    out
}

#[test]
fn an_entry_prepared_before_copy_changed_is_not_handed_out() {
    let ws = ws(1);
    std::fs::write(ws.repo("front").join(".env"), "SECRET=1\n").unwrap();
    create_after_config_change(&ws, |c| c.replace("copy = [", "copy = [\".env\", "));
    let wt = ws.worktree("t6", "front");
    assert_eq!(
        std::fs::read_to_string(wt.join(".env")).unwrap(),
        "SECRET=1\n",
        "the new copy entry was copied"
    );
    // The entry that replaced it has it too, and is handed out as it is.
    let made = ws
        .grove(&["create", "t7", "--no-start", "--json"])
        .success()
        .json();
    assert_eq!(made_pool(&made), "claimed", "{made}");
    assert!(ws.worktree("t7", "front").join(".env").is_file());
    settled(&ws);
    ws.grove(&["pool", "drain"]).success();
}

#[test]
fn an_entry_prepared_before_prepare_changed_is_not_handed_out() {
    let ws = ws(1);
    let runs = prepare_runs(&ws);
    create_after_config_change(&ws, |c| {
        c.replace(
            "echo ok > node_modules/.prepared",
            "echo v2 > node_modules/.prepared",
        )
    });
    let wt = ws.worktree("t6", "front");
    assert_eq!(
        std::fs::read_to_string(wt.join("node_modules/.prepared")).unwrap(),
        "v2\n",
        "the new prepare ran"
    );
    let log = std::fs::read_to_string(prepare_log(&ws)).unwrap();
    assert!(
        log.lines().skip(runs).any(|l| Path::new(l) == wt),
        "prepare ran in t6's worktree: {log}"
    );
    ws.grove(&["pool", "drain"]).success();
}

#[test]
fn the_pool_refills_after_a_claim_whose_server_never_gets_ready() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.write_config(&ws.standard_config(
        "pool = 1\n\
         run = \"exec sleep 600\"\n\
         ready = { exec = \"false\", timeout = 1 }",
    ));
    ws.grove(&["pool", "fill"]).success();
    assert_eq!(ready(&ws), 1);
    let out = ws.grove(&["create", "feat"]).failure(1);
    assert!(
        out.stderr
            .contains("took a prepared worktree from the pool"),
        "{out}"
    );
    assert!(out.stderr.contains("not ready after 1 s"), "{out}");
    assert!(
        wait_until(30, || {
            let s = status(&ws);
            s["filler"].is_null() && s["layers"][0]["ready"] == 1
        }),
        "the pool was not refilled: {}",
        status(&ws)
    );
    ws.grove(&["destroy", "feat", "--yes"]).success();
    ws.grove(&["pool", "drain"]).success();
}
