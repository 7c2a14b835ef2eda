//! grove in a shell: completion scripts loaded in real bash, zsh and fish, `grove cd` through
//! the `shell-init` function in each, colour on a terminal only, NAME taken from the folder
//! you are in, and the `ls`/`rm` aliases.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use crate::common::{Out, TestWorkspace, finish, run};

/// Two envs: `feat-01` with both layers dedicated, `feat-02` with the front only.
fn two_envs() -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    ws.grove(&["create", "feat-02"]).success();
    ws
}

/// Runs `script` in bash (no profile, no rc) in `dir`, with grove on PATH.
fn bash(ws: &TestWorkspace, dir: &Path, script: &str) -> Out {
    run(ws
        .command("bash")
        .args(["--noprofile", "--norc", "-c", script])
        .current_dir(dir))
}

/// Runs `script` in zsh without any startup file, in `dir`.
fn zsh(ws: &TestWorkspace, dir: &Path, script: &str) -> Out {
    run(ws
        .command("zsh")
        .args(["-f", "-c", script])
        .current_dir(dir))
}

/// Runs `script` in fish without any config file (`--no-config`: no config.fish, no
/// universal variables read), in `dir`.
fn fish(ws: &TestWorkspace, dir: &Path, script: &str) -> Out {
    run(ws
        .command("fish")
        .args(["--no-config", "-c", script])
        .current_dir(dir))
}

/// The values of a section of fish's `complete -C` output (`VALUE<TAB>DESCRIPTION` a line),
/// sorted.
fn fish_values<'a>(out: &'a Out, tag: &str) -> Vec<&'a str> {
    let mut values: Vec<&str> = section(out, tag)
        .into_iter()
        .map(|l| l.split('\t').next().unwrap_or_default())
        .collect();
    values.sort_unstable();
    values
}

/// The completion script loaded in bash; `complete WORDS…` prints, one a line, what bash
/// would offer for the last word, through the function the script registered for `grove`.
const BASH_COMPLETE: &str = r#"
source <(grove completions bash) || exit 90
fn=$(complete -p grove | sed -n 's/.*-F \([^ ]*\).*/\1/p')
[ -n "$fn" ] || exit 91
complete_words() {
    COMP_WORDS=("$@")
    COMP_CWORD=$(( $# - 1 ))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMP_TYPE=9
    COMPREPLY=()
    "$fn" grove "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s\n' "${COMPREPLY[@]}" | sort
}
"#;

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// The output of one `echo "== tag"` section of a script's stdout.
fn section<'a>(out: &'a Out, tag: &str) -> Vec<&'a str> {
    let start = format!("== {tag}\n");
    let from = out
        .stdout
        .find(&start)
        .unwrap_or_else(|| panic!("no section {tag}:\n{out}"));
    let rest = &out.stdout[from + start.len()..];
    let end = rest.find("== ").unwrap_or(rest.len());
    lines(&rest[..end])
}

/// The folders the shared `grove cd` script of the bash and fish tests lands in.
fn assert_cd_sections(ws: &TestWorkspace, out: &Out, front: &Path) {
    let api = ws.worktree("feat-01", "api");
    let show = |p: &Path| p.display().to_string();
    assert_eq!(section(out, "api"), [show(&api)], "{out}");
    assert_eq!(section(out, "root"), [show(&ws.root)], "{out}");
    assert_eq!(
        section(out, "feat-02"),
        [show(&ws.worktree("feat-02", "front"))],
        "{out}"
    );
    assert_eq!(section(out, "feat-01 api"), [show(&api)], "{out}");
    assert_eq!(section(out, "flag"), [show(front)], "{out}");
}

