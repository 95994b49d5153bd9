//! Network changes (`meshctl network-changed`, `pl_node_network_changed`): the sockets bound
//! again, then the node told ([`Node::network_changed`]).

use super::Sockets;
use crate::node::Node;
use crate::udp::UdpSock;
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Instant;

/// The network changed (`meshctl network-changed`, an app's `pl_node_network_changed`): the
/// UDP sockets are closed and bound again on the same ports (protected again), the QUIC
/// endpoint moves to a new socket, and the node re-learns its public endpoints and tells every
/// peer where it is now. A port taken meanwhile is replaced by another. Errs (and the node
/// stops, saying why) only when no socket can be bound, or the app refuses to protect one
/// with protection required.
pub(super) fn changed(
    socks: &mut Sockets,
    bound: &[SocketAddr],
    protect: &crate::protect::Protect,
    node: &mut Node,
) -> anyhow::Result<api::NetworkChanged> {
    // The old sockets first: the new ones take the same ports.
    socks.udp.clear();
    let mut data = Vec::new();
    let mut inits = Vec::new();
    for &addr in bound {
        let again = UdpSock::bind_steered(addr, protect).or_else(|e| {
            // Taken meanwhile by another program: any port, which the peers learn from the
            // node's next datagram (a refused protection fails both: it is not retried).
            tracing::warn!(
                "network change: cannot bind udp://{addr} again ({e:#}); taking another port"
            );
            UdpSock::bind_steered(SocketAddr::new(addr.ip(), 0), protect)
        });
        for s in again.with_context(|| format!("cannot bind udp://{addr} again"))? {
            if s.handshakes() {
                inits.push(s);
            } else {
                data.push(s);
            }
        }
    }
    data.append(&mut inits);
    socks.udp = data;
    if let Err(e) = socks.streams.rebind() {
        tracing::warn!("network change: the QUIC endpoint keeps its socket ({e:#})");
    }
    let peers = node.network_changed(Instant::now());
    tracing::info!(
        sockets = socks.udp.len(),
        peers,
        "network changed: sockets bound again, peers told"
    );
    Ok(api::NetworkChanged {
        sockets: socks.udp.len(),
        peers_told: peers,
    })
}
