//! What each env changed, and which envs will collide: read-only git queries, run in parallel
//! across every worktree (bounded), with no network.
//!
//! Per repository, one `for-each-ref` gives every branch tip; per layer, `rev-list
//! --left-right --count` (ahead/behind the base as it is now), `diff --numstat` (since the merge
//! base), `status --porcelain=v2` (uncommitted work) and, when the base moved on and changed a
//! file the branch changed too, a `merge-tree --write-tree` against the base tip. Between envs, `merge-tree` runs only for pairs
//! that touched a same file: without a shared file, a merge cannot conflict.
//!
//! Answers computed from commit ids alone, and the flags of each index, are remembered between
//! runs ([`crate::review_cache`]); `git status` runs every time, with git's untracked cache
//! (read, never written: see [`crate::git::git`]).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::git::{self, Repo, parse::FileStat};
use crate::report;
use crate::review_cache::{self, ReviewCache};
use crate::state::{CheckRow, EnvRow};

/// 2: the queue's classes changed (`urgency` 0 to 6, with `state` and `next`), and each env
/// has its `gate`, `criteria` and `feedback_queued`.
pub const JSON_VERSION: u32 = 2;
/// Git processes at once: more than the cores, as each spends much of its life starting up and
/// waiting on the disk.
const PARALLEL: usize = 8;

#[derive(Debug, Serialize)]
pub struct Review {
    pub version: u32,
    /// Whether conflicts were predicted (git ≥ 2.38 has `merge-tree --write-tree`).
    pub merge_tree: bool,
    pub envs: Vec<EnvReview>,
    pub conflicts: Vec<Conflict>,
}

#[derive(Debug, Serialize)]
pub struct EnvReview {
    pub name: String,
    /// The queue's order: 0 `waiting` (the agent waits for the human), 1 `approved` (gate
    /// green: look, then land), 2 `changes` (the gate asks for changes, auto-fix rounds used
    /// up), 3 `review` (commits nobody judged yet), 4 `failed` (servers), 5 `running` (agent
    /// or gate at work), 6 `idle`.
    pub urgency: u8,
    /// The class of `urgency`, as a word.
    pub state: &'static str,
    pub reason: String,
    /// What the human does next.
    pub next: String,
    pub status: &'static str,
    pub agent: Option<String>,
    pub agent_since: Option<i64>,
    /// Every layer's commits have been reviewed (or there are none).
    pub reviewed: bool,
    pub gate: Option<GateReport>,
    pub criteria: Option<CriteriaReport>,
    /// Messages for the agent not delivered yet.
    pub feedback_queued: usize,
    pub layers: Vec<LayerReview>,
    #[serde(skip)]
    pub urls: Vec<(String, Option<String>)>,
}

#[derive(Debug, Serialize)]
pub struct GateReport {
    /// `requested`, `running`, `finished`, or `interrupted` (its process died; the next command
    /// that changes state records it).
    pub phase: String,
    /// Auto-fix rounds sent for the ticket, of `auto_fix`.
    pub rounds: u32,
    pub auto_fix: u32,
    /// A branch moved on since the gate judged it.
    pub stale: bool,
    pub result: Option<crate::gate::GateResult>,
}

#[derive(Debug, Serialize)]
pub struct CriteriaReport {
    pub total: usize,
    /// Met according to the gate's reviewer; `null` when no verdict judged them.
    pub met: Option<usize>,
    pub items: Vec<CriterionReport>,
}