#[test]
fn bash_completes_env_names_from_the_store_and_generated_flags() {
    let ws = two_envs();
    let script = format!(
        "{BASH_COMPLETE}
echo '== logs'; complete_words grove logs ''
echo '== destroy f'; complete_words grove destroy feat-0
echo '== rm'; complete_words grove rm ''
echo '== sub'; complete_words grove l
echo '== all'; complete_words grove ''
echo '== from'; complete_words grove create x --from-
echo '== layer'; complete_words grove path feat-01 ''
"
    );
    let out = bash(&ws, &ws.root, &script).success();
    assert_eq!(section(&out, "logs"), ["feat-01", "feat-02"], "{out}");
    assert_eq!(section(&out, "destroy f"), ["feat-01", "feat-02"], "{out}");
    assert_eq!(section(&out, "rm"), ["feat-01", "feat-02"], "{out}");
    assert_eq!(section(&out, "sub"), ["land", "logs", "ls"], "{out}");
    // On an empty word each subcommand is offered by its own name, not an alias.
    let all = section(&out, "all");
    for (want, alias) in [("ps", "ls"), ("destroy", "rm")] {
        assert!(all.contains(&want), "no {want}: {all:?}");
        assert!(!all.contains(&alias), "{alias}: {all:?}");
    }
    // Flags generated from this folder's grove.toml, not from where the script was made.
    assert_eq!(
        section(&out, "from"),
        ["--from-api", "--from-front"],
        "{out}"
    );
    assert_eq!(section(&out, "layer"), ["api", "front"], "{out}");
}

#[test]
fn bash_completion_loads_and_completes_outside_a_workspace_and_through_the_function() {
    let ws = two_envs();
    let elsewhere = ws.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    // With the `shell-init` function loaded too: completion calls `grove` through it.
    let script = format!(
        "eval \"$(grove shell-init bash)\"
{BASH_COMPLETE}
echo '== sub'; complete_words grove shell-
echo '== logs'; complete_words grove logs ''
echo '== ws'; complete_words grove --workspace {root} logs feat-
",
        root = ws.root.display()
    );
    let out = bash(&ws, &elsewhere, &script).success();
    assert_eq!(section(&out, "sub"), ["shell-init"], "{out}");
    // No workspace here, so no envs: only the options are left to offer.
    let logs = section(&out, "logs");
    assert!(
        logs.contains(&"--follow") && !logs.iter().any(|l| l.starts_with("feat")),
        "{out}"
    );
    assert_eq!(section(&out, "ws"), ["feat-01", "feat-02"], "{out}");
}

#[test]
fn zsh_completion_loads_and_completes_env_names() {
    let ws = two_envs();
    // The script registers itself with `compdef`; `_describe` (what zsh would show) is
    // replaced by a stub that prints the candidates it is given.
    let script = r#"
autoload -Uz compinit && compinit -u -D || exit 90
source <(grove completions zsh) || exit 91
fn=${_comps[grove]}
[[ -n $fn ]] || exit 92
_describe() { local name=${@[-1]}; print -rl -- ${(P)name} }
print '== logs'; words=(grove logs '') CURRENT=3 $fn
print '== sub'; words=(grove de) CURRENT=2 $fn
"#;
    let out = zsh(&ws, &ws.root, script).success();
    assert_eq!(section(&out, "logs"), ["feat-01", "feat-02"], "{out}");
    let sub = section(&out, "sub");
    assert!(
        sub.iter().any(|l| l.starts_with("destroy")) && sub.iter().any(|l| l.starts_with("demo")),
        "{out}"
    );
}

#[test]
fn cd_through_shell_init_changes_the_shells_folder() {
    let ws = two_envs();
    let elsewhere = ws.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let front = ws.worktree("feat-01", "front");
    let script = format!(
        r#"eval "$(grove shell-init bash)" || exit 90
cd {front}
grove cd api && echo "== api" && pwd
grove cd && echo "== root" && pwd
grove cd feat-02 && echo "== feat-02" && pwd
grove cd feat-01 api && echo "== feat-01 api" && pwd
cd {elsewhere}
grove --workspace {root} cd feat-01 && echo "== flag" && pwd
grove --workspace {root} cd nope; echo "== nope $?" && pwd
grove --workspace {root} ls | head -1
"#,
        front = front.display(),
        elsewhere = elsewhere.display(),
        root = ws.root.display(),
    );
    let out = bash(&ws, &ws.root, &script).success();
    assert_cd_sections(&ws, &out, &front);
    let show = |p: &Path| p.display().to_string();
    // A failed `grove cd` stays where it was, and says why.
    let nope = &out.stdout[out.stdout.find("== nope").unwrap()..];
    assert!(
        nope.starts_with(&format!("== nope 1\n{}\n", show(&front))),
        "{out}"
    );
    assert!(out.stderr.contains("no env `nope`"), "{out}");
    // Every other command runs as it is.
    assert!(out.stdout.contains("NAME"), "{out}");
}

