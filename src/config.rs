//! grove.toml: the schema, and a validation that runs in full before any command acts.
//!
//! Every problem is reported with the file, line and column and what to do about it, all of
//! them at once (up to a limit), so a user fixes the file in one pass. Unknown keys are errors:
//! a misspelt `ready` silently ignored would be a server nobody waits for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::error::Fail;
use crate::git;
use crate::template;

pub const FILE_NAME: &str = "grove.toml";
const DEFAULT_URL: &str = "http://{{ host }}:{{ port }}";
const DEFAULT_ENVS_DIR: &str = ".grove/envs";
/// Readiness timeout when a layer's `ready` gives none.
pub const DEFAULT_READY_TIMEOUT_SECS: u64 = 60;
/// Seconds between two health checks of a ready server when grove.toml gives none.
pub const DEFAULT_HEALTH_EVERY_SECS: u64 = 10;
/// Most seconds between health checks: beyond an hour, turn them off.
const MAX_HEALTH_EVERY_SECS: i64 = 3600;

/// The validated configuration of a workspace.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub name: String,
    pub default_layers: Vec<String>,
    /// Infra layers every env isolates.
    pub default_isolated: Vec<String>,
    /// Absolute folder holding one folder per env.
    pub envs_dir: PathBuf,
    pub layers: IndexMap<String, Layer>,
    pub agent: Option<AgentConfig>,
    /// `[review]`: the gate run when an agent stops.
    pub review: ReviewConfig,
    /// Whether a layer waits for the layers whose URL it reads (`ordered`, grove 0.1) or only
    /// for those its `after` names (`parallel`).
    pub start: StartOrder,
    /// How `grove land` brings a branch into its base unless told (`[workspace] land`).
    pub land: LandStrategy,
    /// The Docker engine compose layers run on, and the infra network they join.
    pub docker: DockerConfig,
    /// The file's text and where some keys are, for problems found later than loading
    /// (they need git) to point at the line all the same.
    source: std::sync::Arc<str>,
    spans: BTreeMap<&'static str, Range<usize>>,
}

/// `[agent]`: the coding agent launched in an env with its ticket.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub command: String,
    pub prompt: String,
    pub prompt_via: PromptVia,
    pub mode: AgentMode,
    /// `None`: the env's first dedicated layer's worktree; `Some("env")`: the env folder;
    /// `Some(layer)`: that layer's worktree.
    pub cwd: Option<String>,
    /// Absolute path of the technical solution every agent of the workspace gets.
    pub solution: Option<PathBuf>,
    pub wait_ready: bool,
    /// How to relaunch a headless agent that exited so that it continues its session with
    /// new instructions (`claude --continue -p`); the text goes in as `prompt_via` says.
    pub resume: Option<String>,
}

/// `[review]`: what the gate runs when an env's agent stops, besides the layers' `check`s.
#[derive(Debug, Clone, Default)]
pub struct ReviewConfig {
    /// The reviewer agent (`claude -p`, `codex exec`, a script), run in the env folder; it
    /// writes its verdict to `$GROVE_VERDICT`.
    pub command: Option<String>,
    pub prompt: String,
    pub prompt_via: Option<PromptVia>,
    /// How many times the gate sends failing checks and requested changes back to the agent
    /// by itself before it hands the env to the human.
    pub auto_fix: u32,
    /// How long the reviewer may run before it is stopped (and the gate records no verdict).
    pub timeout_secs: u64,
}

pub const DEFAULT_REVIEW_TIMEOUT_SECS: u64 = 1800;
const MAX_REVIEW_TIMEOUT_SECS: u64 = 86_400;

pub const DEFAULT_REVIEW_PROMPT: &str = "You are reviewing the work of a coding agent in the grove environment `{{ env }}`. \
Do not change any file.\n\n\
Ticket: {{ ticket }}\n\
{% if solution %}Technical solution the work must follow: {{ solution }}\n{% endif %}\
{% if criteria %}Acceptance criteria:\n{{ criteria }}\n{% endif %}\
Changes against the base, one patch per layer: {{ diffs }}\n\
Results of the checks: {{ checks }}\n\n\
Judge whether the changes implement the ticket, meet every criterion and follow the technical solution. \
Write your verdict as JSON to the file {{ verdict }}:\n\
{\"version\": 1, \"verdict\": \"approve\" or \"changes\", \"summary\": \"...\", \
\"findings\": [{\"layer\": \"...\", \"path\": \"...\", \"line\": 1, \"severity\": \"error|warning|note\", \"text\": \"...\"}], \
\"criteria\": [{\"text\": \"...\", \"met\": true, \"evidence\": \"...\"}]}\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptVia {
    /// The prompt is the command's last argument.
    Arg,
    /// The prompt is the command's standard input.
    Stdin,
    /// The path of a file holding the prompt is the command's last argument.
    File,
}

pub use crate::state::AgentMode;

pub const DEFAULT_PROMPT: &str = "You are working in the grove environment `{{ env }}`. Read {{ context }} first: \
it lists this environment's URLs, the worktrees of its repos, and how to see logs and restart servers.\
{% if solution %} The technical solution all tickets follow is {{ solution }}.{% endif %}\n\n\
{% if ticket %}Implement this ticket ({{ ticket }}):\n\n{{ ticket_text }}\n\
{% else %}No ticket was given: ask the human what to work on.\n{% endif %}";

impl Config {
    /// A problem with `key` of `[workspace]`, reported like a load error: `file:line:column`,
    /// the line, and `hint`.
    pub fn error_at(&self, key: &str, msg: String, hint: &str) -> Fail {
        let span = self.spans.get(key).cloned().unwrap_or(0..0);
        render_diags(&self.path, &self.source, &[diag(span, msg).hint(hint)])
    }

    /// Whether some layer runs as a compose service (so docker is needed).
    pub fn has_compose(&self) -> bool {
        self.layers.values().any(Layer::on_docker)
    }

    /// Names of the code layers (those with a repo), in file order.
    pub fn code_layers(&self) -> Vec<&str> {
        self.layers
            .values()
            .filter(|l| l.is_code())
            .map(|l| l.name.as_str())
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    /// Absolute path of the main checkout. `Some` makes this a code layer.
    pub repo: Option<PathBuf>,
    pub base: Option<String>,
    pub run: Option<String>,
    pub ports: Option<PortRange>,
    pub shared_url: Option<String>,
    /// Template of the dedicated instance's URL; `None` for a layer that serves nothing.
    pub url: Option<String>,
    pub copy: Vec<CopyEntry>,
    /// Steps that do not depend on the env (dependency installs, builds): run in a pool
    /// worktree ahead of time, or before `setup` when the layer has no pool.
    pub prepare: Vec<String>,
    /// Files whose change at the base means `prepare` must run again.
    pub prepare_key: Vec<String>,
    /// Prepared worktrees kept ready for this layer's base.
    pub pool: u32,
    /// Layers that must be ready before this one starts.
    pub after: Vec<String>,
    pub setup: Vec<String>,
    pub ready: Ready,
    pub env: IndexMap<String, String>,
    pub dotenv: Option<String>,
    pub restart: Restart,
    /// How an infra layer gets an instance of its own in an env (`--isolate-<layer>`).
    pub isolate: Option<Isolate>,
    /// `grove check` commands (tests, lint), run in order in the worktree.
    pub check: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping the server.
    pub stop_timeout_secs: u64,
    /// Where the layer's server runs: a host process (`run`), or a Docker Compose service.
    pub runner: Runner,
    /// Seconds between health checks of the ready server (tcp and http probes); `None`: none.
    pub health_every_secs: Option<u64>,
}

/// `[workspace] docker_network`, `docker_context` / `docker_host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// An external network every compose layer's services join (the main stack's `db`).
    pub network: Option<String>,
    pub engine: Engine,
}

/// Which Docker engine runs the compose layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// Docker's own default (`DOCKER_HOST`, the current context).
    #[default]
    Default,
    /// A `docker context` by name.
    Context(String),
    /// An engine address (`ssh://user@host`, `tcp://host:2376`, `unix:///…`).
    Host(String),
}

impl Engine {
    /// How an env records the engine its containers live on.
    pub fn stored(&self) -> String {
        match self {
            Engine::Default => "default".into(),
            Engine::Context(c) => format!("context:{c}"),
            Engine::Host(h) => format!("host:{h}"),
        }
    }

    pub fn from_stored(s: &str) -> Engine {
        if let Some(c) = s.strip_prefix("context:") {
            Engine::Context(c.into())
        } else if let Some(h) = s.strip_prefix("host:") {
            Engine::Host(h.into())
        } else {
            Engine::Default
        }
    }

