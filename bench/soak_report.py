#!/usr/bin/env python3
"""bench/soak_report.py OUT_DIR: the summary of a bench/soak.sh run, from its files only.

It reads meta.env, links.csv, faults.csv, samples.csv and probes/*.csv (see soak.sh), prints
the summary and exits 0 if every verdict holds, 2 if one fails. It can be run again on a kept
directory. It must not change anything in OUT_DIR (soak.sh writes summary.txt from its output).

How it judges (also printed with the figures):
  * delivery: a probe is judged unless it was sent inside a fault window widened to
    [start - PRE_GRACE, end + GRACE]; the windows are global (a probe of any pair is left out
    during any fault: which pairs a cut disturbs depends on the routes of the moment). Reload
    windows count as fault windows only with EXCLUDE_RELOADS=1. Probes sent in the last
    PROBE_TIMEOUT + 1 s of the run are not counted (their echoes may not be settled).
  * RSS flat: per node, the median VmRSS of the samples in the last third of the run against
    the median of the middle third, counting samples of instances up at least MIN_UPTIME s;
    flat if the growth is below RSS_GROWTH_PCT % or below SLACK_KB. A node whose middle and
    last thirds are not one instance (it was restarted) is not judged; the nodes of NO_KILL
    always are.
  * crashes: daemons that died without the script killing them.
"""

import csv
import glob
import os
import statistics
import sys

MIN_UPTIME = 60  # s: samples of younger instances do not count for the RSS verdict
SLACK_KB = 1024  # growth below this is noise whatever the percentage


def read_meta(d):
    meta = {}
    with open(os.path.join(d, "meta.env"), encoding="utf-8") as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return meta


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def fnum(s, default=None):
    try:
        return float(s)
    except (TypeError, ValueError):
        return default


