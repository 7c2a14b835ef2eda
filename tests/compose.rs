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
        // An infra service per env in a container: it needs a port range, a URL to point
        // at it, and a service.
        (
            "[layers.db]\nshared_url = \"postgres://localhost:5432/app\"\nisolate = { kind = \"compose\", service = \"pg\" }",
            "needs `ports`",
        ),
        (
            "[layers.db]\nshared_url = \"localhost\"\nports = \"30000-30010\"\nisolate = { kind = \"compose\", service = \"pg\" }",
            "needs a `shared_url` with a scheme",
        ),
        (
            "[layers.db]\nshared_url = \"postgres://localhost:5432/app\"\nports = \"30000-30010\"\nisolate = { kind = \"compose\" }",
            "needs `service`",
        ),
        (
            "[layers.db]\nshared_url = \"postgres://localhost:5432/app\"\nisolate = { kind = \"redis\", service = \"pg\" }",
            "are for `kind = \"compose\"`",
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

/// The main stack's infra on a docker network of the test's: a `db` container (busybox
/// httpd answering "db answers") that the envs' containers must reach by that name.
struct Infra<'a> {
    d: &'a Docker,
    network: String,
    container: String,
}

impl<'a> Infra<'a> {
    fn start(d: &'a Docker, tag: &str) -> Self {
        let network = format!("grove-test-infra-{tag}-{}", std::process::id());
        d.cli(&["network", "create", &network]).success();
        let container = format!("{network}-db");
        d.cli(&[
            "run",
            "--detach",
            "--name",
            &container,
            "--network",
            &network,
            "--network-alias",
            "db",
            d.busybox(),
            "sh",
            "-c",
            "mkdir /www && echo 'db answers' > /www/index.html && exec httpd -f -p 80 -h /www",
        ])
        .success();
        Infra {
            d,
            network,
            container,
        }
    }
}

impl Drop for Infra<'_> {
    fn drop(&mut self) {
        let _ = self.d.cli(&["rm", "--force", &self.container]);
        let _ = self.d.cli(&["network", "rm", &self.network]);
    }
}

/// A repo holding a compose service `service` that serves its `www` folder on `port`, saying
/// `hello` on its log first.
fn served_repo(ws: &TestWorkspace, d: &Docker, repo: &str, service: &str, port: u16) {
    let dir = ws.init_repo(repo);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    ws.commit(&dir, "www/index.html", &format!("{repo} page\n"), "Page");
    ws.commit(
        &dir,
        "compose.yaml",
        &format!(
            "services:\n  {service}:\n    image: {}\n    command: [\"sh\", \"-c\", \"echo hello from {repo}; exec httpd -f -p {port} -h /www\"]\n    volumes: [\"./www:/www\"]\n\
             \x20   healthcheck: {{ test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:{port}/index.html\"], interval: 1s }}\n",
            d.busybox()
        ),
        "Compose file",
    );
}