/// A worktree moved away by hand: `grove cd` fails, so `&&` runs nothing in the old folder.
#[test]
fn cd_to_a_worktree_that_is_gone_fails() {
    let ws = two_envs();
    let gone = ws.worktree("feat-02", "front");
    std::fs::rename(&gone, ws.tmp.path().join("moved")).unwrap();
    let script = r#"eval "$(grove shell-init bash)" || exit 90
grove cd feat-02 && echo "== ran in $PWD"
echo "== status $?"
"#;
    let out = bash(&ws, &ws.root, script).success();
    assert!(!out.stdout.contains("== ran"), "{out}");
    assert!(out.stdout.contains("== status 1"), "{out}");
    assert!(out.stderr.contains("is gone"), "{out}");
}

#[test]
fn cd_through_shell_init_in_zsh() {
    let ws = two_envs();
    let script = r#"eval "$(grove shell-init zsh)" || exit 90
grove cd feat-02 && print "== feat-02" && pwd
"#;
    let out = zsh(&ws, &ws.root, script).success();
    assert_eq!(
        section(&out, "feat-02"),
        [ws.worktree("feat-02", "front").display().to_string()],
        "{out}"
    );
}

/// fish lists what it would offer with `complete -C LINE`, without a terminal: the script
/// `completions fish` prints is loaded as the README says, then asked as TAB would.
#[test]
fn fish_completion_loads_and_completes_subcommands_and_env_names() {
    let ws = two_envs();
    let queries = r#"
echo '== sub'; complete -C 'grove '
echo '== l'; complete -C 'grove l'
echo '== cd'; complete -C 'grove cd '
echo '== cd f'; complete -C 'grove cd feat-0'
echo '== layer'; complete -C 'grove cd feat-01 '
echo '== from'; complete -C 'grove create x --from-'
"#;
    // Loaded alone, then with the `shell-init` function too (completion then calls `grove`
    // through the function): the same answers.
    let script = format!(
        r#"grove completions fish | source; or exit 90
complete -c grove | string match -q '*GROVE_COMPLETE=fish*'; or exit 91
{queries}
echo '== with the function'
grove shell-init fish | source; or exit 92
functions -q grove; or exit 93
{queries}
"#
    );
    let out = fish(&ws, &ws.root, &script).success();
    assert!(out.stderr.is_empty(), "{out}");
    let (alone, through) = out.stdout.split_once("== with the function\n").unwrap();
    for (what, stdout) in [("alone", alone), ("through the function", through)] {
        let out = Out {
            code: out.code,
            stdout: stdout.to_string(),
            stderr: String::new(),
        };
        let sub = fish_values(&out, "sub");
        for want in ["cd", "create", "destroy", "ps", "shell-init", "completions"] {
            assert!(sub.contains(&want), "{what}: no {want}:\n{out}");
        }
        assert!(!sub.contains(&"ls"), "{what}: an alias offered:\n{out}");
        // Subcommands come with their description, as fish shows them.
        assert!(
            section(&out, "sub")
                .iter()
                .any(|l| l.starts_with("cd\t") && l.len() > "cd\t".len()),
            "{what}:\n{out}"
        );
        assert_eq!(
            fish_values(&out, "l"),
            ["land", "logs", "ls"],
            "{what}:\n{out}"
        );
        assert_eq!(
            fish_values(&out, "cd"),
            ["feat-01", "feat-02"],
            "{what}:\n{out}"
        );
        assert_eq!(
            fish_values(&out, "cd f"),
            ["feat-01", "feat-02"],
            "{what}:\n{out}"
        );
        assert_eq!(
            fish_values(&out, "layer"),
            ["api", "front"],
            "{what}:\n{out}"
        );
        assert_eq!(
            fish_values(&out, "from"),
            ["--from-api", "--from-front"],
            "{what}:\n{out}"
        );
    }
}

