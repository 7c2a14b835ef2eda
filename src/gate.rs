//! The gate: what runs when an env's agent says it is done. The layers' `check` commands,
//! then, when `[review] command` is set, a reviewer agent that judges the diff against the
//! ticket, its criteria and the technical solution, and writes a JSON verdict. Failing checks
//! and requested changes go back to the agent by themselves for `[review] auto_fix` rounds;
//! after that the env waits for the human.
//!
//! The gate runs detached from the hook that asked for it (the hook returns at once), in a
//! session of its own, tagged with the env's token: `down` and `destroy` stop it with the
//! env's other processes. It does not run inside the env's supervisor because an env without
//! servers has none, and a hook must not start one (starting a supervisor sweeps leftovers:
//! recovery work, which hooks never do). Its row in the store is its journal: written before
//! it runs, naming its process while it runs; a row whose process died is closed as
//! `interrupted` by the next command that changes state, or by `grove doctor`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::PromptVia;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::exec::Cmd;
use crate::git::Repo;
use crate::proc::{ProcId, Role, Tag};
use crate::state::{CheckRow, EnvRow, Instance};
use crate::{criteria, failpoint, logfile, provision, ui};

/// Version of the verdict a reviewer writes and of the gate's result in `review --json`.
pub const VERDICT_VERSION: u32 = 1;
/// The env folder's sub-folder holding what the reviewer reads and writes.
pub const GATE_DIR: &str = ".grove-gate";
/// A request with no process to run it after this long was lost (its spawn died).
const LOST_REQUEST: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictKind {
    Approve,
    Changes,
}

/// What a reviewer writes to `$GROVE_VERDICT` (schema version 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    #[serde(default = "one")]
    pub version: u32,
    pub verdict: VerdictKind,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub criteria: Vec<CriterionVerdict>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub severity: Option<String>,
    pub text: String,
}