/// The reference workflow with container layers: feat-01's front container wired to the
/// shared API, feat-02 with an API container of its own, both on the main stack's network
/// where `db` answers by name; ps shows the containers, logs their output; a killed
/// container is restarted and counted; destroy leaves nothing of the envs and the main
/// stack's network and `db` untouched.
#[test]
fn the_reference_workflow_runs_with_container_layers() {
    let Some(d) = docker(
        "compose::the_reference_workflow_runs_with_container_layers",
        false,
    ) else {
        return;
    };
    let infra = Infra::start(&d, "ref");
    let ws = TestWorkspace::empty();
    ws.use_docker(&d);
    served_repo(&ws, &d, "front", "web", 8080);
    served_repo(&ws, &d, "api", "api", 8081);
    let shared_api = format!("http://localhost:{}", ws.ports.port(30));
    ws.write_config(&format!(
        "[workspace]\ndefault_layers = [\"front\"]\ndocker_network = \"{}\"\n\n\
         [layers.api]\nrepo = \"api\"\nports = \"{}\"\nshared_url = \"{shared_api}\"\n\
         compose = {{ service = \"api\", port = 8081 }}\nready = {{ http = \"/index.html\" }}\n\n\
         [layers.front]\nrepo = \"front\"\nports = \"{}\"\n\
         compose = {{ service = \"web\", port = 8080 }}\nready = {{ http = \"/index.html\" }}\n\
         env = {{ API_URL = \"{{{{ layers.api.url }}}}\" }}\n",
        infra.network,
        ws.ports.range(10, 10),
        ws.ports.range(0, 10),
    ));
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["create", "feat-02", "--from-api", "main"])
        .success();
    let f1 = crate::common::env_json(&ws, "feat-01");
    let f2 = crate::common::env_json(&ws, "feat-02");
    let front1 = crate::common::layer(&f1, "front")["port"].as_u64().unwrap() as u16;
    let api2 = crate::common::layer(&f2, "api")["port"].as_u64().unwrap() as u16;
    assert_eq!(
        http_get(front1, "/index.html").map(|r| r.1),
        Some("front page\n".into())
    );
    assert_eq!(
        http_get(api2, "/index.html").map(|r| r.1),
        Some("api page\n".into())
    );

    // Wiring, seen from inside the containers: feat-01's front uses the shared API, feat-02's
    // its own (by the port published on this machine), and both reach `db` by name.
    let in_front = |env: &str, cmd: &str| {
        ws.grove(&["exec", env, "--layer", "front", "--", "sh", "-c", cmd])
            .success()
            .stdout
    };
    assert_eq!(in_front("feat-01", "echo $API_URL").trim(), shared_api);
    assert_eq!(
        in_front("feat-02", "echo $API_URL").trim(),
        format!("http://localhost:{api2}")
    );
    assert_eq!(
        in_front("feat-01", "echo $PORT").trim(),
        "8080",
        "the container's port"
    );
    assert!(
        in_front("feat-01", "cat /etc/hosts").contains("host.docker.internal"),
        "layers run on the host are reached by that name"
    );
    for env in ["feat-01", "feat-02"] {
        assert_eq!(
            in_front(env, "wget -qO- http://db/index.html"),
            "db answers\n",
            "{env}"
        );
    }
    // --host runs in the worktree on this machine instead.
    let host = ws
        .grove(&["exec", "feat-01", "--layer", "front", "--host", "--", "pwd"])
        .success();
    assert_eq!(
        std::path::Path::new(host.stdout.trim()),
        ws.worktree("feat-01", "front").canonicalize().unwrap()
    );

    // ps: the containers as the engine has them, with their health checks' verdicts.
    let front = crate::common::layer(&f1, "front");
    assert_eq!(front["containers"][0]["state"], "running", "{front:#}");
    assert_eq!(front["containers"][0]["service"], "web");
    assert!(
        wait_until(20, || {
            let e = crate::common::env_json(&ws, "feat-01");
            crate::common::layer(&e, "front")["containers"][0]["health"] == "healthy"
        }),
        "{:#}",
        crate::common::env_json(&ws, "feat-01")
    );
    let table = ws.grove(&["ps"]).success().stdout;
    assert!(table.contains("(running, healthy)"), "{table}");
    assert!(
        ws.grove(&["logs", "feat-01", "front"])
            .success()
            .stdout
            .contains("hello from front"),
    );

    // The container's process killed behind grove's back: the layer's restart policy brings
    // it back, and ps counts it.
    let label = format!("dev.grove.token={}", ws.env_token("feat-01"));
    let id = d
        .cli(&["ps", "--quiet", "--filter", &format!("label={label}")])
        .stdout
        .trim()
        .to_string();
    let pid = d
        .cli(&["inspect", "--format", "{{.State.Pid}}", &id])
        .stdout
        .trim()
        .parse::<i32>()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(60, || {
            let env = crate::common::env_json(&ws, "feat-01");
            let l = crate::common::layer(&env, "front");
            l["restarts"] == 1 && l["state"] == "ready"
        }),
        "{:#}",
        crate::common::env_json(&ws, "feat-01")
    );
    assert_eq!(http_get(front1, "/index.html").map(|r| r.0), Some(200));

    let tokens = [ws.env_token("feat-01"), ws.env_token("feat-02")];
    for env in ["feat-01", "feat-02"] {
        ws.grove(&["destroy", env, "--yes"]).success();
    }
    for t in tokens {
        assert_eq!(
            d.labelled(&format!("dev.grove.token={t}")),
            Vec::<String>::new()
        );
    }
    let db = d.cli(&[
        "inspect",
        "--format",
        "{{.State.Running}}",
        &infra.container,
    ]);
    assert_eq!(
        db.stdout.trim(),
        "true",
        "the main stack's db is not the envs'"
    );
}

/// What carries the label of an env that no longer exists (a destroy that could not reach
/// the engine, a lost store) is a doctor problem, and `--fix` removes it; the live env's
/// containers are left alone.
#[test]
fn doctor_removes_what_a_gone_env_left_on_the_engine() {
    let Some(d) = docker("compose::doctor_removes_what_a_gone_env_left", false) else {
        return;
    };
    let ws = compose_ws(&d);
    ws.grove(&["create", "feat"]).success();
    let live = format!("dev.grove.token={}", ws.env_token("feat"));
    let ws_key = d
        .cli(&[
            "ps",
            "--filter",
            &format!("label={live}"),
            "--format",
            "{{.Label \"dev.grove.workspace\"}}",
        ])
        .stdout
        .trim()
        .to_string();
    assert!(!ws_key.is_empty());
    ws.grove(&["doctor"]).success();
    let gone = "dev.grove.token=0123456789abcdef01234567";
    let ws_label = format!("dev.grove.workspace={ws_key}");
    let name = format!("grove-test-gone-{}", std::process::id());
    d.cli(&[
        "volume", "create", "--label", gone, "--label", &ws_label, &name,
    ])
    .success();
    d.cli(&[
        "network", "create", "--label", gone, "--label", &ws_label, &name,
    ])
    .success();
    let out = ws.grove(&["doctor", "--json"]);
    assert!(out.stdout.contains("docker-leftover"), "{out}");
    assert!(out.stdout.contains("volume grove-test-go"), "{out}");
    ws.grove(&["doctor", "--fix"]).success();
    assert_eq!(d.labelled(gone), Vec::<String>::new());
    assert!(!d.labelled(&live).is_empty(), "the live env's are kept");
    assert_eq!(
        http_get(ws.ports.port(0), "/index.html").map(|r| r.0),
        Some(200)
    );
    let out = ws.grove(&["doctor"]).success();
    assert!(!out.stdout.contains("docker-leftover"), "{out}");
    ws.grove(&["destroy", "feat"]).success();
}

