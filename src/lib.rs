//! grove: an isolated, running copy of a multi-repo stack per ticket.
//!
//! This is the library behind the `grove` binary: [`run`] is all it offers. Its modules are
//! private to the crate, so the compiler finds code nothing calls.

mod agent;
mod cli;
mod commands;
mod compose;
mod config;
mod copy;
mod criteria;
mod ctx;
mod disk;
mod doctor;
mod error;
mod exec;
mod failpoint;
mod feedback;
mod gate;
mod git;
mod interrupt;
mod isolate;
mod land;
mod logfile;
mod manifest;
mod names;
mod paths;
mod plan;
mod pool;
mod ports;
mod proc;
mod provision;
mod recover;
mod report;
mod review;
mod review_cache;
mod state;
mod supervisor;
mod sweep;
mod target;
mod template;
mod ui;
mod vars;
mod watch;
mod workspace;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Exit, Fail};
use crate::provision::Interrupted;
use crate::workspace::Workspace;

/// Runs grove with `argv` and returns the process exit code.
pub fn run(argv: Vec<OsString>) -> i32 {
    // A TAB in a shell that loaded `grove completions`: answer it and nothing else.
    if let Some(shell) = std::env::var_os(commands::COMPLETE_VAR).filter(|s| !s.is_empty()) {
        return commands::complete(&shell, &argv);
    }
    // grove's own helpers, re-executed by grove itself: no workspace discovery, no clap.
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("__exec") => return supervisor::guard::main(&argv[2..]),
        Some("__supervise") => {
            proc::close_inherited_fds();
            return internal::supervise(&argv[2..]);
        }
        Some("__watch") => {
            proc::close_inherited_fds();
            return internal::watch(&argv[2..]);
        }
        Some("__failpoints") if cfg!(debug_assertions) => {
            for f in failpoint::ALL {
                ui::out(f);
            }
            return 0;
        }
        _ => {}
    }
    // `agent-status --hook` runs inside an agent's hooks: whatever goes wrong (no workspace
    // here, a bad JSON), it must not fail the agent's tool call.
    let hook =
        argv.get(1).is_some_and(|a| a == "agent-status") && argv.iter().any(|a| a == "--hook");
    let code = run_cli(argv);
    if hook { 0 } else { code }
}