    /// Docker's default made explicit: `DOCKER_HOST`, else the current context (by name, so
    /// that its TLS material stays with it), else the default socket. An env records this,
    /// not "the default": a later `docker context use` must not send its destroy elsewhere.
    pub fn pinned(&self) -> Engine {
        if *self != Engine::Default {
            return self.clone();
        }
        if let Some(h) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
            return Engine::Host(h);
        }
        let current = crate::exec::Cmd::new("docker")
            .args(["context", "inspect", "--format", "{{.Name}}"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout.trim().to_string())
            .unwrap_or_default();
        if current.is_empty() || current == "default" {
            Engine::Host("unix:///var/run/docker.sock".into())
        } else {
            Engine::Context(current)
        }
    }

    /// The engine's address (`unix:///…`, `tcp://h:2376`, `ssh://u@h`): a context's is asked
    /// of docker; Docker's default is `DOCKER_HOST`, else its socket.
    pub fn endpoint(&self) -> String {
        match self {
            Engine::Host(h) => h.clone(),
            Engine::Context(c) => crate::exec::Cmd::new("docker")
                .args([
                    "context",
                    "inspect",
                    c,
                    "--format",
                    "{{.Endpoints.docker.Host}}",
                ])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| o.stdout.trim().to_string())
                .unwrap_or_default(),
            Engine::Default => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
        }
    }
}

/// The host name at which an engine publishes ports: `localhost` for a socket on this
/// machine, else the address's host (`ssh://me@build-2:22` → `build-2`).
pub fn engine_host_name(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return "localhost".into();
    };
    if !matches!(scheme, "tcp" | "ssh" | "http" | "https") {
        return "localhost".into();
    }
    let authority = rest.split('/').next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    // An IPv6 address keeps its brackets: the name goes into URLs.
    let host = match hostport.strip_prefix('[') {
        Some(v6) => hostport
            .get(..v6.find(']').map_or(0, |i| i + 2))
            .unwrap_or(""),
        None => hostport.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        "localhost".into()
    } else {
        host.to_string()
    }
}

/// Where a code layer's server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// `run`, a host process under the env's supervisor.
    Process,
    /// A service of the repo's compose file, in a compose project of the env's own.
    Compose(ComposeService),
}

/// `compose = { file = "docker-compose.yml", service = "web", port = 3000 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeService {
    /// The compose file, relative to the worktree.
    pub file: String,
    /// The service that is the layer's server: its `port` is published on the leased port.
    pub service: String,
    /// The port the service listens on inside its container.
    pub port: u16,
    /// More services of the file that belong to the layer (a worker), started with it.
    pub services: Vec<String>,
}

impl Layer {
    /// Whether the layer has a server of its own: a `run`, or a compose service.
    pub fn runs_server(&self) -> bool {
        self.run.is_some() || matches!(self.runner, Runner::Compose(_))
    }

    /// Whether the layer puts something on a Docker engine: it runs as a compose service,
    /// or isolates as one. Each such layer is a compose project of its own in an env.
    pub fn on_docker(&self) -> bool {
        matches!(self.runner, Runner::Compose(_))
            || matches!(self.isolate, Some(Isolate::Compose { .. }))
    }
}

/// One `copy` entry: an ignored path of the main checkout and how it reaches a worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyEntry {
    pub path: String,
    pub mode: CopyMode,
}

/// How a `copy` entry is materialised in a worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// Reflink where the filesystem can, else copy.
    Auto,
    /// Share blocks with the source (btrfs, XFS, bcachefs, APFS); an error elsewhere.
    Reflink,
    /// A tree of hard links: new folders, the same files.
    Hardlink,
    /// One symbolic link to the main checkout's folder.
    Symlink,
    /// A full copy.
    Copy,
}

/// How `grove land` brings an env's branch into its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LandStrategy {
    /// A merge commit on the base, even when a fast-forward would do: the ticket stays one
    /// unit in the history.
    Merge,
    /// One new commit on the base with the branch's changes, titled after the ticket.
    Squash,
    /// The branch's commits replayed one by one on the base (a linear history).
    Rebase,
    /// Only a fast-forward: refused when the base moved since the branch left it.
    Ff,
}

impl LandStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            LandStrategy::Merge => "merge",
            LandStrategy::Squash => "squash",
            LandStrategy::Rebase => "rebase",
            LandStrategy::Ff => "ff",
        }
    }
}

/// When a layer's server starts relative to the others'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartOrder {
    /// Every server starts at once (URLs are known before anything starts); `after` waits.
    Parallel,
    /// A layer also waits for every layer whose URL its `env` reads (grove 0.1).
    Ordered,
}

/// An infra layer's isolation recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolate {
    /// A database `<template>_<env_id>` made from the template database.
    Postgres { template: String },
    /// A database index of its own (1-15) on the shared server.
    Redis,
    /// Commands of the user's: `create` and `destroy` (with the env's variables), the URL of
    /// what they made (a template), and a command that tells when it is ready.
    Recipe {
        create: String,
        destroy: String,
        url: Option<String>,
        ready: Option<String>,
    },
    /// A service of the workspace's infra compose file, run for the env in a project of its
    /// own: its own container and volumes, published on a port leased from the layer's `ports`.
    Compose {
        service: String,
        /// The compose file, relative to the workspace; empty: the one in its root.
        file: String,
        /// The port the service listens on in its container.
        port: u16,
    },
}

/// When the supervisor restarts a server that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// After a non-zero exit or a signal (the default).
    OnFailure,
    /// After any exit.
    Always,
    No,
}

pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;

impl Layer {
    pub fn is_code(&self) -> bool {
        self.repo.is_some()
    }

    /// Layers whose readiness this layer's server waits for: its `after`, and under
    /// `start = "ordered"` the layers whose URL it reads too.
    pub fn start_deps(&self, order: StartOrder) -> BTreeSet<String> {
        let mut deps: BTreeSet<String> = self.after.iter().cloned().collect();
        if order == StartOrder::Ordered {
            deps.extend(self.references());
        }
        deps.remove(&self.name);
        deps
    }