/// The fish function keeps bash's promises (`cd_through_shell_init_changes_the_shells_folder`),
/// and every other command passes through it with its output and exit code.
#[test]
fn cd_through_shell_init_in_fish() {
    let ws = two_envs();
    let elsewhere = ws.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let front = ws.worktree("feat-01", "front");
    let script = format!(
        r#"grove shell-init fish | source; or exit 90
functions -q grove; or exit 91
cd '{front}'
grove cd api; and echo '== api'; and pwd
grove cd; and echo '== root'; and pwd
grove cd feat-02; and echo '== feat-02'; and pwd
grove cd feat-01 api; and echo '== feat-01 api'; and pwd
cd '{elsewhere}'
grove --workspace '{root}' cd feat-01; and echo '== flag'; and pwd
grove --workspace '{root}' cd nope; echo "== nope $status"; pwd
grove cd feat-01 api extra; echo "== usage $status"; pwd
grove cd --help >/dev/null; echo "== help $status"; pwd
echo '== path'; grove --workspace '{root}' path feat-01 api; echo "== path status $status"; pwd
grove --workspace '{root}' path nope; echo "== path nope $status"; pwd
echo '== ls'; grove --workspace '{root}' ls; echo "== ls status $status"
echo '== bare'; env SHELL=/usr/bin/fish grove cd feat-02; echo "== bare status $status"
cd "$(grove --workspace '{root}' path feat-02)"; and echo '== meanwhile'; and pwd
"#,
        front = front.display(),
        elsewhere = elsewhere.display(),
        root = ws.root.display(),
    );
    let out = fish(&ws, &ws.root, &script).success();
    assert_cd_sections(&ws, &out, &front);
    let show = |p: &Path| p.display().to_string();
    // A failed `grove cd` exits non-zero, stays where it was, and says why.
    assert_eq!(section(&out, "nope 1"), [show(&front)], "{out}");
    assert!(out.stderr.contains("no env `nope`"), "{out}");
    // A usage error keeps its code (2), and the folder too.
    assert_eq!(section(&out, "usage 2"), [show(&front)], "{out}");
    // `cd --help` is not a folder: printed, and the shell stays.
    assert_eq!(section(&out, "help 0"), [show(&front)], "{out}");
    // Every other command runs as it is: its output, its exit code, the folder unchanged.
    let path = ws.grove(&["path", "feat-01", "api"]).success();
    assert_eq!(section(&out, "path"), lines(&path.stdout), "{out}");
    assert_eq!(section(&out, "path status 0"), [show(&front)], "{out}");
    assert_eq!(section(&out, "path nope 1"), [show(&front)], "{out}");
    let ls = ws.grove(&["ls"]).success();
    assert!(ls.stdout.starts_with("NAME"), "{ls}");
    assert_eq!(section(&out, "ls"), lines(&ls.stdout), "{out}");
    assert_eq!(section(&out, "ls status 0"), [] as [&str; 0], "{out}");
    // Without the function (`env` runs the binary), a fish user is told fish's set-up, and
    // the command to use until then works in fish.
    let feat02 = show(&ws.worktree("feat-02", "front"));
    assert_eq!(section(&out, "bare"), [&feat02], "{out}");
    assert_eq!(section(&out, "bare status 1"), [] as [&str; 0], "{out}");
    assert!(
        out.stderr
            .contains("add `grove shell-init fish | source` to ~/.config/fish/config.fish"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("until then, `cd \"$(grove path feat-02)\"`"),
        "{out}"
    );
    assert_eq!(section(&out, "meanwhile"), [&feat02], "{out}");
}

#[test]
fn cd_without_the_shell_function_prints_the_path_and_how_to_set_it_up() {
    let ws = two_envs();
    let out = ws.grove(&["cd", "feat-02"]).failure(1);
    assert_eq!(
        out.stdout,
        format!("{}\n", ws.worktree("feat-02", "front").display())
    );
    assert!(
        out.stderr
            .contains("error: `grove cd` cannot change your shell's folder"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("hint: add `eval \"$(grove shell-init bash)\"` to ~/.bashrc"),
        "{out}"
    );
    assert!(
        out.stderr.contains("`cd \"$(grove path feat-02)\"`"),
        "{out}"
    );
}

#[test]
fn name_defaults_to_the_env_of_the_current_folder() {
    let ws = two_envs();
    let front = ws.worktree("feat-01", "front");
    let api = ws.worktree("feat-01", "api");
    let sub = front.join("src");
    std::fs::create_dir_all(&sub).unwrap();
    let show = |p: &Path| format!("{}\n", p.display());

    assert_eq!(ws.grove_in(&sub, &["path"]).success().stdout, show(&front));
    // A lone word that names a layer, not an env, is the LAYER of the env you are in.
    assert_eq!(
        ws.grove_in(&sub, &["path", "api"]).success().stdout,
        show(&api)
    );
    // An explicit NAME still wins.
    assert_eq!(
        ws.grove_in(&sub, &["path", "feat-02"]).success().stdout,
        show(&ws.worktree("feat-02", "front"))
    );
    // The env folder itself counts.
    assert_eq!(
        ws.grove_in(&ws.env_dir("feat-01"), &["path"])
            .success()
            .stdout,
        show(&front)
    );

    // Inside a worktree, its layer is meant.
    assert_eq!(ws.grove_in(&api, &["path"]).success().stdout, show(&api));
    let env = ws.grove_in(&api, &["env"]).success();
    assert!(env.stdout.contains("GROVE_ENV=feat-01\n"), "{env}");
    assert!(env.stdout.contains("GROVE_LAYER=api\n"), "{env}");

    // `exec -- CMD` with no NAME, and `exec NAME -- CMD` as before.
    let out = ws
        .grove_in(&sub, &["exec", "--", "sh", "-c", "echo $GROVE_ENV; pwd"])
        .success();
    assert_eq!(out.stdout, format!("feat-01\n{}\n", sub.display()));
    let out = ws
        .grove_in(
            &sub,
            &["exec", "feat-02", "--", "sh", "-c", "echo $GROVE_ENV"],
        )
        .success();
    assert_eq!(out.stdout, "feat-02\n");

    ws.grove_in(&api, &["logs", "-n", "1"]).success();
    ws.grove_in(&api, &["logs", "setup"]).success();
    let check = ws.grove_in(&front, &["check"]).failure(1);
    assert!(
        check
            .stderr
            .contains("no dedicated layer of `feat-01` has `check` commands"),
        "{check}"
    );

    // `review` inside an env is that env; `--all` (or anywhere else) is the queue.
    let one = ws.grove_in(&front, &["review"]).success();
    assert!(one.stdout.starts_with("feat-01  "), "{one}");
    assert!(!one.stdout.contains("feat-02"), "{one}");
    let all = ws.grove_in(&front, &["review", "--all"]).success();
    assert!(
        all.stdout.contains(" 1. ") && all.stdout.contains("feat-02"),
        "{all}"
    );
    let queue = ws.grove(&["review"]).success();
    assert!(
        queue.stdout.contains(" 1. ") && queue.stdout.contains("feat-02"),
        "{queue}"
    );
    ws.grove_in(&front, &["review", "--mark-reviewed"])
        .success();

    // $GROVE_ENV (set in every process grove starts for an env) when the folder says nothing.
    let out = run(ws.cmd().env("GROVE_ENV", "feat-02").arg("path"));
    assert_eq!(out.success().stdout, show(&ws.worktree("feat-02", "front")));
}

#[test]
fn no_name_outside_an_env_is_a_usage_error_naming_the_envs() {
    let ws = two_envs();
    for cmd in [
        &["path"][..],
        &["logs"],
        &["exec", "--", "true"],
        &["check"],
        &["env"],
    ] {
        let out = ws.grove(cmd).failure(2);
        assert!(
            out.stderr.contains("which env?") && out.stderr.contains("is in no env's folder"),
            "{out}"
        );
        assert!(
            out.stderr
                .contains("envs of this workspace: feat-01, feat-02"),
            "{out}"
        );
    }
    // Outside any env, `exec NAME CMD` without `--` still refuses to guess.
    ws.grove(&["exec", "feat-01", "true"]).failure(2);
}

#[test]
fn ls_and_rm_are_aliases_of_ps_and_destroy() {
    let ws = two_envs();
    let help = ws.grove(&["--help"]).success();
    // The help wraps lines where it likes.
    let words = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("and status [alias: ls]"), "{help}");
    assert!(words.contains("its ports [alias: rm]"), "{help}");
    let ls = ws.grove(&["ls", "--json"]).success();
    assert_eq!(ls.stdout, ws.grove(&["ps", "--json"]).success().stdout);
    ws.grove(&["rm", "feat-02"]).success();
    let names: Vec<String> = ws
        .ps()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["feat-01"]);
}

