//! Output: JSON and CSV files, SVG plots (plotters), and the summary table printed at the end.

use crate::run::Results;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// The summary table (Markdown) of one or more runs.
pub fn table(runs: &[Results]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| run | nodes | links | converged (s) | depth mean/max | stretch mean / p50 / p99 / max | latency stretch mean | hops mean | delivered | lookup ms p50 / p99 | nodes asked mean | lookup hops | state entries mean / max | state KB mean | ctrl msg/node/s | ctrl B/node/s | recovery (s) | wall (s) |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} / {:.0} | {:.3} / {:.2} / {:.2} / {:.2} | {:.3} | {:.2} | {:.1}% | {:.0} / {:.0} | {:.1} | {:.1} | {:.1} / {:.0} | {:.1} | {:.2} | {:.0} | {} | {:.0} |",
            r.name,
            r.nodes,
            r.links,
            r.converged_s.map_or("no".into(), |c| format!("{c:.1}")),
            r.depth.mean,
            r.depth.max,
            r.stretch.mean,
            r.stretch.p50,
            r.stretch.p99,
            r.stretch.max,
            r.latency_stretch.mean,
            r.hops.mean,
            r.delivered_fraction * 100.0,
            r.lookup_ms.p50,
            r.lookup_ms.p99,
            r.lookup_nodes_asked.mean,
            r.lookup_hops_per_lookup,
            r.state_entries.mean,
            r.state_entries.max,
            r.state_bytes.mean / 1000.0,
            r.control_msgs_per_node_s,
            r.control_bytes_per_node_s,
            r.recovery_s.map_or("-".into(), |t| format!("{t:.1}")),
            r.wall_s,
        );
    }
    s
}

/// Writes `<out>/<stem>.json`, the reachability series as CSV, and the plots of one run.
pub fn write_run(out: &Path, stem: &str, r: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join(format!("{stem}.json")),
        serde_json::to_string_pretty(r)?,
    )?;
    if !r.reachability.is_empty() {
        let mut csv = String::from("seconds,reachable_fraction\n");
        for (t, f) in &r.reachability {
            let _ = writeln!(csv, "{t:.3},{f:.4}");
        }
        std::fs::write(out.join(format!("{stem}-reachability.csv")), csv)?;
        line_plot(
            &out.join(format!("{stem}-reachability.svg")),
            &format!("{}: connected pairs that deliver", r.name),
            "seconds since the observation began (events at their `at`)",
            "fraction of connected pairs",
            &[("reachable", r.reachability.clone())],
            (0.0, 1.02),
        )?;
    }
    if !r.stretch_values.is_empty() {
        let n = r.stretch_values.len() as f64;
        let cdf: Vec<(f64, f64)> = r
            .stretch_values
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, (i + 1) as f64 / n))
            .collect();
        line_plot(
            &out.join(format!("{stem}-stretch-cdf.svg")),
            &format!(
                "{}: stretch CDF ({} nodes, mean {:.3})",
                r.name, r.nodes, r.stretch.mean
            ),
            "stretch (path hops / shortest hops)",
            "fraction of pairs",
            &[("stretch", cdf)],
            (0.0, 1.02),
        )?;
    }
    Ok(())
}

