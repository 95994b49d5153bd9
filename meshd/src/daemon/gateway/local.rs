//! The publisher's side of the wall: connections to a service are opened from the znet's
//! router namespace (the container's gateway, `10.50.i.1`), the way the znet itself delivers
//! packets, never from outside; and the service addresses mesh users reach are put on (and
//! taken off) the overlay's TUN device. Both block briefly (a thread enters a namespace; a
//! netlink round trip), so they run on the runtime's blocking threads, never on the loop.

use crate::daemon::znets::netlink::Rtnl;
use crate::daemon::znets::netns::{in_netns, path_of};
use sha2::{Digest, Sha256};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// How long a connection to a service in a container may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `target` from inside router namespace `router_ns`.
pub async fn connect_in(router_ns: &str, target: SocketAddr) -> io::Result<TcpStream> {
    let ns = router_ns.to_string();
    let v4 = target.is_ipv4();
    let socket = tokio::task::spawn_blocking(move || {
        in_netns(&path_of(&ns), &ns, || {
            let domain = if v4 {
                socket2::Domain::IPV4
            } else {
                socket2::Domain::IPV6
            };
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            s.set_nonblocking(true)?;
            s.set_cloexec(true)?;
            Ok(std::net::TcpStream::from(s))
        })
    })
    .await
    .map_err(|e| io::Error::other(format!("the socket thread failed: {e}")))??;
    let socket = TcpSocket::from_std_stream(socket);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(target))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{target} did not answer within {CONNECT_TIMEOUT:?}"),
            )
        })??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The address mesh users reach service `name` at: this node's /64 (`subnet`) and 64 bits of
/// the name's hash. Every kind of the name shares it (they differ by port).
pub fn service_address(subnet: Ipv6Addr, name: &str) -> Ipv6Addr {
    let h = Sha256::digest(format!("planetary-lan/service/v1|{name}").as_bytes());
    let mut o = subnet.octets();
    o[8..].copy_from_slice(&h[..8]);
    Ipv6Addr::from(o)
}

/// Puts `addr`/128 on interface `tun` (or takes it off), in meshd's own namespace.
pub async fn set_address(tun: &str, addr: Ipv6Addr, on: bool) -> io::Result<()> {
    let tun = tun.to_string();
    tokio::task::spawn_blocking(move || {
        let mut r = Rtnl::open()?;
        let index = r
            .index_of(&tun)?
            .ok_or_else(|| io::Error::other(format!("there is no interface {tun}")))?;
        let res = if on {
            r.add_address(index, IpAddr::V6(addr), 128)
        } else {
            r.del_address(index, IpAddr::V6(addr), 128)
        };
        match res {
            Err(e) if on && e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) if !on && e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            r => r.map_err(|e| io::Error::new(e.kind(), format!("{addr} on {tun}: {e}"))),
        }
    })
    .await
    .map_err(|e| io::Error::other(format!("the netlink thread failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_address_lies_in_the_node_subnet_and_depends_on_the_name() {
        let subnet: Ipv6Addr = "7aa:1:2:3::".parse().expect("addr");
        let a = service_address(subnet, "shop.test");
        assert_eq!(a.segments()[..4], subnet.segments()[..4]);
        assert_ne!(a, service_address(subnet, "blog.test"));
        assert_eq!(a, service_address(subnet, "shop.test"));
    }
}
