//! The reference workflow of DESIGN.md, checked against git at every step.

use crate::common::{TestWorkspace, list_dir, redact};

#[test]
fn reference_workflow() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.branch_with_commit("front", "feat/ui");
    ws.branch_with_commit("api", "feat/endpoint");

    // feat-01: front only, API shared.
    let out = ws.grove(&["create", "feat-01"]).success();
    assert_eq!(
        redact(&ws, &out.stdout),
        "  front  http://localhost:[P0]  [feat-01 from main]\n  api    shared  http://127.0.0.1:[P99]\n"
    );
    assert_eq!(
        ws.worktrees("front"),
        vec![ws.repo("front"), ws.worktree("feat-01", "front")]
    );
    assert_eq!(ws.worktrees("api"), vec![ws.repo("api")]);
    assert_eq!(ws.branches("front"), vec!["feat-01", "feat/ui", "main"]);
    assert_eq!(ws.branches("api"), vec!["feat/endpoint", "main"]);
    let main = ws.git(&ws.repo("front"), &["rev-parse", "main"]);
    assert_eq!(
        ws.git(&ws.worktree("feat-01", "front"), &["rev-parse", "HEAD"]),
        main
    );

    // feat-02: its own front and API, each from a feature branch.
    let out = ws
        .grove(&[
            "create",
            "feat-02",
            "--from-front=feat/ui",
            "--from-api",
            "feat/endpoint",
        ])
        .success();
    assert_eq!(
        redact(&ws, &out.stdout),
        "  front  http://localhost:[P1]  [feat-02 from feat/ui]\n  api    http://localhost:[P40]  [feat-02 from feat/endpoint]\n"
    );
    assert_eq!(
        ws.worktrees("api"),
        vec![ws.repo("api"), ws.worktree("feat-02", "api")]
    );
    let ui_tip = ws.git(&ws.repo("front"), &["rev-parse", "feat/ui"]);
    assert_eq!(
        ws.git(&ws.worktree("feat-02", "front"), &["rev-parse", "HEAD"]),
        ui_tip
    );
    assert!(
        ws.worktree("feat-02", "api")
            .join("feat_endpoint.txt")
            .exists()
    );

    // The wiring: feat-01's front reads the shared API, feat-02's front its own.
    let env1 = ws.grove(&["env", "feat-01"]).success().stdout;
    assert!(
        env1.contains(&format!("API_URL={}\n", ws.shared_api_url())),
        "{env1}"
    );
    assert!(
        env1.contains(&format!("GROVE_API_URL={}\n", ws.shared_api_url())),
        "{env1}"
    );
    let env2 = ws.grove(&["env", "feat-02", "front"]).success().stdout;
    let own_api = format!("http://localhost:{}", ws.api_port(0));
    assert!(env2.contains(&format!("\nAPI_URL={own_api}\n")), "{env2}");
    assert!(
        env2.contains(&format!("PORT={}\n", ws.front_port(1))),
        "{env2}"
    );
    let env2_api = ws.grove(&["env", "feat-02", "api"]).success().stdout;
    assert!(
        env2_api.contains(&format!("PORT={}\n", ws.api_port(0))),
        "{env2_api}"
    );
    assert!(env2_api.contains("GROVE_LAYER=api\n"), "{env2_api}");

    // ps, as a table and as JSON.
    let ps = ws.grove(&["ps"]).success();
    insta::assert_snapshot!("reference_ps", redact(&ws, &ps.stdout));
    let envs = ws.ps();
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[0]["name"], "feat-01");
    assert_eq!(envs[0]["status"], "stopped");
    assert_eq!(envs[0]["layers"][0]["mode"], "dedicated");
    assert_eq!(envs[0]["layers"][0]["port"], ws.front_port(0));
    assert_eq!(envs[0]["layers"][0]["branch"], "feat-01");
    assert_eq!(envs[0]["layers"][0]["base"], "main");
    assert_eq!(
        envs[0]["layers"][0]["worktree"],
        ws.worktree("feat-01", "front").to_string_lossy().as_ref()
    );
    assert_eq!(envs[0]["layers"][1]["mode"], "shared");
    assert_eq!(envs[0]["layers"][1]["url"], ws.shared_api_url());
    assert_eq!(envs[1]["layers"][1]["mode"], "dedicated");
    assert_eq!(envs[1]["layers"][1]["url"], own_api);

    // destroy feat-02: both worktrees go; its branches had no commits of their own, so they go.
    ws.grove(&["destroy", "feat-02"]).success();
    assert_eq!(
        ws.worktrees("front"),
        vec![ws.repo("front"), ws.worktree("feat-01", "front")]
    );
    assert_eq!(ws.worktrees("api"), vec![ws.repo("api")]);
    assert_eq!(ws.branches("front"), vec!["feat-01", "feat/ui", "main"]);
    assert_eq!(ws.branches("api"), vec!["feat/endpoint", "main"]);
    assert_eq!(list_dir(&ws.root.join(".grove/envs")), vec!["feat-01"]);
    assert_eq!(ws.leased_ports(), vec![ws.front_port(0)]);

    ws.grove(&["destroy", "feat-01"]).success();
    assert_eq!(ws.worktrees("front"), vec![ws.repo("front")]);
    assert_eq!(ws.branches("front"), vec!["feat/ui", "main"]);
    assert!(ws.ps().is_empty());
    assert!(ws.leased_ports().is_empty());
    // Nothing of grove's shows up in the repos themselves.
    assert_eq!(ws.git(&ws.repo("front"), &["status", "--porcelain"]), "");
}

