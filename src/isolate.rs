//! Infra layers of an env's own: a PostgreSQL database made from a template, a Redis database
//! index, or whatever a recipe of the user's makes. Shared by default; `--isolate-<layer>` makes
//! one. Every resource is journaled before it is made and recorded once it is, so a failed
//! create, `destroy` and a crash's cleanup can always drop it.
//!
//! PostgreSQL goes through `psql` rather than a client crate: wherever PostgreSQL is used,
//! `psql` is there, it speaks every authentication method the server may ask for, and it keeps
//! a large dependency (and its TLS stack) out of grove. Redis goes through its protocol, which
//! takes a few lines, so isolation does not depend on `redis-cli` being installed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::{Isolate, Layer};
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::exec::Cmd;
use crate::proc::{Role, Tag};
use crate::state::{Action, EnvRow, IsolateKind, IsolatedRow};
use crate::{failpoint, supervisor, template, ui};

/// How long an isolated resource's `ready` command may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why `--isolate-<layer>` does not apply to `layer`, which has no `isolate` recipe, and the
/// hint that fixes it: a code layer gets its own instance by branching, an infra layer from
/// a recipe of its URL's kind.
pub fn no_recipe(layer: &Layer, flag: &str) -> Fail {
    let name = &layer.name;
    let verb = if flag.starts_with("--isolate-") {
        "does not exist"
    } else {
        "does not apply"
    };
    if layer.is_code() {
        return Fail::usage(format!(
            "layer `{name}` has no `isolate` recipe: `{flag}` {verb} (it is a code layer)"
        ))
        .hint(format!(
            "`--from-{name}=BASE` gives the env its own `{name}` (worktree, branch and server); `isolate` is for infra layers"
        ));
    }
    let scheme = layer
        .shared_url
        .as_deref()
        .and_then(|u| u.split_once("://"))
        .map_or("", |(s, _)| s);
    let recipe = match scheme {
        "postgres" | "postgresql" => "isolate = { kind = \"postgres\", template = \"<database>\" }",
        "redis" => "isolate = { kind = \"redis\" }",
        _ => "isolate.create = \"…\"` and `isolate.destroy = \"…\"",
    };
    Fail::usage(format!(
        "layer `{name}` has no `isolate` recipe: `{flag}` {verb}"
    ))
    .hint(format!(
        "add `{recipe}` to [layers.{name}] in grove.toml (see the README's grove.toml section)"
    ))
}

/// `url` with its host and port replaced, keeping scheme, credentials, path and query.
pub fn with_host_port(url: &str, host: &str, port: u16) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(cut);
    let userinfo = authority
        .rsplit_once('@')
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    Some(format!("{scheme}://{userinfo}{host}:{port}{tail}"))
}

/// `url` with its path (the database) replaced by `/db`, keeping credentials and query.
pub fn with_db(url: &str, db: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(cut);
    let query = tail.find(['?', '#']).map_or("", |i| &tail[i..]);
    Some(format!("{scheme}://{authority}/{db}{query}"))
}

/// The mark grove leaves on what it makes for `env` (a database's comment, a key in a Redis
/// database): recovery and `doctor` drop only what carries it.
pub fn marker(env: &EnvRow) -> String {
    format!("grove-env:{}", env.token)
}

/// The env token a mark names.
pub fn marker_token(mark: &str) -> Option<&str> {
    mark.strip_prefix("grove-env:")
        .and_then(|t| t.split_whitespace().next())
        .filter(|t| !t.is_empty())
}

/// The key grove writes in an isolated Redis database, holding [`marker`].
pub const REDIS_MARK_KEY: &str = "__grove_env__";

fn tag(env: &EnvRow, layer: &Layer) -> Tag {
    Tag::new(&env.token, Role::Isolate).layer(&layer.name)
}

