//! `grove init`: a commented starter grove.toml for the repos found in a folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::InitArgs;
use crate::config::{self, FILE_NAME};
use crate::error::Fail;
use crate::{git, provision, ui};

struct Found {
    name: String,
    repo: String,
    run: Option<String>,
    why: String,
}

pub fn run(args: &InitArgs, cwd: &Path) -> Result<()> {
    let dir = args
        .dir
        .as_ref()
        .map_or_else(|| cwd.to_path_buf(), |d| cwd.join(d));
    if !dir.is_dir() {
        return Err(Fail::new(format!("{} is not a folder", dir.display()))
            .hint("pass the folder holding your repos (or a repo): `grove init DIR`")
            .into());
    }
    let path = dir.join(FILE_NAME);
    if path.exists() && !args.force {
        return Err(Fail::new(format!("{} already exists", path.display()))
            .hint("edit it, or pass `--force` to replace it")
            .into());
    }
    let repos = find_repos(&dir)?;
    if repos.is_empty() {
        return Err(Fail::new(format!(
            "no git repository in {} or its subfolders",
            dir.display()
        ))
        .hint("run `grove init` in a repo, or in the folder holding your repos")
        .into());
    }
    let text = render(&repos);
    provision::write_atomic(&path, text.as_bytes())?;
    ui::info(format!(
        "wrote {} with {} layer(s):",
        path.display(),
        repos.len()
    ));
    for r in &repos {
        ui::info(format!("  {:<10} repo {:<12} {}", r.name, r.repo, r.why));
    }
    if let Err(problem) = config::load(&path, &dir.canonicalize()?) {
        ui::warn(format!("the new grove.toml needs a look:\n{}", problem.msg));
    }
    ui::hint("fill in the TODOs, then `grove create NAME`");
    Ok(())
}

fn find_repos(dir: &Path) -> Result<Vec<Found>> {
    if git::is_checkout(dir) {
        let name = layer_name(
            dir.file_name()
                .map_or("app".into(), |n| n.to_string_lossy())
                .as_ref(),
        );
        return Ok(vec![guess(dir, name, ".".into())]);
    }
    let mut subdirs: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && git::is_checkout(p))
        .collect();
    subdirs.sort();
    let mut found: Vec<Found> = Vec::new();
    for sub in subdirs {
        let file = sub
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let mut name = layer_name(&file);
        if found.iter().any(|f| f.name == name) {
            name = format!("{name}-{}", found.len() + 1);
        }
        found.push(guess(&sub, name, file));
    }
    Ok(found)
}

/// A valid layer name from a folder name: lowercase letters, digits and `-`.
fn layer_name(raw: &str) -> String {
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s = s.trim_matches('-').to_string();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s = format!("app-{s}").trim_end_matches('-').to_string();
    }
    s.truncate(32);
    s.trim_end_matches('-').to_string()
}

fn guess(dir: &Path, name: String, repo: String) -> Found {
    if let Ok(text) = fs_err::read_to_string(dir.join("package.json"))
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
    {
        // `dev` is the dev server by convention; many apps (Express, CRA, Next in production
        // mode) only have `start`, which is still what serves them.
        let script = ["dev", "start"]
            .into_iter()
            .find_map(|s| json["scripts"][s].as_str().map(|body| (s, body)));
        if let Some((script, body)) = script {
            let pm = package_manager(dir);
            let strict = if body.contains("vite") {
                " --strictPort"
            } else {
                ""
            };
            // npm passes arguments to the script only after `--`; pnpm, yarn and bun pass
            // what follows the script's name (pnpm would hand a `--` on to the script).
            let sep = if pm == "npm" { " --" } else { "" };
            return Found {
                name,
                repo,
                run: Some(format!("{pm} run {script}{sep} --port $PORT{strict}")),
                why: format!(
                    "(package.json {script}: {body}; {pm}{})",
                    if pm == "npm" && !dir.join("package-lock.json").is_file() {
                        ": no lockfile"
                    } else {
                        " from the lockfile"
                    }
                ),
            };
        }
    }
    if let Ok(text) = fs_err::read_to_string(dir.join("Procfile"))
        && let Some(web) = text.lines().find_map(|l| l.strip_prefix("web:"))
    {
        return Found {
            name,
            repo,
            run: Some(web.trim().into()),
            why: "(Procfile web)".into(),
        };
    }
    Found {
        name,
        repo,
        run: None,
        why: "(run: TODO)".into(),
    }
}