#[test]
fn a_port_is_reused_after_destroy_and_stable_for_the_env() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "a"]).success();
    ws.grove(&["create", "b"]).success();
    ws.grove(&["destroy", "a"]).success();
    let out = ws.grove(&["create", "c", "--json"]).success();
    assert_eq!(out.json()["layers"][0]["port"], ws.front_port(0));
    assert_eq!(ws.ps()[0]["layers"][0]["port"], ws.front_port(1));
}

#[test]
fn a_port_taken_by_another_program_is_skipped() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let _held = std::net::TcpListener::bind(("127.0.0.1", ws.front_port(0))).unwrap();
    let out = ws.grove(&["create", "a", "--json"]).success();
    assert_eq!(out.json()["layers"][0]["port"], ws.front_port(1));
}

#[test]
fn slash_in_name_gives_dashed_env_and_slashed_branch() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let out = ws.grove(&["create", "feat/login", "--json"]).success();
    let env = out.json();
    assert_eq!(env["name"], "feat-login");
    assert_eq!(env["env_id"], "feat_login");
    assert_eq!(env["layers"][0]["branch"], "feat/login");
    assert!(ws.worktree("feat-login", "front").join(".git").exists());
    assert!(ws.branches("front").contains(&"feat/login".to_string()));
    // Either spelling names the env.
    ws.grove(&["path", "feat/login"]).success();
    ws.grove(&["destroy", "feat/login"]).success();
    assert!(!ws.branches("front").contains(&"feat/login".to_string()));
}

#[test]
fn existing_branch_is_reused_and_kept_on_destroy() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.branch_with_commit("front", "feat-x");
    let tip = ws.git(&ws.repo("front"), &["rev-parse", "feat-x"]);
    let out = ws.grove(&["create", "feat-x"]).success();
    assert!(out.stderr.contains("existing branch `feat-x`"), "{out}");
    assert_eq!(
        ws.git(&ws.worktree("feat-x", "front"), &["rev-parse", "HEAD"]),
        tip
    );
    assert_eq!(ws.ps()[0]["layers"][0]["branch_created"], false);
    let out = ws.grove(&["destroy", "feat-x"]).success();
    assert!(
        out.stderr
            .contains("kept branch `feat-x`: it existed before the env"),
        "{out}"
    );
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "feat-x"]), tip);
}