/// `isolate = { kind = "compose" }`: each env gets its own database container (a CGI
/// script storing rows in a volume, in the workspace's infra compose file), which its API
/// container reaches by service name on the env's network and the host by the leased port.
/// A row written through one env's API is not seen through the other's; down/up keeps the
/// rows; destroy removes container and volume.
#[test]
fn isolate_compose_gives_each_env_a_database_container_of_its_own() {
    let Some(d) = docker("compose::isolate_compose_gives_each_env", false) else {
        return;
    };
    let ws = TestWorkspace::empty();
    ws.use_docker(&d);
    let image = d.busybox();
    std::fs::create_dir_all(ws.root.join("db")).unwrap();
    std::fs::write(
        ws.root.join("db/rows"),
        "#!/bin/sh\necho Content-Type: text/plain\necho\n\
         [ -n \"$QUERY_STRING\" ] && echo \"$QUERY_STRING\" >> /data/rows\ncat /data/rows 2>/dev/null\n",
    )
    .unwrap();
    std::fs::write(
        ws.root.join("infra.yaml"),
        format!(
            "services:\n  db:\n    image: {image}\n    command: [\"sh\", \"-c\", \"mkdir -p /www/cgi-bin && cp /srv/rows /www/cgi-bin/ && chmod +x /www/cgi-bin/rows && exec httpd -f -p 80 -h /www\"]\n    volumes: [\"./db:/srv:ro\", \"data:/data\"]\nvolumes:\n  data: {{}}\n"
        ),
    )
    .unwrap();
    let api = ws.init_repo("api");
    ws.commit(
        &api,
        "start.sh",
        "mkdir -p /www/cgi-bin\n\
         printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\nwget -qO- \"%s/cgi-bin/rows?$QUERY_STRING\"\\n' \"$DB_URL\" > /www/cgi-bin/rows\n\
         chmod +x /www/cgi-bin/rows\necho ok > /www/index.html\nexec httpd -f -p 8081 -h /www\n",
        "Start script",
    );
    ws.commit(
        &api,
        "compose.yaml",
        &format!(
            "services:\n  api:\n    image: {image}\n    command: [\"sh\", \"/app/start.sh\"]\n    volumes: [\"./:/app:ro\"]\n"
        ),
        "Compose file",
    );
    ws.write_config(&format!(
        "[workspace]\ndefault_layers = [\"api\"]\n\n\
         [layers.db]\nshared_url = \"http://localhost:{}\"\nports = \"{}\"\n\
         isolate = {{ kind = \"compose\", service = \"db\", file = \"infra.yaml\", port = 80 }}\n\n\
         [layers.api]\nrepo = \"api\"\nports = \"{}\"\n\
         compose = {{ service = \"api\", port = 8081 }}\nready = {{ http = \"/index.html\" }}\n\
         env = {{ DB_URL = \"{{{{ layers.db.url }}}}\" }}\n",
        ws.ports.port(40),
        ws.ports.range(20, 10),
        ws.ports.range(0, 10),
    ));
    ws.grove(&["create", "feat-01", "--isolate-db"]).success();
    ws.grove(&["create", "feat-02", "--isolate-db"]).success();
    let port = |env: &str, layer: &str| {
        let e = crate::common::env_json(&ws, env);
        let l = crate::common::layer(&e, layer);
        let url = l["url"].as_str().unwrap().to_string();
        u16::try_from(
            l["port"]
                .as_u64()
                .unwrap_or_else(|| url.rsplit(':').next().unwrap().parse().unwrap()),
        )
        .unwrap()
    };
    // The whole answer: busybox passes the CGI's `\n`-separated head through as it is.
    let rows = |p: u16, q: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).ok()?;
        write!(s, "GET /cgi-bin/rows{q} HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    };
    let (api1, api2) = (port("feat-01", "api"), port("feat-02", "api"));
    assert!(rows(api1, "?row-of-01").unwrap().contains("row-of-01"));
    let seen2 = rows(api2, "?row-of-02").unwrap();
    assert!(
        seen2.contains("row-of-02") && !seen2.contains("row-of-01"),
        "{seen2}"
    );
    assert!(!rows(api1, "").unwrap().contains("row-of-02"));

    // The host reaches the env's database at its URL; its containers by service name.
    let f1 = crate::common::env_json(&ws, "feat-01");
    let db = crate::common::layer(&f1, "db");
    assert_eq!(db["mode"], "isolated", "{db:#}");
    assert_eq!(db["containers"][0]["state"], "running", "{db:#}");
    assert!(
        rows(port("feat-01", "db"), "")
            .unwrap()
            .contains("row-of-01")
    );
    let inside = ws
        .grove(&[
            "exec",
            "feat-01",
            "--layer",
            "api",
            "--",
            "sh",
            "-c",
            "echo $DB_URL",
        ])
        .success();
    assert_eq!(inside.stdout.trim(), "http://db:80");

    // down stops the database too; up starts it with its rows.
    let running_db = |env: &str| {
        d.cli(&[
            "ps",
            "--quiet",
            "--filter",
            &format!("label=dev.grove.token={}", ws.env_token(env)),
            "--filter",
            "label=dev.grove.layer=db",
        ])
        .stdout
        .split_whitespace()
        .count()
    };
    ws.grove(&["down", "feat-01"]).success();
    assert_eq!(running_db("feat-01"), 0);
    assert_eq!(running_db("feat-02"), 1, "the other env's is not touched");
    ws.grove(&["up", "feat-01"]).success();
    assert!(rows(api1, "").unwrap().contains("row-of-01"));

    let out = ws.grove(&["destroy", "feat-01", "--keep-data"]).failure(1);
    assert!(out.stderr.contains("--keep-data"), "{out}");
    // Nor can a land keep it: refused before anything lands.
    let out = ws
        .grove(&["land", "feat-01", "--keep-data", "--yes", "--no-check"])
        .failure(1);
    assert!(
        out.stderr.contains("--keep-data") && out.stderr.contains("nothing was landed"),
        "{out}"
    );
    let tokens = [ws.env_token("feat-01"), ws.env_token("feat-02")];
    for env in ["feat-01", "feat-02"] {
        ws.grove(&["destroy", env]).success();
    }
    for t in tokens {
        assert_eq!(
            d.labelled(&format!("dev.grove.token={t}")),
            Vec::<String>::new()
        );
    }
}

