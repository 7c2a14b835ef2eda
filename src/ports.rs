//! Port leases: the lowest port of a layer's range that no env holds and that binds right now
//! on 127.0.0.1 and ::1. A port some other program listens on is skipped, whoever owns it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::OnceLock;

use anyhow::Result;

use crate::config::PortRange;
use crate::error::Fail;
use crate::state::{EnvKey, Store};

/// Whether the loopback IPv6 address can be bound at all on this host (containers often
/// have IPv6 disabled; then only IPv4 is checked).
fn has_ipv6() -> bool {
    static V6: OnceLock<bool> = OnceLock::new();
    *V6.get_or_init(|| TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).is_ok())
}

/// Whether a server could bind `port` now on 127.0.0.1 (and ::1 where the host has IPv6).
/// The listeners are closed at once; binding on Linux also fails when a program listens on
/// the wildcard address, which is what we want.
pub fn is_free(port: u16) -> bool {
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok();
    v4 && (!has_ipv6() || TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).is_ok())
}

/// Leases a port of `range` to `layer` of env `key`: `prefer` if it is free, else the lowest.
/// `host` is where the port will be bound: this machine (`localhost`), or the host of the
/// Docker engine that publishes it, where a port something answers on is taken.
pub fn lease(
    store: &mut Store,
    key: EnvKey,
    layer: &str,
    range: PortRange,
    prefer: Option<u16>,
    host: &str,
) -> Result<u16> {
    let leased = if crate::compose::is_local(host) {
        store.lease_port(key, layer, (range.start, range.end), prefer, is_free)?
    } else {
        store.lease_port(key, layer, (range.start, range.end), prefer, |p| {
            !crate::supervisor::probe::tcp(host, p)
        })?
    };
    if let Some(port) = leased {
        return Ok(port);
    }
    let leases = store.leases_in((range.start, range.end))?;
    let mut holders: Vec<String> = Vec::new();
    for l in &leases {
        let who = format!("{} ({})", l.env, l.layer);
        if !holders.contains(&who) {
            holders.push(who);
        }
    }
    let foreign = usize::from(range.end - range.start) + 1 - leases.len();
    let mut msg = format!("no free port for layer `{layer}` in its range {range}");
    if !holders.is_empty() {
        msg.push_str(&format!(
            ": {} leased to {}",
            leases.len(),
            holders.join(", ")
        ));
    }
    if foreign > 0 {
        msg.push_str(&format!("; {foreign} in use by other programs"));
    }
    Err(Fail::new(msg)
        .hint(format!(
            "destroy envs you no longer need (`grove destroy NAME`), or widen `ports` of [layers.{layer}]"
        ))
        .into())
}