impl Finding {
    /// Where it is: `layer:path:line`, with what is known of it.
    pub fn place(&self) -> String {
        [
            self.layer.clone(),
            self.path.clone(),
            self.line.map(|l| l.to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(":")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriterionVerdict {
    pub text: String,
    pub met: bool,
    #[serde(default)]
    pub evidence: Option<String>,
}

/// How a gate run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Checks green, and the reviewer (if any) approved.
    Approved,
    /// The reviewer asked for changes.
    Changes,
    /// A check failed.
    ChecksFailed,
    /// The reviewer wrote no verdict (it failed, or timed out).
    NoVerdict,
    /// The reviewer wrote a verdict that is not valid JSON of the schema.
    Malformed,
    /// The gate's process died before it finished.
    Interrupted,
}

impl Outcome {
    /// Something the agent can fix (as opposed to a reviewer that failed).
    fn fixable(self) -> bool {
        matches!(self, Outcome::Changes | Outcome::ChecksFailed)
    }

    /// The reviewer gave no usable word: the human's to look into, never the agent's.
    pub fn reviewer_failed(self) -> bool {
        matches!(self, Outcome::NoVerdict | Outcome::Malformed)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub layer: String,
    pub passed: bool,
    pub duration_ms: i64,
    pub log: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewerOutcome {
    /// How its process ended (`exit 0`, `killed by SIGKILL`, `timed out after 1800 s`).
    pub ended: String,
    pub duration_ms: i64,
    pub verdict: Option<Verdict>,
    /// Why there is no usable verdict.
    pub error: Option<String>,
}

/// One gate run, as stored and shown by `review --json` (`gate.result`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateResult {
    pub version: u32,
    pub outcome: Outcome,
    /// The commit of each layer's branch the gate judged.
    pub commits: BTreeMap<String, String>,
    pub checks: Vec<CheckOutcome>,
    pub reviewer: Option<ReviewerOutcome>,
    /// The auto-fix round this run sent back to the agent, if it sent one.
    pub auto_fix_round: Option<u32>,
    pub finished_at: i64,
    pub error: Option<String>,
    /// What the work looked like when judged (commits, uncommitted changes), to tell whether
    /// it changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A digest of the env's work (each layer's HEAD, status and uncommitted diff) and of what the
/// gate runs on it (the `check`s, the reviewer). Compared only with digests this grove made,
/// so the hasher need not be stable across builds.
fn fingerprint(ctx: &Ctx, instances: &[Instance]) -> Option<String> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let review = &ctx.ws.config.review;
    (&review.command, &review.prompt, review.timeout_secs).hash(&mut h);
    for i in instances {
        if let Some(l) = ctx.ws.config.layers.get(&i.layer) {
            (&l.name, &l.check).hash(&mut h);
        }
    }
    for i in instances {
        let git = || crate::git::git(&i.worktree);
        let head = git().args(["rev-parse", "HEAD"]).run().ok()?.stdout;
        let status = git()
            .args(["status", "--porcelain=v2", "-z", "--untracked-files=all"])
            .run()
            .ok()?
            .stdout;
        let diff = git()
            .args(["diff", "HEAD", "--no-color", "--no-ext-diff", "--binary"])
            .run()
            .ok()?
            .stdout;
        (&i.layer, head, status, diff).hash(&mut h);
        // An untracked file's content is in no diff: its size and time stand for it.
        for path in git()
            .args(["ls-files", "--others", "--exclude-standard", "-z"])
            .run()
            .ok()?
            .stdout
            .split('\0')
            .filter(|p| !p.is_empty())
        {
            let m = std::fs::metadata(i.worktree.join(path)).ok();
            (
                path,
                m.as_ref().map(std::fs::Metadata::len),
                m.and_then(|m| m.modified().ok()),
            )
                .hash(&mut h);
        }
    }
    Some(format!("{:016x}", h.finish()))
}

impl GateResult {
    fn interrupted(why: &str) -> Self {
        GateResult {
            version: VERDICT_VERSION,
            outcome: Outcome::Interrupted,
            commits: BTreeMap::new(),
            checks: Vec::new(),
            reviewer: None,
            auto_fix_round: None,
            finished_at: crate::agent::now_ms(),
            error: Some(why.to_string()),
            fingerprint: None,
        }
    }

    /// The layers whose `check` failed.
    pub fn failed_checks(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.layer.as_str())
            .collect()
    }

    /// One line: what the gate found.
    pub fn summary(&self) -> String {
        let failed = self.failed_checks();
        let reviewer_error = self.reviewer.as_ref().and_then(|r| r.error.as_ref());
        if self.outcome.reviewer_failed()
            && let Some(e) = reviewer_error
        {
            // The reviewer's error says what went wrong itself; a failed check is news too.
            return if failed.is_empty() {
                e.clone()
            } else {
                format!("check failed in {}; {e}", failed.join(", "))
            };
        }
        let mut s = match self.outcome {
            Outcome::Approved => "approved".to_string(),
            Outcome::Changes => "changes requested".to_string(),
            Outcome::ChecksFailed => format!("check failed in {}", failed.join(", ")),
            Outcome::NoVerdict => "the reviewer wrote no verdict".to_string(),
            Outcome::Malformed => "the reviewer's verdict is malformed".to_string(),
            Outcome::Interrupted => "interrupted".to_string(),
        };
        if let Some(v) = self.reviewer.as_ref().and_then(|r| r.verdict.as_ref())
            && !v.summary.is_empty()
        {
            let _ = write!(s, ": {}", v.summary.lines().next().unwrap_or(""));
        } else if let Some(e) = reviewer_error.or(self.error.as_ref()) {
            let _ = write!(s, ": {e}");
        }
        s
    }
}

/// Whether the workspace gives the env a gate: a dedicated layer with `check`, or a reviewer.
pub fn configured(ctx: &Ctx, instances: &[Instance]) -> bool {
    ctx.ws.config.review.command.is_some() || !checked_layers(ctx, instances).is_empty()
}

/// The env's dedicated layers that have `check` commands.
pub fn checked_layers<'a>(ctx: &Ctx, instances: &'a [Instance]) -> Vec<&'a Instance> {
    instances
        .iter()
        .filter(|i| {
            ctx.ws
                .config
                .layers
                .get(&i.layer)
                .is_some_and(|l| !l.check.is_empty())
        })
        .collect()
}

/// Asks for a gate run and, unless one runs already (it will go again), starts one, detached.
/// What an agent's hook calls: it returns at once.
pub fn request_in_background(ctx: &mut Ctx, env: &EnvRow) -> Result<()> {
    let row = ctx.store.request_gate(env.key)?;
    failpoint::hit("gate:after-request");
    if row.owner.is_some_and(|o| o.alive()) {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the grove binary")?;
    let log = provision::open_log(&log_path(ctx, env))?;
    let mut cmd = Cmd::new(exe);
    for (k, _) in std::env::vars() {
        if crate::agent::is_agent_session_var(&k) {
            cmd = cmd.env_remove(&k);
        }
    }
    let mut child = cmd
        .arg("--workspace")
        .arg(&ctx.ws.root)
        .args(["gate", &env.name, "--background"])
        .cwd(&ctx.ws.root)
        .env(
            crate::proc::TOKEN_VAR,
            Tag::new(&env.token, Role::Gate).render(),
        )
        .spawn_logged(&log)?;
    // The hook runs in the agent's session, which is swept when the agent ends (a headless
    // one often ends right after its last hook): return once the gate has a session of its
    // own (or has ended), so that it never dies in that sweep.
    let ours = crate::proc::session_of(std::process::id());
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline
        && matches!(child.try_wait(), Ok(None))
        && crate::proc::session_of(child.id()) == ours
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

pub fn log_path(ctx: &Ctx, env: &EnvRow) -> PathBuf {
    ctx.log_dir(&env.name).join("gate.log")
}

/// Runs the gate of `env` in this process (by hand, or as the detached gate), again while
/// requests came in during a run. Returns the last result.
///
/// With `again_if_unchanged` false (the gate an agent's stop started), a run finds the work
/// exactly as the last finished run judged it (same commits, same uncommitted changes) keeps
/// that result instead of running the checks and the reviewer again: an agent ends a turn
/// each time it asks the human something, and a reviewer costs time and tokens.
pub fn run(ctx: &mut Ctx, env: &EnvRow, again_if_unchanged: bool) -> Result<GateResult> {
    let instances = ctx.store.instances(env.key)?;
    if !configured(ctx, &instances) {
        return Err(Fail::new(format!("env `{}` has nothing to gate on", env.name))
            .hint("add `check = [\"npm test\"]` to a code layer, or a reviewer: `[review] command = \"claude -p\"`")
            .into());
    }
    let current = ctx.store.gate(env.key)?;
    let from = match &current {
        Some(g) if g.phase == "running" && g.owner.is_some_and(|o| o.alive()) => {
            let pid = g.owner.map_or(0, |o| o.pid);
            return Err(Fail::new(format!(
                "the gate of `{}` is already running (pid {pid})",
                env.name
            ))
            .hint(format!(
                "follow it with `grove logs {} gate -f`",
                crate::shq(&env.name)
            ))
            .into());
        }
        Some(g) => g.owner,
        None => None,
    };
    if !ctx.store.claim_gate(env.key, from, ctx.me)? {
        return Err(Fail::new(format!(
            "another gate of `{}` started at the same moment",
            env.name
        ))
        .into());
    }
    failpoint::hit("gate:after-claim");
    let mut log = logfile::LogWriter::open(&log_path(ctx, env))?;
    loop {
        let last = ctx.store.gate(env.key)?;
        let rounds = last.as_ref().map_or(0, |g| g.rounds);
        let print = fingerprint(ctx, &instances);
        let previous: Option<GateResult> = last
            .and_then(|g| g.result)
            .and_then(|r| serde_json::from_str(&r).ok());
        if !again_if_unchanged
            && let Some(mut prev) = previous.filter(|p| {
                // Only a judgement of the work stands: not a reviewer that failed or timed out.
                matches!(
                    p.outcome,
                    Outcome::Approved | Outcome::Changes | Outcome::ChecksFailed
                ) && p.fingerprint.is_some()
                    && p.fingerprint == print
            })
        {
            log.line(&format!(
                "[grove] gate: {} (nothing changed since the last run: its result stands)",
                prev.summary()
            ));
            prev.auto_fix_round = None;
            let again =
                ctx.store
                    .finish_gate(env.key, ctx.me, &serde_json::to_string(&prev)?, rounds)?;
            if !again {
                return Ok(prev);
            }
            continue;
        }
        log.line(&format!("[grove] gate of `{}` starts", env.name));
        let (mut result, rounds) = match run_once(ctx, env, &instances, &mut log) {
            // Stopped halfway (Ctrl-C, `down`): what it found is no verdict on the work.
            _ if crate::interrupt::received().is_some() => (
                GateResult::interrupted("stopped before it finished"),
                rounds,
            ),
            Ok(mut r) => {
                let (rounds, sent) = auto_fix(ctx, env, &r, rounds, &mut log);
                r.auto_fix_round = sent;
                (r, rounds)
            }
            // The gate itself failed (git, the store, a check that could not start): no
            // reviewer is to blame, and nothing of it is the agent's.
            Err(e) => (
                GateResult::interrupted(&format!("the gate could not finish: {e:#}")),
                rounds,
            ),
        };
        result.finished_at = crate::agent::now_ms();
        result.fingerprint = print;
        log.line(&format!("[grove] gate: {}", result.summary()));
        let again =
            ctx.store
                .finish_gate(env.key, ctx.me, &serde_json::to_string(&result)?, rounds)?;
        if !again || crate::interrupt::received().is_some() {
            return Ok(result);
        }
        log.line("[grove] the agent stopped again meanwhile: the gate goes again");
    }
}

/// Sends what the gate found back to the agent when `auto_fix` allows another round.
/// Returns the rounds used for the ticket, and the round sent now if one was.
fn auto_fix(
    ctx: &mut Ctx,
    env: &EnvRow,
    r: &GateResult,
    rounds: u32,
    log: &mut logfile::LogWriter,
) -> (u32, Option<u32>) {
    let max = ctx.ws.config.review.auto_fix;
    // A reviewer that failed does not make the failing checks any less the agent's to fix.
    let checks_only = r.outcome.reviewer_failed() && !r.failed_checks().is_empty();
    if !(r.outcome.fixable() || checks_only) || rounds >= max {
        return (rounds, None);
    }
    let round = rounds + 1;
    let text = fix_message(r, round, max);
    match crate::feedback::send(ctx, env, "gate", &text) {
        Ok(d) => {
            let note = if checks_only {
                ": the failing checks only; the reviewer's failure is for the human"
            } else {
                ""
            };
            log.line(&format!(
                "[grove] auto-fix round {round} of {max} sent to the agent ({}){note}",
                d.describe()
            ));
            (round, Some(round))
        }
        Err(e) => {
            log.line(&format!("[grove] could not send the auto-fix round: {e:#}"));
            (rounds, None)
        }
    }
}

/// What the agent is told when the gate sends its findings back.
fn fix_message(r: &GateResult, round: u32, max: u32) -> String {
    let mut s = format!(
        "grove's review gate found problems (automatic round {round} of {max}). Fix them, then stop: the gate runs again.\n"
    );
    for c in r.checks.iter().filter(|c| !c.passed) {
        let _ = writeln!(
            s,
            "\nThe `check` of layer `{}` failed. The end of its log ({}):\n",
            c.layer, c.log
        );
        for line in logfile::tail(Path::new(&c.log), 30) {
            let _ = writeln!(s, "    {}", logfile::split(&line).1);
        }
    }
    if let Some(v) = r.reviewer.as_ref().and_then(|x| x.verdict.as_ref())
        && v.verdict == VerdictKind::Changes
    {
        let _ = writeln!(s, "\nThe reviewer asks for changes: {}", v.summary);
        for f in &v.findings {
            let place = f.place();
            let sev = f.severity.as_deref().unwrap_or("finding");
            let _ = writeln!(s, "- [{sev}] {place} {}", f.text);
        }
        for c in v.criteria.iter().filter(|c| !c.met) {
            let ev = c.evidence.as_deref().unwrap_or("");
            let _ = writeln!(s, "- criterion not met: {} {ev}", c.text);
        }
    }
    s
}

fn run_once(
    ctx: &mut Ctx,
    env: &EnvRow,
    instances: &[Instance],
    log: &mut logfile::LogWriter,
) -> Result<GateResult> {
    let mut commits = BTreeMap::new();
    for i in instances {
        if let Some(tip) = Repo::new(&i.repo).branch_tip(&i.branch)? {
            commits.insert(i.layer.clone(), tip);
        }
    }
    let checks = if checked_layers(ctx, instances).is_empty() {
        Vec::new()
    } else {
        log.line("[grove] running the checks");
        run_checks(ctx, env, Role::Gate)?
    };
    for c in &checks {
        log.line(&format!(
            "[grove] check {}: {} in {:.1}s ({})",
            c.layer,
            if c.passed { "passed" } else { "FAILED" },
            c.duration_ms as f64 / 1000.0,
            c.log
        ));
    }
    failpoint::hit("gate:after-checks");
    let checks_ok = checks.iter().all(|c| c.passed);
    let reviewer = match ctx.ws.config.review.command.clone() {
        // A reviewer that cannot even start (its diffs cannot be written, say) is a reviewer
        // that failed, recorded with the checks it came after: those stay the agent's.
        Some(command) => Some(
            match run_reviewer(ctx, env, instances, &command, &checks, log) {
                Ok(r) => r,
                Err(e) if crate::interrupt::received().is_some() => return Err(e),
                Err(e) => (
                    ReviewerOutcome {
                        ended: "not started".into(),
                        duration_ms: 0,
                        verdict: None,
                        error: Some(format!("the reviewer could not run: {e:#}")),
                    },
                    Some(Outcome::NoVerdict),
                ),
            },
        ),
        None => None,
    };
    let outcome = match &reviewer {
        None if checks_ok => Outcome::Approved,
        None => Outcome::ChecksFailed,
        Some((r, failure)) => match &r.verdict {
            Some(v) if v.verdict == VerdictKind::Changes => Outcome::Changes,
            Some(_) if !checks_ok => Outcome::ChecksFailed,
            Some(_) => Outcome::Approved,
            None => failure.unwrap_or(Outcome::NoVerdict),
        },
    };
    let reviewer = reviewer.map(|(r, _)| r);
    Ok(GateResult {
        version: VERDICT_VERSION,
        outcome,
        commits,
        checks,
        reviewer,
        auto_fix_round: None,
        finished_at: 0,
        error: None,
        fingerprint: None,
    })
}

/// Runs every dedicated layer's `check` commands in the env, layers in parallel, and records
/// each result (what `grove check` and the gate share). The processes carry `role`.
pub fn run_checks(ctx: &mut Ctx, env: &EnvRow, role: Role) -> Result<Vec<CheckOutcome>> {
    let instances = ctx.store.instances(env.key)?;
    let view = ctx.view(env, &instances);
    let jobs: Vec<_> = checked_layers(ctx, &instances)
        .into_iter()
        .map(|i| {
            let cfg = &ctx.ws.config.layers[&i.layer];
            let vars = view.vars(cfg)?;
            let tip = Repo::new(&i.repo)
                .branch_tip(&i.branch)?
                .unwrap_or_default();
            let log = ctx
                .log_dir(&env.name)
                .join(format!("check-{}.log", i.layer));
            Ok((i, cfg.check.clone(), vars, tip, log))
        })
        .collect::<Result<_>>()?;
    let me = ctx.me;
    let results = crate::review::par_map(&jobs, |(inst, cmds, vars, _, log)| {
        let t0 = Instant::now();
        let _ = std::fs::remove_file(log);
        let mut tag = Tag::new(&env.token, role).layer(&inst.layer);
        if role == Role::Exec {
            tag = tag.owned_by(me);
        }
        let ok = cmds
            .iter()
            .all(|c| provision::run_step("check", c, &inst.worktree, vars, log, &tag).is_ok());
        (ok, t0.elapsed())
    });
    let mut out = Vec::new();
    for ((inst, _, _, tip, log), (ok, took)) in jobs.iter().zip(results) {
        let duration_ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        let row = CheckRow {
            passed: ok,
            commit: tip.clone(),
            duration_ms,
            log: log.to_string_lossy().into_owned(),
            finished_at: crate::agent::now_ms() / 1000,
        };
        ctx.store.put_check(env.key, &inst.layer, &row)?;
        out.push(CheckOutcome {
            layer: inst.layer.clone(),
            passed: ok,
            duration_ms,
            log: row.log,
        });
    }
    Ok(out)
}

/// Writes the reviewer's inputs into the env's gate folder, runs it there, reads its verdict.
/// With no usable verdict, also says which failure it was (`NoVerdict` or `Malformed`).
fn run_reviewer(
    ctx: &mut Ctx,
    env: &EnvRow,
    instances: &[Instance],
    command: &str,
    checks: &[CheckOutcome],
    log: &mut logfile::LogWriter,
) -> Result<(ReviewerOutcome, Option<Outcome>)> {
    let env_dir = ctx.ws.env_dir(&env.name);
    let dir = private_dir(ctx, env)?;
    let verdict_path = dir.join("verdict.json");
    // A verdict left by an earlier run must never pass for this one's.
    match std::fs::remove_file(&verdict_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(format!("removing {}", verdict_path.display()));
        }
        _ => {}
    }
    let mut diff_files = Vec::new();
    for i in instances {
        let path = dir.join(format!("{}.diff", i.layer));
        provision::write_atomic(&path, layer_diff(i)?.as_bytes())?;
        diff_files.push(path.to_string_lossy().into_owned());
    }
    let checks_path = dir.join("checks.md");
    let mut checks_text = String::new();
    if checks.is_empty() {
        checks_text.push_str("No layer of this env has `check` commands.\n");
    }
    for c in checks {
        let _ = writeln!(
            checks_text,
            "## {}: {} ({:.1} s)\n\nlog: {}\n\n```",
            c.layer,
            if c.passed { "passed" } else { "FAILED" },
            c.duration_ms as f64 / 1000.0,
            c.log
        );
        for line in logfile::tail(Path::new(&c.log), 40) {
            let _ = writeln!(checks_text, "{}", logfile::split(&line).1);
        }
        checks_text.push_str("```\n\n");
    }
    provision::write_atomic(&checks_path, checks_text.as_bytes())?;

    let ticket = ctx.store.ticket(env.key)?;
    let ticket_path = ticket.as_ref().and_then(|t| t.0.clone());
    let ticket_text = ticket_path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let crit: Vec<criteria::Criterion> = ticket
        .as_ref()
        .and_then(|t| serde_json::from_str(&t.2).ok())
        .unwrap_or_default();
    let solution = ctx
        .ws
        .config
        .agent
        .as_ref()
        .and_then(|a| a.solution.as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let review = ctx.ws.config.review.clone();
    let c = minijinja::context! {
        env => &env.name,
        ticket => ticket_path.clone().unwrap_or_else(|| "(no ticket)".into()),
        ticket_text => ticket_text,
        solution => solution,
        criteria => criteria::render(&crit),
        diffs => diff_files.join(", "),
        diff_files => &diff_files,
        checks => checks_path.to_string_lossy(),
        verdict => verdict_path.to_string_lossy(),
        layers => instances.iter().map(|i| i.layer.clone()).collect::<Vec<_>>(),
    };
    let prompt =
        crate::template::render_in(crate::template::Place::ReviewPrompt, &review.prompt, &c)
            .map_err(|e| Fail::new(format!("cannot render `[review] prompt`: {e}")))?;
    let prompt_path = dir.join("prompt.md");
    provision::write_atomic(&prompt_path, prompt.as_bytes())?;

    let primary =
        crate::agent::primary(ctx, instances).context("the env has no dedicated layer")?;
    let view = ctx.view(env, instances);
    let mut vars = view.vars(&ctx.ws.config.layers[&primary.layer])?;
    for (k, v) in [
        ("GROVE_VERDICT", verdict_path.to_string_lossy().into_owned()),
        ("GROVE_GATE_DIR", dir.to_string_lossy().into_owned()),
        (
            "GROVE_PROMPT_FILE",
            prompt_path.to_string_lossy().into_owned(),
        ),
        ("GROVE_CHECKS", checks_path.to_string_lossy().into_owned()),
    ] {
        vars.push((k.into(), v));
    }
    if let Some(p) = &ticket_path {
        vars.push(("GROVE_TICKET".into(), p.clone()));
    }
    let script = crate::agent::prompt_script(
        command,
        review.prompt_via.unwrap_or(PromptVia::Arg),
        "GROVE_PROMPT_FILE",
    );
    log.line(&format!(
        "[grove] reviewer: {command}    ({})",
        env_dir.display()
    ));
    let tag = Tag::new(&env.token, Role::Gate);
    let t0 = Instant::now();
    let ended = provision::run_logged(
        &script,
        &env_dir,
        &vars,
        &log_path(ctx, env),
        &tag,
        "gate:during-review",
        Some(Duration::from_secs(review.timeout_secs)),
    )?;
    let duration_ms = i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX);
    let ended = match ended {
        Some(status) => crate::exec::describe_status(status),
        None => format!("timed out after {} s", review.timeout_secs),
    };
    // Each error is a whole sentence: `summary` shows it as it is.
    let (verdict, failure) = match std::fs::read_to_string(&verdict_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            None,
            Some((
                Outcome::NoVerdict,
                format!("the reviewer left no verdict at $GROVE_VERDICT (it ended: {ended})"),
            )),
        ),
        Err(e) => (
            None,
            Some((
                Outcome::NoVerdict,
                format!("cannot read the reviewer's verdict: {e}"),
            )),
        ),
        Ok(text) => match parse_verdict(&text) {
            Ok(v) => (Some(v), None),
            Err(e) => (
                None,
                Some((
                    Outcome::Malformed,
                    format!("the reviewer's verdict is malformed: {e}"),
                )),
            ),
        },
    };
    let (failure, error) = failure.unzip();
    Ok((
        ReviewerOutcome {
            ended,
            duration_ms,
            verdict,
            error,
        },
        failure,
    ))
}

/// grove's own folder in the env folder (the reviewer's inputs and verdict, the messages a
/// relaunched agent acts on), made when missing; never a link to elsewhere.
pub fn private_dir(ctx: &Ctx, env: &EnvRow) -> Result<PathBuf> {
    let dir = ctx.ws.env_dir(&env.name).join(GATE_DIR);
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
        return Err(Fail::new(format!("{} is not a folder", dir.display()))
            .hint("grove keeps the gate's files there; remove what is in its place")
            .into());
    }
    fs_err::create_dir_all(&dir)?;
    Ok(dir)
}

