//! Hostile input, second round (the first is `bad_input.rs`). Every case is one line of a
//! table: a grove.toml edit, an env name or a command line, with the exit code and the message
//! expected. A refusal is an `error: ` on stderr, exit 1 (2 for command-line usage), and nothing
//! changed: git, the store and the envs folder as before, no env in `grove ps`, and nothing
//! written through a symbolic link to a folder outside the workspace.
//!
//! The loops check every case and then report all the failures at once, so that a run against
//! an older grove (`GROVE_TEST_BIN`) lists each case it lets through.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::common::{Out, TestWorkspace};

const REPOS: &[&str] = &["front", "api"];
/// The env the config cases try to create (numbered per case, see [`case_env`]).
const ENV: &str = "feat";

/// How a case edits the standard grove.toml (`TestWorkspace::standard_config`).
#[derive(Clone, Copy)]
enum Toml {
    /// Lines appended to `[layers.front]`: they start at line 9.
    Front(&'static str),
    /// A line inserted right after `[workspace]`: line 2.
    Workspace(&'static str),
    /// Text appended to the file, after `[layers.api]` (which ends at line 14).
    Append(&'static str),
    /// The first `from` replaced by `to`.
    Replace(&'static str, &'static str),
    /// The whole file, as bytes.
    Bytes(&'static [u8]),
}

impl Toml {
    fn render(self, ws: &TestWorkspace) -> Vec<u8> {
        let standard = ws.standard_config("");
        let text = match self {
            Toml::Front(extra) => ws.standard_config(extra),
            Toml::Workspace(line) => {
                standard.replacen("[workspace]\n", &format!("[workspace]\n{line}\n"), 1)
            }
            Toml::Append(text) => format!("{standard}{text}"),
            Toml::Replace(from, to) => {
                let from = expand(ws, from);
                assert!(standard.contains(&from), "{from:?} not in grove.toml");
                standard.replacen(&from, &expand(ws, to), 1)
            }
            Toml::Bytes(bytes) => return bytes.to_vec(),
        };
        text.into_bytes()
    }
}

/// Placeholders of the tables: `$FRONT_PORTS` and `$API_PORTS` (this test's port ranges),
/// `$API_PORT` (the first port of the api range), `$ROOT` (the workspace folder) and `$OUT` (a
/// folder outside it, that symbolic links of the repos point at).
fn expand(ws: &TestWorkspace, s: &str) -> String {
    s.replace("$FRONT_PORTS", &ws.ports.range(0, 40))
        .replace("$API_PORTS", &ws.ports.range(40, 40))
        .replace("$API_PORT", &ws.api_port(0).to_string())
        .replace("$ROOT", &ws.root.to_string_lossy())
        .replace("$OUT", &outside(ws).to_string_lossy())
}

// ---- the cases ----------------------------------------------------------------------------------

/// NEW: `dotenv` and `copy` never name a path inside git's own `.git` (a worktree's `.git` is a
/// file git needs; the main checkout's is the repository). `grove create` refuses, pointing at
/// the value.
const GIT_PATHS: &[(Toml, &str)] = &[
    (
        Toml::Front(r#"dotenv = ".git""#),
        "grove.toml:9:10: `.git` is inside git's own `.git`",
    ),
    (
        Toml::Front(r#"dotenv = ".git/config""#),
        "grove.toml:9:10: `.git/config` is inside git's own `.git`",
    ),
    (
        Toml::Front(r#"dotenv = "sub/.git/x""#),
        "grove.toml:9:10: `sub/.git/x` is inside git's own `.git`",
    ),
    (
        Toml::Front(r#"dotenv = "./.git/info/exclude""#),
        "grove.toml:9:10: `./.git/info/exclude` is inside git's own `.git`",
    ),
    (
        // `.GIT` is `.git` on a filesystem that ignores case.
        Toml::Front(r#"dotenv = ".GIT/x""#),
        "grove.toml:9:10: `.GIT/x` is inside git's own `.git`",
    ),
    (
        Toml::Front(r#"copy = [".git"]"#),
        "grove.toml:9:9: `.git` is inside git's own `.git`",
    ),
    (
        Toml::Front(r#"copy = [".git/hooks/pre-commit"]"#),
        "grove.toml:9:9: `.git/hooks/pre-commit` is inside git's own `.git`",
    ),
    (
        Toml::Front(r#"copy = ["node_modules", "vendor/lib/.git/"]"#),
        "grove.toml:9:25: `vendor/lib/.git/` is inside git's own `.git`",
    ),
];

/// NEW: `envs_dir` must be a folder of its own: not in a `.git`, not the workspace, not a
/// folder holding a repo. (The empty ones were refused before: regression guards.)
const ENVS_DIRS: &[(Toml, &str)] = &[
    (
        Toml::Workspace(r#"envs_dir = "front/.git/envs""#),
        "grove.toml:2:12: `envs_dir` is inside a `.git` folder",
    ),
    (
        Toml::Workspace(r#"envs_dir = "api/.git""#),
        "grove.toml:2:12: `envs_dir` is inside a `.git` folder",
    ),
    (
        Toml::Workspace(r#"envs_dir = ".""#),
        "grove.toml:2:12: `envs_dir` is the workspace folder itself",
    ),
    (
        Toml::Workspace(r#"envs_dir = "./""#),
        "grove.toml:2:12: `envs_dir` is the workspace folder itself",
    ),
    (
        Toml::Workspace(r#"envs_dir = "envs/..""#),
        "grove.toml:2:12: `envs_dir` is the workspace folder itself",
    ),
    (
        Toml::Workspace(r#"envs_dir = "front/.GIT""#),
        "grove.toml:2:12: `envs_dir` is inside a `.git` folder",
    ),
    (
        Toml::Workspace(r#"envs_dir = "front""#),
        "grove.toml:2:12: `envs_dir` holds repo `$ROOT/front` of layer `front`",
    ),
    (
        Toml::Workspace(r#"envs_dir = "api/../front/""#),
        "grove.toml:2:12: `envs_dir` holds repo `$ROOT/front` of layer `front`",
    ),
    (
        Toml::Workspace(r#"envs_dir = "..""#),
        "grove.toml:2:12: `envs_dir` holds repo `$ROOT/front` of layer `front`",
    ),
    (
        Toml::Workspace(r#"envs_dir = "/""#),
        "grove.toml:2:12: `envs_dir` holds repo `$ROOT/front` of layer `front`",
    ),
    (
        Toml::Workspace(r#"envs_dir = """#),
        "grove.toml:2:12: `envs_dir` is empty",
    ),
    (
        Toml::Workspace(r#"envs_dir = "   ""#),
        "grove.toml:2:12: `envs_dir` is empty",
    ),
];

/// grove.toml mistakes not in `bad_input.rs`: wrong types, unknown keys and values, bad names,
/// templates, port ranges, reserved variables.
const CONFIG: &[(Toml, &str)] = &[
    // Wrong types.
    (
        Toml::Replace(r#"ports = "$FRONT_PORTS""#, "ports = true"),
        "grove.toml:6:9: `ports` is a port (`3001`) or a range (`\"3001-3099\"`)",
    ),
    (
        Toml::Front(r#"ready = "tcp""#),
        "grove.toml:9:9: `ready` is a table, such as `{ http = \"/health\" }`",
    ),
    // A path that is the repo itself, or a command left empty.
    (
        Toml::Front(r#"dotenv = ".""#),
        "grove.toml:9:10: `.` is not a relative path inside the repo",
    ),
    (
        Toml::Front(r#"copy = ["./"]"#),
        "grove.toml:9:9: `./` is not a relative path inside the repo",
    ),
    (
        Toml::Front(r#"check = ["npm test", " "]"#),
        "grove.toml:9:22: empty `check` command",
    ),
    // Two layers on one repo: one worktree and one branch per repo and env.
    (
        Toml::Append(
            "
[layers.front2]
repo = \"front\"\n",
        ),
        "`front` and `front2` have the same repo",
    ),
    (
        Toml::Replace(r#"env.API_URL = "{{ layers.api.url }}""#, "env = 3"),
        "grove.toml:8:7: invalid type: integer `3`, expected a map",
    ),
    (
        Toml::Front(r#"check = "npm test""#),
        "grove.toml:9:9: invalid type: string \"npm test\", expected a sequence",
    ),
    (
        Toml::Front(r#"setup = ["npm ci", 1]"#),
        "grove.toml:9:20: invalid type: integer `1`, expected a string",
    ),
    (
        Toml::Front(r#"stop_timeout = -1"#),
        "grove.toml:9:16: invalid value: integer `-1`, expected u64",
    ),
    (
        Toml::Front(r#"stop_timeout = "10""#),
        "grove.toml:9:16: invalid type: string \"10\", expected u64",
    ),
    (
        Toml::Front(r#"ready = { timeout = -1 }"#),
        "grove.toml:9:21: invalid value: integer `-1`, expected u64",
    ),
    (
        Toml::Workspace("name = 3"),
        "grove.toml:2:8: invalid type: integer `3`, expected a string",
    ),
    // Unknown keys and values.
    (
        Toml::Workspace(r#"envs-dir = "x""#),
        "grove.toml:2:1: unknown key `envs-dir`",
    ),
    (
        Toml::Append("\n[agent]\ncommand = \"claude\"\nmodee = \"tmux\"\n"),
        "grove.toml:18:1: unknown key `modee`",
    ),
    (
        Toml::Front("ready = { tpc = true }"),
        "grove.toml:9:11: unknown key `tpc`",
    ),
    (
        Toml::Replace("[workspace]", "foo = 1\n[workspace]"),
        "grove.toml:1:1: unknown key `foo`",
    ),
    (
        Toml::Front(r#"restart = "sometimes""#),
        "grove.toml:9:11: unknown variant `sometimes`, expected one of `on-failure`, `always`, `no`",
    ),
    (
        Toml::Front(r#"restart = "On-Failure""#),
        "grove.toml:9:11: unknown variant `On-Failure`",
    ),
    (
        Toml::Append("\n[agent]\ncommand = \"claude\"\nprompt_via = \"pipe\"\n"),
        "grove.toml:18:14: unknown variant `pipe`",
    ),
    (
        Toml::Append("\n[agent]\ncommand = \"claude\"\nwait_ready = \"yes\"\n"),
        "grove.toml:18:14: invalid type: string \"yes\", expected a boolean",
    ),
    // Layer names and roles.
    (
        Toml::Replace("[layers.front]", "[layers.Front]"),
        "grove.toml:4:9: bad layer name `Front`",
    ),
    (
        Toml::Replace("[layers.front]", "[layers.1x]"),
        "grove.toml:4:9: bad layer name `1x`",
    ),
    (
        Toml::Replace("[layers.front]", "[layers.a_b]"),
        "grove.toml:4:9: bad layer name `a_b`",
    ),
    (
        Toml::Replace(
            r#"default_layers = ["front"]"#,
            "default_layers = [\"front\", \"db\"]\n[layers.db]\nshared_url = \"postgres://db\"",
        ),
        "grove.toml:2:28: default layer `db` has no `repo`",
    ),
    (
        Toml::Front(r#"isolate = { kind = "postgres", template = "app" }"#),
        "grove.toml:9:11: `isolate` is for infra layers: `front` has a repo",
    ),
    (
        Toml::Append(
            "\n[layers.db]\nshared_url = \"postgres://db\"\nisolate = { kind = \"mysql\" }\n",
        ),
        "grove.toml:18:11: unknown isolate kind `mysql`",
    ),
    (
        Toml::Workspace(r#"default_isolated = ["api"]"#),
        "grove.toml:2:21: `api` in `default_isolated` is not a layer with `isolate`",
    ),
    (
        Toml::Append("\n[layers.x]\n"),
        "grove.toml:16:1: layer `x` has neither `repo` nor `shared_url`",
    ),
    (
        Toml::Append("\n[layers.front]\nrun = \"npm start\"\n"),
        "grove.toml:16:9: duplicate key",
    ),
    // Templates.
    (
        Toml::Front(r#"url = "{{ port""#),
        "grove.toml:9:7: bad template: syntax error",
    ),
    (
        Toml::Front(r#"env.X = "{% if %}""#),
        "grove.toml:9:9: bad template: syntax error",
    ),
    (
        Toml::Front(r#"url = "http://localhost/{{ nope }}""#),
        "grove.toml:9:7: unknown template variable `nope`",
    ),
    (
        Toml::Front(r#"env.X = "{{ ticket }}""#),
        "grove.toml:9:9: unknown template variable `ticket`",
    ),
    (
        Toml::Front(r#"env.X = "{{ layers.api.port }}""#),
        "grove.toml:9:9: unknown attribute `port` in `layers.api.port`",
    ),
    (
        Toml::Front(r#"env.X = "{{ layers.db.url }}""#),
        "grove.toml:9:9: template names unknown layer `db`",
    ),
    (
        Toml::Replace(
            r#"ports = "$API_PORTS""#,
            r#"url = "http://localhost:{{ port }}/""#,
        ),
        "grove.toml:13:7: `url` of layer `api` uses the port but the layer has no `ports`",
    ),
    // Port ranges.
    (
        Toml::Replace(r#"ports = "$FRONT_PORTS""#, r#"ports = "3000-2000""#),
        "grove.toml:6:9: bad port range",
    ),
    (
        Toml::Replace(r#"ports = "$FRONT_PORTS""#, r#"ports = "80""#),
        "grove.toml:6:9: bad port range",
    ),
    (
        Toml::Replace(r#"ports = "$FRONT_PORTS""#, r#"ports = "3000-""#),
        "grove.toml:6:9: bad port range",
    ),
    (
        Toml::Replace(r#"ports = "$FRONT_PORTS""#, "ports = $API_PORT"),
        "grove.toml:11:9: ports of `api` ($API_PORTS) overlap those of `front`",
    ),
    // Variables grove sets itself, and names no shell takes.
    (
        Toml::Front(r#"env.PORT = "8080""#),
        "grove.toml:9:5: `env.PORT` would replace a variable grove sets itself",
    ),
    (
        Toml::Front(r#"env.GROVE_X = "1""#),
        "grove.toml:9:5: `env.GROVE_X` would replace a variable grove sets itself",
    ),
    (
        Toml::Front(r#"env.1X = "1""#),
        "grove.toml:9:5: `1X` is not a valid environment variable name",
    ),
    (
        Toml::Front(r#"base = "--output=/tmp/x""#),
        "grove.toml:9:8: bad base `--output=/tmp/x`",
    ),
    // Not UTF-8: nothing can point at a line, but the file is named.
    (
        Toml::Bytes(b"[workspace]\n# caf\xe9\n"),
        "grove.toml:2:6: not UTF-8 text (byte 18 is not valid UTF-8)",
    ),
];

/// Cases `grove create` finds once it looks at git and the file system, in the workspace of
/// [`fixture`]: (grove.toml edit, env to create, message).
const CREATE: &[(Toml, &str, &str)] = &[
    // NEW: an envs folder inside a repo's tracked tree (`src/x.txt` is tracked).
    (
        Toml::Workspace(r#"envs_dir = "front/src/envs""#),
        ENV,
        "grove.toml:2:12: `envs_dir` $ROOT/front/src/envs is inside the tracked tree of repo `$ROOT/front` (`src` is tracked)",
    ),
    (
        Toml::Workspace(r#"envs_dir = "front/src""#),
        ENV,
        "grove.toml:2:12: `envs_dir` $ROOT/front/src is inside the tracked tree",
    ),
    (
        Toml::Workspace(r#"envs_dir = "front/README.md/envs""#),
        ENV,
        "(`README.md` is tracked)",
    ),
    // NEW: branch `evil` tracks `conf -> $OUT`: nothing is written through it.
    (
        Toml::Front(r#"dotenv = "conf/x.env""#),
        "evil",
        "`dotenv` of layer `front` `conf/x.env`: `conf` is a symbolic link to $OUT, outside $ROOT/.grove/envs/evil/front",
    ),
    (
        Toml::Front(r#"dotenv = "conf/deeper/x.env""#),
        "evil",
        "`conf` is a symbolic link to $OUT, outside",
    ),
    (
        // `conf/secret` is an ignored file of the main checkout, where `conf` is a folder.
        Toml::Front(r#"copy = ["conf/secret"]"#),
        "evil",
        "`copy` entry of layer `front` `conf/secret`: `conf` is a symbolic link to $OUT, outside",
    ),
    // NEW: the main checkout's ignored `link -> $OUT`: nothing is read through it.
    (
        Toml::Front(r#"copy = ["link/file"]"#),
        ENV,
        "`copy` entry `link/file` of layer `front` leads out of $ROOT/front through a symbolic link",
    ),
    (
        Toml::Front(r#"copy = ["./link/file"]"#),
        ENV,
        "`copy` entry `link/file` of layer `front` leads out of",
    ),
    // `lnk -> front` in the workspace: a link to a repo is that repo.
    (
        Toml::Workspace(r#"envs_dir = "lnk""#),
        ENV,
        "grove.toml:2:12: `envs_dir` holds repo `$ROOT/front` of layer `front`",
    ),
    (
        Toml::Workspace(r#"envs_dir = "lnk/src/envs""#),
        ENV,
        "grove.toml:2:12: `envs_dir` $ROOT/front/src/envs is inside the tracked tree of repo `$ROOT/front`",
    ),
    (
        Toml::Workspace(r#"envs_dir = "api/../front/src/envs""#),
        ENV,
        "grove.toml:2:12: `envs_dir` $ROOT/front/src/envs is inside the tracked tree of repo `$ROOT/front`",
    ),
    // NEW: a dotenv that is a symbolic link in the worktree (the copied, ignored `elink`).
    (
        Toml::Front("copy = [\"elink\"]\ndotenv = \"elink\""),
        ENV,
        "`dotenv` of layer `front` `elink` is a symbolic link in the worktree",
    ),
    // A dotenv the branch tracks as a symbolic link (refused before: regression guard).
    (
        Toml::Front(r#"dotenv = "envlink""#),
        "evil",
        "`dotenv = \"envlink\"` of layer `front` is a file git tracks",
    ),
];

/// Env names: (name given to `grove create --`, message). Besides the message, stderr must name
/// the input (as given, escaped, or as the env name it makes).
const NAMES: &[(&str, &str)] = &[
    (
        "HEAD",
        "it reads as a ref (`refs/…` or `HEAD`), not a branch",
    ),
    ("refs/heads/x", "it reads as a ref"),
    ("x/HEAD", "it reads as a ref"),
    ("@", "`@` means HEAD to git"),
    ("a\u{200B}b", "the invisible character U+200B"),
    ("a\u{202E}b", "the invisible character U+202E"),
    ("a/", "git does not accept it as a branch name"),
    ("a//b", "git does not accept it as a branch name"),
    ("/", "git does not accept it as a branch name"),
    (".x", "git does not accept it as a branch name"),
    ("x/.y", "git does not accept it as a branch name"),
    ("a@{b", "git does not accept it as a branch name"),
    ("@{u}", "git does not accept it as a branch name"),
    ("x.", "git does not accept it as a branch name"),
    (".", "git does not accept it as a branch name"),
    ("a\\b", "git does not accept it as a branch name"),
    ("a?b", "git does not accept it as a branch name"),
    ("a*b", "git does not accept it as a branch name"),
    ("a[b", "git does not accept it as a branch name"),
    ("a^b", "git does not accept it as a branch name"),
    ("x/y.lock", "git does not accept it as a branch name"),
    ("a\u{a0}b", "it contains whitespace or control characters"),
    ("a\u{2003}b", "it contains whitespace or control characters"),
    ("a\u{3000}b", "it contains whitespace or control characters"),
    ("a\u{2028}b", "it contains whitespace or control characters"),
    ("a\nb", "it contains whitespace or control characters"),
    ("a\u{7f}b", "it contains whitespace or control characters"),
    ("-", "it starts with `-`"),
    ("--x", "it starts with `-`"),
    ("--force", "it starts with `-`"),
    ("..", "it contains `..`"),
    (
        "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",
        "it is longer than 64 characters",
    ),
    (
        "ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab/ab",
        "it is longer than 64 characters",
    ),
    // `/` becomes `-` in env names: these collide with the envs `taken-x` and `dup-a`.
    ("taken/x", "env `taken-x` already exists"),
    ("dup-a", "env `dup-a` already exists"),
];

/// Command-line misuse: (arguments, exit code, message). The workspace has the env `real`.
const COMMAND_LINE: &[(&[&str], i32, &str)] = &[
    // A lone `-` is a name to clap: grove's own check refuses it.
    (&["create", "-"], 1, "bad env name `-`: it starts with `-`"),
    (
        &["create", "n1", "--from-api"],
        2,
        "a value is required for '--from-api <BASE>'",
    ),
    (
        &["create", "n1", "--from", "api"],
        2,
        "`--from api` is not LAYER=BASE",
    ),
    (&["create", "n1", "--from", "=main"], 2, "unknown layer ``"),
    (
        &["create", "n1", "--from-nosuch=main"],
        2,
        "unknown layer `nosuch` in `--from-nosuch`",
    ),
    (
        &["create", "n1", "--isolate-nosuch"],
        2,
        "unknown layer `nosuch` in `--isolate-nosuch`",
    ),
    (
        &["create", "n1", "--isolate-api"],
        2,
        "layer `api` has no `isolate` recipe: `--isolate-api` does not exist",
    ),
    (
        &["create", "n1", "--isolate", "nosuch"],
        2,
        "unknown layer `nosuch`",
    ),
    (
        &["create", "n1", "--from-front=main", "--from", "front=main"],
        2,
        "layer `front` is given two bases",
    ),
    (
        &["create", "n1", "--from-api=main", "--from-api=main"],
        2,
        "'--from-api <BASE>' cannot be used multiple times",
    ),
    (&["create", "n1", "extra"], 2, "unexpected argument 'extra'"),
    (
        &["create", "n1", "--base", ""],
        1,
        "base `` of layer `front` not found",
    ),
    (
        &["create", "n1", "--from-api="],
        1,
        "base `` of layer `api` not found",
    ),
    (
        &["create", "n1", "--from", "api="],
        1,
        "base `` of layer `api` not found",
    ),
    (&["destroy", "nosuch", "--force"], 1, "no env `nosuch`"),
    (&["logs", "nosuch"], 1, "no env `nosuch`"),
    (
        &["logs", "real", "nosuchlayer"],
        1,
        "env `real` has no server `nosuchlayer`",
    ),
    (&["exec", "nosuch", "--", "true"], 1, "no env `nosuch`"),
    (
        &["exec", "real", "--layer", "nosuch", "--", "true"],
        1,
        "env `real` has no worktree for layer `nosuch`",
    ),
    (
        &["exec", "real"],
        2,
        "the following required arguments were not provided",
    ),
    (&["restart", "nosuch"], 1, "no env `nosuch`"),
    (
        &["restart", "real", "nosuch"],
        1,
        "env `real` has no layer `nosuch` of its own",
    ),
];

/// How many hostile inputs the tables hold (the positive controls are not counted).
pub fn hostile_input_count() -> usize {
    GIT_PATHS.len()
        + ENVS_DIRS.len()
        + CONFIG.len()
        + CREATE.len()
        + NAMES.len()
        + COMMAND_LINE.len()
}

// ---- the loops ----------------------------------------------------------------------------------

#[test]
fn dotenv_and_copy_never_name_git_internals() {
    config_cases(GIT_PATHS);
}

#[test]
fn envs_dir_is_a_folder_of_its_own() {
    config_cases(ENVS_DIRS);
}

#[test]
fn config_mistakes_name_line_and_column() {
    config_cases(CONFIG);
}

#[test]
fn create_refuses_tracked_envs_dirs_and_links_out_of_the_tree() {
    let ws = fixture();
    let mut failures = Vec::new();
    for (i, (toml, env, needle)) in CREATE.iter().enumerate() {
        std::fs::write(ws.root.join("grove.toml"), toml.render(&ws)).unwrap();
        let env = case_env(i, env);
        let before = outside_state(&ws);
        let result = refused(&ws, &["create", &env], 1, &expand(&ws, needle));
        let outside = same(&before, &outside_state(&ws));
        let wrong: Vec<String> = [result.err(), outside.err()]
            .into_iter()
            .flatten()
            .collect();
        if !wrong.is_empty() {
            failures.push(wrong.join("\n"));
            undo(&ws, &env);
        }
    }
    ws.write_config(&ws.standard_config(""));
    report(&failures, CREATE.len());
    assert!(ws.ps().is_empty());
}

#[test]
fn more_bad_env_names() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.grove(&["create", "taken-x"]).success();
    ws.grove(&["create", "dup/a"]).success();
    let mut failures = Vec::new();
    for (name, why) in NAMES {
        let result = refused(&ws, &["create", "--", name], 1, why).and_then(|out| {
            let shown = [
                name.to_string(),
                name.escape_debug().to_string(),
                name.replace('/', "-"),
            ];
            if shown.iter().any(|s| out.stderr.contains(&format!("`{s}`"))) {
                Ok(())
            } else {
                Err(format!("{name:?} is not named:\n{out}"))
            }
        });
        if let Err(e) = result {
            failures.push(e);
            undo(&ws, &name.replace('/', "-"));
        }
    }
    report(&failures, NAMES.len());
    let envs: Vec<_> = ws.ps().iter().map(|e| e["name"].clone()).collect();
    assert_eq!(envs, ["taken-x", "dup-a"], "only the two real envs");
}

#[test]
fn command_line_misuse() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.grove(&["create", "real"]).success();
    let mut failures = Vec::new();
    for (args, code, needle) in COMMAND_LINE {
        if let Err(e) = refused(&ws, args, *code, needle) {
            failures.push(e);
            undo(&ws, "n1");
        }
    }
    report(&failures, COMMAND_LINE.len());
    assert_eq!(ws.ps().len(), 1);
}

/// Positive control of the symlink rules: a link that stays inside the worktree is followed,
/// and an ignored link of the main checkout is copied as a link, never through it.
#[test]
fn links_inside_the_worktree_are_fine() {
    let ws = fixture();
    let before = outside_state(&ws);
    // `link/.` is `link`: copied as the link it is, never through it.
    ws.write_config(
        &ws.standard_config(
            "copy = [\"elink\", \"link/.\"]\ndotenv = \"cfg/x.env\"\nenv.X = \"1\"",
        ),
    );
    ws.grove(&["create", "evil"]).success();
    let wt = ws.worktree("evil", "front");
    let dotenv = std::fs::read_to_string(wt.join("sub/x.env")).unwrap();
    assert!(dotenv.contains("\nX=1\n"), "{dotenv}");
    assert!(wt.join("sub/x.env").symlink_metadata().unwrap().is_file());
    for link in ["elink", "link"] {
        assert!(
            wt.join(link).symlink_metadata().unwrap().is_symlink(),
            "{link} is copied as a link"
        );
    }
    assert_eq!(outside_state(&ws), before);
    // The dotenv is excluded as git sees it (`sub/x.env`): not work, destroy needs no force.
    ws.grove(&["destroy", "evil"]).success();
    assert_eq!(outside_state(&ws), before);
    assert!(ws.ps().is_empty());
}

#[test]
fn the_tables_hold_enough_cases() {
    assert!(hostile_input_count() >= 40, "{}", hostile_input_count());
}

// ---- helpers ------------------------------------------------------------------------------------

/// Each case's grove.toml, then `grove create`: refused with `grove.toml:` and the message.
fn config_cases(cases: &[(Toml, &str)]) {
    let ws = TestWorkspace::with_repos(REPOS);
    let mut failures = Vec::new();
    for (i, (toml, needle)) in cases.iter().enumerate() {
        std::fs::write(ws.root.join("grove.toml"), toml.render(&ws)).unwrap();
        let env = case_env(i, ENV);
        if let Err(e) = refused(&ws, &["create", &env], 1, &expand(&ws, needle)) {
            failures.push(e);
            undo(&ws, &env);
        }
    }
    ws.write_config(&ws.standard_config(""));
    report(&failures, cases.len());
    assert!(ws.ps().is_empty());
}

/// The env case `i` creates: [`ENV`] gets a number, so that an env an older grove let through
/// (and could not undo) does not decide the next cases.
fn case_env(i: usize, env: &str) -> String {
    if env == ENV {
        format!("{ENV}-{i}")
    } else {
        env.to_string()
    }
}

/// Runs grove with `args`; Ok when it exits `code` with an `error: ` holding `needle` and git,
/// the store and the envs folder are as before.
fn refused(ws: &TestWorkspace, args: &[&str], code: i32, needle: &str) -> Result<Out, String> {
    let before = ws.snapshot(REPOS);
    let out = ws.grove(args);
    let mut wrong = Vec::new();
    if out.code != code {
        wrong.push(format!("exit {} instead of {code}", out.code));
    }
    if !(out.stderr.starts_with("error: ") || out.stderr.contains("\nerror: ")) {
        wrong.push("no `error: ` on stderr".to_string());
    }
    if !out.stderr.contains(needle) {
        wrong.push(format!("{needle:?} not on stderr"));
    }
    let after = ws.snapshot(REPOS);
    if after != before {
        wrong.push(format!("state changed:\n{before}--- became ---\n{after}"));
    }
    if wrong.is_empty() {
        Ok(out)
    } else {
        Err(format!("grove {args:?}: {}\n{out}", wrong.join("; ")))
    }
}

fn same(before: &str, after: &str) -> Result<(), String> {
    if before == after {
        Ok(())
    } else {
        Err(format!(
            "files outside the envs changed:\n{before}--- became ---\n{after}"
        ))
    }
}

/// After a case grove let through: back to the standard config and without the env, so that
/// the next cases are judged on their own.
fn undo(ws: &TestWorkspace, env: &str) {
    ws.write_config(&ws.standard_config(""));
    let _ = ws.grove(&["destroy", env, "--force", "--yes"]);
}

#[track_caller]
fn report(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} hostile inputs were not refused cleanly:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The folder outside the workspace that the repos' symbolic links point at.
fn outside(ws: &TestWorkspace) -> PathBuf {
    ws.tmp.path().canonicalize().unwrap().join("outside")
}

/// A workspace whose repo `front` has:
/// - on `main`, a tracked `src/x.txt`;
/// - a branch `evil` tracking `conf -> $OUT`, `envlink -> $OUT/target.env`, and `cfg -> sub`
///   (a real folder of the branch);
/// - in its main checkout, ignored: a folder `conf/` holding `secret`, `link -> $OUT` and
///   `elink -> $OUT/target.env`.
///
/// `$OUT` holds `file` and `target.env`.
fn fixture() -> TestWorkspace {
    let ws = TestWorkspace::with_repos(REPOS);
    let out = outside(&ws);
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("file"), "OUTSIDE\n").unwrap();
    std::fs::write(out.join("target.env"), "TARGET=1\n").unwrap();
    let front = ws.repo("front");
    ws.commit(&front, "src/x.txt", "tracked\n", "A tracked folder");
    ws.git(&front, &["switch", "--quiet", "-c", "evil"]);
    symlink(&out, front.join("conf")).unwrap();
    symlink(out.join("target.env"), front.join("envlink")).unwrap();
    ws.commit(&front, "sub/keep", "", "Links out and in");
    symlink("sub", front.join("cfg")).unwrap();
    ws.git(&front, &["add", "--all"]);
    ws.git(&front, &["commit", "--quiet", "-m", "A link inside"]);
    ws.git(&front, &["switch", "--quiet", "main"]);
    let exclude = front.join(".git/info/exclude");
    let mut text = std::fs::read_to_string(&exclude).unwrap_or_default();
    text.push_str("/conf/\n/link\n/elink\n");
    std::fs::write(&exclude, text).unwrap();
    std::fs::create_dir(front.join("conf")).unwrap();
    std::fs::write(front.join("conf/secret"), "s3cret\n").unwrap();
    symlink(&out, front.join("link")).unwrap();
    symlink(out.join("target.env"), front.join("elink")).unwrap();
    symlink("front", ws.root.join("lnk")).unwrap();
    assert_eq!(
        ws.git(&front, &["status", "--porcelain", "--ignored"]),
        "!! conf/\n!! elink\n!! link"
    );
    ws.write_config(&ws.standard_config(""));
    ws
}

/// What a symbolic link could lead grove to change: the outside folder (every file and its
/// text) and every file of the main checkouts, ignored ones included.
fn outside_state(ws: &TestWorkspace) -> String {
    let mut s = String::new();
    for (path, text) in files(&outside(ws)) {
        s.push_str(&format!("$OUT/{path}: {text:?}\n"));
    }
    for repo in REPOS {
        let status = ws.git(
            &ws.repo(repo),
            &[
                "status",
                "--porcelain",
                "--ignored",
                "--untracked-files=all",
            ],
        );
        s.push_str(&format!("{repo} status: {status:?}\n"));
    }
    s
}

/// Files under `dir`, relative, with their text (a link: where it points).
fn files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = path.symlink_metadata().unwrap();
            if meta.is_symlink() {
                let to = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", to.display()));
            } else if meta.is_dir() {
                out.insert(rel, "(folder)".to_string());
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}
