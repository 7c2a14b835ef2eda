//! Infra layers shared by default and isolated per env on request, against a real PostgreSQL
//! and a real Redis started by the tests.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;

use crate::common::{Postgres, Redis, TestWorkspace, finish, http_get};

/// front runs the test server wired to `db` and `redis`; both infra layers can be isolated.
fn ws_with_infra(pg: &Postgres, redis: &Redis, front_extra: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let front = format!(
        "ready = {{ http = \"/health\" }}\nenv.DATABASE_URL = \"{{{{ layers.db.url }}}}\"\nenv.REDIS_URL = \"{{{{ layers.redis.url }}}}\"\n{front_extra}"
    );
    let config = ws.servers_config(&front, "")
        + &format!(
            "\n[layers.db]\nshared_url = \"{}\"\nisolate = {{ kind = \"postgres\", template = \"app\" }}\n\
             \n[layers.redis]\nshared_url = \"{}\"\nisolate = {{ kind = \"redis\" }}\n",
            pg.url("app"),
            redis.url(0)
        );
    ws.write_config(&config);
    ws
}

fn env_var(ws: &TestWorkspace, env: &str, var: &str) -> String {
    let out = ws.grove(&["env", env]).success().stdout;
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .unwrap_or_else(|| panic!("no {var} in {out}"))
        .trim_matches('\'')
        .to_string()
}

