//! `grove cd`, `grove shell-init`, `grove completions`, and the completion engine behind the
//! completion scripts.
//!
//! Completion is dynamic (clap_complete's `CompleteEnv` protocol): the script the shell loads
//! calls `GROVE_COMPLETE=<shell> grove -- <words>` on each TAB, and grove answers from the
//! command line as this folder's workspace defines it. That is how `--from-<layer>` flags
//! (generated from grove.toml) and env names (from the store) complete, in any folder, and
//! why the script never goes stale when grove.toml changes. The protocol is clap_complete's
//! `unstable-dynamic` feature, pinned to one version in Cargo.toml: the script and the binary
//! must speak the same one (the README says to load the script at each shell start).

use std::ffi::{OsStr, OsString};
use std::io::Write;

use anyhow::Result;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
use clap_complete::{ArgValueCandidates, CompletionCandidate};

use crate::cli::{CdArgs, CompletionsArgs, Shell, ShellInitArgs};
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::ui;
use crate::workspace::Workspace;

/// The variable that turns a grove run into a completion request, and names the shell.
pub const COMPLETE_VAR: &str = "GROVE_COMPLETE";
/// Set by the `shell-init` function around `grove cd`: the shell will change folder.
const CD_VAR: &str = "GROVE_CD_SHELL";

pub fn cd(ws: Result<Workspace, Fail>, args: &CdArgs) -> Result<()> {
    let ws = ws?;
    let dir = match &args.name {
        None => ws.root.clone(),
        Some(name) => {
            let ctx = Ctx::open(ws)?;
            super::envcmd::worktree(&ctx, Some(name), args.layer.as_deref(), "cd")?
        }
    };
    // The shell function goes wherever this prints: a folder that is gone must fail here, so
    // that `grove cd NAME && make` never runs anything in the folder it was left in.
    if !dir.is_dir() {
        return Err(Fail::new(format!("{} is gone", dir.display()))
            .hint("`grove doctor` says what happened to it and what to do")
            .into());
    }
    ui::out(dir.to_string_lossy());
    if std::env::var_os(CD_VAR).is_some() {
        return Ok(());
    }
    let shell = login_shell();
    let setup = match shell {
        Shell::Bash => "add `eval \"$(grove shell-init bash)\"` to ~/.bashrc",
        Shell::Zsh => "add `eval \"$(grove shell-init zsh)\"` to ~/.zshrc",
        Shell::Fish => "add `grove shell-init fish | source` to ~/.config/fish/config.fish",
    };
    let path_cmd = match &args.name {
        None => "grove path".to_string(),
        Some(n) => format!("grove path {}", crate::shq(n)),
    };
    let meanwhile = if args.name.is_some() {
        format!("; until then, `cd \"$({path_cmd})\"`")
    } else {
        String::new()
    };
    Err(
        Fail::new("`grove cd` cannot change your shell's folder without grove's shell function")
            .hint(format!(
                "{setup} and open a new shell (the path is printed above){meanwhile}"
            ))
            .into(),
    )
}

/// The user's shell, from `$SHELL`, for the set-up line a hint shows.
fn login_shell() -> Shell {
    let shell = std::env::var("SHELL").unwrap_or_default();
    match shell.rsplit('/').next() {
        Some("zsh") => Shell::Zsh,
        Some("fish") => Shell::Fish,
        _ => Shell::Bash,
    }
}

pub fn shell_init(args: &ShellInitArgs) -> Result<()> {
    ui::out(match args.shell {
        Shell::Bash | Shell::Zsh => POSIX_INIT,
        Shell::Fish => FISH_INIT,
    });
    Ok(())
}

/// bash and zsh. The subcommand is the first word that is not an option (nor the value of
/// one of grove's global options taking one), so `grove --workspace ~/w cd x` works too.
const POSIX_INIT: &str = r#"# grove's shell function (from `grove shell-init`): `grove cd [NAME [LAYER]]` changes this
# shell's folder; every other command runs as `command grove`.
grove() {
    local __grove_arg __grove_sub="" __grove_skip="" __grove_dir
    for __grove_arg in "$@"; do
        if [ -n "$__grove_skip" ]; then
            __grove_skip=""
            continue
        fi
        case "$__grove_arg" in
            --workspace|--color) __grove_skip=1 ;;
            --) break ;;
            -*) ;;
            *) __grove_sub="$__grove_arg"; break ;;
        esac
    done
    if [ "$__grove_sub" = cd ]; then
        __grove_dir="$(GROVE_CD_SHELL=1 command grove "$@")" || return
        # Not a folder: `grove cd --help` printed its help.
        if [ -d "$__grove_dir" ]; then
            builtin cd -- "$__grove_dir"
        else
            printf '%s\n' "$__grove_dir"
        fi
    else
        command grove "$@"
    fi
}"#;