def pct(a, b):
    return 100.0 * a / b if b else 100.0


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: soak_report.py OUT_DIR")
    d = sys.argv[1]
    meta = read_meta(d)
    nodes = int(meta["NODES"])
    t0, t_stop = float(meta["T_TRAFFIC"]), float(meta["T_STOP"])
    grace, pre = float(meta["GRACE"]), float(meta["PRE_GRACE"])
    timeout = float(meta["PROBE_TIMEOUT"])
    exclude_reloads = meta.get("EXCLUDE_RELOADS") == "1"
    growth_pct = float(meta["RSS_GROWTH_PCT"])
    delivery_min = float(meta["DELIVERY_MIN_PCT"])
    no_kill = {int(x) for x in meta.get("NO_KILL", "").split(",") if x.isdigit()}
    span = t_stop - t0
    cutoff = t_stop - timeout - 1

    faults = read_csv(os.path.join(d, "faults.csv"))
    for f in faults:
        f["start"], f["end"] = float(f["start"]), float(f["end"])
        f["comp"] = [int(x) for x in f["components"].split()] if f["components"] else []
    faults.sort(key=lambda f: f["start"])
    windows = [
        (f["start"] - pre, f["end"] + grace)
        for f in faults
        if exclude_reloads or f["kind"] != "reload"
    ]
    windows.sort()

    def in_window(t):
        return any(a <= t <= b for a, b in windows)

    # ---- probes
    probes = []  # (t, src, dst, ok, err)
    late = 0
    for path in glob.glob(os.path.join(d, "probes", "*.csv")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                p = line.rstrip("\n").split(",")
                if len(p) < 6:
                    continue
                if p[5] == "late":
                    late += 1
                    continue
                t = fnum(p[0])
                if t is None or t >= cutoff:
                    continue
                probes.append((t, int(p[1]), int(p[2]), p[4] != "-1", p[5]))
    probes.sort()

    judged = [p for p in probes if not in_window(p[0])]
    j_ok = sum(1 for p in judged if p[3])
    pair_tot = {}
    for t, s, dd, ok, _ in judged:
        a = pair_tot.setdefault((s, dd), [0, 0])
        a[0] += 1
        a[1] += ok
    lost_judged = [p for p in judged if not p[3]]
    send_errors = {}
    for p in probes:
        if p[4]:
            send_errors[p[4]] = send_errors.get(p[4], 0) + 1

    out = []
    w = out.append
    w(f"# Soak summary ({nodes} nodes, {span:.0f} s of traffic, seed {meta['SEED']}, {d})")
    w("")
    w("## Faults")
    kinds = {}
    for f in faults:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    w("by kind: " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"))
    w("")
    w("| # | kind | target | at (s) | length (s) | partition | during: reachable pairs delivered | lost after end | last loss after end (s) |")
    w("|---:|---|---|---:|---:|---|---:|---:|---:|")
    idx = 0
    all_dur = [0, 0]
    for n, f in enumerate(faults):
        # "After" runs to the next fault's window (or the end of the run).
        nxt = faults[n + 1]["start"] - pre if n + 1 < len(faults) else cutoff
        comp = f["comp"]
        part = "-"
        if comp:
            sizes = {}
            for c in comp:
                if c:
                    sizes[c] = sizes.get(c, 0) + 1
            big = max(sizes, key=sizes.get) if sizes else 0
            off = [str(i + 1) for i, c in enumerate(comp) if c and c != big]
            part = "nodes " + " ".join(off) + " cut off" if off else "none"
        # Probes during the fault between pairs the graph still joined (both up, one component).
        while idx < len(probes) and probes[idx][0] < f["start"] - pre:
            idx += 1
        k = idx
        dur_s = dur_ok = after_lost = 0
        last_loss = None
        while k < len(probes) and probes[k][0] < nxt:
            t, s, dd, ok, _ = probes[k]
            if f["start"] <= t <= f["end"] and comp and comp[s - 1] and comp[s - 1] == comp[dd - 1]:
                dur_s += 1
                dur_ok += ok
            if t > f["end"] and not ok:
                after_lost += 1
                last_loss = t - f["end"]
            k += 1
        f["last_loss"] = last_loss
        all_dur[0] += dur_s
        all_dur[1] += dur_ok
        w(
            f"| {f['id']} | {f['kind']} | {f['target']} | {f['start'] - t0:.0f} | {f['end'] - f['start']:.1f} | {part} "
            f"| {dur_ok}/{dur_s} ({pct(dur_ok, dur_s):.1f}%) | {after_lost} | "
            f"{'-' if last_loss is None else f'{last_loss:.1f}'} |"
        )
    parts = sum(1 for f in faults if f["comp"] and len({c for c in f["comp"] if c}) > 1)
    w(
        f"during the faults, between pairs the graph still joined: {all_dur[1]}/{all_dur[0]} "
        f"({pct(all_dur[1], all_dur[0]):.1f}%); {parts} faults left the graph partitioned"
    )
    # Recovery: how long after its end a fault's losses went on (up to the next fault).
    w("")
    w("recovery, per kind: faults; those with losses after their end; last loss after the end (median, max s)")
    for kind in sorted(kinds):
        ll = [f["last_loss"] for f in faults if f["kind"] == kind and f["last_loss"] is not None]
        med = f"{statistics.median(ll):.1f}" if ll else "-"
        mx = f"{max(ll):.1f}" if ll else "-"
        w(f"  {kind}: {kinds[kind]}; {len(ll)}; {med}, {mx}")
    notes = [f for f in faults if "NOT SEEN" in f["detail"] or "FAILED" in f["detail"] or "ERROR" in f["detail"]]
    for f in notes:
        w(f"fault {f['id']}: {f['detail']}")

    w("")
    w("## Delivery")
    rel = "counted" if exclude_reloads else "not counted (allowed traffic must not notice a reload)"
    w(
        f"rule: probes sent inside a fault window [start - {pre:g} s, end + {grace:g} s] are left out for every pair "
        f"(global windows); reload windows are {rel}; probes of the last {timeout + 1:g} s are not counted"
    )
    w(f"all probes: {sum(1 for p in probes if p[3])}/{len(probes)} ({pct(sum(1 for p in probes if p[3]), len(probes)):.2f}%)")
    w(
        f"outside fault windows: {j_ok}/{len(judged)} ({pct(j_ok, len(judged)):.3f}%) over "
        f"{len(pair_tot)} ordered pairs; {late} late echoes (counted as lost)"
    )
    if send_errors:
        w("sends that failed at the sender: " + ", ".join(f"{k} {v}" for k, v in sorted(send_errors.items())))
    worst = sorted(pair_tot.items(), key=lambda kv: kv[1][1] / kv[1][0])[:5]
    w("worst pairs outside fault windows: " + ", ".join(f"{s}>{dd} {r}/{n}" for (s, dd), (n, r) in worst))
    if lost_judged:
        # Runs of losses of one pair (probes at most two intervals apart), for a look at the logs.
        interval = float(meta.get("PROBE_INTERVAL", "0.2"))
        runs = {}
        for t, s, dd, _, _ in lost_judged:
            r = runs.setdefault((s, dd), [])
            if r and t - r[-1][1] <= 2 * interval + 0.05:
                r[-1][1] = t
                r[-1][2] += 1
            else:
                r.append([t, t, 1])
        flat = sorted((a, b, n, pair) for pair, rs in runs.items() for a, b, n in rs)
        long_runs = [x for x in flat if x[1] - x[0] >= 1.0]
        short = [x for x in flat if x[1] - x[0] < 1.0]
        restarts = [f for f in faults if f["kind"] in ("kill", "crash")]
        w(
            f"losses outside fault windows: {sum(x[2] for x in long_runs)} probes in {len(long_runs)} runs of "
            f"1 s or more (a pair that stayed broken), {sum(x[2] for x in short)} in {len(short)} shorter runs"
        )
        for a, b, n, (s, dd) in long_runs[:15]:
            before = [f for f in restarts if f["end"] < a and int(f["target"]) in (s, dd)]
            why = ""
            if before:
                f = before[-1]
                why = f"; node {f['target']} was restarted {a - f['end']:.1f} s before (fault {f['id']})"
            w(f"  {s}>{dd} {a - t0:.1f}..{b - t0:.1f} s: {n} lost{why}")
        if short:
            w("  shorter runs at (s since traffic started): "
              + " ".join(f"{a - t0:.1f}({s}>{dd})" for a, _, _, (s, dd) in short[:20])
              + (" ..." if len(short) > 20 else ""))

    # ---- samples
    samples = read_csv(os.path.join(d, "samples.csv"))
    by_node = {i: [] for i in range(1, nodes + 1)}
    for r in samples:
        if r["rss_kb"]:
            by_node[int(r["node"])].append(r)
    w("")
    w("## Memory (VmRSS, MiB) and CPU")
    w(
        f"rule: per node, median of the last third against the middle third (samples of instances up "
        f">= {MIN_UPTIME} s); flat if growth < {growth_pct:g}% or < {SLACK_KB // 1024} MiB; "
        f"a node restarted between the two thirds is not judged"
    )
    w("")
    w("| node | instances | start | middle | end | max | mid-third median | last-third median | verdict | CPU s |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    verdicts = {}
    cpu_total = 0.0
    drops = {k: 0 for k in ("link", "e2e", "local", "routing", "policy")}
    for i in range(1, nodes + 1):
        rows = by_node[i]
        if not rows:
            w(f"| {i} | - | - | - | - | - | - | - | no samples | - |")
            verdicts[i] = "n/a"
            continue
        el = [float(r["elapsed"]) for r in rows]
        rss = [int(r["rss_kb"]) for r in rows]
        mid_i = min(range(len(rows)), key=lambda j: abs(el[j] - span / 2))
        insts = sorted({int(r["instance"]) for r in rows})
        ok_rows = [r for r in rows if fnum(r["uptime_s"], 0) >= MIN_UPTIME]
        mid = [r for r in ok_rows if span / 3 <= float(r["elapsed"]) < 2 * span / 3]
        last = [r for r in ok_rows if float(r["elapsed"]) >= 2 * span / 3]
        mm = statistics.median(int(r["rss_kb"]) for r in mid) if mid else None
        ml = statistics.median(int(r["rss_kb"]) for r in last) if last else None
        if mm is None or ml is None:
            v = "n/a (too few samples)"
        elif len({r["instance"] for r in mid + last}) > 1:
            v = "n/a (restarted)"
        else:
            growth = ml - mm
            v = "flat" if growth < SLACK_KB or growth < mm * growth_pct / 100 else "GROWING"
            v += f" ({100 * growth / mm:+.1f}%)"
        verdicts[i] = v
        cpu = fnum(rows[-1]["cpu_s"], 0.0)
        cpu_total += cpu
        # Counters start at 0 with each instance: the total is the sum of each one's last value.
        last_of = {}
        for r in rows:
            last_of[r["instance"]] = r
        for r in last_of.values():
            for k in drops:
                drops[k] += int(fnum(r[f"{k}_drops"], 0))
        mib = lambda kb: f"{kb / 1024:.1f}" if kb is not None else "-"  # noqa: E731
        w(
            f"| {i}{' (never killed)' if i in no_kill else ''} | {len(insts)} | {mib(rss[0])} | {mib(rss[mid_i])} "
            f"| {mib(rss[-1])} | {mib(max(rss))} | {mib(mm)} | {mib(ml)} | {v} | {cpu:.1f} |"
        )
    w(f"total CPU of the daemons: {cpu_total:.1f} s over {span:.0f} s ({100 * cpu_total / span:.1f}% of one core)")
    w("drops counted by the daemons (all instances): " + ", ".join(f"{k} {v}" for k, v in drops.items()))

    # ---- verdicts
    crashes = int(meta.get("CRASHES", "0"))
    restart_failures = int(meta.get("RESTART_FAILURES", "0"))
    not_seen = int(meta.get("RELOADS_NOT_SEEN", "0"))
    judged_nodes = [i for i, v in verdicts.items() if v.startswith(("flat", "GROWING"))]
    rss_ok = bool(judged_nodes) and all(verdicts[i].startswith("flat") for i in judged_nodes)
    deliv = pct(j_ok, len(judged))
    deliv_ok = deliv >= delivery_min and len(judged) > 0
    w("")
    w("## Verdicts")
    w(
        f"RSS flat: {'yes' if rss_ok else 'NO'} ({len(judged_nodes)} nodes judged: "
        + ", ".join(f"{i} {verdicts[i]}" for i in judged_nodes)
        + ")"
    )
    w(f"crashes: {crashes}{'' if crashes == 0 else ' (see the crash rows above and logs/)'}; "
      f"restarts that failed: {restart_failures}; policy reloads not seen: {not_seen}")
    w(f"delivery outside fault windows: {deliv:.3f}% ({'>=' if deliv_ok else 'BELOW'} {delivery_min:g}%)")
    if meta.get("CLEAN_EXIT") != "1":
        w("note: the run was interrupted before its DURATION")
    good = rss_ok and crashes == 0 and restart_failures == 0 and not_seen == 0 and deliv_ok
    w(f"overall: {'PASS' if good else 'FAIL'}")
    print("\n".join(out))
    return 0 if good else 2


if __name__ == "__main__":
    sys.exit(main())
