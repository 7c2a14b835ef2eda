//! The store's side of the review loop: an env's ticket and criteria, its gate, and the
//! messages queued for its agent.

use anyhow::Result;
use rusqlite::{OptionalExtension, params};

use super::{EnvKey, Store, owner_params, proc_id};
use crate::proc::ProcId;

fn now_ms() -> i64 {
    crate::agent::now_ms()
}

/// The gate of an env: the run in progress or the last one.
#[derive(Debug, Clone)]
pub struct GateRow {
    /// `requested`, `running` or `finished`.
    pub phase: String,
    pub owner: Option<ProcId>,
    pub requested_at: i64,
    /// The last result (JSON of [`crate::gate::GateResult`]).
    pub result: Option<String>,
    /// Auto-fix rounds already sent for the ticket.
    pub rounds: u32,
}

/// A message for the env's agent.
#[derive(Debug, Clone)]
pub struct FeedbackRow {
    pub id: i64,
    /// `human`, `comment` or `gate`.
    pub source: String,
    pub text: String,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    /// How it reached the agent: `stop-hook`, `tmux`, `relaunch`, `launch`.
    pub via: Option<String>,
}

impl Store {
    /// Records the env's ticket (its title and criteria as JSON); a new ticket starts the
    /// auto-fix rounds again.
    pub fn put_ticket(
        &mut self,
        key: EnvKey,
        path: Option<&str>,
        title: &str,
        criteria: &str,
    ) -> Result<()> {
        let tx = self.write()?;
        tx.execute(
            "INSERT OR REPLACE INTO tickets (env, path, title, criteria) VALUES (?1, ?2, ?3, ?4)",
            params![key, path, title, criteria],
        )?;
        tx.execute("UPDATE gates SET rounds = 0 WHERE env = ?1", [key])?;
        tx.commit()?;
        Ok(())
    }

