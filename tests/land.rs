//! `grove land` and `grove prune` in a two-repo env: every base moves or none does, the env
//! goes with its branches, and prune removes only envs whose work is in their bases.

use crate::common::TestWorkspace;

/// A workspace where `feat` has front and api dedicated, each with a commit of its own on a
/// file of its own; when `base_moves`, each repo's main also gained a commit since (on
/// another file) in the main checkout, which has `main` checked out.
fn landing_ws(base_moves: bool) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat", "--from-api=main", "--no-start"])
        .success();
    for repo in ["front", "api"] {
        let wt = ws.worktree("feat", repo);
        ws.commit(&wt, "feature.txt", "one\n", "Add the feature");
        ws.commit(&wt, "feature.txt", "one\ntwo\n", "Finish the feature");
        if base_moves {
            ws.commit(
                &ws.repo(repo),
                "other.txt",
                "other\n",
                "Someone else's work",
            );
        }
    }
    ws
}

/// A bare remote `origin` per repo, at `<tmp>/<repo>.git`, that each main tracks.
fn with_remotes(ws: &TestWorkspace) {
    for repo in ["front", "api"] {
        let bare = ws.tmp.path().join(format!("{repo}.git"));
        ws.git(
            ws.tmp.path(),
            &["init", "--quiet", "--bare", bare.to_str().unwrap()],
        );
        ws.git(
            &ws.repo(repo),
            &["remote", "add", "origin", bare.to_str().unwrap()],
        );
        ws.git(&ws.repo(repo), &["push", "--quiet", "-u", "origin", "main"]);
    }
}

fn rev(ws: &TestWorkspace, repo: &str, r: &str) -> String {
    ws.git(&ws.repo(repo), &["rev-parse", r])
}

