//! The command line. Doc comments on the `*Args` structs are the `--help` text.
//!
//! `grove create` has a `--from-<layer>` flag per code layer of the workspace's grove.toml.
//! clap cannot declare flags it does not know at compile time, so the parser is built in two
//! steps: find and load the workspace (best effort), then add the generated flags to the
//! derived command before parsing.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Config;
use crate::error::Fail;
use crate::workspace::Workspace;

#[derive(Debug, Parser)]
#[command(
    name = "grove",
    version,
    about = "An isolated, running copy of your multi-repo stack for every ticket",
    long_about = "An isolated, running copy of your multi-repo stack for every ticket.\n\n\
        grove gives each env (one ticket) a git worktree per repo it touches, its own ports and \
        variables wired to the rest of the stack, and cleans it all up on destroy without ever \
        losing uncommitted work or unmerged commits.",
    after_help = "Start with `grove demo` to see it on a demo workspace, or `grove init` in the \
        folder holding your repos.",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Folder holding grove.toml [default: the nearest one above the current folder]
    #[arg(long, global = true, env = "GROVE_WORKSPACE", value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// When to colour the output: `auto` colours a terminal unless NO_COLOR is set (or
    /// CLICOLOR=0; CLICOLOR_FORCE colours a pipe too). --json output is never coloured
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value_t,
        overrides_with = "color"
    )]
    pub color: crate::ui::ColorWhen,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Create(CreateArgs),
    #[command(visible_alias = "ls")]
    Ps(PsArgs),
    Up(UpArgs),
    Down(DownArgs),
    Restart(RestartArgs),
    Logs(LogsArgs),
    Agent(AgentArgs),
    Attach(AttachArgs),
    Review(ReviewArgs),
    Diff(DiffArgs),
    Check(CheckArgs),
    Gate(GateArgs),
    Feedback(FeedbackArgs),
    Land(LandArgs),
    Prune(PruneArgs),
    #[command(visible_alias = "rm")]
    Destroy(DestroyArgs),
    Doctor(DoctorArgs),
    Path(PathArgs),
    Cd(CdArgs),
    Env(EnvArgs),
    Exec(ExecArgs),
    Init(InitArgs),
    Demo(DemoArgs),
    #[command(name = "shell-init")]
    ShellInit(ShellInitArgs),
    Completions(CompletionsArgs),
    #[command(name = "agent-status")]
    AgentStatus(AgentStatusArgs),
    #[command(subcommand)]
    Hooks(HooksCommand),
    #[command(subcommand)]
    Pool(PoolCommand),
}

/// Make an env: a worktree per dedicated layer, ports, variables, copied files, setup
///
/// NAME is a git branch name; the env is named after it with `/` turned into `-`. Each
/// dedicated layer gets branch NAME (created from its base, or reused when it exists and is
/// checked out nowhere) in a worktree at <envs_dir>/<env>/<layer>. Default layers are always
/// dedicated; `--from-<layer>=BASE` makes another one dedicated too.
///
/// All or nothing: if any step fails, or on Ctrl-C, every step already done is undone.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Branch name of the ticket (e.g. `feat-01`, `feat/login`)
    #[arg(required_unless_present = "tickets", conflicts_with = "tickets")]
    pub name: Option<String>,

    /// Launch the configured agent in the env once it is up (see `grove agent`)
    #[arg(long, conflicts_with = "no_start")]
    pub agent: bool,

    /// The ticket the agent works on (a file; its text goes into the prompt)
    #[arg(
        long,
        value_name = "FILE",
        requires = "agent",
        conflicts_with = "tickets"
    )]
    pub ticket: Option<PathBuf>,

    /// One env per ticket file, named after the file's stem, made in parallel (files or
    /// patterns like 'tickets/*.md'); ends with a summary of what is up and what failed
    #[arg(long, value_name = "FILE|GLOB", num_args = 1..)]
    pub tickets: Vec<String>,

    /// How many envs `--tickets` makes at once [default: the number of CPUs]
    #[arg(long, value_name = "N", requires = "tickets")]
    pub jobs: Option<usize>,

    /// Give LAYER its own instance, branched from BASE (repeatable; same as --from-<layer>=BASE)
    #[arg(long = "from", value_name = "LAYER=BASE")]
    pub from: Vec<String>,

    /// Give infra LAYER an instance of its own (repeatable; same as --isolate-<layer>)
    #[arg(long = "isolate", value_name = "LAYER")]
    pub isolate: Vec<String>,

    /// Base for every dedicated layer without its own --from-<layer> [default: the layer's
    /// `base`, else the repo's default branch]
    #[arg(long, value_name = "BASE")]
    pub base: Option<String>,

    /// Run the env's compose layers on this Docker context (another machine's engine)
    /// instead of the workspace's `docker_context` / `docker_host`
    #[arg(long, value_name = "NAME", conflicts_with = "docker_host")]
    pub docker_context: Option<String>,

    /// Run the env's compose layers on the engine at this address (`ssh://me@build-2`,
    /// `tcp://host:2376`, `unix:///…`)
    #[arg(long, value_name = "ADDR")]
    pub docker_host: Option<String>,

    /// Make the env without starting its servers
    #[arg(long)]
    pub no_start: bool,

    /// Print the env as JSON (the `ps --json` env record)
    #[arg(long)]
    pub json: bool,

    /// Filled from the generated `--from-<layer>` flags after parsing.
    #[arg(skip)]
    pub from_layer: Vec<(String, String)>,

    /// Filled from the generated `--isolate-<layer>` flags after parsing.
    #[arg(skip)]
    pub isolate_layer: Vec<String>,
}