/// Runs `grove ARGS` on a pseudo-terminal (stdout and stderr both on it), with a terminal
/// that supports colour and `vars` set; NO_COLOR is unset unless `vars` sets it.
fn on_a_tty(ws: &TestWorkspace, args: &str, vars: &[(&str, &str)]) -> Out {
    let grove = crate::common::grove_bin();
    let mut cmd = ws.command("script");
    cmd.env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .args(["-qec", &format!("{grove} {args}"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"").unwrap();
    finish(child)
}

/// Runs `grove ARGS` with its output in pipes, NO_COLOR unset, `vars` set.
fn piped(ws: &TestWorkspace, args: &[&str], vars: &[(&str, &str)]) -> Out {
    let mut cmd = ws.cmd();
    cmd.env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

const ESC: &str = "\x1b[";

#[test]
fn colour_on_a_terminal_only() {
    let ws = two_envs();
    // On a terminal: the table's header, statuses and URLs, and errors and hints.
    let ps = on_a_tty(&ws, "ps", &[]);
    assert_eq!(ps.code, 0, "{ps}");
    assert!(
        ps.stdout.contains(&format!("{ESC}1mNAME")),
        "{ps:?}",
        ps = ps.stdout
    );
    let err = on_a_tty(&ws, "path nope", &[]);
    assert!(err.stdout.contains(ESC), "{err}");
    assert!(
        err.stdout.contains("error:") && err.stdout.contains("hint:"),
        "{err}"
    );
    // Colour repeats the words: stripped of it, the table is the one a pipe gets.
    let plain_ps = ws.grove(&["ps"]).success().stdout;
    let stripped = strip(&ps.stdout);
    for line in plain_ps.lines() {
        assert!(stripped.contains(line), "{line:?} not in {stripped:?}");
    }

    // Not a terminal: no colour, however rich TERM is.
    let out = piped(&ws, &["ps"], &[]);
    assert!(!out.stdout.contains(ESC), "{out}");
    let out = piped(&ws, &["path", "nope"], &[]);
    assert!(!out.stderr.contains(ESC), "{out}");

    // NO_COLOR (any non-empty value) and CLICOLOR=0 turn it off on a terminal.
    for vars in [
        [("NO_COLOR", "1")],
        [("NO_COLOR", "yes")],
        [("CLICOLOR", "0")],
    ] {
        let out = on_a_tty(&ws, "ps", &vars);
        assert!(!out.stdout.contains(ESC), "{vars:?}: {out}");
        let out = on_a_tty(&ws, "path nope", &vars);
        assert!(!out.stdout.contains(ESC), "{vars:?}: {out}");
    }
    // --color never beats a terminal; --color always and CLICOLOR_FORCE colour a pipe.
    let out = on_a_tty(&ws, "--color never ps", &[]);
    assert!(!out.stdout.contains(ESC), "{out}");
    let out = piped(&ws, &["ps", "--color=always"], &[]);
    assert!(out.stdout.contains(ESC), "{out}");
    let out = piped(&ws, &["ps"], &[("CLICOLOR_FORCE", "1")]);
    assert!(out.stdout.contains(ESC), "{out}");
    // JSON never.
    let out = piped(&ws, &["ps", "--json", "--color", "always"], &[]);
    assert!(!out.stdout.contains(ESC), "{out}");
    out.json();
    let out = on_a_tty(&ws, "review --json", &[]);
    assert!(!out.stdout.contains(ESC), "{out}");
}

/// `s` without its colour codes.
fn strip(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find('m').map_or(after.len(), |m| m + 1);
        rest = &after[end..];
    }
    out.push_str(rest);
    out.replace("\r\n", "\n")
}

/// An env named like a layer: inside another env, the word is the env (as NAME always was),
/// and grove says how to get the layer instead.
#[test]
fn a_word_naming_an_env_and_a_layer_is_the_env_and_grove_says_so() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01", "--from-api=main", "--no-start"])
        .success();
    ws.grove(&["create", "api", "--from-api=main", "--no-start"])
        .success();
    let inside = ws.worktree("feat-01", "front");
    let out = ws.grove_in(&inside, &["path", "api"]).success();
    assert_eq!(
        out.stdout,
        format!("{}\n", ws.worktree("api", "front").display())
    );
    assert!(out.stderr.contains("is an env and a layer"), "{out}");
    assert!(out.stderr.contains("grove path feat-01 api"), "{out}");
}

/// `review --json` is for scripts and agents: without NAME it is the queue wherever it runs,
/// even inside an env or with `$GROVE_ENV` set.
#[test]
fn review_json_without_name_is_always_the_queue() {
    let ws = two_envs();
    let inside = ws.worktree("feat-01", "front");
    let json = ws.grove_in(&inside, &["review", "--json"]).success().json();
    assert_eq!(json["envs"].as_array().unwrap().len(), 2, "{json:#}");
    let out = run(ws
        .cmd()
        .env("GROVE_ENV", "feat-02")
        .args(["review", "--json"]));
    assert_eq!(out.json()["envs"].as_array().unwrap().len(), 2);
    // Without --json, inside an env: that env.
    let out = ws.grove_in(&inside, &["review"]).success();
    assert!(!out.stdout.contains("feat-02"), "{out}");
}

/// `review NAME --comment L:P:N` without its TEXT, inside another env: a usage error, not a
/// comment made of the env's name sent to the env you are in.
#[test]
fn a_comment_without_text_is_refused_even_inside_an_env() {
    let ws = two_envs();
    let inside = ws.worktree("feat-02", "front");
    let out = ws
        .grove_in(
            &inside,
            &["review", "feat-01", "--comment", "front:README.md:1"],
        )
        .failure(2);
    assert!(out.stderr.contains("needs the comment's TEXT"), "{out}");
    let list = ws
        .grove(&["feedback", "feat-02", "--list", "--json"])
        .success()
        .json();
    assert_eq!(list["messages"].as_array().unwrap().len(), 0, "{list:#}");
}

/// `envs_dir` outside the workspace: no grove.toml above an env's worktree, yet NAME (and
/// the workspace) come from the folder you are in.
#[test]
fn an_env_folder_outside_the_workspace_still_names_its_env() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let outside = ws.tmp.path().join("elsewhere/envs");
    let toml = ws.standard_config("").replace(
        "[workspace]\n",
        &format!("[workspace]\nenvs_dir = \"{}\"\n", outside.display()),
    );
    ws.write_config(&toml);
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    let wt = outside.join("feat-01/front");
    let out = ws.grove_in(&wt, &["path"]).success();
    assert_eq!(out.stdout, format!("{}\n", wt.display()));
    let out = ws.grove_in(&wt, &["ls"]).success();
    assert!(out.stdout.contains("feat-01"), "{out}");
}