/// The env, its worktrees and its branches are gone; main holds the feature in the commit
/// history and in the main checkout's files.
#[track_caller]
fn assert_landed(ws: &TestWorkspace) {
    assert!(ws.ps().is_empty(), "the env is still listed");
    for repo in ["front", "api"] {
        assert_eq!(ws.branches(repo), vec!["main"], "{repo}");
        assert_eq!(ws.worktrees(repo), vec![ws.repo(repo)], "{repo}");
        assert_eq!(
            ws.git(&ws.repo(repo), &["show", "main:feature.txt"]),
            "one\ntwo"
        );
        // The main checkout followed its branch, and is clean.
        assert_eq!(
            std::fs::read_to_string(ws.repo(repo).join("feature.txt")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(ws.git(&ws.repo(repo), &["status", "--porcelain"]), "");
    }
    assert!(!ws.env_dir("feat").exists());
}

#[test]
fn land_with_a_merge_commit() {
    let ws = landing_ws(true);
    let before = rev(&ws, "api", "main");
    let out = ws.grove(&["land", "feat", "--strategy", "merge"]).success();
    assert!(out.stderr.contains("landed `feat`"), "{out}");
    assert_landed(&ws);
    for repo in ["front", "api"] {
        let parents = ws.git(&ws.repo(repo), &["show", "-s", "--format=%P", "main"]);
        assert_eq!(parents.split(' ').count(), 2, "{repo}: {parents}");
        let subject = ws.git(&ws.repo(repo), &["show", "-s", "--format=%s", "main"]);
        assert_eq!(subject, "Merge branch 'feat' into main");
        assert!(ws.git(&ws.repo(repo), &["show", "main:other.txt"]) == "other");
    }
    assert_eq!(rev(&ws, "api", "main^1"), before);
}

#[test]
fn land_squashed_with_the_tickets_title() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    std::fs::write(
        ws.root.join("ticket.md"),
        "# Let users log in\n\n- [ ] a login form\n",
    )
    .unwrap();
    let mut toml = ws.standard_config("");
    toml.push_str("\n[agent]\ncommand = \"true\"\nmode = \"headless\"\nwait_ready = false\n");
    ws.write_config(&toml);
    ws.grove(&["create", "feat", "--from-api=main", "--no-start"])
        .success();
    ws.grove(&["agent", "feat", "--ticket", "ticket.md"])
        .success();
    for repo in ["front", "api"] {
        let wt = ws.worktree("feat", repo);
        ws.commit(&wt, "feature.txt", "one\n", "Add the feature");
        ws.commit(&wt, "feature.txt", "one\ntwo\n", "Finish the feature");
        ws.commit(
            &ws.repo(repo),
            "other.txt",
            "other\n",
            "Someone else's work",
        );
    }
    let before = rev(&ws, "front", "main");
    ws.grove(&["land", "feat", "--strategy", "squash"])
        .success();
    assert_landed(&ws);
    let parents = ws.git(&ws.repo("front"), &["show", "-s", "--format=%P", "main"]);
    assert_eq!(parents, before, "one commit on top of the old main");
    let msg = ws.git(&ws.repo("front"), &["show", "-s", "--format=%B", "main"]);
    assert!(msg.starts_with("Let users log in\n"), "{msg}");
    assert!(
        msg.contains("* Add the feature\n* Finish the feature"),
        "{msg}"
    );
}

#[test]
fn land_rebased_keeps_each_commit() {
    let ws = landing_ws(true);
    let before = rev(&ws, "front", "main");
    ws.grove(&["land", "feat", "--strategy", "rebase", "--yes"])
        .success();
    assert_landed(&ws);
    for repo in ["front", "api"] {
        let log = ws.git(&ws.repo(repo), &["log", "--format=%s", "-3", "main"]);
        assert_eq!(
            log, "Finish the feature\nAdd the feature\nSomeone else's work",
            "{repo}"
        );
    }
    assert_eq!(rev(&ws, "front", "main~2"), before);
}

#[test]
fn land_fast_forward_only() {
    let ws = landing_ws(false);
    let tip = ws.git(&ws.worktree("feat", "front"), &["rev-parse", "HEAD"]);
    ws.grove(&["land", "feat", "--strategy", "ff"]).success();
    assert_landed(&ws);
    assert_eq!(rev(&ws, "front", "main"), tip);

    // A base that moved cannot fast-forward: refused, nothing moved.
    let ws = landing_ws(true);
    let before = (rev(&ws, "front", "main"), rev(&ws, "api", "main"));
    let out = ws.grove(&["land", "feat", "--strategy", "ff"]).failure(1);
    assert!(out.stderr.contains("cannot fast-forward"), "{out}");
    assert_eq!(before, (rev(&ws, "front", "main"), rev(&ws, "api", "main")));
    assert_eq!(ws.ps().len(), 1);
}

#[test]
fn the_default_strategy_comes_from_the_workspace() {
    let ws = landing_ws(true);
    let toml = ws
        .standard_config("")
        .replace("[workspace]\n", "[workspace]\nland = \"squash\"\n");
    ws.write_config(&toml);
    ws.grove(&["land", "feat"]).success();
    let parents = ws.git(&ws.repo("api"), &["show", "-s", "--format=%P", "main"]);
    assert_eq!(parents.split(' ').count(), 1, "squashed, not merged");

    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let toml = ws
        .standard_config("")
        .replace("[workspace]\n", "[workspace]\nland = \"octopus\"\n");
    ws.write_config(&toml);
    let out = ws.grove(&["ps"]).failure(1);
    assert!(out.stderr.contains("grove.toml:2:"), "{out}");
}

#[test]
fn a_conflict_in_the_second_repo_leaves_both_bases_where_they_were() {
    let ws = landing_ws(false);
    // api's main changes the line the env's branch changes too.
    ws.commit(
        &ws.worktree("feat", "api"),
        "README.md",
        "# api, as the ticket wants it\n",
        "Retitle",
    );
    ws.commit(
        &ws.repo("api"),
        "README.md",
        "# api, as main wants it\n",
        "Retitle on main",
    );
    let before = (rev(&ws, "front", "main"), rev(&ws, "api", "main"));
    for strategy in ["merge", "squash", "rebase"] {
        let out = ws
            .grove(&["land", "feat", "--strategy", strategy])
            .failure(1);
        assert!(
            out.stderr.contains("conflicts in README.md"),
            "{strategy}: {out}"
        );
        assert!(out.stderr.contains("nothing was changed"), "{out}");
        assert!(out.stderr.contains("hint:"), "{out}");
        assert_eq!(
            before,
            (rev(&ws, "front", "main"), rev(&ws, "api", "main")),
            "{strategy}"
        );
    }
    assert_eq!(ws.ps().len(), 1);
    assert!(ws.branches("front").contains(&"feat".to_string()));
}

#[test]
fn a_base_checked_out_with_changes_is_refused() {
    let ws = landing_ws(true);
    let before = (rev(&ws, "front", "main"), rev(&ws, "api", "main"));
    std::fs::write(
        ws.repo("api").join("README.md"),
        "# edited, not committed\n",
    )
    .unwrap();
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(
        out.stderr.contains("uncommitted changes (README.md)"),
        "{out}"
    );
    assert_eq!(before, (rev(&ws, "front", "main"), rev(&ws, "api", "main")));
    ws.git(&ws.repo("api"), &["checkout", "README.md"]);

    // An untracked file where the land would write one.
    std::fs::write(ws.repo("front").join("feature.txt"), "mine\n").unwrap();
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(
        out.stderr.contains("where the land writes: feature.txt"),
        "{out}"
    );
    assert_eq!(before, (rev(&ws, "front", "main"), rev(&ws, "api", "main")));
    assert_eq!(
        std::fs::read_to_string(ws.repo("front").join("feature.txt")).unwrap(),
        "mine\n"
    );
}

#[test]
fn a_base_update_git_refuses_puts_back_the_bases_already_moved_and_says_why() {
    let ws = landing_ws(true);
    let before = (rev(&ws, "front", "main"), rev(&ws, "api", "main"));
    // api, landed after front, has a hook that refuses any move of its main.
    let hook = ws.repo("api").join(".git/hooks/reference-transaction");
    std::fs::write(
        &hook,
        "#!/bin/sh\n\
         [ \"$1\" = prepared ] || exit 0\n\
         while read -r old new ref; do\n\
         \x20 if [ \"$ref\" = refs/heads/main ]; then echo 'main is frozen' >&2; exit 1; fi\n\
         done\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ws.grove(&["land", "feat", "--yes"]).failure(1);
    // front had moved: it was put back, with its checkout.
    let front = ws.repo("front").to_string_lossy().into_owned();
    assert!(
        out.stderr
            .contains(&format!("put `refs/heads/main` of {front} back")),
        "{out}"
    );
    assert_eq!(before, (rev(&ws, "front", "main"), rev(&ws, "api", "main")));
    assert!(!ws.repo("front").join("feature.txt").exists());
    assert_eq!(ws.git(&ws.repo("front"), &["status", "--porcelain"]), "");
    // Not a race: git's own reason is given.
    assert!(!out.stderr.contains("someone committed"), "{out}");
    assert!(out.stderr.contains("main is frozen"), "{out}");
    assert!(out.stderr.contains("aborted by hook"), "{out}");
    assert!(out.stderr.contains("hint:"), "{out}");
    // Nothing was destroyed.
    assert_eq!(ws.ps().len(), 1);
    for repo in ["front", "api"] {
        assert!(ws.branches(repo).contains(&"feat".to_string()), "{repo}");
    }
}

#[test]
fn uncommitted_work_in_the_env_is_refused() {
    let ws = landing_ws(false);
    std::fs::write(ws.worktree("feat", "api").join("wip.txt"), "wip\n").unwrap();
    let before = rev(&ws, "front", "main");
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(out.stderr.contains("api: uncommitted: wip.txt"), "{out}");
    assert_eq!(before, rev(&ws, "front", "main"));
    assert!(ws.worktree("feat", "api").join("wip.txt").exists());
}

#[test]
fn keep_lands_and_keeps_the_env() {
    let ws = landing_ws(false);
    ws.grove(&["land", "feat", "--keep", "--strategy", "ff"])
        .success();
    assert_eq!(ws.ps().len(), 1);
    assert_eq!(
        rev(&ws, "front", "main"),
        ws.git(&ws.worktree("feat", "front"), &["rev-parse", "HEAD"])
    );
    // Landing again finds nothing to land, and removes the env.
    let out = ws.grove(&["land", "feat", "--json"]).success();
    assert!(out.stderr.contains("nothing to land"), "{out}");
    let json = out.json();
    assert_eq!(json["destroyed"], true);
    assert!(json["layers"][0]["new"].is_null());
    assert!(ws.ps().is_empty());
}

#[test]
fn push_sends_every_base_to_its_upstream() {
    let ws = landing_ws(true);
    with_remotes(&ws);
    let out = ws.grove(&["land", "feat", "--push"]).success();
    assert!(out.stderr.contains("pushed `main`"), "{out}");
    assert_landed(&ws);
    for repo in ["front", "api"] {
        let bare = ws.tmp.path().join(format!("{repo}.git"));
        assert_eq!(
            ws.git(&bare, &["rev-parse", "main"]),
            rev(&ws, repo, "main"),
            "{repo}"
        );
    }
}

#[test]
fn push_refused_before_anything_moves_when_the_remote_is_ahead() {
    let ws = landing_ws(false);
    with_remotes(&ws);
    // Someone pushed to api's remote since.
    let other = ws.tmp.path().join("other-api");
    ws.git(
        ws.tmp.path(),
        &[
            "clone",
            "--quiet",
            ws.tmp.path().join("api.git").to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    ws.commit(&other, "theirs.txt", "theirs\n", "Theirs");
    ws.git(&other, &["push", "--quiet", "origin", "main"]);
    let before = (rev(&ws, "front", "main"), rev(&ws, "api", "main"));
    let out = ws.grove(&["land", "feat", "--push"]).failure(1);
    assert!(out.stderr.contains("origin refused"), "{out}");
    assert_eq!(before, (rev(&ws, "front", "main"), rev(&ws, "api", "main")));

    // No upstream at all.
    let ws = landing_ws(false);
    let out = ws.grove(&["land", "feat", "--push"]).failure(1);
    assert!(out.stderr.contains("has no upstream"), "{out}");
}

#[test]
fn a_red_check_stops_the_land_unless_no_check() {
    let ws = landing_ws(false);
    ws.write_config(
        &ws.standard_config("check = [\"test \\\"$(cat feature.txt | wc -l)\\\" -gt 5\"]"),
    );
    let before = rev(&ws, "front", "main");
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(out.stderr.contains("front: its check failed"), "{out}");
    assert!(out.stderr.contains("--no-check"), "{out}");
    assert_eq!(before, rev(&ws, "front", "main"));
    ws.grove(&["land", "feat", "--no-check"]).success();
    assert_landed(&ws);
}

#[test]
fn bad_input_to_land_changes_nothing() {
    let ws = landing_ws(false);
    let out = ws.grove(&["land", "nope"]).failure(1);
    assert!(out.stderr.contains("hint:"), "{out}");
    let out = ws
        .grove(&["land", "feat", "--strategy", "octopus"])
        .failure(2);
    assert!(out.stderr.contains("possible values"), "{out}");
    assert_eq!(ws.ps().len(), 1);
}

/// A workspace with one env per way an env can end up: merged normally, squash-merged,
/// rebased-and-merged, upstream gone, unmerged, dirty, and not started.
#[test]
fn prune_removes_only_envs_whose_work_is_in_the_base() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let front = ws.repo("front");
    let bare = ws.tmp.path().join("front.git");
    ws.git(
        ws.tmp.path(),
        &["init", "--quiet", "--bare", bare.to_str().unwrap()],
    );
    ws.git(&front, &["remote", "add", "origin", bare.to_str().unwrap()]);
    ws.git(&front, &["push", "--quiet", "-u", "origin", "main"]);
    let names = [
        "merged", "squashed", "rebased", "gone", "unmerged", "dirty", "fresh",
    ];
    for name in names {
        ws.grove(&["create", name, "--no-start"]).success();
        if name != "fresh" {
            let wt = ws.worktree(name, "front");
            ws.commit(&wt, &format!("{name}.txt"), "1\n", &format!("{name}: one"));
            ws.commit(
                &wt,
                &format!("{name}.txt"),
                "1\n2\n",
                &format!("{name}: two"),
            );
        }
    }
    let git = |args: &[&str]| ws.git(&front, args);
    git(&[
        "merge",
        "--quiet",
        "--no-ff",
        "-m",
        "Merge merged",
        "merged",
    ]);
    git(&["merge", "--quiet", "--squash", "squashed"]);
    git(&["commit", "--quiet", "-m", "Squashed"]);
    // Main moves on over the squashed file: merging the old branch would now change it back.
    ws.commit(&front, "squashed.txt", "1\n2\n3\n", "After the squash");
    git(&["cherry-pick", "rebased~1", "rebased"]);
    // `gone`: pushed, merged on the forge into a main we have not pulled, branch deleted.
    let gone_wt = ws.worktree("gone", "front");
    ws.git(&gone_wt, &["push", "--quiet", "-u", "origin", "gone"]);
    ws.git(&gone_wt, &["push", "--quiet", "origin", "--delete", "gone"]);
    std::fs::write(ws.worktree("dirty", "front").join("wip.txt"), "wip\n").unwrap();
    git(&["merge", "--quiet", "--no-ff", "-m", "Merge dirty", "dirty"]);

    let mains = rev(&ws, "front", "main");
    let dry = ws.grove(&["prune", "--dry-run", "--json"]).success().json();
    let verdict = |name: &str| verdict_of(&dry, name);
    for name in ["merged", "squashed", "rebased"] {
        assert_eq!(verdict(name)["prune"], true, "{name}: {dry:#}");
    }
    for name in ["gone", "unmerged", "dirty", "fresh"] {
        assert_eq!(verdict(name)["prune"], false, "{name}: {dry:#}");
    }
    assert_eq!(ws.ps().len(), names.len(), "--dry-run removed something");
    assert_eq!(rev(&ws, "front", "main"), mains);

    let out = ws.grove(&["prune", "--gone"]).success();
    assert!(out.stderr.contains("squashed"), "{out}");
    let mut left: Vec<String> = ws
        .ps()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    assert_eq!(left, vec!["dirty", "fresh", "unmerged"]);
    let branches = ws.branches("front");
    for gone in ["merged", "squashed", "rebased"] {
        assert!(
            !branches.contains(&gone.to_string()),
            "{gone}: {branches:?}"
        );
    }
    // `gone`'s commits are in no local ref: its env went, its branch stays.
    assert!(branches.contains(&"gone".to_string()), "{branches:?}");
    assert!(ws.worktree("dirty", "front").join("wip.txt").exists());
}

#[test]
fn prune_removes_an_env_with_an_untouched_layer_once_the_others_work_is_merged() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    for name in ["half", "none", "pulled"] {
        ws.grove(&["create", name, "--from-api=main", "--no-start"])
            .success();
    }
    // `half`: front's branch has a commit, merged into main; api's was never touched (and
    // api's main moved on since). `none`: nobody worked in either repo.
    ws.commit(&ws.worktree("half", "front"), "half.txt", "1\n", "Half");
    ws.git(
        &ws.repo("front"),
        &["merge", "--quiet", "--no-ff", "-m", "Merge half", "half"],
    );
    ws.commit(&ws.repo("api"), "other.txt", "o\n", "Someone else's work");
    // `pulled`: front's branch only followed main (a fast-forward to others' commits), api
    // untouched: it moved, but nobody worked in it.
    ws.git(
        &ws.worktree("pulled", "front"),
        &["merge", "--quiet", "--ff-only", "main"],
    );

    let dry = ws.grove(&["prune", "--dry-run", "--json"]).success().json();
    let verdict = |name: &str| verdict_of(&dry, name);
    assert_eq!(verdict("half")["prune"], true, "{dry:#}");
    let reasons = verdict("half")["reasons"].to_string();
    assert!(reasons.contains("front: `half` merged"), "{reasons}");
    assert!(reasons.contains("api: `half` has no commits"), "{reasons}");
    assert_eq!(verdict("none")["prune"], false, "{dry:#}");
    assert!(
        verdict("none")["reasons"]
            .to_string()
            .contains("no commits yet"),
        "{dry:#}"
    );
    assert_eq!(verdict("pulled")["prune"], false, "{dry:#}");
    let reasons = verdict("pulled")["reasons"].to_string();
    assert!(reasons.contains("no commits yet"), "{reasons}");
    assert!(
        reasons.contains("front: `pulled` only followed its base"),
        "{reasons}"
    );
    assert_eq!(ws.ps().len(), 3, "--dry-run removed something");

    ws.grove(&["prune"]).success();
    let left: Vec<String> = ws
        .ps()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec!["none", "pulled"]);
    for repo in ["front", "api"] {
        let branches = ws.branches(repo);
        assert!(
            !branches.contains(&"half".to_string()),
            "{repo}: {branches:?}"
        );
        for kept in ["none", "pulled"] {
            assert!(branches.contains(&kept.to_string()), "{repo}: {branches:?}");
        }
    }
    assert!(!ws.env_dir("half").exists());
}

#[test]
fn prune_older_than_spares_young_envs() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "merged", "--no-start"]).success();
    ws.commit(&ws.worktree("merged", "front"), "m.txt", "m\n", "M");
    ws.git(&ws.repo("front"), &["merge", "--quiet", "merged"]);
    let out = ws.grove(&["prune", "--older-than", "1d"]).success();
    assert!(out.stderr.contains("created 0m ago"), "{out}");
    assert_eq!(ws.ps().len(), 1);
    let out = ws.grove(&["prune", "--older-than", "soon"]).failure(2);
    assert!(out.stderr.contains("like `7d`"), "{out}");
    ws.grove(&["prune", "--older-than", "0s"]).success();
    assert!(ws.ps().is_empty());
}

