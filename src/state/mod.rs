//! The state store: one SQLite database (WAL) at `$GROVE_HOME/state.db`.
//!
//! Invariants:
//! - every change is one transaction, and every transaction that writes starts `IMMEDIATE`
//!   (a deferred one that upgrades to a writer can fail at once under WAL instead of waiting);
//! - a busy timeout makes parallel grove processes queue instead of failing;
//! - git is the truth for worktrees and branches: rows here say what grove made, and every
//!   reader checks them against the disk.

mod model;
mod review_loop;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::error::Fail;
use crate::proc::ProcId;

pub use model::*;
pub use review_loop::FeedbackRow;

pub struct Store {
    conn: Connection,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

const ENV_COLS: &str =
    "id, name, ident, phase, owner_pid, owner_start, created_at, token, engine, engine_host";

fn env_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnvRow> {
    let pid: Option<u32> = r.get(4)?;
    let start: Option<i64> = r.get(5)?;
    Ok(EnvRow {
        key: r.get(0)?,
        name: r.get(1)?,
        ident: r.get(2)?,
        phase: r.get(3)?,
        owner: proc_id(pid, start),
        created_at: r.get(6)?,
        token: r.get(7)?,
        engine: r.get(8)?,
        engine_host: r.get(9)?,
    })
}

/// A process recorded as two nullable columns.
fn proc_id(pid: Option<u32>, start: Option<i64>) -> Option<ProcId> {
    pid.zip(start).map(|(pid, start)| ProcId {
        pid,
        start: start.unsigned_abs(),
    })
}

fn owner_params(owner: Option<ProcId>) -> (Option<u32>, Option<i64>) {
    match owner {
        Some(o) => (
            Some(o.pid),
            Some(i64::try_from(o.start).unwrap_or(i64::MAX)),
        ),
        None => (None, None),
    }
}

/// The lowest port of `start..=end` that no env leases and for which `usable` says yes; run
/// inside the write transaction that records the lease, so nobody can take it in between.
fn lowest_free(
    tx: &Transaction<'_>,
    (start, end): (u16, u16),
    usable: impl Fn(u16) -> bool,
) -> Result<Option<u16>> {
    let mut stmt =
        tx.prepare_cached("SELECT port FROM port_leases WHERE port BETWEEN ?1 AND ?2")?;
    let leased: std::collections::HashSet<u16> = stmt
        .query_map([start, end], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((start..=end).find(|p| !leased.contains(p) && usable(*p)))
}

const DB_FILE: &str = "state.db";

/// The store's file exists but SQLite cannot read it.
#[derive(Debug, thiserror::Error)]
#[error("grove's state store {} is corrupt: {why}", path.display())]
pub struct Corrupt {
    pub path: PathBuf,
    pub why: String,
}

fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

/// A failure to open the store because it is corrupt, with what to do.
pub fn corrupt_problem(err: &anyhow::Error) -> Option<&Corrupt> {
    err.chain().find_map(|e| e.downcast_ref::<Corrupt>())
}

fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How long a grove waits for another one's write to the store before giving up:
/// `GROVE_LOCK_TIMEOUT` seconds, 30 by default.
fn lock_timeout() -> Duration {
    static T: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("GROVE_LOCK_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s >= 0.0)
            .map_or(Duration::from_secs(30), Duration::from_secs_f64)
    })
}

/// SQLite's busy handler: wait (sleeping a little longer each time) until the timeout, and say
/// once, after two seconds, that we are waiting and for whom.
fn busy_wait(attempt: i32) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    thread_local! {
        static SINCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let since = SINCE.with(|s| {
        if attempt == 0 || s.get().is_none() {
            s.set(Some(now));
        }
        s.get().unwrap_or(now)
    });
    let waited = now.duration_since(since);
    if waited >= lock_timeout() {
        return false;
    }
    if waited >= Duration::from_secs(2) && !SAID.swap(true, Ordering::SeqCst) {
        crate::ui::info(format!(
            "waiting for grove's state store: {} holds it…",
            holders_text()
        ));
    }
    let pause = (1u64 << attempt.clamp(0, 6)).min(50);
    std::thread::sleep(Duration::from_millis(pause));
    true
}

/// The other processes that have the store open, for messages.
fn holders_text() -> String {
    let Ok(home) = crate::paths::grove_home() else {
        return "another grove".into();
    };
    let db = home.join(DB_FILE);
    let me = std::process::id();
    let mut who = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| *p != me)
        {
            let holds = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == db))
            });
            if holds {
                who.push(format!(
                    "pid {pid} ({})",
                    crate::proc::name(pid).unwrap_or_default()
                ));
            }
        }
    }
    if who.is_empty() {
        "another process".into()
    } else {
        who.join(", ")
    }
}

/// A value of the store this grove cannot read (an unknown state word), without rusqlite's
/// wrapping of it.
pub fn unknown_value(err: &anyhow::Error) -> Option<String> {
    err.chain()
        .find_map(|e| match e.downcast_ref::<rusqlite::Error>() {
            Some(rusqlite::Error::FromSqlConversionFailure(_, _, inner)) => Some(inner.to_string()),
            _ => None,
        })
}