/// The package manager whose lockfile the repo has: running the others' `run` would install
/// nothing, but would ignore the repo's own pinned tool (and `packageManager` checks).
fn package_manager(dir: &Path) -> &'static str {
    [
        ("pnpm-lock.yaml", "pnpm"),
        ("yarn.lock", "yarn"),
        ("bun.lockb", "bun"),
        ("bun.lock", "bun"),
    ]
    .into_iter()
    .find(|(file, _)| dir.join(file).is_file())
    .map_or("npm", |(_, pm)| pm)
}

fn render(repos: &[Found]) -> String {
    let mut s = String::new();
    s.push_str(
        "# grove.toml: how grove makes an env (one ticket's copy of the stack).\n\
         # Reference: the README's \"grove.toml\" section.\n\n\
         [workspace]\n\
         # Layers every env gets its own worktree, port and server for; others stay shared\n\
         # unless `grove create NAME --from-<layer>=BASE` asks for them.\n",
    );
    let _ = writeln!(s, "default_layers = [{}]", default_layers(repos).join(", "));
    s.push_str("# envs_dir = \".grove/envs\"\n");
    for (i, r) in repos.iter().enumerate() {
        let low = 3001 + 1000 * i;
        let _ = writeln!(s, "\n[layers.{}]", r.name);
        let _ = writeln!(s, "repo = \"{}\"", r.repo);
        s.push_str("# base = \"main\"                  # default: the repo's default branch\n");
        match &r.run {
            Some(run) => {
                let _ = writeln!(s, "run = {}", toml_string(run));
            }
            None => s.push_str(
                "# TODO: the command that starts this repo's dev server on $PORT, e.g.\n\
                 # run = \"bin/server --port $PORT\"\n",
            ),
        }
        let _ = writeln!(s, "ports = \"{low}-{}\"", low + 98);
        let _ = writeln!(
            s,
            "# shared_url = \"http://localhost:{}\"   # the main stack's instance, used by envs without their own",
            low - 1
        );
        s.push_str(
            "# copy = [\".env\"]                 # ignored files copied from the main checkout\n\
             # setup = [\"npm ci\"]              # run once in each new worktree\n\
             # ready = { http = \"/\" }          # or { tcp = true }, { log = \"ready\" }, { exec = \"cmd\" }\n",
        );
        if let Some(other) = repos.iter().find(|o| o.name != r.name) {
            let _ = writeln!(
                s,
                "# env.{}_URL = \"{{{{ layers.{}.url }}}}\"",
                other.name.to_ascii_uppercase().replace('-', "_"),
                other.name
            );
        }
    }
    s
}

/// The layers with a dev server: an env of a repo that runs nothing is only a worktree, and
/// the first repo by name is no better a guess than any other. With none found, the first,
/// for the file to be valid.
fn default_layers(repos: &[Found]) -> Vec<String> {
    let with_run: Vec<String> = repos
        .iter()
        .filter(|r| r.run.is_some())
        .map(|r| toml_string(&r.name))
        .collect();
    if with_run.is_empty() {
        vec![toml_string(&repos[0].name)]
    } else {
        with_run
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_are_valid() {
        assert_eq!(layer_name("Front_End"), "front-end");
        assert_eq!(layer_name("3d"), "app-3d");
        assert_eq!(layer_name("api.v2"), "api-v2");
    }
}