/// An env on another machine's engine (the second engine, reached over TCP through a docker
/// context): its containers are there and not on the workspace's engine, its URL names that
/// host, a `build:` service serves the worktree's code, a change in the worktree reaches the
/// container through `develop.watch`, and a bind mount (which that engine could not see) is
/// warned about at create.
#[test]
fn an_env_on_another_engine_builds_and_syncs_the_worktree() {
    let (Some(d1), Some(d2)) = (
        docker("compose::an_env_on_another_engine (first)", false),
        docker("compose::an_env_on_another_engine (second)", true),
    ) else {
        return;
    };
    let ws = TestWorkspace::empty();
    ws.use_docker(&d1);
    let image = d2.busybox();
    let web = ws.init_repo("web");
    std::fs::create_dir_all(web.join("www")).unwrap();
    ws.commit(&web, "www/index.html", "v1\n", "Page");
    ws.commit(
        &web,
        "Dockerfile",
        &format!("FROM {image}\nCOPY www /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"),
        "Image",
    );
    ws.commit(
        &web,
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    develop:\n      watch:\n        - {{ action: sync, path: ./www, target: /www }}\n\
             \x20 worker:\n    image: {image}\n    command: [\"sleep\", \"1000\"]\n    volumes: [\"./www:/srv\"]\n"
        ),
        "Compose file",
    );
    ws.write_config(&format!(
        "[workspace]\ndefault_layers = [\"web\"]\n\n[layers.web]\nrepo = \"web\"\nports = \"{}\"\n\
         compose = {{ service = \"web\", port = 8080, services = [\"worker\"] }}\nready = {{ http = \"/index.html\" }}\n",
        ws.ports.range(0, 10)
    ));
    // A context in the test's own docker config, naming the second engine.
    let context = std::process::Command::new("docker")
        .env("HOME", &ws.home)
        .args(["context", "create", "far", "--docker"])
        .arg(format!("host={}", d2.host))
        .output()
        .unwrap();
    assert!(context.status.success(), "{context:?}");

    let out = ws
        .grove(&["create", "feat", "--docker-context", "far"])
        .success();
    assert!(
        out.stderr.contains("bind-mounts") && out.stderr.contains("worker:"),
        "{out}"
    );
    let env = &ws.ps()[0];
    let web_layer = crate::common::layer(env, "web");
    let port = u16::try_from(web_layer["port"].as_u64().unwrap()).unwrap();
    assert_eq!(
        web_layer["url"],
        format!("http://127.0.0.1:{port}"),
        "the engine's host, not localhost"
    );
    let label = format!("dev.grove.token={}", ws.env_token("feat"));
    assert!(!d2.labelled(&label).is_empty());
    assert_eq!(
        d1.labelled(&label),
        Vec::<String>::new(),
        "nothing on the first engine"
    );
    assert_eq!(
        http_get(port, "/index.html").map(|r| r.1),
        Some("v1\n".into())
    );

    // The worktree's change reaches the container: synced, not mounted.
    std::fs::write(ws.worktree("feat", "web").join("www/index.html"), "v2\n").unwrap();
    assert!(
        wait_until(30, || http_get(port, "/index.html").map(|r| r.1)
            == Some("v2\n".into())),
        "{}",
        ws.grove(&["logs", "feat", "web"]).stdout
    );
    // ps asks the env's engine, not the workspace's.
    assert_eq!(
        crate::common::layer(&ws.ps()[0], "web")["containers"][0]["state"],
        "running"
    );

    ws.git(&ws.worktree("feat", "web"), &["checkout", "www/index.html"]);
    ws.grove(&["destroy", "feat"]).success();
    assert_eq!(
        d2.labelled(&label),
        Vec::<String>::new(),
        "container, network, built image"
    );
}