/// Makes `layer` of its own for `env`: the intent journaled first, the resource marked as the
/// env's, recorded once made.
pub fn create(ctx: &mut Ctx, env: &EnvRow, layer: &Layer) -> Result<IsolatedRow> {
    let isolate = layer
        .isolate
        .as_ref()
        .context("layer has no isolate recipe")?;
    let shared = layer.shared_url.clone().unwrap_or_default();
    let (kind, resource, url) = match isolate {
        Isolate::Postgres { template } => {
            let db = format!("{template}_{}", env.ident);
            // Journaled before psql runs: a grove killed while the database is being made
            // leaves an intent, and the undo drops the database only if its comment names
            // this env (one that existed before, kept by `--keep-data`, is never dropped).
            journal(ctx, env, layer, &db)?;
            failpoint::hit("isolate:before-create");
            postgres_create(&shared, template, &db, &layer.name, env, &tag(env, layer))?;
            failpoint::hit("isolate:after-create");
            let url = with_db(&shared, &db).context("bad shared_url")?;
            (IsolateKind::Postgres, db, url)
        }
        Isolate::Redis => {
            let server = redis_server_key(&shared)
                .ok_or_else(|| Fail::new(format!("cannot read host and port from `{shared}`")))?;
            // The shared index is the main stack's, empty or not.
            let shared_db = redis_db_of(&shared);
            let probe_err = std::cell::RefCell::new(None);
            failpoint::hit("isolate:before-create");
            // The lease is a row of the env: if grove dies now, it goes with the env.
            let db = ctx
                .store
                .lease_redis_db(&server, env.key, &layer.name, |n| {
                    n != shared_db
                        && match redis(&shared, n, &[&["DBSIZE"]]) {
                            Ok(r) => r.first().is_some_and(|s| s == "0"),
                            Err(e) => {
                                probe_err.borrow_mut().get_or_insert(e);
                                false
                            }
                        }
                })?;
            let Some(db) = db else {
                if let Some(e) = probe_err.into_inner() {
                    return Err(e.context(format!(
                        "cannot reach the Redis of `{}` at {shared}",
                        layer.name
                    )));
                }
                return Err(Fail::new(format!(
                    "no free Redis database on {server} for `{}`: 1 to 15 are leased or hold data",
                    layer.name
                ))
                .hint("destroy envs you no longer need; a database that holds data is never taken")
                .into());
            };
            journal(ctx, env, layer, &db.to_string())?;
            redis(&shared, db, &[&["SET", REDIS_MARK_KEY, &marker(env)]])?;
            failpoint::hit("isolate:after-create");
            let url = with_db(&shared, &db.to_string()).context("bad shared_url")?;
            (IsolateKind::Redis, db.to_string(), url)
        }
        Isolate::Recipe {
            create, url, ready, ..
        } => {
            journal(ctx, env, layer, &env.ident)?;
            let url = match url {
                Some(t) => render_url(t, env, layer)?,
                None => shared.clone(),
            };
            let vars = recipe_vars(ctx, env, layer, &url);
            failpoint::hit("isolate:before-create");
            run_recipe(ctx, env, layer, "create", create, &vars)?;
            if let Some(ready) = ready {
                wait_ready(ctx, env, layer, ready, &vars)?;
            }
            failpoint::hit("isolate:after-create");
            (IsolateKind::Recipe, env.ident.clone(), url)
        }
        Isolate::Compose {
            service,
            file,
            port,
        } => {
            // Journaled first: the container and volumes carry the env's label from their
            // making, so the undo finds whatever of them exists.
            journal(ctx, env, layer, service)?;
            let range = layer.ports.with_context(|| {
                format!(
                    "layer `{}` needs `ports` to publish its service",
                    layer.name
                )
            })?;
            let host = env
                .engine_host
                .clone()
                .unwrap_or_else(|| "localhost".into());
            let host_port =
                crate::ports::lease(&mut ctx.store, env.key, &layer.name, range, None, &host)?;
            failpoint::hit("isolate:before-create");
            let engine = ctx.engine(env);
            crate::compose::isolate_up(
                &crate::compose::Isolated {
                    engine: &engine,
                    host_name: &host,
                    project: &crate::compose::project_name(&ctx.ws.key(), &env.ident, &layer.name),
                    network: crate::compose::env_network(&ctx.ws.config, &ctx.ws.key(), &env.ident)
                        .as_deref(),
                    ws_root: &ctx.ws.root,
                    env_dir: &ctx.ws.env_dir(&env.name),
                    file,
                    service,
                    port: *port,
                    host_port,
                    labels: &crate::compose::labels(
                        &env.token,
                        &ctx.ws.key(),
                        &env.name,
                        &layer.name,
                    ),
                },
                &tag(env, layer),
            )?;
            failpoint::hit("isolate:after-create");
            let url = with_host_port(&shared, &host, host_port).context("bad shared_url")?;
            (IsolateKind::Compose, service.clone(), url)
        }
    };
    let row = IsolatedRow {
        layer: layer.name.clone(),
        kind,
        resource,
        url,
        created_at: 0,
    };
    ctx.store.put_isolated(env.key, &row)?;
    failpoint::hit("isolate:after-record");
    Ok(row)
}