/// `--color` given twice (an alias adds one, the user another): the last one wins.
#[test]
fn the_last_color_flag_wins() {
    let ws = two_envs();
    let out = ws
        .grove(&["--color", "never", "ps", "--color", "always"])
        .success();
    assert!(out.stdout.contains("\u{1b}["), "{out}");
    let out = ws
        .grove(&["--color", "always", "--color=never", "ps"])
        .success();
    assert!(!out.stdout.contains("\u{1b}["), "{out}");
}

/// An env name git allows but the shell reads as syntax (an agent can make one): bash
/// completes it escaped, so the line it completes runs nothing of it.
#[test]
fn bash_completes_an_env_name_holding_shell_syntax_escaped() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "x;$(touch${IFS}PWNED)", "--no-start"])
        .success();
    let script = format!(
        "{BASH_COMPLETE}
echo '== logs'; complete_words grove logs x
"
    );
    let out = bash(&ws, &ws.root, &script).success();
    let got = section(&out, "logs");
    assert_eq!(got, [r"x\;\$\(touch\$\{IFS\}PWNED\)"], "{out}");
    // Typed as completed, the shell hands grove the name, and runs nothing.
    let line = format!("grove path {}", got[0]);
    let out = bash(&ws, &ws.root, &line).success();
    assert!(out.stdout.contains("x;$(touch${IFS}PWNED)"), "{out}");
    assert!(!ws.root.join("PWNED").exists());
}