/// A store that stayed locked past the timeout, as a user-facing failure.
pub fn lock_problem(err: &anyhow::Error) -> Option<Fail> {
    let busy = err.chain().any(|e| {
        matches!(e.downcast_ref::<rusqlite::Error>(), Some(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    });
    busy.then(|| {
        Fail::new(format!(
            "grove's state store stayed locked for {} s: {} holds it",
            lock_timeout().as_secs(),
            holders_text()
        ))
        .hint("another grove is writing to it; if that process is stuck, stop it and try again (`GROVE_LOCK_TIMEOUT=SECONDS` waits longer)")
    })
}

/// Switches the database to WAL once. Changing the journal mode needs an exclusive lock and
/// SQLite does not always run the busy handler for it: sixteen groves opening a new store at
/// once saw "database is locked". So: only when not WAL yet, and retried until a deadline.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(5);
    loop {
        let res = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(())
                } else {
                    conn.pragma_update(None, "journal_mode", "WAL")
                }
            });
        match res {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store under `home`, and brings its schema up to date.
    /// `home` is made private to the user (0700), the database file 0600: the store names
    /// every env, worktree and process.
    pub fn open(home: &Path) -> Result<Self> {
        let unwritable = |e: &dyn std::fmt::Display| -> anyhow::Error {
            Fail::new(format!(
                "cannot use {} for grove's state: {e}",
                home.display()
            ))
            .hint("GROVE_HOME (default ~/.local/state/grove) must be a writable folder")
            .into()
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(home)
                .map_err(|e| unwritable(&e))?;
        }
        let path = home.join(DB_FILE);
        if !path.exists() {
            create_private(&path).map_err(|e| unwritable(&e))?;
            if home.join("logs").is_dir() || home.join("locks").is_dir() {
                // grove has run here before: its store is gone, not new.
                crate::ui::warn(format!(
                    "grove's state store {} was missing (deleted?): started an empty one; \
                     `grove doctor` lists the envs it no longer knows, `grove doctor --fix` takes them back",
                    path.display()
                ));
            }
        }
        let mut conn = Connection::open(&path).map_err(|e| unwritable(&e))?;
        // Parallel groves queue for the write lock rather than fail (see `busy_wait`).
        conn.busy_handler(Some(busy_wait))?;
        let corrupt = |e: rusqlite::Error| -> anyhow::Error {
            if is_corrupt(&e) {
                Corrupt {
                    path: path.clone(),
                    why: e.to_string(),
                }
                .into()
            } else {
                unwritable(&e)
            }
        };
        set_wal(&conn).map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The store is a few kilobytes; the 2 MB default page cache would be most of a
        // supervisor's memory.
        conn.pragma_update(None, "cache_size", -256)?;
        let mut store = Self { conn };
        store
            .migrate()
            .map_err(|e| match e.downcast::<rusqlite::Error>() {
                Ok(e) => corrupt(e),
                Err(e) => unwritable(&e),
            })?;
        store.forget_previous_boot()?;
        Ok(store)
    }

    /// Moves a corrupt store (and its WAL files) aside, as `state.db.corrupt-<unix time>`, so
    /// that a new one can be made. Returns where it went.
    pub fn set_aside(home: &Path) -> Result<PathBuf> {
        let stamp = now();
        let path = home.join(DB_FILE);
        let aside = home.join(format!("{DB_FILE}.corrupt-{stamp}"));
        fs_err::rename(&path, &aside)?;
        for ext in ["-wal", "-shm"] {
            let p = home.join(format!("{DB_FILE}{ext}"));
            if p.exists() {
                let _ = fs_err::rename(&p, home.join(format!("{DB_FILE}.corrupt-{stamp}{ext}")));
            }
        }
        Ok(aside)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version.unsigned_abs() as usize == schema::MIGRATIONS.len() {
            return Ok(());
        }
        let tx = self.write()?;
        // Re-read inside the lock: another grove may have migrated while we waited.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = version.unsigned_abs() as usize;
        if version > schema::MIGRATIONS.len() {
            anyhow::bail!("the state store was written by a newer grove (schema {version})");
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)
                .with_context(|| format!("migrating the store to {}", i + 1))?;
            tx.pragma_update(None, "user_version", i64::try_from(i + 1)?)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A process is known by its pid and start time, and start times count from boot: after
    /// a restart of the machine, every recorded process is gone and its pid may name anything.
    /// So when the boot changed, forget them all: nothing grove recorded may be signalled.
    fn forget_previous_boot(&mut self) -> Result<()> {
        let Ok(boot) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
            return Ok(());
        };
        let boot = boot.trim();
        let known: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'boot_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if known.as_deref() == Some(boot) {
            return Ok(());
        }
        let tx = self.write()?;
        tx.execute_batch(
            "DELETE FROM supervisors;
             UPDATE servers SET pid = NULL, start = NULL, state = 'stopped';
             UPDATE agents SET pid = NULL, start = NULL, exit = coalesce(exit, 'the machine restarted');
             UPDATE envs SET owner_pid = NULL, owner_start = NULL;
             DELETE FROM journal WHERE action LIKE '{\"action\":\"process\"%';",
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('boot_id', ?1)",
            [boot],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// The workspace's id, registering it on first use.
    pub fn workspace(&mut self, root: &Path, name: &str) -> Result<i64> {
        let root = root.to_string_lossy();
        let found: Option<i64> = self
            .conn
            .query_row("SELECT id FROM workspaces WHERE root = ?1", [&root], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = found {
            return Ok(id);
        }
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO workspaces (root, name, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (root) DO NOTHING",
            params![root, name, now()],
        )?;
        let id = tx.query_row("SELECT id FROM workspaces WHERE root = ?1", [&root], |r| {
            r.get(0)
        })?;
        tx.commit()?;
        Ok(id)
    }

    /// Forgets a workspace and everything of it (its envs, their leases). For `grove demo`,
    /// which deletes the demo folder it replaces.
    pub fn forget_workspace(&mut self, root: &Path) -> Result<()> {
        self.conn.execute(
            "DELETE FROM workspaces WHERE root = ?1",
            [root.to_string_lossy()],
        )?;
        Ok(())
    }

    /// Registers a new env in phase `creating`, owned by `owner`. `ident` is the preferred
    /// identifier; `ident_alt(n)` gives alternatives when it is taken. `None` when the name is
    /// taken.
    pub fn insert_env(
        &mut self,
        ws: i64,
        name: &str,
        ident: &str,
        ident_alt: impl Fn(u32) -> String,
        owner: ProcId,
    ) -> Result<Option<EnvRow>> {
        let tx = self.write()?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM envs WHERE workspace = ?1 AND name = ?2)",
            params![ws, name],
            |r| r.get(0),
        )?;
        if taken {
            return Ok(None);
        }
        let ident_taken = |id: &str| -> rusqlite::Result<bool> {
            tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM envs WHERE workspace = ?1 AND ident = ?2)",
                params![ws, id],
                |r| r.get(0),
            )
        };
        let mut chosen = ident.to_string();
        let mut attempt = 0;
        while ident_taken(&chosen)? {
            chosen = ident_alt(attempt);
            attempt += 1;
        }
        let (pid, start) = owner_params(Some(owner));
        tx.execute(
            "INSERT INTO envs (workspace, name, ident, phase, owner_pid, owner_start, created_at, token)
             VALUES (?1, ?2, ?3, 'creating', ?4, ?5, ?6, ?7)",
            params![ws, name, chosen, pid, start, now(), crate::proc::new_token()],
        )?;
        let key = tx.last_insert_rowid();
        let row = tx.query_row(
            &format!("SELECT {ENV_COLS} FROM envs WHERE id = ?1"),
            [key],
            env_row,
        )?;
        tx.commit()?;
        Ok(Some(row))
    }

    /// The names of the envs of the workspace at `root`, read without writing anything: no
    /// store made, no schema migrated, no workspace registered (a TAB in a shell must not).
    /// Empty when there is no store, or it cannot be read as it is.
    pub fn env_names_read_only(home: &Path, root: &Path) -> Vec<String> {
        let path = home.join(DB_FILE);
        if !path.is_file() {
            return Vec::new();
        }
        let read = || -> rusqlite::Result<Vec<String>> {
            let conn = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_millis(500))?;
            let mut stmt = conn.prepare(
                "SELECT e.name FROM envs e JOIN workspaces w ON w.id = e.workspace
                 WHERE w.root = ?1 ORDER BY e.created_at, e.id",
            )?;
            stmt.query_map([root.to_string_lossy()], |r| r.get(0))?
                .collect()
        };
        read().unwrap_or_default()
    }

    pub fn envs(&self, ws: i64) -> Result<Vec<EnvRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ENV_COLS} FROM envs WHERE workspace = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([ws], env_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn env(&self, ws: i64, name: &str) -> Result<Option<EnvRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {ENV_COLS} FROM envs WHERE workspace = ?1 AND name = ?2"),
                params![ws, name],
                env_row,
            )
            .optional()?)
    }

    /// Envs of `ws` in the middle of an operation (`creating`, `destroying`).
    pub fn unfinished(&self, ws: i64) -> Result<Vec<EnvRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ENV_COLS} FROM envs WHERE workspace = ?1 AND phase != 'ready'"
        ))?;
        let rows = stmt
            .query_map([ws], env_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Ready envs with a journal: a `grove land` is moving (or died moving) their bases.
    pub fn landings(&self, ws: i64) -> Result<Vec<EnvRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ENV_COLS} FROM envs WHERE workspace = ?1 AND phase = 'ready'
             AND EXISTS (SELECT 1 FROM journal WHERE journal.env = envs.id)"
        ))?;
        let rows = stmt
            .query_map([ws], env_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// An operation on a ready env (a land) is over: its journal goes and the env is let go,
    /// in one transaction.
    pub fn finish_operation(&mut self, key: EnvKey) -> Result<()> {
        let tx = self.write()?;
        tx.execute("DELETE FROM journal WHERE env = ?1", [key])?;
        tx.execute(
            "UPDATE envs SET owner_pid = NULL, owner_start = NULL WHERE id = ?1",
            [key],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Takes over env `key` from `from` (a dead owner), atomically: of two processes that try
    /// at once, exactly one gets `true`.
    pub fn claim(&mut self, key: EnvKey, from: Option<ProcId>, to: ProcId) -> Result<bool> {
        let (old_pid, old_start) = owner_params(from);
        let (pid, start) = owner_params(Some(to));
        let n = self.conn.execute(
            "UPDATE envs SET owner_pid = ?1, owner_start = ?2
             WHERE id = ?3 AND owner_pid IS ?4 AND owner_start IS ?5",
            params![pid, start, key, old_pid, old_start],
        )?;
        Ok(n == 1)
    }

    /// Marks the env `destroying`, owned by `me`, if its owner is still `from` (compare and
    /// swap): of two groves destroying it at once, one goes on.
    pub fn begin_destroy(&mut self, key: EnvKey, from: Option<ProcId>, me: ProcId) -> Result<bool> {
        let (old_pid, old_start) = owner_params(from);
        let (pid, start) = owner_params(Some(me));
        let n = self.conn.execute(
            "UPDATE envs SET phase = 'destroying', owner_pid = ?1, owner_start = ?2
             WHERE id = ?3 AND owner_pid IS ?4 AND owner_start IS ?5",
            params![pid, start, key, old_pid, old_start],
        )?;
        Ok(n == 1)
    }

    pub fn set_phase(&mut self, key: EnvKey, phase: Phase, owner: Option<ProcId>) -> Result<()> {
        let (pid, start) = owner_params(owner);
        self.conn.execute(
            "UPDATE envs SET phase = ?1, owner_pid = ?2, owner_start = ?3 WHERE id = ?4",
            params![phase, pid, start, key],
        )?;
        Ok(())
    }

    /// Records the Docker engine of the env's compose layers and the host it publishes on.
    pub fn set_engine(&mut self, key: EnvKey, engine: &str, host: &str) -> Result<()> {
        let tx = self.write()?;
        tx.execute(
            "UPDATE envs SET engine = ?1, engine_host = ?2 WHERE id = ?3",
            params![engine, host, key],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO engines (workspace, engine)
             SELECT workspace, ?1 FROM envs WHERE id = ?2",
            params![engine, key],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every engine the workspace's envs ever ran on ([`crate::config::Engine::stored`]).
    pub fn engines(&self, ws: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT engine FROM engines WHERE workspace = ?1 ORDER BY engine")?;
        let rows = stmt
            .query_map([ws], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Forgets the env and everything keyed to it (instances, leases, journal).
    pub fn delete_env(&mut self, key: EnvKey) -> Result<()> {
        self.conn.execute("DELETE FROM envs WHERE id = ?1", [key])?;
        Ok(())
    }

    pub fn journal_push(&mut self, key: EnvKey, action: &Action) -> Result<()> {
        self.conn.execute(
            "INSERT INTO journal (env, action, at) VALUES (?1, ?2, ?3)",
            params![key, serde_json::to_string(action)?, now()],
        )?;
        Ok(())
    }

    /// The env's journal, oldest first.
    pub fn journal(&self, key: EnvKey) -> Result<Vec<Action>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT action FROM journal WHERE env = ?1 ORDER BY id")?;
        let rows = stmt.query_map([key], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?).context("reading the operation journal")?);
        }
        Ok(out)
    }

    /// A create is complete: its journal goes and the env is ready, in one transaction (a crash
    /// between the two would leave a ready-looking env with nothing to roll back, or the
    /// reverse).
    /// `owner` keeps the env (it starts its servers next); [`Store::set_phase`] lets it go.
    pub fn finish_create(&mut self, key: EnvKey, owner: ProcId) -> Result<()> {
        let (pid, start) = owner_params(Some(owner));
        let tx = self.write()?;
        tx.execute("DELETE FROM journal WHERE env = ?1", [key])?;
        tx.execute(
            "UPDATE envs SET phase = 'ready', owner_pid = ?2, owner_start = ?3 WHERE id = ?1",
            params![key, pid, start],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn insert_instance(&mut self, key: EnvKey, i: &Instance) -> Result<()> {
        self.conn.execute(
            "INSERT INTO instances (env, layer, repo, worktree, branch, base, base_commit, branch_created, base_ref)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                key,
                i.layer,
                i.repo.to_string_lossy(),
                i.worktree.to_string_lossy(),
                i.branch,
                i.base,
                i.base_commit,
                i.branch_created,
                i.base_ref
            ],
        )?;
        Ok(())
    }

    /// Instances of the env, in the order they were made, with their leased ports.
    pub fn instances(&self, key: EnvKey) -> Result<Vec<Instance>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.layer, i.repo, i.worktree, i.branch, i.base, i.base_commit, i.branch_created, p.port, i.base_ref
             FROM instances i LEFT JOIN port_leases p ON p.env = i.env AND p.layer = i.layer
             WHERE i.env = ?1 ORDER BY i.id",
        )?;
        let rows = stmt
            .query_map([key], |r| {
                Ok(Instance {
                    layer: r.get(0)?,
                    repo: PathBuf::from(r.get::<_, String>(1)?),
                    worktree: PathBuf::from(r.get::<_, String>(2)?),
                    branch: r.get(3)?,
                    base: r.get(4)?,
                    base_commit: r.get(5)?,
                    branch_created: r.get(6)?,
                    port: r.get(7)?,
                    base_ref: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Drops a layer's instance and its port lease.
    pub fn delete_instance(&mut self, key: EnvKey, layer: &str) -> Result<()> {
        let tx = self.write()?;
        tx.execute(
            "DELETE FROM instances WHERE env = ?1 AND layer = ?2",
            params![key, layer],
        )?;
        tx.execute(
            "DELETE FROM port_leases WHERE env = ?1 AND layer = ?2",
            params![key, layer],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Leases the lowest port in `start..=end` that no env holds and for which `usable` says
    /// yes, inside one write transaction: the check and the lease cannot be split by another
    /// grove. `Ok(None)` when the range is exhausted.
    pub fn lease_port(
        &mut self,
        key: EnvKey,
        layer: &str,
        (start, end): (u16, u16),
        prefer: Option<u16>,
        usable: impl Fn(u16) -> bool,
    ) -> Result<Option<u16>> {
        let tx = self.write()?;
        let preferred = match prefer.filter(|p| (start..=end).contains(p)) {
            Some(p) => {
                let leased: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM port_leases WHERE port = ?1)",
                    [p],
                    |r| r.get(0),
                )?;
                (!leased && usable(p)).then_some(p)
            }
            None => None,
        };
        let port = match preferred {
            Some(p) => p,
            None => match lowest_free(&tx, (start, end), usable)? {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        tx.execute(
            "INSERT INTO port_leases (port, env, layer, leased_at) VALUES (?1, ?2, ?3, ?4)",
            params![port, key, layer, now()],
        )?;
        tx.commit()?;
        Ok(Some(port))
    }

    /// The env's supervisor as registered, alive or not.
    pub fn supervisor(&self, key: EnvKey) -> Result<Option<ProcId>> {
        Ok(self
            .conn
            .query_row(
                "SELECT pid, start FROM supervisors WHERE env = ?1",
                [key],
                |r| {
                    Ok(ProcId {
                        pid: r.get(0)?,
                        start: r.get::<_, i64>(1)?.unsigned_abs(),
                    })
                },
            )
            .optional()?)
    }

    /// Registers `me` as the env's supervisor unless a live one is registered already;
    /// returns whether `me` now supervises the env.
    pub fn register_supervisor(&mut self, key: EnvKey, me: ProcId) -> Result<bool> {
        let tx = self.write()?;
        let current: Option<(u32, i64)> = tx
            .query_row(
                "SELECT pid, start FROM supervisors WHERE env = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((pid, start)) = current {
            let other = ProcId {
                pid,
                start: start.unsigned_abs(),
            };
            if other != me && other.alive() {
                return Ok(false);
            }
        }
        let (pid, start) = owner_params(Some(me));
        tx.execute(
            "INSERT INTO supervisors (env, pid, start, started_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (env) DO UPDATE SET pid = ?2, start = ?3, started_at = ?4",
            params![key, pid, start, now()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Forgets the env's supervisor, if it is still `me` (a newer one is left alone).
    pub fn unregister_supervisor(&mut self, key: EnvKey, me: ProcId) -> Result<()> {
        let (pid, start) = owner_params(Some(me));
        self.conn.execute(
            "DELETE FROM supervisors WHERE env = ?1 AND pid = ?2 AND start = ?3",
            params![key, pid, start],
        )?;
        Ok(())
    }

    pub fn servers(&self, key: EnvKey) -> Result<Vec<ServerRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT layer, state, pid, start, restarts, last_exit, ready_since, message
             FROM servers WHERE env = ?1",
        )?;
        let rows = stmt
            .query_map([key], |r| {
                let pid: Option<u32> = r.get(2)?;
                let start: Option<i64> = r.get(3)?;
                Ok(ServerRow {
                    layer: r.get(0)?,
                    state: r.get(1)?,
                    leader: proc_id(pid, start),
                    restarts: r.get(4)?,
                    last_exit: r.get(5)?,
                    ready_since: r.get(6)?,
                    message: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records a server's state (insert or replace), keeping `restart_requested`.
    pub fn put_server(&mut self, key: EnvKey, s: &ServerRow) -> Result<()> {
        let (pid, start) = owner_params(s.leader);
        self.conn.execute(
            "INSERT INTO servers (env, layer, state, pid, start, restarts, last_exit, ready_since, message, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (env, layer) DO UPDATE SET state = ?3, pid = ?4, start = ?5, restarts = ?6,
                 last_exit = ?7, ready_since = ?8, message = ?9, updated_at = ?10",
            params![
                key, s.layer, s.state, pid, start, s.restarts, s.last_exit, s.ready_since, s.message, now()
            ],
        )?;
        Ok(())
    }

    /// Asks the supervisor to restart `layer` (it reads the flag when signalled).
    pub fn request_restart(&mut self, key: EnvKey, layer: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE servers SET restart_requested = 1 WHERE env = ?1 AND layer = ?2",
            params![key, layer],
        )?;
        Ok(())
    }

    /// Asks the supervisor to start `layer`, which has no server yet (its `run` is new): a
    /// row waiting for it, flagged like a restart.
    pub fn request_start(&mut self, key: EnvKey, layer: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO servers (env, layer, state, restart_requested, updated_at)
             VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (env, layer) DO UPDATE SET restart_requested = 1",
            params![key, layer, ServerState::Starting, now()],
        )?;
        Ok(())
    }

    /// Forgets the server row of `layer` (one asked for that the supervisor cannot run).
    pub fn delete_server(&mut self, key: EnvKey, layer: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM servers WHERE env = ?1 AND layer = ?2",
            params![key, layer],
        )?;
        Ok(())
    }

    /// Layers whose restart was requested, clearing the requests.
    pub fn take_restart_requests(&mut self, key: EnvKey) -> Result<Vec<String>> {
        let tx = self.write()?;
        let layers: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT layer FROM servers WHERE env = ?1 AND restart_requested = 1")?;
            stmt.query_map([key], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        tx.execute(
            "UPDATE servers SET restart_requested = 0 WHERE env = ?1",
            [key],
        )?;
        tx.commit()?;
        Ok(layers)
    }

    pub fn clear_servers(&mut self, key: EnvKey) -> Result<()> {
        self.conn
            .execute("DELETE FROM servers WHERE env = ?1", [key])?;
        Ok(())
    }

    /// Moves `layer`'s lease to another port of `range` (the lowest that no env holds and for
    /// which `usable` says yes). `Ok(None)` when none is left.
    pub fn relocate_port(
        &mut self,
        key: EnvKey,
        layer: &str,
        (start, end): (u16, u16),
        usable: impl Fn(u16) -> bool,
    ) -> Result<Option<u16>> {
        let tx = self.write()?;
        let Some(port) = lowest_free(&tx, (start, end), usable)? else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE port_leases SET port = ?1, leased_at = ?2 WHERE env = ?3 AND layer = ?4",
            params![port, now(), key, layer],
        )?;
        tx.commit()?;
        Ok(Some(port))
    }

    pub fn agent(&self, key: EnvKey) -> Result<Option<AgentRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT mode, spec, pid, start, tmux_socket, tmux_window, state, state_since, started_at, exit, detail
                 FROM agents WHERE env = ?1",
                [key],
                |r| {
                    let pid: Option<u32> = r.get(2)?;
                    let start: Option<i64> = r.get(3)?;
                    Ok(AgentRow {
                        mode: r.get(0)?,
                        spec: r.get(1)?,
                        process: proc_id(pid, start),
                        tmux_socket: r.get(4)?,
                        tmux_window: r.get(5)?,
                        state: r.get(6)?,
                        state_since: r.get(7)?,
                        started_at: r.get(8)?,
                        exit: r.get(9)?,
                        detail: r.get(10)?,
                    })
                },
            )
            .optional()?)
    }

    /// Forgets a headless agent's start spec once the supervisor has started it.
    pub fn clear_agent_spec(&mut self, key: EnvKey) -> Result<()> {
        self.conn
            .execute("UPDATE agents SET spec = NULL WHERE env = ?1", [key])?;
        Ok(())
    }

    /// Records a newly launched agent, replacing any earlier one of the env.
    pub fn put_agent(&mut self, key: EnvKey, a: &AgentRow) -> Result<()> {
        let (pid, start) = owner_params(a.process);
        self.conn.execute(
            "INSERT OR REPLACE INTO agents
             (env, mode, spec, pid, start, tmux_socket, tmux_window, state, state_since, started_at, exit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                key, a.mode, a.spec, pid, start, a.tmux_socket, a.tmux_window, a.state,
                a.state_since, a.started_at, a.exit
            ],
        )?;
        Ok(())
    }

    /// The headless agent's process started (or ended, with how).
    pub fn set_agent_process(
        &mut self,
        key: EnvKey,
        process: Option<ProcId>,
        exit: Option<&str>,
    ) -> Result<()> {
        let (pid, start) = owner_params(process);
        self.conn.execute(
            "UPDATE agents SET pid = ?1, start = ?2, exit = ?3 WHERE env = ?4",
            params![pid, start, exit, key],
        )?;
        Ok(())
    }

    /// Replaces the env's agent row with `new` only while it is still `old` (same start, same
    /// process): of two relaunches racing, one wins and the other knows it lost.
    pub fn swap_agent(&mut self, key: EnvKey, old: &AgentRow, new: &AgentRow) -> Result<bool> {
        let (opid, ostart) = owner_params(old.process);
        let (pid, start) = owner_params(new.process);
        let n = self.conn.execute(
            "UPDATE agents SET mode = ?1, spec = ?2, pid = ?3, start = ?4, tmux_socket = ?5,
                 tmux_window = ?6, state = ?7, state_since = ?8, started_at = ?9, exit = ?10,
                 detail = NULL
             WHERE env = ?11 AND started_at = ?12 AND pid IS ?13 AND start IS ?14",
            params![
                new.mode,
                new.spec,
                pid,
                start,
                new.tmux_socket,
                new.tmux_window,
                new.state,
                new.state_since,
                new.started_at,
                new.exit,
                key,
                old.started_at,
                opid,
                ostart
            ],
        )?;
        Ok(n == 1)
    }

    /// The headless agent `process` ended, with how: recorded only while the row is still that
    /// process's (a relaunch asked for meanwhile has replaced it).
    pub fn agent_exited(&mut self, key: EnvKey, process: ProcId, how: &str) -> Result<bool> {
        let (pid, start) = owner_params(Some(process));
        let n = self.conn.execute(
            "UPDATE agents SET pid = NULL, start = NULL, exit = ?1
             WHERE env = ?2 AND pid IS ?3 AND start IS ?4",
            params![how, key, pid, start],
        )?;
        Ok(n == 1)
    }

    /// The tmux window the agent runs in, once opened (its state, if it reported one already,
    /// is kept).
    pub fn set_agent_window(
        &mut self,
        key: EnvKey,
        process: Option<ProcId>,
        socket: &str,
        window: &str,
    ) -> Result<()> {
        let (pid, start) = owner_params(process);
        self.conn.execute(
            "UPDATE agents SET pid = ?1, start = ?2, tmux_socket = ?3, tmux_window = ?4 WHERE env = ?5",
            params![pid, start, socket, window, key],
        )?;
        Ok(())
    }

    /// What the agent's hooks report (`working`, `waiting`, `done`, `exited`).
    pub fn set_agent_state(
        &mut self,
        key: EnvKey,
        state: AgentState,
        detail: Option<&str>,
        since_ms: i64,
    ) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE agents SET state = ?1, state_since = ?2, detail = ?3 WHERE env = ?4",
            params![state, since_ms, detail, key],
        )?;
        Ok(n == 1)
    }

    pub fn delete_agent(&mut self, key: EnvKey) -> Result<()> {
        self.conn
            .execute("DELETE FROM agents WHERE env = ?1", [key])?;
        Ok(())
    }

    pub fn isolated(&self, key: EnvKey) -> Result<Vec<IsolatedRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT layer, kind, resource, url, created_at FROM isolated WHERE env = ?1 ORDER BY rowid",
        )?;
        let rows = stmt
            .query_map([key], |r| {
                Ok(IsolatedRow {
                    layer: r.get(0)?,
                    kind: r.get(1)?,
                    resource: r.get(2)?,
                    url: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn put_isolated(&mut self, key: EnvKey, i: &IsolatedRow) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO isolated (env, layer, kind, resource, url, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, i.layer, i.kind, i.resource, i.url, now()],
        )?;
        Ok(())
    }

    /// Forgets an isolated layer of the env, and its Redis lease if it had one.
    pub fn delete_isolated(&mut self, key: EnvKey, layer: &str) -> Result<()> {
        let tx = self.write()?;
        tx.execute(
            "DELETE FROM isolated WHERE env = ?1 AND layer = ?2",
            params![key, layer],
        )?;
        tx.execute(
            "DELETE FROM redis_leases WHERE env = ?1 AND layer = ?2",
            params![key, layer],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Leases the lowest Redis database index of `server` (1 to 15: 0 is the shared one) that
    /// no env holds and for which `usable` says yes (it is empty), in one write transaction.
    pub fn lease_redis_db(
        &mut self,
        server: &str,
        key: EnvKey,
        layer: &str,
        usable: impl Fn(u32) -> bool,
    ) -> Result<Option<u32>> {
        let tx = self.write()?;
        let leased: std::collections::HashSet<u32> = {
            let mut stmt = tx.prepare_cached("SELECT db FROM redis_leases WHERE server = ?1")?;
            stmt.query_map([server], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let Some(db) = (1..=15).find(|d| !leased.contains(d) && usable(*d)) else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO redis_leases (server, db, env, layer) VALUES (?1, ?2, ?3, ?4)",
            params![server, db, key, layer],
        )?;
        tx.commit()?;
        Ok(Some(db))
    }

    /// The env row of `key`, whatever its workspace.
    pub fn env_by_key(&self, key: EnvKey) -> Result<Option<EnvRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {ENV_COLS} FROM envs WHERE id = ?1"),
                [key],
                env_row,
            )
            .optional()?)
    }

    /// The commit of each layer a human marked reviewed.
    pub fn reviews(&self, key: EnvKey) -> Result<std::collections::HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT layer, commit_id FROM reviews WHERE env = ?1")?;
        let rows = stmt
            .query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn mark_reviewed(&mut self, key: EnvKey, layer: &str, commit: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO reviews (env, layer, commit_id, reviewed_at) VALUES (?1, ?2, ?3, ?4)",
            params![key, layer, commit, now()],
        )?;
        Ok(())
    }

    pub fn checks(&self, key: EnvKey) -> Result<std::collections::HashMap<String, CheckRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT layer, passed, commit_id, duration_ms, log, finished_at FROM checks WHERE env = ?1",
        )?;
        let rows = stmt
            .query_map([key], |r| {
                Ok((
                    r.get(0)?,
                    CheckRow {
                        passed: r.get(1)?,
                        commit: r.get(2)?,
                        duration_ms: r.get(3)?,
                        log: r.get(4)?,
                        finished_at: r.get(5)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn put_check(&mut self, key: EnvKey, layer: &str, c: &CheckRow) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO checks (env, layer, passed, commit_id, duration_ms, log, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![key, layer, c.passed, c.commit, c.duration_ms, c.log, c.finished_at],
        )?;
        Ok(())
    }

    /// Every env of every workspace, with its workspace's root: for machine-wide checks.
    pub fn all_envs(&self) -> Result<Vec<(EnvRow, PathBuf)>> {
        let cols = ENV_COLS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {cols}, w.root FROM envs e JOIN workspaces w ON w.id = e.workspace ORDER BY e.id"
        ))?;
        // The root follows the env's columns.
        let root_col = ENV_COLS.split(", ").count();
        let rows = stmt
            .query_map([], |r| {
                Ok((env_row(r)?, PathBuf::from(r.get::<_, String>(root_col)?)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Every workspace: id, root, name.
    pub fn workspaces(&self) -> Result<Vec<(i64, PathBuf, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, root, name FROM workspaces ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, PathBuf::from(r.get::<_, String>(1)?), r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Forgets workspace `id` and everything of it.
    pub fn forget_workspace_id(&mut self, id: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM workspaces WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Port leases whose env has no instance of that layer: `(port, env name, layer)`.
    pub fn stray_leases(&self) -> Result<Vec<(u16, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT p.port, e.name, p.layer FROM port_leases p JOIN envs e ON e.id = p.env
             WHERE e.phase = 'ready' AND NOT EXISTS
               (SELECT 1 FROM instances i WHERE i.env = p.env AND i.layer = p.layer)
             AND NOT EXISTS
               (SELECT 1 FROM isolated i WHERE i.env = p.env AND i.layer = p.layer)",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn delete_lease(&mut self, port: u16) -> Result<()> {
        self.conn
            .execute("DELETE FROM port_leases WHERE port = ?1", [port])?;
        Ok(())
    }

    /// Redis leases whose env has no isolated row for the layer: `(server, db, env name)`.
    pub fn stray_redis_leases(&self) -> Result<Vec<(String, u32, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT l.server, l.db, e.name FROM redis_leases l JOIN envs e ON e.id = l.env
             WHERE e.phase = 'ready' AND NOT EXISTS
               (SELECT 1 FROM isolated i WHERE i.env = l.env AND i.layer = l.layer)",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn delete_redis_lease(&mut self, server: &str, db: u32) -> Result<()> {
        self.conn.execute(
            "DELETE FROM redis_leases WHERE server = ?1 AND db = ?2",
            params![server, db],
        )?;
        Ok(())
    }

    /// Whether Redis database `db` of `server` is leased to an env.
    pub fn redis_leased(&self, server: &str, db: u32) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM redis_leases WHERE server = ?1 AND db = ?2)",
            params![server, db],
            |r| r.get(0),
        )?)
    }

    /// Leases exactly Redis database `db` of `server` to `layer` of env `key` (an env taken back
    /// from its folder keeps the database it had). False when another env holds it.
    pub fn lease_redis_exact(
        &mut self,
        server: &str,
        db: u32,
        key: EnvKey,
        layer: &str,
    ) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO redis_leases (server, db, env, layer) VALUES (?1, ?2, ?3, ?4)",
            params![server, db, key, layer],
        )?;
        Ok(n == 1)
    }

    /// Registers a finished env found on disk (its folder's manifest): `ready`, owned by
    /// nobody. `None` when the name or the token is taken.
    pub fn adopt_env(
        &mut self,
        ws: i64,
        name: &str,
        ident: &str,
        token: &str,
        created_at: i64,
    ) -> Result<Option<EnvRow>> {
        let tx = self.write()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO envs (workspace, name, ident, phase, created_at, token)
             VALUES (?1, ?2, ?3, 'ready', ?4, ?5)",
            params![ws, name, ident, created_at, token],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let key = tx.last_insert_rowid();
        let row = tx.query_row(
            &format!("SELECT {ENV_COLS} FROM envs WHERE id = ?1"),
            [key],
            env_row,
        )?;
        tx.commit()?;
        Ok(Some(row))
    }

    /// Leases held in `start..=end`, with the env and layer holding each.
    pub fn leases_in(&self, (start, end): (u16, u16)) -> Result<Vec<Lease>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.name, p.layer FROM port_leases p JOIN envs e ON e.id = p.env
             WHERE p.port BETWEEN ?1 AND ?2 ORDER BY p.port",
        )?;
        let rows = stmt
            .query_map([start, end], |r| {
                Ok(Lease {
                    env: r.get(0)?,
                    layer: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    // ---- the warm pool ------------------------------------------------------------------

    /// Records a pool entry about to be made (the intent, before the worktree exists), owned
    /// by `me`.
    #[allow(clippy::too_many_arguments, reason = "one row's columns")]
    pub fn pool_insert(
        &mut self,
        ws: i64,
        layer: &str,
        repo: &Path,
        base: &str,
        commit: &str,
        path: &Path,
        token: &str,
        config: &str,
        me: ProcId,
    ) -> Result<PoolRow> {
        let (pid, start) = owner_params(Some(me));
        self.conn.execute(
            "INSERT INTO pool (workspace, layer, repo, base, commit_id, path, token, config,
                               phase, owner_pid, owner_start, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'preparing', ?9, ?10, ?11)",
            params![
                ws,
                layer,
                repo.to_string_lossy(),
                base,
                commit,
                path.to_string_lossy(),
                token,
                config,
                pid,
                start,
                now()
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.pool_row(id)?.context("pool entry vanished")
    }

    fn pool_row(&self, id: i64) -> Result<Option<PoolRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {POOL_COLS} FROM pool WHERE id = ?1"),
                [id],
                pool_row,
            )
            .optional()?)
    }

    /// The pool entries of workspace `ws`, oldest first.
    pub fn pool(&self, ws: i64) -> Result<Vec<PoolRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {POOL_COLS} FROM pool WHERE workspace = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([ws], pool_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Every pool entry's token, of every workspace: their processes are not strays.
    pub fn pool_tokens(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT token FROM pool")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The entry is whole: it may be handed out.
    pub fn pool_ready(&mut self, id: i64, prep_key: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE pool SET phase = 'ready', prep_key = ?2, owner_pid = NULL, owner_start = NULL
             WHERE id = ?1",
            params![id, prep_key],
        )?;
        Ok(())
    }

    /// Takes the oldest ready entry of `layer` for `base` prepared with `config`, for `me`: of
    /// two creates asking at once, each gets another entry (or none).
    /// (A ready entry with an owner is being removed by `pool drain`: never handed out.)
    pub fn pool_claim(
        &mut self,
        ws: i64,
        layer: &str,
        base: &str,
        config: &str,
        me: ProcId,
    ) -> Result<Option<PoolRow>> {
        let (pid, start) = owner_params(Some(me));
        let tx = self.write()?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM pool WHERE workspace = ?1 AND layer = ?2 AND base = ?3
                 AND config = ?4 AND phase = 'ready' AND owner_pid IS NULL
                 ORDER BY created_at, id LIMIT 1",
                params![ws, layer, base, config],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        tx.execute(
            "UPDATE pool SET phase = 'claimed', owner_pid = ?2, owner_start = ?3 WHERE id = ?1",
            params![id, pid, start],
        )?;
        let row = tx.query_row(
            &format!("SELECT {POOL_COLS} FROM pool WHERE id = ?1"),
            [id],
            pool_row,
        )?;
        tx.commit()?;
        Ok(Some(row))
    }

    /// Claims, for `me` and to remove them, the ready entries of `layer` that no claim may
    /// have: those prepared with another config than `config`, and, when `base` is given,
    /// those of another base. Claimed in one transaction, so that no create takes one
    /// meanwhile; a crash before their removal leaves them `claimed` by a dead process, which
    /// the next command removes.
    pub fn pool_claim_stale(
        &mut self,
        ws: i64,
        layer: &str,
        config: &str,
        base: Option<&str>,
        me: ProcId,
    ) -> Result<Vec<PoolRow>> {
        let (pid, start) = owner_params(Some(me));
        let tx = self.write()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM pool WHERE workspace = ?1 AND layer = ?2 AND phase = 'ready'
                 AND owner_pid IS NULL
                 AND (config != ?3 OR (?4 IS NOT NULL AND base != ?4)) ORDER BY created_at, id",
            )?;
            stmt.query_map(params![ws, layer, config, base], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut rows = Vec::new();
        for id in ids {
            tx.execute(
                "UPDATE pool SET phase = 'claimed', owner_pid = ?2, owner_start = ?3 WHERE id = ?1",
                params![id, pid, start],
            )?;
            rows.push(tx.query_row(
                &format!("SELECT {POOL_COLS} FROM pool WHERE id = ?1"),
                [id],
                pool_row,
            )?);
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Takes over entry `id` from `from` (a dead owner) for `me`, atomically.
    pub fn pool_take_over(&mut self, id: i64, from: Option<ProcId>, me: ProcId) -> Result<bool> {
        let (old_pid, old_start) = owner_params(from);
        let (pid, start) = owner_params(Some(me));
        let n = self.conn.execute(
            "UPDATE pool SET owner_pid = ?1, owner_start = ?2
             WHERE id = ?3 AND owner_pid IS ?4 AND owner_start IS ?5",
            params![pid, start, id, old_pid, old_start],
        )?;
        Ok(n == 1)
    }

    pub fn pool_delete(&mut self, id: i64) -> Result<()> {
        self.conn.execute("DELETE FROM pool WHERE id = ?1", [id])?;
        Ok(())
    }

    pub fn put_disk(&mut self, key: EnvKey, disk: &crate::disk::Disk) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO env_disk (env, disk) VALUES (?1, ?2)",
            params![key, serde_json::to_string(disk)?],
        )?;
        Ok(())
    }

    pub fn disk(&self, key: EnvKey) -> Result<Option<crate::disk::Disk>> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT disk FROM env_disk WHERE env = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Sets `key` to `value` if it is still `old` (compare and swap).
    pub fn meta_swap(&mut self, key: &str, old: Option<&str>, value: Option<&str>) -> Result<bool> {
        let tx = self.write()?;
        let now: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        if now.as_deref() != old {
            return Ok(false);
        }
        match value {
            Some(v) => tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, v],
            )?,
            None => tx.execute("DELETE FROM meta WHERE key = ?1", [key])?,
        };
        tx.commit()?;
        Ok(true)
    }
}

const POOL_COLS: &str = "id, layer, repo, base, commit_id, prep_key, path, token, phase, \
                         owner_pid, owner_start, created_at, config";

fn pool_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PoolRow> {
    Ok(PoolRow {
        id: r.get(0)?,
        layer: r.get(1)?,
        repo: PathBuf::from(r.get::<_, String>(2)?),
        base: r.get(3)?,
        commit: r.get(4)?,
        prep_key: r.get(5)?,
        path: PathBuf::from(r.get::<_, String>(6)?),
        token: r.get(7)?,
        phase: r.get(8)?,
        owner: proc_id(r.get(9)?, r.get(10)?),
        created_at: r.get(11)?,
        config: r.get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_of_a_previous_boot_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let ws = store.workspace(Path::new("/w"), "w").unwrap();
        let me = ProcId::current();
        let env = store
            .insert_env(ws, "e", "e", |_| "e2".into(), me)
            .unwrap()
            .unwrap();
        assert!(store.register_supervisor(env.key, me).unwrap());
        store
            .journal_push(env.key, &Action::Process { leader: me })
            .unwrap();
        // Reopened in the same boot: kept.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.supervisor(env.key).unwrap(), Some(me));
        // Another boot: forgotten.
        store
            .conn
            .execute(
                "UPDATE meta SET value = 'another boot' WHERE key = 'boot_id'",
                [],
            )
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.supervisor(env.key).unwrap(), None);
        assert!(store.journal(env.key).unwrap().is_empty());
        assert_eq!(store.env(ws, "e").unwrap().unwrap().owner, None);
    }

    #[test]
    fn pool_entries_of_another_config_or_base_are_never_claimed() {
        let dir = tempfile::tempdir().unwrap();
        // A store at schema 11 with a ready entry, made before entries recorded their config.
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            for sql in &schema::MIGRATIONS[..11] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 11).unwrap();
            conn.execute(
                "INSERT INTO workspaces (id, root, name, created_at) VALUES (1, '/w', 'w', 0)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO pool (workspace, layer, repo, base, commit_id, path, token, phase,
                                   created_at)
                 VALUES (1, 'front', '/w/front', 'main', 'c0', '/w/.pool/old', 'old', 'ready', 0)",
                [],
            )
            .unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let me = ProcId::current();
        let ws = store.workspace(Path::new("/w"), "w").unwrap();
        assert_eq!(store.pool(ws).unwrap()[0].config, "");
        let new = store
            .pool_insert(
                ws,
                "front",
                Path::new("/w/front"),
                "main",
                "c1",
                Path::new("/w/.pool/new"),
                "new",
                "cfg",
                me,
            )
            .unwrap();
        store.pool_ready(new.id, "").unwrap();
        assert_eq!(
            store
                .pool_claim(ws, "front", "main", "other", me)
                .unwrap()
                .map(|r| r.token),
            None,
            "no entry of that config"
        );
        // The old entry is stale under any config; the new one is not, for its own base.
        let stale = store
            .pool_claim_stale(ws, "front", "cfg", Some("main"), me)
            .unwrap();
        assert_eq!(
            stale.iter().map(|r| r.token.as_str()).collect::<Vec<_>>(),
            ["old"]
        );
        assert_eq!(stale[0].phase, PoolPhase::Claimed);
        assert_eq!(stale[0].owner, Some(me));
        let other_base = store
            .pool_claim_stale(ws, "front", "cfg", Some("dev"), me)
            .unwrap();
        assert_eq!(other_base.len(), 1, "{other_base:?}");
        assert_eq!(other_base[0].token, "new");
    }
}