#[derive(Debug, Serialize)]
pub struct CriterionReport {
    pub text: String,
    /// Ticked in the ticket.
    pub checked: bool,
    pub met: Option<bool>,
    pub evidence: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LayerReview {
    pub layer: String,
    pub branch: String,
    pub base: String,
    pub base_tip: Option<String>,
    pub tip: Option<String>,
    pub ahead: u32,
    pub behind: u32,
    pub files: Vec<FileStat>,
    pub insertions: u32,
    pub deletions: u32,
    /// Uncommitted changes and untracked files.
    pub uncommitted: Vec<String>,
    pub last_commit_time: Option<i64>,
    pub last_commit_subject: Option<String>,
    pub reviewed_commit: Option<String>,
    pub check: Option<CheckReport>,
    /// Files that would conflict when merging the branch into the base as it is now; `null`
    /// when not predicted (old git).
    pub conflicts_with_base: Option<Vec<String>>,
    pub error: Option<String>,
    #[serde(skip)]
    pub repo: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub passed: bool,
    /// The branch moved on since the check ran.
    pub stale: bool,
    pub duration_ms: i64,
    pub log: String,
    pub finished_at: i64,
}

#[derive(Debug, Serialize)]
pub struct Conflict {
    pub envs: [String; 2],
    pub layer: String,
    /// Files both changed since their merge base with the base.
    pub overlap: Vec<String>,
    /// Files a merge of the two would leave in conflict; `null` when not predicted.
    pub conflict: Option<Vec<String>>,
}

/// Runs `f` over `items` on up to [`PARALLEL`] threads, keeping the order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(items.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    out.lock().expect("no worker panics while holding the lock")[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .expect("workers are done")
        .into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

struct Job<'a> {
    env: usize,
    layer: &'a crate::state::Instance,
    reviewed: Option<String>,
    check: Option<CheckRow>,
}

/// Gathers the review of every env of the workspace.
pub fn gather(ctx: &Ctx, fetch: bool) -> Result<Review> {
    let version = git::version_text();
    let merge_tree = git::predicts_merges(version.as_deref());
    let mut cache = ReviewCache::load(&ctx.home, &ctx.ws.key());
    let env_rows: Vec<EnvRow> = ctx.store.envs(ctx.ws_id)?;
    let instances: Vec<Vec<crate::state::Instance>> = env_rows
        .iter()
        .map(|e| ctx.store.instances(e.key))
        .collect::<Result<_>>()?;
    let mut repos: Vec<PathBuf> = instances.iter().flatten().map(|i| i.repo.clone()).collect();
    repos.sort();
    repos.dedup();
    if fetch {
        let fetched = par_map(&repos, |r| {
            Repo::new(r).cmd().args(["fetch", "--all", "--quiet"]).run()
        });
        for (r, res) in repos.iter().zip(fetched) {
            if let Err(e) = res {
                crate::ui::warn(format!(
                    "could not fetch in {}: {}",
                    r.display(),
                    e.stderr()
                ));
            }
        }
    }
    let per_repo = par_map(&repos, |r| {
        let config = review_cache::repo_config(r, version.as_deref());
        (Repo::new(r).branch_tips(), config)
    });
    let mut tips: HashMap<PathBuf, HashMap<String, git::parse::Tip>> = HashMap::new();
    let mut untracked_cache: HashMap<PathBuf, bool> = HashMap::new();
    for (r, (t, config)) in repos.iter().zip(per_repo) {
        tips.insert(r.clone(), t?);
        cache.set_salt(r, config.salt);
        untracked_cache.insert(r.clone(), config.untracked_cache);
    }

    let mut jobs = Vec::new();
    let mut envs = Vec::new();
    for (k, env) in env_rows.iter().enumerate() {
        let reviews = ctx.store.reviews(env.key)?;
        let checks = ctx.store.checks(env.key)?;
        for inst in &instances[k] {
            jobs.push(Job {
                env: k,
                layer: inst,
                reviewed: reviews.get(&inst.layer).cloned(),
                check: checks.get(&inst.layer).cloned(),
            });
        }
        let rep = report::env_report(ctx, env, &instances[k])?;
        let gate = ctx.store.gate(env.key)?.map(|g| GateReport {
            // A run whose process died is over, whatever its row says until the next command
            // that changes state closes it.
            phase: match (g.phase.as_str(), g.owner) {
                ("running", Some(o)) if !o.alive() => "interrupted".to_string(),
                ("requested", None) if crate::agent::now_ms() - g.requested_at > 60_000 => {
                    "interrupted".to_string()
                }
                _ => g.phase,
            },
            rounds: g.rounds,
            auto_fix: ctx.ws.config.review.auto_fix,
            stale: false,
            result: g
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
        });
        let criteria = criteria_report(ctx, env, gate.as_ref())?;
        envs.push(EnvReview {
            name: env.name.clone(),
            urgency: 6,
            state: "idle",
            reason: String::new(),
            next: String::new(),
            status: rep.status,
            agent: rep.agent.as_ref().map(|a| a.state.clone()),
            agent_since: rep.agent.as_ref().and_then(|a| a.since),
            reviewed: true,
            gate,
            criteria,
            feedback_queued: ctx.store.feedback(env.key, true)?.len(),
            layers: Vec::new(),
            urls: rep
                .layers
                .iter()
                .map(|l| (l.name.clone(), l.url.clone()))
                .collect(),
        });
    }
    let base_moves = base_moves(&jobs, &tips, &cache);
    // Asked before any `git status` runs: see `watch`.
    let watched = crate::watch::wanted(jobs.len())
        .then(|| crate::watch::counters(ctx))
        .flatten();
    let layers = par_map(&jobs, |j| {
        let uc = untracked_cache.get(&j.layer.repo).copied().unwrap_or(false);
        let status_key = watched
            .as_ref()
            .and_then(|c| status_key(c, j.layer, tips.get(&j.layer.repo)?, &cache));
        layer_review(j, &tips, &base_moves, merge_tree, &cache, uc, status_key)
    });
    for (job, lr) in jobs.iter().zip(layers) {
        envs[job.env].layers.push(lr);
    }
    let conflicts = radar(&envs, merge_tree, &cache);
    cache.save();
    for e in &mut envs {
        classify(e);
    }
    envs.sort_by(|a, b| {
        let last = |e: &EnvReview| e.layers.iter().filter_map(|l| l.last_commit_time).max();
        a.urgency.cmp(&b.urgency).then(last(b).cmp(&last(a)))
    });
    Ok(Review {
        version: JSON_VERSION,
        merge_tree,
        envs,
        conflicts,
    })
}

