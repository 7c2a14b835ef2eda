//! `{{ … }}` templates in grove.toml (`url`, `env` values), rendered per environment.
//!
//! Undefined values are errors, never empty strings: `{{ layers.apii.url }}` must not quietly
//! wire a front to nothing. Templates only produce values; commands (`run`, `setup`) are never
//! templated, they read the values from environment variables, so a branch name holding `$(…)`
//! or `;` never reaches a shell as code.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

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

/// Renders `source` with `ctx`. Each distinct template is compiled once per process and kept:
/// `ps` renders every layer's URL for every env, and compiling dominated its time.
pub fn render(source: &str, ctx: &Value) -> Result<String, String> {
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