/// A shell opened by `grove exec` (or an agent) keeps `$GROVE_ENV` after its env is destroyed:
/// a command without NAME says that env is gone (exit 1), not that no env was given.
#[test]
fn grove_env_naming_a_destroyed_env_says_so() {
    let ws = two_envs();
    ws.grove(&["destroy", "feat-02", "--yes"]).success();
    let out = run(ws.cmd().env("GROVE_ENV", "feat-02").arg("path")).failure(1);
    assert!(out.stderr.contains("no env `feat-02`"), "{out}");
    assert!(out.stderr.contains("$GROVE_ENV"), "{out}");
    assert!(
        out.stderr.contains("envs of this workspace: feat-01"),
        "{out}"
    );
    // An env it names that exists is still the target.
    let out = run(ws.cmd().env("GROVE_ENV", "feat-01").arg("path")).success();
    assert_eq!(
        out.stdout.trim(),
        ws.worktree("feat-01", "front").display().to_string()
    );
}

/// TAB only reads: in a workspace grove never ran in, completing an env name makes no store
/// (nor GROVE_HOME); in one whose store exists, it registers no workspace.
#[test]
fn completion_writes_nothing() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let tab = |ws: &TestWorkspace| {
        run(ws
            .cmd()
            .env("GROVE_COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", "2")
            .args(["--", "grove", "logs", ""]))
        .success()
    };
    let out = tab(&ws);
    assert!(out.stdout.contains("--follow"), "{out}");
    assert!(
        !ws.grove_home.exists(),
        "TAB made {}",
        ws.grove_home.display()
    );
    // A store made by another workspace (sharing this GROVE_HOME) gains no row for this one.
    let other = TestWorkspace::with_repos(&["front", "api"]);
    run(other
        .cmd()
        .env("GROVE_HOME", &ws.grove_home)
        .args(["create", "feat-01"]))
    .success();
    let roots = || {
        rusqlite::Connection::open(ws.grove_home.join("state.db"))
            .unwrap()
            .prepare("SELECT root FROM workspaces")
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    assert_eq!(roots().len(), 1);
    tab(&ws);
    assert_eq!(roots(), [other.root.display().to_string()]);
    run(other
        .cmd()
        .env("GROVE_HOME", &ws.grove_home)
        .args(["destroy", "feat-01"]))
    .success();
}