    /// Layers whose `url` this layer's `env` templates read.
    pub fn references(&self) -> BTreeSet<String> {
        let mut refs = BTreeSet::new();
        for value in self.env.values() {
            for var in template::variables(value).unwrap_or_default() {
                if let Some(rest) = var.strip_prefix("layers.") {
                    refs.insert(rest.split('.').next().unwrap_or(rest).to_string());
                }
            }
        }
        refs
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// How to tell a dedicated server is ready to serve (used once servers are supervised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub probe: Probe,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Tcp,
    Http { path: String, status: Option<u16> },
    Log(String),
    Exec(String),
}

// ---- raw schema, as written -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    workspace: Option<RawWorkspace>,
    #[serde(default)]
    layers: IndexMap<Spanned<String>, Spanned<RawLayer>>,
    agent: Option<Spanned<RawAgent>>,
    review: Option<Spanned<RawReview>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReview {
    command: Option<Spanned<String>>,
    prompt: Option<Spanned<String>>,
    prompt_via: Option<PromptVia>,
    auto_fix: Option<Spanned<i64>>,
    /// Seconds.
    timeout: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    command: Option<Spanned<String>>,
    prompt: Option<Spanned<String>>,
    prompt_via: Option<PromptVia>,
    mode: Option<AgentMode>,
    cwd: Option<Spanned<String>>,
    solution: Option<Spanned<String>>,
    wait_ready: Option<bool>,
    #[serde(rename = "continue")]
    resume: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    name: Option<Spanned<String>>,
    default_layers: Option<Vec<Spanned<String>>>,
    default_isolated: Option<Vec<Spanned<String>>>,
    envs_dir: Option<Spanned<String>>,
    pool: Option<Spanned<i64>>,
    start: Option<StartOrder>,
    land: Option<LandStrategy>,
    health_every: Option<Spanned<RawHealthEvery>>,
    docker_network: Option<Spanned<String>>,
    docker_context: Option<Spanned<String>>,
    docker_host: Option<Spanned<String>>,
}

/// `health_every = 30` (seconds) or `health_every = false` (no health checks); anything else
/// is read as it is and judged by [`health_every`], for a message better than serde's.
type RawHealthEvery = toml::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    repo: Option<Spanned<String>>,
    base: Option<Spanned<String>>,
    run: Option<Spanned<String>>,
    ports: Option<Spanned<RawPorts>>,
    shared_url: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    copy: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    prepare: Vec<Spanned<String>>,
    #[serde(default)]
    prepare_key: Vec<Spanned<String>>,
    pool: Option<Spanned<i64>>,
    #[serde(default)]
    after: Vec<Spanned<String>>,
    #[serde(default)]
    setup: Vec<Spanned<String>>,
    ready: Option<Spanned<RawReady>>,
    #[serde(default)]
    env: IndexMap<Spanned<String>, Spanned<String>>,
    dotenv: Option<Spanned<String>>,
    restart: Option<Spanned<Restart>>,
    stop_timeout: Option<Spanned<u64>>,
    health_every: Option<Spanned<RawHealthEvery>>,
    #[serde(default)]
    check: Vec<Spanned<String>>,
    isolate: Option<Spanned<RawIsolate>>,
    runner: Option<Spanned<String>>,
    compose: Option<Spanned<RawCompose>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompose {
    file: Option<String>,
    service: Option<String>,
    port: Option<i64>,
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIsolate {
    kind: Option<String>,
    template: Option<String>,
    create: Option<String>,
    destroy: Option<String>,
    url: Option<Spanned<String>>,
    ready: Option<String>,
    service: Option<String>,
    file: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPorts {
    One(i64),
    Range(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    tcp: Option<bool>,
    http: Option<String>,
    status: Option<u16>,
    log: Option<String>,
    exec: Option<String>,
    timeout: Option<u64>,
}

// ---- diagnostics --------------------------------------------------------------------------------

struct Diag {
    span: Range<usize>,
    msg: String,
    hint: Option<String>,
}

fn diag(span: Range<usize>, msg: impl Into<String>) -> Diag {
    Diag {
        span,
        msg: msg.into(),
        hint: None,
    }
}

impl Diag {
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(src.len());
    let before = &src[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

fn render_diags(path: &Path, src: &str, diags: &[Diag]) -> Fail {
    const MAX: usize = 10;
    let mut msg = String::new();
    let shown = path.display();
    for (i, d) in diags.iter().take(MAX).enumerate() {
        if i > 0 {
            msg.push_str("\nerror: ");
        }
        let (line, col) = line_col(src, d.span.start);
        let _ = write!(msg, "{shown}:{line}:{col}: {}", d.msg);
        let text = src.lines().nth(line - 1).unwrap_or("");
        let width = src[d.span.clone()]
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .count()
            .max(1);
        let gutter = line.to_string().len();
        let _ = write!(
            msg,
            "\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {:col$}{}",
            "",
            "",
            "",
            "^".repeat(width),
            col = col - 1
        );
        if let Some(hint) = &d.hint
            && diags.len() > 1
        {
            let _ = write!(msg, "\n{:gutter$} = hint: {hint}", "");
        }
    }
    if diags.len() > MAX {
        let _ = write!(msg, "\n… and {} more problems", diags.len() - MAX);
    }
    let mut fail = Fail::new(msg);
    if diags.len() == 1
        && let Some(hint) = &diags[0].hint
    {
        fail = fail.hint(hint.clone());
    }
    fail
}

// ---- loading ------------------------------------------------------------------------------------

/// Reads and validates `path` (a grove.toml in workspace `root`).
pub fn load(path: &Path, root: &Path) -> Result<Config, Fail> {
    let bytes = fs_err::read(path)
        .map_err(|e| Fail::new(format!("cannot read {}: {e}", path.display())))?;
    let src = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let text = String::from_utf8_lossy(good);
        let (line, col) = line_col(&text, text.len());
        Fail::new(format!(
            "{}:{line}:{col}: not UTF-8 text (byte {} is not valid UTF-8)",
            path.display(),
            good.len() + 1
        ))
        .hint("save grove.toml as UTF-8")
    })?;
    parse(path, root, &src)
}

pub fn parse(path: &Path, root: &Path, src: &str) -> Result<Config, Fail> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let mut msg = e.message().trim().to_string();
        if let Some(rest) = msg.strip_prefix("unknown field ") {
            msg = format!("unknown key {rest}");
        }
        // serde names grove's own types: say what the value should be instead.
        for (ty, what) in [
            (
                "RawPorts",
                "`ports` is a port (`3001`) or a range (`\"3001-3099\"`)",
            ),
            (
                "RawReady",
                "`ready` is a table, such as `{ http = \"/health\" }` or `{ tcp = true }`",
            ),
            (
                "RawIsolate",
                "`isolate` is a table, such as `{ kind = \"postgres\", template = \"app\" }`",
            ),
            ("RawAgent", "`[agent]` is a table"),
            ("RawWorkspace", "`[workspace]` is a table"),
            ("RawLayer", "a layer is a table: `[layers.NAME]`"),
        ] {
            if msg.contains(ty) {
                msg = what.to_string();
            }
        }
        let d = diag(span, msg).hint("see the grove.toml reference in the README");
        render_diags(path, src, &[d])
    })?;
    let mut diags = Vec::new();
    let mut config = validate(raw, path, root, &mut diags);
    if diags.is_empty() {
        config.source = src.into();
        Ok(config)
    } else {
        Err(render_diags(path, src, &diags))
    }
}

fn validate(raw: RawConfig, path: &Path, root: &Path, diags: &mut Vec<Diag>) -> Config {
    let names: Vec<String> = raw.layers.keys().map(|k| k.get_ref().clone()).collect();
    let ws = raw.workspace.unwrap_or(RawWorkspace {
        name: None,
        default_layers: None,
        default_isolated: None,
        envs_dir: None,
        pool: None,
        start: None,
        land: None,
        health_every: None,
        docker_network: None,
        docker_context: None,
        docker_host: None,
    });
    let ws_pool = ws
        .pool
        .as_ref()
        .and_then(|p| pool_size(p, diags))
        .unwrap_or(0);
    let ws_health = match &ws.health_every {
        Some(h) => health_every(h, diags),
        None => Some(DEFAULT_HEALTH_EVERY_SECS),
    };
    let mut layers = IndexMap::new();
    let mut ranges: Vec<(String, PortRange)> = Vec::new();
    let mut repos: Vec<(PathBuf, String)> = Vec::new();
    for (key, raw_layer) in raw.layers {
        let name = key.get_ref().clone();
        if !valid_layer_name(&name) {
            diags.push(diag(key.span(), format!("bad layer name `{name}`")).hint(
                "layer names are lowercase letters, digits and `-`, starting with a letter \
                     (they become `--from-<layer>` flags and GROVE_<LAYER>_URL variables)",
            ));
        }
        let repo_span = raw_layer.get_ref().repo.as_ref().map(Spanned::span);
        let defaults = LayerDefaults {
            pool: ws_pool,
            health_every: ws_health,
        };
        let layer = validate_layer(&name, raw_layer, &names, root, defaults, diags);
        if let (Some(repo), Some(span)) = (&layer.repo, repo_span) {
            if let Some((_, other)) = repos.iter().find(|(r, _)| r == repo) {
                diags.push(
                    diag(
                        span,
                        format!(
                            "layers `{other}` and `{name}` have the same repo {}",
                            repo.display()
                        ),
                    )
                    .hint("a repo is one layer: an env has one worktree and one branch per repo"),
                );
            }
            repos.push((repo.clone(), name.clone()));
        }
        if let Some(r) = layer.ports {
            if let Some((other, _)) = ranges.iter().find(|(_, o)| o.overlaps(&r)) {
                diags.push(
                    diag(
                        key.span(),
                        format!("ports of `{name}` ({r}) overlap those of `{other}`"),
                    )
                    .hint("give each layer its own port range"),
                );
            }
            ranges.push((name.clone(), r));
        }
        layers.insert(name, layer);
    }
    let default_layers = match ws.default_layers {
        Some(list) => {
            for item in &list {
                match layers.get(item.get_ref()) {
                    None => diags.push(
                        diag(
                            item.span(),
                            format!("default layer `{}` is not defined", item.get_ref()),
                        )
                        .hint(format!("defined layers: {}", names.join(", "))),
                    ),
                    Some(l) if !l.is_code() => diags.push(
                        diag(
                            item.span(),
                            format!("default layer `{}` has no `repo`", l.name),
                        )
                        .hint("default layers get a worktree in every env: list code layers only"),
                    ),
                    Some(_) => {}
                }
            }
            list.into_iter().map(Spanned::into_inner).collect()
        }
        None => layers
            .values()
            .filter(|l| l.is_code())
            .map(|l| l.name.clone())
            .collect(),
    };
    let default_isolated: Vec<String> = ws
        .default_isolated
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| {
            if layers
                .get(item.get_ref())
                .is_some_and(|l| l.isolate.is_some())
            {
                Some(item.into_inner())
            } else {
                diags.push(
                    diag(
                        item.span(),
                        format!(
                            "`{}` in `default_isolated` is not a layer with `isolate`",
                            item.get_ref()
                        ),
                    )
                    .hint("list infra layers that have an `isolate` recipe"),
                );
                None
            }
        })
        .collect();
    let start = ws.start.unwrap_or(StartOrder::Parallel);
    check_start_order(&layers, start, diags);
    let mut spans = BTreeMap::new();
    let envs_dir = match ws.envs_dir {
        Some(dir) => {
            spans.insert("envs_dir", dir.span());
            let p = PathBuf::from(dir.get_ref());
            if dir.get_ref().trim().is_empty() {
                diags.push(diag(dir.span(), "`envs_dir` is empty"));
            } else if let Some(why) = bad_envs_dir(&resolve(&root.join(&p)), root, &layers) {
                diags.push(diag(dir.span(), format!("`envs_dir` {why}")).hint(
                    "env folders need a folder of their own, outside every repo's `.git` and not holding a repo; the default is `.grove/envs`",
                ));
            }
            resolve(&root.join(p))
        }
        None => resolve(&root.join(DEFAULT_ENVS_DIR)),
    };
    let agent = raw.agent.map(|a| validate_agent(a, &layers, root, diags));
    let review = raw
        .review
        .map(|r| validate_review(r, diags))
        .unwrap_or_else(|| ReviewConfig {
            prompt: DEFAULT_REVIEW_PROMPT.to_string(),
            timeout_secs: DEFAULT_REVIEW_TIMEOUT_SECS,
            ..ReviewConfig::default()
        });
    let name = ws.name.map(Spanned::into_inner).unwrap_or_else(|| {
        root.file_name()
            .map_or("workspace".into(), |n| n.to_string_lossy().into_owned())
    });
    Config {
        path: path.to_owned(),
        name,
        default_layers,
        default_isolated,
        envs_dir,
        layers,
        agent,
        review,
        start,
        land: ws.land.unwrap_or(LandStrategy::Merge),
        docker: validate_docker(
            &ws.docker_network,
            &ws.docker_context,
            &ws.docker_host,
            diags,
        ),
        source: "".into(),
        spans,
    }
}