#[test]
fn destroy_keeps_a_squash_merged_branch_and_prune_removes_it() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    for name in ["feat", "feat2"] {
        ws.grove(&["create", name, "--no-start"]).success();
        let wt = ws.worktree(name, "front");
        ws.commit(&wt, &format!("{name}.txt"), "1\n", "One");
        ws.commit(&wt, &format!("{name}.txt"), "1\n2\n", "Two");
        ws.commit(
            &ws.repo("front"),
            &format!("other-{name}.txt"),
            "o\n",
            "Other",
        );
        ws.git(&ws.repo("front"), &["merge", "--quiet", "--squash", name]);
        ws.git(&ws.repo("front"), &["commit", "--quiet", "-m", "Squashed"]);
    }
    // A plain destroy keeps the branch: its commits are in no other ref. It says why.
    let out = ws.grove(&["destroy", "feat"]).success();
    assert!(
        out.stderr
            .contains("kept branch `feat`: its work is in main"),
        "{out}"
    );
    assert!(ws.branches("front").contains(&"feat".to_string()));
    // Prune is asked to clean up integrated work: the branch goes, its tip named.
    let tip = ws.git(&ws.worktree("feat2", "front"), &["rev-parse", "HEAD"]);
    let out = ws.grove(&["prune"]).success();
    assert!(out.stderr.contains("squash-merged"), "{out}");
    assert!(
        out.stderr.contains(&tip[..12]),
        "the old tip is named: {out}"
    );
    assert!(!ws.branches("front").contains(&"feat2".to_string()));
}

