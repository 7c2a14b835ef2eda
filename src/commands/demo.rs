//! `grove demo`: a self-contained workspace (repos `front` and `api`, tiny python3 servers, a
//! grove.toml) and the reference workflow run in it, so a new user sees grove work in one
//! command on a fresh machine.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::{DemoArgs, PsArgs};
use crate::commands::create::{self, CreateOpts};
use crate::commands::ps;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::exec::Cmd;
use crate::state::Store;
use crate::workspace::{self, Workspace};
use crate::{report, ui};

/// Marks a folder as a grove demo, so running the demo again may replace it.
const MARKER: &str = ".grove-demo";

const GROVE_TOML: &str = r#"# The grove demo workspace: two repos, a front and an API.
[workspace]
default_layers = ["front"]     # every env gets its own front; the API stays shared unless asked

[layers.front]
repo = "front"
run = "python3 server.py"
ports = "3001-3099"
shared_url = "http://localhost:3000"
ready = { http = "/health" }
env.API_URL = "{{ layers.api.url }}"   # this env's API when it has one, else the shared one
dotenv = ".env.local"

[layers.api]
repo = "api"
run = "python3 server.py"
ports = "4001-4099"
shared_url = "http://localhost:4000"
ready = { http = "/health" }
"#;

const FRONT_PY: &str = r#"# The demo front: shows which API it is wired to (API_URL, set by grove).
import http.server, os, urllib.request

PORT = int(os.environ.get("PORT", "3000"))
API = os.environ.get("API_URL", "http://localhost:4000")
ENV = os.environ.get("GROVE_ENV", "main")
TITLE = "front"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = "ok\n"
        else:
            try:
                api = urllib.request.urlopen(API + "/", timeout=2).read().decode().strip()
            except Exception as e:
                api = "unreachable (%s)" % e
            body = "%s of env %s on port %d\nwired to API %s -> %s\n" % (TITLE, ENV, PORT, API, api)
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


print("front listening on port %d, API_URL=%s" % (PORT, API), flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"#;

const API_PY: &str = r#"# The demo API: says which env and branch it serves.
import http.server, json, os

PORT = int(os.environ.get("PORT", "4000"))
ENV = os.environ.get("GROVE_ENV", "main")
BRANCH = os.environ.get("GROVE_BRANCH", "main")
ROUTES = ["/", "/health"]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = "ok\n"
        else:
            body = json.dumps({"api": ENV, "branch": BRANCH, "port": PORT, "routes": ROUTES}) + "\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


print("api listening on port %d" % PORT, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"#;

pub fn run(args: &DemoArgs, cwd: &Path) -> Result<()> {
    let dir = cwd.join(
        args.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("grove-demo")),
    );
    prepare_dir(&dir)?;
    ui::info(format!("building the demo workspace in {}", dir.display()));
    build(&dir).context("building the demo workspace")?;

    let ws = Workspace::discover(Some(&dir), cwd)?;
    let mut ctx = Ctx::open(ws)?;
    let step = |cmd: &str| ui::out(format!("\n$ {cmd}"));

    step("grove create feat-01");
    let opts = CreateOpts {
        name: "feat-01".into(),
        start: true,
        ..Default::default()
    };
    show(&mut ctx, &opts)?;

    step("grove create feat-02 --from-front=feat/ui --from-api=feat/endpoint");
    let opts = CreateOpts {
        name: "feat-02".into(),
        from: vec![
            ("front".into(), "feat/ui".into()),
            ("api".into(), "feat/endpoint".into()),
        ],
        start: true,
        ..Default::default()
    };
    show(&mut ctx, &opts)?;

    step("grove ps");
    ps::run(&mut ctx, &PsArgs { json: false })?;

    // Each front answers with the API it is wired to: feat-02's own, feat-01's shared one.
    for env in ["feat-02", "feat-01"] {
        let row = ctx.require_env(env)?;
        let port = ctx
            .store
            .instances(row.key)?
            .iter()
            .find(|i| i.layer == "front")
            .and_then(|i| i.port);
        if let Some(port) = port {
            step(&format!("curl http://localhost:{port}/"));
            match crate::supervisor::probe::get(port, "/") {
                Ok(body) => ui::out(body.trim_end()),
                Err(e) => ui::out(format!("(no answer: {e})")),
            }
        }
    }
    let grove = crate::agent::grove_program();
    ui::out(format!(
        "\nfeat-01 is wired to the shared API of the main stack (http://localhost:4000), which the\n\
         demo does not run: start one with `(cd {dir}/api && PORT=4000 python3 server.py)`.\n\n\
         The envs keep running. Try:\n  cd {dir}\n  {grove} ps\n  {grove} logs feat-02\n  \
         {grove} exec feat-02 -- git log --oneline -3\n  {grove} destroy feat-02\n\
         Running `grove demo` again stops and replaces them.",
        dir = crate::shq(&dir.to_string_lossy()),
    ));
    Ok(())
}

fn show(ctx: &mut Ctx, opts: &CreateOpts) -> Result<()> {
    let env = create::create(ctx, opts)?;
    let instances = ctx.store.instances(env.key)?;
    create::print_urls(&report::env_report(ctx, &env, &instances)?);
    Ok(())
}

/// An earlier demo in `dir` is replaced (its envs forgotten); any other non-empty folder is
/// left alone.
fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if dir.join(MARKER).exists() {
        let root = dir.canonicalize()?;
        // Its servers first: nothing of the old demo may keep running.
        if let Ok(ws) = Workspace::discover(Some(&root), &root) {
            let mut ctx = Ctx::open(ws)?;
            for env in ctx.store.envs(ctx.ws_id)? {
                crate::supervisor::stop_env(&mut ctx, &env, crate::sweep::Scope::All)?;
            }
        }
        let mut store = Store::open(&workspace::grove_home()?)?;
        store.forget_workspace(&root)?;
        fs_err::remove_dir_all(dir)?;
        return Ok(());
    }
    if fs_err::read_dir(dir)?.next().is_some() {
        return Err(
            Fail::new(format!("{} exists and is not a grove demo", dir.display()))
                .hint("pass another folder: `grove demo DIR`")
                .into(),
        );
    }
    Ok(())
}

