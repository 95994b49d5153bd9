//! Several daemons joined by veth pairs in a given topology.

use crate::{Node, run, unique};
use std::net::Ipv6Addr;
use std::process::Command;
use std::time::Duration;

/// One veth link between two nodes: interface names and IPv4 addresses on each side.
pub struct Edge {
    /// Node indexes.
    pub a: usize,
    /// See `a`.
    pub b: usize,
    /// Interface in `a`'s namespace.
    pub a_if: String,
    /// Interface in `b`'s namespace.
    pub b_if: String,
}

/// A mesh of nodes.
pub struct Mesh {
    /// Each node's configured peers.
    pub peers: Vec<Vec<String>>,
    /// The nodes (daemons started by [`Mesh::new`]).
    pub nodes: Vec<Node>,
    /// The links.
    pub edges: Vec<Edge>,
    /// Overlay addresses, by node.
    pub addrs: Vec<Ipv6Addr>,
    /// Public keys, by node.
    pub keys: Vec<String>,
}

impl Mesh {
    /// `n` nodes, a veth per edge (10.100.k.1 and .2 for edge k); the lower-numbered end of
    /// each edge dials the other. Starts every daemon and waits for every link.
    pub fn new(n: usize, edges: &[(usize, usize)]) -> Mesh {
        Mesh::new_with(n, edges, |_| String::new())
    }

    /// As [`Mesh::new`], with `extra(i)` added to node `i`'s configuration (top-level keys
    /// first, then tables), written before any daemon starts.
    pub fn new_with(n: usize, edges: &[(usize, usize)], extra: impl Fn(usize) -> String) -> Mesh {
        crate::require_root();
        let mut nodes: Vec<Node> = (0..n).map(|i| Node::new(&format!("m{i}"))).collect();
        let mut peers: Vec<Vec<String>> = vec![vec![]; n];
        let mut es = Vec::new();
        for (k, &(a, b)) in edges.iter().enumerate() {
            let (ia, ib) = (unique("e"), unique("e"));
            run(Command::new("ip").args([
                "link",
                "add",
                &ia,
                "netns",
                &nodes[a].ns.name,
                "type",
                "veth",
                "peer",
                "name",
                &ib,
                "netns",
                &nodes[b].ns.name,
            ]));
            for (node, ifname, host) in [(a, &ia, 1), (b, &ib, 2)] {
                let ip = format!("10.100.{k}.{host}/24");
                run(nodes[node]
                    .ns
                    .cmd("ip")
                    .args(["addr", "add", &ip, "dev", ifname]));
                run(nodes[node].ns.cmd("ip").args(["link", "set", ifname, "up"]));
            }
            peers[a].push(format!("udp://10.100.{k}.2:7820"));
            es.push(Edge {
                a,
                b,
                a_if: ia,
                b_if: ib,
            });
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            node.configure("udp://0.0.0.0:7820", &peers[i], &extra(i));
            node.start();
        }
        let ids: Vec<(Ipv6Addr, String)> = nodes.iter().map(|n| n.identity()).collect();
        let mut mesh = Mesh {
            peers,
            addrs: ids.iter().map(|i| i.0).collect(),
            keys: ids.iter().map(|i| i.1.clone()).collect(),
            nodes,
            edges: es,
        };
        mesh.wait_links();
        mesh
    }

    fn wait_links(&mut self) {
        for e in &self.edges {
            assert!(
                self.nodes[e.a].wait_link_up(&self.keys[e.b], Duration::from_secs(10)),
                "link {}-{} did not come up",
                e.a,
                e.b
            );
        }
    }

    /// Restarts every daemon with `eligible_roots` set to the keys of `nodes` (the same list
    /// on every node, as an operator would configure it).
    pub fn set_eligible_roots(&mut self, nodes: &[usize]) {
        let keys: Vec<String> = nodes
            .iter()
            .map(|&i| format!("{:?}", self.keys[i]))
            .collect();
        let extra = format!("eligible_roots = [{}]", keys.join(", "));
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.kill9();
            node.configure("udp://0.0.0.0:7820", &self.peers[i], &extra);
        }
        for node in self.nodes.iter_mut() {
            node.start();
        }
        self.wait_links();
    }

    /// The node index of a public key.
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// The root's node index, as node `from` sees it.
    pub fn root(&self, from: usize) -> Option<usize> {
        let t = self.nodes[from].ctl_json(&["tree"]);
        self.index_of(t["root"].as_str()?)
    }

    /// Overlay ping from `a` to `b` (`meshctl ping`): hops, if answered.
    pub fn overlay_hops(&self, a: usize, b: usize) -> Option<u64> {
        let out = self.nodes[a].ctl(&["ping", "-c", "1", &self.addrs[b].to_string(), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["Reply"]["hops"].as_u64()
    }

    /// Drops everything on edge `k` in both namespaces (nftables), as a cable cut would.
    pub fn cut(&self, k: usize) {
        let e = &self.edges[k];
        for (node, ifname) in [(e.a, &e.a_if), (e.b, &e.b_if)] {
            let script = format!(
                "table inet plcut {{\n\
                 \tchain i {{ type filter hook input priority -10; iifname \"{ifname}\" drop; }}\n\
                 \tchain o {{ type filter hook output priority -10; oifname \"{ifname}\" drop; }}\n\
                 }}\n"
            );
            let file = self.nodes[node].dir.join("cut.nft");
            std::fs::write(&file, script).expect("write nft script");
            run(self.nodes[node].ns.cmd("nft").arg("-f").arg(&file));
        }
    }

    /// Undoes [`Mesh::cut`].
    pub fn restore(&self, k: usize) {
        let e = &self.edges[k];
        for node in [e.a, e.b] {
            run(self.nodes[node]
                .ns
                .cmd("nft")
                .args(["delete", "table", "inet", "plcut"]));
        }
    }

    /// The index of the edge between `a` and `b`.
    pub fn edge(&self, a: usize, b: usize) -> Option<usize> {
        self.edges
            .iter()
            .position(|e| (e.a, e.b) == (a, b) || (e.a, e.b) == (b, a))
    }
}
