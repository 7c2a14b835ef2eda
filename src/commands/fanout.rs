//! `grove create --tickets 'tickets/*.md' --agent`: one env (and agent) per ticket, made in
//! parallel, each by its own `grove create` process, so one failure rolls back only its own env
//! and stops nothing else. Ends with a summary of what is up and what failed, and why.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

use anyhow::Result;

use crate::cli::CreateArgs;
use crate::ctx::Ctx;
use crate::error::{Exit, Fail};
use crate::exec::Cmd;
use crate::ui;

struct Job {
    env: String,
    ticket: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

struct Done {
    env: String,
    ok: bool,
    detail: String,
    secs: f64,
}

pub fn run(
    ctx: &Ctx,
    args: &CreateArgs,
    from: &[(String, String)],
    isolate: &[String],
) -> Result<()> {
    let files = expand(&args.tickets)?;
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !seen.insert(stem.clone()) {
            return Err(Fail::new(format!("two tickets would make env `{stem}`"))
                .hint("each ticket names its env by its file name: rename one")
                .into());
        }
    }
    let tmp = tempdir(&ctx.home)?;
    let jobs: Vec<Job> = files
        .iter()
        .enumerate()
        .map(|(i, f)| Job {
            env: f
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
            ticket: f.clone(),
            out: tmp.join(format!("{i}.out")),
            err: tmp.join(format!("{i}.err")),
        })
        .collect();
    let parallel = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    ui::info(format!(
        "creating {} envs, {parallel} at a time",
        jobs.len()
    ));
    let exe = std::env::current_exe()?;
    let mut running: Vec<(usize, Child, Instant)> = Vec::new();
    let mut done: Vec<Option<Done>> = (0..jobs.len()).map(|_| None).collect();
    let mut next = 0;
    while next < jobs.len() || !running.is_empty() {
        while running.len() < parallel && next < jobs.len() {
            let job = &jobs[next];
            let mut cmd = Cmd::new(&exe)
                .arg("--workspace")
                .arg(&ctx.ws.root)
                .args(["create", "--json"]);
            if args.agent {
                cmd = cmd.arg("--agent").arg("--ticket").arg(&job.ticket);
            }
            for (layer, base) in from {
                cmd = cmd.arg("--from").arg(format!("{layer}={base}"));
            }
            for layer in isolate {
                cmd = cmd.arg("--isolate").arg(layer);
            }
            if let Some(b) = &args.base {
                cmd = cmd.arg("--base").arg(b);
            }
            if args.no_start {
                cmd = cmd.arg("--no-start");
            }
            if let Some(c) = &args.docker_context {
                cmd = cmd.arg("--docker-context").arg(c);
            }
            if let Some(h) = &args.docker_host {
                cmd = cmd.arg("--docker-host").arg(h);
            }
            // After `--`: a ticket named `-x.md` is a name, not a flag.
            let cmd = cmd.arg("--").arg(&job.env);
            let out = std::fs::File::create(&job.out)?;
            let err = std::fs::File::create(&job.err)?;
            ui::info(format!("  {}  creating", job.env));
            let child = cmd.spawn_split(out, err)?;
            running.push((next, child, Instant::now()));
            next += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut still = Vec::new();
        for (i, mut child, t0) in running {
            match child.try_wait()? {
                None => still.push((i, child, t0)),
                Some(status) => {
                    let d = finish(&jobs[i], status.success(), t0.elapsed().as_secs_f64());
                    let what = if d.ok { "up" } else { "FAILED" };
                    ui::info(format!("  {}  {what} ({:.1}s)", d.env, d.secs));
                    done[i] = Some(d);
                }
            }
        }
        running = still;
    }
    let _ = fs_err::remove_dir_all(&tmp);
    let done: Vec<Done> = done.into_iter().flatten().collect();
    let mut rows = vec![vec![
        "ENV".to_string(),
        "RESULT".to_string(),
        "URLS / WHY".to_string(),
    ]];
    for d in &done {
        rows.push(vec![
            d.env.clone(),
            if d.ok { "up" } else { "failed" }.into(),
            d.detail.clone(),
        ]);
    }
    for line in ui::table(&rows) {
        ui::out(line);
    }
    let failed = done.iter().filter(|d| !d.ok).count();
    if failed > 0 {
        ui::info(format!(
            "{failed} of {} envs failed; the others are up",
            done.len()
        ));
        return Err(Exit(1).into());
    }
    Ok(())
}

/// Reads what one `grove create` said: its env's URLs, or the first error line.
fn finish(job: &Job, ok: bool, secs: f64) -> Done {
    let out = std::fs::read_to_string(&job.out).unwrap_or_default();
    let err = std::fs::read_to_string(&job.err).unwrap_or_default();
    let urls = serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .map(|v| {
            v["layers"]
                .as_array()
                .map(|ls| {
                    ls.iter()
                        .map(|l| {
                            let url = l["url"].as_str().unwrap_or("-");
                            if l["mode"] == "shared" {
                                format!("{} shared", l["name"].as_str().unwrap_or("?"))
                            } else {
                                format!("{} {url}", l["name"].as_str().unwrap_or("?"))
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        });
    // The error and its deepest cause: "setting up layer `front`: setup command `x` failed".
    let first = err.lines().find_map(|l| l.strip_prefix("error: "));
    let cause = err
        .lines()
        .filter_map(|l| l.strip_prefix("caused by: "))
        .next_back();
    let why = match (first, cause) {
        (Some(f), Some(c)) => format!("{f}: {c}"),
        (Some(f), None) => f.to_string(),
        (None, _) => "grove create failed".to_string(),
    };
    let detail = match (ok, urls) {
        (true, Some(u)) => u,
        (true, None) => String::new(),
        (false, Some(u)) => format!("{why} (env kept: {u})"),
        (false, None) => why,
    };
    Done {
        env: job.env.clone(),
        ok,
        detail,
        secs,
    }
}

/// Ticket files: each argument a file, or a pattern with `*` and `?` in its last component.
fn expand(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in patterns {
        let path = Path::new(p);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            if !path.is_file() {
                return Err(Fail::new(format!("ticket `{p}` not found"))
                    .hint(tickets_hint(path))
                    .into());
            }
            files.push(path.to_path_buf());
            continue;
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(Fail::new(format!(
                "no folder `{}` for the tickets `{p}`",
                dir.display()
            ))
            .hint(
                "ticket paths are relative to the current folder, e.g. `--tickets 'tickets/*.md'`",
            )
            .into());
        }
        let mut found: Vec<PathBuf> = fs_err::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.is_file()
                    && f.file_name()
                        .is_some_and(|n| matches(&name, &n.to_string_lossy()))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(Fail::new(format!("no ticket matches `{p}`"))
                .hint(tickets_hint(path))
                .into());
        }
        files.extend(found);
    }
    Ok(files)
}

/// What files there are where a ticket was looked for.
fn tickets_hint(path: &Path) -> String {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let shown = if names.is_empty() {
        "none".to_string()
    } else if names.len() > 10 {
        format!("{}, …", names[..10].join(", "))
    } else {
        names.join(", ")
    };
    format!(
        "files in {}: {shown} (`*` and `?` match in the file name; quote the pattern)",
        dir.display()
    )
}

/// Shell-style match of `*` (any run) and `?` (one character).
fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn tempdir(home: &Path) -> Result<PathBuf> {
    let dir = home
        .join("tmp")
        .join(format!("fanout-{}", std::process::id()));
    fs_err::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("*.md", "01-login.md"));
        assert!(!matches("*.md", "01-login.txt"));
        assert!(matches("t?-*.md", "t1-x.md"));
        assert!(matches("*", ""));
        assert!(!matches("a*b", "acbd"));
        assert!(matches("a*b*", "acbd"));
    }
}