fn journal(ctx: &mut Ctx, env: &EnvRow, layer: &Layer, resource: &str) -> Result<()> {
    ctx.store.journal_push(
        env.key,
        &Action::Isolated {
            layer: layer.name.clone(),
            resource: resource.to_string(),
        },
    )
}

/// Undoes an isolation a create journaled (it may or may not have happened): drops the
/// resource only if it carries this env's mark.
pub fn undo(ctx: &Ctx, env: &EnvRow, layer_name: &str, resource: &str) -> Result<()> {
    let Some(layer) = ctx.ws.config.layers.get(layer_name) else {
        return Ok(());
    };
    let shared = layer.shared_url.clone().unwrap_or_default();
    match &layer.isolate {
        Some(Isolate::Postgres { .. }) => {
            // A CREATE DATABASE whose client died may still run in the server.
            wait_no_create(&shared, resource);
            match postgres_mark(&shared, resource)? {
                None => Ok(()),
                Some(mark) if marker_token(&mark) == Some(env.token.as_str()) => {
                    postgres_drop(&shared, resource)
                }
                Some(_) => {
                    ui::warn(format!(
                        "left database `{resource}` alone: it was not made for env `{}`",
                        env.name
                    ));
                    Ok(())
                }
            }
        }
        Some(Isolate::Redis) => {
            let db: u32 = resource.parse().context("bad Redis database index")?;
            let mark = redis(&shared, db, &[&["GET", REDIS_MARK_KEY]])?;
            let mark = mark.first().map(String::as_str).unwrap_or_default();
            // Leased empty to this env, so an unmarked database is still its own.
            if mark.is_empty() || marker_token(mark) == Some(env.token.as_str()) {
                redis(&shared, db, &[&["FLUSHDB"]]).map(|_| ())
            } else {
                Ok(())
            }
        }
        Some(Isolate::Recipe { .. }) => drop_resource(ctx, env, layer_name, resource),
        Some(Isolate::Compose { .. }) => {
            crate::compose::remove_layer(&ctx.engine(env), &env.token, layer_name).map(|_| ())
        }
        None => Ok(()),
    }
}

/// The Redis server of `url` as leases name it: per server, not per spelling of it
/// (`localhost` and `127.0.0.1` are one).
pub fn redis_server_key(url: &str) -> Option<String> {
    let (host, port) = supervisor::host_port(url)?;
    Some(
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .ok()
            .and_then(|mut a| a.next())
            .map_or_else(|| format!("{host}:{port}"), |a| a.to_string()),
    )
}

/// The database index a Redis URL names (0 when it names none).
pub fn redis_db_of(url: &str) -> u32 {
    url.split_once("://")
        .and_then(|(_, r)| r.split_once('/'))
        .and_then(|(_, p)| p.split(['?', '#']).next()?.parse().ok())
        .unwrap_or(0)
}

/// Drops what [`create`] made of `layer` (`resource`), by the layer's recipe.
pub fn drop_resource(ctx: &Ctx, env: &EnvRow, layer_name: &str, resource: &str) -> Result<()> {
    let Some(layer) = ctx.ws.config.layers.get(layer_name) else {
        return Err(Fail::new(format!(
            "layer `{layer_name}` is no longer in grove.toml; {resource} is left as it is"
        ))
        .into());
    };
    let shared = layer.shared_url.clone().unwrap_or_default();
    match &layer.isolate {
        Some(Isolate::Postgres { .. }) => postgres_drop(&shared, resource),
        Some(Isolate::Redis) => {
            let db: u32 = resource.parse().context("bad Redis database index")?;
            redis(&shared, db, &[&["FLUSHDB"]]).map(|_| ())
        }
        Some(Isolate::Compose { .. }) => {
            crate::compose::remove_layer(&ctx.engine(env), &env.token, layer_name).map(|_| ())
        }
        Some(Isolate::Recipe { destroy, url, .. }) => {
            let url = match url {
                Some(t) => render_url(t, env, layer)?,
                None => shared,
            };
            let vars = recipe_vars(ctx, env, layer, &url);
            run_recipe(ctx, env, layer, "destroy", destroy, &vars)
        }
        None => Err(Fail::new(format!(
            "layer `{layer_name}` has no `isolate` any more; {resource} is left as it is"
        ))
        .into()),
    }
}

