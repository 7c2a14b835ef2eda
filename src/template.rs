//! `{{ … }}` templates in grove.toml (`url`, `env` values), rendered per environment.
//!
//! Undefined values are errors, never empty strings: `{{ layers.apii.url }}` must not quietly
//! wire a front to nothing. Templates only produce values; commands (`run`, `setup`) are never
//! templated, they read the values from environment variables, so a branch name holding `$(…)`
//! or `;` never reaches a shell as code.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

/// Where a template of grove.toml is rendered: each place offers its own variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A layer's `url`.
    Url,
    /// A value of a layer's `env` table.
    Env,
    /// The `url` of an `isolate` recipe.
    IsolateUrl,
    /// `[agent] prompt`.
    Prompt,
    /// `[review] prompt`.
    ReviewPrompt,
}

use Place::{Env as E, IsolateUrl as I, Prompt as P, ReviewPrompt as R, Url as U};

/// Every template variable, in one place: config validation reads it, the renderers provide
/// it (debug builds check each context against it, see [`render_in`]), and a test checks
/// that the README's table documents it, with what each holds.
pub const VARIABLES: &[(&str, &[Place])] = &[
    ("host", &[U]),
    ("port", &[U, E]),
    ("env", &[U, E, I, P, R]),
    ("env_id", &[U, E, I]),
    ("layer", &[U, E, I]),
    ("branch", &[U, E]),
    ("worktree", &[E]),
    ("workspace", &[E]),
    ("shared_url", &[I]),
    ("layers", &[E, P, R]),
    ("ticket", &[P, R]),
    ("ticket_text", &[P, R]),
    ("criteria", &[P, R]),
    ("solution", &[P, R]),
    ("context", &[P]),
    ("diffs", &[R]),
    ("diff_files", &[R]),
    ("checks", &[R]),
    ("verdict", &[R]),
];

/// The variables `place` offers.
pub fn available(place: Place) -> Vec<&'static str> {
    VARIABLES
        .iter()
        .filter(|(_, places)| places.contains(&place))
        .map(|(name, _)| *name)
        .collect()
}

/// The attributes of `layers.NAME` that `place` offers (`None`: `layers` is not a map there).
pub fn layer_attrs(place: Place) -> Option<&'static [&'static str]> {
    match place {
        Place::Env => Some(&["url"]),
        Place::Prompt => Some(&["url", "worktree"]),
        Place::Url | Place::IsolateUrl | Place::ReviewPrompt => None,
    }
}

fn engine() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Values land in env vars and URLs, never in HTML: no escaping.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Compiles `source` and returns the variables it reads, nested lookups joined with dots
/// (`layers.api.url`), or the syntax error.
pub fn variables(source: &str) -> Result<BTreeSet<String>, String> {
    let env = engine();
    let tmpl = env.template_from_str(source).map_err(|e| describe(&e))?;
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

/// Renders `source`, a template of `place`, with `ctx`; debug builds (the tests') check that
/// `ctx` offers exactly the variables [`VARIABLES`] lists for `place`.
pub fn render_in(place: Place, source: &str, ctx: &Value) -> Result<String, String> {
    #[cfg(not(debug_assertions))]
    let _ = place;
    #[cfg(debug_assertions)]
    {
        let keys: BTreeSet<String> = ctx
            .try_iter()
            .map(|it| it.filter_map(|k| k.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let offered: BTreeSet<String> = available(place).into_iter().map(String::from).collect();
        assert_eq!(
            keys, offered,
            "the {place:?} context and template::VARIABLES disagree"
        );
    }
    render(source, ctx)
}

/// Renders `source` with `ctx`. Each distinct template is compiled once per process and kept:
/// `ps` renders every layer's URL for every env, and compiling dominated its time.
fn render(source: &str, ctx: &Value) -> Result<String, String> {
    thread_local! {
        static CACHE: std::cell::RefCell<Environment<'static>> = std::cell::RefCell::new(engine());
    }
    CACHE.with(|cache| {
        let mut env = cache.borrow_mut();
        if env.get_template(source).is_err() {
            env.add_template_owned(source.to_string(), source.to_string())
                .map_err(|e| describe(&e))?;
        }
        let tmpl = env.get_template(source).map_err(|e| describe(&e))?;
        tmpl.render(ctx).map_err(|e| describe(&e))
    })
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table of template variables says what [`VARIABLES`] says.
    #[test]
    fn the_readme_documents_every_variable() {
        let readme = include_str!("../README.md");
        let places = [
            Place::Url,
            Place::Env,
            Place::IsolateUrl,
            Place::Prompt,
            Place::ReviewPrompt,
        ];
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
        for (name, offered) in VARIABLES {
            let row = rows
                .iter()
                .find(|r| r.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("no README row for `{name}`"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            for (i, p) in places.iter().enumerate() {
                assert_eq!(
                    cells[2 + i] == "x",
                    offered.contains(p),
                    "README row of `{name}`, column {p:?}"
                );
            }
        }
    }

    #[test]
    fn nested_variables_are_reported_with_dots() {
        let vars = variables("http://{{ layers.api.url }}/{{ port }}").unwrap();
        assert_eq!(
            vars,
            BTreeSet::from(["layers.api.url".into(), "port".into()])
        );
    }

    #[test]
    fn undefined_is_an_error_not_an_empty_string() {
        let ctx = minijinja::context! { port => 3001 };
        assert!(render("{{ prot }}", &ctx).is_err());
        assert_eq!(render("x{{ port }}", &ctx).unwrap(), "x3001");
    }

    #[test]
    fn syntax_error_is_reported() {
        assert!(variables("{{ port ").is_err());
    }

    #[test]
    fn values_are_not_html_escaped() {
        let ctx = minijinja::context! { v => "a&b<c>\"'" };
        assert_eq!(render("{{ v }}", &ctx).unwrap(), "a&b<c>\"'");
    }
}
