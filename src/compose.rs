//! Docker Compose as a runner (issue #13): a compose project per layer of an env, run from
//! the layer's worktree with an override file grove writes in the env folder (never in the repo).
//!
//! The layer's server is `docker compose … up` in the foreground, under the same guard and
//! supervisor as a host process: its output is the containers' logs, its exit is theirs, and
//! stopping it (SIGTERM to its session) stops them. What could outlive it (a container, a
//! network, a volume, an image grove built) carries the env's token as a label, so `down`,
//! `destroy` and `doctor` find it by label, never by name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use crate::config::{ComposeService, Engine};
use crate::error::Fail;
use crate::exec::Cmd;

/// The label that marks everything grove makes on an engine as an env's.
pub const TOKEN_LABEL: &str = "dev.grove.token";

/// The compose project of layer `layer` of an env: `grove-<workspace key>-<env id>-<layer>`.
/// The env id, not its name: names that differ only in punctuation (`feat.1`, `feat_1`)
/// would map to one project, and one env's destroy would take the other's containers. A
/// project per layer, not per env: each layer's compose file is its own, and two files with
/// a service of the same name (`web`, `db`) in one project would replace each other's
/// container. The layers of an env meet on the env's network instead ([`env_network`]).
pub fn project_name(ws_key: &str, ident: &str, layer: &str) -> String {
    compose_alphabet(&format!("grove-{ws_key}-{ident}-{layer}"))
}

/// Whether an engine publishing on `host` is on this machine (its ports bound to loopback).
pub fn is_local(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `value` with each `from` (a `host:port`) replaced by `to` where it is a whole authority:
/// not `localhost:60001` for `localhost:6000`.
pub fn replace_authority(value: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        let before = rest[..at].chars().last();
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric())
            && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        out.push_str(&rest[..at]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The env's network, which the services of its compose layers join to reach each other
/// (and an isolated infra service) by layer name: only where the workspace has two compose
/// parts or more. An engine has room for about 30 networks with Docker's default address
/// pools, and an env with one compose layer needs no network beyond its project's.
pub fn env_network(config: &crate::config::Config, ws_key: &str, ident: &str) -> Option<String> {
    let parts = config.layers.values().filter(|l| l.on_docker()).count();
    (parts > 1).then(|| compose_alphabet(&format!("grove-{ws_key}-{ident}")))
}

fn compose_alphabet(raw: &str) -> String {
    let raw = raw.to_ascii_lowercase();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        });
    }
    out
}

/// `docker`, aimed at `engine`.
pub fn docker(engine: &Engine) -> Cmd {
    let cmd = Cmd::new("docker");
    match engine {
        Engine::Default => cmd,
        Engine::Context(c) => cmd.args(["--context", c]),
        Engine::Host(h) => cmd.args(["--host", h]),
    }
}

/// Fails with what to do when this machine cannot run compose layers on `engine`: no docker,
/// Compose v1 only, or the daemon not answering.
pub fn require(engine: &Engine, network: Option<&str>) -> Result<()> {
    let version = docker(engine)
        .args(["compose", "version", "--short"])
        .output()
        .map_err(|_| {
            Fail::new("docker is not installed (a layer of this workspace runs as a compose service)")
                .hint("install Docker Engine and its Compose v2 plugin: https://docs.docker.com/engine/install/")
        })?;
    let v = version.stdout.trim().trim_start_matches('v');
    if !version.status.success()
        || !v.starts_with(|c: char| c.is_ascii_digit())
        || v.starts_with("1.")
    {
        return Err(Fail::new("Docker Compose v2 is missing (`docker compose version` does not answer)")
            .hint("install the Compose plugin (`docker-compose-plugin`, or the `docker-compose` v2 binary in ~/.docker/cli-plugins); the old `docker-compose` v1 is not enough")
            .into());
    }
    // The override replaces the file's `ports` with YAML's `!override` (2.24), and `up
    // --watch` needs 2.22.
    let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 24) {
        return Err(Fail::new(format!(
            "Docker Compose {v} is too old: grove needs 2.24 or later"
        ))
        .hint("update the Compose plugin (`docker-compose-plugin`)")
        .into());
    }
    let info = docker(engine)
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()?;
    if !info.status.success() {
        let why = info.stderr.lines().next().unwrap_or("").trim().to_string();
        return Err(Fail::new(format!("the Docker engine does not answer: {why}"))
            .hint(match engine {
                Engine::Default => "start it (`sudo systemctl start docker`), or point DOCKER_HOST / `[workspace] docker_context` at one that runs".to_string(),
                Engine::Context(c) => format!("check the context: `docker --context {c} info`"),
                Engine::Host(h) => format!("check the host: `docker --host {h} info`"),
            })
            .into());
    }
    if let Some(net) = network {
        let found = docker(engine)
            .args(["network", "inspect", "--format", "{{.Id}}", net])
            .output()?;
        if !found.status.success() {
            return Err(Fail::new(format!(
                "the Docker network `{net}` (`[workspace] docker_network`) does not exist on the engine"
            ))
            .hint(format!(
                "start the main stack that makes it, or make it: `docker network create {net}`"
            ))
            .into());
        }
    }
    Ok(())
}

/// Whether the engine answers (`docker info`).
pub fn ping(engine: &Engine) -> Result<()> {
    let out = docker(engine)
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{}",
            out.stderr.trim().lines().next().unwrap_or("no answer")
        );
    }
    Ok(())
}

/// Seconds Compose gives a container to stop before it kills it (its default).
pub const STOP_SECS: u64 = 10;

/// The env folder's folder for the override files.
pub const DIR: &str = ".grove-compose";