/// List the workspace's envs: URL and base of each dedicated layer, and status
///
/// Status is checked against the disk: an env whose worktree was deleted by hand is `broken`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Print JSON (schema: see the README, "ps --json")
    #[arg(long)]
    pub json: bool,

    /// Also list the warm pool's prepared worktrees (see `grove pool`)
    #[arg(long)]
    pub pool: bool,
}

/// The warm pool: worktrees prepared ahead of time for `create` to claim
///
/// A layer with `pool = N` (or `[workspace] pool`) keeps N worktrees of its base ready under
/// <envs_dir>/.pool: detached at the base's tip, `copy` done, `prepare` run. `create` moves one
/// into the env, checks out the env's branch (only files that changed are rewritten), runs
/// `prepare` again only when a `prepare_key` file changed, then `setup`; a filler refills the
/// pool in the background at the lowest CPU and I/O priority.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Show each layer's pool, the filler, and every entry
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Fill every layer's pool now, in the foreground (waits for a filler already at work)
    Fill {
        /// Run as the detached background filler (what `create` starts)
        #[arg(long, hide = true)]
        background: bool,
    },
    /// Stop the filler and remove every prepared worktree not being claimed right now
    Drain,
}

/// Launch the configured agent in an env, with a ticket as its task
///
/// Writes the env's context file (its URLs, worktrees, the ticket, the technical solution, how
/// to use grove) into the env folder, renders `[agent] prompt`, and starts `[agent] command` in
/// the env with its variables: in a tmux window (session `grove-<workspace>`, one window per
/// env) or headless under the env's supervisor (`mode = "headless"`, output in `grove logs NAME
/// agent`). Waits for the env's servers first unless `wait_ready = false`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    pub name: String,

    /// The ticket: a file whose text goes into the prompt and the context file
    #[arg(long, value_name = "FILE")]
    pub ticket: Option<PathBuf>,

    /// Run this command instead of `[agent] command`
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
}

/// Go to an env's agent: its tmux window, or its log when headless
///
/// A headless agent's log is followed while the agent runs, and printed once (with how it
/// ended) when it does not.
#[derive(Debug, Args)]
pub struct AttachArgs {
    pub name: String,
}

/// Record an agent's state (called by the agent's hooks)
///
/// With `--hook`, reads the JSON an agent passes to its hooks on stdin and maps its event:
/// UserPromptSubmit, PreToolUse, PostToolUse, BeforeAgent, BeforeTool, AfterTool → working;
/// Notification (permission, idle, elicitation), PermissionRequest → waiting; Stop,
/// AfterAgent → done (answering with queued feedback, see `grove feedback`); SessionEnd →
/// exited. With `--notify JSON`, reads what Codex gives its `notify` program. The env is
/// `--env`, else $GROVE_ENV, else the one whose worktree holds the hook's (or this) folder.
/// A state of `done` starts the env's gate (see `grove gate`).
#[derive(Debug, Args)]
pub struct AgentStatusArgs {
    /// working, waiting, done or exited
    #[arg(required_unless_present_any = ["hook", "notify"], value_parser = parse_agent_state)]
    pub state: Option<crate::state::AgentState>,

    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,