fn render_url(tmpl: &str, env: &EnvRow, layer: &Layer) -> Result<String> {
    let c = minijinja::context! {
        env => &env.name, env_id => &env.ident, layer => &layer.name, shared_url => &layer.shared_url,
    };
    template::render_in(template::Place::IsolateUrl, tmpl, &c).map_err(|e| {
        Fail::new(format!(
            "cannot render `isolate.url` of `{}`: {e}",
            layer.name
        ))
        .into()
    })
}

/// What a recipe's commands get: the env's identity and the layer's URLs.
fn recipe_vars(ctx: &Ctx, env: &EnvRow, layer: &Layer, url: &str) -> Vec<(String, String)> {
    vec![
        ("GROVE_ENV".into(), env.name.clone()),
        ("GROVE_ENV_ID".into(), env.ident.clone()),
        ("GROVE_LAYER".into(), layer.name.clone()),
        (
            "GROVE_WORKSPACE".into(),
            ctx.ws.root.to_string_lossy().into_owned(),
        ),
        (
            "GROVE_SHARED_URL".into(),
            layer.shared_url.clone().unwrap_or_default(),
        ),
        ("GROVE_ISOLATED_URL".into(), url.to_string()),
    ]
}

fn run_recipe(
    ctx: &Ctx,
    env: &EnvRow,
    layer: &Layer,
    what: &str,
    script: &str,
    vars: &[(String, String)],
) -> Result<()> {
    let log = ctx.log_dir(&env.name).join("setup.log");
    let failpoint = if what == "create" {
        "isolate:during-create"
    } else {
        "destroy:during-isolate"
    };
    crate::provision::run_step_at(
        &format!("isolate.{what}"),
        script,
        &ctx.ws.root,
        vars,
        &log,
        &tag(env, layer),
        failpoint,
    )
    .with_context(|| format!("isolate.{what} of layer `{}`", layer.name))
}