#[test]
fn commits_that_cancel_out_are_not_merged_work() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "undo", "--no-start"]).success();
    let wt = ws.worktree("undo", "front");
    ws.commit(&wt, "precious.txt", "precious\n", "Add");
    ws.git(&wt, &["rm", "--quiet", "precious.txt"]);
    ws.git(&wt, &["commit", "--quiet", "-m", "Remove"]);
    let out = ws.grove(&["prune"]).success();
    assert!(
        out.stderr
            .contains("undo: front: 2 commit(s) not in `main`"),
        "{out}"
    );
    assert_eq!(ws.ps().len(), 1);
    let out = ws.grove(&["destroy", "undo"]).success();
    assert!(
        out.stderr
            .contains("kept branch `undo`: 2 commit(s) not in main"),
        "{out}"
    );
}

#[test]
fn rebase_drops_a_commit_the_base_has_already() {
    let ws = landing_ws(false);
    let first = ws.git(&ws.worktree("feat", "front"), &["rev-parse", "HEAD~1"]);
    ws.git(&ws.repo("front"), &["cherry-pick", &first]);
    ws.grove(&["land", "feat", "--strategy", "rebase"])
        .success();
    let log = ws.git(&ws.repo("front"), &["log", "--format=%s", "-3", "main"]);
    assert_eq!(log, "Finish the feature\nAdd the feature\nInitial commit");
    assert_landed(&ws);
}

