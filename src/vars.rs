//! The wiring: the URL of every layer as one env sees it, and the variables every process
//! grove starts in that env gets.
//!
//! One rule: `layers.<name>.url` is the env's dedicated instance when it has one, otherwise the
//! layer's `shared_url`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use indexmap::IndexMap;
use minijinja::Value;

use crate::config::{Config, Layer};
use crate::error::Fail;
use crate::template;

/// What a dedicated layer instance looks like, before or after it is made.
#[derive(Debug, Clone)]
pub struct Dedicated {
    pub port: Option<u16>,
    pub branch: String,
    pub worktree: PathBuf,
}

/// An env as the templates see it.
#[derive(Debug, Clone)]
pub struct EnvView<'a> {
    pub config: &'a Config,
    pub root: &'a Path,
    pub name: &'a str,
    pub ident: &'a str,
    pub dedicated: IndexMap<String, Dedicated>,
    /// Infra layers the env has of its own, with their URLs.
    pub isolated: IndexMap<String, String>,
    /// The host the env's Docker engine publishes ports on (`localhost` for this machine's).
    pub engine_host: &'a str,
}

/// `GROVE_<LAYER>_URL` for layer `name`.
pub fn url_var(name: &str) -> String {
    format!("GROVE_{}_URL", name.to_ascii_uppercase().replace('-', "_"))
}

impl EnvView<'_> {
    /// The URL of `layer` in this env: its dedicated instance's, else its shared one.
    pub fn url(&self, layer: &Layer) -> Result<Option<String>> {
        if let Some(url) = self.isolated.get(&layer.name) {
            return Ok(Some(url.clone()));
        }
        let Some(d) = self.dedicated.get(&layer.name) else {
            return Ok(layer.shared_url.clone());
        };
        let Some(tmpl) = &layer.url else {
            return Ok(None);
        };
        // A compose layer's port is published by its engine, maybe on another machine.
        let host = if matches!(layer.runner, crate::config::Runner::Compose(_)) {
            self.engine_host
        } else {
            "localhost"
        };
        let ctx = minijinja::context! {
            host => host,
            port => d.port,
            env => self.name,
            env_id => self.ident,
            layer => &layer.name,
            branch => &d.branch,
        };
        template::render_in(template::Place::Url, tmpl, &ctx)
            .map(Some)
            .map_err(|e| {
                Fail::new(format!(
                    "cannot render `url` of layer `{}`: {e}",
                    layer.name
                ))
                .into()
            })
    }

    fn urls(&self) -> Result<IndexMap<String, Option<String>>> {
        self.config
            .layers
            .values()
            .map(|l| Ok((l.name.clone(), self.url(l)?)))
            .collect()
    }

    /// Every variable a process of dedicated layer `layer` gets, in a stable order.
    pub fn vars(&self, layer: &Layer) -> Result<Vec<(String, String)>> {
        let d = self
            .dedicated
            .get(&layer.name)
            .expect("vars are asked for dedicated layers");
        let urls = self.urls()?;
        let mut vars = Vec::new();
        if let Some(port) = d.port {
            vars.push(("PORT".to_string(), port.to_string()));
        }
        vars.push(("GROVE_ENV".into(), self.name.into()));
        vars.push(("GROVE_ENV_ID".into(), self.ident.into()));
        vars.push(("GROVE_LAYER".into(), layer.name.clone()));
        vars.push(("GROVE_BRANCH".into(), d.branch.clone()));
        vars.push((
            "GROVE_WORKTREE".into(),
            d.worktree.to_string_lossy().into_owned(),
        ));
        vars.push((
            "GROVE_WORKSPACE".into(),
            self.root.to_string_lossy().into_owned(),
        ));
        for (name, url) in &urls {
            if let Some(url) = url {
                vars.push((url_var(name), url.clone()));
            }
        }
        let layers: std::collections::BTreeMap<&str, Value> = urls
            .iter()
            .filter_map(|(name, url)| {
                let url = url.as_ref()?;
                Some((name.as_str(), minijinja::context! { url => url }))
            })
            .collect();
        let ctx = minijinja::context! {
            port => d.port,
            env => self.name,
            env_id => self.ident,
            layer => &layer.name,
            branch => &d.branch,
            worktree => d.worktree.to_string_lossy(),
            workspace => self.root.to_string_lossy(),
            layers => layers,
        };
        for (key, tmpl) in &layer.env {
            let value = template::render_in(template::Place::Env, tmpl, &ctx).map_err(|e| {
                let mut fail =
                    Fail::new(format!("cannot render `env.{key}` of layer `{}`: {e}", layer.name));
                if let Some(missing) = self.missing_url(tmpl) {
                    fail = Fail::new(format!(
                        "`env.{key}` of layer `{}` reads `layers.{missing}.url`, but this env has \
                         no `{missing}` of its own and `{missing}` has no `shared_url`",
                        layer.name
                    ))
                    .hint(format!(
                        "add `shared_url` to [layers.{missing}], or give the env its own with `--from-{missing}=BASE`"
                    ));
                }
                fail
            })?;
            vars.push((key.clone(), value));
        }
        Ok(vars)
    }

    /// The layer a template reads the URL of when that URL does not exist in this env.
    fn missing_url(&self, tmpl: &str) -> Option<String> {
        template::variables(tmpl).ok()?.into_iter().find_map(|v| {
            let name = v.strip_prefix("layers.")?.split('.').next()?.to_string();
            let layer = self.config.layers.get(&name)?;
            (!self.dedicated.contains_key(&name) && layer.shared_url.is_none()).then_some(name)
        })
    }
}

/// `KEY=value` lines, quoted so that both POSIX `sh` (`set -a; . file`) and dotenv parsers
/// read the value back unchanged.
pub fn dotenv_lines(vars: &[(String, String)]) -> Vec<String> {
    vars.iter()
        .map(|(k, v)| format!("{k}={}", dotenv_quote(v)))
        .collect()
}

fn dotenv_quote(v: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+,=".contains(c);
    if !v.is_empty() && v.chars().all(plain) {
        v.to_string()
    } else if !v.contains('\'') {
        // A newline stays a newline inside single quotes, for `sh` as for dotenv parsers.
        format!("'{v}'")
    } else {
        let mut s = String::from("\"");
        for c in v.chars() {
            match c {
                '"' | '\\' | '$' | '`' => {
                    s.push('\\');
                    s.push(c);
                }
                c => s.push(c),
            }
        }
        s.push('"');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_quoting() {
        let vars = vec![
            ("A".to_string(), "http://localhost:3001".to_string()),
            ("B".to_string(), "x;$(touch pwned)".to_string()),
            ("C".to_string(), "it's".to_string()),
            ("D".to_string(), String::new()),
            ("E".to_string(), "two\nlines".to_string()),
            ("F".to_string(), "it's\n$HOME".to_string()),
        ];
        assert_eq!(
            dotenv_lines(&vars),
            vec![
                "A=http://localhost:3001",
                "B='x;$(touch pwned)'",
                "C=\"it's\"",
                "D=''",
                "E='two\nlines'",
                "F=\"it's\n\\$HOME\"",
            ]
        );
    }

    #[test]
    fn url_var_names() {
        assert_eq!(url_var("api"), "GROVE_API_URL");
        assert_eq!(url_var("web-app"), "GROVE_WEB_APP_URL");
    }
}
