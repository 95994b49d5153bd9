//! `meshctl policy …` and `meshctl circle …`: output of the circle policy commands, and the one
//! that needs no daemon, `policy check FILE`.

use api::{CircleInfo, ExplainRow, PolicyInfo};
use std::fmt::Write as _;
use std::path::Path;

/// Checks a policy file offline: parse, names, cycles, and the tests it carries. Returns the
/// report and whether the file is valid.
pub fn check(file: &Path) -> anyhow::Result<(String, bool)> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok(
        match acl::Policy::load(&text, &file.display().to_string()) {
            Ok(p) => {
                let m = p.model();
                (
                    format!(
                        "{}: valid: {} circles, {} rules, {} tests passed\n",
                        file.display(),
                        m.circles.len(),
                        m.rules.len(),
                        m.tests.len()
                    ),
                    true,
                )
            }
            Err(e) => (format!("{e}\n"), false),
        },
    )
}

pub fn info(p: &PolicyInfo) -> String {
    let mut o = String::new();
    let Some(file) = &p.file else {
        return "no policy file is configured: everything is allowed (set policy_file in \
                meshd's config)\n"
            .into();
    };
    let _ = writeln!(o, "file        {file}");
    let _ = writeln!(
        o,
        "policy      {} circles, {} rules, {} tests passed",
        p.circles, p.rules, p.tests
    );
    let d: Vec<String> = p.defaults.iter().map(|(a, v)| format!("{a} {v}")).collect();
    let _ = writeln!(o, "defaults    {}", d.join(", "));
    let _ = writeln!(
        o,
        "reloads     {} ({} refused)",
        p.reloads, p.reload_failures
    );
    if let Some(e) = &p.last_error {
        let _ = writeln!(
            o,
            "LAST RELOAD REFUSED (the previous policy stays in force):"
        );
        for l in e.lines() {
            let _ = writeln!(o, "  {l}");
        }
    }
    let _ = writeln!(o, "enforced");
    for (k, v) in p.counters.entries() {
        let _ = writeln!(o, "  {:<18}{v}", k.replace('_', " "));
    }
    o
}

pub fn explain(rows: &[ExplainRow]) -> String {
    let mut o = String::new();
    if let Some(r) = rows.first() {
        let c = if r.circles.is_empty() {
            "none".to_string()
        } else {
            r.circles.join(", ")
        };
        let _ = writeln!(o, "circles     {c}");
    }
    for r in rows {
        let what = match &r.packet {
            Some(p) => format!("{} {p}", r.action),
            None => r.action.clone(),
        };
        let _ = writeln!(o, "{:<5} {what}", r.verdict.to_uppercase());
        let _ = writeln!(o, "      {}", r.reason);
    }
    o
}

pub fn circles(list: &[CircleInfo]) -> String {
    if list.is_empty() {
        return "no circles (add one with meshctl circle add NAME KEY)\n".into();
    }
    let mut o = String::new();
    for c in list {
        let _ = writeln!(
            o,
            "{:<20} {:>5} members ({} resolved)   line {}",
            c.name,
            c.members.len(),
            c.resolved.len(),
            c.line
        );
    }
    o
}

pub fn circle(c: &CircleInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "circle {} (line {})", c.name, c.line);
    for m in &c.members {
        let _ = writeln!(o, "  {m}");
    }
    let nested = c.members.iter().any(|m| m.starts_with("circle:"));
    if nested {
        let _ = writeln!(o, "resolved ({}):", c.resolved.len());
        for m in &c.resolved {
            let _ = writeln!(o, "  {m}");
        }
    }
    o
}
