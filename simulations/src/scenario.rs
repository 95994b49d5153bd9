//! Scenarios: TOML files in `simulations/scenarios/` saying which graph, which link model,
//! which router settings, and what happens when.
//!
//! ```toml
//! name = "ba-1k"
//! seed = 1
//!
//! [topology]                 # one of the generators, or a file
//! kind = "barabasi_albert"   # line | ring | grid | tree | erdos_renyi | barabasi_albert | waxman | file
//! n = 1000
//! m = 2                      # BA: links per new node; tree: arity; grid: width
//! # mean_degree = 4.0        # erdos_renyi
//! # alpha = 0.4, beta = 0.1  # waxman
//! # path = "../shared/topologies/yggdrasil.edges"   # file: edge list, .json node-link, .graphml
//!
//! [links]
//! latency_ms = [5.0, 50.0]   # one-way latency of each link, drawn uniformly
//! loss = 0.0                 # probability that a message is lost
//!
//! [router]                   # RouterConfig overrides (seconds)
//! root_refresh = 2.0
//! root_timeout = 6.0
//! roots = "any"              # any | "best_connected:K": only the K highest-degree nodes may be root
//! near = 4                   # peers named in each node's place (0: off; see routing::Place)
//! near2 = 8                  # and peers' peers
//!
//! [run]
//! converge_max = 120.0       # give up converging after this long (virtual seconds)
//! steady = 10.0              # then run this long and measure control traffic
//! pairs = 500                # sampled (source, destination) pairs for lookups and stretch
//!
//! [[events]]                 # optional, in time order, after the measurements
//! at = 0.0                   # seconds after the measurements end
//! fail_nodes = 0.05          # this fraction of live nodes fails at once (chosen by the seed)
//! # fail_links = 0.01        # or this fraction of links
//! # partition = 0.5          # or cut the network in two (the first half of the node numbers)
//! # heal = true              # or bring every failed link back
//! [observe]                  # after the events: reachability of the pairs over time
//! duration = 30.0
//! every = 0.5
//!
//! [names]                    # optional, before the events (see `names`)
//! claims = 1000              # nodes that claim a name each
//! resolutions = 3000         # (resolver, name) pairs resolved per round
//! churn = 0.05               # then this fraction of the other nodes fails ...
//! settle = 5.0               # ... and after this long the pairs are resolved again
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (used in output file names).
    pub name: String,
    /// Seed of everything random: keys, graph, latencies, samples, failures.
    #[serde(default = "one")]
    pub seed: u64,
    /// The graph.
    pub topology: Topology,
    /// The link model.
    #[serde(default)]
    pub links: Links,
    /// Router settings.
    #[serde(default)]
    pub router: RouterSettings,
    /// Measurement settings.
    #[serde(default)]
    pub run: Run,
    /// Scripted events.
    #[serde(default)]
    pub events: Vec<ScriptedEvent>,
    /// Observation after the events.
    #[serde(default)]
    pub observe: Observe,
    /// Names: claims and resolutions (see [`crate::names`]).
    #[serde(default)]
    pub names: Option<crate::names::NamesSpec>,
    /// The directory the file is in (to resolve relative paths).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn one() -> u64 {
    1
}

/// Which graph.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Generator name or `file`.
    pub kind: String,
    /// Nodes (generators).
    #[serde(default)]
    pub n: usize,
    /// BA links per new node; tree arity; grid width.
    #[serde(default)]
    pub m: usize,
    /// Erdős–Rényi mean degree.
    #[serde(default)]
    pub mean_degree: f64,
    /// Waxman α.
    #[serde(default)]
    pub alpha: f64,
    /// Waxman β.
    #[serde(default)]
    pub beta: f64,
    /// File to load (`kind = "file"`), relative to the scenario's directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The link model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// One-way latency range, milliseconds.
    pub latency_ms: [f64; 2],
    /// Loss probability per message.
    #[serde(default)]
    pub loss: f64,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            latency_ms: [5.0, 50.0],
            loss: 0.0,
        }
    }
}

