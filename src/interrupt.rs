//! Ctrl-C during a create must undo what was done, not leave half an env. Commands that change
//! state call [`guard`] first: from then on SIGINT, SIGTERM and SIGHUP only record which signal
//! arrived; long waits poll [`received`] and every step checks it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

fn slot() -> &'static Arc<AtomicUsize> {
    static SLOT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    SLOT.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Catches the terminating signals for the rest of the process's life.
pub fn guard() {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // Stores the signal number in the slot: async-signal-safe, no thread needed.
        let _ =
            signal_hook::flag::register_usize(sig, Arc::clone(slot()), sig.unsigned_abs() as usize);
    }
}

/// The signal that arrived since [`guard`], if any.
pub fn received() -> Option<i32> {
    match slot().load(Ordering::SeqCst) {
        0 => None,
        sig => i32::try_from(sig).ok(),
    }
}

/// Exit code for a run ended by `sig` (the shell's convention, 128 + N).
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// `SIGINT (Ctrl-C)`, `SIGTERM`, …, for messages.
pub fn signal_name(sig: i32) -> String {
    match sig {
        2 => "SIGINT (Ctrl-C)".into(),
        1 => "SIGHUP".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}