/// Reads a verdict: JSON of the schema, of a version this grove knows.
pub fn parse_verdict(text: &str) -> Result<Verdict, String> {
    let v: Verdict = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if v.version != VERDICT_VERSION {
        return Err(format!(
            "version {} (this grove reads version {VERDICT_VERSION})",
            v.version
        ));
    }
    Ok(v)
}

/// The layer's changes against its base as a patch: commits since the merge base, the
/// uncommitted changes, and untracked files (an agent does not always commit).
fn layer_diff(i: &Instance) -> Result<String> {
    let repo = Repo::new(&i.repo);
    let base = i.current_base(&repo);
    let wt = || crate::git::git(&i.worktree);
    let mb = wt()
        .args(["merge-base", &base, "HEAD"])
        .run()
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or(base);
    let prefix = [
        format!("--src-prefix=a/{}/", i.layer),
        format!("--dst-prefix=b/{}/", i.layer),
    ];
    let mut out = wt()
        .args(["diff", "--no-color", "--no-ext-diff"])
        .args(&prefix)
        .arg(&mb)
        .arg("--")
        .run()?
        .stdout;
    let untracked = wt()
        .args(["ls-files", "--others", "--exclude-standard", "-z"])
        .run()?
        .stdout;
    for path in untracked.split('\0').filter(|p| !p.is_empty()).take(200) {
        // `git diff --no-index` exits 1 when the files differ, which they do.
        let d = wt()
            .args(["diff", "--no-color", "--no-index"])
            .args(&prefix)
            .args(["--", "/dev/null", path])
            .output()?;
        out.push_str(&d.stdout);
    }
    Ok(out)
}