#[test]
fn isolated_and_shared_envs_do_not_see_each_others_rows() {
    let ws0 = TestWorkspace::empty();
    let pg = Postgres::start(ws0.ports.port(90));
    let redis = Redis::start(ws0.ports.port(91));
    let ws = ws_with_infra(&pg, &redis, "");
    let out = ws
        .grove(&["create", "env-a", "--isolate-db", "--isolate-redis"])
        .success();
    assert!(
        out.stderr
            .contains(&format!("db     isolated: {}", pg.url("app_env_a"))),
        "{out}"
    );
    ws.grove(&["create", "env-b"]).success();
    assert!(pg.databases().contains(&"app_env_a".to_string()));
    assert_eq!(env_var(&ws, "env-a", "DATABASE_URL"), pg.url("app_env_a"));
    assert_eq!(env_var(&ws, "env-b", "DATABASE_URL"), pg.url("app"));
    assert_eq!(env_var(&ws, "env-a", "REDIS_URL"), redis.url(1));
    assert_eq!(env_var(&ws, "env-b", "GROVE_REDIS_URL"), redis.url(0));

    // Through each env's own front: A writes to its database, B to the shared one.
    let (fa, fb) = (ws.front_port(0), ws.front_port(1));
    assert_eq!(http_get(fa, "/db/write/from-a").unwrap().0, 200);
    assert_eq!(http_get(fb, "/db/write/from-b").unwrap().0, 200);
    assert_eq!(http_get(fa, "/db/read").unwrap().1, "from-a");
    assert_eq!(http_get(fb, "/db/read").unwrap().1, "from-b");
    assert_eq!(
        pg.psql("app", "SELECT string_agg(v, ',') FROM items"),
        "from-b"
    );

    // ps shows the isolated layers.
    let env_a = ws.ps().into_iter().find(|e| e["name"] == "env-a").unwrap();
    let db = env_a["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "db")
        .unwrap()
        .clone();
    assert_eq!(
        (db["mode"].as_str(), db["resource"].as_str()),
        (Some("isolated"), Some("app_env_a"))
    );
    let table = ws.grove(&["ps"]).success().stdout;
    assert!(
        table.contains("DB") && table.contains("REDIS") && table.contains(&redis.url(1)),
        "{table}"
    );

    redis.cli(1, &["SET", "k", "v"]);
    ws.grove(&["destroy", "env-a"]).success();
    assert!(!pg.databases().contains(&"app_env_a".to_string()));
    assert_eq!(redis.cli(1, &["DBSIZE"]), "0", "the index was flushed");
    // The freed index is the next env's.
    ws.grove(&["create", "env-c", "--isolate", "redis", "--no-start"])
        .success();
    assert_eq!(env_var(&ws, "env-c", "REDIS_URL"), redis.url(1));
}

#[test]
fn eight_parallel_creates_get_eight_databases_and_indexes() {
    let ws0 = TestWorkspace::empty();
    let pg = Postgres::start(ws0.ports.port(90));
    let redis = Redis::start(ws0.ports.port(91));
    let ws = ws_with_infra(&pg, &redis, "");
    // An index that holds data is never taken.
    redis.cli(3, &["SET", "someone-elses", "data"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            ws.cmd()
                .args([
                    "create",
                    &format!("p{i}"),
                    "--no-start",
                    "--isolate-db",
                    "--isolate-redis",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        finish(c).success();
    }
    let dbs: BTreeSet<String> = pg
        .databases()
        .into_iter()
        .filter(|d| d.starts_with("app_p"))
        .collect();
    assert_eq!(dbs.len(), 8, "{dbs:?}");
    let indexes: BTreeSet<String> = (0..8)
        .map(|i| env_var(&ws, &format!("p{i}"), "REDIS_URL"))
        .collect();
    assert_eq!(indexes.len(), 8);
    assert!(!indexes.contains(&redis.url(3)), "{indexes:?}");
    assert!(!indexes.contains(&redis.url(0)));
}

#[test]
fn a_busy_template_is_a_clear_error_naming_the_connection() {
    let ws0 = TestWorkspace::empty();
    let pg = Postgres::start(ws0.ports.port(90));
    let redis = Redis::start(ws0.ports.port(91));
    let ws = ws_with_infra(&pg, &redis, "");
    let mut holder = std::process::Command::new("psql")
        .args(["-X", "-d", &pg.url("app"), "-c", "SELECT pg_sleep(60)"])
        .env("PGAPPNAME", "holding-the-template")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(crate::common::wait_until(10, || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app'",
        ) == "1"
    }));
    let before = ws.snapshot(&["front", "api"]);
    let out = ws
        .grove(&["create", "busy", "--isolate-db", "--isolate-redis"])
        .failure(1);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        out.stderr.contains("cannot copy template database `app`"),
        "{out}"
    );
    assert!(
        out.stderr.contains("holding-the-template"),
        "names the connection: {out}"
    );
    assert!(out.stderr.contains("pg_terminate_backend"), "{out}");
    assert_eq!(ws.snapshot(&["front", "api"]), before);
    assert!(ws.ps().is_empty());
    assert!(!pg.databases().iter().any(|d| d.starts_with("app_busy")));
    assert_eq!(redis.cli(1, &["DBSIZE"]), "0");
}

#[test]
fn a_recipe_of_ones_own_kafka_style_topic_prefix() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let topics = ws.tmp.path().join("topics");
    std::fs::create_dir_all(&topics).unwrap();
    let t = topics.display();
    let config = ws.servers_config(
        "ready = { http = \"/health\" }\nenv.KAFKA_URL = \"{{ layers.kafka.url }}\"",
        "",
    ) + &format!(
        "\n[layers.kafka]\nshared_url = \"kafka://localhost:9092\"\n\
             isolate.create = \"touch {t}/$GROVE_ENV_ID\"\n\
             isolate.destroy = \"rm {t}/$GROVE_ENV_ID\"\n\
             isolate.ready = \"test -f {t}/$GROVE_ENV_ID\"\n\
             isolate.url = \"kafka://localhost:9092?prefix={{{{ env_id }}}}\"\n\
             [workspace]\ndefault_layers = [\"front\"]\ndefault_isolated = [\"kafka\"]\n"
    );
    // `[workspace]` is written twice by this concatenation: keep the first only.
    let config = config.replacen("[workspace]\ndefault_layers = [\"front\"]\n", "", 1);
    ws.write_config(&config);
    ws.grove(&["create", "feat.1"]).success();
    ws.grove(&["create", "feat-1"]).success();
    let mut made: Vec<String> = std::fs::read_dir(&topics)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    made.sort();
    // Names that sanitize alike still get distinct identifiers.
    assert_eq!(made.len(), 2, "{made:?}");
    assert!(made.contains(&"feat_1".to_string()), "{made:?}");
    let url = env_var(&ws, "feat.1", "KAFKA_URL");
    assert_eq!(url, "kafka://localhost:9092?prefix=feat_1");
    ws.grove(&["destroy", "feat.1"]).success();
    ws.grove(&["destroy", "feat-1"]).success();
    assert_eq!(std::fs::read_dir(&topics).unwrap().count(), 0);

    // A create that fails after isolating rolls the recipe back too.
    let failing = std::fs::read_to_string(ws.root.join("grove.toml"))
        .unwrap()
        .replace(
            "ready = { http = \"/health\" }",
            "ready = { http = \"/health\" }\nsetup = [\"exit 1\"]",
        );
    ws.write_config(&failing);
    ws.grove(&["create", "doomed"]).failure(1);
    assert_eq!(std::fs::read_dir(&topics).unwrap().count(), 0);
    assert!(ws.ps().is_empty());
}

#[test]
fn keep_data_keeps_the_database_and_says_where() {
    let ws0 = TestWorkspace::empty();
    let pg = Postgres::start(ws0.ports.port(90));
    let redis = Redis::start(ws0.ports.port(91));
    let ws = ws_with_infra(&pg, &redis, "");
    ws.grove(&["create", "k", "--isolate-db", "--no-start"])
        .success();
    let out = ws.grove(&["destroy", "k", "--keep-data"]).success();
    assert!(
        out.stderr
            .contains(&format!("kept database `app_k`: {}", pg.url("app_k"))),
        "{out}"
    );
    assert!(pg.databases().contains(&"app_k".to_string()));
    // A new env of the same name says why it cannot make its database.
    let out = ws
        .grove(&["create", "k", "--isolate-db", "--no-start"])
        .failure(1);
    assert!(
        out.stderr.contains("database `app_k` already exists"),
        "{out}"
    );
    assert!(ws.ps().is_empty());
}

