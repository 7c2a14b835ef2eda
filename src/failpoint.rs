//! Failpoints: named steps where a test can make grove die as if killed with -9, to prove that
//! every crash window is recovered. `GROVE_CRASH_AT=create:after-branch grove create x` aborts
//! right after that step. Only debug builds (the tests') read the variable: a release build
//! compiles [`hit`] to nothing.
//!
//! [`ALL`] lists every failpoint; `grove __failpoints` prints it, and the crash suite checks
//! that each one is exercised.

/// Every failpoint, by command. A name passed to [`hit`] must be listed here.
pub const ALL: &[&str] = &[
    // grove create (the isolate:* ones run inside it)
    "create:after-insert",
    "create:after-envdir",
    "create:after-lease",
    "create:before-branch",
    "create:after-branch",
    "create:before-worktree",
    "create:after-claim",
    "create:after-move",
    "create:after-worktree",
    "create:after-instance",
    "create:after-copy",
    "create:after-dotenv",
    "create:during-setup",
    "create:after-setup",
    "create:after-finish",
    "create:after-supervisor",
    "isolate:before-create",
    "isolate:during-create",
    "isolate:after-create",
    "isolate:after-record",
    // the pool filler making an entry
    "pool:after-insert",
    "pool:after-worktree",
    "pool:after-copy",
    "pool:during-prepare",
    "pool:after-ready",
    // entries prepared with another config, claimed to be removed (by a create or the filler)
    "pool:after-claim-stale",
    // recovery of a half-made env
    "rollback:after-processes",
    "rollback:after-step",
    "rollback:before-forget",
    // grove destroy
    "destroy:after-begin",
    "destroy:after-stop",
    "destroy:after-worktree",
    "destroy:after-branch",
    "destroy:after-layer",
    "destroy:during-isolate",
    "destroy:after-isolated",
    "destroy:after-envdir",
    "destroy:after-compose-down",
    // grove land (and the undo of a half-landed env)
    "land:after-claim",
    "land:after-journal",
    "land:after-move",
    "land:after-checkout",
    "land:after-landed",
    "land:rollback-step",
    // grove down
    "down:after-agent",
    "down:after-supervisor",
    "down:after-sweep",
    // grove up, and the supervisor it starts
    "up:after-sweep",
    "up:after-spawn",
    "supervise:after-register",
    "supervise:after-start",
    // a compose layer: its project network made, before its `compose up`
    "supervise:after-network",
    // the review gate (asked for by an agent's hook, run detached) and feedback to the agent
    "gate:after-request",
    "gate:after-claim",
    "gate:after-checks",
    "gate:during-review",
    "feedback:after-queue",
];

/// Dies here if `GROVE_CRASH_AT` names this step (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    {
        debug_assert!(
            ALL.contains(&name),
            "failpoint `{name}` is not in failpoint::ALL"
        );
        if std::env::var_os("GROVE_CRASH_AT").is_some_and(|v| v == name) {
            // `GROVE_CRASH_DELAY_MS` lets a test die a moment later: inside the window where
            // another process has seen this one get past the step.
            if let Some(ms) = std::env::var("GROVE_CRASH_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            // As abrupt as kill -9: no destructor, no rollback, no message of ours.
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