/// grove's labels on what it makes for layer `layer` of env `env`: the token, by which it is
/// found again, and names for people reading `docker ps`.
pub fn labels(token: &str, ws_key: &str, env: &str, layer: &str) -> Vec<(String, String)> {
    vec![
        (TOKEN_LABEL.into(), token.into()),
        ("dev.grove.workspace".into(), ws_key.into()),
        ("dev.grove.env".into(), env.into()),
        ("dev.grove.layer".into(), layer.into()),
    ]
}

/// Who has `port`: the env's container of `layer` publishing it, another program, or nobody.
pub fn port_holder(
    engine: &Engine,
    host: &str,
    token: &str,
    layer: &str,
    port: u16,
) -> crate::supervisor::PortHolder {
    use crate::supervisor::PortHolder;
    let local = is_local(host);
    // Free on this machine: nobody's (the engine's proxy would hold it if it published it),
    // and no round trip to the engine.
    if local && crate::ports::is_free(port) {
        return PortHolder::Nobody;
    }
    let ours = docker(engine)
        .args(["ps", "--quiet"])
        .args(["--filter", &format!("label={TOKEN_LABEL}={token}")])
        .args(["--filter", &format!("label=dev.grove.layer={layer}")])
        .args(["--filter", &format!("publish={port}")])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.trim().is_empty());
    if ours {
        PortHolder::Ours
    } else if local || crate::supervisor::probe::tcp(host, port) {
        PortHolder::Foreign
    } else {
        PortHolder::Nobody
    }
}

/// A container of an env as the engine reports it (`grove ps`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Container {
    pub name: String,
    /// The compose service it runs.
    pub service: String,
    /// The engine's state: `created`, `running`, `restarting`, `exited`, `dead`, …
    pub state: String,
    /// `healthy`, `unhealthy` or `starting` when the service has a healthcheck.
    pub health: Option<String>,
    /// The exit code of an exited container.
    pub exit_code: Option<i32>,
    #[serde(skip)]
    pub token: String,
    #[serde(skip)]
    pub layer: String,
}

/// Every container of the workspace on `engine`, in one query (`ps` stays one round trip
/// whatever the number of envs; `compose ps` would take one per project).
pub fn containers(engine: &Engine, ws_key: &str) -> Result<Vec<Container>> {
    let out = docker(engine)
        .args(["ps", "--all", "--no-trunc"])
        .args(["--filter", &format!("label=dev.grove.workspace={ws_key}")])
        .args([
            "--format",
            &format!(
                "{{{{.Label \"{TOKEN_LABEL}\"}}}}\t{{{{.Label \"dev.grove.layer\"}}}}\t{{{{.Label \"com.docker.compose.service\"}}}}\t{{{{.State}}}}\t{{{{.Status}}}}\t{{{{.Names}}}}"
            ),
        ])
        .output()?;
    if !out.status.success() {
        return Err(engine_error(engine, "ps", &out.stderr));
    }
    Ok(out.stdout.lines().filter_map(parse_ps_line).collect())
}

fn parse_ps_line(line: &str) -> Option<Container> {
    let f: Vec<&str> = line.split('\t').collect();
    let [token, layer, service, state, status, name] = f[..] else {
        return None;
    };
    let health = ["unhealthy", "healthy", "health: starting"]
        .into_iter()
        .find(|h| status.contains(&format!("({h})")))
        .map(|h| h.trim_start_matches("health: ").to_string());
    let exit_code = status
        .strip_prefix("Exited (")
        .and_then(|r| r.split(')').next())
        .and_then(|c| c.parse().ok());
    Some(Container {
        name: name.to_string(),
        service: service.to_string(),
        state: state.to_string(),
        health,
        exit_code,
        token: token.to_string(),
        layer: layer.to_string(),
    })
}

/// The id of the env's running container of `service` (layer `layer`), if any.
pub fn running_container(
    engine: &Engine,
    token: &str,
    layer: &str,
    service: &str,
) -> Result<Option<String>> {
    let out = docker(engine)
        .args(["ps", "--quiet", "--filter", "status=running"])
        .args(["--filter", &format!("label={TOKEN_LABEL}={token}")])
        .args(["--filter", &format!("label=dev.grove.layer={layer}")])
        .args([
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .output()?;
    if !out.status.success() {
        return Err(engine_error(engine, "ps", &out.stderr));
    }
    Ok(out.stdout.split_whitespace().next().map(str::to_string))
}

/// Stops the env's containers still running (their `compose up` is gone), and its isolated
/// infra containers when `isolated_too`: how many.
pub fn stop_running(engine: &Engine, token: &str, isolated_too: bool) -> Result<usize> {
    let out = docker(engine)
        .args(["ps", "--filter", &format!("label={TOKEN_LABEL}={token}")])
        .args(["--filter", "status=running"])
        .args([
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{ROLE_LABEL}\"}}}}"),
        ])
        .output()?;
    if !out.status.success() {
        return Err(engine_error(engine, "ps", &out.stderr));
    }
    let ids: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let (id, role) = l.split_once(' ').unwrap_or((l, ""));
            (isolated_too || role != "isolate").then_some(id)
        })
        .filter(|id| !id.is_empty())
        .collect();
    if !ids.is_empty() {
        let stopped = docker(engine)
            .args(["stop", "--time", &STOP_SECS.to_string()])
            .args(&ids)
            .output()?;
        if !stopped.status.success() {
            return Err(engine_error(engine, "stop", &stopped.stderr));
        }
    }
    Ok(ids.len())
}