const FISH_INIT: &str = r#"# grove's shell function (from `grove shell-init`): `grove cd [NAME [LAYER]]` changes this
# shell's folder; every other command runs as `command grove`.
function grove --wraps grove --description 'grove, whose `cd` changes the folder'
    set -l sub
    set -l skip 0
    for arg in $argv
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $arg
            case --workspace --color
                set skip 1
            case --
                break
            case '-*'
            case '*'
                set sub $arg
                break
        end
    end
    if test "$sub" = cd
        set -l dir (GROVE_CD_SHELL=1 command grove $argv); or return
        # Not a folder: `grove cd --help` printed its help.
        if test (count $dir) -eq 1 -a -d "$dir"
            cd $dir
        else
            printf '%s\n' $dir
        end
    else
        command grove $argv
    end
end"#;

fn completer(shell: Shell) -> &'static dyn EnvCompleter {
    match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    }
}

pub fn completions(args: &CompletionsArgs) -> Result<()> {
    // The program the script calls back: `grove` found on PATH when that is how grove was
    // run, else this very binary (a relative path would break in another folder).
    let program = match std::env::args_os().next() {
        Some(argv0) if !argv0.to_string_lossy().contains('/') => "grove".to_string(),
        _ => std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "grove".into()),
    };
    let mut buf = Vec::new();
    completer(args.shell).write_registration(COMPLETE_VAR, "grove", "grove", &program, &mut buf)?;
    ui::out(String::from_utf8_lossy(&buf).trim_end());
    Ok(())
}

/// Answers a completion request: `argv` is `grove -- grove WORDS…` and `shell` the value of
/// [`COMPLETE_VAR`]. Prints the candidates; returns the exit code.
pub fn complete(shell: &OsStr, argv: &[OsString]) -> i32 {
    let shell = match shell.to_str() {
        Some("bash") => Shell::Bash,
        Some("zsh") => Shell::Zsh,
        Some("fish") => Shell::Fish,
        _ => return 2,
    };
    let Some(dashes) = argv.iter().position(|a| a == "--") else {
        return 2;
    };
    let words: Vec<OsString> = argv[dashes + 1..].to_vec();
    if words.is_empty() {
        return 2;
    }
    let cwd = std::env::current_dir().ok();
    let explicit = crate::workspace_arg(&words)
        .or_else(|| std::env::var_os("GROVE_WORKSPACE").map(Into::into));
    let ws = cwd
        .as_deref()
        .and_then(|cwd| Workspace::discover(explicit.as_deref(), cwd).ok());
    let mut cmd = with_candidates(crate::cli::command(ws.as_ref().map(|w| &w.config)), ws);
    let Ok(answer) = answer(shell, &mut cmd, words, cwd.as_deref()) else {
        return 1;
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(answer.as_bytes()).and_then(|()| out.flush());
    0
}

/// The candidates for the word being completed, in the form `shell`'s registration script
/// reads (clap_complete's own `write_complete`, less one thing): on an empty word, options are
/// left out when there are values to offer, so `grove logs <TAB>` lists envs, not flags
/// (`grove logs -<TAB>` lists those).
fn answer(
    shell: Shell,
    cmd: &mut clap::Command,
    mut words: Vec<OsString>,
    cwd: Option<&std::path::Path>,
) -> std::io::Result<String> {
    let var = |k: &str| std::env::var(k).ok();
    let index = match shell {
        Shell::Fish => words.len() - 1,
        Shell::Bash | Shell::Zsh => var("_CLAP_COMPLETE_INDEX")
            .and_then(|i| i.parse().ok())
            .unwrap_or_default(),
    };
    if words.len() == index {
        words.push(OsString::new());
    }
    let current_empty = words.get(index).is_none_or(|w| w.is_empty());
    let word = words
        .get(index)
        .map(|w| w.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidates = clap_complete::engine::complete(cmd, words, index, cwd)?;
    let is_option = |c: &CompletionCandidate| c.get_value().to_string_lossy().starts_with('-');
    if current_empty && candidates.iter().any(|c| !is_option(c)) {
        candidates.retain(|c| !is_option(c));
    }
    primary_names(cmd, &mut candidates, &word);
    let help = |c: &CompletionCandidate| {
        c.get_help()
            .map(|h| h.to_string().lines().next().unwrap_or_default().to_string())
    };
    let ifs = var("_CLAP_IFS").unwrap_or_else(|| "\n".into());
    let items: Vec<String> = candidates
        .iter()
        .map(|c| {
            let value = c.get_value().to_string_lossy();
            match shell {
                // bash inserts a candidate as it is, and an env name may hold `;`, `$(…)` or
                // quotes (git allows them in branch names): escaped, it stays one word of
                // data when the line runs.
                Shell::Bash => bash_escape(&value),
                Shell::Zsh => {
                    let value = value.replace('\\', "\\\\").replace(':', "\\:");
                    match help(c) {
                        Some(h) => format!("{value}:{}", h.replace('\\', "\\\\")),
                        None => value,
                    }
                }
                Shell::Fish => match help(c) {
                    Some(h) => format!("{value}\t{h}\n"),
                    None => format!("{value}\n"),
                },
            }
        })
        .collect();
    Ok(match shell {
        Shell::Fish => items.concat(),
        Shell::Bash | Shell::Zsh => items.join(&ifs),
    })
}

/// clap_complete offers one name per subcommand, whichever sorts first: `grove <TAB>` listed
/// `ls` and no `ps`. Where the subcommand's own name fits the word being completed too, that
/// name is offered instead, the one the docs and `--help` use. (A candidate is taken for the
/// subcommand only when its help is the subcommand's: an env named `ls` stays `ls`.)
fn primary_names(cmd: &clap::Command, candidates: &mut [CompletionCandidate], word: &str) {
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        if !name.starts_with(word) || candidates.iter().any(|c| c.get_value() == name) {
            continue;
        }
        let about = sub.get_about().map(|a| a.to_string());
        for c in candidates.iter_mut() {
            let value = c.get_value().to_string_lossy().into_owned();
            if sub.get_visible_aliases().any(|a| a == value)
                && c.get_help().map(|h| h.to_string()) == about
            {
                *c = CompletionCandidate::new(name).help(c.get_help().cloned());
            }
        }
    }
}

/// `word` with every character the shell would read as syntax escaped by a backslash.
fn bash_escape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if !(c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c)) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `cmd` with env names and layer names offered for the arguments that take them.
fn with_candidates(cmd: clap::Command, ws: Option<Workspace>) -> clap::Command {
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    subs.iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |sub| with_candidates_sub(sub, &ws))
    })
}

