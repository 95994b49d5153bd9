//! Graphs to simulate: generators and loaders.
//!
//! A [`Graph`] is `n` nodes numbered `0..n` and a list of undirected edges without self-loops
//! or duplicates. Generators are seeded and deterministic. Loaders read edge lists (`A B` per
//! line), NetworkX node-link JSON (what `topohub` ships) and GraphML; node names are mapped to
//! numbers in order of first appearance. Simulations run on the largest connected component
//! ([`Graph::largest_component`]), since pairs in different components can never reach each
//! other whatever the routing.

use crate::rng::Rng;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// An undirected simple graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Number of nodes.
    pub n: usize,
    /// Edges `(a, b)` with `a < b`, sorted, no duplicates.
    pub edges: Vec<(u32, u32)>,
}

/// A loader's complaint, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not what the format says.
    #[error("{path}:{line}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// 1-based line (0: the whole file).
        line: usize,
        /// Why.
        reason: String,
    },
}

impl Graph {
    /// A graph from edges over `n` nodes (self-loops and duplicates dropped).
    pub fn from_edges(n: usize, edges: impl IntoIterator<Item = (u32, u32)>) -> Graph {
        let set: BTreeSet<(u32, u32)> = edges
            .into_iter()
            .filter(|(a, b)| a != b && (*a as usize) < n && (*b as usize) < n)
            .map(|(a, b)| if a < b { (a, b) } else { (b, a) })
            .collect();
        Graph {
            n,
            edges: set.into_iter().collect(),
        }
    }

    /// Neighbour lists.
    pub fn adjacency(&self) -> Vec<Vec<u32>> {
        let mut adj = vec![Vec::new(); self.n];
        for &(a, b) in &self.edges {
            adj[a as usize].push(b);
            adj[b as usize].push(a);
        }
        adj
    }

    /// Mean degree.
    pub fn mean_degree(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            2.0 * self.edges.len() as f64 / self.n as f64
        }
    }

    /// The largest connected component, renumbered `0..m` in the order of the old numbers.
    pub fn largest_component(&self) -> Graph {
        let adj = self.adjacency();
        let mut comp = vec![usize::MAX; self.n];
        let mut sizes = Vec::new();
        for s in 0..self.n {
            if comp[s] != usize::MAX {
                continue;
            }
            let c = sizes.len();
            let mut size = 0;
            let mut stack = vec![s];
            comp[s] = c;
            while let Some(u) = stack.pop() {
                size += 1;
                for &v in &adj[u] {
                    if comp[v as usize] == usize::MAX {
                        comp[v as usize] = c;
                        stack.push(v as usize);
                    }
                }
            }
            sizes.push(size);
        }
        let Some(best) = (0..sizes.len()).max_by_key(|&c| (sizes[c], usize::MAX - c)) else {
            return self.clone();
        };
        let mut new_id = vec![u32::MAX; self.n];
        let mut m = 0u32;
        for (i, c) in comp.iter().enumerate() {
            if *c == best {
                new_id[i] = m;
                m += 1;
            }
        }
        Graph::from_edges(
            m as usize,
            self.edges
                .iter()
                .filter(|(a, _)| comp[*a as usize] == best)
                .map(|&(a, b)| (new_id[a as usize], new_id[b as usize])),
        )
    }
}

/// A path of `n` nodes.
pub fn line(n: usize) -> Graph {
    Graph::from_edges(n, (1..n as u32).map(|i| (i - 1, i)))
}

/// A cycle of `n` nodes.
pub fn ring(n: usize) -> Graph {
    let mut g = line(n);
    if n > 2 {
        g = Graph::from_edges(n, g.edges.into_iter().chain([(0, n as u32 - 1)]));
    }
    g
}

/// A `w` × `h` grid.
pub fn grid(w: usize, h: usize) -> Graph {
    let mut e = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as u32;
            if x + 1 < w {
                e.push((i, i + 1));
            }
            if y + 1 < h {
                e.push((i, i + w as u32));
            }
        }
    }
    Graph::from_edges(w * h, e)
}