/// Removes everything of the env on the engine: its compose project (`down` with its
/// volumes and the images it built), then whatever still carries its token (what a failed
/// `up` or an earlier build left). Says what it removed.
pub fn destroy(engine: &Engine, projects: &[String], token: &str) -> Result<Vec<String>> {
    for project in projects {
        let out = docker(engine)
            .args(["compose", "--project-name", project])
            .args(["down", "--volumes", "--rmi", "local", "--remove-orphans"])
            .output()?;
        if !out.status.success() {
            return Err(engine_error(engine, "compose down", &out.stderr));
        }
    }
    crate::failpoint::hit("destroy:after-compose-down");
    sweep(engine, token)
}

/// A docker command that failed, with what to do.
fn engine_error(engine: &Engine, what: &str, stderr: &str) -> anyhow::Error {
    let why = stderr.trim().lines().last().unwrap_or("").to_string();
    Fail::new(format!("docker {what} failed: {why}"))
        .hint(match engine {
            Engine::Default => "is the Docker engine running? `docker info` says".to_string(),
            Engine::Context(c) => format!(
                "is the engine of context `{c}` reachable? `docker --context {c} info` says"
            ),
            Engine::Host(h) => {
                format!("is the engine at {h} reachable? `docker --host {h} info` says")
            }
        })
        .into()
}

/// What the engine holds of the workspace `ws_key`, by env token: `container ID`,
/// `network ID`, `volume NAME` (images are found by token when swept).
pub fn on_engine(
    engine: &Engine,
    ws_key: &str,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut found: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let filter = format!("label=dev.grove.workspace={ws_key}");
    let format = format!("{{{{.Label \"{TOKEN_LABEL}\"}}}} {{{{.ID}}}}");
    let vformat = format!("{{{{.Label \"{TOKEN_LABEL}\"}}}} {{{{.Name}}}}");
    for (kind, args) in [
        ("container", vec!["ps", "--all", "--format", &format]),
        ("network", vec!["network", "ls", "--format", &format]),
        ("volume", vec!["volume", "ls", "--format", &vformat]),
        ("image", vec!["image", "ls", "--all", "--format", &format]),
    ] {
        let out = docker(engine)
            .args(&args)
            .args(["--filter", &filter])
            .output()?;
        if !out.status.success() {
            return Err(engine_error(engine, args[0], &out.stderr));
        }
        for line in out.stdout.lines() {
            if let Some((token, id)) = line.split_once(' ')
                && !token.is_empty()
            {
                // Ids as docker shows them; a volume's is its name, whole.
                let short: String = if kind == "volume" {
                    id.to_string()
                } else {
                    id.chars().take(12).collect()
                };
                found
                    .entry(token.to_string())
                    .or_default()
                    .push(format!("{kind} {short}"));
            }
        }
    }
    Ok(found)
}

/// Removes whatever carries the env's token on the engine: containers, networks, volumes,
/// images. Says what it removed.
pub fn sweep(engine: &Engine, token: &str) -> Result<Vec<String>> {
    let filter = format!("label={TOKEN_LABEL}={token}");
    let mut removed = Vec::new();
    // In dependency order: containers hold networks, volumes and images.
    for (what, list, rm) in [
        (
            "container",
            &["ps", "--all", "--quiet"][..],
            &["rm", "--force", "--volumes"][..],
        ),
        ("network", &["network", "ls", "--quiet"], &["network", "rm"]),
        (
            "volume",
            &["volume", "ls", "--quiet"],
            &["volume", "rm", "--force"],
        ),
        (
            "image",
            &["image", "ls", "--quiet", "--all"],
            &["image", "rm", "--force"],
        ),
    ] {
        let out = docker(engine)
            .args(list)
            .args(["--filter", &filter])
            .output()?;
        if !out.status.success() {
            return Err(engine_error(engine, list[0], &out.stderr));
        }
        let mut ids: Vec<&str> = out.stdout.split_whitespace().collect();
        ids.dedup();
        if ids.is_empty() {
            continue;
        }
        let done = docker(engine).args(rm).args(&ids).output()?;
        if !done.status.success() {
            return Err(engine_error(engine, &rm.join(" "), &done.stderr));
        }
        removed.push(format!("{} {what}(s)", ids.len()));
    }
    Ok(removed)
}

/// Makes the env's network ([`env_network`]) unless it exists, and refuses one of that name
/// that is not the env's. grove makes it, labelled, before any `compose up` runs: two layers'
/// `up`s each making it at once would leave two networks of one name, and every later `up`
/// would fail on the ambiguity.
pub fn ensure_network(engine: &Engine, network: &str, labels: &[(String, String)]) -> Result<()> {
    let token = labels
        .iter()
        .find(|(k, _)| k == TOKEN_LABEL)
        .map_or("", |(_, v)| v.as_str());
    let found = docker(engine)
        .args(["network", "inspect", "--format"])
        .arg(format!("{{{{index .Labels \"{TOKEN_LABEL}\"}}}}"))
        .arg(network)
        .output()?;
    if found.status.success() {
        // Never join a network of that name someone else made: its containers would reach
        // the env's, and destroy would not remove it.
        if found.stdout.trim() != token {
            return Err(Fail::new(format!(
                "a Docker network named `{network}` exists and is not this env's"
            ))
            .hint(format!(
                "remove it (`docker network rm {network}`) if it is a leftover"
            ))
            .into());
        }
        return Ok(());
    }
    let mut c = docker(engine).args(["network", "create"]);
    for (k, v) in labels
        .iter()
        .filter(|(k, _)| k != "dev.grove.layer" && k != ROLE_LABEL)
    {
        c = c.arg("--label").arg(format!("{k}={v}"));
    }
    let out = c.arg(network).output()?;
    if !out.status.success() {
        return Err(Fail::new(format!(
            "cannot make the env's Docker network `{network}`: {}",
            out.stderr.trim()
        ))
        .hint("`docker network ls` shows the engine's networks; with Docker's default address pools an engine has room for about 30: give it more in /etc/docker/daemon.json, e.g. `\"default-address-pools\": [{\"base\": \"10.200.0.0/16\", \"size\": 24}]`")
        .into());
    }
    Ok(())
}