fn build(dir: &Path) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    fs_err::write(
        dir.join(MARKER),
        "made by `grove demo`; running it again replaces this folder\n",
    )?;
    fs_err::write(dir.join("grove.toml"), GROVE_TOML)?;
    let front = dir.join("front");
    init_repo(
        &front,
        &[("server.py", FRONT_PY), (".gitignore", "__pycache__/\n")],
    )?;
    branch_with(
        &front,
        "feat/ui",
        "server.py",
        &FRONT_PY.replace("TITLE = \"front\"", "TITLE = \"front (new UI)\""),
        "New UI title",
    )?;
    let api = dir.join("api");
    init_repo(
        &api,
        &[("server.py", API_PY), (".gitignore", "__pycache__/\n")],
    )?;
    branch_with(
        &api,
        "feat/endpoint",
        "server.py",
        &API_PY.replace(
            "ROUTES = [\"/\", \"/health\"]",
            "ROUTES = [\"/\", \"/health\", \"/invoices\"]",
        ),
        "Add /invoices",
    )?;
    Ok(())
}

/// git with a fixed identity: the demo must work on a machine where git has none configured.
fn git(dir: &Path) -> Cmd {
    crate::git::git(dir).args([
        "-c",
        "user.name=grove demo",
        "-c",
        "user.email=demo@grove.invalid",
        "-c",
        "commit.gpgsign=false",
    ])
}

fn init_repo(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    git(dir)
        .args(["init", "--quiet", "--initial-branch=main"])
        .run()?;
    for (name, text) in files {
        fs_err::write(dir.join(name), text)?;
    }
    git(dir).args(["add", "--all"]).run()?;
    git(dir)
        .args(["commit", "--quiet", "-m", "Initial commit"])
        .run()?;
    Ok(())
}

fn branch_with(dir: &Path, branch: &str, file: &str, text: &str, msg: &str) -> Result<()> {
    git(dir).args(["switch", "--quiet", "-c", branch]).run()?;
    fs_err::write(dir.join(file), text)?;
    git(dir).args(["commit", "--quiet", "-am", msg]).run()?;
    git(dir).args(["switch", "--quiet", "main"]).run()?;
    Ok(())
}