fn with_candidates_sub(sub: clap::Command, ws: &Option<Workspace>) -> clap::Command {
    let name = sub.get_name().to_string();
    let sub = with_candidates(sub, ws.clone());
    let ids: Vec<String> = sub
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    // `mut_arg` moves the argument last, and a positional's place is its order: every
    // argument goes through it, in order, so that they keep their places.
    ids.iter().fold(sub, |sub, id| {
        let candidates = match id.as_str() {
            // `create NAME` names a new env; `init`/`demo` take folders.
            "name" if name != "create" => Some(envs(ws.clone())),
            "env" if name == "agent-status" => Some(envs(ws.clone())),
            "layer" => Some(layers(ws.as_ref(), name == "logs")),
            "isolate" => Some(isolatable(ws.as_ref())),
            _ => None,
        };
        sub.mut_arg(id, |a| match candidates {
            Some(c) => a.add(c),
            None => a,
        })
    })
}

/// The workspace's env names, read from the store only when a name is being completed.
fn envs(ws: Option<Workspace>) -> ArgValueCandidates {
    ArgValueCandidates::new(move || {
        let (Some(ws), Ok(home)) = (ws.as_ref(), crate::paths::grove_home()) else {
            return Vec::new();
        };
        crate::state::Store::env_names_read_only(&home, &ws.root)
            .into_iter()
            .map(CompletionCandidate::new)
            .collect()
    })
}

fn layers(ws: Option<&Workspace>, logs: bool) -> ArgValueCandidates {
    let mut names: Vec<String> = ws
        .map(|w| {
            w.config
                .code_layers()
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if logs {
        names.extend(super::logs::SPECIAL.iter().map(|s| (*s).to_string()));
    }
    ArgValueCandidates::new(move || names.iter().map(CompletionCandidate::new).collect())
}

fn isolatable(ws: Option<&Workspace>) -> ArgValueCandidates {
    let names: Vec<String> = ws
        .map(|w| {
            w.config
                .layers
                .values()
                .filter(|l| l.isolate.is_some())
                .map(|l| l.name.clone())
                .collect()
        })
        .unwrap_or_default();
    ArgValueCandidates::new(move || names.iter().map(CompletionCandidate::new).collect())
}