/// A complete `k`-ary tree of `n` nodes (node `i`'s parent is `(i - 1) / k`).
pub fn tree(n: usize, k: usize) -> Graph {
    let k = k.max(1) as u32;
    Graph::from_edges(n, (1..n as u32).map(|i| ((i - 1) / k, i)))
}

/// Erdős–Rényi G(n, m) with `m = n * mean_degree / 2` edges.
pub fn erdos_renyi(n: usize, mean_degree: f64, rng: &mut Rng) -> Graph {
    let m = ((n as f64 * mean_degree / 2.0) as usize).min(n * n.saturating_sub(1) / 2);
    let mut set = BTreeSet::new();
    while set.len() < m {
        let (a, b) = (rng.below(n as u64) as u32, rng.below(n as u64) as u32);
        if a != b {
            set.insert((a.min(b), a.max(b)));
        }
    }
    Graph::from_edges(n, set)
}

/// Barabási–Albert preferential attachment: each new node links to `m` distinct existing
/// nodes chosen with probability proportional to their degree (starting from a clique of
/// `m + 1`).
pub fn barabasi_albert(n: usize, m: usize, rng: &mut Rng) -> Graph {
    let m = m.max(1);
    let mut edges = Vec::new();
    // Every edge end, so that a uniform pick is a degree-proportional pick.
    let mut ends: Vec<u32> = Vec::new();
    let start = (m + 1).min(n);
    for a in 0..start as u32 {
        for b in a + 1..start as u32 {
            edges.push((a, b));
            ends.extend([a, b]);
        }
    }
    for v in start as u32..n as u32 {
        let mut chosen = BTreeSet::new();
        while chosen.len() < m.min(v as usize) {
            let t = ends[rng.below(ends.len() as u64) as usize];
            chosen.insert(t);
        }
        for t in chosen {
            edges.push((t, v));
            ends.extend([t, v]);
        }
    }
    Graph::from_edges(n, edges)
}

/// Waxman random geometric graph: nodes uniform in the unit square, an edge between u and v
/// with probability `alpha * exp(-d / (beta * L))` (L = √2). Checked pair by pair, so meant
/// for up to a few thousand nodes.
pub fn waxman(n: usize, alpha: f64, beta: f64, rng: &mut Rng) -> Graph {
    let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.unit(), rng.unit())).collect();
    let l = std::f64::consts::SQRT_2;
    let mut e = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let d = ((pts[a].0 - pts[b].0).powi(2) + (pts[a].1 - pts[b].1).powi(2)).sqrt();
            if rng.unit() < alpha * (-d / (beta * l)).exp() {
                e.push((a as u32, b as u32));
            }
        }
    }
    Graph::from_edges(n, e)
}

/// Names → numbers in order of first appearance.
#[derive(Default)]
struct Names(HashMap<String, u32>);

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(name.to_string()).or_insert(next)
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// An edge list: `A B` per line (further columns ignored; `#` starts a comment).
pub fn load_edge_list(path: &Path) -> Result<Graph, LoadError> {
    let text = read(path)?;
    let mut names = Names::default();
    let mut edges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(a), Some(b)) = (it.next(), it.next()) else {
            return Err(LoadError::Format {
                path: path.display().to_string(),
                line: i + 1,
                reason: format!("expected two node names, found {line:?}"),
            });
        };
        edges.push((names.id(a), names.id(b)));
    }
    Ok(Graph::from_edges(names.0.len(), edges))
}

