//! `simulations`: run a scenario (or a sweep of sizes) of the real routing core.

use clap::{Parser, Subcommand};
use simulations::{report, run, scenario::Scenario};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Discrete-event simulations of the Planetary LAN routing core")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// What every command takes.
#[derive(clap::Args)]
struct Common {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Where results go.
    #[arg(long, default_value = "target/simulations")]
    out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

impl Common {
    fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut s = Scenario::load(&self.scenario)?;
        if let Some(seed) = self.seed {
            s.seed = seed;
        }
        Ok(s)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario and print its summary.
    Run {
        #[command(flatten)]
        common: Common,
        /// Override the generator's node count.
        #[arg(long)]
        size: Option<usize>,
    },
    /// Run a scenario at several sizes and plot the figures against size.
    Sweep {
        #[command(flatten)]
        common: Common,
        /// Node counts, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        sizes: Vec<usize>,
    },
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run { common, size } => {
            let s = common.scenario()?;
            let r = run::run(&s, size, common.quiet)?;
            let stem = format!("{}-{}-s{}", s.name, r.nodes, s.seed);
            report::write_run(&common.out, &stem, &r)?;
            println!("{}", report::table(std::slice::from_ref(&r)));
            println!(
                "router drops {:?}; consent renewals {}",
                r.router_drops, r.consent_renewals
            );
            if let Some(n) = &r.names {
                println!("{}", report::names(n, &r.lookup_ms));
            }
            println!(
                "lookups found {:.2}% of {} pairs; ring upkeep {:.2} msg/node/s",
                r.resolved_fraction * 100.0,
                r.pairs,
                r.ring_msgs_per_node_s
            );
            println!(
                "results: {}/{stem}.json; peak RSS {:.0} MiB",
                common.out.display(),
                peak_rss_mib().unwrap_or(0.0)
            );
        }
        Cmd::Sweep { common, sizes } => {
            let s = common.scenario()?;
            let mut runs = Vec::new();
            for n in sizes {
                let r = run::run(&s, Some(n), common.quiet)?;
                let stem = format!("{}-{}-s{}", s.name, r.nodes, s.seed);
                report::write_run(&common.out, &stem, &r)?;
                eprintln!("{}", report::table(std::slice::from_ref(&r)));
                runs.push(r);
            }
            let stem = format!("{}-sweep-s{}", s.name, s.seed);
            report::write_sweep(&common.out, &stem, &runs)?;
            println!("{}", report::table(&runs));
            println!(
                "results: {}/{stem}.csv and .svg; peak RSS {:.0} MiB",
                common.out.display(),
                peak_rss_mib().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
