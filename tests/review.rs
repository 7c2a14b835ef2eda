//! The review queue and the conflict radar, on real repos with real conflicts.

use serde_json::Value;

use crate::common::TestWorkspace;

const LINES: usize = 12;

fn text_with(line: usize, value: &str) -> String {
    (1..=LINES)
        .map(|i| {
            if i == line {
                format!("{value}\n")
            } else {
                format!("line {i}\n")
            }
        })
        .collect()
}

/// A workspace with one repo `app` holding `shared.txt`, and envs a, b, c, d:
/// a and b change line 2 (a conflict), c changes line 10 (overlap, no conflict), d another file.
fn scenario() -> TestWorkspace {
    let ws = TestWorkspace::empty();
    let app = ws.init_repo("app");
    ws.commit(&app, "shared.txt", &text_with(0, ""), "Shared file");
    ws.write_config(&format!(
        "[layers.app]\nrepo = \"app\"\nports = \"{}\"\ncheck = [\"test -f ok.txt\"]\n",
        ws.ports.range(0, 20)
    ));
    for env in ["a", "b", "c", "d"] {
        ws.grove(&["create", env, "--no-start"]).success();
    }
    let wt = |e: &str| ws.worktree(e, "app");
    ws.commit(
        &wt("a"),
        "shared.txt",
        &text_with(2, "A was here"),
        "A: line 2",
    );
    ws.commit(
        &wt("b"),
        "shared.txt",
        &text_with(2, "B was here"),
        "B: line 2",
    );
    ws.commit(&wt("b"), "b.txt", "b", "B: more");
    ws.commit(
        &wt("c"),
        "shared.txt",
        &text_with(10, "C was here"),
        "C: line 10",
    );
    ws.commit(&wt("d"), "other.txt", "d", "D: other file");
    ws
}

fn review(ws: &TestWorkspace) -> Value {
    let v = ws.grove(&["review", "--json"]).success().json();
    assert_eq!(v["version"], 2);
    v
}

fn env<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["envs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap()
}

fn pair<'a>(v: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    v["conflicts"].as_array().unwrap().iter().find(|c| {
        let e = [
            c["envs"][0].as_str().unwrap(),
            c["envs"][1].as_str().unwrap(),
        ];
        e.contains(&a) && e.contains(&b)
    })
}

#[test]
fn conflicts_overlaps_and_unrelated_envs() {
    let ws = scenario();
    let v = review(&ws);
    assert_eq!(v["merge_tree"], true);
    let ab = pair(&v, "a", "b").expect("a and b touch the same file");
    assert_eq!(ab["conflict"], serde_json::json!(["shared.txt"]));
    assert_eq!(ab["overlap"], serde_json::json!(["shared.txt"]));
    for (x, y) in [("a", "c"), ("b", "c")] {
        let p = pair(&v, x, y).expect("overlap");
        assert_eq!(
            p["conflict"],
            serde_json::json!([]),
            "{x}/{y}: same file, other lines"
        );
    }
    for other in ["a", "b", "c"] {
        assert!(
            pair(&v, other, "d").is_none(),
            "d touches nothing of {other}'s"
        );
    }
    let b = &env(&v, "b")["layers"][0];
    assert_eq!(b["ahead"], 2);
    assert_eq!(b["behind"], 0);
    assert_eq!(b["files"].as_array().unwrap().len(), 2);
    assert_eq!(b["insertions"], 2);
    assert_eq!(b["last_commit_subject"], "B: more");
    assert_eq!(b["conflicts_with_base"], serde_json::json!([]));

    let text = ws.grove(&["review"]).success().stdout;
    assert!(
        text.contains("a ⟷ b  app  conflict: shared.txt · overlap: 1 file(s)"),
        "{text}"
    );
    assert!(text.contains("merges cleanly"), "{text}");
    let one = ws.grove(&["review", "b"]).success().stdout;
    assert!(one.contains("B: more") && one.contains("b.txt"), "{one}");
    assert!(one.contains("a ⟷ b"), "{one}");
}