fn wait_ready(
    ctx: &Ctx,
    env: &EnvRow,
    layer: &Layer,
    cmd: &str,
    vars: &[(String, String)],
) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let layer = &layer.name;
    loop {
        let ok = Cmd::shell(cmd)
            .cwd(&ctx.ws.root)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .env(crate::proc::TOKEN_VAR, tag_value_of(env, layer))
            .check()?;
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Fail::new(format!(
                "the isolated `{layer}` of `{}` was not ready after {} s (`{cmd}` never exited 0)",
                env.name,
                READY_TIMEOUT.as_secs()
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- PostgreSQL, through psql ---------------------------------------------------------------

fn tag_value_of(env: &EnvRow, layer: &str) -> String {
    Tag::new(&env.token, Role::Isolate).layer(layer).render()
}

/// Runs SQL statements, one transaction each, against the server of `url` (on its maintenance
/// database). In a process group of its own: a Ctrl-C on the terminal must not cut a
/// `CREATE DATABASE` in the middle (the statement is let finish, then undone).
fn psql(url: &str, sql: &[&str], tag: Option<&Tag>) -> Result<crate::exec::Output> {
    psql_at(url, sql, tag, None)
}

/// [`psql`], with `failpoint` hit while it runs.
fn psql_at(
    url: &str,
    sql: &[&str],
    tag: Option<&Tag>,
    failpoint: Option<&'static str>,
) -> Result<crate::exec::Output> {
    let admin = with_db(url, "postgres").context("bad shared_url")?;
    let mut cmd = Cmd::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(admin)
        .env("PGCONNECT_TIMEOUT", "5")
        .own_process_group();
    for stmt in sql {
        cmd = cmd.arg("-c").arg(stmt);
    }
    if let Some(t) = tag {
        cmd = cmd.env(crate::proc::TOKEN_VAR, t.render());
    }
    if let Some(f) = failpoint {
        cmd = cmd.failpoint(f);
    }
    Ok(cmd.output().map_err(|e| {
        Fail::new(format!("{e}"))
            .hint("isolating a PostgreSQL layer needs `psql` (apt install postgresql-client)")
    })?)
}

fn postgres_create(
    shared: &str,
    template: &str,
    db: &str,
    layer: &str,
    env: &EnvRow,
    tag: &Tag,
) -> Result<()> {
    let mark = marker(env);
    let out = psql_at(
        shared,
        &[
            &format!("CREATE DATABASE \"{db}\" TEMPLATE \"{template}\""),
            &format!(
                "COMMENT ON DATABASE \"{db}\" IS '{mark} {}'",
                sql_text(&env.name)
            ),
        ],
        Some(tag),
        Some("isolate:during-create"),
    )?;
    if out.status.success() {
        return Ok(());
    }
    let err = out.stderr.trim().to_string();
    if err.contains("is being accessed by other users") {
        // Name who holds the template: the user has to close those sessions.
        let who = psql(
            shared,
            &[&format!(
                "SELECT pid || ' ' || coalesce(usename, '?') || ' from ' || coalesce(client_addr::text, 'local socket') \
                 || coalesce(' (' || nullif(application_name, '') || ')', '') \
                 FROM pg_stat_activity WHERE datname = '{template}' AND pid <> pg_backend_pid()"
            )],
            None,
        )
        .map(|o| o.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .unwrap_or_default();
        let list = if who.is_empty() {
            "(they left since)".to_string()
        } else {
            who.join("; ")
        };
        return Err(Fail::new(format!(
            "cannot copy template database `{template}` for `{layer}`: other sessions are connected to it: {list}"
        ))
        .hint(format!(
            "PostgreSQL copies a template only while nobody is connected to it: close those sessions \
             (or `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}'`) and try again"
        ))
        .into());
    }
    if err.contains("already exists") {
        let why = match postgres_mark(shared, db).ok().flatten() {
            Some(m) if marker_token(&m).is_some() => format!(
                "grove made it for an earlier env ({}): kept by `destroy --keep-data`, or left by a crash",
                m.split_whitespace().nth(1).unwrap_or("?")
            ),
            _ => "grove did not make it".to_string(),
        };
        return Err(Fail::new(format!("database `{db}` already exists: {why}"))
            .hint(format!(
                "drop it if you no longer need it (`dropdb {db}`; `grove doctor --fix` drops those whose env is gone), or pick another env name"
            ))
            .into());
    }
    Err(Fail::new(format!(
        "cannot create database `{db}` for `{layer}`: {err}"
    ))
    .into())
}

/// `s` as the inside of an SQL string literal.
fn sql_text(s: &str) -> String {
    s.replace('\'', "''")
}

/// The comment of database `db`; `None` when there is no such database.
fn postgres_mark(shared: &str, db: &str) -> Result<Option<String>> {
    let out = psql(
        shared,
        &[&format!(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '{}'",
            sql_text(db)
        )],
        None,
    )?;
    if !out.status.success() {
        anyhow::bail!("cannot read database `{db}`: {}", out.stderr.trim());
    }
    Ok(out.stdout.lines().next().map(|l| l.trim().to_string()))
}

/// Databases of the server of `shared` that grove marked, with their marks: for `doctor`.
pub fn postgres_marked(shared: &str) -> Result<Vec<(String, String)>> {
    let out = psql(
        shared,
        &[
            "SELECT datname || '|' || shobj_description(oid, 'pg_database') FROM pg_database \
           WHERE shobj_description(oid, 'pg_database') LIKE 'grove-env:%'",
        ],
        None,
    )?;
    if !out.status.success() {
        anyhow::bail!("{}", out.stderr.trim());
    }
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(d, m)| (d.to_string(), m.to_string()))
        .collect())
}

/// Waits (30 s at most) until no session of the server runs `CREATE DATABASE` for `db`.
fn wait_no_create(shared: &str, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() \
         AND query ILIKE 'CREATE DATABASE \"{}\"%'",
        sql_text(db)
    );
    while Instant::now() < deadline {
        let busy = psql(shared, &[&sql], None)
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| o.stdout.trim() != "0");
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn postgres_drop(shared: &str, db: &str) -> Result<()> {
    // FORCE ends the sessions of servers that did not stop cleanly (PostgreSQL 13+).
    let out = psql(
        shared,
        &[&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")],
        None,
    )?;
    if out.status.success() {
        return Ok(());
    }
    let out = psql(
        shared,
        &[&format!("DROP DATABASE IF EXISTS \"{db}\"")],
        None,
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Fail::new(format!(
            "cannot drop database `{db}`: {}",
            out.stderr.trim()
        ))
        .into())
    }
}

// ---- Redis, by its protocol ------------------------------------------------------------------

/// Runs `cmds` on database `db` of the Redis server of `url`; returns each reply as text.
pub fn redis(url: &str, db: u32, cmds: &[&[&str]]) -> Result<Vec<String>> {
    let (host, port) = supervisor::host_port(url).context("bad Redis URL")?;
    let userinfo = url
        .split_once("://")
        .and_then(|(_, r)| r.split('/').next())
        .and_then(|a| a.rsplit_once('@'))
        .map(|(u, _)| u);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))?
        .next()
        .context("cannot resolve the Redis host")?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to Redis at {host}:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut send = |args: &[&str]| -> Result<String> {
        let mut msg = format!("*{}\r\n", args.len());
        for a in args {
            msg.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        w.write_all(msg.as_bytes())?;
        reply(&mut r)
    };
    if let Some(u) = userinfo {
        let (user, pass) = u.split_once(':').unwrap_or(("", u));
        if user.is_empty() {
            send(&["AUTH", pass])?
        } else {
            send(&["AUTH", user, pass])?
        };
    }
    send(&["SELECT", &db.to_string()])?;
    cmds.iter().map(|c| send(c)).collect()
}

fn reply(r: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end();
    match line.split_at_checked(1) {
        Some(("+" | ":", v)) => Ok(v.to_string()),
        Some(("-", e)) => Err(Fail::new(format!("Redis said: {e}")).into()),
        Some(("$", n)) => {
            let n: i64 = n.parse().unwrap_or(-1);
            if n < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0) + 2];
            std::io::Read::read_exact(r, &mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..buf.len() - 2]).into_owned())
        }
        _ => Err(Fail::new(format!("unexpected answer from Redis: `{line}`")).into()),
    }
}