/// Where a base went since envs branched from it: `(repo, base commit at create, base tip now)`.
type BaseKey = (PathBuf, String, String);

/// For each distinct base move, the files it changed, when it only moved forward. Many envs
/// share one: computed once each, it lets a branch that touched none of those files skip its
/// merge prediction (a merge cannot conflict on files one side never changed).
fn base_moves(
    jobs: &[Job<'_>],
    tips: &HashMap<PathBuf, HashMap<String, git::parse::Tip>>,
    cache: &ReviewCache,
) -> HashMap<BaseKey, Option<BTreeSet<String>>> {
    let mut keys: Vec<BaseKey> = jobs
        .iter()
        .filter_map(|j| {
            // Only for branches grove made at the base commit: a reused branch forked elsewhere.
            let tip = local_base_tip(j.layer, tips.get(&j.layer.repo))
                .filter(|_| j.layer.branch_created)?;
            (tip.commit != j.layer.base_commit).then(|| {
                (
                    j.layer.repo.clone(),
                    j.layer.base_commit.clone(),
                    tip.commit.clone(),
                )
            })
        })
        .collect();
    keys.sort();
    keys.dedup();
    let files = par_map(&keys, |(dir, from, to)| {
        let repo = Repo::new(dir);
        let files: Option<Vec<String>> = cache
            .commits(dir, &format!("move {from} {to}"), || {
                // A base rewritten (not a descendant) gets no shortcut: its merge base is
                // unknown here.
                if !repo.is_ancestor(from, to)? {
                    return Ok(None);
                }
                let out = repo
                    .cmd()
                    .args(["diff", "--name-only", "-z", "--no-renames", from, to, "--"])
                    .run()?;
                Ok(Some(
                    out.stdout
                        .split('\0')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect(),
                ))
            })
            .ok()?;
        Some(files?.into_iter().collect())
    });
    keys.into_iter().zip(files).collect()
}

/// The key a worktree's `git status` is remembered under: the watcher's counter for it, and
/// what else `git status` reads that the watcher does not watch: the worktree's HEAD and its
/// commit, its index, the repository's config and attributes (the cache's salt), its
/// `info/exclude` and the user's excludes file, the worktree folder's identity. Submodules
/// (whose HEADs live elsewhere) get no key. The key also changes every 10 minutes: a change
/// no event tells of (a write through a memory mapping) is not hidden longer than that.
/// `None`: not watched, `git status` runs.
fn status_key(
    counters: &crate::watch::Counters,
    inst: &crate::state::Instance,
    tips: &HashMap<String, git::parse::Tip>,
    cache: &ReviewCache,
) -> Option<String> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt as _;
    let watched = counters.key(&inst.worktree)?;
    if inst.worktree.join(".gitmodules").exists() {
        return None;
    }
    let git_dir = git::git_dir_fs(&inst.worktree)?;
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    // A symbolic HEAD names a local branch: its tip is in this run's `for-each-ref`.
    let commit = match head.strip_prefix("ref: refs/heads/") {
        Some(branch) => tips.get(branch)?.commit.as_str(),
        None => head,
    };
    let index = git::index_checksum(&inst.worktree)?;
    let root = std::fs::metadata(&inst.worktree).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cache.salt(&inst.repo)?.hash(&mut h);
    git::excludes_hash(&git::common_dir_fs(&git_dir)).hash(&mut h);
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 600);
    Some(format!(
        "{watched} {head} {commit} {index} {}:{} {:016x} {epoch}",
        root.dev(),
        root.ino(),
        h.finish()
    ))
}