/// Why `dir` cannot hold env folders, if it cannot (checked on paths, without git).
fn bad_envs_dir(dir: &Path, root: &Path, layers: &IndexMap<String, Layer>) -> Option<String> {
    let norm = normalize(dir);
    if norm.components().any(|c| is_dot_git(c.as_os_str())) {
        return Some("is inside a `.git` folder".into());
    }
    if norm == resolve(root) {
        return Some("is the workspace folder itself".into());
    }
    for l in layers.values() {
        let Some(repo) = &l.repo else { continue };
        if repo.starts_with(&norm) {
            return Some(format!(
                "holds repo `{}` of layer `{}`",
                repo.display(),
                l.name
            ));
        }
    }
    None
}

/// `p` as it really is: `.` and `..` resolved, and the part that exists followed through its
/// symbolic links (a link to a repo is that repo). The rest may not exist yet.
fn resolve(p: &Path) -> PathBuf {
    let norm = normalize(p);
    let mut existing = norm.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return norm,
        }
    }
}

/// `.git`, in any case: a filesystem that ignores case (macOS's) takes `.GIT` for it.
fn is_dot_git(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.eq_ignore_ascii_case(".git"))
}

/// A `copy` or `dotenv` path written the one way: components joined by `/`, without `.` or
/// a trailing `/` (`link/` would make `cp` follow the link `link` instead of copying it).
fn clean_rel(p: &str) -> String {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `p` with `.` and `..` resolved lexically (the folder may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn validate_agent(
    raw: Spanned<RawAgent>,
    layers: &IndexMap<String, Layer>,
    root: &Path,
    diags: &mut Vec<Diag>,
) -> AgentConfig {
    let header = raw.span();
    let raw = raw.into_inner();
    let command = match &raw.command {
        Some(c) if !c.get_ref().trim().is_empty() => c.get_ref().clone(),
        Some(c) => {
            diags.push(diag(c.span(), "empty agent `command`"));
            String::new()
        }
        None => {
            diags.push(
                diag(header, "`[agent]` has no `command`")
                    .hint("name the agent program, e.g. `command = \"claude\"`"),
            );
            String::new()
        }
    };
    if let Some(p) = &raw.prompt {
        check_template(p, template::Place::Prompt, &[], diags);
    }
    if let Some(cwd) = &raw.cwd {
        let name = cwd.get_ref();
        if name != "env" && !layers.get(name).is_some_and(Layer::is_code) {
            diags.push(
                diag(cwd.span(), format!("agent `cwd` `{name}` is neither `env` nor a code layer"))
                    .hint("name a code layer, whose worktree the agent starts in, or `env` for the env folder"),
            );
        }
    }
    let solution = raw.solution.as_ref().map(|s| {
        let path = root.join(s.get_ref());
        if !path.is_file() {
            diags.push(
                diag(
                    s.span(),
                    format!("solution `{}` not found at {}", s.get_ref(), path.display()),
                )
                .hint("`solution` is a path relative to the folder holding grove.toml"),
            );
        }
        path
    });
    AgentConfig {
        command,
        prompt: raw
            .prompt
            .map_or_else(|| DEFAULT_PROMPT.to_string(), Spanned::into_inner),
        prompt_via: raw.prompt_via.unwrap_or(PromptVia::Arg),
        mode: raw.mode.unwrap_or(AgentMode::Tmux),
        cwd: raw.cwd.map(Spanned::into_inner),
        solution,
        wait_ready: raw.wait_ready.unwrap_or(true),
        resume: raw.resume.and_then(|c| {
            if c.get_ref().trim().is_empty() {
                diags.push(diag(c.span(), "empty agent `continue`").hint(
                    "the command that resumes the agent's session, e.g. `continue = \"claude --continue -p\"`",
                ));
                return None;
            }
            Some(c.into_inner())
        }),
    }
}

fn validate_review(raw: Spanned<RawReview>, diags: &mut Vec<Diag>) -> ReviewConfig {
    let raw = raw.into_inner();
    let command = raw.command.and_then(|c| {
        if c.get_ref().trim().is_empty() {
            diags.push(diag(c.span(), "empty review `command`").hint(
                "name the reviewer program, e.g. `command = \"claude -p\"`, or leave `command` out to gate on checks only",
            ));
            return None;
        }
        Some(c.into_inner())
    });
    if let Some(p) = &raw.prompt {
        check_template(p, template::Place::ReviewPrompt, &[], diags);
    }
    let auto_fix = match raw.auto_fix {
        Some(n) if (0..=20).contains(n.get_ref()) => u32::try_from(*n.get_ref()).unwrap_or(0),
        Some(n) => {
            diags.push(
                diag(n.span(), format!("`auto_fix` is {}", n.get_ref()))
                    .hint("how many rounds the gate sends back to the agent by itself: 0 to 20"),
            );
            0
        }
        None => 0,
    };
    let timeout_secs = match raw.timeout {
        Some(t) if *t.get_ref() == 0 => {
            diags.push(
                diag(t.span(), "`timeout` is 0")
                    .hint("how many seconds the reviewer may run, e.g. `timeout = 1200`"),
            );
            DEFAULT_REVIEW_TIMEOUT_SECS
        }
        Some(t) if *t.get_ref() > MAX_REVIEW_TIMEOUT_SECS => {
            diags.push(
                diag(t.span(), format!("`timeout` is {} seconds", t.get_ref()))
                    .hint(format!("at most {MAX_REVIEW_TIMEOUT_SECS} (a day)")),
            );
            DEFAULT_REVIEW_TIMEOUT_SECS
        }
        Some(t) => t.into_inner(),
        None => DEFAULT_REVIEW_TIMEOUT_SECS,
    };
    ReviewConfig {
        command,
        prompt: raw
            .prompt
            .map_or_else(|| DEFAULT_REVIEW_PROMPT.to_string(), Spanned::into_inner),
        prompt_via: raw.prompt_via,
        auto_fix,
        timeout_secs,
    }
}

fn valid_layer_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 32
        && !name.ends_with('-')
}

fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A relative path that stays inside the worktree: no `..`, not absolute, not empty.
fn inside_path(p: &str) -> bool {
    let path = Path::new(p);
    !p.trim().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)))
}

/// Most prepared worktrees a pool keeps per layer: each holds a checkout and its
/// dependencies, and 30 agents at once is the most users run.
const MAX_POOL: i64 = 32;

/// `health_every`: seconds (1 to an hour), or `false` for no health checks (`None`). A bad
/// value is reported and gives the default.
fn health_every(h: &Spanned<RawHealthEvery>, diags: &mut Vec<Diag>) -> Option<u64> {
    let bad = |diags: &mut Vec<Diag>, what: String| {
        diags.push(
            diag(h.span(), format!("`health_every` is {what}")).hint(format!(
                "seconds between health checks of a ready server, 1 to {MAX_HEALTH_EVERY_SECS} \
             (default {DEFAULT_HEALTH_EVERY_SECS}), or `false` for none"
            )),
        );
        Some(DEFAULT_HEALTH_EVERY_SECS)
    };
    match h.get_ref() {
        toml::Value::Boolean(false) => None,
        toml::Value::Integer(n) if (1..=MAX_HEALTH_EVERY_SECS).contains(n) => {
            u64::try_from(*n).ok()
        }
        toml::Value::Integer(n) => bad(diags, n.to_string()),
        toml::Value::String(s) => bad(diags, format!("the text `{s}` (write a number: `30`)")),
        other => bad(diags, format!("`{other}`")),
    }
}

