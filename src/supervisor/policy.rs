//! The supervisor's decisions, as pure functions of what it saw and of the time it is: when to
//! restart a crashed server and after how long, when to give up, when a ready server has become
//! unhealthy, when a port must move. The clock is a parameter, so each rule is tested on
//! chosen instants rather than by waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Restart;

/// Restart backoff: 0.5 s doubling to 30 s; more than 5 restarts within 60 s is a failure.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
pub const MAX_RESTARTS: usize = 5;
/// Health checks of a ready server missed in a row before it is unhealthy.
pub const HEALTH_MISSES: u32 = 3;

/// Whether a server that exited is started again, by its `restart` policy.
pub fn restarts(policy: Restart, success: bool) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => !success,
        Restart::No => false,
    }
}

/// What follows a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start it again after this delay.
    Restart(Duration),
    /// It crashed this many times within the window: failed.
    GiveUp(usize),
}

/// The recent crashes of one server.
#[derive(Debug, Default)]
pub struct Crashes {
    recent: VecDeque<Instant>,
}

impl Crashes {
    /// Records a crash at `now` and decides: crashes older than the window are forgotten;
    /// more than [`MAX_RESTARTS`] within it is a failure; otherwise the delay doubles with
    /// each recent crash, from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`].
    pub fn record(&mut self, now: Instant) -> AfterCrash {
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > RESTART_WINDOW)
        {
            self.recent.pop_front();
        }
        if self.recent.len() > MAX_RESTARTS {
            return AfterCrash::GiveUp(self.recent.len());
        }
        let exp = u32::try_from(self.recent.len().saturating_sub(1))
            .unwrap_or(16)
            .min(16);
        AfterCrash::Restart((BACKOFF_FIRST * 2u32.pow(exp)).min(BACKOFF_MAX))
    }

    /// A restart asked for by the user starts a fresh count.
    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

/// The health of a ready server: misses in a row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub misses: u32,
}

impl Health {
    /// One health check's result; returns whether the server is now unhealthy.
    pub fn observe(&mut self, healthy: bool) -> bool {
        self.misses = if healthy { 0 } else { self.misses + 1 };
        self.unhealthy()
    }

    pub fn unhealthy(self) -> bool {
        self.misses >= HEALTH_MISSES
    }
}

/// Who listens on a server's leased port, as far as the supervisor can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortHolder {
    /// Nothing listens: the port binds.
    Nobody,
    /// A process of the server's own (its session, or carrying its tag).
    Ours,
    /// Another program.
    Foreign,
}

/// Whether the server must move to another port: only when another program holds its port,
/// and once per start (a port that is taken again right after the move is not chased forever).
pub fn moves_port(holder: PortHolder, moved_already: bool) -> bool {
    holder == PortHolder::Foreign && !moved_already
}

/// What a successful tcp or http probe means, given who holds the port: only the server's
/// own socket makes it ready. Another program answering on the port (left running on it
/// between `down` and `up`) is not the server, however well it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotYet,
    /// Answered by a foreign listener: move the port.
    Foreign,
}

pub fn readiness(probe_ok: bool, holder: PortHolder) -> Readiness {
    match (probe_ok, holder) {
        (true, PortHolder::Ours) => Readiness::Ready,
        (_, PortHolder::Foreign) => Readiness::Foreign,
        // Answered, yet nobody listens: the listener just went (a restart); look again.
        _ => Readiness::NotYet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn backoff_doubles_then_gives_up_within_the_window() {
        let t0 = Instant::now();
        let mut c = Crashes::default();
        let delays: Vec<AfterCrash> = (0..6).map(|i| c.record(at(t0, i * 1000))).collect();
        assert_eq!(
            delays,
            vec![
                AfterCrash::Restart(Duration::from_millis(500)),
                AfterCrash::Restart(Duration::from_secs(1)),
                AfterCrash::Restart(Duration::from_secs(2)),
                AfterCrash::Restart(Duration::from_secs(4)),
                AfterCrash::Restart(Duration::from_secs(8)),
                AfterCrash::GiveUp(6),
            ]
        );
    }

    #[test]
    fn crashes_older_than_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut c = Crashes::default();
        for i in 0..5 {
            c.record(at(t0, i * 1000));
        }
        // 61 s after the first: the first has left the window, so 5 remain.
        assert_eq!(
            c.record(at(t0, 61_000)),
            AfterCrash::Restart(Duration::from_secs(8))
        );
        // A long quiet spell: back to the first delay.
        assert_eq!(
            c.record(at(t0, 200_000)),
            AfterCrash::Restart(BACKOFF_FIRST)
        );
    }

    #[test]
    fn backoff_is_capped() {
        let t0 = Instant::now();
        let mut c = Crashes::default();
        // Crashes spaced so that 5 stay in the window at most: the delay never passes 30 s.
        let mut last = Duration::ZERO;
        for i in 0..40 {
            if let AfterCrash::Restart(d) = c.record(at(t0, i * 13_000)) {
                last = d;
            }
        }
        assert!(last <= BACKOFF_MAX);
        c.clear();
        assert_eq!(c.record(at(t0, 0)), AfterCrash::Restart(BACKOFF_FIRST));
    }

    #[test]
    fn unhealthy_after_three_misses_in_a_row_and_healthy_again_at_once() {
        let mut h = Health::default();
        assert!(!h.observe(false));
        assert!(!h.observe(false));
        assert!(!h.observe(true), "a success resets the count");
        assert!(!h.observe(false));
        assert!(!h.observe(false));
        assert!(h.observe(false));
        assert!(h.observe(false));
        assert!(!h.observe(true));
    }

    #[test]
    fn restart_policies() {
        assert!(restarts(Restart::OnFailure, false));
        assert!(!restarts(Restart::OnFailure, true));
        assert!(restarts(Restart::Always, true));
        assert!(!restarts(Restart::No, false));
    }

    #[test]
    fn only_a_foreign_holder_moves_the_port_and_only_once() {
        assert!(moves_port(PortHolder::Foreign, false));
        assert!(!moves_port(PortHolder::Foreign, true));
        assert!(!moves_port(PortHolder::Ours, false));
        assert!(!moves_port(PortHolder::Nobody, false));
    }

    #[test]
    fn a_foreign_answer_is_not_readiness() {
        assert_eq!(readiness(true, PortHolder::Ours), Readiness::Ready);
        assert_eq!(readiness(true, PortHolder::Foreign), Readiness::Foreign);
        assert_eq!(readiness(false, PortHolder::Foreign), Readiness::Foreign);
        assert_eq!(readiness(true, PortHolder::Nobody), Readiness::NotYet);
        assert_eq!(readiness(false, PortHolder::Ours), Readiness::NotYet);
    }
}