/// Reports what `destroy --keep-data` left in place.
pub fn kept(row: &IsolatedRow, layer_name: &str) {
    let what = match row.kind {
        IsolateKind::Postgres => format!("database `{}`", row.resource),
        IsolateKind::Redis => format!(
            "Redis database {} (grove will not lease it while it holds data)",
            row.resource
        ),
        IsolateKind::Recipe => format!("what `isolate.create` made for `{}`", row.resource),
        IsolateKind::Compose => format!("the `{}` container", row.resource),
    };
    ui::info(format!("  {layer_name}  kept {what}: {}", row.url));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_db_index_of_urls() {
        assert_eq!(redis_db_of("redis://localhost:6379/3"), 3);
        assert_eq!(redis_db_of("redis://:pw@localhost:6379/12?x=1"), 12);
        assert_eq!(redis_db_of("redis://localhost:6379"), 0);
    }

    #[test]
    fn urls_get_another_host_and_port() {
        assert_eq!(
            with_host_port("postgres://u:p@db:5432/app?x=1", "localhost", 27001).unwrap(),
            "postgres://u:p@localhost:27001/app?x=1"
        );
        assert_eq!(
            with_host_port("http://localhost:80", "build-2", 27002).unwrap(),
            "http://build-2:27002"
        );
    }

    #[test]
    fn urls_get_another_database() {
        assert_eq!(
            with_db("postgres://u:p@db:5432/app?sslmode=disable", "app_x").unwrap(),
            "postgres://u:p@db:5432/app_x?sslmode=disable"
        );
        assert_eq!(
            with_db("redis://localhost:6379/0", "3").unwrap(),
            "redis://localhost:6379/3"
        );
        assert_eq!(
            with_db("redis://localhost:6379", "3").unwrap(),
            "redis://localhost:6379/3"
        );
        assert!(with_db("not a url", "x").is_none());
    }

    #[test]
    fn redis_replies() {
        let mut r = BufReader::new(&b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n-ERR bad\r\n"[..]);
        assert_eq!(reply(&mut r).unwrap(), "OK");
        assert_eq!(reply(&mut r).unwrap(), "42");
        assert_eq!(reply(&mut r).unwrap(), "hello");
        assert_eq!(reply(&mut r).unwrap(), "");
        assert!(reply(&mut r).is_err());
    }
}
