//! path, env, exec, init, demo, and the help text.

use crate::common::{TestWorkspace, redact, run};

#[test]
fn path_env_and_exec() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    let front = ws.worktree("feat-01", "front");
    let api = ws.worktree("feat-01", "api");

    assert_eq!(
        ws.grove(&["path", "feat-01"]).success().stdout,
        format!("{}\n", front.display())
    );
    assert_eq!(
        ws.grove(&["path", "feat-01", "api"]).success().stdout,
        format!("{}\n", api.display())
    );

    let env = ws.grove(&["env", "feat-01", "api"]).success().stdout;
    let expected_start = format!(
        "PORT={}\nGROVE_ENV=feat-01\nGROVE_ENV_ID=feat_01\nGROVE_LAYER=api\nGROVE_BRANCH=feat-01\nGROVE_WORKTREE={}\n",
        ws.api_port(0),
        api.display()
    );
    assert!(env.starts_with(&expected_start), "{env}");

    // exec: runs in the worktree with the variables, and passes the exit code through.
    let out = ws.grove(&[
        "exec",
        "feat-01",
        "--",
        "sh",
        "-c",
        "echo \"$PWD $PORT $API_URL\"; exit 7",
    ]);
    assert_eq!(out.code, 7, "{out}");
    assert_eq!(
        out.stdout,
        format!(
            "{} {} http://localhost:{}\n",
            front.display(),
            ws.front_port(0),
            ws.api_port(0)
        )
    );
    let out = ws
        .grove(&[
            "exec",
            "feat-01",
            "--layer",
            "api",
            "--",
            "sh",
            "-c",
            "echo $GROVE_LAYER",
        ])
        .success();
    assert_eq!(out.stdout, "api\n");
    // Inside a worktree, that worktree's layer is meant, from the subfolder it is run in.
    std::fs::create_dir_all(api.join("sub")).unwrap();
    let out = ws
        .grove_in(
            &api.join("sub"),
            &[
                "exec",
                "feat-01",
                "--",
                "sh",
                "-c",
                "echo $GROVE_LAYER $PWD",
            ],
        )
        .success();
    assert_eq!(out.stdout, format!("api {}\n", api.join("sub").display()));
    // Inside a worktree, grove finds the workspace that made it.
    let out = ws.grove_in(&api, &["ps", "--json"]).success();
    assert_eq!(out.json()["envs"][0]["name"], "feat-01");

    let out = ws.grove(&["exec", "feat-01", "--", "no-such-command-xyz"]);
    assert_eq!(out.code, 127, "{out}");
    assert!(out.stderr.contains("no-such-command-xyz"), "{out}");
}

#[test]
fn grove_toml_inside_the_repo_defers_to_the_main_checkout() {
    // A single-repo workspace: grove.toml is tracked, so every worktree has a copy of it.
    let ws = TestWorkspace::empty();
    let repo = ws.root.clone();
    ws.git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(
        repo.join("grove.toml"),
        format!(
            "[layers.app]\nrepo = \".\"\nports = \"{}\"\n",
            ws.ports.range(0, 10)
        ),
    )
    .unwrap();
    ws.commit(&repo, "README.md", "x", "Init");
    ws.grove(&["create", "one"]).success();
    let wt = ws.worktree("one", "app");
    assert!(wt.join("grove.toml").exists());
    // The envs folder is ignored by the repo itself.
    assert_eq!(ws.git(&repo, &["status", "--porcelain"]), "");
    let out = ws.grove_in(&wt, &["ps", "--json"]).success();
    assert_eq!(out.json()["workspace"], repo.to_string_lossy().as_ref());
    ws.grove_in(&wt, &["create", "two"]).success();
    assert_eq!(ws.ps().len(), 2);
}

#[test]
fn init_writes_a_config_that_loads() {
    let ws = TestWorkspace::empty();
    ws.init_repo("web");
    ws.init_repo("api");
    std::fs::write(
        ws.repo("web").join("package.json"),
        r#"{"scripts":{"dev":"vite"}}"#,
    )
    .unwrap();
    std::fs::write(
        ws.repo("api").join("Procfile"),
        "web: bin/rails s -p $PORT\n",
    )
    .unwrap();
    let out = ws.grove(&["init"]).success();
    assert!(out.stderr.contains("2 layer(s)"), "{out}");
    let text = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    assert!(
        text.contains("run = \"npm run dev -- --port $PORT --strictPort\""),
        "{text}"
    );
    assert!(text.contains("run = \"bin/rails s -p $PORT\""), "{text}");
    // Both have a dev server: both are default layers.
    assert!(
        text.contains("default_layers = [\"api\", \"web\"]"),
        "{text}"
    );
    ws.grove(&["ps"]).success();
    ws.grove(&["create", "x", "--from-web=main", "--no-start"])
        .success();
    // Never overwrites without --force.
    ws.grove(&["init"]).failure(1);
    ws.grove(&["init", "--force"]).success();
}

#[test]
fn init_leaves_a_todo_when_it_cannot_guess() {
    let ws = TestWorkspace::empty();
    ws.init_repo("thing");
    ws.grove(&["init"]).success();
    let text = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    assert!(text.contains("# TODO: the command that starts"), "{text}");
    let empty = TestWorkspace::empty();
    let out = empty.grove(&["init"]).failure(1);
    assert!(out.stderr.contains("no git repository"), "{out}");
}

#[test]
fn demo_runs_the_reference_workflow_and_can_run_again() {
    let ws = TestWorkspace::empty();
    let out = ws.grove(&["demo", "d"]).success();
    assert!(
        out.stdout
            .contains("$ grove create feat-02 --from-front=feat/ui --from-api=feat/endpoint"),
        "{out}"
    );
    assert!(out.stdout.contains("[feat-02 from feat/endpoint]"), "{out}");
    // The fronts answer, each with the API it is wired to.
    assert!(
        out.stdout.contains("front (new UI) of env feat-02"),
        "{out}"
    );
    assert!(out.stdout.contains("\"api\": \"feat-02\""), "{out}");
    assert!(
        out.stdout.contains("wired to API http://localhost:4000"),
        "{out}"
    );
    let demo = ws.root.join("d");
    let envs = run(ws.cmd().current_dir(&demo).args(["ps", "--json"]))
        .success()
        .json();
    assert_eq!(envs["envs"].as_array().unwrap().len(), 2);
    // Again: the old demo is replaced, its envs and leases forgotten.
    ws.grove(&["demo", "d"]).success();
    let envs = run(ws.cmd().current_dir(&demo).args(["ps", "--json"]))
        .success()
        .json();
    assert_eq!(envs["envs"].as_array().unwrap().len(), 2);
    assert_eq!(ws.leased_ports().len(), 3);
    // A folder that is not a demo is never replaced.
    std::fs::create_dir_all(ws.root.join("mine")).unwrap();
    std::fs::write(ws.root.join("mine/file"), "x").unwrap();
    let out = ws.grove(&["demo", "mine"]).failure(1);
    assert!(out.stderr.contains("is not a grove demo"), "{out}");
}

#[test]
fn help_lists_generated_flags() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let out = ws.grove(&["create", "--help"]).success();
    assert!(out.stdout.contains("--from-front <BASE>"), "{out}");
    assert!(out.stdout.contains("--from-api <BASE>"), "{out}");
    insta::assert_snapshot!("create_help", redact(&ws, &out.stdout));
    let top = ws.grove(&["--help"]).success();
    insta::assert_snapshot!("top_help", top.stdout);
}

#[test]
fn ps_with_no_envs_and_closed_stdout() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let out = ws.grove(&["ps"]).success();
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("no envs"), "{out}");
}