    /// Read an agent hook's JSON (Claude Code, Codex, Gemini CLI) from stdin
    #[arg(long, conflicts_with = "notify")]
    pub hook: bool,

    /// Read Codex's `notify` JSON (its last argument: `notify = ["grove", "agent-status",
    /// "--notify"]`)
    #[arg(long, value_name = "JSON")]
    pub notify: Option<String>,
}

fn parse_agent_state(s: &str) -> Result<crate::state::AgentState, String> {
    crate::state::AgentState::parse(s)
        .ok_or_else(|| "expected one of: working, waiting, done, exited".to_string())
}

/// Agent hooks that report state to grove
#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Merge grove's hooks into the agent's settings in a worktree (never replacing the user's)
    ///
    /// In the env's agent folder (or, without NAME, the git worktree holding the current
    /// folder), kept out of git's sight: `claude` → .claude/settings.local.json, `codex` →
    /// .codex/hooks.json (Codex runs project hooks once you trust them), `gemini` →
    /// .gemini/settings.json. Each maps the agent's events onto working / waiting / done /
    /// exited, and its end-of-turn hook is how the gate's and the human's feedback reaches it.
    Install {
        /// The agent: `claude`, `codex` or `gemini`
        #[arg(value_parser = ["claude", "codex", "gemini"])]
        agent: String,
        /// The env [default: the worktree holding the current folder]
        name: Option<String>,
    },
}

/// What needs the human: a queue of envs, what each changed, and a conflict radar
///
/// Most urgent first: an agent waiting for input; commits not yet reviewed (agent done, or no
/// agent); failed servers; then the rest. Per layer: commits ahead of and behind the base as it
/// is now, the diffstat, uncommitted files, the last commit, the last check. The radar lists
/// envs that touched the same files, and the conflicts a merge would have (git ≥ 2.38), with
/// each other and with the base. With NAME: that env in full.
///
/// Inside an env's folder or worktrees, NAME defaults to that env (`--all` for the queue);
/// elsewhere, no NAME means the queue. `--json` without NAME is always the queue, wherever it
/// runs (scripts, and agents, whose `$GROVE_ENV` names their env).
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The env [default: the env holding the current folder, else the whole queue]
    pub name: Option<String>,

    /// The whole queue, even inside an env's folder
    #[arg(long, conflicts_with_all = ["name", "mark_reviewed", "comment"])]
    pub all: bool,

    /// Print JSON (schema: see the README, "review --json")
    #[arg(long)]
    pub json: bool,

    /// Remember the env's current commits as reviewed: new ones put it back in the queue
    #[arg(long)]
    pub mark_reviewed: bool,

    /// `git fetch --all` in every repo first (the review itself uses no network)
    #[arg(long)]
    pub fetch: bool,

    /// Send TEXT to the env's agent as a comment on a line of its diff, with the hunk it is
    /// about (see `grove feedback`)
    #[arg(long, value_name = "LAYER:PATH:LINE", conflicts_with_all = ["mark_reviewed", "plan"])]
    pub comment: Option<String>,

    /// The comment's text (with --comment; NAME may be left out inside the env)
    pub text: Option<String>,

    /// Propose the order to land the envs in, so that conflicts come as late and as rarely as
    /// possible, and which envs will need a rebase after which
    #[arg(long, conflicts_with_all = ["name", "mark_reviewed"])]
    pub plan: bool,
}

/// Show what an env changed: `git diff BASE...BRANCH`, through git's pager
#[derive(Debug, Args)]
pub struct DiffArgs {
    pub name: String,
    /// One layer [default: every dedicated layer]
    pub layer: Option<String>,
    /// Include uncommitted changes and untracked files (compare the worktree with the merge
    /// base)
    #[arg(long)]
    pub dirty: bool,
}