#[test]
fn a_base_that_moved_on_shows_behind_and_conflicts_with_its_tip() {
    let ws = scenario();
    let app = ws.repo("app");
    ws.commit(
        &app,
        "shared.txt",
        &text_with(2, "main changed it"),
        "Main: line 2",
    );
    let v = review(&ws);
    let a = &env(&v, "a")["layers"][0];
    assert_eq!(
        (a["ahead"].as_u64(), a["behind"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(a["conflicts_with_base"], serde_json::json!(["shared.txt"]));
    let c = &env(&v, "c")["layers"][0];
    assert_eq!(c["behind"], 1);
    assert_eq!(c["conflicts_with_base"], serde_json::json!([]));
    // d changed a file the base did not: no conflict, without asking git to merge.
    let d = &env(&v, "d")["layers"][0];
    assert_eq!(
        (d["behind"].as_u64(), d["conflicts_with_base"].clone()),
        (Some(1), serde_json::json!([]))
    );
    let text = ws.grove(&["review"]).success().stdout;
    assert!(
        text.contains("a ⟷ main (moved on)  app  conflict: shared.txt"),
        "{text}"
    );
}

#[test]
fn uncommitted_files_and_the_queue_order_and_mark_reviewed() {
    let ws = scenario();
    std::fs::write(ws.worktree("d", "app").join("draft.txt"), "wip").unwrap();
    let mut v = review(&ws);
    let d = &env(&v, "d")["layers"][0];
    assert_eq!(d["uncommitted"], serde_json::json!(["draft.txt"]));
    // Every env has commits to review, no agent and no gate: all `review`.
    assert!(
        v["envs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["urgency"] == 3 && e["state"] == "review" && e["reviewed"] == false)
    );

    ws.grove(&["review", "a", "--mark-reviewed"]).success();
    v = review(&ws);
    let a = env(&v, "a");
    assert_eq!(a["reviewed"], true);
    assert_eq!(
        (a["urgency"].as_u64(), a["state"].as_str()),
        (Some(6), Some("idle"))
    );
    assert_eq!(
        v["envs"].as_array().unwrap().last().unwrap()["name"],
        "a",
        "reviewed envs go last"
    );
    // A new commit puts it back.
    ws.commit(&ws.worktree("a", "app"), "more.txt", "x", "A: more");
    v = review(&ws);
    assert_eq!(env(&v, "a")["reviewed"], false);
    assert_eq!(env(&v, "a")["reason"], "2 commit(s) to review");
}

#[test]
fn an_agent_waiting_comes_first() {
    let ws = scenario();
    let config = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap()
        + "[agent]\ncommand = \"sleep 60; :\"\nmode = \"headless\"\n";
    ws.write_config(&config);
    ws.grove(&["agent", "c"]).success();
    ws.grove(&["agent-status", "waiting", "--env", "c"])
        .success();
    let v = review(&ws);
    assert_eq!(v["envs"][0]["name"], "c");
    assert_eq!(v["envs"][0]["reason"], "agent waiting for input");
    ws.grove(&["agent-status", "working", "--env", "c"])
        .success();
    let v = review(&ws);
    assert_eq!(env(&v, "c")["reason"], "agent working");
    ws.grove(&["down", "c"]).success();
}

#[test]
fn check_pass_and_fail_are_recorded() {
    let ws = scenario();
    ws.commit(&ws.worktree("a", "app"), "ok.txt", "ok", "A: ok");
    let out = ws.grove(&["check", "a"]).success();
    assert!(out.stderr.contains("app  passed"), "{out}");
    let out = ws.grove(&["check", "b"]).failure(1);
    assert!(out.stderr.contains("app  FAILED"), "{out}");
    assert!(out.stderr.contains("check failed in app"), "{out}");
    let v = review(&ws);
    let ca = &env(&v, "a")["layers"][0]["check"];
    assert_eq!(
        (ca["passed"].as_bool(), ca["stale"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(std::path::Path::new(ca["log"].as_str().unwrap()).exists());
    assert_eq!(env(&v, "b")["layers"][0]["check"]["passed"], false);
    // The branch moves on: the result is older than the tip.
    ws.commit(&ws.worktree("a", "app"), "later.txt", "x", "A: later");
    assert_eq!(env(&review(&ws), "a")["layers"][0]["check"]["stale"], true);
    assert!(
        ws.grove(&["review"])
            .success()
            .stdout
            .contains("check passed, before the last commit")
    );
    let out = ws.grove(&["check", "nope"]).failure(1);
    assert!(out.stderr.contains("no env `nope`"), "{out}");
}

#[test]
fn diff_shows_what_the_env_changed() {
    let ws = scenario();
    let out = ws.grove(&["diff", "b"]).success().stdout;
    assert!(
        out.contains("+B was here") && out.contains("b/app/b.txt"),
        "{out}"
    );
    assert!(!out.contains("draft"), "{out}");
    std::fs::write(
        ws.worktree("b", "app").join("b.txt"),
        "changed, not committed",
    )
    .unwrap();
    let dirty = ws.grove(&["diff", "b", "app", "--dirty"]).success().stdout;
    assert!(dirty.contains("+changed, not committed"), "{dirty}");
    let clean = ws.grove(&["diff", "b", "app"]).success().stdout;
    assert!(!clean.contains("changed, not committed"), "{clean}");
}

// What `review` remembers between runs (results computed from commit ids, the flags of an
// index) must never hide a change: each change below, made after a review whose results were
// reused once already, shows in the next one.

/// Two reviews: the second one starts from what the first one left behind.
fn warm_review(ws: &TestWorkspace) -> Value {
    review(ws);
    review(ws)
}

fn layer<'a>(v: &'a Value, name: &str) -> &'a Value {
    &env(v, name)["layers"][0]
}

fn strings(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

fn uncommitted(v: &Value, name: &str) -> Vec<String> {
    strings(&layer(v, name)["uncommitted"])
}

fn files(v: &Value, name: &str) -> Vec<String> {
    let mut f: Vec<String> = layer(v, name)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    f.sort();
    f
}

#[test]
fn after_a_review_edits_new_files_and_deletions_in_a_worktree_show() {
    let ws = scenario();
    let wt = ws.worktree("d", "app");
    assert!(uncommitted(&warm_review(&ws), "d").is_empty());
    // Same size, right after a review: only the content and the time stamps differ.
    std::fs::write(wt.join("other.txt"), "e").unwrap();
    assert_eq!(uncommitted(&review(&ws), "d"), ["other.txt"]);
    assert_eq!(uncommitted(&review(&ws), "d"), ["other.txt"]);
    std::fs::write(wt.join("new.txt"), "n").unwrap();
    std::fs::create_dir_all(wt.join("deep/er")).unwrap();
    std::fs::write(wt.join("deep/er/file.txt"), "n").unwrap();
    assert_eq!(
        uncommitted(&review(&ws), "d"),
        ["deep/er/file.txt", "new.txt", "other.txt"]
    );
    std::fs::remove_file(wt.join("shared.txt")).unwrap();
    assert_eq!(
        uncommitted(&review(&ws), "d"),
        ["deep/er/file.txt", "new.txt", "other.txt", "shared.txt"]
    );
    // And back to clean: nothing remembered makes a fixed worktree look dirty either.
    ws.git(&wt, &["checkout", "--", "."]);
    std::fs::remove_dir_all(wt.join("deep")).unwrap();
    std::fs::remove_file(wt.join("new.txt")).unwrap();
    assert!(uncommitted(&review(&ws), "d").is_empty());
    // The other envs' worktrees were never touched.
    assert!(uncommitted(&review(&ws), "a").is_empty());
}

#[test]
fn after_a_review_new_commits_rewritten_branches_and_a_moved_base_show() {
    let ws = scenario();
    let wt = ws.worktree("d", "app");
    let v = warm_review(&ws);
    let first_tip = layer(&v, "d")["tip"].as_str().unwrap().to_string();
    assert_eq!(
        (layer(&v, "d")["ahead"].as_u64(), files(&v, "d")),
        (Some(1), vec!["other.txt".to_string()])
    );

    ws.commit(&wt, "second.txt", "2", "D: second");
    let v = review(&ws);
    assert_eq!(layer(&v, "d")["ahead"], 2);
    assert_eq!(files(&v, "d"), ["other.txt", "second.txt"]);
    assert_eq!(layer(&v, "d")["last_commit_subject"], "D: second");

    // Rewritten: as many commits as before, another tip and other files.
    std::fs::write(wt.join("third.txt"), "3").unwrap();
    ws.git(&wt, &["add", "third.txt"]);
    ws.git(&wt, &["commit", "--quiet", "--amend", "-m", "D: amended"]);
    let v = review(&ws);
    assert_eq!(layer(&v, "d")["ahead"], 2);
    assert_eq!(files(&v, "d"), ["other.txt", "second.txt", "third.txt"]);
    assert_eq!(layer(&v, "d")["insertions"], 3);

    // Moved back from outside the worktree: its index still holds what the branch lost.
    ws.git(&ws.repo("app"), &["update-ref", "refs/heads/d", &first_tip]);
    let v = review(&ws);
    assert_eq!(layer(&v, "d")["tip"], first_tip.as_str());
    assert_eq!(
        (layer(&v, "d")["ahead"].as_u64(), files(&v, "d")),
        (Some(1), vec!["other.txt".to_string()])
    );
    assert_eq!(uncommitted(&v, "d"), ["second.txt", "third.txt"]);

    // The base moves on, changing what a changed: a conflicts with it, d does not.
    let app = ws.repo("app");
    ws.commit(
        &app,
        "shared.txt",
        &text_with(2, "main changed it"),
        "Main: line 2",
    );
    let v = review(&ws);
    assert_eq!(layer(&v, "a")["behind"], 1);
    assert_eq!(
        layer(&v, "a")["conflicts_with_base"],
        serde_json::json!(["shared.txt"])
    );
    assert_eq!(layer(&v, "d")["behind"], 1);
    assert_eq!(layer(&v, "d")["conflicts_with_base"], serde_json::json!([]));
    // Again, now changing d's file too.
    ws.commit(&app, "other.txt", "main's", "Main: other");
    let v = review(&ws);
    assert_eq!(layer(&v, "d")["behind"], 2);
    assert_eq!(
        layer(&v, "d")["conflicts_with_base"],
        serde_json::json!(["other.txt"])
    );
    assert_eq!(layer(&v, "a")["behind"], 2);

    // Between envs: c was clean with a; once it changes a's line too, they conflict.
    assert_eq!(
        pair(&v, "a", "c").unwrap()["conflict"],
        serde_json::json!([])
    );
    ws.commit(
        &ws.worktree("c", "app"),
        "shared.txt",
        &text_with(2, "C too"),
        "C: line 2",
    );
    let v = review(&ws);
    assert_eq!(
        pair(&v, "a", "c").unwrap()["conflict"],
        serde_json::json!(["shared.txt"])
    );
}

#[test]
fn after_a_review_changes_to_the_index_show() {
    let ws = scenario();
    let wt = ws.worktree("d", "app");
    warm_review(&ws);
    // Flagged so that git status looks away: only the check of flagged files sees the edit.
    ws.git(&wt, &["update-index", "--assume-unchanged", "other.txt"]);
    std::fs::write(wt.join("other.txt"), "e").unwrap();
    assert_eq!(uncommitted(&review(&ws), "d"), ["other.txt"]);
    assert_eq!(uncommitted(&review(&ws), "d"), ["other.txt"]);
    std::fs::write(wt.join("other.txt"), "d").unwrap();
    assert!(uncommitted(&review(&ws), "d").is_empty());
    std::fs::write(wt.join("other.txt"), "f").unwrap();
    assert_eq!(uncommitted(&review(&ws), "d"), ["other.txt"]);

    ws.git(&wt, &["update-index", "--skip-worktree", "README.md"]);
    assert_eq!(uncommitted(&review(&ws), "d"), ["other.txt"]);
    std::fs::write(wt.join("README.md"), "changed").unwrap();
    assert_eq!(uncommitted(&review(&ws), "d"), ["README.md", "other.txt"]);
    ws.git(&wt, &["update-index", "--no-skip-worktree", "README.md"]);
    ws.git(&wt, &["update-index", "--no-assume-unchanged", "other.txt"]);
    ws.git(&wt, &["checkout", "--", "."]);
    assert!(uncommitted(&warm_review(&ws), "d").is_empty());

    // Staged, with the worktree as the index has it.
    std::fs::write(wt.join("staged.txt"), "s").unwrap();
    ws.git(&wt, &["add", "staged.txt"]);
    assert_eq!(uncommitted(&review(&ws), "d"), ["staged.txt"]);
    ws.git(&wt, &["rm", "--quiet", "--cached", "staged.txt"]);
    std::fs::remove_file(wt.join("staged.txt")).unwrap();
    // A staged deletion, the file still on disk (untracked now: listed twice, as deleted and
    // as untracked).
    ws.git(&wt, &["rm", "--quiet", "--cached", "shared.txt"]);
    let mut paths = uncommitted(&review(&ws), "d");
    paths.dedup();
    assert_eq!(paths, ["shared.txt"]);
    ws.git(&wt, &["add", "shared.txt"]);
    assert!(uncommitted(&review(&ws), "d").is_empty());
}

#[test]
fn a_damaged_review_cache_is_no_cache() {
    let ws = scenario();
    let before = warm_review(&ws);
    let cache = ws.grove_home.join("cache");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        // Cut in the middle, then plain garbage.
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert_eq!(review(&ws), before);
        std::fs::write(&path, "\0garbage").unwrap();
        assert_eq!(review(&ws), before);
    }
    assert_eq!(review(&ws), before);
}

#[test]
fn the_review_cache_keeps_only_what_the_envs_still_use() {
    let ws = scenario();
    let d_tip = layer(&warm_review(&ws), "d")["tip"]
        .as_str()
        .unwrap()
        .to_string();
    let cache_text = || {
        let files: Vec<_> = std::fs::read_dir(ws.grove_home.join("cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        std::fs::read_to_string(&files[0]).unwrap()
    };
    let wt = ws.worktree("d", "app").display().to_string();
    let text = cache_text();
    assert!(text.contains(&d_tip) && text.contains(&wt), "{text}");
    ws.grove(&["destroy", "d", "--force", "--yes"]).success();
    let v = review(&ws);
    assert_eq!(v["envs"].as_array().unwrap().len(), 3);
    let text = cache_text();
    assert!(!text.contains(&d_tip) && !text.contains(&wt), "{text}");
}

/// `git status --porcelain=v2 -z -uall`'s paths, as the test's own git sees them.
fn status_all(ws: &TestWorkspace, wt: &std::path::Path) -> Vec<String> {
    let out = ws.git(
        wt,
        &["status", "--porcelain=v2", "-z", "--untracked-files=all"],
    );
    let mut paths = Vec::new();
    let mut fields = out.split('\0');
    while let Some(rec) = fields.next() {
        let skip = match rec.as_bytes().first() {
            Some(b'1') => 8,
            Some(b'2') => 9,
            Some(b'u') => 10,
            Some(b'?') => 1,
            _ => continue,
        };
        paths.push(rec.splitn(skip + 1, ' ').nth(skip).unwrap().to_string());
        if rec.starts_with('2') {
            fields.next();
        }
    }
    paths
}

fn unsorted_uncommitted(v: &Value, name: &str) -> Vec<String> {
    layer(v, name)["uncommitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Whether the index of worktree `wt` carries git's untracked cache.
fn has_untracked_cache(ws: &TestWorkspace, wt: &std::path::Path) -> bool {
    let index = ws.git(
        wt,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    );
    let bytes = std::fs::read(index).unwrap();
    bytes.windows(4).any(|w| w == b"UNTR")
}

#[test]
fn untracked_files_are_listed_one_by_one_as_git_status_lists_them() {
    let ws = scenario();
    let wt = ws.worktree("d", "app");
    let check = |what: &str| {
        for round in ["cold", "warm"] {
            let v = review(&ws);
            assert_eq!(
                unsorted_uncommitted(&v, "d"),
                status_all(&ws, &wt),
                "{what}, {round}"
            );
        }
    };
    check("clean");
    assert!(
        has_untracked_cache(&ws, &wt),
        "review keeps git's untracked cache"
    );
    // A new folder, folders in it, an ignored file, a name that is a glob, a file next to it.
    for f in [
        "new/a.txt",
        "new/deep/b.txt",
        "new/deep/er/c.txt",
        "[x]/d.txt",
        "x/e.txt",
        "n.txt",
    ] {
        let p = wt.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f).unwrap();
    }
    std::fs::write(wt.join("new/deep/.env"), "ignored").unwrap();
    std::fs::create_dir_all(wt.join("new/only-ignored")).unwrap();
    std::fs::write(wt.join("new/only-ignored/.env"), "ignored").unwrap();
    check("untracked folders");
    assert!(unsorted_uncommitted(&review(&ws), "d").contains(&"[x]/d.txt".to_string()));
    // A repository of its own inside: listed as a folder, as git does.
    ws.init_repo(".grove/envs/d/app/new/inner");
    check("a nested repository");
    // The last file of a folder goes: nothing lists the folder any more.
    std::fs::remove_file(wt.join("new/deep/er/c.txt")).unwrap();
    check("a file removed deep down");
    std::fs::remove_dir_all(wt.join("new")).unwrap();
    check("the folder removed");
    // What is ignored changes, by a tracked file and by one that is not.
    std::fs::write(wt.join("x/keep.env"), "k").unwrap();
    std::fs::write(wt.join(".gitignore"), "node_modules/\n").unwrap();
    std::fs::write(wt.join("x/.env"), "no longer ignored").unwrap();
    check("a .gitignore edited");
    std::fs::write(wt.join("x/.gitignore"), "*.env\n").unwrap();
    check("an untracked .gitignore");
    std::fs::write(wt.join("x/.gitignore"), "keep.env\n").unwrap();
    check("an untracked .gitignore edited");
    let exclude = ws.repo("app").join(".git/info/exclude");
    std::fs::write(&exclude, "n.txt\n").unwrap();
    check("info/exclude");
    std::fs::write(&exclude, "").unwrap();
    check("info/exclude emptied");
}

#[test]
fn a_user_who_turned_the_untracked_cache_off_keeps_it_off() {
    let ws = scenario();
    let app = ws.repo("app");
    ws.git(&app, &["config", "core.untrackedCache", "false"]);
    let wt = ws.worktree("d", "app");
    // The env was made with the cache on; the user's next git write takes it out.
    ws.git(&wt, &["update-index", "--no-untracked-cache"]);
    std::fs::write(wt.join("new.txt"), "n").unwrap();
    assert_eq!(uncommitted(&warm_review(&ws), "d"), ["new.txt"]);
    assert!(!has_untracked_cache(&ws, &wt));
}

/// `grove review --json` with the review watcher (see `watch.rs`), and the `git status`
/// commands it ran (from its debug trace).
fn watched_review(ws: &TestWorkspace) -> (Value, usize) {
    let out = crate::common::run(
        ws.cmd()
            .env("GROVE_REVIEW_WATCH", "always")
            .env("GROVE_LOG", "debug")
            .args(["review", "--json"]),
    );
    assert_eq!(out.code, 0, "{out}");
    let statuses = out
        .stderr
        .lines()
        .filter(|l| l.contains("git") && l.contains(" status "))
        .count();
    (out.json(), statuses)
}

#[test]
fn with_the_watcher_an_unchanged_worktree_runs_no_status_and_every_change_shows() {
    let ws = scenario();
    let (_, first) = watched_review(&ws);
    assert_eq!(first, 4, "no watcher yet: a status per worktree");
    // The first review started the watcher; once it answers, the next review asks it.
    assert!(
        crate::common::wait_until(20, || watched_review(&ws).1 < 4),
        "the watcher never answered"
    );
    let (v, warm) = watched_review(&ws);
    assert_eq!(warm, 0, "nothing changed: no git status");
    assert!(
        env(&v, "d")["layers"][0]["uncommitted"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let d = ws.worktree("d", "app");
    let uncommitted = |v: &Value| env(v, "d")["layers"][0]["uncommitted"].clone();
    // An edit in place, same size, same second: only a look at the file, or its event, sees it.
    let f = d.join("other.txt");
    let before = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, before.to_uppercase()).unwrap();
    let (v, n) = watched_review(&ws);
    assert_eq!(n, 1, "only d's worktree changed");
    assert_eq!(uncommitted(&v), serde_json::json!(["other.txt"]));
    // A new folder with a file in it, made at once.
    std::fs::create_dir_all(d.join("new/deeper")).unwrap();
    std::fs::write(d.join("new/deeper/file.txt"), "x").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(
        uncommitted(&v),
        serde_json::json!(["other.txt", "new/deeper/file.txt"])
    );
    // A later edit inside the new folder is seen too (it is watched now).
    ws.git(&d, &["checkout", "--", "other.txt"]);
    let (v, _) = watched_review(&ws);
    assert_eq!(uncommitted(&v), serde_json::json!(["new/deeper/file.txt"]));
    std::fs::write(d.join("new/deeper/second.txt"), "y").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(
        uncommitted(&v),
        serde_json::json!(["new/deeper/file.txt", "new/deeper/second.txt"])
    );
    // Committed from elsewhere (the index and HEAD change, not the worktree's files).
    ws.git(&d, &["add", "-A"]);
    ws.git(&d, &["commit", "-qm", "d: more"]);
    let (v, _) = watched_review(&ws);
    assert!(uncommitted(&v).as_array().unwrap().is_empty(), "{v:#}");
    assert_eq!(env(&v, "d")["layers"][0]["ahead"], 2);
    // Deleted.
    std::fs::remove_file(d.join("other.txt")).unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(uncommitted(&v), serde_json::json!(["other.txt"]));
    // A rule of the repo's own `info/exclude` that stops ignoring a file: git sees it then.
    let exclude = ws.repo("app").join(".git/info/exclude");
    std::fs::write(&exclude, "*.log\n").unwrap();
    std::fs::write(d.join("build.log"), "x").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(uncommitted(&v), serde_json::json!(["other.txt"]));
    std::fs::write(&exclude, "").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(
        uncommitted(&v),
        serde_json::json!(["other.txt", "build.log"])
    );
    // The worktree destroyed and made again at the same path: its edits are still seen.
    ws.grove(&["destroy", "d", "--force", "--yes"]).success();
    ws.grove(&["create", "d", "--no-start"]).success();
    let (v, _) = watched_review(&ws);
    assert!(uncommitted(&v).as_array().unwrap().is_empty(), "{v:#}");
    std::fs::write(d.join("shared.txt"), "rewritten\n").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(uncommitted(&v), serde_json::json!(["shared.txt"]));
    std::fs::write(d.join("later.txt"), "x").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(
        uncommitted(&v),
        serde_json::json!(["shared.txt", "later.txt"])
    );
    // `doctor` leaves the watcher's socket and log alone.
    let doctor = ws.grove(&["doctor", "--json"]).json();
    assert!(
        doctor["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !p["subject"].as_str().unwrap_or("").contains("watch")),
        "{doctor:#}"
    );
}

/// `review` only reads a worktree: its `git status` takes no `index.lock` to refresh the
/// index, which would make an agent's `git add` or `git commit` at that moment fail ("Unable
/// to create index.lock: File exists"). A file whose stat data changed (content the same) is
/// what makes git refresh and rewrite an index when it may.
#[test]
fn review_never_rewrites_a_worktrees_index() {
    use std::os::unix::fs::MetadataExt;
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    std::fs::write(wt.join("new.txt"), "untracked\n").unwrap();
    let index = ws.git(&wt, &["rev-parse", "--git-path", "index"]);
    let index = wt.join(index.trim());
    let stamp = || {
        let m = std::fs::metadata(&index).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    for round in 0..2 {
        // Same content, new mtime: git's index entry for it is stale.
        let readme = wt.join("README.md");
        let text = std::fs::read(&readme).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&readme, text).unwrap();
        let before = stamp();
        for args in [
            &["review", "feat-01"][..],
            &["review", "--json"],
            &["diff", "feat-01", "--dirty"],
        ] {
            crate::common::run(ws.cmd().env("GROVE_REVIEW_WATCH", "never").args(args)).success();
        }
        assert_eq!(stamp(), before, "round {round}: the index was rewritten");
    }
}

/// Since `review` never writes an index, the untracked cache its `git status` reads is made
/// with the worktree: an env's index carries it, unless the repository turned it off.
#[test]
fn a_new_worktree_carries_the_untracked_cache_unless_turned_off() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.git(&ws.repo("api"), &["config", "core.untrackedCache", "false"]);
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    let has_cache = |layer: &str| {
        let wt = ws.worktree("feat-01", layer);
        let index = wt.join(ws.git(&wt, &["rev-parse", "--git-path", "index"]).trim());
        let bytes = std::fs::read(index).unwrap();
        // The extension's signature.
        bytes.windows(4).any(|w| w == b"UNTR")
    };
    assert!(has_cache("front"));
    assert!(!has_cache("api"));
}

/// The inodes the review watcher of `ws` watches, from its inotify descriptor's fdinfo.
fn watched_inodes(ws: &TestWorkspace) -> std::collections::HashSet<u64> {
    let mut inodes = std::collections::HashSet::new();
    for pid in ws.watchers() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            for line in info.lines().filter(|l| l.starts_with("inotify wd:")) {
                let ino = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("ino:"))
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                inodes.extend(ino);
            }
        }
    }
    inodes
}

/// A folder git ignores whole (a rule matches it, it holds no tracked file) is not watched:
/// nothing in it can change what `git status` shows, and a `node_modules` can hold tens of
/// thousands of folders, a watch each. A folder holding only ignored ones is watched (a new
/// file there is untracked work), and when the rules change (`.gitignore`, `info/exclude`), the
/// folders they no longer ignore are watched from then on.
#[test]
fn the_watcher_skips_ignored_folders_until_the_rules_change() {
    use std::os::unix::fs::MetadataExt;
    let ws = scenario();
    let d = ws.worktree("d", "app");
    // Tracked under a folder a rule matches (committed before the rule).
    ws.commit(&d, "build/keep.txt", "tracked\n", "keep");
    ws.commit(&d, ".gitignore", "node_modules/\nbuild/\ngen/\n", "ignore");
    for p in 0..20 {
        std::fs::create_dir_all(d.join(format!("node_modules/p{p}/lib"))).unwrap();
    }
    std::fs::create_dir_all(d.join("src/gen/deep")).unwrap();
    std::fs::create_dir_all(d.join("vendor/v1")).unwrap();
    let exclude = ws.repo("app").join(".git/info/exclude");
    std::fs::write(&exclude, "vendor/\n").unwrap();
    let ino = |rel: &str| std::fs::metadata(d.join(rel)).unwrap().ino();
    let uncommitted = |v: &Value| env(v, "d")["layers"][0]["uncommitted"].clone();
    watched_review(&ws);
    assert!(
        crate::common::wait_until(20, || watched_review(&ws).1 == 0),
        "the watcher never answered"
    );
    let watched = watched_inodes(&ws);
    for seen in ["", "src", "build"] {
        assert!(watched.contains(&ino(seen)), "`{seen}` is not watched");
    }
    for unseen in [
        "node_modules",
        "node_modules/p3/lib",
        "src/gen",
        "src/gen/deep",
        "vendor",
    ] {
        assert!(!watched.contains(&ino(unseen)), "`{unseen}` is watched");
    }
    // A new file beside the ignored folder is seen.
    std::fs::write(d.join("src/new.txt"), "x").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(uncommitted(&v), serde_json::json!(["src/new.txt"]));
    // `.gitignore` no longer ignores node_modules: its files are work, and so is one made
    // after the change.
    std::fs::write(d.join(".gitignore"), "build/\ngen/\n").unwrap();
    std::fs::write(d.join("node_modules/p1/lib/a.js"), "a").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(
        uncommitted(&v),
        serde_json::json!([".gitignore", "node_modules/p1/lib/a.js", "src/new.txt"])
    );
    std::fs::write(d.join("node_modules/p2/lib/late.js"), "b").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(
        uncommitted(&v),
        serde_json::json!([
            ".gitignore",
            "node_modules/p1/lib/a.js",
            "node_modules/p2/lib/late.js",
            "src/new.txt"
        ])
    );
    // The same through `info/exclude`, which lives outside the worktree.
    std::fs::write(&exclude, "").unwrap();
    std::fs::write(d.join("vendor/v1/x.txt"), "x").unwrap();
    let (v, _) = watched_review(&ws);
    assert!(
        uncommitted(&v)
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("vendor/v1/x.txt")),
        "{v:#}"
    );
    std::fs::write(d.join("vendor/v1/later.txt"), "y").unwrap();
    let (v, _) = watched_review(&ws);
    assert!(
        uncommitted(&v)
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("vendor/v1/later.txt")),
        "{v:#}"
    );
}

/// With a `core.excludesFile`, whose changes the watcher cannot follow, no folder is skipped:
/// a folder it stops ignoring is watched already.
#[test]
fn with_a_core_excludes_file_the_watcher_skips_nothing() {
    let ws = scenario();
    let d = ws.worktree("d", "app");
    let excludes = ws.tmp.path().join("my-excludes");
    std::fs::write(&excludes, "vendor/\n").unwrap();
    ws.git(
        &ws.repo("app"),
        &["config", "core.excludesFile", excludes.to_str().unwrap()],
    );
    std::fs::create_dir_all(d.join("vendor/v1")).unwrap();
    let uncommitted = |v: &Value| env(v, "d")["layers"][0]["uncommitted"].clone();
    watched_review(&ws);
    assert!(
        crate::common::wait_until(20, || watched_review(&ws).1 == 0),
        "the watcher never answered"
    );
    std::fs::write(&excludes, "").unwrap();
    std::fs::write(d.join("vendor/v1/x.txt"), "x").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(uncommitted(&v), serde_json::json!(["vendor/v1/x.txt"]));
    std::fs::write(d.join("vendor/v1/later.txt"), "y").unwrap();
    let (v, _) = watched_review(&ws);
    assert_eq!(
        uncommitted(&v),
        serde_json::json!(["vendor/v1/later.txt", "vendor/v1/x.txt"])
    );
}