#[test]
fn files_git_ignores_and_a_file_where_a_folder_lands_are_in_the_way() {
    let ws = landing_ws(false);
    // The branch force-adds an ignored file, and adds a folder.
    let wt = ws.worktree("feat", "front");
    std::fs::write(wt.join(".env"), "FROM=branch\n").unwrap();
    ws.git(&wt, &["add", "--force", ".env"]);
    ws.commit(&wt, "docs/x.md", "x\n", "Docs");
    // The main checkout has its own `.env`, and a file named `docs`.
    std::fs::write(ws.repo("front").join(".env"), "SECRET=mine\n").unwrap();
    std::fs::write(ws.repo("front").join("docs"), "a file\n").unwrap();
    let before = rev(&ws, "front", "main");
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(out.stderr.contains(".env, docs"), "{out}");
    assert_eq!(before, rev(&ws, "front", "main"));
    assert_eq!(
        std::fs::read_to_string(ws.repo("front").join(".env")).unwrap(),
        "SECRET=mine\n"
    );
}

#[test]
fn every_checkout_of_the_base_is_checked_and_follows_it() {
    let ws = landing_ws(true);
    let second = ws.tmp.path().join("second");
    ws.git(
        &ws.repo("front"),
        &[
            "worktree",
            "add",
            "--quiet",
            "--force",
            second.to_str().unwrap(),
            "main",
        ],
    );
    std::fs::write(second.join("README.md"), "wip\n").unwrap();
    let before = rev(&ws, "front", "main");
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(
        out.stderr.contains("second with uncommitted changes"),
        "{out}"
    );
    assert_eq!(before, rev(&ws, "front", "main"));
    ws.git(&second, &["checkout", "README.md"]);
    ws.grove(&["land", "feat"]).success();
    assert_eq!(ws.git(&second, &["status", "--porcelain"]), "");
    assert!(second.join("feature.txt").is_file());
}