/// Run each dedicated layer's `check` commands (tests, lint) in the env, layers in parallel
///
/// Records pass or fail, the duration, the log and the commit checked; `grove review` shows the
/// last result and whether the branch moved on since.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The env [default: the env holding the current folder]
    pub name: Option<String>,
}

/// Run an env's review gate now: its checks, then the reviewer agent
///
/// The gate also runs by itself when the env's agent says it is done (its Stop hook, or
/// `grove agent-status done`). It runs each dedicated layer's `check` commands, then, when
/// `[review] command` is set, the reviewer in the env folder with a prompt naming the ticket,
/// its acceptance criteria, the technical solution, a patch per layer and the check results;
/// the reviewer writes its verdict as JSON to $GROVE_VERDICT. A missing or malformed verdict
/// is recorded as such, never as approval. With `[review] auto_fix = N`, failing checks and
/// requested changes go back to the agent, at most N rounds per ticket. Exits 1 unless
/// approved. Its log: `grove logs NAME gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    pub name: String,

    /// Print the result as JSON (the `gate.result` of `review --json`)
    #[arg(long)]
    pub json: bool,

    /// Run as the detached gate an agent's hook started
    #[arg(long, hide = true)]
    pub background: bool,
}

/// Send the human's words to an env's agent
///
/// Delivered as soon as the agent can take them: through Claude Code's Stop hook while it
/// works; pasted into its tmux pane once it is done or waits at its prompt (as one bracketed
/// paste: nothing in the text is run or read as keys); headless, by relaunching it with
/// `[agent] continue` once it exited. Until then the message is queued. Every message is also
/// appended to grove-feedback.md in the env folder.
#[derive(Debug, Args)]
pub struct FeedbackArgs {
    pub name: String,

    /// The message (`-`: read it from stdin)
    #[arg(conflicts_with_all = ["file", "list"], required_unless_present_any = ["file", "list"])]
    pub text: Option<String>,

    /// Read the message from FILE
    #[arg(long, short, value_name = "FILE", conflicts_with = "list")]
    pub file: Option<PathBuf>,

    /// List the env's messages and how each was delivered
    #[arg(long)]
    pub list: bool,

    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Start an env's servers and wait until they are ready
///
/// Servers start in dependency order (a layer whose `env` reads another dedicated layer's URL
/// starts once that one is ready), each supervised: restarted with backoff when it crashes.
/// Ports are those leased at create, so URLs stay the same across `down` and `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    pub name: String,
}

/// Stop an env's servers, its agent and what they left running; worktrees, branches and ports
/// are kept
///
/// Also stops what grove started for the env and that outlived its command: a server's daemon,
/// what `grove exec` or a setup step left in the background (found by `GROVE_TOKEN`, never by
/// name). A `grove exec` still running is left alone.
#[derive(Debug, Args)]
pub struct DownArgs {
    pub name: String,
}

/// Restart one server of an env (LAYER), or all of them
///
/// Reads grove.toml again for what restarts: a layer given a `run` since the env started gets
/// its server started.
#[derive(Debug, Args)]
pub struct RestartArgs {
    pub name: String,
    pub layer: Option<String>,
}

/// Show an env's server logs (and setup output)
///
/// With several layers, lines are merged in time order and prefixed with their layer. Logs live
/// in $GROVE_HOME/logs/<workspace>/<env>/<layer>.log.
///
/// Inside an env's folder, NAME may be left out: `grove logs` is that env's logs, and `grove
/// logs api` its `api` layer's (a word that names no env but a log of this env is the LAYER).
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The env [default: the env holding the current folder]
    pub name: Option<String>,

    /// One layer, or `setup` / `supervisor` / `agent` / `gate` [default: every server and the
    /// setup output]
    pub layer: Option<String>,

    /// Keep printing new lines as they are written
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// How many of the last lines to print first
    #[arg(long, short = 'n', default_value_t = 100, value_name = "N")]
    pub lines: usize,
}