/// Writes the sweep's CSV and its plots against network size.
pub fn write_sweep(out: &Path, stem: &str, runs: &[Results]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut csv = String::from(
        "nodes,links,mean_degree,converged_s,stretch_mean,stretch_p99,state_entries_mean,state_entries_max,state_bytes_mean,lookup_nodes_asked_mean,lookup_hops_per_lookup,lookup_ms_p50,ctrl_msgs_per_node_s,ctrl_bytes_per_node_s,wall_s\n",
    );
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{:.3},{},{:.4},{:.3},{:.2},{},{:.0},{:.2},{:.2},{:.1},{:.3},{:.1},{:.1}",
            r.nodes,
            r.links,
            r.mean_degree,
            r.converged_s.map_or(String::new(), |c| format!("{c:.2}")),
            r.stretch.mean,
            r.stretch.p99,
            r.state_entries.mean,
            r.state_entries.max,
            r.state_bytes.mean,
            r.lookup_nodes_asked.mean,
            r.lookup_hops_per_lookup,
            r.lookup_ms.p50,
            r.control_msgs_per_node_s,
            r.control_bytes_per_node_s,
            r.wall_s
        );
    }
    std::fs::write(out.join(format!("{stem}.csv")), csv)?;
    let pts = |f: &dyn Fn(&Results) -> Option<f64>| -> Vec<(f64, f64)> {
        runs.iter()
            .filter_map(|r| f(r).map(|y| (r.nodes as f64, y)))
            .collect()
    };
    // State per node against a fitted c · mean degree · log2 n.
    let state = pts(&|r| Some(r.state_entries.mean));
    let fit_c = {
        let (mut num, mut den) = (0.0, 0.0);
        for r in runs {
            let x = r.mean_degree * (r.nodes as f64).log2();
            num += x * r.state_entries.mean;
            den += x * x;
        }
        if den > 0.0 { num / den } else { 0.0 }
    };
    let fitted: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                r.nodes as f64,
                fit_c * r.mean_degree * (r.nodes as f64).log2(),
            )
        })
        .collect();
    let ymax = state.iter().chain(&fitted).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    line_plot(
        &out.join(format!("{stem}-state.svg")),
        &format!("routing state per node (fit: {fit_c:.2} · degree · log2 n)"),
        "nodes",
        "entries per node (mean)",
        &[("measured", state), ("fit", fitted)],
        (0.0, ymax),
    )?;
    let conv = pts(&|r| r.converged_s);
    let ymax = conv.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    line_plot(
        &out.join(format!("{stem}-convergence.svg")),
        "time to converge",
        "nodes",
        "virtual seconds",
        &[("converged", conv)],
        (0.0, ymax),
    )?;
    let asked = pts(&|r| Some(r.lookup_nodes_asked.mean));
    let hops = pts(&|r| Some(r.lookup_hops_per_lookup));
    let ymax = asked.iter().chain(&hops).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    line_plot(
        &out.join(format!("{stem}-lookup.svg")),
        "lookup cost",
        "nodes",
        "per lookup",
        &[
            ("nodes asked", asked),
            ("link hops of lookup messages", hops),
        ],
        (0.0, ymax),
    )?;
    let st = pts(&|r| Some(r.stretch.mean));
    let ymax = st.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    line_plot(
        &out.join(format!("{stem}-stretch.svg")),
        "mean stretch",
        "nodes",
        "stretch",
        &[("mean stretch", st)],
        (1.0, ymax.max(1.2)),
    )?;
    Ok(())
}

fn line_plot(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    y: (f64, f64),
) -> anyhow::Result<()> {
    let xs = series.iter().flat_map(|(_, v)| v.iter().map(|p| p.0));
    let (xmin, xmax) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (xmin, xmax) = if xmin >= xmax {
        (xmin - 1.0, xmin + 1.0)
    } else {
        (xmin, xmax)
    };
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(xmin..xmax, y.0..y.1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(xlabel)
        .y_desc(ylabel)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let colors = [BLUE, RED, GREEN, MAGENTA];
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The names phases, in a few lines.
pub fn names(n: &crate::names::NameResults, key_lookup_ms: &crate::run::Summary) -> String {
    let round = |label: &str, r: &crate::names::Round| {
        format!(
            "{label}: {} resolutions, {:.2}% right on the first try, p50 / p99 {:.0} / {:.0} ms \
             (key lookups {:.0} / {:.0} ms), {:.1} requests each",
            r.resolutions,
            r.resolved_fraction * 100.0,
            r.resolve_ms.p50,
            r.resolve_ms.p99,
            key_lookup_ms.p50,
            key_lookup_ms.p99,
            r.requests_per_resolution
        )
    };
    let mut s = format!(
        "names: {} claims, {:.1}% held (storers mean {:.2}) within {:.1} s; records per node \
         mean {:.2}, max {:.0}\n{}",
        n.claims,
        n.held_fraction * 100.0,
        n.storers.mean,
        n.claim_s,
        n.stored_per_node.mean,
        n.stored_per_node.max,
        round("  without churn", &n.round)
    );
    if let Some(a) = &n.after_churn {
        s.push('\n');
        s.push_str(&round(
            &format!("  after {:.0}% of nodes failed", n.churn * 100.0),
            a,
        ));
    }
    s
}