fn pool_size(p: &Spanned<i64>, diags: &mut Vec<Diag>) -> Option<u32> {
    match u32::try_from(*p.get_ref()) {
        Ok(n) if i64::from(n) <= MAX_POOL => Some(n),
        _ => {
            diags.push(
                diag(p.span(), format!("`pool` is {}", p.get_ref())).hint(format!(
                    "`pool` is how many prepared worktrees to keep: 0 to {MAX_POOL}"
                )),
            );
            None
        }
    }
}

/// One `copy` entry: `"path"` or `{ path = "…", mode = "…" }`.
fn parse_copy(v: &Spanned<toml::Value>, diags: &mut Vec<Diag>) -> Option<(String, CopyMode)> {
    let bad = |diags: &mut Vec<Diag>, msg: String| {
        diags.push(diag(v.span(), msg).hint(
            "write `copy = [\"node_modules\", { path = \".venv\", mode = \"hardlink\" }]`; \
             modes: auto, reflink, hardlink, symlink, copy",
        ));
        None
    };
    match v.get_ref() {
        toml::Value::String(p) => Some((p.clone(), CopyMode::Auto)),
        toml::Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| *k != "path" && *k != "mode") {
                return bad(diags, format!("unknown key `{k}` in a `copy` entry"));
            }
            let Some(toml::Value::String(path)) = t.get("path") else {
                return bad(diags, "a `copy` entry needs `path`, a string".into());
            };
            let mode = match t.get("mode") {
                None => CopyMode::Auto,
                Some(toml::Value::String(m)) => match m.as_str() {
                    "auto" => CopyMode::Auto,
                    "reflink" => CopyMode::Reflink,
                    "hardlink" => CopyMode::Hardlink,
                    "symlink" => CopyMode::Symlink,
                    "copy" => CopyMode::Copy,
                    other => return bad(diags, format!("unknown copy mode `{other}`")),
                },
                Some(_) => return bad(diags, "`mode` of a `copy` entry is a string".into()),
            };
            Some((path.clone(), mode))
        }
        _ => bad(
            diags,
            "a `copy` entry is a path or a table `{ path, mode }`".into(),
        ),
    }
}

/// What `[workspace]` sets for every code layer that does not set it itself.
#[derive(Clone, Copy)]
struct LayerDefaults {
    pool: u32,
    health_every: Option<u64>,
}

fn validate_layer(
    name: &str,
    raw: Spanned<RawLayer>,
    names: &[String],
    root: &Path,
    defaults: LayerDefaults,
    diags: &mut Vec<Diag>,
) -> Layer {
    let header = raw.span();
    let raw = raw.into_inner();
    let repo = raw.repo.as_ref().map(|r| {
        let dir = root.join(r.get_ref());
        if !dir.is_dir() {
            diags.push(
                diag(
                    r.span(),
                    format!(
                        "repo `{}` of layer `{name}` not found at {}",
                        r.get_ref(),
                        dir.display()
                    ),
                )
                .hint("`repo` is a path relative to the folder holding grove.toml"),
            );
        } else if !git::is_checkout(&dir) {
            diags.push(
                diag(
                    r.span(),
                    format!(
                        "repo `{}` of layer `{name}` is not a git repository",
                        r.get_ref()
                    ),
                )
                .hint(format!(
                    "run `git init` in {}, or point `repo` at a git checkout",
                    dir.display()
                )),
            );
        }
        std::fs::canonicalize(&dir).unwrap_or(dir)
    });
    if let (Some(i), Some(_)) = (&raw.isolate, &repo) {
        diags.push(
            diag(
                i.span(),
                format!("`isolate` is for infra layers: `{name}` has a repo"),
            )
            .hint("a code layer gets its own instance with `--from-<layer>=BASE`"),
        );
    }
    let isolate = raw.isolate.as_ref().filter(|_| repo.is_none()).map(|i| {
        let shared = raw.shared_url.as_ref().map(|s| s.get_ref().as_str());
        validate_isolate(name, i, shared, names, diags)
    });
    let compose_isolate = matches!(isolate, Some(Isolate::Compose { .. }));
    if compose_isolate && raw.ports.is_none() {
        diags.push(
            diag(
                header.clone(),
                format!(
                    "layer `{name}` runs its isolated service in a container and needs `ports`"
                ),
            )
            .hint(
                "the range its per-env container is published on, e.g. `ports = \"55400-55499\"`",
            ),
        );
    }
    if repo.is_none() {
        // An infra layer: reached at its shared URL, with nothing of a code layer.
        let code_keys = [
            ("base", raw.base.as_ref().map(Spanned::span)),
            ("run", raw.run.as_ref().map(Spanned::span)),
            // An infra service run per env in a container is published on a leased port.
            (
                "ports",
                raw.ports
                    .as_ref()
                    .map(Spanned::span)
                    .filter(|_| !compose_isolate),
            ),
            ("url", raw.url.as_ref().map(Spanned::span)),
            ("ready", raw.ready.as_ref().map(Spanned::span)),
            ("dotenv", raw.dotenv.as_ref().map(Spanned::span)),
            ("restart", raw.restart.as_ref().map(Spanned::span)),
            ("stop_timeout", raw.stop_timeout.as_ref().map(Spanned::span)),
            ("health_every", raw.health_every.as_ref().map(Spanned::span)),
            ("check", raw.check.first().map(Spanned::span)),
            ("copy", raw.copy.first().map(Spanned::span)),
            ("setup", raw.setup.first().map(Spanned::span)),
            ("prepare", raw.prepare.first().map(Spanned::span)),
            ("prepare_key", raw.prepare_key.first().map(Spanned::span)),
            ("pool", raw.pool.as_ref().map(Spanned::span)),
            ("after", raw.after.first().map(Spanned::span)),
            ("env", raw.env.keys().next().map(Spanned::span)),
            ("runner", raw.runner.as_ref().map(Spanned::span)),
            ("compose", raw.compose.as_ref().map(Spanned::span)),
        ];
        for (key, span) in code_keys {
            if let Some(span) = span {
                diags.push(
                    diag(span, format!("`{key}` needs `repo`: layer `{name}` has no repo"))
                        .hint("a layer without `repo` is infrastructure reached at `shared_url`; add `repo` to make it a code layer"),
                );
            }
        }
        if raw.shared_url.is_none() {
            diags.push(
                diag(header.clone(), format!("layer `{name}` has neither `repo` nor `shared_url`"))
                    .hint("add `repo = \"path\"` for a code layer, or `shared_url` for shared infrastructure"),
            );
        }
    }
    let ports =
        raw.ports.as_ref().and_then(|p| {
            let parsed = parse_ports(p.get_ref());
            if parsed.is_none() {
                diags.push(diag(p.span(), "bad port range").hint(
                    "write `ports = \"3001-3099\"`: two ports from 1024 to 65535, low to high",
                ));
            }
            parsed
        });
    let url = match &raw.url {
        Some(u) => {
            check_template(u, template::Place::Url, names, diags);
            Some(u.get_ref().clone())
        }
        None if repo.is_some() && ports.is_some() => Some(DEFAULT_URL.to_string()),
        None => None,
    };
    if url.as_deref().is_some_and(|u| u.contains("port"))
        && ports.is_none()
        && repo.is_some()
        && let Some(u) = &raw.url
    {
        diags.push(
            diag(
                u.span(),
                format!("`url` of layer `{name}` uses the port but the layer has no `ports`"),
            )
            .hint("add `ports = \"LOW-HIGH\"` to the layer"),
        );
    }
    let mut env = IndexMap::new();
    for (key, value) in &raw.env {
        let var = key.get_ref();
        if !valid_var_name(var) {
            diags.push(diag(
                key.span(),
                format!("`{var}` is not a valid environment variable name"),
            ));
        } else if var == "PORT" || var.starts_with("GROVE_") {
            diags.push(
                diag(
                    key.span(),
                    format!("`env.{var}` would replace a variable grove sets itself"),
                )
                .hint("grove sets PORT and GROVE_* for every process; use another name"),
            );
        }
        check_template(value, template::Place::Env, names, diags);
        env.insert(var.clone(), value.get_ref().clone());
    }
    let mut copy = Vec::new();
    let mut paths: Vec<(Range<usize>, String)> = Vec::new();
    for entry in &raw.copy {
        if let Some((path, mode)) = parse_copy(entry, diags) {
            paths.push((entry.span(), path.clone()));
            copy.push(CopyEntry {
                path: clean_rel(&path),
                mode,
            });
        }
    }
    paths.extend(
        raw.dotenv
            .iter()
            .chain(&raw.prepare_key)
            .map(|p| (p.span(), p.get_ref().clone())),
    );
    for (span, p) in paths {
        if !inside_path(&p) {
            diags.push(
                diag(
                    span,
                    format!("`{p}` is not a relative path inside the repo"),
                )
                .hint("paths are relative to the repo's root and may not use `..`"),
            );
        } else if Path::new(&p)
            .components()
            .any(|c| is_dot_git(c.as_os_str()))
        {
            diags.push(
                diag(span, format!("`{p}` is inside git's own `.git`"))
                    .hint("grove never writes into `.git` (a worktree's `.git` is a file git needs); name a file of the worktree"),
            );
        }
    }
    for a in &raw.after {
        let target = a.get_ref();
        if target == name {
            diags.push(diag(a.span(), format!("layer `{name}` is `after` itself")));
        } else if !names.contains(target) {
            diags.push(
                diag(
                    a.span(),
                    format!("`after` names `{target}`, which is not a layer"),
                )
                .hint(format!("layers: {}", names.join(", "))),
            );
        }
    }
    let pool = match &raw.pool {
        Some(p) => pool_size(p, diags).unwrap_or(0),
        None if repo.is_some() => defaults.pool,
        None => 0,
    };
    for (key, list) in [
        ("setup", &raw.setup),
        ("check", &raw.check),
        ("prepare", &raw.prepare),
    ] {
        for s in list.iter().filter(|s| s.get_ref().trim().is_empty()) {
            diags.push(diag(s.span(), format!("empty `{key}` command")));
        }
    }
    if let Some(r) = &raw.run
        && r.get_ref().trim().is_empty()
    {
        diags.push(diag(r.span(), "empty `run` command"));
    }
    if let Some(b) = &raw.base
        && (b.get_ref().trim().is_empty() || b.get_ref().starts_with('-'))
    {
        diags.push(diag(b.span(), format!("bad base `{}`", b.get_ref())));
    }
    let ready = match &raw.ready {
        Some(r) => validate_ready(r, diags),
        None => Ready {
            probe: Probe::Tcp,
            timeout_secs: DEFAULT_READY_TIMEOUT_SECS,
        },
    };
    let runner = validate_runner(name, &raw.runner, &raw.compose, &raw.run, diags);
    Layer {
        name: name.to_string(),
        repo,
        base: raw.base.map(Spanned::into_inner),
        run: raw.run.map(Spanned::into_inner),
        ports,
        shared_url: raw.shared_url.map(Spanned::into_inner),
        url,
        copy,
        prepare: raw.prepare.into_iter().map(Spanned::into_inner).collect(),
        prepare_key: raw
            .prepare_key
            .iter()
            .map(|p| clean_rel(p.get_ref()))
            .collect(),
        pool,
        after: raw.after.into_iter().map(Spanned::into_inner).collect(),
        setup: raw.setup.into_iter().map(Spanned::into_inner).collect(),
        ready,
        env,
        dotenv: raw.dotenv.as_ref().map(|d| clean_rel(d.get_ref())),
        restart: raw.restart.map_or(Restart::OnFailure, Spanned::into_inner),
        isolate,
        check: raw.check.into_iter().map(Spanned::into_inner).collect(),
        stop_timeout_secs: raw
            .stop_timeout
            .map_or(DEFAULT_STOP_TIMEOUT_SECS, Spanned::into_inner),
        health_every_secs: match &raw.health_every {
            Some(h) => health_every(h, diags),
            None => defaults.health_every,
        },
        runner,
    }
}