/// Remove an env: its servers and agent, worktrees, the branches grove created, its ports
///
/// Refuses, changing nothing, while any worktree has uncommitted changes, untracked files,
/// edits hidden by `--skip-worktree`/`--assume-unchanged`, commits only its HEAD holds (a
/// detached HEAD), is locked or has submodules, or the env folder has files of someone's. A
/// branch grove created is deleted only when its commits are in the base or on its upstream
/// and no commit would be left without a ref; otherwise it is kept and grove says so (and
/// when its work is in the base although its commits are not: `grove prune` removes such
/// envs with their branches). A branch
/// that existed before the env is never deleted. Every process grove started for the env is
/// stopped (found by its `GROVE_TOKEN`), and said.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The env
    pub name: String,

    /// Throw away uncommitted work and unmerged commits (grove lists what it discards)
    #[arg(long)]
    pub force: bool,

    /// Do not ask for confirmation on a terminal; without a terminal, needed with `--force`
    /// when it throws work away
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Keep the env's isolated databases (and what other recipes made), and say where they are
    #[arg(long)]
    pub keep_data: bool,
}

/// Land an env: bring each dedicated layer's branch into its base, in every repo or in none
///
/// Refuses, changing nothing, while a worktree has uncommitted work, the env's agent is
/// working or waiting, the gate or a `check` is red (checks not run on the current commits run
/// first), a layer would conflict (predicted with `git merge-tree`, files named), a base is
/// being rebased or bisected, or a checkout of a base has uncommitted changes or a file git
/// does not track where the land writes one. The new base commits are made before any base
/// moves; then each base moves by compare and swap, and every clean checkout of it follows.
/// If one fails, every base already moved is put back. Then `--push` pushes each base to its upstream (checked with a dry run first), and
/// the env is destroyed: its branches, now in their bases, are deleted.
#[derive(Debug, Args)]
pub struct LandArgs {
    /// The env [default: the env holding the current folder]
    pub name: Option<String>,

    /// How a branch enters its base: a merge commit, one squashed commit, its commits
    /// replayed, or a fast-forward only [default: `[workspace] land`, else merge]
    #[arg(long, short, value_enum)]
    pub strategy: Option<crate::config::LandStrategy>,

    /// The message of a merge or squash commit [default: the ticket's title for a squash]
    #[arg(long, short, value_name = "TEXT")]
    pub message: Option<String>,

    /// Push each moved base to its upstream once all moved
    #[arg(long)]
    pub push: bool,

    /// Keep the env (its worktrees and branches) after landing
    #[arg(long)]
    pub keep: bool,

    /// Remove the env but keep its isolated databases (and what other recipes made), and say
    /// where they are, as `destroy --keep-data` does
    #[arg(long, conflicts_with = "keep")]
    pub keep_data: bool,

    /// Land even when the gate or a check is red, without running checks
    #[arg(long)]
    pub no_check: bool,

    /// Do not ask for confirmation on a terminal
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print what was landed as JSON
    #[arg(long)]
    pub json: bool,
}

/// Destroy the envs whose work is in their bases already
///
/// An env goes when the commits of every dedicated layer's branch are in its base (or its
/// base's upstream): merged, fast-forwarded, same tree, squash-merged (merging it would change
/// nothing, or its diff is a commit of the base) or rebased and merged (each commit has an
/// equal in the base); with `--gone`, also when its upstream was deleted (a merged pull
/// request, fetched with `--prune`). A layer whose branch has no commits of its own (by its
/// reflog: one that only followed its base by a pull or a fast-forward has none) has nothing
/// to lose, but at least one layer must have had some: an env nobody worked in stays.
/// Never an env with uncommitted work, files of someone's in its folder, or an agent at work.
/// Lists what goes and why before acting (on a terminal, asks).
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only say what would go
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    /// Also prune envs whose branches' upstreams are gone
    #[arg(long)]
    pub gone: bool,

    /// Only envs created longer ago than this (`90m`, `12h`, `7d`, `2w`)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<u64>,

    /// Do not ask for confirmation on a terminal
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print the verdict on every env as JSON
    #[arg(long)]
    pub json: bool,
}

/// An age like `7d` in seconds.
fn parse_age(s: &str) -> Result<u64, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| {
        "expected a number and a unit, like `7d` (units: s, m, h, d, w)".to_string()
    })?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err("expected a unit after the number: s, m, h, d or w (like `7d`)".into()),
    };
    n.checked_mul(secs).ok_or_else(|| "too long".to_string())
}