fn run_cli(argv: Vec<OsString>) -> i32 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let explicit =
        workspace_arg(&argv).or_else(|| std::env::var_os("GROVE_WORKSPACE").map(PathBuf::from));
    let ws = match Workspace::discover(explicit.as_deref(), &cwd) {
        // An env folder outside the workspace (`envs_dir` elsewhere) has no grove.toml above
        // it: the store knows whose it is.
        Err(e) if explicit.is_none() => match workspace_of_env_folder(&cwd) {
            Some(root) => Workspace::discover(Some(&root), &root),
            None => Err(e),
        },
        found => found,
    };
    // Before clap, whose help and errors follow it too.
    ui::set_color(color_arg(&argv));
    let cli = match cli::parse(argv.clone(), &ws) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &ws, &argv),
    };
    // From here SIGINT, SIGTERM and SIGHUP are noticed, not fatal: a command stops at its
    // next step, undoes what it must, and exits 128+N saying why.
    interrupt::guard();
    match commands::dispatch(cli, ws, &cwd) {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

mod internal {
    use std::ffi::OsString;
    use std::path::Path;

    /// `grove __watch ROOT`: the review watcher of the workspace at ROOT.
    pub(super) fn watch(args: &[OsString]) -> i32 {
        let Some(root) = args.first() else { return 2 };
        match crate::watch::main(Path::new(root)) {
            Ok(()) => 0,
            Err(e) => crate::report(&e),
        }
    }

    /// `grove __supervise --workspace ROOT ENV`.
    pub(super) fn supervise(args: &[OsString]) -> i32 {
        let (Some(flag), Some(root), Some(env)) = (args.first(), args.get(1), args.get(2)) else {
            return 2;
        };
        if flag != "--workspace" {
            return 2;
        }
        match crate::supervisor::main(Path::new(root), &env.to_string_lossy()) {
            Ok(()) => 0,
            Err(e) => crate::report(&e),
        }
    }
}

/// `--color WHEN` / `--color=WHEN`, read before clap parses, for clap's own output. A value
/// clap will refuse counts as `auto` here.
fn color_arg(argv: &[OsString]) -> ui::ColorWhen {
    use clap::ValueEnum;
    let mut it = argv.iter().skip(1);
    let mut when = None;
    while let Some(arg) = it.next() {
        if arg == "--" {
            break;
        }
        let value = if arg == "--color" {
            it.next().and_then(|v| v.to_str())
        } else {
            arg.to_str().and_then(|s| s.strip_prefix("--color="))
        };
        if let Some(v) = value {
            when = ui::ColorWhen::from_str(v, false).ok();
        }
    }
    when.unwrap_or_default()
}

/// The root of the workspace whose env has a worktree (or its env folder) holding `cwd`,
/// from the store; `None` without a store (nothing is created to find out).
fn workspace_of_env_folder(cwd: &Path) -> Option<PathBuf> {
    let home = paths::grove_home().ok()?;
    if !home.join("state.db").is_file() {
        return None;
    }
    let store = state::Store::open(&home).ok()?;
    let cwd = cwd.canonicalize().ok()?;
    for (env, root) in store.all_envs().ok()? {
        for inst in store.instances(env.key).ok()? {
            let env_dir = inst.worktree.parent().unwrap_or(&inst.worktree);
            if cwd.starts_with(&inst.worktree) || cwd.starts_with(env_dir) {
                return Some(root);
            }
        }
    }
    None
}

/// `--workspace DIR` / `--workspace=DIR`, read before clap parses: the config decides which
/// flags exist.
pub(crate) fn workspace_arg(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--" {
            break;
        }
        if arg == "--workspace" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = arg.to_str().and_then(|s| s.strip_prefix("--workspace=")) {
            return Some(PathBuf::from(v));
        }
    }
    None
}

fn usage_error(e: &clap::Error, ws: &Result<Workspace, Fail>, argv: &[OsString]) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    if let Some(fail) = exec_without_separator(e, ws, argv) {
        return report(&fail.into());
    }
    if let Some((kind, layer)) = cli::unknown_layer_flag(e) {
        return match ws {
            // The flag may well be right: the config that would define it did not load.
            Err(fail) => report(&fail.clone().into()),
            Ok(ws) if kind == "isolate" && ws.config.layers.contains_key(&layer) => {
                let fail =
                    isolate::no_recipe(&ws.config.layers[&layer], &format!("--isolate-{layer}"));
                report(&fail.into())
            }
            Ok(ws) => {
                let (known, what) = if kind == "from" {
                    (ws.config.code_layers(), "code layers")
                } else {
                    let l = ws.config.layers.values().filter(|l| l.isolate.is_some());
                    (
                        l.map(|l| l.name.as_str()).collect(),
                        "layers with `isolate`",
                    )
                };
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                let fail = Fail::usage(format!("unknown layer `{layer}` in `--{kind}-{layer}`"))
                    .hint(format!("{what} of {}: {known}", ws.config.path.display()));
                report(&fail.into())
            }
        };
    }
    let _ = e.print();
    2
}

