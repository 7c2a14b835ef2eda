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
use crate::git::Repo;
use crate::state::Store;
use crate::workspace::Workspace;
use crate::{report, ui};

/// Marks a folder as a grove demo, so running the demo again may replace it.
const MARKER: &str = ".grove-demo";
/// The author of the demo's own commits: any other author's commit is someone's work.
const DEMO_EMAIL: &str = "demo@grove.invalid";

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
check = ["python3 -m py_compile server.py"]   # what `grove check` and the review gate run

[layers.api]
repo = "api"
run = "python3 server.py"
ports = "4001-4099"
shared_url = "http://localhost:4000"
ready = { http = "/health" }
check = ["python3 -m py_compile server.py"]

# The review gate runs the checks when an env's agent says it is done; a reviewer agent judges
# the diff against the ticket and writes a JSON verdict (see the README, "The review loop"):
# [review]
# command = "claude -p"
# auto_fix = 2
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
    prepare_dir(&dir, args.force)?;
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
    ps::run(
        &mut ctx,
        &PsArgs {
            json: false,
            pool: false,
        },
    )?;

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
         {grove} exec feat-02 -- git log --oneline -3\n  {grove} gate feat-02\n  {grove} review\n  \
         {grove} destroy feat-02\n\
         Running `grove demo` again stops and replaces them, unless you made changes in it:\n\
         then it lists them and keeps everything (`--force` replaces it anyway).",
        dir = crate::shq(&dir.to_string_lossy()),
    ));
    Ok(())
}

fn show(ctx: &mut Ctx, opts: &CreateOpts) -> Result<()> {
    let (env, _) = create::create(ctx, opts)?;
    let instances = ctx.store.instances(env.key)?;
    create::print_urls(&report::env_report(ctx, &env, &instances)?);
    Ok(())
}

/// An earlier demo in `dir` is replaced (its envs stopped and forgotten) when it holds no
/// work; any other non-empty folder is left alone.
fn prepare_dir(dir: &Path, force: bool) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.join(MARKER).exists() {
        if fs_err::read_dir(dir)?.next().is_some() {
            return Err(
                Fail::new(format!("{} exists and is not a grove demo", dir.display()))
                    .hint("pass another folder: `grove demo DIR`")
                    .into(),
            );
        }
        return Ok(());
    }
    let root = dir.canonicalize()?;
    let work = audit(&root)?;
    if !work.is_empty() {
        let list: String = work.iter().map(|w| format!("\n  {w}")).collect();
        if force {
            ui::warn(format!(
                "replacing the demo in {} throws away:{list}",
                root.display()
            ));
        } else if ui::interactive() {
            ui::info(format!(
                "the demo in {} holds work that replacing it would throw away:{list}",
                root.display()
            ));
            if !ui::confirm("replace it anyway?") {
                ui::info("nothing was changed");
                return Err(crate::error::Exit(1).into());
            }
        } else {
            return Err(Fail::new(format!(
                "the demo in {} holds work that replacing it would throw away; nothing was changed:{list}",
                root.display()
            ))
            .hint(format!(
                "keep it and run the demo elsewhere (`grove demo DIR`), or `grove demo {} --force` to replace it",
                crate::shq(&dir.to_string_lossy())
            ))
            .into());
        }
    }
    // Its servers first: nothing of the old demo may keep running.
    if let Ok(ws) = Workspace::discover(Some(&root), &root) {
        let mut ctx = Ctx::open(ws)?;
        for env in ctx.store.envs(ctx.ws_id)? {
            crate::supervisor::stop_env(&mut ctx, &env, crate::sweep::Scope::All)?;
        }
    }
    let mut store = Store::open(&crate::paths::grove_home()?)?;
    store.forget_workspace(&root)?;
    fs_err::remove_dir_all(dir)?;
    Ok(())
}

/// What in an earlier demo is someone's work, which replacing it would lose: files the demo
/// does not make, an edited grove.toml, uncommitted changes (and edits hidden by index flags)
/// in any worktree of its repos, and commits no one but the demo made. Empty: the demo is as
/// it made it, give or take envs, which hold nothing of anyone's either.
fn audit(root: &Path) -> Result<Vec<String>> {
    let mut work = Vec::new();
    let known = [MARKER, "grove.toml", "front", "api", ".grove"];
    for e in fs_err::read_dir(root)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if !known.contains(&name.as_str()) {
            work.push(format!("{name}: not made by the demo"));
        }
    }
    let toml = fs_err::read_to_string(root.join("grove.toml")).unwrap_or_default();
    if toml != GROVE_TOML {
        work.push("grove.toml: edited".into());
    }
    for repo in ["front", "api"] {
        let repo_dir = root.join(repo);
        if !repo_dir.join(".git").exists() {
            continue;
        }
        let repo = Repo::new(&repo_dir);
        for wt in repo.worktrees()? {
            if !wt.path.join(".git").exists() {
                continue;
            }
            let dirty = Repo::dirty_paths(&wt.path)?;
            if !dirty.is_empty() {
                let shown = wt
                    .path
                    .strip_prefix(root)
                    .unwrap_or(&wt.path)
                    .display()
                    .to_string();
                work.push(format!("{shown}: uncommitted: {}", dirty.join(", ")));
            }
        }
        // Every ref and every worktree's HEAD (stash, tags, detached HEADs included).
        let out = repo
            .cmd()
            .args(["log", "--all", "--format=%h%x00%ae%x00%s", "--"])
            .run()?;
        for line in out.stdout.lines() {
            let mut f = line.splitn(3, '\0');
            let (Some(h), Some(email), Some(subject)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if email != DEMO_EMAIL {
                work.push(format!(
                    "{}: commit {h} {subject}",
                    repo.dir
                        .file_name()
                        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
                ));
            }
        }
    }
    // The env folders: only grove's files and the worktrees (checked above) may be there.
    let envs = root.join(".grove/envs");
    if let Ok(entries) = fs_err::read_dir(&envs) {
        for env in entries.flatten() {
            if !env.path().is_dir() {
                if env.file_name() != ".gitignore" {
                    work.push(format!(
                        ".grove/envs/{}: not made by grove",
                        env.file_name().to_string_lossy()
                    ));
                }
                continue;
            }
            for e in fs_err::read_dir(env.path())?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let grove_file = crate::manifest::is_grove_entry(&name);
                let worktree = e.path().join(".git").is_file();
                if !grove_file && !worktree {
                    work.push(format!(
                        ".grove/envs/{}/{name}: not made by grove",
                        env.file_name().to_string_lossy()
                    ));
                }
            }
        }
    }
    Ok(work)
}

fn build(dir: &Path) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    fs_err::write(
        dir.join(MARKER),
        "made by `grove demo`; running it again replaces this folder if nothing in it is anyone's work\n",
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
    crate::git::git(dir)
        .env_remove("GIT_AUTHOR_NAME")
        .env_remove("GIT_AUTHOR_EMAIL")
        .env_remove("GIT_COMMITTER_NAME")
        .env_remove("GIT_COMMITTER_EMAIL")
        .args([
            "-c",
            "user.name=grove demo",
            "-c",
            &format!("user.email={DEMO_EMAIL}"),
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