/// The tip of the base when it is a local branch (not the env's own), from the batch.
fn local_base_tip<'a>(
    inst: &crate::state::Instance,
    tips: Option<&'a HashMap<String, git::parse::Tip>>,
) -> Option<&'a git::parse::Tip> {
    let branch = inst.base_ref.as_deref()?.strip_prefix("refs/heads/")?;
    (branch != inst.branch).then(|| tips?.get(branch))?
}

fn layer_review(
    job: &Job<'_>,
    tips: &HashMap<PathBuf, HashMap<String, git::parse::Tip>>,
    base_moves: &HashMap<BaseKey, Option<BTreeSet<String>>>,
    merge_tree: bool,
    cache: &ReviewCache,
    untracked_cache: bool,
    status_key: Option<String>,
) -> LayerReview {
    let inst = job.layer;
    let repo = Repo::new(&inst.repo);
    let repo_tips = tips.get(&inst.repo);
    let tip = repo_tips.and_then(|t| t.get(&inst.branch));
    let mut lr = LayerReview {
        layer: inst.layer.clone(),
        branch: inst.branch.clone(),
        base: inst.base.clone(),
        base_tip: None,
        tip: tip.map(|t| t.commit.clone()),
        ahead: 0,
        behind: 0,
        files: Vec::new(),
        insertions: 0,
        deletions: 0,
        uncommitted: Vec::new(),
        last_commit_time: tip.map(|t| t.time),
        last_commit_subject: tip.map(|t| t.subject.clone()),
        reviewed_commit: job.reviewed.clone(),
        check: None,
        conflicts_with_base: None,
        error: None,
        repo: inst.repo.clone(),
    };
    if let Some(c) = &job.check {
        lr.check = Some(CheckReport {
            passed: c.passed,
            stale: lr.tip.as_deref() != Some(c.commit.as_str()),
            duration_ms: c.duration_ms,
            log: c.log.clone(),
            finished_at: c.finished_at,
        });
    }
    let Some(tip) = lr.tip.clone() else {
        lr.error = Some(format!("branch `{}` is gone", inst.branch));
        return lr;
    };
    // The base as it is now: a local branch's tip from the batch, else its ref resolved.
    let base_tip = match local_base_tip(inst, repo_tips) {
        Some(t) => t.commit.clone(),
        None => inst.current_base(&repo),
    };
    lr.base_tip = Some(base_tip.clone());
    let fill = |lr: &mut LayerReview| -> Result<()> {
        let commits = format!("{base_tip} {tip}");
        (lr.behind, lr.ahead) = cache.commits(&inst.repo, &format!("count {commits}"), || {
            repo.behind_ahead(&base_tip, &tip)
        })?;
        if lr.ahead > 0 {
            lr.files = cache.commits(&inst.repo, &format!("numstat {commits}"), || {
                repo.numstat(&base_tip, &tip)
            })?;
            lr.insertions = lr.files.iter().filter_map(|f| f.insertions).sum();
            lr.deletions = lr.files.iter().filter_map(|f| f.deletions).sum();
        }
        if inst.worktree.join(".git").exists() {
            lr.uncommitted = cache.status(&inst.worktree, status_key, || {
                Repo::dirty_paths_cached(&inst.worktree, untracked_cache, |w| cache.flagged(w))
            })?;
        } else {
            lr.error = Some(format!("worktree missing: {}", inst.worktree.display()));
        }
        let key = (
            inst.repo.clone(),
            inst.base_commit.clone(),
            base_tip.clone(),
        );
        let disjoint = match base_moves.get(&key) {
            Some(Some(base_files)) => lr.files.iter().all(|f| !base_files.contains(&f.path)),
            _ => false,
        };
        lr.conflicts_with_base = match (merge_tree, lr.ahead > 0 && lr.behind > 0 && !disjoint) {
            (false, _) => None,
            // Base not moved, nothing of our own, or no file both sides changed: no conflict.
            (true, false) => Some(Vec::new()),
            (true, true) => Some(cache.commits(&inst.repo, &format!("merge {commits}"), || {
                repo.merge_conflicts(&base_tip, &tip)
            })?),
        };
        Ok(())
    };
    if let Err(e) = fill(&mut lr) {
        lr.error = Some(format!("{e:#}"));
    }
    lr
}