    /// The env's ticket: `(path, title, criteria JSON)`.
    pub fn ticket(&self, key: EnvKey) -> Result<Option<(Option<String>, String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT path, title, criteria FROM tickets WHERE env = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    pub fn gate(&self, key: EnvKey) -> Result<Option<GateRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT phase, owner_pid, owner_start, requested_at, result, rounds
                 FROM gates WHERE env = ?1",
                [key],
                |r| {
                    Ok(GateRow {
                        phase: r.get(0)?,
                        owner: proc_id(r.get(1)?, r.get(2)?),
                        requested_at: r.get(3)?,
                        result: r.get(4)?,
                        rounds: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// Asks for a gate run (written before anything runs it: the journal of its intent). A
    /// gate already running sees the later request when it finishes and goes again. Returns
    /// the row as it is now.
    pub fn request_gate(&mut self, key: EnvKey) -> Result<GateRow> {
        let now = now_ms();
        self.conn.execute(
            "INSERT INTO gates (env, phase, requested_at) VALUES (?1, 'requested', ?2)
             ON CONFLICT (env) DO UPDATE SET requested_at = ?2,
                 phase = CASE WHEN phase = 'finished' THEN 'requested' ELSE phase END",
            params![key, now],
        )?;
        Ok(self.gate(key)?.expect("just written"))
    }

    /// Takes the gate for `me` from `from` (nobody, or an owner that died), atomically.
    pub fn claim_gate(&mut self, key: EnvKey, from: Option<ProcId>, me: ProcId) -> Result<bool> {
        let (old_pid, old_start) = owner_params(from);
        let (pid, start) = owner_params(Some(me));
        let now = now_ms();
        self.conn.execute(
            "INSERT OR IGNORE INTO gates (env, phase, requested_at) VALUES (?1, 'requested', ?2)",
            params![key, now],
        )?;
        let n = self.conn.execute(
            "UPDATE gates SET phase = 'running', owner_pid = ?1, owner_start = ?2, started_at = ?3
             WHERE env = ?4 AND owner_pid IS ?5 AND owner_start IS ?6",
            params![pid, start, now, key, old_pid, old_start],
        )?;
        Ok(n == 1)
    }

    /// Records the result of `me`'s run. Returns `true` when a request came in while it ran
    /// (the gate keeps its owner and goes again), `false` when it is done.
    pub fn finish_gate(
        &mut self,
        key: EnvKey,
        me: ProcId,
        result: &str,
        rounds: u32,
    ) -> Result<bool> {
        let (pid, start) = owner_params(Some(me));
        let tx = self.write()?;
        let again: bool = tx
            .query_row(
                "SELECT requested_at > started_at FROM gates
                 WHERE env = ?1 AND owner_pid IS ?2 AND owner_start IS ?3",
                params![key, pid, start],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false);
        let now = now_ms();
        if again {
            tx.execute(
                "UPDATE gates SET result = ?1, rounds = ?2, finished_at = ?3, started_at = ?3
                 WHERE env = ?4",
                params![result, rounds, now, key],
            )?;
        } else {
            tx.execute(
                "UPDATE gates SET phase = 'finished', owner_pid = NULL, owner_start = NULL,
                     result = ?1, rounds = ?2, finished_at = ?3
                 WHERE env = ?4 AND owner_pid IS ?5 AND owner_start IS ?6",
                params![result, rounds, now, key, pid, start],
            )?;
        }
        tx.commit()?;
        Ok(again)
    }

    /// Closes a gate whose process is gone (`from`), recording `result`.
    pub fn abandon_gate(
        &mut self,
        key: EnvKey,
        from: Option<ProcId>,
        result: &str,
    ) -> Result<bool> {
        let (pid, start) = owner_params(from);
        let n = self.conn.execute(
            "UPDATE gates SET phase = 'finished', owner_pid = NULL, owner_start = NULL,
                 result = ?1, finished_at = ?2
             WHERE env = ?3 AND phase != 'finished' AND owner_pid IS ?4 AND owner_start IS ?5",
            params![result, now_ms(), key, pid, start],
        )?;
        Ok(n == 1)
    }

    /// Every gate of the workspace that is not finished, with its env.
    pub fn open_gates(&self, ws: i64) -> Result<Vec<(EnvKey, GateRow)>> {
        let keys: Vec<EnvKey> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT g.env FROM gates g JOIN envs e ON e.id = g.env
                 WHERE e.workspace = ?1 AND g.phase != 'finished'",
            )?;
            stmt.query_map([ws], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::new();
        for k in keys {
            if let Some(g) = self.gate(k)? {
                out.push((k, g));
            }
        }
        Ok(out)
    }

    /// Queues a message for the env's agent.
    pub fn push_feedback(&mut self, key: EnvKey, source: &str, text: &str) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO feedback (env, source, text, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![key, source, text, now_ms()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The env's messages, oldest first; only those not delivered yet with `pending`.
    pub fn feedback(&self, key: EnvKey, pending: bool) -> Result<Vec<FeedbackRow>> {
        let sql = if pending {
            "SELECT id, source, text, created_at, delivered_at, via FROM feedback
             WHERE env = ?1 AND delivered_at IS NULL ORDER BY id"
        } else {
            "SELECT id, source, text, created_at, delivered_at, via FROM feedback
             WHERE env = ?1 ORDER BY id"
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map([key], |r| {
                Ok(FeedbackRow {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    text: r.get(2)?,
                    created_at: r.get(3)?,
                    delivered_at: r.get(4)?,
                    via: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Takes every queued message of the env, marking them delivered `via`, in one
    /// transaction: two deliverers racing never both deliver one message.
    pub fn take_feedback(&mut self, key: EnvKey, via: &str) -> Result<Vec<FeedbackRow>> {
        let tx = self.write()?;
        let rows: Vec<FeedbackRow> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, source, text, created_at FROM feedback
                 WHERE env = ?1 AND delivered_at IS NULL ORDER BY id",
            )?;
            stmt.query_map([key], |r| {
                Ok(FeedbackRow {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    text: r.get(2)?,
                    created_at: r.get(3)?,
                    delivered_at: None,
                    via: Some(via.to_string()),
                })
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        let now = now_ms();
        for r in &rows {
            tx.execute(
                "UPDATE feedback SET delivered_at = ?1, via = ?2 WHERE id = ?3",
                params![now, via, r.id],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Puts messages taken for a delivery that failed back in the queue.
    pub fn untake_feedback(&mut self, ids: &[i64]) -> Result<()> {
        for id in ids {
            self.conn.execute(
                "UPDATE feedback SET delivered_at = NULL, via = NULL WHERE id = ?1",
                [id],
            )?;
        }
        Ok(())
    }
}
