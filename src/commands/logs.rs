//! `grove logs`: an env's server logs and setup output, merged in time order.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::cli::LogsArgs;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::{logfile, ui};

struct Source {
    name: String,
    path: PathBuf,
    offset: u64,
    partial: String,
}

/// Logs every env has besides its servers'.
pub(super) const SPECIAL: [&str; 4] = ["setup", "supervisor", "agent", "gate"];

pub fn run(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    follow_until(ctx, args, &|| false)
}

/// [`run`]; with `--follow`, following stops once `done` says so, after one last read.
pub fn follow_until(ctx: &Ctx, args: &LogsArgs, done: &dyn Fn() -> bool) -> Result<()> {
    let (env, layer) = ctx.require_target_layer(
        args.name.as_deref(),
        args.layer.as_deref(),
        |w| ctx.ws.config.layers.contains_key(w) || SPECIAL.contains(&w),
        "logs",
    )?;
    let dir = ctx.log_dir(&env.name);
    let servers: Vec<String> = ctx
        .store
        .instances(env.key)?
        .into_iter()
        .filter(|i| {
            ctx.ws
                .config
                .layers
                .get(&i.layer)
                .is_some_and(crate::config::Layer::runs_server)
        })
        .map(|i| i.layer)
        .collect();
    let names: Vec<String> = match &layer {
        Some(l) if servers.contains(l) || SPECIAL.contains(&l.as_str()) => {
            vec![l.clone()]
        }
        Some(l) => {
            return Err(Fail::new(format!("env `{}` has no server `{l}`", env.name))
                .hint(format!(
                    "logs of this env: {}",
                    servers
                        .iter()
                        .map(String::as_str)
                        .chain(["setup", "agent", "gate", "supervisor"])
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into());
        }
        None => {
            let agent = dir.join("agent.log").exists().then(|| "agent".to_string());
            let gate = dir.join("gate.log").exists().then(|| "gate".to_string());
            std::iter::once("setup".to_string())
                .chain(servers)
                .chain(agent)
                .chain(gate)
                .collect()
        }
    };
    let mut sources: Vec<Source> = names
        .into_iter()
        .map(|name| Source {
            path: dir.join(format!("{name}.log")),
            name,
            offset: 0,
            partial: String::new(),
        })
        .collect();
    let width = sources.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let prefixed = sources.len() > 1;
    let show = |name: &str, line: &str| {
        let text = logfile::split(line).1;
        if prefixed {
            ui::out(format!("{name:width$} | {text}"));
        } else {
            ui::out(text);
        }
    };

    let mut first: Vec<(String, usize, String)> = Vec::new();
    for (k, src) in sources.iter_mut().enumerate() {
        src.offset = std::fs::metadata(&src.path).map_or(0, |m| m.len());
        for line in logfile::tail(&src.path, args.lines) {
            first.push((logfile::split(&line).0.to_string(), k, line));
        }
    }
    // Stable: lines of one file keep their order; files interleave by time.
    first.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = first.len().saturating_sub(args.lines);
    for (_, k, line) in &first[skip..] {
        show(&sources[*k].name, line);
    }
    if first.is_empty() && !args.follow {
        ui::info(format!(
            "no logs yet for env `{}` ({})",
            env.name,
            dir.display()
        ));
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(sig) = crate::interrupt::received() {
            // Ctrl-C is how one stops following: no message, the shell's exit code.
            return Err(crate::error::Exit(crate::interrupt::exit_code(sig)).into());
        }
        // Asked before reading: what was written before it was done is read below.
        let last = done();
        for src in &mut sources {
            for line in read_new(src) {
                show(&src.name, &line);
            }
        }
        if last {
            return Ok(());
        }
    }
}

/// Complete lines appended to the source since last time; a file that shrank was rotated and
/// is read again from its start.
fn read_new(src: &mut Source) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(&src.path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if len < src.offset {
        src.offset = 0;
        src.partial.clear();
    }
    if len == src.offset || f.seek(SeekFrom::Start(src.offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    src.offset += buf.len() as u64;
    src.partial.push_str(&String::from_utf8_lossy(&buf));
    let mut lines = Vec::new();
    while let Some(pos) = src.partial.find('\n') {
        lines.push(src.partial[..pos].to_string());
        src.partial.drain(..=pos);
    }
    lines
}