/// Pairs of envs with worktrees of the same repo that touched a same file.
fn radar(envs: &[EnvReview], merge_tree: bool, cache: &ReviewCache) -> Vec<Conflict> {
    struct Pair<'a> {
        a: &'a EnvReview,
        b: &'a EnvReview,
        la: &'a LayerReview,
        lb: &'a LayerReview,
        overlap: Vec<String>,
    }
    let mut pairs = Vec::new();
    for (i, a) in envs.iter().enumerate() {
        for b in &envs[i + 1..] {
            for la in &a.layers {
                let Some(lb) = b.layers.iter().find(|l| l.repo == la.repo) else {
                    continue;
                };
                let fa: BTreeSet<&str> = la.files.iter().map(|f| f.path.as_str()).collect();
                let overlap: Vec<String> = lb
                    .files
                    .iter()
                    .filter(|f| fa.contains(f.path.as_str()))
                    .map(|f| f.path.clone())
                    .collect();
                if !overlap.is_empty() {
                    pairs.push(Pair {
                        a,
                        b,
                        la,
                        lb,
                        overlap,
                    });
                }
            }
        }
    }
    let predicted = par_map(&pairs, |p| match (merge_tree, &p.la.tip, &p.lb.tip) {
        (true, Some(ta), Some(tb)) => cache
            .commits(&p.la.repo, &format!("merge {ta} {tb}"), || {
                Repo::new(&p.la.repo).merge_conflicts(ta, tb)
            })
            .ok(),
        _ => None,
    });
    pairs
        .into_iter()
        .zip(predicted)
        .map(|(p, conflict)| Conflict {
            envs: [p.a.name.clone(), p.b.name.clone()],
            layer: p.la.layer.clone(),
            overlap: p.overlap,
            conflict,
        })
        .collect()
}

/// The ticket's criteria, with what the gate's reviewer said of each.
fn criteria_report(
    ctx: &Ctx,
    env: &EnvRow,
    gate: Option<&GateReport>,
) -> Result<Option<CriteriaReport>> {
    let ticket: Vec<crate::criteria::Criterion> = crate::agent::criteria_of(ctx, env)?;
    let judged = gate
        .and_then(|g| g.result.as_ref())
        .and_then(|r| r.reviewer.as_ref())
        .and_then(|r| r.verdict.as_ref())
        .map(|v| v.criteria.clone())
        .filter(|c| !c.is_empty());
    if ticket.is_empty() && judged.is_none() {
        return Ok(None);
    }
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let mut items: Vec<CriterionReport> = ticket
        .iter()
        .map(|c| CriterionReport {
            text: c.text.clone(),
            checked: c.checked,
            met: None,
            evidence: None,
        })
        .collect();
    if let Some(judged) = &judged {
        // Matched by text, else by position when the reviewer listed as many.
        for (k, j) in judged.iter().enumerate() {
            let slot = items
                .iter()
                .position(|i| norm(&i.text) == norm(&j.text))
                .or_else(|| (judged.len() == ticket.len()).then_some(k));
            match slot {
                Some(i) => {
                    items[i].met = Some(j.met);
                    items[i].evidence.clone_from(&j.evidence);
                }
                None => items.push(CriterionReport {
                    text: j.text.clone(),
                    checked: false,
                    met: Some(j.met),
                    evidence: j.evidence.clone(),
                }),
            }
        }
    }
    Ok(Some(CriteriaReport {
        total: items.len(),
        met: judged
            .is_some()
            .then(|| items.iter().filter(|i| i.met == Some(true)).count()),
        items,
    }))
}