fn validate_docker(
    network: &Option<Spanned<String>>,
    context: &Option<Spanned<String>>,
    host: &Option<Spanned<String>>,
    diags: &mut Vec<Diag>,
) -> DockerConfig {
    let engine = match (context, host) {
        (Some(_), Some(h)) => {
            diags.push(
                diag(
                    h.span(),
                    "`docker_context` and `docker_host` both name the engine",
                )
                .hint("keep one: a context names a host and its credentials already"),
            );
            Engine::Default
        }
        (Some(c), None) => Engine::Context(c.get_ref().clone()),
        (None, Some(h)) => Engine::Host(h.get_ref().clone()),
        (None, None) => Engine::Default,
    };
    for v in [network, context, host].into_iter().flatten() {
        if v.get_ref().trim().is_empty() {
            diags
                .push(diag(v.span(), "empty value").hint("leave the key out for Docker's default"));
        }
    }
    DockerConfig {
        network: network.as_ref().map(|n| n.get_ref().clone()),
        engine,
    }
}

/// Compose files Compose itself looks for, in its order, when `compose.file` is left out.
pub const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// `runner = "process" | "compose"` and its `compose` table. A compose layer runs its service,
/// not `run`; `compose` without `runner` means compose.
fn validate_runner(
    name: &str,
    runner: &Option<Spanned<String>>,
    compose: &Option<Spanned<RawCompose>>,
    run: &Option<Spanned<String>>,
    diags: &mut Vec<Diag>,
) -> Runner {
    let kind = runner.as_ref().map(|r| (r.get_ref().as_str(), r.span()));
    if let Some((other, span)) = &kind
        && !["process", "compose"].contains(other)
    {
        diags.push(
            diag(span.clone(), format!("unknown runner `{other}`")).hint(
                "`runner` is \"process\" (the default: `run` on this machine) or \"compose\"",
            ),
        );
        return Runner::Process;
    }
    let wants_compose = kind.as_ref().map(|(k, _)| *k == "compose");
    match (wants_compose, compose) {
        (None | Some(false), None) => Runner::Process,
        (Some(false), Some(_)) => {
            let span = kind.map(|k| k.1).unwrap_or_default();
            diags.push(
                diag(span, format!("layer `{name}` has `runner = \"process\"` and a `compose` table"))
                    .hint("`runner = \"compose\"` runs the compose service; leave out `compose` to run `run`"),
            );
            Runner::Process
        }
        (Some(true), None) => {
            let span = kind.map(|k| k.1).unwrap_or_default();
            diags.push(
                diag(span, format!("layer `{name}` runs as a compose service but names none"))
                    .hint("add `compose = { service = \"web\", port = 3000 }` (the file defaults to the repo's compose.yaml or docker-compose.yml)"),
            );
            Runner::Process
        }
        (_, Some(c)) => {
            if let Some(r) = run {
                diags.push(
                    diag(
                        r.span(),
                        format!("layer `{name}` runs a compose service: `run` would not be used"),
                    )
                    .hint("remove `run`, or remove `compose` to run it on this machine"),
                );
            }
            let span = c.span();
            let raw = c.get_ref();
            let service = raw.service.clone().unwrap_or_default();
            if service.trim().is_empty() {
                diags.push(
                    diag(
                        span.clone(),
                        "`compose` needs `service`: the service that is the layer's server",
                    )
                    .hint("`compose = { service = \"web\", port = 3000 }`"),
                );
            }
            let port = match raw.port.map(u16::try_from) {
                Some(Ok(p)) if p > 0 => p,
                Some(_) => {
                    diags.push(
                        diag(span.clone(), "`compose.port` is not a port").hint(
                            "the port the service listens on inside its container, 1 to 65535",
                        ),
                    );
                    0
                }
                None => {
                    diags.push(
                        diag(span.clone(), "`compose` needs `port`: the port the service listens on in its container")
                            .hint("grove publishes the leased port on this machine to it: `compose = { service = \"web\", port = 3000 }`"),
                    );
                    0
                }
            };
            let file = raw.file.clone().unwrap_or_default();
            if file.starts_with('/') || file.split('/').any(|c| c == "..") {
                diags.push(
                    diag(span, "`compose.file` must stay inside the repo")
                        .hint("a path relative to the repo, like `docker-compose.yml` or `deploy/compose.yaml`"),
                );
            }
            Runner::Compose(ComposeService {
                file: clean_rel(&file),
                service,
                port,
                services: raw.services.clone(),
            })
        }
    }
}

