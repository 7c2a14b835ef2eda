//! Docker Compose as a runner (issue #13): a compose project per env, run from the layer's
//! worktree with an override file grove writes in the env folder (never in the repo).
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

/// The env's compose project: `grove-<workspace key>-<env>`, in Compose's alphabet.
pub fn project_name(ws_key: &str, env: &str) -> String {
    let raw = format!("grove-{ws_key}-{env}").to_ascii_lowercase();
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
pub fn require(engine: &Engine) -> Result<()> {
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
    Ok(())
}

/// What a compose layer runs in an env: the project, its files, and where it runs from.
pub struct Project {
    pub engine: Engine,
    pub name: String,
    /// The layer's worktree: relative build contexts and bind mounts are the env's own code.
    pub dir: PathBuf,
    pub file: PathBuf,
    pub override_file: PathBuf,
}

impl Project {
    /// `docker compose` for this project (its name, folder and both files).
    pub fn compose(&self) -> Cmd {
        docker(&self.engine)
            .arg("compose")
            .args(["--project-name", &self.name])
            .arg("--project-directory")
            .arg(&self.dir)
            .arg("--file")
            .arg(&self.file)
            .arg("--file")
            .arg(&self.override_file)
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

/// The compose file as Compose reads it (`config --format json`): the services it has, which
/// are built, their volumes. Fails, naming the service, when the layer's is not there.
pub fn model(
    engine: &Engine,
    worktree: &Path,
    file: &Path,
    spec: &ComposeService,
) -> Result<Value> {
    let out = docker(engine)
        .args(["compose", "--project-directory"])
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
    pub network: Option<&'a str>,
}

/// The override file (JSON, which Compose reads as YAML): the published port, the env's
/// variables, grove's labels on every service, network, volume and built image of the layer,
/// `restart: "no"` (grove's supervisor applies the layer's policy: one party restarts), and
/// the shared infra network.
pub fn override_file(model: &Value, o: &Overrides<'_>) -> Value {
    let labels: Map<String, Value> = o
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let env: Map<String, Value> = o.vars.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut services = Map::new();
    for name in std::iter::once(&o.spec.service).chain(&o.spec.services) {
        let mut svc = Map::new();
        svc.insert("environment".into(), Value::Object(env.clone()));
        svc.insert("labels".into(), Value::Object(labels.clone()));
        svc.insert("restart".into(), json!("no"));
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
        }
        if let Some(net) = o.network {
            let mut nets = Map::new();
            nets.insert("default".into(), json!({}));
            nets.insert(net.to_string(), json!({}));
            svc.insert("networks".into(), Value::Object(nets));
        }
        services.insert(name.clone(), Value::Object(svc));
    }
    let mut networks = Map::new();
    networks.insert(
        "default".into(),
        json!({ "labels": Value::Object(labels.clone()) }),
    );
    if let Some(net) = o.network {
        networks.insert(net.to_string(), json!({ "name": net, "external": true }));
    }
    let mut volumes = Map::new();
    for (name, v) in model["volumes"].as_object().into_iter().flatten() {
        if !v["external"].as_bool().unwrap_or(false) {
            volumes.insert(
                name.clone(),
                json!({ "labels": Value::Object(labels.clone()) }),
            );
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
    fn project_names_are_in_composes_alphabet() {
        assert_eq!(
            project_name("Shop-1a2b", "feat/Login.x"),
            "grove-shop-1a2b-feat_login_x"
        );
    }

    #[test]
    fn the_override_publishes_labels_and_joins_the_network() {
        let model = json!({
            "services": { "web": { "build": { "context": "." } }, "worker": { "image": "w" } },
            "volumes": { "data": {}, "shared": { "external": true } }
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
        assert_eq!(o["networks"]["default"]["labels"][TOKEN_LABEL], "t0k");
        assert_eq!(o["volumes"]["data"]["labels"][TOKEN_LABEL], "t0k");
        assert!(
            o["volumes"]["shared"].is_null(),
            "an external volume is not ours"
        );
    }
}
