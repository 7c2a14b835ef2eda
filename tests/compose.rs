//! Layers run as Docker Compose services, on a real engine (the one `.ci/run` starts).

use crate::common::{Docker, TestWorkspace, docker, http_get, wait_until};

/// A workspace whose `web` layer is a compose service: busybox's httpd serving the
/// worktree's `www` folder (bind-mounted), on container port 8080.
fn compose_ws(d: &Docker) -> TestWorkspace {
    let ws = TestWorkspace::empty();
    ws.use_docker(d);
    let image = d.busybox();
    let web = ws.init_repo("web");
    std::fs::create_dir_all(web.join("www")).unwrap();
    ws.commit(&web, "www/index.html", "main page\n", "Page");
    ws.commit(
        &web,
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    command: [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    volumes: [\"./www:/www\"]\n"
        ),
        "Compose file",
    );
    ws.write_config(&format!(
        "[workspace]\ndefault_layers = [\"web\"]\n\n[layers.web]\nrepo = \"web\"\nports = \"{}\"\n\
         compose = {{ service = \"web\", port = 8080 }}\nready = {{ http = \"/index.html\" }}\n",
        ws.ports.range(0, 10)
    ));
    ws
}

#[test]
fn a_compose_layer_serves_the_worktree_and_destroy_leaves_nothing_labelled() {
    let Some(d) = docker("compose::a_compose_layer_serves_the_worktree", false) else {
        return;
    };
    let ws = compose_ws(&d);
    let port = ws.ports.port(0);
    ws.grove(&["create", "feat"]).success();
    let token = ws.env_token("feat");
    let label = format!("dev.grove.token={token}");
    // The env's own code: a change in its worktree is what the container serves.
    std::fs::write(
        ws.worktree("feat", "web").join("www/index.html"),
        "feat page\n",
    )
    .unwrap();
    assert_eq!(
        http_get(port, "/index.html").map(|r| r.1),
        Some("feat page\n".to_string())
    );
    let env = &ws.ps()[0];
    assert_eq!(env["status"], "running", "{env:#}");
    assert!(!d.labelled(&label).is_empty());

    // down keeps the container (stopped) and the port; up serves again on the same port.
    ws.grove(&["down", "feat"]).success();
    assert!(wait_until(20, || http_get(port, "/index.html").is_none()));
    let kept = d.cli(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label={label}"),
    ]);
    assert!(
        !kept.stdout.trim().is_empty(),
        "the stopped container is kept"
    );
    ws.grove(&["up", "feat"]).success();
    assert_eq!(http_get(port, "/index.html").map(|r| r.0), Some(200));

    // A leftover only the label can find (what a crashed `up` leaves): destroy removes it too.
    d.cli(&[
        "volume",
        "create",
        "--label",
        &label,
        &format!("grove-test-stray-{token}"),
    ])
    .success();
    ws.git(&ws.worktree("feat", "web"), &["checkout", "www/index.html"]);
    ws.grove(&["destroy", "feat"]).success();
    assert_eq!(d.labelled(&label), Vec::<String>::new());
    assert!(http_get(port, "/index.html").is_none());
}

/// No engine answering (a daemon down, a wrong DOCKER_HOST): `create` says so with what to
/// do, and makes nothing. Needs no engine, so it runs everywhere.
#[test]
fn an_engine_that_does_not_answer_stops_create_before_anything_is_made() {
    let ws = TestWorkspace::empty();
    let _ = ws
        .docker_host
        .set(format!("unix://{}/no-daemon.sock", ws.tmp.path().display()));
    let web = ws.init_repo("web");
    ws.commit(
        &web,
        "compose.yaml",
        "services:\n  web:\n    image: x\n",
        "Compose",
    );
    ws.write_config(&format!(
        "[layers.web]\nrepo = \"web\"\nports = \"{}\"\ncompose = {{ service = \"web\", port = 80 }}\n",
        ws.ports.range(0, 10)
    ));
    let before = ws.snapshot(&["web"]);
    let out = ws.grove(&["create", "feat"]).failure(1);
    assert!(out.stderr.contains("Docker"), "{out}");
    assert!(out.stderr.contains("hint:"), "{out}");
    assert_eq!(ws.snapshot(&["web"]), before);
    assert!(ws.ps().is_empty());
}

/// Config errors of a compose layer, each at its line.
#[test]
fn a_bad_compose_layer_is_a_config_error() {
    let ws = TestWorkspace::with_repos(&["web"]);
    for (layer, what) in [
        ("compose = { port = 80 }", "`compose` needs `service`"),
        ("compose = { service = \"web\" }", "`compose` needs `port`"),
        (
            "compose = { service = \"web\", port = 70000 }",
            "`compose.port` is not a port",
        ),
        (
            "runner = \"compose\"",
            "runs as a compose service but names none",
        ),
        ("runner = \"k8s\"", "unknown runner `k8s`"),
        (
            "run = \"npm start\"\ncompose = { service = \"web\", port = 80 }",
            "`run` would not be used",
        ),
        (
            "compose = { file = \"../x.yml\", service = \"web\", port = 80 }",
            "must stay inside the repo",
        ),
    ] {
        ws.write_config(&format!(
            "[layers.web]\nrepo = \"web\"\nports = \"{}\"\n{layer}\n",
            ws.ports.range(0, 10)
        ));
        let out = ws.grove(&["ps"]).failure(1);
        assert!(
            out.stderr.contains("grove.toml:") && out.stderr.contains(what),
            "{layer}:\n{out}"
        );
    }
    ws.write_config(&format!(
        "[workspace]\ndocker_context = \"a\"\ndocker_host = \"ssh://b\"\n[layers.web]\nrepo = \"web\"\nports = \"{}\"\n",
        ws.ports.range(0, 10)
    ));
    let out = ws.grove(&["ps"]).failure(1);
    assert!(out.stderr.contains("both name the engine"), "{out}");
}

/// The supervisor and the layer's `compose up` killed with -9 together: the container keeps
/// running (the engine owns it), and `down` finds it by the env's label and stops it.
#[test]
fn down_stops_a_container_whose_supervisor_was_killed() {
    let Some(d) = docker("compose::down_stops_a_container_whose_supervisor", false) else {
        return;
    };
    let ws = compose_ws(&d);
    let port = ws.ports.port(0);
    ws.grove(&["create", "feat"]).success();
    let token = ws.env_token("feat");
    let env = ws.ps()[0].clone();
    let sup = env["supervisor"].as_i64().unwrap();
    let leader = crate::common::layer(&env, "web")["pid"].as_i64().unwrap();
    for pid in [sup, leader] {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(wait_until(10, || !crate::common::group_members(
        i32::try_from(sup).unwrap()
    )
    .contains(&i32::try_from(sup).unwrap())));
    assert_eq!(
        http_get(port, "/index.html").map(|r| r.0),
        Some(200),
        "still served"
    );
    let out = ws.grove(&["down", "feat"]).success();
    assert!(
        out.stderr.contains("container(s) of `feat` left running"),
        "{out}"
    );
    assert!(http_get(port, "/index.html").is_none());
    ws.grove(&["destroy", "feat"]).success();
    assert_eq!(
        d.labelled(&format!("dev.grove.token={token}")),
        Vec::<String>::new()
    );
}
