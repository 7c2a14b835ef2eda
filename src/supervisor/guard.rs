//! `grove __exec --parent PID --grace SECS -- PROGRAM ARGS…`: the small process each server
//! runs under, so that nothing a server starts can outlive its supervisor.
//!
//! It leads a session of its own, holding the server (`sh -c RUN`) and everything that forks
//! (npm → node → esbuild) in it. It arms a parent-death signal: when the supervisor dies, even
//! by `kill -9`, the guard gets SIGTERM. A parent-death signal reaches only the one process that
//! armed it, which is why the guard does not simply exec the server: on SIGTERM it passes the
//! signal to its whole group, waits up to SECS for the server to go, then SIGKILLs whatever is
//! left in the session. It exits the way the server did, so the supervisor sees the real status.
//!
//! It sleeps in a blocking read on a signal pipe (SIGCHLD wakes it): no polling.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpid};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

use crate::exec::Cmd;
use crate::proc::{self, ProcId};

pub fn main(args: &[OsString]) -> i32 {
    let Some((parent, grace, program, rest)) = parse(args) else {
        crate::ui::info("usage: grove __exec --parent PID --grace SECS -- PROGRAM ARGS…");
        return 2;
    };
    let _ = nix::unistd::setsid();
    if nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
        || nix::unistd::getppid().as_raw() != parent
    {
        // The supervisor died before the signal was armed: start nothing.
        return 1;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let Ok((mut wake_r, wake_w)) = std::io::pipe() else {
        return 1;
    };
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    for sig in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] {
        let Ok(w) = wake_w.try_clone() else { return 1 };
        let _ = signal_hook::low_level::pipe::register(sig, w);
    }
    let me = ProcId::current();
    // The server carries the guard's tag on: `Cmd` passes on no tag it is not given, and
    // everything the server starts (a daemon that leaves its session) must be found by it.
    let mut cmd = Cmd::new(program).args(rest);
    if let Some(tag) = std::env::var_os(proc::TOKEN_VAR) {
        cmd = cmd.env(proc::TOKEN_VAR, tag);
    }
    let mut child = match cmd.spawn_inherit() {
        Ok(c) => c,
        Err(e) => {
            crate::ui::info(format!("grove: {e}"));
            return 127;
        }
    };
    // Everyone in our session but us.
    let others = |sig| {
        for p in proc::session_members(me)
            .into_iter()
            .filter(|p| p.pid != me.pid)
        {
            let _ = kill(Pid::from_raw(p.pid.cast_signed()), sig);
        }
    };
    let mut stopping_since: Option<Instant> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            if let Some(since) = stopping_since {
                // Let the rest of a stopping server finish its own shutdown, within the grace.
                while since.elapsed() < grace && proc::session_members(me).len() > 1 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            // The server is gone; whatever it left in the session goes too.
            others(Signal::SIGKILL);
            return exit_like(status);
        }
        if stop.load(Ordering::SeqCst) && stopping_since.is_none() {
            stopping_since = Some(Instant::now());
            let _ = killpg(getpid(), Signal::SIGTERM);
        }
        match stopping_since {
            Some(since) if since.elapsed() >= grace => {
                others(Signal::SIGKILL);
                std::thread::sleep(Duration::from_millis(20));
            }
            // Wakes at the grace deadline even without a signal.
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
            None => {
                let mut buf = [0u8; 32];
                let _ = wake_r.read(&mut buf);
            }
        }
    }
}

/// Exits (or dies) the way the server did.
fn exit_like(status: std::process::ExitStatus) -> i32 {
    if let Some(sig) = status.signal() {
        if [SIGTERM, SIGINT, SIGHUP].contains(&sig) {
            let _ = signal_hook::low_level::emulate_default_handler(sig);
        } else if let Ok(s) = Signal::try_from(sig) {
            let _ = kill(getpid(), s);
        }
        return 128 + sig;
    }
    status.code().unwrap_or(1)
}

fn parse(args: &[OsString]) -> Option<(i32, Duration, &OsString, &[OsString])> {
    let s = |i: usize| args.get(i).and_then(|a| a.to_str());
    if s(0)? != "--parent" || s(2)? != "--grace" || s(4)? != "--" {
        return None;
    }
    let parent = s(1)?.parse().ok()?;
    let grace = Duration::from_secs(s(3)?.parse().ok()?);
    let program = args.get(5)?;
    Some((parent, grace, program, &args[6..]))
}