#[test]
fn base_flag_and_layer_base_and_tags_and_commits() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let first = ws.git(&ws.repo("front"), &["rev-parse", "HEAD"]);
    ws.git(&ws.repo("front"), &["tag", "v1"]);
    ws.commit(&ws.repo("front"), "later.txt", "x", "Later");
    let out = ws
        .grove(&["create", "t", "--base", "v1", "--json"])
        .success();
    assert_eq!(out.json()["layers"][0]["base"], "v1");
    assert_eq!(
        ws.git(&ws.worktree("t", "front"), &["rev-parse", "HEAD"]),
        first
    );
    ws.grove(&["create", "c", "--from", &format!("front={}", &first[..10])])
        .success();
    assert_eq!(
        ws.git(&ws.worktree("c", "front"), &["rev-parse", "HEAD"]),
        first
    );
}

#[test]
fn remote_only_branch_is_a_base() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let upstream = ws.init_repo("upstream");
    ws.commit(&upstream, "remote.txt", "r", "Remote work");
    ws.git(&upstream, &["branch", "feat/remote"]);
    ws.git(
        &ws.repo("front"),
        &["remote", "add", "origin", upstream.to_str().unwrap()],
    );
    ws.git(&ws.repo("front"), &["fetch", "--quiet", "origin"]);
    ws.grove(&["create", "r", "--from-front=feat/remote"])
        .success();
    assert!(ws.worktree("r", "front").join("remote.txt").exists());
}

#[test]
fn copy_dotenv_and_setup_in_the_new_worktree() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let front = ws.repo("front");
    std::fs::write(front.join(".env"), "SECRET=1\n").unwrap();
    std::fs::create_dir_all(front.join("node_modules/pkg")).unwrap();
    std::fs::write(front.join("node_modules/pkg/index.js"), "x").unwrap();
    ws.write_config(&ws.standard_config(
        r#"copy = [".env", "node_modules", "missing.txt"]
dotenv = ".env.local"
setup = ["echo \"$GROVE_ENV:$PORT:$API_URL\" > setup-ran.txt", "test -f node_modules/pkg/index.js"]"#,
    ));
    let out = ws.grove(&["create", "feat-01"]).success();
    assert!(out.stderr.contains("`missing.txt` not found"), "{out}");
    assert!(out.stderr.contains("setup 2/2"), "{out}");
    let wt = ws.worktree("feat-01", "front");
    assert_eq!(
        std::fs::read_to_string(wt.join(".env")).unwrap(),
        "SECRET=1\n"
    );
    assert_eq!(
        std::fs::read_to_string(wt.join("setup-ran.txt")).unwrap(),
        format!("feat-01:{}:{}\n", ws.front_port(0), ws.shared_api_url())
    );
    let dotenv = std::fs::read_to_string(wt.join(".env.local")).unwrap();
    assert!(
        dotenv.contains(&format!("PORT={}\n", ws.front_port(0))),
        "{dotenv}"
    );
    // The generated file never shows as a change; setup's own output does (it is the user's).
    assert_eq!(ws.git(&wt, &["status", "--porcelain"]), "?? setup-ran.txt");
}

#[test]
fn dotenv_block_keeps_the_users_lines() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    std::fs::write(ws.repo("front").join(".env"), "MINE=1\n").unwrap();
    ws.write_config(&ws.standard_config("copy = [\".env\"]\ndotenv = \".env\""));
    ws.grove(&["create", "feat-01"]).success();
    let text = std::fs::read_to_string(ws.worktree("feat-01", "front").join(".env")).unwrap();
    assert!(text.starts_with("MINE=1\n# >>> grove"), "{text}");
    assert_eq!(text.matches("PORT=").count(), 1, "{text}");
}
