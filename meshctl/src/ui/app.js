// The page of `meshctl ui`: polls state.json (this node, peers, tree, sessions, counters, as the
// admin socket answers them) every second and draws them. No framework, no outside assets.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const history = []; // [time ms, bytes in + out per second]
let last = null; // the previous state, for rates

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function short(addr) {
  if (!addr) return "?";
  const parts = addr.split(":");
  return parts.length > 4 ? parts.slice(0, 3).join(":") + "…" + parts[parts.length - 1] : addr;
}

function bytes(n) {
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i];
}

function rate(n) { return bytes(n) + "/s"; }

function row(table, cells) {
  const tr = document.createElement("tr");
  cells.forEach((c, i) => {
    const td = document.createElement("td");
    td.textContent = c;
    if (i === 0) td.className = "addr";
    tr.appendChild(td);
  });
  table.appendChild(tr);
}

function dl(id, pairs) {
  const d = document.getElementById(id);
  d.replaceChildren();
  for (const [k, v] of pairs) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    d.append(dt, dd);
  }
}

// Bytes per second of each peer (by key) since the last poll.
function peerRates(s) {
  const out = {};
  if (!last) return out;
  const dt = (s.time_ms - last.time_ms) / 1000;
  if (dt <= 0) return out;
  const before = {};
  for (const p of last.peers) if (p.public_key) before[p.public_key] = p;
  for (const p of s.peers) {
    const b = p.public_key && before[p.public_key];
    if (!b) continue;
    out[p.public_key] = {
      rx: Math.max(0, p.rx_bytes - b.rx_bytes) / dt,
      tx: Math.max(0, p.tx_bytes - b.tx_bytes) / dt,
    };
  }
  return out;
}

function drawGraph(s, rates) {
  const g = document.getElementById("graph");
  g.replaceChildren();
  const cx = 360, cy = 260, r = 190;
  const tree = {};
  for (const t of s.tree.peers) tree[t.public_key] = t;
  const peers = s.peers;
  peers.forEach((p, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(peers.length, 1);
    const x = cx + r * Math.cos(a), y = cy + r * Math.sin(a);
    const t = p.public_key ? tree[p.public_key] : undefined;
    const up = p.state === "up";
    const parent = t && t.parent;
    const rr = (p.public_key && rates[p.public_key]) || { rx: 0, tx: 0 };
    const width = 2 + Math.min(10, Math.log10(1 + rr.rx + rr.tx));
    g.appendChild(el("line", {
      x1: cx, y1: cy, x2: x, y2: y,
      stroke: parent ? "var(--parent)" : up ? "var(--up)" : "var(--down)",
      "stroke-width": width, "stroke-dasharray": up ? "" : "6 5",
    }));
    const node = el("g", { class: "node peer", "data-key": p.public_key || "", "data-state": p.state });
    node.appendChild(el("circle", { cx: x, cy: y, r: 16, fill: up ? "var(--up)" : "var(--down)" }));
    const below = y > cy ? 34 : -40;
    node.appendChild(el("text", { x: x, y: y + below, "text-anchor": "middle" }, short(p.address)));
    const info = [p.transport || "udp", p.state];
    if (t) info.push((t.rtt_us / 1000).toFixed(1) + " ms");
    if (parent) info.push("parent");
    node.appendChild(el("text", { x: x, y: y + below + 13, "text-anchor": "middle", class: "sub" }, info.join(" · ")));
    if (rr.rx + rr.tx > 0) {
      node.appendChild(el("text", { x: x, y: y + below + 26, "text-anchor": "middle", class: "sub" },
        "↓ " + rate(rr.rx) + "  ↑ " + rate(rr.tx)));
    }
    g.appendChild(node);
  });
  const me = el("g", { class: "node self" });
  me.appendChild(el("circle", { cx: cx, cy: cy, r: 26, fill: s.tree.is_root ? "#805ad5" : "#2d3748" }));
  me.appendChild(el("text", { x: cx, y: cy + 4, "text-anchor": "middle", fill: "#fff" }, s.tree.is_root ? "root" : "me"));
  me.appendChild(el("text", { x: cx, y: cy + 44, "text-anchor": "middle" }, short(s.self.address)));
  g.appendChild(me);
}

function drawSpark() {
  const g = document.getElementById("spark");
  g.replaceChildren();
  if (history.length < 2) return;
  const max = Math.max(1, ...history.map(h => h[1]));
  const pts = history.map((h, i) => `${(i / (history.length - 1)) * 300},${58 - (h[1] / max) * 54}`);
  g.appendChild(el("polyline", { points: pts.join(" "), fill: "none", stroke: "var(--parent)", "stroke-width": 1.5 }));
}

function draw(s) {
  const rates = peerRates(s);
  document.getElementById("me").textContent =
    `${s.self.address} · ${s.self.public_key.slice(0, 16)}… · ${s.self.tun} · meshd ${s.self.version}`;
  drawGraph(s, rates);

  const t = s.tree;
  dl("tree", [
    ["root", t.is_root ? "this node" : short(t.root_address)],
    ["root key", t.root.slice(0, 16) + "…"],
    ["depth", String(t.depth)],
    ["coordinates", "[" + t.coords.join(", ") + "]"],
    ["parent", t.is_root ? "—" : t.parent.slice(0, 16) + "…"],
  ]);

  let rx = 0, tx = 0;
  for (const r of Object.values(rates)) { rx += r.rx; tx += r.tx; }
  document.getElementById("rates").textContent = `in ${rate(rx)} · out ${rate(tx)}`;
  if (last) {
    history.push([s.time_ms, rx + tx]);
    while (history.length > 120) history.shift();
  }
  drawSpark();

  const st = s.status;
  dl("counters", [
    ["uptime", st.uptime_secs + " s"],
    ["links up", `${st.peers_up} of ${s.peers.length}`],
    ["sessions", String(s.sessions.length)],
    ["forwarded", String(st.routing.forwarded)],
    ["handshakes", String(st.counters.handshakes_completed)],
    ["dropped from network", String(st.dropped_from_network)],
    ["policy refused", String(st.policy.counters.links_refused + st.policy.counters.sessions_refused)],
  ]);

  const linked = new Set(s.peers.filter(p => p.state === "up").map(p => p.public_key));
  const tree = {};
  for (const x of t.peers) tree[x.public_key] = x;
  const pt = document.querySelector("#peers tbody");
  pt.replaceChildren();
  for (const p of s.peers) {
    const x = p.public_key ? tree[p.public_key] : undefined;
    row(pt, [p.address || p.uri || "?", p.state, p.transport || "udp", p.paths[0] || p.endpoint || "—",
      x ? (x.rtt_us / 1000).toFixed(2) + " ms" : "—", bytes(p.rx_bytes), bytes(p.tx_bytes), p.origin || ""]);
  }
  const ss = document.querySelector("#sessions tbody");
  ss.replaceChildren();
  for (const x of s.sessions) {
    row(ss, [x.address, x.state, linked.has(x.public_key) ? "direct" : "routed",
      x.age_secs === null ? "—" : x.age_secs + " s", bytes(x.rx_bytes), bytes(x.tx_bytes), String(x.queued)]);
  }
  last = s;
}

async function poll() {
  const err = document.getElementById("error");
  try {
    const r = await fetch("state.json", { cache: "no-store" });
    const s = await r.json();
    if (!r.ok) throw new Error(s.error || r.statusText);
    err.hidden = true;
    draw(s);
  } catch (e) {
    err.hidden = false;
    err.textContent = "meshd: " + e.message;
  }
  setTimeout(poll, 1000);
}

poll();
