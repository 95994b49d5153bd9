//! A blocking rtnetlink socket bound to one network namespace, and the few messages znets
//! send through it: a veth pair with one end in each of two namespaces, links up, addresses,
//! routes, and link and route listings. Built on `netlink-packet-route` (the message types) and
//! `netlink-sys` (the socket): no `ip` process, no parsing of text.
//!
//! A socket belongs to the namespace of the thread that opened it, for good: open one in
//! another namespace with [`super::netns::in_netns`]. The calls block until the kernel answers
//! (at most [`ANSWER_TIMEOUT`]), so they run on the znet worker thread, never on the event
//! loop. The message builders are pure functions, tested without root.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::Duration;

/// How long a request waits for the kernel's answer before it fails.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer: the kernel's dump datagrams are at most 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// Most messages one dump may return (a namespace of ours holds a few dozen links and routes).
const MAX_DUMP: usize = 16_384;

/// A route, as znets use them: to `dest/prefix` out of interface `oif`, directly (an on-link
/// device route, scope link) or via `gateway` (scope universe); table main, protocol boot (as
/// `ip route add` makes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination.
    pub dest: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The next hop, if not on-link.
    pub gateway: Option<IpAddr>,
    /// The output interface's index.
    pub oif: u32,
}

/// One rtnetlink socket, in the namespace it was opened in.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let t = nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &t)
            .map_err(io::Error::from)?;
        // Better error messages from the kernel where it has them; fine without.
        let _ = sock.set_ext_ack(true);
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Sends `msg` with `flags` and collects the answers until the acknowledgement (or, for a
    /// dump, the end). A refusal comes back as the kernel's errno.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0)?;
        let mut answers = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = match self.sock.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the kernel did not answer within {ANSWER_TIMEOUT:?}"),
                    ));
                }
                Err(e) => return Err(e),
            };
            let mut at = 0;
            while at < n {
                let bytes = buf.get(at..n).unwrap_or(&[]);
                let m: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                at += len;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::Done(d) => {
                        return match d.code {
                            0 => Ok(answers),
                            c => Err(io::Error::from_raw_os_error(c.abs())),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        if answers.len() >= MAX_DUMP {
                            return Err(io::Error::other(format!(
                                "the kernel's answer has more than {MAX_DUMP} entries"
                            )));
                        }
                        answers.push(inner);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(io::Error::other("netlink answer overrun"));
                    }
                    _ => {}
                }
            }
        }
    }

    /// A request the kernel answers with an acknowledgement only.
    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, flags).map(drop)
    }

    /// Creates the veth pair `msg` (see [`veth`]).
    pub fn add_link(&mut self, msg: LinkMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// The index of interface `name`; `None` if there is none.
    pub fn index_of(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.exchange(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names of every interface.
    pub fn link_names(&mut self) -> io::Result<Vec<String>> {
        let answers = self.exchange(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|x| match x {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    /// Brings interface `name` up.
    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::SetLink(link_up(name)), 0)
    }

    /// Deletes interface `name` (for a veth, both ends).
    pub fn del_link(&mut self, name: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.ack(RouteNetlinkMessage::DelLink(m), 0)
    }

    /// Adds an address to interface `index`.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewAddress(address(index, addr, prefix)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Removes an address from interface `index`.
    pub fn del_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::DelAddress(address(index, addr, prefix)),
            0,
        )
    }

    /// Adds a route; fails if it exists.
    pub fn add_route(&mut self, r: &Route) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(route(r)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds a route, or replaces the one to the same destination.
    pub fn replace_route(&mut self, r: &Route) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(route(r)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// The routes of table main out of interface `oif` that were not made by the kernel
    /// itself (for an address), IPv4 and IPv6.
    pub fn routes_of(&mut self, oif: u32) -> io::Result<Vec<RouteMessage>> {
        let mut all = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = family;
            for a in self.exchange(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP)? {
                if let RouteNetlinkMessage::NewRoute(r) = a
                    && r.header.table == RouteHeader::RT_TABLE_MAIN
                    && r.header.protocol != RouteProtocol::Kernel
                    && r.attributes.contains(&RouteAttribute::Oif(oif))
                {
                    all.push(r);
                }
            }
        }
        Ok(all)
    }

    /// Deletes a route as listed by [`Rtnl::routes_of`].
    pub fn del_route(&mut self, r: RouteMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::DelRoute(r), 0)
    }
}

/// The destination of a listed route: its address and prefix length.
pub fn destination(r: &RouteMessage) -> Option<(IpAddr, u8)> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => {
            Some((IpAddr::V4(*v4), r.header.destination_prefix_length))
        }
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => {
            Some((IpAddr::V6(*v6), r.header.destination_prefix_length))
        }
        _ => None,
    })
}

/// A veth pair: `name` in the namespace of descriptor `ns`, `peer` (with MAC address
/// `peer_mac`) in that of `peer_ns`, both with `mtu`. The kernel creates each end in its namespace directly (`IFLA_NET_NS_FD`),
/// so no name ever collides in the namespace that asked. The ends come up down: bring each up
/// from inside its namespace (the kernel refuses `IFF_UP` here, with `ENOTCONN`).
pub fn veth(
    name: &str,
    ns: RawFd,
    peer: &str,
    peer_ns: RawFd,
    peer_mac: [u8; 6],
    mtu: u16,
) -> LinkMessage {
    let end = |n: &str, fd: RawFd| {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(n.to_string()));
        m.attributes.push(LinkAttribute::Mtu(u32::from(mtu)));
        m.attributes.push(LinkAttribute::NetNsFd(fd));
        m
    };
    let mut m = end(name, ns);
    let mut p = end(peer, peer_ns);
    p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    m
}