/// An infra service of the workspace's compose file run for one env (`isolate = { kind =
/// "compose" }`): in a project of its own, with its own container and volumes.
pub struct Isolated<'a> {
    pub engine: &'a Engine,
    pub host_name: &'a str,
    pub project: &'a str,
    /// The env's network ([`env_network`]), if the workspace needs one.
    pub network: Option<&'a str>,
    pub ws_root: &'a Path,
    pub env_dir: &'a Path,
    /// Relative to the workspace; empty: the compose file in its root.
    pub file: &'a str,
    pub service: &'a str,
    pub port: u16,
    pub host_port: u16,
    pub labels: &'a [(String, String)],
}

/// The label that tells an isolated infra service's container from a layer's server: `up`
/// leaves it running (it is no server of the supervisor's), `down` stops it.
pub const ROLE_LABEL: &str = "dev.grove.role";

/// Starts an isolated infra service and waits until the engine says it runs (or is healthy,
/// when it has a healthcheck). It restarts on its own unless stopped: no supervisor of
/// grove's watches it.
pub fn isolate_up(i: &Isolated<'_>, tag: &crate::proc::Tag) -> Result<()> {
    let spec = ComposeService {
        file: i.file.to_string(),
        service: i.service.to_string(),
        port: i.port,
        services: Vec::new(),
    };
    let file = file_in(i.ws_root, &spec)?;
    let dir = file.parent().unwrap_or(i.ws_root).to_path_buf();
    let model = model(i.engine, &dir, &file, &spec, i.project, &[])?;
    let layer = i
        .labels
        .iter()
        .find(|(k, _)| k == "dev.grove.layer")
        .map_or("infra", |(_, v)| v.as_str());
    let mut labels = i.labels.to_vec();
    labels.push((ROLE_LABEL.into(), "isolate".into()));
    if let Some(net) = i.network {
        ensure_network(i.engine, net, &labels)?;
    }
    let mut over = override_file(
        &model,
        &Overrides {
            spec: &spec,
            host_port: i.host_port,
            loopback: is_local(i.host_name),
            vars: &[],
            labels: &labels,
            network: None,
            project: i.project,
            env_network: i.network,
            layer,
        },
    );
    over["services"][i.service]["restart"] = json!("unless-stopped");
    over["services"][i.service]
        .as_object_mut()
        .map(|s| s.remove("environment"));
    let over_dir = i.env_dir.join(DIR);
    fs_err::create_dir_all(&over_dir)?;
    let over_file = over_dir.join(format!("isolate-{layer}.yaml"));
    crate::provision::write_atomic(&over_file, render_override(&over)?.as_bytes())?;
    let out = docker(i.engine)
        .args([
            "compose",
            "--project-name",
            i.project,
            "--project-directory",
        ])
        .arg(&dir)
        .arg("--file")
        .arg(&file)
        .arg("--file")
        .arg(&over_file)
        .args(["up", "--detach", "--wait", i.service])
        .env(crate::proc::TOKEN_VAR, tag.render())
        .output()?;
    if !out.status.success() {
        let why: Vec<&str> = out.stderr.lines().rev().take(5).collect();
        let why: Vec<&str> = why.into_iter().rev().collect();
        return Err(Fail::new(format!(
            "the `{}` service of {} did not start for `{layer}`:\n{}",
            i.service,
            file.display(),
            why.join("\n")
        ))
        .hint(if out.stderr.contains("port is already allocated") || out.stderr.contains("address already in use") {
            format!("port {} is taken on the engine's host; free it, or narrow `ports` of [layers.{layer}]", i.host_port)
        } else {
            format!("`docker compose -f {} up {}` shows the same", file.display(), i.service)
        })
        .into());
    }
    Ok(())
}

/// Starts the env's isolated infra containers again (after a `down`).
pub fn start_isolated(engine: &Engine, token: &str) -> Result<usize> {
    let out = docker(engine)
        .args(["ps", "--all", "--quiet"])
        .args(["--filter", &format!("label={TOKEN_LABEL}={token}")])
        .args(["--filter", &format!("label={ROLE_LABEL}=isolate")])
        .output()?;
    let ids: Vec<&str> = out.stdout.split_whitespace().collect();
    if !ids.is_empty() {
        let started = docker(engine).arg("start").args(&ids).output()?;
        if !started.status.success() {
            return Err(Fail::new(format!(
                "cannot start the env's isolated containers: {}",
                started.stderr.trim()
            ))
            .into());
        }
    }
    Ok(ids.len())
}