/// Where `prog` is on the test's PATH.
fn which(prog: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A PATH without docker: `first` (when given), grove's folder, and a folder of the test's
/// holding only `git`.
fn path_without_docker(ws: &TestWorkspace, first: Option<&std::path::Path>) -> std::ffi::OsString {
    let bin = ws.tmp.path().join("git-only");
    if !bin.exists() {
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(which("git"), bin.join("git")).unwrap();
    }
    let grove_dir = std::path::Path::new(crate::common::grove_bin())
        .parent()
        .unwrap();
    std::env::join_paths(first.into_iter().chain([grove_dir, bin.as_path()])).unwrap()
}

/// What a machine can lack for compose layers, each a clear error with the fix, exit 1, and
/// nothing made: no docker at all, Compose v1 only (a `docker` whose `compose` is unknown),
/// and a service the layer names that its compose file does not have.
#[test]
fn missing_requirements_are_clear_errors_and_leave_nothing() {
    let Some(d) = docker("compose::missing_requirements_are_clear_errors", false) else {
        return;
    };
    let ws = compose_ws(&d);
    let before = ws.snapshot(&["web"]);

    // No docker on PATH.
    let out = crate::common::run(
        ws.cmd()
            .env("PATH", path_without_docker(&ws, None))
            .args(["create", "feat"]),
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("docker is not installed"), "{out}");
    assert!(out.stderr.contains("hint: install Docker Engine"), "{out}");

    // A docker without Compose v2 (the old `docker-compose` v1 does not make `docker compose`).
    let v1 = ws.tmp.path().join("v1-bin");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(
        v1.join("docker"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = compose ]; then echo \"docker: 'compose' is not a docker command.\" >&2; exit 1; fi\nexec {} \"$@\"\n",
            which("docker")
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(v1.join("docker"))
        .status()
        .unwrap();
    let out = crate::common::run(
        ws.cmd()
            .env("PATH", path_without_docker(&ws, Some(&v1)))
            .args(["create", "feat"]),
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("Compose v2 is missing"), "{out}");
    assert!(out.stderr.contains("v1 is not enough"), "{out}");

    // The workspace's infra network missing on the engine.
    let config = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    ws.write_config(&config.replace(
        "[workspace]\n",
        "[workspace]\ndocker_network = \"grove-test-no-such-net\"\n",
    ));
    let out = ws.grove(&["create", "feat"]).failure(1);
    assert!(out.stderr.contains("`grove-test-no-such-net`"), "{out}");
    assert!(out.stderr.contains("docker network create"), "{out}");
    ws.write_config(&config);

    // A service the compose file does not have: found in the new worktree, and the env
    // undone whole.
    let config = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    ws.write_config(&config.replace("service = \"web\"", "service = \"webb\""));
    let out = ws.grove(&["create", "feat"]).failure(1);
    assert!(out.stderr.contains("service `webb` is not in"), "{out}");
    assert!(out.stderr.contains("its services: web"), "{out}");
    assert!(ws.ps().is_empty());
    assert_eq!(ws.snapshot(&["web"]), before);
}

/// The env's port taken by another program while the env was down: `up` names the holder
/// and moves the layer to a free port of its range, as it does for a host process; the
/// container publishes the new port, and nothing is left once destroyed.
#[test]
fn a_published_port_taken_moves_the_layer_and_says_who_holds_it() {
    let Some(d) = docker("compose::a_published_port_taken", false) else {
        return;
    };
    let ws = compose_ws(&d);
    let port = ws.ports.port(0);
    ws.grove(&["create", "feat"]).success();
    ws.grove(&["down", "feat"]).success();
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = ws.grove(&["up", "feat"]).success();
    let said = format!("port {port} was taken by pid {}", std::process::id());
    assert_eq!(out.stderr.matches(&said).count(), 1, "said once:\n{out}");
    let moved = u16::try_from(
        crate::common::layer(&ws.ps()[0], "web")["port"]
            .as_u64()
            .unwrap(),
    )
    .unwrap();
    assert_ne!(moved, port);
    assert_eq!(http_get(moved, "/index.html").map(|r| r.0), Some(200));
    let label = format!("dev.grove.token={}", ws.env_token("feat"));
    ws.grove(&["destroy", "feat"]).success();
    assert_eq!(d.labelled(&label), Vec::<String>::new());
}

/// A workspace whose layers are compose services of their own repos: `(repo, compose file)`,
/// each layer serving on container port 8080 with an http readiness probe.
fn layers_ws(d: &Docker, layers: &[(&str, String)]) -> TestWorkspace {
    let ws = TestWorkspace::empty();
    ws.use_docker(d);
    let mut toml = format!(
        "[workspace]\ndefault_layers = [{}]\n",
        layers
            .iter()
            .map(|(r, _)| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (n, (repo, compose)) in layers.iter().enumerate() {
        let dir = ws.init_repo(repo);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        ws.commit(&dir, "www/index.html", &format!("{repo} page\n"), "Page");
        ws.commit(&dir, "compose.yaml", compose, "Compose file");
        let n = u16::try_from(n).unwrap();
        toml.push_str(&format!(
            "\n[layers.{repo}]\nrepo = \"{repo}\"\nports = \"{}\"\n\
             compose = {{ service = \"web\", port = 8080 }}\nready = {{ http = \"/index.html\" }}\n",
            ws.ports.range(n * 10, 10)
        ));
    }
    ws.write_config(&toml);
    ws
}

fn httpd_service(image: &str, extra: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    volumes: [\"./www:/www\"]\n{extra}"
    )
}

fn served(ws: &TestWorkspace, env: &str, layer: &str) -> Option<String> {
    let e = crate::common::env_json(ws, env);
    let port = crate::common::layer(&e, layer)["port"].as_u64()?;
    http_get(u16::try_from(port).ok()?, "/index.html").map(|r| r.1)
}

/// Env names that differ only in punctuation (`feat.1`, `feat_1`) are two envs on the engine
/// too: each serves, and destroying one leaves the other's container running.
#[test]
fn envs_whose_names_differ_in_punctuation_keep_their_own_containers() {
    let Some(d) = docker("compose::envs_whose_names_differ_in_punctuation", false) else {
        return;
    };
    let ws = layers_ws(&d, &[("web", httpd_service(d.busybox(), ""))]);
    ws.grove(&["create", "feat.1"]).success();
    ws.grove(&["create", "feat_1"]).success();
    assert_eq!(served(&ws, "feat.1", "web"), Some("web page\n".into()));
    assert_eq!(served(&ws, "feat_1", "web"), Some("web page\n".into()));
    ws.grove(&["destroy", "feat.1"]).success();
    assert_eq!(served(&ws, "feat_1", "web"), Some("web page\n".into()));
    let env = crate::common::env_json(&ws, "feat_1");
    assert_eq!(
        crate::common::layer(&env, "web")["containers"][0]["state"],
        "running"
    );
    ws.grove(&["destroy", "feat_1"]).success();
}

/// Two layers whose compose files both name their service `web` each run their own, and on
/// the env's network each answers to its layer's name: front's container reaches the env's
/// api at `http://api:8080`. Each env's network is its own: another env's front gets its own
/// api by that name, and cannot reach this env's api container even by its address.
#[test]
fn two_layers_with_a_service_of_one_name_each_run_their_own() {
    let Some(d) = docker("compose::two_layers_with_a_service_of_one_name", false) else {
        return;
    };
    let svc = httpd_service(d.busybox(), "");
    let ws = layers_ws(&d, &[("front", svc.clone()), ("api", svc)]);
    ws.grove(&["create", "feat"]).success();
    ws.grove(&["create", "other"]).success();
    assert_eq!(served(&ws, "feat", "front"), Some("front page\n".into()));
    assert_eq!(served(&ws, "feat", "api"), Some("api page\n".into()));
    // feat's api serves its worktree (bind-mounted): a page only it has.
    std::fs::write(
        ws.worktree("feat", "api").join("www/index.html"),
        "feat api\n",
    )
    .unwrap();
    let from_front = |env: &str, url: &str| {
        ws.grove(&[
            "exec", env, "--layer", "front", "--", "busybox", "timeout", "5", "wget", "-qO-", url,
        ])
    };
    assert_eq!(
        from_front("feat", "http://api:8080/index.html")
            .success()
            .stdout,
        "feat api\n",
        "the env's api by its layer's name"
    );
    assert_eq!(
        from_front("other", "http://api:8080/index.html")
            .success()
            .stdout,
        "api page\n",
        "another env's `api` is its own"
    );
    // feat's api container on feat's network: reached from feat's front at that address,
    // not from the other env's front.
    let token = ws.env_token("feat");
    let label = format!("label=dev.grove.token={token}");
    let nets = d.cli(&[
        "network",
        "ls",
        "--filter",
        &label,
        "--format",
        "{{.Name}} {{.Label \"dev.grove.layer\"}}",
    ]);
    let env_net: Vec<&str> = nets
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_none())
        .map(str::trim)
        .collect();
    assert_eq!(env_net.len(), 1, "the env's network: {nets}");
    let api = d.cli(&[
        "ps",
        "--quiet",
        "--filter",
        &label,
        "--filter",
        "label=dev.grove.layer=api",
    ]);
    let ip = d
        .cli(&[
            "inspect",
            "--format",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                env_net[0]
            ),
            api.stdout.trim(),
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    let by_address = format!("http://{ip}:8080/index.html");
    assert_eq!(
        from_front("feat", &by_address).success().stdout,
        "feat api\n"
    );
    let other = from_front("other", &by_address);
    assert_ne!(other.code, 0, "another env reached feat's api: {other}");
    ws.git(&ws.worktree("feat", "api"), &["checkout", "www/index.html"]);
    let tokens = [token, ws.env_token("other")];
    for env in ["feat", "other"] {
        ws.grove(&["destroy", env]).success();
    }
    for t in tokens {
        assert_eq!(
            d.labelled(&format!("dev.grove.token={t}")),
            Vec::<String>::new()
        );
    }
}

/// What a compose file says that would make envs share: a fixed container name or a volume
/// with a fixed name is refused at create (nothing made); fixed published ports are replaced
/// by the env's, so two envs do not collide on them.
#[test]
fn what_would_make_envs_share_is_refused_or_replaced() {
    let Some(d) = docker("compose::what_would_make_envs_share", false) else {
        return;
    };
    let image = d.busybox();
    for (compose, said) in [
        (
            httpd_service(image, "    container_name: shop-web\n"),
            "sets `container_name: shop-web`",
        ),
        (
            httpd_service(image, "").replace("[\"./www:/www\"]", "[\"./www:/www\", \"pg:/data\"]")
                + "volumes:\n  pg:\n    name: shop-main-pgdata\n",
            "has a fixed name (`shop-main-pgdata`)",
        ),
    ] {
        let ws = layers_ws(&d, &[("web", compose)]);
        let before = ws.snapshot(&["web"]);
        let out = ws.grove(&["create", "feat"]).failure(1);
        assert!(out.stderr.contains(said), "{out}");
        assert!(out.stderr.contains("hint:"), "{out}");
        assert!(ws.ps().is_empty());
        assert_eq!(ws.snapshot(&["web"]), before);
    }
    // A network with a fixed name: the second env could not make its own.
    let ws = layers_ws(
        &d,
        &[(
            "web",
            httpd_service(
                image,
                "    networks: [default, back]\nnetworks:\n  back:\n    name: shop-back\n",
            ),
        )],
    );
    let out = ws.grove(&["create", "feat"]).failure(1);
    assert!(
        out.stderr.contains("network `back`") && out.stderr.contains("`shop-back`"),
        "{out}"
    );
    assert!(ws.ps().is_empty());

    // Fixed published ports, on the layer's service and on what it depends on; and `${PORT}`
    // in the file, which is the container's port as Compose reads it.
    let holder = TestWorkspace::empty(); // its port block: ports no other test takes
    let (fixed, fixed_dep) = (holder.ports.port(50), holder.ports.port(51));
    let ws = layers_ws(
        &d,
        &[(
            "web",
            format!(
                "services:\n  web:\n    image: {image}\n    command: [\"httpd\", \"-f\", \"-p\", \"${{PORT}}\", \"-h\", \"/www\"]\n\
                 \x20   volumes: [\"./www:/www\"]\n    ports: [\"127.0.0.1:{fixed}:8080\"]\n    depends_on: [cache]\n\
                 \x20 cache:\n    image: {image}\n    init: true\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"]\n    ports: [\"127.0.0.1:{fixed_dep}:80\"]\n"
            ),
        )],
    );
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["create", "feat-02"]).success();
    assert_eq!(served(&ws, "feat-02", "web"), Some("web page\n".into()));
    for p in [fixed, fixed_dep] {
        assert!(
            http_get(p, "/").is_none(),
            "the file's port {p} is not published"
        );
    }
    for env in ["feat-01", "feat-02"] {
        ws.grove(&["destroy", env]).success();
    }
}

/// A service the layer's service depends on, and a network of its file, carry the env's
/// label: `down` stops it, `destroy` removes it and the network.
#[test]
fn what_a_layer_depends_on_is_the_envs_too() {
    let Some(d) = docker("compose::what_a_layer_depends_on", false) else {
        return;
    };
    let image = d.busybox();
    let ws = layers_ws(
        &d,
        &[(
            "web",
            httpd_service(
                image,
                &format!(
                    "    depends_on: [cache]\n    networks: [default, back]\n  cache:\n    image: {image}\n    command: [\"sleep\", \"1000\"]\n    init: true\n    networks: [back]\nnetworks:\n  back: {{}}\n"
                ),
            ),
        )],
    );
    ws.grove(&["create", "feat"]).success();
    let label = format!("label=dev.grove.token={}", ws.env_token("feat"));
    let running = || {
        d.cli(&[
            "ps",
            "--filter",
            &label,
            "--format",
            "{{.Label \"com.docker.compose.service\"}}",
        ])
        .stdout
        .split_whitespace()
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(running(), ["cache".to_string(), "web".to_string()].into());
    let nets = d.cli(&["network", "ls", "--quiet", "--filter", &label]);
    assert_eq!(
        nets.stdout.split_whitespace().count(),
        2,
        "the layer's project's and `back` (one compose layer: no env network)"
    );
    ws.grove(&["down", "feat"]).success();
    assert!(wait_until(20, || running().is_empty()), "{:?}", running());
    let token = ws.env_token("feat");
    ws.grove(&["destroy", "feat"]).success();
    assert_eq!(
        d.labelled(&format!("dev.grove.token={token}")),
        Vec::<String>::new()
    );
}

/// An engine that stops answering: destroy refuses (the env half-destroyed, nothing
/// forgotten), `--force` goes on without it, and once the engine answers again `doctor`
/// finds what the env left there and removes it.
#[test]
fn destroy_without_the_engine_refuses_and_doctor_finds_the_rest_later() {
    let Some(d) = docker("compose::destroy_without_the_engine", false) else {
        return;
    };
    let ws = compose_ws(&d);
    // The env's engine, reached through a link that the test can cut.
    let sock = d.host.trim_start_matches("unix://");
    let link = ws.tmp.path().join("engine.sock");
    std::os::unix::fs::symlink(sock, &link).unwrap();
    let via = format!("unix://{}", link.display());
    ws.grove(&["create", "feat", "--docker-host", &via])
        .success();
    let label = format!("dev.grove.token={}", ws.env_token("feat"));
    std::fs::remove_file(&link).unwrap();
    let out = ws.grove(&["destroy", "feat"]).failure(1);
    assert!(out.stderr.contains("does not answer"), "{out}");
    assert!(out.stderr.contains("--force"), "{out}");
    assert_eq!(ws.ps()[0]["status"], "running", "the env is kept as it was");
    let out = ws.grove(&["destroy", "feat", "--force", "--yes"]).success();
    assert!(out.stderr.contains("grove doctor"), "{out}");
    assert!(ws.ps().is_empty());
    assert!(!d.labelled(&label).is_empty(), "left on the engine");
    std::os::unix::fs::symlink(sock, &link).unwrap();
    let out = ws.grove(&["doctor", "--json"]);
    assert!(out.stdout.contains("docker-leftover"), "{out}");
    ws.grove(&["doctor", "--fix"]).success();
    assert_eq!(d.labelled(&label), Vec::<String>::new());
}

/// The engine an env runs on is its own: made on the current docker context (no
/// `DOCKER_HOST`, no setting of grove's), the env stays on that engine after `docker context
/// use` points elsewhere, and after its store is lost and doctor takes it back from its
/// folder; destroy then removes its containers there.
#[test]
fn an_env_keeps_its_engine_through_a_context_switch_and_a_lost_store() {
    let (Some(d1), Some(d2)) = (
        docker("compose::an_env_keeps_its_engine (first)", false),
        docker("compose::an_env_keeps_its_engine (second)", true),
    ) else {
        return;
    };
    let ws = compose_ws(&d2);
    let docker_cli = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .env("HOME", &ws.home)
            .env_remove("DOCKER_HOST")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    docker_cli(&[
        "context",
        "create",
        "far",
        "--docker",
        &format!("host={}", d2.host),
    ]);
    docker_cli(&["context", "use", "far"]);
    // grove with docker's own default: the current context.
    let grove = |args: &[&str]| {
        let mut cmd = ws.cmd();
        cmd.env_remove("DOCKER_HOST").args(args);
        crate::common::run(&mut cmd)
    };
    grove(&["create", "feat"]).success();
    let label = format!("dev.grove.token={}", ws.env_token("feat"));
    assert!(!d2.labelled(&label).is_empty());
    docker_cli(&[
        "context",
        "create",
        "near",
        "--docker",
        &format!("host={}", d1.host),
    ]);
    docker_cli(&["context", "use", "near"]);
    // The store lost: doctor takes the env back from its folder, engine included.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(ws.grove_home.join(f));
    }
    grove(&["doctor", "--fix"]);
    assert_eq!(ws.ps().len(), 1, "taken back");
    grove(&["destroy", "feat"]).success();
    assert_eq!(
        d2.labelled(&label),
        Vec::<String>::new(),
        "removed on its engine"
    );
}

/// In a workspace where one layer is a compose service, an env that dedicates only a layer
/// run on the host has nothing on any engine: `ps`, `down` and `destroy` need no docker.
#[test]
fn an_env_without_containers_needs_no_docker() {
    let Some(d) = docker("compose::an_env_without_containers_needs_no_docker", false) else {
        return;
    };
    let ws = layers_ws(&d, &[("api", httpd_service(d.busybox(), ""))]);
    let front = ws.init_repo("front");
    ws.commit(&front, "README", "front\n", "Init");
    let config = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    ws.write_config(
        &config.replace("default_layers = [\"api\"]", "default_layers = [\"front\"]")
            .replace("[layers.api]", "[layers.front]\nrepo = \"front\"\n\n[layers.api]\nshared_url = \"http://localhost:9\"")
    );
    ws.grove(&["create", "feat"]).success();
    // No docker on PATH from here on.
    let path = path_without_docker(&ws, None);
    for args in [&["ps"][..], &["down", "feat"], &["destroy", "feat"]] {
        let out = crate::common::run(ws.cmd().env("PATH", &path).args(args));
        assert_eq!(out.code, 0, "{args:?}: {out}");
        assert!(!out.stderr.contains("ocker"), "{args:?}: {out}");
    }
}

/// `ready = { tcp = true }` on a compose layer: the engine's proxy accepts on the published
/// port before the service listens, so a connection alone proves nothing; create returns once
/// the service itself holds the connection, and it answers at once.
#[test]
fn a_tcp_probe_of_a_container_waits_for_the_service_not_the_proxy() {
    let Some(d) = docker("compose::a_tcp_probe_of_a_container", false) else {
        return;
    };
    let slow = format!(
        "services:\n  web:\n    image: {}\n    init: true\n    command: [\"sh\", \"-c\", \"sleep 2; exec httpd -f -p 8080 -h /www\"]\n    volumes: [\"./www:/www\"]\n",
        d.busybox()
    );
    let ws = layers_ws(&d, &[("web", slow)]);
    let config = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
    ws.write_config(&config.replace(
        "ready = { http = \"/index.html\" }",
        "ready = { tcp = true }",
    ));
    ws.grove(&["create", "feat"]).success();
    assert_eq!(served(&ws, "feat", "web"), Some("web page\n".into()));
    ws.grove(&["destroy", "feat"]).success();
}