/// `land --keep-data` lands, removes the env, and keeps its database as `destroy --keep-data`
/// does; without it, land drops the database.
#[test]
fn land_keep_data_keeps_the_database() {
    let ws0 = TestWorkspace::empty();
    let pg = Postgres::start(ws0.ports.port(90));
    let redis = Redis::start(ws0.ports.port(91));
    let ws = ws_with_infra(&pg, &redis, "");
    for (name, keep) in [("kept", true), ("dropped", false)] {
        ws.grove(&["create", name, "--isolate-db", "--no-start"])
            .success();
        let wt = ws.worktree(name, "front");
        ws.commit(&wt, &format!("{name}.txt"), "work\n", "work");
        let mut args = vec!["land", name, "--yes", "--no-check"];
        if keep {
            args.push("--keep-data");
        }
        let out = ws.grove(&args).success();
        let db = format!("app_{name}");
        assert!(ws.ps().iter().all(|e| e["name"] != name), "{out}");
        assert_eq!(pg.databases().contains(&db), keep, "{name}: {out}");
        if keep {
            assert!(
                out.stderr
                    .contains(&format!("kept database `{db}`: {}", pg.url(&db))),
                "{out}"
            );
        }
    }
    // With `--keep`, the env stays and so does its data: asking to keep it is a usage error.
    ws.grove(&["land", "x", "--keep", "--keep-data"]).failure(2);
}

#[test]
fn isolate_flags_and_config_errors() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.write_config(&(ws.standard_config("") + "\n[layers.db]\nshared_url = \"postgres://x/app\"\nisolate = { kind = \"postgres\", template = \"app\" }\n"));
    let out = ws.grove(&["create", "x", "--isolate-nope"]).failure(2);
    assert!(
        out.stderr
            .contains("unknown layer `nope` in `--isolate-nope`")
            && out.stderr.contains("db"),
        "{out}"
    );
    let out = ws.grove(&["create", "x", "--isolate", "front"]).failure(2);
    assert!(
        out.stderr.contains("layer `front` has no `isolate` recipe"),
        "{out}"
    );
    let help = ws.grove(&["create", "--help"]).success().stdout;
    assert!(help.contains("--isolate-db"), "{help}");

    ws.write_config(
        &(ws.standard_config("isolate = { kind = \"redis\" }")
            + "\n[layers.db]\nshared_url = \"x\"\nisolate = { kind = \"mongo\" }\n"),
    );
    let out = ws.grove(&["ps"]).failure(1);
    assert!(
        out.stderr.contains("`isolate` is for infra layers"),
        "{out}"
    );
    let bad = ws.standard_config("")
        + "\n[layers.db]\nshared_url = \"x\"\nisolate = { kind = \"mongo\" }\n[layers.cache]\nshared_url = \"y\"\nisolate = { create = \"make\" }\n";
    ws.write_config(&bad);
    let out = ws.grove(&["ps"]).failure(1);
    assert!(out.stderr.contains("unknown isolate kind `mongo`"), "{out}");
    assert!(out.stderr.contains("needs `create` and `destroy`"), "{out}");
}

#[test]
fn another_workspaces_database_of_the_same_name_is_never_dropped() {
    let ws0 = TestWorkspace::empty();
    let pg = Postgres::start(ws0.ports.port(90));
    let redis = Redis::start(ws0.ports.port(91));
    let one = ws_with_infra(&pg, &redis, "");
    one.grove(&["create", "feat-01", "--isolate-db", "--no-start"])
        .success();
    pg.psql("app_feat_01", "INSERT INTO items VALUES ('precious')");
    let two = ws_with_infra(&pg, &redis, "");
    let out = two
        .grove(&["create", "feat-01", "--isolate-db", "--no-start"])
        .failure(1);
    assert!(
        out.stderr.contains("database `app_feat_01` already exists"),
        "{out}"
    );
    assert_eq!(pg.psql("app_feat_01", "SELECT v FROM items"), "precious");
    assert!(two.ps().is_empty());
}

#[test]
fn the_shared_redis_index_is_never_leased() {
    let ws0 = TestWorkspace::empty();
    let pg = Postgres::start(ws0.ports.port(90));
    let redis = Redis::start(ws0.ports.port(91));
    let ws = ws_with_infra(&pg, &redis, "");
    // The main stack uses index 1 and has not written anything yet.
    let config = std::fs::read_to_string(ws.root.join("grove.toml"))
        .unwrap()
        .replace(&redis.url(0), &redis.url(1));
    ws.write_config(&config);
    ws.grove(&["create", "r", "--isolate-redis", "--no-start"])
        .success();
    assert_eq!(env_var(&ws, "r", "REDIS_URL"), redis.url(2));
}