/// Removes what carries the env's token and layer `layer` (its containers with their
/// volumes, its named volumes), and the env's network once no container of the env is left.
pub fn remove_layer(engine: &Engine, token: &str, layer: &str) -> Result<Vec<String>> {
    let token_f = format!("label={TOKEN_LABEL}={token}");
    let layer_f = format!("label=dev.grove.layer={layer}");
    let ids = |what: &[&str], filters: &[&str]| -> Result<Vec<String>> {
        let mut c = docker(engine).args(what);
        for f in filters {
            c = c.args(["--filter", f]);
        }
        let out = c.output()?;
        if !out.status.success() {
            return Err(engine_error(engine, what[0], &out.stderr));
        }
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    };
    let rm = |args: &[&str], ids: &[String]| -> Result<()> {
        let out = docker(engine).args(args).args(ids).output()?;
        if !out.status.success() {
            return Err(engine_error(engine, &args.join(" "), &out.stderr));
        }
        Ok(())
    };
    let mut removed = Vec::new();
    let containers = ids(&["ps", "--all", "--quiet"], &[&token_f, &layer_f])?;
    if !containers.is_empty() {
        rm(&["rm", "--force", "--volumes"], &containers)?;
        removed.push(format!("{} container(s)", containers.len()));
    }
    let volumes = ids(&["volume", "ls", "--quiet"], &[&token_f, &layer_f])?;
    if !volumes.is_empty() {
        rm(&["volume", "rm", "--force"], &volumes)?;
        removed.push(format!("{} volume(s)", volumes.len()));
    }
    if ids(&["ps", "--all", "--quiet"], &[&token_f])?.is_empty() {
        let networks = ids(&["network", "ls", "--quiet"], &[&token_f])?;
        if !networks.is_empty() {
            rm(&["network", "rm"], &networks)?;
        }
    }
    Ok(removed)
}

/// What a compose layer runs in an env: the project, its files, and where it runs from.
pub struct Project {
    pub engine: Engine,
    pub name: String,
    /// The layer's worktree: relative build contexts and bind mounts are the env's own code.
    pub dir: PathBuf,
    pub file: PathBuf,
    pub override_file: PathBuf,
    /// A service of the layer has `develop.watch`.
    pub watch: bool,
    /// The variables `compose up` runs with, which the containers get.
    pub env: Vec<(String, String)>,
}

/// A compose layer's variables as its containers (and Compose's interpolation) see them:
/// `PORT` is the port the service listens on in its container; the URLs the other layers
/// get keep the leased one.
pub fn compose_env(vars: &[(String, String)], spec: &ComposeService) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| {
            let v = if k == "PORT" {
                spec.port.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

impl Project {
    /// Reads the layer's compose file in `worktree` and writes its override in the env
    /// folder: the project as the supervisor starts it.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        engine: &Engine,
        network: Option<&str>,
        host_name: &str,
        name: &str,
        env_network: Option<&str>,
        worktree: &Path,
        env_dir: &Path,
        layer: &str,
        spec: &ComposeService,
        host_port: u16,
        vars: &[(String, String)],
        labels: &[(String, String)],
        rewrites: &[(String, String)],
    ) -> Result<Project> {
        let file = file_in(worktree, spec)?;
        // An isolated infra service of the env is reached from a container on the env's
        // network, by its layer's name.
        let vars: Vec<(String, String)> = compose_env(vars, spec)
            .into_iter()
            .map(|(k, v)| {
                let v = rewrites
                    .iter()
                    .fold(v, |v, (from, to)| replace_authority(&v, from, to));
                (k, v)
            })
            .collect();
        let model = model(engine, worktree, &file, spec, name, &vars)?;
        let over = override_file(
            &model,
            &Overrides {
                spec,
                host_port,
                loopback: is_local(host_name),
                vars: &vars,
                labels,
                network,
                project: name,
                env_network,
                layer,
            },
        );
        if let Some(net) = env_network {
            ensure_network(engine, net, labels)?;
        }
        crate::failpoint::hit("supervise:after-network");
        let dir = env_dir.join(DIR);
        fs_err::create_dir_all(&dir)?;
        let override_file = dir.join(format!("{layer}.yaml"));
        crate::provision::write_atomic(&override_file, render_override(&over)?.as_bytes())?;
        let watch = std::iter::once(&spec.service)
            .chain(&spec.services)
            .any(|s| model["services"][s]["develop"]["watch"].is_array());
        Ok(Project {
            env: vars,
            watch,
            engine: engine.clone(),
            name: name.to_string(),
            dir: worktree.to_path_buf(),
            file,
            override_file,
        })
    }

    /// `compose up` of the layer's services in the foreground: built, logs without prefixes,
    /// ending with the service's exit code when its container ends; with `--watch` when a
    /// service has `develop.watch` (the worktree's changes synced into the container, or the
    /// image rebuilt: how code reaches an engine on another machine).
    pub fn up_argv(&self, spec: &ComposeService) -> Vec<String> {
        let mut argv: Vec<String> = vec!["docker".into()];
        match &self.engine {
            Engine::Default => {}
            Engine::Context(c) => argv.extend(["--context".into(), c.clone()]),
            Engine::Host(h) => argv.extend(["--host".into(), h.clone()]),
        }
        argv.extend([
            "compose".into(),
            "--project-name".into(),
            self.name.clone(),
            "--project-directory".into(),
            self.dir.to_string_lossy().into_owned(),
            "--file".into(),
            self.file.to_string_lossy().into_owned(),
            "--file".into(),
            self.override_file.to_string_lossy().into_owned(),
            "up".into(),
            "--build".into(),
        ]);
        if self.watch {
            argv.push("--watch".into());
        }
        argv.extend([
            "--no-log-prefix".into(),
            "--attach".into(),
            spec.service.clone(),
            "--exit-code-from".into(),
            spec.service.clone(),
        ]);
        argv.push(spec.service.clone());
        argv.extend(spec.services.iter().cloned());
        argv
    }
}

/// The compose file of a layer in `worktree`: `compose.file`, else the first of the names
/// Compose itself looks for.
pub fn file_in(worktree: &Path, spec: &ComposeService) -> Result<PathBuf> {
    if !spec.file.is_empty() {
        return Ok(worktree.join(&spec.file));
    }
    crate::config::COMPOSE_FILES
        .iter()
        .map(|f| worktree.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Fail::new(format!("no compose file in {}", worktree.display()))
                .hint(format!(
                    "add one ({}), or name it: `compose = {{ file = \"…\", … }}`",
                    crate::config::COMPOSE_FILES.join(", ")
                ))
                .into()
        })
}