/// The MAC address of a container's interface: locally administered and unicast (`02:`),
/// then `5a` and the four bytes of its IPv4 address, so that it is unique among the containers
/// of a node and the same when the attachment is made again after a restart.
pub fn container_mac(addr: std::net::Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = addr.octets();
    [0x02, 0x5a, a, b, c, d]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Brings interface `name` up (found by name: index 0).
fn link_up(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m
}

/// An address on interface `index`, as `ip addr add ADDR/PREFIX dev IF` sends it; IPv6
/// addresses skip duplicate address detection (`nodad`: each is the only one of its subnet,
/// and a tentative address would drop the first packets).
pub fn address(index: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = prefix;
    m.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => {
            m.header.flags = AddressHeaderFlags::Nodad;
            AddressFamily::Inet6
        }
    };
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    m
}

/// The message of route `r`.
pub fn route(r: &Route) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.kind = RouteType::Unicast;
    m.header.destination_prefix_length = r.prefix;
    m.header.scope = match r.gateway {
        Some(_) => RouteScope::Universe,
        None => RouteScope::Link,
    };
    let addr = |a: IpAddr| match a {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    };
    m.header.address_family = match r.dest {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.attributes.push(RouteAttribute::Destination(addr(r.dest)));
    if let Some(g) = r.gateway {
        m.attributes.push(RouteAttribute::Gateway(addr(g)));
    }
    m.attributes.push(RouteAttribute::Oif(r.oif));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Emits a message and parses it back, as the kernel would read it.
    fn round_trip_link(m: &LinkMessage) -> LinkMessage {
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        LinkMessage::parse(&buf[..]).expect("parses")
    }

    #[test]
    fn veth_puts_each_end_in_its_namespace_with_its_mtu() {
        let mac = container_mac(Ipv4Addr::new(10, 50, 1, 2));
        assert_eq!(mac_text(mac), "02:5a:0a:32:01:02");
        let m = round_trip_link(&veth("zv01020304", 7, "zn0", 9, mac, 1400));
        assert!(
            m.attributes
                .contains(&LinkAttribute::IfName("zv01020304".into()))
        );
        assert!(m.attributes.contains(&LinkAttribute::NetNsFd(7)));
        assert!(m.attributes.contains(&LinkAttribute::Mtu(1400)));
        let info = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .expect("link info");
        assert!(info.contains(&LinkInfo::Kind(InfoKind::Veth)));
        let peer = info
            .iter()
            .find_map(|i| match i {
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p.clone()),
                _ => None,
            })
            .expect("peer");
        assert!(
            peer.attributes
                .contains(&LinkAttribute::IfName("zn0".into()))
        );
        assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(9)));
        assert!(peer.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(
            peer.attributes
                .contains(&LinkAttribute::Address(mac.to_vec()))
        );
    }

    #[test]
    fn addresses_are_host_routes_and_v6_skips_dad() {
        let v4 = address(3, Ipv4Addr::new(10, 50, 1, 1).into(), 32);
        assert_eq!(v4.header.family, AddressFamily::Inet);
        assert_eq!((v4.header.index, v4.header.prefix_len), (3, 32));
        assert!(!v4.header.flags.contains(AddressHeaderFlags::Nodad));
        let a6: IpAddr = "fd00::1".parse::<Ipv6Addr>().expect("v6").into();
        let v6 = address(4, a6, 128);
        assert_eq!(v6.header.family, AddressFamily::Inet6);
        assert!(v6.header.flags.contains(AddressHeaderFlags::Nodad));
        assert!(v6.attributes.contains(&AddressAttribute::Local(a6)));
        assert!(v6.attributes.contains(&AddressAttribute::Address(a6)));
    }

    #[test]
    fn device_routes_are_on_link_and_gateway_routes_universal() {
        let dev = route(&Route {
            dest: Ipv4Addr::new(10, 50, 1, 2).into(),
            prefix: 32,
            gateway: None,
            oif: 5,
        });
        assert_eq!(dev.header.scope, RouteScope::Link);
        assert_eq!(dev.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(dev.header.destination_prefix_length, 32);
        assert!(dev.attributes.contains(&RouteAttribute::Oif(5)));
        assert_eq!(
            destination(&dev),
            Some((Ipv4Addr::new(10, 50, 1, 2).into(), 32))
        );
        let gw = route(&Route {
            dest: "fd00:1::".parse::<Ipv6Addr>().expect("v6").into(),
            prefix: 64,
            gateway: Some("fd00:1::1".parse::<Ipv6Addr>().expect("v6").into()),
            oif: 5,
        });
        assert_eq!(gw.header.scope, RouteScope::Universe);
        assert_eq!(gw.header.address_family, AddressFamily::Inet6);
        assert!(
            gw.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        );
    }
}
