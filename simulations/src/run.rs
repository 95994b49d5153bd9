//! Running a scenario and measuring it.
//!
//! Phases: build the graph and the routers; run until the tree has converged; run a steady
//! window and count control traffic; resolve sampled pairs (lookup latency and cost) and send
//! one packet along each (hops and stretch against the shortest path); read every router's
//! state size; then play the scripted events and sample how many pairs still reach each other
//! over time.

use crate::engine::Sim;
use crate::rng::Rng;
use crate::scenario::Scenario;
use crate::topology::{self, Graph};
use indicatif::{ProgressBar, ProgressStyle};
use routing::{RouterConfig, address};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Mean and quantiles of a sample.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Values.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Of these values.
    pub fn of(mut v: Vec<f64>) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Summary {
            count: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: q(0.5),
            p99: q(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Results {
    /// Scenario name.
    pub name: String,
    /// Seed.
    pub seed: u64,
    /// Nodes simulated (the graph's largest component).
    pub nodes: usize,
    /// Links.
    pub links: usize,
    /// Mean degree.
    pub mean_degree: f64,
    /// Largest degree.
    pub max_degree: usize,
    /// Virtual seconds until the tree converged (None: not within `converge_max`).
    pub converged_s: Option<f64>,
    /// Tree depth over nodes.
    pub depth: Summary,
    /// Control messages per node per second in the steady window.
    pub control_msgs_per_node_s: f64,
    /// Control bytes per node per second in the steady window.
    pub control_bytes_per_node_s: f64,
    /// Keyspace ring upkeep (`RING` messages) per node per second in the steady window, part
    /// of the control messages.
    pub ring_msgs_per_node_s: f64,
    /// Pairs sampled.
    pub pairs: usize,
    /// Fraction of pairs whose lookup found the owner.
    pub resolved_fraction: f64,
    /// Fraction of pairs whose packet arrived.
    pub delivered_fraction: f64,
    /// Lookup latency, milliseconds (lookups that were needed).
    pub lookup_ms: Summary,
    /// Nodes asked per lookup (lookup requests the source sent).
    pub lookup_nodes_asked: Summary,
    /// Link hops of lookup messages (requests and answers) per lookup.
    pub lookup_hops_per_lookup: f64,
    /// Hops of delivered packets.
    pub hops: Summary,
    /// Shortest-path hops of the same pairs.
    pub shortest: Summary,
    /// Stretch (hops / shortest) of delivered packets.
    pub stretch: Summary,
    /// The stretch of each delivered packet, sorted (for the CDF).
    pub stretch_values: Vec<f64>,
    /// Latency stretch: the path's latency over the lowest-latency path's.
    pub latency_stretch: Summary,
    /// Routing state entries per node.
    pub state_entries: Summary,
    /// Routing state bytes per node.
    pub state_bytes: Summary,
    /// Mean over nodes of entries / (degree × log2 n).
    pub state_per_degree_log_n: f64,
    /// After the events: (seconds since the first event, fraction of still-connected pairs
    /// that deliver).
    pub reachability: Vec<(f64, f64)>,
    /// Seconds from the first event until every still-connected sampled pair delivers and
    /// keeps delivering (None: not within the observation).
    pub recovery_s: Option<f64>,
    /// Routed and control messages the routers dropped over the whole run, by reason (summed
    /// over nodes; `rate_limited`: lookup requests over a peer's budget).
    pub router_drops: std::collections::BTreeMap<String, u64>,
    /// Renewals of a parent's consent the nodes asked for over the whole run.
    pub consent_renewals: u64,
    /// Names: claims and resolutions (if the scenario has `[names]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<crate::names::NameResults>,
    /// Events the engine handled.
    pub engine_events: u64,
    /// Wall-clock seconds of the run (not part of the determinism check).
    #[serde(skip)]
    pub wall_s: f64,
}

/// Builds the scenario's graph (largest connected component).
pub fn graph(s: &Scenario, size: Option<usize>) -> anyhow::Result<Graph> {
    let t = &s.topology;
    let n = size.unwrap_or(t.n);
    let mut rng = Rng::new(s.seed ^ 0x0067_7261_7068);
    let g = match t.kind.as_str() {
        "line" => topology::line(n),
        "ring" => topology::ring(n),
        "grid" => {
            let w = if t.m > 0 {
                t.m
            } else {
                (n as f64).sqrt().ceil() as usize
            };
            topology::grid(w, n.div_ceil(w.max(1)))
        }
        "tree" => topology::tree(n, t.m.max(2)),
        "erdos_renyi" => topology::erdos_renyi(n, t.mean_degree.max(1.0), &mut rng),
        "barabasi_albert" => topology::barabasi_albert(n, t.m.max(1), &mut rng),
        "waxman" => topology::waxman(n, t.alpha, t.beta, &mut rng),
        _ => {
            let p = t.path.as_ref().map(|p| s.dir.join(p)).unwrap_or_default();
            topology::load(&p)?
        }
    };
    Ok(g.largest_component())
}

fn router_config(s: &Scenario, g: &Graph, keys_by_node: &[routing::Key]) -> RouterConfig {
    let mut c = RouterConfig::default();
    let r = &s.router;
    let secs = Duration::from_secs_f64;
    if let Some(x) = r.root_refresh {
        c.root_refresh = secs(x);
    }
    if let Some(x) = r.root_timeout {
        c.root_timeout = secs(x);
    }
    if let Some(x) = r.rtt_probe {
        c.rtt_probe = secs(x);
    }
    if let Some(x) = r.table_refresh {
        c.table_refresh = secs(x);
    }
    if let Some(x) = r.bucket_size {
        c.bucket_size = x.max(1);
    }
    if let Some(x) = r.near {
        c.near = x;
    }
    if let Some(x) = r.near2 {
        c.near2 = x;
    }
    if let Some(x) = r.lookup_parallelism {
        c.lookup_parallelism = x.max(1);
    }
    if let Some(k) = r
        .roots
        .as_deref()
        .and_then(|r| r.strip_prefix("best_connected:"))
        .and_then(|k| k.parse::<usize>().ok())
        && !keys_by_node.is_empty()
    {
        let adj = g.adjacency();
        let mut by_degree: Vec<usize> = (0..g.n).collect();
        by_degree.sort_by_key(|&i| (std::cmp::Reverse(adj[i].len()), i));
        c.eligible_roots = Some(
            by_degree
                .into_iter()
                .take(k)
                .map(|i| keys_by_node[i])
                .collect(),
        );
    }
    c
}

fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_message(what.to_string());
    b
}

type LiveGraph = petgraph::graph::UnGraph<(), u64>;

/// Shortest paths from `src` over live links (petgraph's Dijkstra): hop counts and latencies.
fn shortest_from(g: &LiveGraph, src: u32) -> (HashMap<u32, u32>, HashMap<u32, u64>) {
    let s = petgraph::graph::NodeIndex::new(src as usize);
    let hops = petgraph::algo::dijkstra(g, s, None, |_| 1u32)
        .into_iter()
        .map(|(k, d)| (k.index() as u32, d))
        .collect();
    let lat = petgraph::algo::dijkstra(g, s, None, |e| *e.weight())
        .into_iter()
        .map(|(k, d)| (k.index() as u32, d))
        .collect();
    (hops, lat)
}

fn live_graph(sim: &Sim) -> LiveGraph {
    let mut edges: Vec<(u32, u32, u64)> = sim
        .links
        .iter()
        .filter(|((a, b), l)| l.up && sim.nodes[*a as usize].alive && sim.nodes[*b as usize].alive)
        .map(|(k, l)| (k.0, k.1, l.latency_ns))
        .collect();
    edges.sort_unstable();
    let mut g = LiveGraph::with_capacity(sim.nodes.len(), edges.len());
    for _ in 0..sim.nodes.len() {
        g.add_node(());
    }
    g.extend_with_edges(edges);
    g
}

/// Connected components of live nodes: a label per node (u32::MAX for dead ones).
fn components(sim: &Sim) -> Vec<u32> {
    let mut label = vec![u32::MAX; sim.nodes.len()];
    let mut next = 0;
    for s in 0..sim.nodes.len() as u32 {
        if label[s as usize] != u32::MAX || !sim.nodes[s as usize].alive {
            continue;
        }
        for (i, d) in sim.distances(s).iter().enumerate() {
            if *d != u32::MAX {
                label[i] = next;
            }
        }
        next += 1;
    }
    label
}

/// Control bytes sent between two readings of the per-kind counters, per node per second
/// (`per`: nodes times seconds), as "kind: bytes" for the kinds that sent any.
fn by_kind(after: &[u64; 32], before: &[u64; 32], per: f64) -> String {
    after
        .iter()
        .zip(before)
        .enumerate()
        .filter(|(_, (a, b))| a > b)
        .map(|(k, (a, b))| format!("{k}: {:.0}", (a - b) as f64 / per))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs a scenario; `size` overrides the generator's node count.
pub fn run(s: &Scenario, size: Option<usize>, quiet: bool) -> anyhow::Result<Results> {
    let wall = Instant::now();
    // SIM_DEBUG=1 prints diagnostics of failed lookups and deliveries (see `diagnose`).
    let debug = std::env::var_os("SIM_DEBUG").is_some();
    let g = graph(s, size)?;
    anyhow::ensure!(g.n >= 2, "the graph has fewer than two connected nodes");
    let adj = g.adjacency();
    let lat = (s.links.latency_ms[0], s.links.latency_ms[1]);
    let mut sim = Sim::new(
        &g,
        |keys| router_config(s, &g, keys),
        s.seed,
        lat,
        s.links.loss,
    );
    let all: Vec<u32> = (0..g.n as u32).collect();

    // 1. Converge.
    let max_ns = (s.run.converge_max * 1e9) as u64;
    let pb = bar((s.run.converge_max * 10.0) as u64, "converging", quiet);
    let mut converged_s = None;
    while sim.now_ns < max_ns {
        sim.run_for(Duration::from_millis(100));
        pb.set_position(sim.now_ns / 100_000_000);
        if sim.converged(&all) {
            converged_s = Some(sim.secs());
            break;
        }
    }
    pb.finish_and_clear();
    let depth = Summary::of(
        sim.nodes
            .iter()
            .map(|n| n.router.coords().depth() as f64)
            .collect(),
    );

    // 2. Steady window: control traffic.
    let control = |sim: &Sim| -> (u64, u64) {
        sim.nodes.iter().fold((0, 0), |(m, b), n| {
            let st = n.router.stats();
            (m + st.control_sent, b + st.control_bytes)
        })
    };
    let coords0: Vec<routing::Coords> = sim
        .nodes
        .iter()
        .map(|n| n.router.coords().clone())
        .collect();
    let ring = |sim: &Sim| -> u64 {
        sim.nodes
            .iter()
            .map(|n| n.router.stats().ring_messages)
            .sum()
    };
    let (m0, b0) = control(&sim);
    let r0 = ring(&sim);
    let lk = |sim: &Sim| -> (u64, u64) {
        sim.nodes.iter().fold((0, 0), |(l, q), n| {
            let st = n.router.stats();
            (l + st.lookups, q + st.lookup_requests)
        })
    };
    let (l0, q0) = lk(&sim);
    let rk = |sim: &Sim| -> [u64; 4] {
        sim.nodes.iter().fold([0; 4], |t, n| {
            let st = n.router.stats();
            [
                t[0] + st.ring_messages,
                t[1] + st.ring_stabilisations,
                t[2] + st.ring_delegations,
                t[3] + st.ring_corrections,
            ]
        })
    };
    let rk0 = rk(&sim);
    let kinds = |sim: &Sim| -> [u64; 32] {
        let mut t = [0u64; 32];
        for n in &sim.nodes {
            for (a, b) in t.iter_mut().zip(n.router.stats().control_bytes_by_kind) {
                *a += b;
            }
        }
        t
    };
    let k0 = kinds(&sim);
    let dump = std::env::var("SIM_RING_DUMP").ok().and_then(|v| {
        let (a, b) = v.split_once("..")?;
        Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
    });
    if let Some((lo, hi)) = dump {
        let step = s.run.steady / 6.0;
        for _ in 0..6 {
            crate::diagnose::ring_dump(&sim, &adj, lo, hi);
            crate::diagnose::ring_sorted(&sim);
            let a = rk(&sim);
            let (ka, qa) = (kinds(&sim), lk(&sim));
            sim.run_for(Duration::from_secs_f64(step));
            let b = rk(&sim);
            let (kb, qb) = (kinds(&sim), lk(&sim));
            let per = g.n as f64 * step;
            let d = |i: usize| (b[i] - a[i]) as f64 / per;
            eprintln!(
                "  next {step:.0} s, per node per s: ring {:.3} (stabilisations {:.3}, delegated {:.3}); lookups {:.3}, requests {:.3}; bytes by kind {}",
                d(0),
                d(1),
                d(2),
                (qb.0 - qa.0) as f64 / per,
                (qb.1 - qa.1) as f64 / per,
                by_kind(&kb, &ka, per)
            );
        }
        crate::diagnose::ring_dump(&sim, &adj, lo, hi);
    } else {
        sim.run_for(Duration::from_secs_f64(s.run.steady));
    }
    let (m1, b1) = control(&sim);
    let r1 = ring(&sim);
    if debug {
        let (l1, q1) = lk(&sim);
        let per = g.n as f64 * s.run.steady;
        eprintln!(
            "steady window: {:.3} lookups and {:.3} lookup requests per node per s",
            (l1 - l0) as f64 / per,
            (q1 - q0) as f64 / per
        );
        eprintln!(
            "steady window: control bytes per node per s by kind: {}",
            by_kind(&kinds(&sim), &k0, per)
        );
        let rk1 = rk(&sim);
        let d = |i: usize| (rk1[i] - rk0[i]) as f64 / per;
        eprintln!(
            "steady window: per node per s, {:.3} ring messages, {:.3} of them stabilisations; \
             {:.3} records delegated, {:.3} corrections",
            d(0),
            d(1),
            d(2),
            d(3)
        );
        crate::diagnose::moved(&sim, &coords0);
    }
    let per = (g.n as f64 * s.run.steady).max(1e-9);
    let control_msgs_per_node_s = (m1 - m0) as f64 / per;
    let control_bytes_per_node_s = (b1 - b0) as f64 / per;
    let ring_msgs_per_node_s = (r1 - r0) as f64 / per;

    // 3. Lookups and one packet per pair.
    let mut rng = Rng::new(s.seed ^ 0x0070_6169_7273);
    let pairs = sample_pairs(g.n, s.run.pairs, &mut rng);
    let asked0: Vec<u64> = pairs
        .iter()
        .map(|(a, _)| sim.nodes[*a as usize].router.stats().lookup_requests)
        .collect();
    for &(a, b) in &pairs {
        let addr = address::node_address(&sim.keys[b as usize]);
        if let Some(t) = routing::dht::target_of(&addr) {
            sim.tracked.insert((sim.keys[a as usize], t));
        }
    }
    // Lookups start in batches of LOOKUP_BATCH every LOOKUP_BATCH_EVERY, so that a sample of
    // thousands of pairs does not turn into thousands of simultaneous lookups, which on a
    // tree-like graph would all cross the root's links at once and measure its lookup budget.
    const LOOKUP_BATCH: usize = 500;
    const LOOKUP_BATCH_EVERY: u64 = 3_000_000_000;
    let t0 = sim.now_ns;
    let mut pending: Vec<usize> = Vec::new();
    let mut lookup_ms = Vec::new();
    let mut found = vec![false; pairs.len()];
    let mut started = vec![t0; pairs.len()];
    let mut pending_at_start = vec![false; pairs.len()];
    let mut launched = 0;
    let pb = bar(pairs.len() as u64, "lookups", quiet);
    let mut deadline = t0;
    loop {
        if launched < pairs.len()
            && sim.now_ns >= t0 + (launched / LOOKUP_BATCH) as u64 * LOOKUP_BATCH_EVERY
        {
            let end = (launched + LOOKUP_BATCH).min(pairs.len());
            for i in launched..end {
                let (a, b) = pairs[i];
                let addr = address::node_address(&sim.keys[b as usize]);
                let now = sim.now();
                started[i] = sim.now_ns;
                match sim.nodes[a as usize].router.resolve(now, &addr) {
                    Some(k) => found[i] = k == sim.keys[b as usize],
                    None => {
                        pending.push(i);
                        pending_at_start[i] = true;
                    }
                }
                sim.collect(a);
            }
            if debug && launched == 0 {
                crate::diagnose::nearest_neighbours(&sim, &adj);
                crate::diagnose::ring_sorted(&sim);
            }
            launched = end;
            deadline = sim.now_ns + 30_000_000_000;
        }
        if (pending.is_empty() && launched == pairs.len()) || sim.now_ns >= deadline {
            break;
        }
        sim.run_for(Duration::from_millis(10));
        pending.retain(|&i| {
            let (a, b) = pairs[i];
            let addr = address::node_address(&sim.keys[b as usize]);
            match sim.resolved.get(&(a, addr)) {
                Some((t, k)) => {
                    found[i] = *k == Some(sim.keys[b as usize]);
                    if found[i] {
                        lookup_ms.push((t - started[i]) as f64 / 1e6);
                    }
                    false
                }
                None => true,
            }
        });
        pb.set_position((launched - pending.len()) as u64);
    }
    let needed = pending_at_start.iter().filter(|x| **x).count();
    pb.finish_and_clear();
    // Per source (with more pairs than nodes, a source runs several lookups: its requests
    // are shared among them).
    let mut lookups_by_source: HashMap<u32, (u64, u64)> = HashMap::new();
    for (i, ((a, _), a0)) in pairs.iter().zip(&asked0).enumerate() {
        let e = lookups_by_source.entry(*a).or_insert((*a0, 0));
        e.0 = e.0.min(*a0);
        e.1 += u64::from(pending_at_start[i]);
    }
    let lookup_nodes_asked = Summary::of(
        pairs
            .iter()
            .filter_map(|(a, _)| {
                let (a0, n) = lookups_by_source.get(a)?;
                let asked = sim.nodes[*a as usize].router.stats().lookup_requests - a0;
                (asked > 0 && *n > 0).then(|| asked as f64 / *n as f64)
            })
            .collect(),
    );
    let lookup_hops_per_lookup = sim.tracked_hops as f64 / needed.max(1) as f64;
    sim.tracked.clear();
    let resolved_fraction = found.iter().filter(|f| **f).count() as f64 / pairs.len().max(1) as f64;

    let live = live_graph(&sim);
    let (mut hops, mut shortest, mut stretch) = (Vec::new(), Vec::new(), Vec::new());
    let mut lat_stretch = Vec::new();
    let mut delivered = 0;
    for (i, &(a, b)) in pairs.iter().enumerate() {
        if !found[i] {
            if debug {
                crate::diagnose::unresolved(&sim, &adj, a, b, t0);
            }
            continue;
        }
        let (dh, dl) = shortest_from(&live, a);
        let d = dh.get(&b).copied().unwrap_or(u32::MAX);
        let l = dl.get(&b).copied().unwrap_or(u64::MAX);
        if let Some((h, lat)) = sim.walk(a, b, b"stretch probe") {
            delivered += 1;
            hops.push(h as f64);
            shortest.push(d as f64);
            stretch.push(h as f64 / d.max(1) as f64);
            lat_stretch.push(lat as f64 / l.max(1) as f64);
        } else if debug {
            crate::diagnose::undelivered(&sim, a, b, t0);
        }
    }
    let delivered_fraction = delivered as f64 / pairs.len().max(1) as f64;

    // 4. State per node.
    let log_n = (g.n as f64).log2().max(1.0);
    let mut entries = Vec::with_capacity(g.n);
    let mut bytes = Vec::with_capacity(g.n);
    let mut ratio = 0.0;
    for (i, n) in sim.nodes.iter().enumerate() {
        let (e, b) = n.router.state_size();
        entries.push(e as f64);
        bytes.push(b as f64);
        ratio += e as f64 / (adj[i].len().max(1) as f64 * log_n);
    }
    let state_per_degree_log_n = ratio / g.n as f64;

    // 5. Names.
    let names = s
        .names
        .as_ref()
        .map(|spec| crate::names::run_names(spec, &mut sim, &mut rng));

    // 6. Events, and reachability over time.
    let (reachability, recovery_s) = play_events(s, &mut sim, &pairs, &mut rng, quiet);

    Ok(Results {
        name: s.name.clone(),
        seed: s.seed,
        nodes: g.n,
        links: g.edges.len(),
        mean_degree: g.mean_degree(),
        max_degree: adj.iter().map(Vec::len).max().unwrap_or(0),
        converged_s,
        depth,
        control_msgs_per_node_s,
        control_bytes_per_node_s,
        ring_msgs_per_node_s,
        pairs: pairs.len(),
        resolved_fraction,
        delivered_fraction,
        lookup_ms: Summary::of(lookup_ms),
        lookup_nodes_asked,
        lookup_hops_per_lookup,
        hops: Summary::of(hops),
        shortest: Summary::of(shortest),
        stretch: Summary::of(stretch.clone()),
        latency_stretch: Summary::of(lat_stretch),
        stretch_values: {
            let mut v = stretch;
            v.sort_by(f64::total_cmp);
            v
        },
        state_entries: Summary::of(entries),
        state_bytes: Summary::of(bytes),
        state_per_degree_log_n,
        reachability,
        recovery_s,
        router_drops: {
            let mut m = std::collections::BTreeMap::new();
            for n in &sim.nodes {
                for (k, v) in &n.router.stats().dropped {
                    *m.entry(k.to_string()).or_insert(0) += v;
                }
            }
            m
        },
        consent_renewals: sim
            .nodes
            .iter()
            .map(|n| n.router.stats().consent_renewals)
            .sum(),
        names,
        engine_events: sim.events,
        wall_s: wall.elapsed().as_secs_f64(),
    })
}

/// Distinct sources where possible, each with a different destination.
fn sample_pairs(n: usize, count: usize, rng: &mut Rng) -> Vec<(u32, u32)> {
    let mut used = BTreeSet::new();
    let mut v = Vec::with_capacity(count);
    while v.len() < count {
        let a = rng.below(n as u64) as u32;
        if used.len() < n && !used.insert(a) {
            continue;
        }
        let mut b = rng.below(n as u64) as u32;
        while b == a {
            b = rng.below(n as u64) as u32;
        }
        v.push((a, b));
    }
    v
}

fn play_events(
    s: &Scenario,
    sim: &mut Sim,
    pairs: &[(u32, u32)],
    rng: &mut Rng,
    quiet: bool,
) -> (Vec<(f64, f64)>, Option<f64>) {
    if s.events.is_empty() {
        return (Vec::new(), None);
    }
    let start = sim.now_ns;
    let mut events = s.events.clone();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut next_event = 0;
    let every = Duration::from_secs_f64(s.observe.every);
    let end = start + ((events.last().map_or(0.0, |e| e.at) + s.observe.duration) * 1e9) as u64;
    let mut series = Vec::new();
    let mut labels = components(sim);
    let pb = bar(
        (end - start) / every.as_nanos().max(1) as u64,
        "observing",
        quiet,
    );
    while sim.now_ns <= end {
        while next_event < events.len()
            && start + (events[next_event].at * 1e9) as u64 <= sim.now_ns
        {
            apply(&events[next_event], sim, rng);
            labels = components(sim);
            next_event += 1;
        }
        let mut ok = 0;
        let mut total = 0;
        for &(a, b) in pairs {
            let (la, lb) = (labels[a as usize], labels[b as usize]);
            if la == u32::MAX || la != lb {
                continue; // failed, or cut off: no routing could reach it
            }
            total += 1;
            let key = sim.keys[b as usize];
            if sim.nodes[a as usize].router.knows(&key) && sim.walk(a, b, b"reachability").is_some()
            {
                ok += 1;
                continue;
            }
            // Not known, or the packet was lost: look it up again (as meshd would).
            let addr = address::node_address(&key);
            let now = sim.now();
            let _ = sim.nodes[a as usize].router.resolve(now, &addr);
            sim.collect(a);
        }
        let t = (sim.now_ns - start) as f64 / 1e9;
        series.push((
            t,
            if total == 0 {
                1.0
            } else {
                ok as f64 / total as f64
            },
        ));
        pb.inc(1);
        sim.run_for(every);
    }
    pb.finish_and_clear();
    let first = events.first().map_or(0.0, |e| e.at);
    // Recovered from the first sample after which every sample is 1.0.
    let mut recovery = None;
    for (t, f) in series.iter().rev() {
        if *f < 1.0 {
            break;
        }
        if *t >= first {
            recovery = Some(t - first);
        }
    }
    if series.last().is_some_and(|(_, f)| *f < 1.0) {
        recovery = None;
    }
    (series, recovery)
}

fn apply(e: &crate::scenario::ScriptedEvent, sim: &mut Sim, rng: &mut Rng) {
    let n = sim.nodes.len();
    if let Some(f) = e.fail_nodes {
        let mut live: Vec<u32> = (0..n as u32)
            .filter(|i| sim.nodes[*i as usize].alive)
            .collect();
        let k = (live.len() as f64 * f).round() as usize;
        for j in 0..k {
            let pick = j + rng.below((live.len() - j) as u64) as usize;
            live.swap(j, pick);
            sim.fail_node(live[j]);
        }
    }
    if let Some(f) = e.fail_links {
        let mut up: Vec<(u32, u32)> = sim
            .links
            .iter()
            .filter(|(_, l)| l.up)
            .map(|(k, _)| *k)
            .collect();
        up.sort_unstable();
        let k = (up.len() as f64 * f).round() as usize;
        for j in 0..k {
            let pick = j + rng.below((up.len() - j) as u64) as usize;
            up.swap(j, pick);
            sim.link_down(up[j].0, up[j].1);
        }
    }
    if let Some(f) = e.partition {
        let cut = (n as f64 * f) as u32;
        let mut across: Vec<(u32, u32)> = sim
            .links
            .iter()
            .filter(|((a, b), l)| l.up && ((*a < cut) != (*b < cut)))
            .map(|(k, _)| *k)
            .collect();
        across.sort_unstable();
        for (a, b) in across {
            sim.link_down(a, b);
        }
    }
    if e.heal == Some(true) {
        let mut down: Vec<(u32, u32)> = sim
            .links
            .iter()
            .filter(|(_, l)| !l.up)
            .map(|(k, _)| *k)
            .collect();
        down.sort_unstable();
        for (a, b) in down {
            sim.link_up(a, b);
        }
    }
}