/// The host paths the layer's services bind-mount, as `service: source`: what an engine on
/// another machine cannot see.
pub fn bind_mounts(model: &Value, spec: &ComposeService) -> Vec<String> {
    let mut found = Vec::new();
    for s in std::iter::once(&spec.service).chain(&spec.services) {
        for v in model["services"][s]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if v["type"] == "bind"
                && let Some(src) = v["source"].as_str()
            {
                found.push(format!("{s}: {src}"));
            }
        }
    }
    found
}

/// The compose file as Compose reads it (`config --format json`): the services it has, which
/// are built, their volumes. Fails, naming the service, when the layer's is not there.
pub fn model(
    engine: &Engine,
    worktree: &Path,
    file: &Path,
    spec: &ComposeService,
    project: &str,
    env: &[(String, String)],
) -> Result<Value> {
    // Read with the variables `up` runs with: `${PORT}` or `${IMAGE:?}` in the file resolve
    // as they will when it starts.
    let out = docker(engine)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["compose", "--project-name", project, "--project-directory"])
        .arg(worktree)
        .arg("--file")
        .arg(file)
        .args(["config", "--format", "json"])
        .output()?;
    if !out.status.success() {
        return Err(Fail::new(format!(
            "Compose cannot read {}: {}",
            file.display(),
            out.stderr.trim()
        ))
        .hint("`docker compose config` in the worktree shows the same")
        .into());
    }
    let model: Value =
        serde_json::from_str(&out.stdout).context("reading `docker compose config`")?;
    let services = model["services"].as_object().cloned().unwrap_or_default();
    for name in std::iter::once(&spec.service).chain(&spec.services) {
        if !services.contains_key(name) {
            let known: Vec<&String> = services.keys().collect();
            return Err(
                Fail::new(format!("service `{name}` is not in {}", file.display()))
                    .hint(format!(
                        "its services: {}",
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into(),
            );
        }
    }
    check_model(&model, spec, project, file)?;
    Ok(model)
}

/// What the override says about one env's instance of a layer.
pub struct Overrides<'a> {
    pub spec: &'a ComposeService,
    /// The leased port on the engine's host, published to `spec.port`.
    pub host_port: u16,
    /// Bind the published port to loopback (this machine's engine) or to all addresses (an
    /// engine elsewhere, reached by its host name).
    pub loopback: bool,
    /// The env's variables for the layer, with `PORT` as the container port.
    pub vars: &'a [(String, String)],
    pub labels: &'a [(String, String)],
    /// The workspace's infra network (`[workspace] docker_network`).
    pub network: Option<&'a str>,
    /// The layer's project: images grove builds are named after it.
    pub project: &'a str,
    /// The env's network ([`env_network`]), which the layer's services join; `None` where
    /// the workspace has one compose part only (nothing to meet).
    pub env_network: Option<&'a str>,
    /// The layer: its services answer to its name on the env's network.
    pub layer: &'a str,
}

/// The env's network in the override (a key no compose file of the user's would pick).
const ENV_NET_KEY: &str = "grove_env";

/// The services `up` of the layer starts: its own, and what they depend on.
pub fn started_services(model: &Value, spec: &ComposeService) -> Vec<String> {
    let mut out: Vec<String> = std::iter::once(&spec.service)
        .chain(&spec.services)
        .cloned()
        .collect();
    let mut i = 0;
    while i < out.len() {
        let deps = &model["services"][&out[i]]["depends_on"];
        for dep in deps.as_object().into_iter().flat_map(|m| m.keys()) {
            if !out.contains(dep) {
                out.push(dep.clone());
            }
        }
        i += 1;
    }
    out
}

/// The named volumes the started services mount.
fn used_volumes(model: &Value, started: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in started {
        for v in model["services"][s]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if v["type"] == "volume"
                && let Some(src) = v["source"].as_str()
                && !out.iter().any(|o| o == src)
            {
                out.push(src.to_string());
            }
        }
    }
    out
}