/// Check grove's state against git, the disk and the processes; `--fix` repairs what is safe
///
/// Finds: half-made or half-destroyed envs; envs whose worktree or branch is gone; folders in
/// the envs folder that no env owns (an env the store lost is taken back from its folder);
/// worktrees git lists that are gone; branches grove made for envs that no longer exist;
/// processes grove started that outlived their env or command; port and Redis leases with no
/// env; databases grove made for envs that are gone; logs of destroyed envs; workspaces whose
/// folder is gone; a corrupt state.db. Exits 1 while any problem is left. `--fix` never
/// deletes work: anything that holds some is left, with what to do.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Apply the safe fixes
    #[arg(long)]
    pub fix: bool,

    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Print the path of an env's worktree (the first dedicated layer's unless LAYER is given)
///
/// Inside an env's folder, NAME may be left out, and `grove path api` is that env's `api`
/// worktree.
#[derive(Debug, Args)]
pub struct PathArgs {
    /// The env [default: the env holding the current folder]
    pub name: Option<String>,
    pub layer: Option<String>,
}

/// Go to an env's worktree (as `grove path`), or with no NAME to the workspace folder
///
/// A program cannot change its shell's folder: this works through the shell function that
/// `grove shell-init` prints (`eval "$(grove shell-init bash)"` in ~/.bashrc). Without it,
/// `grove cd` prints the path, says how to set the function up, and exits 1, so that `grove cd
/// NAME && make` never runs `make` in the wrong folder. Scripts use `cd "$(grove path NAME)"`.
/// Inside an env's folder, `grove cd api` goes to that env's `api` worktree.
#[derive(Debug, Args)]
pub struct CdArgs {
    /// The env [default: the workspace folder, wherever you are]
    pub name: Option<String>,
    /// The layer's worktree [default: the env's first dedicated layer]
    pub layer: Option<String>,
}

/// Print the shell function that lets `grove cd` change the shell's folder
///
/// Add to your shell's startup file: bash `eval "$(grove shell-init bash)"` in ~/.bashrc; zsh
/// `eval "$(grove shell-init zsh)"` in ~/.zshrc; fish `grove shell-init fish | source` in
/// ~/.config/fish/config.fish. The function runs every other command as `command grove`.
#[derive(Debug, Args)]
pub struct ShellInitArgs {
    pub shell: Shell,
}

/// Print the shell's completion script: subcommands, flags, env names and layer names
///
/// Completion asks grove itself on each TAB, so env names come from the store and the
/// `--from-<layer>` flags from the grove.toml of the folder you are in. bash: `source <(grove
/// completions bash)` in ~/.bashrc; zsh (after `compinit`): `source <(grove completions zsh)`
/// in ~/.zshrc; fish: `grove completions fish | source` in ~/.config/fish/config.fish. Load it
/// anew at each start rather than saving it to a file: the script and the grove answering it
/// must come from the same version.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print the variables of an env's layer in dotenv form (`KEY=value`)
///
/// These are the variables every process grove starts in that layer gets: PORT, GROVE_ENV,
/// GROVE_ENV_ID, GROVE_LAYER, GROVE_BRANCH, GROVE_WORKTREE, GROVE_WORKSPACE,
/// GROVE_<LAYER>_URL for every layer, and the layer's rendered `env` table. Inside an env's
/// folder, NAME may be left out (`grove env api`: that env's `api` layer).
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The env [default: the env holding the current folder]
    pub name: Option<String>,
    pub layer: Option<String>,
}

/// Run a command in an env's worktree with the env's variables; exits with its exit code
///
/// `grove exec NAME -- CMD…`; inside an env's folder, `grove exec -- CMD…` runs in that env.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The env [default: the env holding the current folder]
    pub name: Option<String>,

    /// The layer whose worktree and variables to use [default: the one holding the current
    /// folder, else the env's first dedicated layer]. A compose layer named here runs the
    /// command in its service's container
    #[arg(long, short = 'l', value_name = "LAYER")]
    pub layer: Option<String>,

    /// Run on this machine in the layer's worktree, even for a compose layer
    #[arg(long)]
    pub host: bool,

    /// The command and its arguments (after `--`)
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