/// Router settings (seconds).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// `RouterConfig::root_refresh`.
    pub root_refresh: Option<f64>,
    /// `RouterConfig::root_timeout`.
    pub root_timeout: Option<f64>,
    /// `RouterConfig::rtt_probe`.
    pub rtt_probe: Option<f64>,
    /// `RouterConfig::table_refresh`.
    pub table_refresh: Option<f64>,
    /// `any` or `best_connected:K`.
    pub roots: Option<String>,
    /// `RouterConfig::bucket_size`.
    pub bucket_size: Option<usize>,
    /// `RouterConfig::lookup_parallelism`.
    pub lookup_parallelism: Option<usize>,
    /// `RouterConfig::near`: neighbours named in each node's place (0 turns it off).
    pub near: Option<usize>,
    /// `RouterConfig::near2`: peers' peers named in each node's place (0 turns it off).
    pub near2: Option<usize>,
}

/// Measurement settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Give up converging after this long.
    pub converge_max: f64,
    /// Steady-state window for control traffic.
    pub steady: f64,
    /// Sampled pairs.
    pub pairs: usize,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            converge_max: 120.0,
            steady: 10.0,
            pairs: 500,
        }
    }
}

/// One scripted event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedEvent {
    /// Seconds after the measurements end.
    pub at: f64,
    /// Fraction of live nodes that fail.
    pub fail_nodes: Option<f64>,
    /// Fraction of links that fail.
    pub fail_links: Option<f64>,
    /// Cut the network in two at this fraction of the node numbers.
    pub partition: Option<f64>,
    /// Bring every failed link between live nodes back.
    pub heal: Option<bool>,
}

/// Observation after the events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    /// How long.
    pub duration: f64,
    /// Sampling interval.
    pub every: f64,
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            duration: 30.0,
            every: 0.5,
        }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut s: Scenario =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        s.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        s.check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        let t = &self.topology;
        let known = [
            "line",
            "ring",
            "grid",
            "tree",
            "erdos_renyi",
            "barabasi_albert",
            "waxman",
            "file",
        ];
        if !known.contains(&t.kind.as_str()) {
            return Err(format!(
                "topology.kind {:?} is not one of {}",
                t.kind,
                known.join(", ")
            ));
        }
        if t.kind == "file" && t.path.is_none() {
            return Err("topology.kind = \"file\" needs topology.path".into());
        }
        if t.kind != "file" && t.n < 2 {
            return Err("topology.n must be at least 2".into());
        }
        if !(0.0..1.0).contains(&self.links.loss) {
            return Err("links.loss must be in [0, 1)".into());
        }
        if self.links.latency_ms.iter().any(|l| l.is_nan() || *l < 0.0) {
            return Err("links.latency_ms must be two non-negative numbers".into());
        }
        if let Some(r) = &self.router.roots
            && r != "any"
            && !r
                .strip_prefix("best_connected:")
                .is_some_and(|k| k.parse::<usize>().is_ok_and(|k| k > 0))
        {
            return Err(format!(
                "router.roots {r:?}: expected \"any\" or \"best_connected:K\" with K > 0"
            ));
        }
        for (i, e) in self.events.iter().enumerate() {
            let n = [
                e.fail_nodes.is_some(),
                e.fail_links.is_some(),
                e.partition.is_some(),
                e.heal == Some(true),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if n != 1 {
                return Err(format!(
                    "events[{i}]: give exactly one of fail_nodes, fail_links, partition, heal = true"
                ));
            }
            for f in [e.fail_nodes, e.fail_links, e.partition]
                .into_iter()
                .flatten()
            {
                if !(0.0..=1.0).contains(&f) {
                    return Err(format!("events[{i}]: fractions lie in [0, 1]"));
                }
            }
        }
        if self.observe.every <= 0.0 {
            return Err("observe.every must be positive".into());
        }
        Ok(())
    }
}