/// `grove exec NAME git status`: clap reads `git` as an unexpected argument, and its message
/// says nothing of `--`, which `exec` needs so that the command's own flags stay its own. The
/// hint is the same line with `--` where it belongs: after `exec`'s own flags and NAME (when
/// the first word names an env; inside an env, NAME may be left out).
fn exec_without_separator(
    e: &clap::Error,
    ws: &Result<Workspace, Fail>,
    argv: &[OsString],
) -> Option<Fail> {
    use clap::error::ErrorKind;
    // Without any command clap's own "required arguments were not provided" says enough.
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The subcommand: the first word that is neither a flag nor a global flag's value.
    let mut at = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--workspace" || args[i] == "--color" {
            i += 2;
            continue;
        }
        if !args[i].starts_with('-') {
            at = Some(i);
            break;
        }
        i += 1;
    }
    let at = at.filter(|&i| args[i] == "exec")?;
    if args.iter().any(|a| a == "--") {
        return None;
    }
    let is_env = |word: &str| {
        ws.as_ref().ok().is_some_and(|ws| {
            ctx::Ctx::open(ws.clone())
                .ok()
                .and_then(|c| c.store.env(c.ws_id, &word.replace('/', "-")).ok().flatten())
                .is_some()
        })
    };
    // `exec`'s own flags (and the layer they take), then NAME if it is one, then the command.
    let mut flags: Vec<String> = Vec::new();
    let mut name = None;
    let mut cmd: Vec<String> = Vec::new();
    let mut rest = args[at + 1..].iter();
    while let Some(a) = rest.next() {
        if !cmd.is_empty() {
            cmd.push(a.clone());
        } else if a == "--layer" || a == "-l" {
            flags.push(a.clone());
            flags.extend(rest.next().cloned());
        } else if a.starts_with('-') {
            flags.push(a.clone());
        } else if name.is_none() && is_env(a) {
            name = Some(a.clone());
        } else {
            cmd.push(a.clone());
        }
    }
    let cmd = if cmd.is_empty() {
        "CMD…".to_string()
    } else {
        cmd.iter().map(|a| shq(a)).collect::<Vec<_>>().join(" ")
    };
    let mut line = vec!["grove".to_string()];
    line.extend(args[..at].iter().map(|a| shq(a)));
    line.push("exec".into());
    line.extend(name.iter().map(|n| shq(n)));
    line.extend(flags.iter().map(|a| shq(a)));
    Some(
        Fail::usage("`grove exec` takes the command to run after `--`")
            .hint(format!("`{} -- {cmd}`", line.join(" "))),
    )
}

/// Prints `err` the grove way and returns its exit code.
pub fn report(err: &anyhow::Error) -> i32 {
    if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
        return *code;
    }
    let fail = err.chain().find_map(|e| e.downcast_ref::<Fail>());
    // A signal explains whatever failed after it: a Ctrl-C reaches the whole process group,
    // and a git killed by it is not the cause.
    let signal = err
        .chain()
        .find_map(|e| e.downcast_ref::<Interrupted>())
        .map(|i| i.0)
        .or_else(interrupt::received);
    if let Some(sig) = signal {
        let mut causes: Vec<String> = Vec::new();
        if err.downcast_ref::<Interrupted>().is_none() {
            causes.extend(err.chain().map(ToString::to_string));
        }
        ui::error(
            &format!("interrupted by {}", interrupt::signal_name(sig)),
            &causes,
            fail.and_then(|f| f.hint.as_deref()),
        );
        return interrupt::exit_code(sig);
    }
    let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
    if let Some(busy) = state::lock_problem(err) {
        ui::error(&busy.msg, &causes, busy.hint.as_deref());
        return busy.code;
    }
    if let Some(unknown) = state::unknown_value(err) {
        ui::error(
            &unknown,
            &[],
            Some(
                "this grove does not know a value of its store: was it written by a newer grove (`grove --version`), or edited by hand? `grove doctor` checks the rest",
            ),
        );
        return 1;
    }
    if let Some(corrupt) = state::corrupt_problem(err) {
        ui::error(
            &corrupt.to_string(),
            &[],
            Some("`grove doctor --fix` sets it aside and takes the envs back from their folders"),
        );
        return 1;
    }
    ui::error(
        &err.to_string(),
        &causes,
        fail.and_then(|f| f.hint.as_deref()),
    );
    fail.map_or(1, |f| f.code)
}

/// `path` with the home folder shown as `~`, for messages.
pub fn tilde(path: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && let Ok(rest) = path.strip_prefix(&home)
    {
        return format!("~/{}", rest.display());
    }
    path.display().to_string()
}

/// `s` as one shell word, for commands shown in hints: env names may hold `$`, `;` or
/// backticks, and a hint copied into a shell must never run them.
pub fn shq(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