/// NetworkX node-link JSON (`{"nodes": [{"id": ..}], "links"|"edges": [{"source": .., "target": ..}]}`).
pub fn load_node_link(path: &Path) -> Result<Graph, LoadError> {
    let text = read(path)?;
    let bad = |reason: String| LoadError::Format {
        path: path.display().to_string(),
        line: 0,
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let name = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut names = Names::default();
    if let Some(nodes) = v.get("nodes").and_then(|n| n.as_array()) {
        for n in nodes {
            let id = n
                .get("id")
                .ok_or_else(|| bad("a node without \"id\"".into()))?;
            names.id(&name(id));
        }
    }
    let links = v
        .get("links")
        .or_else(|| v.get("edges"))
        .and_then(|l| l.as_array())
        .ok_or_else(|| bad("no \"links\" (or \"edges\") array".into()))?;
    let mut edges = Vec::new();
    for l in links {
        let (Some(s), Some(t)) = (l.get("source"), l.get("target")) else {
            return Err(bad("a link without \"source\" and \"target\"".into()));
        };
        edges.push((names.id(&name(s)), names.id(&name(t))));
    }
    Ok(Graph::from_edges(names.0.len(), edges))
}

/// GraphML: `<node id=..>` and `<edge source=.. target=..>` elements.
pub fn load_graphml(path: &Path) -> Result<Graph, LoadError> {
    use quick_xml::events::Event;
    let text = read(path)?;
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut names = Names::default();
    let mut edges = Vec::new();
    loop {
        let ev = reader.read_event().map_err(|e| LoadError::Format {
            path: path.display().to_string(),
            line: 1 + text[..(reader.buffer_position() as usize).min(text.len())]
                .matches('\n')
                .count(),
            reason: format!("not XML: {e}"),
        })?;
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |k: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == k)
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                };
                match e.name().as_ref() {
                    b"node" => {
                        if let Some(id) = attr(b"id") {
                            names.id(&id);
                        }
                    }
                    b"edge" => {
                        if let (Some(s), Some(t)) = (attr(b"source"), attr(b"target")) {
                            edges.push((names.id(&s), names.id(&t)));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(Graph::from_edges(names.0.len(), edges))
}

/// Loads by extension: `.json` node-link, `.graphml`/`.xml` GraphML, anything else an edge list.
pub fn load(path: &Path) -> Result<Graph, LoadError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => load_node_link(path),
        Some("graphml") | Some("xml") => load_graphml(path),
        _ => load_edge_list(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_have_the_expected_shape() {
        assert_eq!(line(5).edges.len(), 4);
        assert_eq!(ring(5).edges.len(), 5);
        assert_eq!(grid(3, 4).edges.len(), 3 * 3 + 2 * 4);
        assert_eq!(tree(7, 2).edges.len(), 6);
        let mut r = Rng::new(1);
        let ba = barabasi_albert(1000, 2, &mut r);
        // A clique of 3, then 2 edges per node.
        assert_eq!(ba.edges.len(), 3 + 2 * 997);
        assert_eq!(ba.largest_component().n, 1000);
        let er = erdos_renyi(500, 4.0, &mut r);
        assert_eq!(er.edges.len(), 1000);
    }

    #[test]
    fn the_same_seed_gives_the_same_graph() {
        let a = barabasi_albert(300, 2, &mut Rng::new(7));
        let b = barabasi_albert(300, 2, &mut Rng::new(7));
        let c = barabasi_albert(300, 2, &mut Rng::new(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn loaders_read_all_three_formats() {
        let dir = std::env::temp_dir().join(format!("sim-topo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let el = dir.join("g.edges");
        std::fs::write(&el, "# comment\n10 20\n20 30 extra\n\n30 10\n").expect("write");
        let g = load(&el).expect("edge list");
        assert_eq!((g.n, g.edges.len()), (3, 3));
        let js = dir.join("g.json");
        std::fs::write(
            &js,
            r#"{"directed": false, "nodes": [{"id": "a"}, {"id": "b"}, {"id": 3}],
                "links": [{"source": "a", "target": "b"}, {"source": "b", "target": 3}]}"#,
        )
        .expect("write");
        let g = load(&js).expect("node-link");
        assert_eq!((g.n, g.edges.len()), (3, 2));
        let gm = dir.join("g.graphml");
        std::fs::write(
            &gm,
            r#"<?xml version="1.0"?><graphml><graph edgedefault="undirected">
               <node id="n0"/><node id="n1"/><node id="n2"/>
               <edge source="n0" target="n1"/><edge source="n1" target="n2"/></graph></graphml>"#,
        )
        .expect("write");
        let g = load(&gm).expect("graphml");
        assert_eq!((g.n, g.edges.len()), (3, 2));
        let bad = dir.join("bad.edges");
        std::fs::write(&bad, "1 2\nlonely\n").expect("write");
        let e = load(&bad).expect_err("one name on a line");
        assert!(e.to_string().contains("bad.edges:2:"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