/// What in a compose file would make envs share things: a fixed container name (the second
/// env could not start), a volume with a fixed name (every env would use one, and destroy
/// would remove data that is not the env's). Each a clear error saying what to change.
pub fn check_model(model: &Value, spec: &ComposeService, project: &str, file: &Path) -> Result<()> {
    let started = started_services(model, spec);
    for s in &started {
        if let Some(name) = model["services"][s]["container_name"].as_str() {
            return Err(Fail::new(format!(
                "service `{s}` of {} sets `container_name: {name}`: every env would make a container of that name",
                file.display()
            ))
            .hint("remove `container_name`; grove names each env's containers after its project")
            .into());
        }
    }
    let mut nets: Vec<&String> = Vec::new();
    for s in &started {
        for n in model["services"][s]["networks"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
        {
            if !nets.contains(&n) {
                nets.push(n);
            }
        }
    }
    for n in nets {
        let net = &model["networks"][n];
        if net["external"].as_bool().unwrap_or(false) {
            continue;
        }
        let fixed_name = net["name"]
            .as_str()
            .filter(|name| *name != format!("{project}_{n}"));
        let subnet = net["ipam"]["config"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["subnet"].as_str());
        if let Some(what) = fixed_name
            .map(|name| format!("a fixed name (`{name}`)"))
            .or_else(|| subnet.map(|s| format!("a fixed subnet (`{s}`)")))
        {
            return Err(Fail::new(format!(
                "network `{n}` of {} has {what}: a second env could not make its own",
                file.display()
            ))
            .hint("remove it so that each env gets a network of its own, or mark the network `external: true` to share it on purpose")
            .into());
        }
    }
    for v in used_volumes(model, &started) {
        let vol = &model["volumes"][&v];
        if vol["external"].as_bool().unwrap_or(false) {
            continue;
        }
        if let Some(name) = vol["name"].as_str()
            && name != format!("{project}_{v}")
        {
            return Err(Fail::new(format!(
                "volume `{v}` of {} has a fixed name (`{name}`): every env would share it, and destroying one would remove it",
                file.display()
            ))
            .hint("remove its `name:` so that each env gets its own, or mark it `external: true` to share it on purpose")
            .into());
        }
    }
    Ok(())
}

/// The override file: the published port, the env's variables, grove's labels on every
/// service, network, volume and image the layer's `up` makes, `restart: "no"` on the layer's
/// services (grove's supervisor applies the layer's policy: one party restarts), the env's
/// network as the project's default, and the shared infra network.
pub fn override_file(model: &Value, o: &Overrides<'_>) -> Value {
    // Compose interpolates `$` in every file it reads, this one too: a value is data.
    let lit = |v: &str| json!(v.replace('$', "$$"));
    let labels: Map<String, Value> = o.labels.iter().map(|(k, v)| (k.clone(), lit(v))).collect();
    let env: Map<String, Value> = o.vars.iter().map(|(k, v)| (k.clone(), lit(v))).collect();
    let started = started_services(model, o.spec);
    let mut services = Map::new();
    for name in &started {
        let ours = name == &o.spec.service || o.spec.services.contains(name);
        let mut svc = Map::new();
        // What the layer's services depend on starts with them: labelled too, so that down,
        // destroy and doctor find it.
        svc.insert("labels".into(), Value::Object(labels.clone()));
        if ours {
            svc.insert("environment".into(), Value::Object(env.clone()));
            svc.insert("restart".into(), json!("no"));
            // A server as PID 1 gets no default signal handlers: an init passes SIGTERM on,
            // so a stop takes a moment, not Compose's 10 s before SIGKILL.
            svc.insert("init".into(), json!(true));
            // A service in another's network namespace (`network_mode: service:x`) takes no
            // networks or hosts of its own: Compose refuses them.
            if model["services"][name]["network_mode"].is_null() {
                // The URLs of other layers are the host's (what a browser needs); a server in
                // the container reaches a layer run on the host at this name, on Linux too.
                svc.insert(
                    "extra_hosts".into(),
                    json!(["host.docker.internal:host-gateway"]),
                );
                // The layer's own services join the env's network, where each layer answers
                // to its name (unique in grove.toml; two layers' files may both have `web`).
                // What they depend on stays on the layer's project network: two layers'
                // `db`s on one network would answer to one name, each for the other.
                let mut nets = Map::new();
                nets.insert("default".into(), json!({}));
                if o.env_network.is_some() {
                    nets.insert(ENV_NET_KEY.into(), json!({ "aliases": [o.layer] }));
                }
                if let Some(net) = o.network {
                    nets.insert(net.to_string(), json!({}));
                }
                if nets.len() > 1 {
                    svc.insert("networks".into(), Value::Object(nets));
                }
            }
        }
        if name != &o.spec.service && !model["services"][name]["ports"].is_null() {
            // Only the layer's service is published, on its leased port: a fixed port of a
            // helper or a dependency would collide between envs.
            svc.insert("ports".into(), json!([]));
        }
        if name == &o.spec.service {
            let mut port = Map::new();
            port.insert("target".into(), json!(o.spec.port));
            port.insert("published".into(), json!(o.host_port.to_string()));
            port.insert("protocol".into(), json!("tcp"));
            if o.loopback {
                port.insert("host_ip".into(), json!("127.0.0.1"));
            }
            svc.insert("ports".into(), json!([Value::Object(port)]));
        }
        if model["services"][name]["build"].is_object() {
            svc.insert(
                "build".into(),
                json!({ "labels": Value::Object(labels.clone()) }),
            );
            // A built service that names its image would tag one image for every env (and
            // destroy would remove that tag): the env's build gets a name of its own.
            if model["services"][name]["image"].is_string() {
                svc.insert("image".into(), json!(format!("{}-{name}", o.project)));
            }
        }
        services.insert(name.clone(), Value::Object(svc));
    }
    let mut networks = Map::new();
    if let Some(env_net) = o.env_network {
        networks.insert(
            ENV_NET_KEY.into(),
            json!({ "name": env_net, "external": true }),
        );
    }
    for (name, n) in model["networks"].as_object().into_iter().flatten() {
        if !n["external"].as_bool().unwrap_or(false) {
            networks.insert(
                name.clone(),
                json!({ "labels": Value::Object(labels.clone()) }),
            );
        }
    }
    if let Some(net) = o.network {
        networks.insert(net.to_string(), json!({ "name": net, "external": true }));
    }
    let mut volumes = Map::new();
    for name in used_volumes(model, &started) {
        if !model["volumes"][&name]["external"]
            .as_bool()
            .unwrap_or(false)
        {
            volumes.insert(name, json!({ "labels": Value::Object(labels.clone()) }));
        }
    }
    let mut root = Map::new();
    root.insert("services".into(), Value::Object(services));
    root.insert("networks".into(), Value::Object(networks));
    if !volumes.is_empty() {
        root.insert("volumes".into(), Value::Object(volumes));
    }
    Value::Object(root)
}

/// The override as Compose reads it: JSON is YAML, and YAML's `!override` tag makes grove's
/// `ports` replace the file's instead of adding to them (a fixed `5432:5432` in the file would
/// collide between envs). Compose 2.24 or later.
pub fn render_override(over: &Value) -> Result<String> {
    let text = serde_json::to_string_pretty(over)?;
    Ok(text.replace("\"ports\": [", "\"ports\": !override ["))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ComposeService {
        ComposeService {
            file: String::new(),
            service: "web".into(),
            port: 3000,
            services: vec!["worker".into()],
        }
    }

    #[test]
    fn ps_lines_give_state_health_and_exit_code() {
        let c = parse_ps_line("t\tweb\tweb\trunning\tUp 3 seconds (healthy)\tp-web-1").unwrap();
        assert_eq!(
            (c.state.as_str(), c.health.as_deref()),
            ("running", Some("healthy"))
        );
        let c = parse_ps_line("t\tweb\tweb\trunning\tUp 1 second (health: starting)\tx").unwrap();
        assert_eq!(c.health.as_deref(), Some("starting"));
        let c = parse_ps_line("t\tweb\tworker\texited\tExited (137) 2 minutes ago\tx").unwrap();
        assert_eq!((c.exit_code, c.health), (Some(137), None));
        assert!(parse_ps_line("garbage").is_none());
    }

    #[test]
    fn project_names_are_in_composes_alphabet() {
        assert_eq!(
            project_name("Shop-1a2b", "feat_login_x", "Web"),
            "grove-shop-1a2b-feat_login_x-web"
        );
    }

    #[test]
    fn only_a_whole_authority_is_rewritten() {
        let r = |v: &str| replace_authority(v, "localhost:6000", "db:5432");
        assert_eq!(r("http://localhost:6000/x"), "http://db:5432/x");
        assert_eq!(r("http://localhost:60001"), "http://localhost:60001");
        assert_eq!(r("http://mylocalhost:6000"), "http://mylocalhost:6000");
        assert_eq!(
            r("a=localhost:6000,b=localhost:6000"),
            "a=db:5432,b=db:5432"
        );
    }

    #[test]
    fn loopback_addresses_are_this_machine() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]"] {
            assert!(is_local(h), "{h}");
        }
        for h in ["10.0.0.7", "build-2", "[fd00::7]"] {
            assert!(!is_local(h), "{h}");
        }
    }

    #[test]
    fn the_override_publishes_labels_and_joins_the_network() {
        let model = json!({
            "services": {
                "web": {
                    "build": { "context": "." }, "image": "shop/web:dev",
                    "depends_on": { "cache": {} },
                    "volumes": [{ "type": "volume", "source": "data" }, { "type": "volume", "source": "shared" }]
                },
                "worker": { "image": "w" },
                "cache": { "image": "c" },
                "unused": { "image": "u" }
            },
            "networks": { "default": {}, "back": {} },
            "volumes": { "data": {}, "shared": { "external": true }, "other": {} }
        });
        let labels = [(TOKEN_LABEL.to_string(), "t0k".to_string())];
        let vars = [("PORT".to_string(), "3000".to_string())];
        let o = override_file(
            &model,
            &Overrides {
                spec: &spec(),
                host_port: 27100,
                loopback: true,
                vars: &vars,
                labels: &labels,
                network: Some("infra"),
                project: "grove-ws-feat-web",
                env_network: Some("grove-ws-feat"),
                layer: "front",
            },
        );
        let web = &o["services"]["web"];
        assert_eq!(web["ports"][0]["published"], "27100");
        assert_eq!(web["ports"][0]["target"], 3000);
        assert_eq!(web["ports"][0]["host_ip"], "127.0.0.1");
        assert_eq!(web["restart"], "no");
        assert_eq!(web["labels"][TOKEN_LABEL], "t0k");
        assert_eq!(web["build"]["labels"][TOKEN_LABEL], "t0k");
        assert!(web["networks"]["infra"].is_object());
        // The worker is the layer's too, but publishes nothing and builds nothing.
        let worker = &o["services"]["worker"];
        assert!(worker["ports"].is_null());
        assert!(worker["build"].is_null());
        assert_eq!(worker["labels"][TOKEN_LABEL], "t0k");
        assert_eq!(o["networks"]["infra"]["external"], true);
        assert_eq!(o["networks"][ENV_NET_KEY]["name"], "grove-ws-feat");
        assert_eq!(o["networks"][ENV_NET_KEY]["external"], true);
        assert_eq!(web["networks"][ENV_NET_KEY]["aliases"][0], "front");
        assert_eq!(o["networks"]["back"]["labels"][TOKEN_LABEL], "t0k");
        // A dependency stays on the layer's own network, unpublished.
        assert!(o["services"]["cache"]["networks"].is_null());
        // What the layer depends on is labelled (found by down, destroy, doctor), nothing else.
        assert_eq!(o["services"]["cache"]["labels"][TOKEN_LABEL], "t0k");
        assert!(o["services"]["cache"]["environment"].is_null());
        assert!(o["services"]["unused"].is_null());
        assert!(
            o["volumes"]["other"].is_null(),
            "no service of the layer mounts it"
        );
        // A built image gets the env's own name, not the file's shared tag.
        assert_eq!(o["services"]["web"]["image"], "grove-ws-feat-web-web");
        assert!(
            render_override(&o)
                .unwrap()
                .contains("\"ports\": !override [")
        );
        assert_eq!(o["volumes"]["data"]["labels"][TOKEN_LABEL], "t0k");
        assert!(
            o["volumes"]["shared"].is_null(),
            "an external volume is not ours"
        );
    }
}