#[test]
fn a_base_being_rebased_is_not_moved() {
    let ws = landing_ws(false);
    let front = ws.repo("front");
    ws.commit(&front, "a.txt", "a\n", "A");
    ws.commit(&front, "b.txt", "b\n", "B");
    let mut cmd = ws.command("git");
    cmd.current_dir(&front)
        .env("GIT_SEQUENCE_EDITOR", "sed -i '1s/^pick/edit/'")
        .args(["rebase", "-i", "HEAD~2"]);
    crate::common::run(&mut cmd).success();
    let before = ws.git(&front, &["rev-parse", "refs/heads/main"]);
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(out.stderr.contains("is being rebased"), "{out}");
    assert_eq!(before, ws.git(&front, &["rev-parse", "refs/heads/main"]));
}

#[test]
fn an_env_without_commits_has_nothing_to_land_and_stays() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat", "--no-start"]).success();
    let out = ws.grove(&["land", "feat"]).failure(1);
    assert!(out.stderr.contains("no commits of its own"), "{out}");
    assert!(out.stderr.contains("grove destroy feat"), "{out}");
    assert_eq!(ws.ps().len(), 1);
}

#[test]
fn a_push_one_remote_refuses_is_retried_by_landing_again() {
    let ws = landing_ws(false);
    with_remotes(&ws);
    // front's remote refuses every push (a server-side hook: no dry run sees it).
    let hook = ws.tmp.path().join("front.git/hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ws
        .grove(&["land", "feat", "--push", "--strategy", "ff"])
        .failure(1);
    assert!(out.stderr.contains("front: origin refused"), "{out}");
    assert!(
        out.stderr.contains("pushed `main`"),
        "api was still pushed: {out}"
    );
    assert_eq!(ws.ps().len(), 1, "the env is kept");
    std::fs::remove_file(&hook).unwrap();
    ws.grove(&["land", "feat", "--push"]).success();
    for repo in ["front", "api"] {
        let bare = ws.tmp.path().join(format!("{repo}.git"));
        assert_eq!(
            ws.git(&bare, &["rev-parse", "main"]),
            rev(&ws, repo, "main")
        );
    }
    assert!(ws.ps().is_empty());
}

/// `git cherry` and patch ids ignore where a hunk sits and whitespace: a match must be
/// confirmed on content before a branch counts as in its base.
#[test]
fn a_patch_id_match_with_different_content_keeps_the_branch() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let front = ws.repo("front");
    // Two blocks with the same three lines around `replicas`: the same hunk, twice.
    let block = "kind: Deployment\nspec: x\nreplicas: 1\nimage: app\nport: 80\n---\n";
    let scaled = block.replace("replicas: 1", "replicas: 3");
    ws.commit(
        &front,
        "deploy.yaml",
        &format!("---\n{block}{block}"),
        "Two blocks",
    );
    ws.grove(&["create", "feat", "--no-start"]).success();
    ws.commit(
        &front,
        "deploy.yaml",
        &format!("---\n{scaled}{block}"),
        "Scale web",
    );
    ws.commit(
        &ws.worktree("feat", "front"),
        "deploy.yaml",
        &format!("---\n{block}{scaled}"),
        "Scale worker",
    );
    let dry = ws.grove(&["prune", "--dry-run", "--json"]).success().json();
    assert_eq!(dry[0]["prune"], false, "{dry:#}");
    let out = ws.grove(&["destroy", "feat"]).success();
    assert!(out.stderr.contains("kept branch `feat`"), "{out}");
    assert!(ws.branches("front").contains(&"feat".to_string()));
}