fn validate_isolate(
    name: &str,
    raw: &Spanned<RawIsolate>,
    shared_url: Option<&str>,
    names: &[String],
    diags: &mut Vec<Diag>,
) -> Isolate {
    let span = raw.span();
    let r = raw.get_ref();
    let recipe_keys =
        r.create.is_some() || r.destroy.is_some() || r.url.is_some() || r.ready.is_some();
    if r.kind.as_deref() != Some("compose")
        && (r.service.is_some() || r.file.is_some() || r.port.is_some())
    {
        diags.push(
            diag(
                span.clone(),
                "`service`, `file` and `port` are for `kind = \"compose\"`",
            )
            .hint("e.g. `isolate = { kind = \"compose\", service = \"postgres\" }`"),
        );
    }
    match r.kind.as_deref() {
        Some("compose") => {
            if recipe_keys || r.template.is_some() {
                diags.push(diag(
                    span.clone(),
                    "`kind = \"compose\"` takes `service`, `file` and `port` only",
                ));
            }
            let service = r.service.clone().unwrap_or_default();
            if service.is_empty() {
                diags.push(
                    diag(span.clone(), format!("`isolate` of `{name}` needs `service`"))
                        .hint("the service of the workspace's compose file that runs it, e.g. `service = \"postgres\"`"),
                );
            }
            let file = r.file.clone().unwrap_or_default();
            if file.starts_with('/') || file.split('/').any(|c| c == "..") {
                diags.push(diag(
                    span.clone(),
                    "`isolate.file` must stay inside the workspace (a relative path)",
                ));
            }
            // The env's URL is `shared_url` pointed at the env's container.
            if !shared_url.is_some_and(|u| u.contains("://")) {
                diags.push(
                    diag(span.clone(), format!("`isolate` of `{name}` needs a `shared_url` with a scheme"))
                        .hint("e.g. `shared_url = \"postgres://app:app@localhost:5432/app\"`: each env gets it with its own port"),
                );
            }
            let port = match r.port {
                Some(p) => u16::try_from(p).ok().filter(|p| *p > 0),
                None => shared_url
                    .and_then(crate::supervisor::host_port)
                    .map(|(_, p)| p),
            };
            if port.is_none() {
                diags.push(
                    diag(span, format!("`isolate` of `{name}` needs `port`, the service's port in its container"))
                        .hint("e.g. `port = 5432`; it defaults to the port of `shared_url`"),
                );
            }
            Isolate::Compose {
                service,
                file: clean_rel(&file),
                port: port.unwrap_or(0),
            }
        }
        Some("postgres") => {
            let template = r.template.clone().unwrap_or_default();
            // `<template>_<env_id>` must fit PostgreSQL's 63-byte names (env ids: 40 at most).
            let ok = !template.is_empty()
                && template.len() <= 22
                && template
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !template.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                diags.push(
                    diag(span.clone(), format!("`isolate` of `{name}` needs `template`, a database name"))
                        .hint("e.g. `isolate = { kind = \"postgres\", template = \"app\" }` (letters, digits, `_`; 22 at most)"),
                );
            }
            if recipe_keys {
                diags.push(diag(
                    span,
                    "a built-in `kind` takes no `create`, `destroy`, `url` or `ready`",
                ));
            }
            Isolate::Postgres { template }
        }
        Some("redis") => {
            if recipe_keys || r.template.is_some() {
                diags.push(diag(span, "`kind = \"redis\"` takes no other key"));
            }
            Isolate::Redis
        }
        Some(other) => {
            diags.push(diag(span, format!("unknown isolate kind `{other}`")).hint(
                "`postgres`, `redis`, `compose`, or no `kind` with your own `create`/`destroy` commands",
            ));
            Isolate::Redis
        }
        None => {
            if r.create.is_none() || r.destroy.is_none() {
                diags.push(
                    diag(
                        span,
                        format!("`isolate` of `{name}` needs `create` and `destroy` (or a `kind`)"),
                    )
                    .hint(
                        "both run with the env's variables: `$GROVE_ENV_ID` names what they make",
                    ),
                );
            }
            if let Some(u) = &r.url {
                check_template(u, template::Place::IsolateUrl, names, diags);
            }
            Isolate::Recipe {
                create: r.create.clone().unwrap_or_default(),
                destroy: r.destroy.clone().unwrap_or_default(),
                url: r.url.as_ref().map(|u| u.get_ref().clone()),
                ready: r.ready.clone(),
            }
        }
    }
}

fn parse_ports(raw: &RawPorts) -> Option<PortRange> {
    let (start, end) = match raw {
        RawPorts::One(p) => (*p, *p),
        RawPorts::Range(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            (a.trim().parse().ok()?, b.trim().parse().ok()?)
        }
    };
    let ok = |p: i64| (1024..=65535).contains(&p);
    (ok(start) && ok(end) && start <= end).then(|| PortRange {
        start: u16::try_from(start).unwrap_or(0),
        end: u16::try_from(end).unwrap_or(0),
    })
}

fn validate_ready(raw: &Spanned<RawReady>, diags: &mut Vec<Diag>) -> Ready {
    let r = raw.get_ref();
    let mut probes = Vec::new();
    if let Some(tcp) = r.tcp
        && tcp
    {
        probes.push(Probe::Tcp);
    }
    if let Some(path) = &r.http {
        let path = if path.starts_with('/') {
            path.clone()
        } else {
            format!("/{path}")
        };
        probes.push(Probe::Http {
            path,
            status: r.status,
        });
    }
    if let Some(text) = &r.log {
        probes.push(Probe::Log(text.clone()));
    }
    if let Some(cmd) = &r.exec {
        probes.push(Probe::Exec(cmd.clone()));
    }
    if r.status.is_some() && r.http.is_none() {
        diags.push(diag(raw.span(), "`status` only applies to an `http` probe"));
    }
    if probes.len() > 1 {
        diags.push(diag(raw.span(), "`ready` names more than one probe").hint(
            "choose one of `tcp = true`, `http = \"/path\"`, `log = \"text\"`, `exec = \"cmd\"`",
        ));
    }
    Ready {
        probe: probes.into_iter().next().unwrap_or(Probe::Tcp),
        timeout_secs: r.timeout.unwrap_or(DEFAULT_READY_TIMEOUT_SECS),
    }
}

/// Checks that `tmpl` compiles and reads only what `place` offers: its variables and, where
/// `layers` is a map, `layers.<a defined layer>.<an attribute offered there>` (an empty
/// `layers` list skips the layer check: a prompt may name layers of the env only).
fn check_template(
    tmpl: &Spanned<String>,
    place: template::Place,
    layers: &[String],
    diags: &mut Vec<Diag>,
) {
    let vars = match template::variables(tmpl.get_ref()) {
        Ok(v) => v,
        Err(e) => {
            diags.push(diag(tmpl.span(), format!("bad template: {e}")));
            return;
        }
    };
    let allowed = template::available(place);
    for var in vars {
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or("");
        if !allowed.contains(&root) {
            diags.push(
                diag(tmpl.span(), format!("unknown template variable `{var}`"))
                    .hint(format!("available here: {}", allowed.join(", "))),
            );
            continue;
        }
        let Some(attrs) = template::layer_attrs(place).filter(|_| root == "layers") else {
            continue;
        };
        match (parts.next(), parts.next()) {
            (Some(layer), _) if !layers.is_empty() && !layers.iter().any(|l| l == layer) => {
                diags.push(
                    diag(
                        tmpl.span(),
                        format!("template names unknown layer `{layer}`"),
                    )
                    .hint(format!("defined layers: {}", layers.join(", "))),
                );
            }
            (Some(_), Some(attr)) if !attrs.contains(&attr) => diags.push(
                diag(
                    tmpl.span(),
                    format!("unknown attribute `{attr}` in `{var}`"),
                )
                .hint(format!(
                    "a layer offers {} here: `{{{{ layers.NAME.{} }}}}`",
                    attrs.join(", "),
                    attrs[0]
                )),
            ),
            _ => {}
        }
    }
}

