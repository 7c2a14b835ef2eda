//! The store's schema, as an append-only list of migrations. `PRAGMA user_version` records how
//! many have run. Never edit a released migration: add the next one.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: workspaces, envs, layer instances, machine-wide port leases, the operation journal.
    r"
    CREATE TABLE workspaces (
        id          INTEGER PRIMARY KEY,
        root        TEXT NOT NULL UNIQUE,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );

    -- phase: `creating` and `destroying` are operations in progress, owned by the process
    -- (pid + start time) in owner_pid/owner_start; `ready` is a finished env.
    CREATE TABLE envs (
        id           INTEGER PRIMARY KEY,
        workspace    INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        ident        TEXT NOT NULL,
        phase        TEXT NOT NULL CHECK (phase IN ('creating', 'ready', 'destroying')),
        owner_pid    INTEGER,
        owner_start  INTEGER,
        created_at   INTEGER NOT NULL,
        UNIQUE (workspace, name),
        UNIQUE (workspace, ident)
    );

    CREATE TABLE instances (
        id              INTEGER PRIMARY KEY,
        env             INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        layer           TEXT NOT NULL,
        repo            TEXT NOT NULL,
        worktree        TEXT NOT NULL,
        branch          TEXT NOT NULL,
        base            TEXT NOT NULL,
        base_commit     TEXT NOT NULL,
        branch_created  INTEGER NOT NULL,
        UNIQUE (env, layer)
    );

    -- Ports are machine-wide: the UNIQUE primary key is what makes two parallel creates
    -- unable to take the same one, whatever their workspaces.
    CREATE TABLE port_leases (
        port       INTEGER PRIMARY KEY,
        env        INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        layer      TEXT NOT NULL,
        leased_at  INTEGER NOT NULL,
        UNIQUE (env, layer)
    );

    -- Undo log of an operation in progress: each entry is written before the change it
    -- describes, so a crash at any point leaves enough to roll back.
    CREATE TABLE journal (
        id      INTEGER PRIMARY KEY,
        env     INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        action  TEXT NOT NULL,
        at      INTEGER NOT NULL
    );
    ",
    // 2: supervision. One supervisor process per running env, one row per server.
    r"
    CREATE TABLE supervisors (
        env         INTEGER PRIMARY KEY REFERENCES envs(id) ON DELETE CASCADE,
        pid         INTEGER NOT NULL,
        start       INTEGER NOT NULL,
        started_at  INTEGER NOT NULL
    );

    -- state: starting, ready, unhealthy, backoff, failed, stopped. pid/start identify the
    -- server's session leader (its pid is also the process group and session id).
    CREATE TABLE servers (
        env                INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        layer              TEXT NOT NULL,
        state              TEXT NOT NULL,
        pid                INTEGER,
        start              INTEGER,
        restarts           INTEGER NOT NULL DEFAULT 0,
        last_exit          TEXT,
        ready_since        INTEGER,
        message            TEXT,
        restart_requested  INTEGER NOT NULL DEFAULT 0,
        updated_at         INTEGER NOT NULL,
        PRIMARY KEY (env, layer)
    );
    ",
    // 3: agents. One per env: in a tmux window, or headless under the env's supervisor.
    r"
    CREATE TABLE agents (
        env          INTEGER PRIMARY KEY REFERENCES envs(id) ON DELETE CASCADE,
        mode         TEXT NOT NULL CHECK (mode IN ('tmux', 'headless')),
        spec         TEXT,
        pid          INTEGER,
        start        INTEGER,
        tmux_socket  TEXT,
        tmux_window  TEXT,
        state        TEXT,
        state_since  INTEGER,
        started_at   INTEGER NOT NULL,
        exit         TEXT
    );
    ",
    // 4: review. The commit a human last reviewed per layer, and the last check per layer.
    r"
    CREATE TABLE reviews (
        env          INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        layer        TEXT NOT NULL,
        commit_id    TEXT NOT NULL,
        reviewed_at  INTEGER NOT NULL,
        PRIMARY KEY (env, layer)
    );

    CREATE TABLE checks (
        env          INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        layer        TEXT NOT NULL,
        passed       INTEGER NOT NULL,
        commit_id    TEXT NOT NULL,
        duration_ms  INTEGER NOT NULL,
        log          TEXT NOT NULL,
        finished_at  INTEGER NOT NULL,
        PRIMARY KEY (env, layer)
    );
    ",
    // 5: isolated infrastructure: what each env made of its own, and Redis database indexes,
    // leased machine-wide per server like ports.
    r"
    CREATE TABLE isolated (
        env         INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        layer       TEXT NOT NULL,
        kind        TEXT NOT NULL,
        resource    TEXT NOT NULL,
        url         TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (env, layer)
    );

    CREATE TABLE redis_leases (
        server  TEXT NOT NULL,
        db      INTEGER NOT NULL,
        env     INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        layer   TEXT NOT NULL,
        PRIMARY KEY (server, db)
    );
    ",
    // 6: the full ref a base resolved to at create (`refs/remotes/origin/feat/ui`), so that a
    // base is never read again as something else (a local branch of the same name, even the
    // env's own); and the boot a recorded process belongs to.
    r"
    ALTER TABLE instances ADD COLUMN base_ref TEXT;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    ",
    // 7: every env has a token, carried by every process grove starts for it (so that sweeps
    // find them by their environment, never by name) and written on what it makes (a branch's
    // reflog, a database's comment). `unhealthy` becomes a state of its own instead of a
    // message of a ready server.
    r"
    ALTER TABLE envs ADD COLUMN token TEXT;
    UPDATE envs SET token = lower(hex(randomblob(12))) WHERE token IS NULL;
    CREATE UNIQUE INDEX envs_token ON envs (token);
    UPDATE servers SET state = 'unhealthy', message = NULL
        WHERE state = 'ready' AND message = 'unhealthy';
    ",
    // 8: the warm pool. Worktrees prepared ahead of time (detached at a base's tip, copies
    // made, `prepare` run) for `create` to claim. The row is written before the worktree is
    // made and names the process at work on it: a `preparing` or `claimed` row whose process is
    // gone is a crash's leftover, removed by the next command that changes state.
    r"
    CREATE TABLE pool (
        id          INTEGER PRIMARY KEY,
        workspace   INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
        layer       TEXT NOT NULL,
        repo        TEXT NOT NULL,
        base        TEXT NOT NULL,
        commit_id   TEXT NOT NULL,
        prep_key    TEXT NOT NULL DEFAULT '',
        path        TEXT NOT NULL UNIQUE,
        token       TEXT NOT NULL UNIQUE,
        phase       TEXT NOT NULL CHECK (phase IN ('preparing', 'ready', 'claimed')),
        owner_pid   INTEGER,
        owner_start INTEGER,
        created_at  INTEGER NOT NULL
    );

    -- What each env costs on disk beyond its checkout (JSON of disk::Disk), measured off
    -- the `ps` path and read by it.
    CREATE TABLE env_disk (
        env   INTEGER PRIMARY KEY REFERENCES envs(id) ON DELETE CASCADE,
        disk  TEXT NOT NULL
    );
    ",
    // 9: the review loop. The ticket of an env (its title and acceptance criteria, parsed
    // from its checklist); the gate run when its agent stops (one row per env: the run in
    // progress, named by its process, or the last result; `requested_at` later than
    // `started_at` asks the running gate to go again); the human's and the gate's messages to
    // the agent, queued until they can be delivered; and what a `waiting` agent waits for
    // (`permission`: a dialog that typed text would answer; `input`: its prompt).
    r"
    ALTER TABLE agents ADD COLUMN detail TEXT;

    CREATE TABLE tickets (
        env       INTEGER PRIMARY KEY REFERENCES envs(id) ON DELETE CASCADE,
        path      TEXT,
        title     TEXT NOT NULL,
        criteria  TEXT NOT NULL
    );

    CREATE TABLE gates (
        env           INTEGER PRIMARY KEY REFERENCES envs(id) ON DELETE CASCADE,
        phase         TEXT NOT NULL CHECK (phase IN ('requested', 'running', 'finished')),
        owner_pid     INTEGER,
        owner_start   INTEGER,
        requested_at  INTEGER NOT NULL,
        started_at    INTEGER,
        finished_at   INTEGER,
        result        TEXT,
        rounds        INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE feedback (
        id            INTEGER PRIMARY KEY,
        env           INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,
        source        TEXT NOT NULL,
        text          TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        delivered_at  INTEGER,
        via           TEXT
    );
    ",
    // 10: the Docker engine an env's compose layers run on (`default`, `context:NAME`,
    // `host:ADDR`; NULL: none), fixed at create so that a later change of the workspace's
    // engine does not lose the env's containers; and the host name its ports are published on.
    r"
    ALTER TABLE envs ADD COLUMN engine TEXT;
    ALTER TABLE envs ADD COLUMN engine_host TEXT;
    ",
    // 11: every engine a workspace's envs ever used: `doctor` looks there for what an env
    // whose destroy could not reach its engine left behind. (Apart from 10: development
    // builds made stores at 10 before it.)
    r"
    CREATE TABLE engines (
        workspace  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
        engine     TEXT NOT NULL,
        PRIMARY KEY (workspace, engine)
    );
    ",
    // 12: what each pool entry was prepared with: a fingerprint of its layer's `copy`,
    // `prepare` and `prepare_key` (and repo). A claim hands out only an entry whose fingerprint
    // is the layer's current one. Entries made before have none, so none of them is handed
    // out: what they were prepared with is unknown.
    r"
    ALTER TABLE pool ADD COLUMN config TEXT NOT NULL DEFAULT '';
    ",
];