#[test]
fn a_branch_of_unrelated_history_stops_neither_prune_nor_destroy() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "odd", "--no-start"]).success();
    ws.grove(&["create", "merged", "--no-start"]).success();
    ws.commit(&ws.worktree("merged", "front"), "m.txt", "m\n", "M");
    ws.git(&ws.repo("front"), &["merge", "--quiet", "merged"]);
    let wt = ws.worktree("odd", "front");
    std::fs::write(wt.join("f.txt"), "f\n").unwrap();
    ws.git(&wt, &["add", "f.txt"]);
    let tree = ws.git(&wt, &["write-tree"]);
    let orphan = ws.git(&wt, &["commit-tree", "-m", "orphan", &tree]);
    ws.git(&wt, &["reset", "--quiet", "--hard", &orphan]);
    let out = ws.grove(&["prune"]).success();
    assert!(out.stderr.contains("odd"), "{out}");
    assert_eq!(ws.ps().len(), 1, "merged went, odd stayed");
    ws.grove(&["destroy", "odd"]).success();
    assert!(ws.branches("front").contains(&"odd".to_string()));
}

#[test]
fn land_inside_a_worktree_lands_its_env() {
    let ws = landing_ws(false);
    let wt = ws.worktree("feat", "api");
    ws.grove_in(&wt, &["land", "--keep", "--strategy", "ff"])
        .success();
    assert_eq!(rev(&ws, "api", "main"), ws.git(&wt, &["rev-parse", "HEAD"]));
}

#[test]
fn landing_from_inside_the_env_says_where_to_go() {
    let ws = landing_ws(false);
    let out = ws
        .grove_in(&ws.worktree("feat", "front"), &["land", "--strategy", "ff"])
        .success();
    assert!(
        out.stderr.contains("your shell's folder went with the env"),
        "{out}"
    );
    assert!(ws.ps().is_empty());
}

/// One env's entry in `prune --dry-run --json`.
fn verdict_of(dry: &serde_json::Value, name: &str) -> serde_json::Value {
    dry.as_array()
        .unwrap()
        .iter()
        .find(|v| v["env"] == name)
        .unwrap_or_else(|| panic!("no verdict for {name}: {dry:#}"))
        .clone()
}