/// Write a starter grove.toml for the repos in this folder
///
/// One code layer per git repository found in the folder (or the folder itself when it is a
/// repository), with a `run` command guessed from package.json (its `dev` script, else
/// `start`, run with pnpm, yarn or bun when their lockfile is there, else npm) or a Procfile.
/// The default layers are the repos with a `run`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to write grove.toml in [default: the current folder]
    pub dir: Option<PathBuf>,

    /// Replace an existing grove.toml
    #[arg(long)]
    pub force: bool,
}

/// Build a demo workspace (two repos, `front` and `api`) and run the reference workflow in it
///
/// Running it again replaces an earlier demo, but only what the demo made and nobody changed
/// since: a file added, `grove.toml` edited, uncommitted changes or a commit of anyone's in
/// its repos or envs stops it (on a terminal, it asks).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo workspace [default: ./grove-demo]
    pub dir: Option<PathBuf>,

    /// Replace an earlier demo even when it holds work (grove lists what it throws away)
    #[arg(long)]
    pub force: bool,
}

/// Builds the clap command, with a `--from-<layer>` flag per code layer of `config`.
pub fn command(config: Option<&Config>) -> clap::Command {
    let cmd = Cli::command();
    let Some(config) = config else { return cmd };
    cmd.mut_subcommand("create", |mut create| {
        for layer in config.layers.values().filter(|l| l.is_code()) {
            let default = if config.default_layers.contains(&layer.name) {
                " (a default layer: always dedicated)"
            } else {
                ""
            };
            create = create.arg(
                Arg::new(from_id(&layer.name))
                    .long(format!("from-{}", layer.name))
                    .value_name("BASE")
                    .action(ArgAction::Set)
                    .help(format!(
                        "Give `{}` its own instance branched from BASE{default}",
                        layer.name
                    )),
            );
        }
        for layer in config.layers.values().filter(|l| l.isolate.is_some()) {
            let default = if config.default_isolated.contains(&layer.name) {
                " (isolated in every env already)"
            } else {
                ""
            };
            create = create.arg(
                Arg::new(isolate_id(&layer.name))
                    .long(format!("isolate-{}", layer.name))
                    .action(ArgAction::SetTrue)
                    .help(format!(
                        "Give `{}` an instance of its own{default}",
                        layer.name
                    )),
            );
        }
        create
    })
}

fn isolate_id(layer: &str) -> String {
    format!("isolate-layer:{layer}")
}

fn from_id(layer: &str) -> String {
    format!("from-layer:{layer}")
}

/// Parses `argv`. `ws` is the workspace found before parsing, or why none was loaded.
pub fn parse(argv: Vec<OsString>, ws: &Result<Workspace, Fail>) -> Result<Cli, clap::Error> {
    let config = ws.as_ref().ok().map(|w| &w.config);
    let matches = command(config).try_get_matches_from(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (Command::Create(args), Some(config)) = (&mut cli.command, config)
        && let Some(sub) = matches.subcommand_matches("create")
    {
        args.from_layer = generated_froms(sub, config);
        args.isolate_layer = config
            .layers
            .values()
            .filter(|l| l.isolate.is_some() && sub.get_flag(&isolate_id(&l.name)))
            .map(|l| l.name.clone())
            .collect();
    }
    Ok(cli)
}

fn generated_froms(m: &ArgMatches, config: &Config) -> Vec<(String, String)> {
    config
        .layers
        .values()
        .filter(|l| l.is_code())
        .filter_map(|l| {
            m.get_one::<String>(&from_id(&l.name))
                .map(|b| (l.name.clone(), b.clone()))
        })
        .collect()
}

/// The layer named by an unknown `--from-<x>` flag, if that is what clap tripped on.
/// The flag kind (`from` or `isolate`) and layer of an unknown generated flag.
pub fn unknown_layer_flag(err: &clap::Error) -> Option<(&'static str, String)> {
    use clap::error::{ContextKind, ContextValue};
    if err.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split('=').next()?;
    if let Some(l) = flag.strip_prefix("--from-") {
        return Some(("from", l.to_string()));
    }
    flag.strip_prefix("--isolate-")
        .map(|l| ("isolate", l.to_string()))
}