/// Where an env goes in the queue, why, and what the human does next.
fn classify(e: &mut EnvReview) {
    let unreviewed: u32 = e
        .layers
        .iter()
        .filter(|l| l.ahead > 0 && l.reviewed_commit.as_ref() != l.tip.as_ref())
        .map(|l| l.ahead)
        .sum();
    e.reviewed = unreviewed == 0;
    if let Some(g) = &mut e.gate
        && let Some(r) = &g.result
    {
        g.stale = e.layers.iter().any(|l| {
            l.tip.is_some()
                && r.commits
                    .get(&l.layer)
                    .is_some_and(|c| Some(c) != l.tip.as_ref())
        });
    }
    let n = crate::shq(&e.name);
    let agent = e.agent.as_deref();
    let working = matches!(agent, Some("working" | "running"));
    let gate_busy = e.gate.as_ref().is_some_and(|g| g.phase != "finished");
    // The gate's word on the commits as they are now.
    let verdict = e
        .gate
        .as_ref()
        .filter(|g| g.phase == "finished" && !g.stale)
        .and_then(|g| g.result.as_ref().map(|r| (g, r)));
    let (urgency, state, reason, next) = if agent == Some("waiting") {
        (
            0,
            "waiting",
            "agent waiting for input".to_string(),
            format!("answer it: `grove attach {n}`"),
        )
    } else if working || gate_busy {
        let reason = match (working, gate_busy) {
            (true, _) => "agent working".to_string(),
            (false, _) => "gate running".to_string(),
        };
        (
            5,
            "running",
            reason,
            format!("wait, or follow it: `grove logs {n} gate -f`"),
        )
    } else if let Some((_, r)) = verdict
        && r.outcome == crate::gate::Outcome::Approved
        && e.layers
            .iter()
            .any(|l| l.ahead > 0 || !l.uncommitted.is_empty())
    {
        // The criteria met are counted beside the reason (`criteria`), not in it.
        (
            1,
            "approved",
            "gate approved, checks green".to_string(),
            format!("look at it (`grove review {n}`, `grove diff {n}`), then `grove land {n}`"),
        )
    } else if let Some((g, r)) = verdict
        && r.outcome != crate::gate::Outcome::Approved
    {
        let rounds = if g.rounds > 0 {
            format!(" after {} auto-fix round(s)", g.rounds)
        } else {
            String::new()
        };
        // A reviewer that failed is the human's to mend: the agent cannot answer for it.
        let next = if r.outcome.reviewer_failed() {
            let mut s = format!(
                "the reviewer failed: see why in `grove logs {n} gate`, then run it again with `grove gate {n}`"
            );
            if !r.failed_checks().is_empty() {
                s.push_str(&format!(
                    "; the failing check is the agent's: `grove feedback {n} \"…\"`"
                ));
            }
            s
        } else if r.outcome == crate::gate::Outcome::Interrupted {
            format!(
                "the gate did not finish: see why in `grove logs {n} gate`, then run it again with `grove gate {n}`"
            )
        } else {
            format!("read `grove review {n}`; answer with `grove feedback {n} \"…\"`")
        };
        (2, "changes", format!("gate: {}{rounds}", r.summary()), next)
    } else if unreviewed > 0 {
        let who = if agent == Some("done") {
            "agent done, "
        } else {
            ""
        };
        (
            3,
            "review",
            format!("{who}{unreviewed} commit(s) to review"),
            format!(
                "`grove diff {n}`, then `grove review {n} --mark-reviewed` or `grove feedback {n} \"…\"`"
            ),
        )
    } else if matches!(e.status, "failed" | "partial") {
        (
            4,
            "failed",
            format!("servers {}", e.status),
            format!("see why: `grove logs {n}`; start again: `grove up {n}`"),
        )
    } else if e.layers.iter().any(|l| l.ahead > 0) {
        (
            6,
            "idle",
            "reviewed".into(),
            format!("`grove land {n}`, or wait for more commits"),
        )
    } else {
        (6, "idle", "no commits yet".into(), String::new())
    };
    e.urgency = urgency;
    e.state = state;
    e.reason = reason;
    e.next = next;
}

#[cfg(test)]
mod tests {
    use super::par_map;

    #[test]
    fn par_map_keeps_order() {
        let items: Vec<u32> = (0..100).collect();
        assert_eq!(
            par_map(&items, |x| x * 2),
            items.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(par_map(&Vec::<u32>::new(), |x| *x).is_empty());
    }
}