/// Closes gates whose process died (`interrupted`), stopping what they left running, and
/// requests nobody picked up. Called by the commands that change state, and `doctor --fix`.
pub fn recover(ctx: &mut Ctx) -> Result<Vec<String>> {
    let mut closed = Vec::new();
    for (key, g) in ctx.store.open_gates(ctx.ws_id)? {
        let dead = match (g.phase.as_str(), g.owner) {
            ("running", Some(o)) => !o.alive(),
            ("requested", None) => {
                crate::agent::now_ms() - g.requested_at > LOST_REQUEST.as_millis() as i64
            }
            _ => false,
        };
        if !dead {
            continue;
        }
        let Some(env) = ctx.store.env_by_key(key)? else {
            continue;
        };
        let left: Vec<ProcId> = crate::sweep::find(&env.token, crate::sweep::Scope::All)
            .into_iter()
            .filter(|(_, t)| t.role == Role::Gate)
            .map(|(p, _)| p)
            .collect();
        crate::proc::stop_all(&left, Duration::from_secs(2));
        let why = match g.owner {
            Some(o) => format!("the gate's process (pid {}) died before it finished", o.pid),
            None => "the gate was asked for but never started".to_string(),
        };
        let result = serde_json::to_string(&GateResult::interrupted(&why))?;
        if ctx.store.abandon_gate(key, g.owner, &result)? {
            ui::warn(format!(
                "the gate of `{}` did not finish ({why}); run it again with `grove gate {}`",
                env.name,
                crate::shq(&env.name)
            ));
            closed.push(env.name);
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_strictly() {
        let v = parse_verdict(
            r#"{"verdict": "changes", "summary": "s", "findings": [{"layer": "api", "path": "a.py", "line": 3, "severity": "error", "text": "t"}], "criteria": [{"text": "c", "met": false}]}"#,
        )
        .unwrap();
        assert_eq!(v.verdict, VerdictKind::Changes);
        assert_eq!(v.findings[0].line, Some(3));
        assert!(parse_verdict(r#"{"verdict": "approve"}"#).is_ok());
        for bad in [
            "",
            "approve",
            r#"{"verdict": "yes"}"#,
            r#"{"summary": "no verdict"}"#,
            r#"{"verdict": "approve", "version": 2}"#,
            r#"{"verdict": "approve", "extra": 1}"#,
            r#"{"verdict": "approve", "findings": [{"path": "no text"}]}"#,
        ] {
            assert!(parse_verdict(bad).is_err(), "{bad}");
        }
    }
}