/// A code layer whose `env` reads another code layer's URL starts after it; a cycle among
/// them could never start, so it is a config error now rather than a hang later.
fn check_start_order(layers: &IndexMap<String, Layer>, order: StartOrder, diags: &mut Vec<Diag>) {
    let graph: BTreeMap<String, BTreeSet<String>> = layers
        .values()
        .filter(|l| l.is_code())
        .map(|l| {
            let deps = l
                .start_deps(order)
                .into_iter()
                .filter(|d| layers.get(d).is_some_and(Layer::is_code))
                .collect();
            (l.name.clone(), deps)
        })
        .collect();
    if let Some(cycle) = find_cycle(&graph) {
        diags.push(
            diag(
                0..0,
                format!(
                    "layers wait for each other in a cycle: {}",
                    cycle.join(" → ")
                ),
            )
            .hint(
                "`after = [\"X\"]` (and, under `start = \"ordered\"`, reading `layers.X.url`) makes a layer start after X; break the loop",
            ),
        );
    }
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_publishes_on_its_hosts_name() {
        for (endpoint, host) in [
            ("unix:///var/run/docker.sock", "localhost"),
            ("", "localhost"),
            ("ssh://me@build-2", "build-2"),
            ("ssh://me@build-2:2222", "build-2"),
            ("tcp://10.0.0.7:2376", "10.0.0.7"),
            ("tcp://[fd00::7]:2376", "[fd00::7]"),
        ] {
            assert_eq!(engine_host_name(endpoint), host, "{endpoint}");
        }
        for e in [
            Engine::Default,
            Engine::Context("far".into()),
            Engine::Host("ssh://me@far".into()),
        ] {
            assert_eq!(Engine::from_stored(&e.stored()), e);
        }
    }

    fn parse_str(src: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        for repo in ["front", "api"] {
            std::fs::create_dir_all(dir.path().join(repo).join(".git")).unwrap();
        }
        parse(&dir.path().join("grove.toml"), dir.path(), src).map_err(|f| f.msg)
    }

    #[test]
    fn minimal_two_layer_config() {
        let c = parse_str(
            "[workspace]\ndefault_layers = [\"front\"]\n\
             [layers.front]\nrepo = \"front\"\nports = \"3001-3099\"\nenv.API_URL = \"{{ layers.api.url }}\"\n\
             [layers.api]\nrepo = \"api\"\nports = \"4001-4099\"\nshared_url = \"http://localhost:3000\"\n",
        )
        .unwrap();
        assert_eq!(c.default_layers, vec!["front"]);
        assert_eq!(c.layers["front"].url.as_deref(), Some(DEFAULT_URL));
        assert_eq!(
            c.layers["api"].ports,
            Some(PortRange {
                start: 4001,
                end: 4099
            })
        );
        assert_eq!(
            c.layers["front"].references(),
            BTreeSet::from(["api".to_string()])
        );
    }

    #[test]
    fn unknown_key_has_line_and_column() {
        let e = parse_str("[layers.front]\nrepo = \"front\"\nredy = 1\n").unwrap_err();
        assert!(e.contains("grove.toml:3:1: unknown key `redy`"), "{e}");
    }

    #[test]
    fn overlapping_ranges_and_unknown_template_layer() {
        let e = parse_str(
            "[layers.front]\nrepo = \"front\"\nports = \"3001-3099\"\nenv.X = \"{{ layers.apii.url }}\"\n\
             [layers.api]\nrepo = \"api\"\nports = \"3050-3150\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("4:9: template names unknown layer `apii`"),
            "{e}"
        );
        assert!(
            e.contains("5:9: ports of `api` (3050-3150) overlap those of `front`"),
            "{e}"
        );
    }

    #[test]
    fn bad_port_ranges() {
        for bad in [
            "\"3099-3001\"",
            "\"x-y\"",
            "\"80-90\"",
            "\"3000-70000\"",
            "0",
        ] {
            let e = parse_str(&format!(
                "[layers.front]\nrepo = \"front\"\nports = {bad}\n"
            ))
            .unwrap_err();
            assert!(e.contains("bad port range"), "{bad}: {e}");
        }
    }

    #[test]
    fn start_order_cycle_is_an_error() {
        let layers = "[layers.front]\nrepo = \"front\"\nports = \"3001-3099\"\nenv.A = \"{{ layers.api.url }}\"\n\
             [layers.api]\nrepo = \"api\"\nports = \"4001-4099\"\nenv.F = \"{{ layers.front.url }}\"\n";
        // Reading each other's URLs is fine when both start at once…
        parse_str(layers).unwrap();
        // …but not when each waits for the layers it reads,
        let e = parse_str(&format!("[workspace]\nstart = \"ordered\"\n{layers}")).unwrap_err();
        assert!(e.contains("cycle: api → front → api"), "{e}");
        // nor when `after` makes the loop.
        let e = parse_str(
            "[layers.front]\nrepo = \"front\"\nafter = [\"api\"]\n[layers.api]\nrepo = \"api\"\nafter = [\"front\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("cycle: api → front → api"), "{e}");
        let e = parse_str("[layers.front]\nrepo = \"front\"\nafter = [\"nope\"]\n").unwrap_err();
        assert!(
            e.contains("`after` names `nope`, which is not a layer"),
            "{e}"
        );
    }

    #[test]
    fn copy_entries_and_pool() {
        let c = parse_str(
            "[workspace]\npool = 2\n[layers.front]\nrepo = \"front\"\n\
             copy = [\"a\", { path = \"node_modules\", mode = \"hardlink\" }]\nprepare_key = [\"lock\"]\n",
        )
        .unwrap();
        let f = &c.layers["front"];
        assert_eq!(
            f.copy[0],
            CopyEntry {
                path: "a".into(),
                mode: CopyMode::Auto
            }
        );
        assert_eq!(f.copy[1].mode, CopyMode::Hardlink);
        assert_eq!(f.pool, 2, "the workspace's pool is the default");
        for (bad, says) in [
            (
                "copy = [{ path = \"x\", mode = \"zip\" }]",
                "unknown copy mode `zip`",
            ),
            ("copy = [{ mode = \"copy\" }]", "needs `path`"),
            (
                "copy = [{ path = \"x\", how = \"copy\" }]",
                "unknown key `how`",
            ),
            ("copy = [3]", "a path or a table"),
            ("pool = -1", "`pool` is -1"),
            ("pool = 99", "`pool` is 99"),
            (
                "prepare_key = [\"../x\"]",
                "not a relative path inside the repo",
            ),
            ("prepare = [\" \"]", "empty `prepare` command"),
        ] {
            let e = parse_str(&format!("[layers.front]\nrepo = \"front\"\n{bad}\n")).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn infra_layer_with_code_keys() {
        let e =
            parse_str("[layers.db]\nshared_url = \"postgres://x\"\nrun = \"pg\"\n").unwrap_err();
        assert!(e.contains("`run` needs `repo`"), "{e}");
        let e = parse_str("[layers.db]\n").unwrap_err();
        assert!(e.contains("neither `repo` nor `shared_url`"), "{e}");
    }

    #[test]
    fn missing_repo_and_not_a_repo() {
        let e = parse_str("[layers.x]\nrepo = \"nope\"\n").unwrap_err();
        assert!(e.contains("not found at"), "{e}");
    }

    #[test]
    fn default_layer_must_be_a_code_layer() {
        let e = parse_str(
            "[workspace]\ndefault_layers = [\"db\", \"nope\"]\n[layers.db]\nshared_url = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.contains("default layer `db` has no `repo`"), "{e}");
        assert!(e.contains("default layer `nope` is not defined"), "{e}");
    }

    #[test]
    fn reserved_env_and_escaping_paths() {
        let e = parse_str(
            "[layers.front]\nrepo = \"front\"\ncopy = [\"../secret\"]\nenv.PORT = \"1\"\n",
        )
        .unwrap_err();
        assert!(e.contains("`../secret` is not a relative path"), "{e}");
        assert!(e.contains("`env.PORT` would replace"), "{e}");
    }

    #[test]
    fn ready_probes() {
        let c = parse_str(
            "[layers.front]\nrepo = \"front\"\nports = 3001\nready = { http = \"health\", timeout = 5 }\n",
        )
        .unwrap();
        assert_eq!(
            c.layers["front"].ready,
            Ready {
                probe: Probe::Http {
                    path: "/health".into(),
                    status: None
                },
                timeout_secs: 5
            }
        );
        let e =
            parse_str("[layers.front]\nrepo = \"front\"\nready = { tcp = true, log = \"x\" }\n")
                .unwrap_err();
        assert!(e.contains("more than one probe"), "{e}");
    }

    #[test]
    fn agent_table() {
        let c = parse_str(
            "[layers.front]\nrepo = \"front\"\n[agent]\ncommand = \"claude\"\nmode = \"headless\"\nprompt_via = \"stdin\"\n",
        )
        .unwrap();
        let a = c.agent.unwrap();
        assert_eq!(
            (a.mode, a.prompt_via, a.wait_ready),
            (AgentMode::Headless, PromptVia::Stdin, true)
        );
        assert!(template::variables(&a.prompt).is_ok());
        let e = parse_str(
            "[layers.front]\nrepo = \"front\"\n[agent]\nprompt = \"{{ tiket }}\"\ncwd = \"db\"\nmode = \"screen\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("unknown value `screen`: one of tmux, headless"),
            "{e}"
        );
        let e = parse_str(
            "[layers.front]\nrepo = \"front\"\n[agent]\nprompt = \"{{ tiket }}\"\ncwd = \"db\"\nsolution = \"nope.md\"\n",
        )
        .unwrap_err();
        assert!(e.contains("`[agent]` has no `command`"), "{e}");
        assert!(e.contains("unknown template variable `tiket`"), "{e}");
        assert!(e.contains("agent `cwd` `db`"), "{e}");
        assert!(e.contains("solution `nope.md` not found"), "{e}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}
