// replikv dashboard: renders the state the server pushes over /ws, and drives the playground.
"use strict";
const $ = (id) => document.getElementById(id);
let state = null;
const cards = {};

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
const fmt = (v, unit) => (v === null || v === undefined || v === "") ? "–" : `${v}${unit || ""}`;

function say(text, ok) {
  const m = $("message");
  m.textContent = text;
  m.className = ok ? "ok" : "error";
}

async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body)});
  return r.json();
}

async function act(action, node, peer) {
  const refusal = state && state.playground.refusals[action];
  if (refusal) { say(`${action}: refused: ${refusal}`, false); return; }
  const r = await post("/api/action", {action, node, peer: peer || ""});
  say(r.ok ? r.message : `${action} ${node}${peer ? "–" + peer : ""}: refused: ${r.error}`, r.ok);
}

function card(n) {
  if (cards[n.id]) return cards[n.id];
  const rows = {};
  const table = el("table");
  for (const [k, label] of [["epoch", "term / epoch"], ["leader", "leader"], ["offset", "log offset"],
                            ["commit", "commit"], ["applied", "applied"], ["lag", "lag ops / ms"],
                            ["ops", "ops/s"], ["lat", "latency"]]) {
    rows[k] = el("td");
    table.append(el("tr", {}, el("td", {class: "dim"}, label), rows[k]));
  }
  const role = el("span", {class: "role"});
  const spark = el("canvas", {class: "spark", width: "220", height: "46"});
  const buttons = el("div", {class: "buttons"});
  for (const a of ["kill", "pause", "resume", "restart"]) {
    buttons.append(el("button", {class: a === "kill" ? "danger" : "", "data-action": a, "data-node": n.id,
                                 onclick: () => act(a, n.id)}, a));
  }
  const root = el("div", {class: "node", id: `node-${n.id}`, "data-node": n.id},
                  el("h3", {}, el("span", {}, n.id, el("span", {class: "dim"}, "  " + (n.address || ""))), role),
                  table, spark, el("div", {class: "dim", style: "font-size:.75em"}, "ops/s (green), latency ms (amber), last 5 min"),
                  buttons);
  $("nodes").append(root);
  cards[n.id] = {root, rows, role, spark, buttons};
  return cards[n.id];
}

function drawSpark(canvas, points) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (!points || !points.length) return;
  const now = points[points.length - 1].t;
  const x = (t) => w - (now - t) * (w / 300);
  for (const [key, color] of [["ops_s", "#3fb950"], ["latency_ms", "#d29922"]]) {
    const vals = points.map((p) => p[key] || 0);
    const max = Math.max(1e-9, ...vals);
    ctx.strokeStyle = color; ctx.beginPath();
    points.forEach((p, i) => {
      const y = h - 2 - ((p[key] || 0) / max) * (h - 4);
      i ? ctx.lineTo(x(p.t), y) : ctx.moveTo(x(p.t), y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "rgba(248,81,73,.35)";
  for (const p of points) if (!p.up) ctx.fillRect(x(p.t) - 1, 0, 2, h);
}

function renderNodes(s) {
  for (const n of s.nodes) {
    const c = card(n);
    const up = n.state === "up";
    const roleClass = up ? (n.role === "leader" || n.role === "follower" ? n.role : "other") : n.state;
    c.root.className = `node ${roleClass}`;
    c.role.className = `role ${roleClass}`;
    c.role.textContent = up ? n.role : n.state;
    c.rows.epoch.textContent = fmt(n.epoch);
    c.rows.leader.textContent = fmt(n.leader);
    c.rows.offset.textContent = fmt(n.offset);
    c.rows.commit.textContent = fmt(n.commit);
    c.rows.applied.textContent = fmt(n.applied);
    const lead = n.role === "leader";
    c.rows.lag.textContent = lead ? "–" : `${fmt(n.lag_ops)} / ${fmt(n.lag_ms)}`;
    c.rows.ops.textContent = fmt(n.ops_s);
    c.rows.lat.textContent = fmt(n.latency_ms, " ms");
    c.root.title = n.error || "";
    drawSpark(c.spark, s.history[n.id]);
    for (const b of c.buttons.querySelectorAll("button")) {
      const why = s.playground.refusals[b.dataset.action];
      b.classList.toggle("refused", !!why);
      b.title = why || "";
    }
  }
}

function renderLinks(s) {
  const ids = s.nodes.map((n) => n.id);
  const cut = new Set(s.playground.cut.map((p) => p.join("-")));
  const box = $("links");
  const want = [];
  for (let i = 0; i < ids.length; i++) for (let j = i + 1; j < ids.length; j++) want.push([ids[i], ids[j]]);
  if (box.childElementCount !== want.length) {
    box.replaceChildren(...want.map(([a, b]) => el("button", {class: "link", "data-link": `${a}-${b}`,
      onclick: () => act(box.querySelector(`[data-link="${a}-${b}"]`).classList.contains("cut") ? "heal" : "cut", a, b)}, "")));
  }
  for (const [a, b] of want) {
    const btn = box.querySelector(`[data-link="${a}-${b}"]`);
    const isCut = cut.has(`${a}-${b}`);
    btn.classList.toggle("cut", isCut);
    btn.textContent = isCut ? `${a} ✕ ${b} (heal)` : `${a} ↔ ${b} (cut)`;
  }
  const why = s.playground.refusals.cut;
  $("links-note").textContent = why ? `Link cuts unavailable here: ${why}` : "Click a link to cut or heal it (iptables in the playground's network namespace).";
}

function renderEvents(s) {
  const list = $("events");
  list.replaceChildren(...s.events.slice().reverse().map((e) =>
    el("li", {class: `event ev-${e.kind}`, "data-kind": e.kind},
       el("time", {}, new Date(e.t_ms).toLocaleTimeString()), e.text)));
}

function renderMode(s) {
  const p = $("mode-panel");
  if (s.groups && s.groups.length) {
    $("mode-title").textContent = "Raft groups (sharded)";
    const t = el("table", {class: "grid"}, el("tr", {}, ...["group", "slots", "members", "leader", "term", "commit", "applied", "keys"].map((h) => el("th", {}, h))));
    for (const g of s.groups) {
      t.append(el("tr", {}, el("td", {}, String(g.group)), el("td", {}, g.slots), el("td", {}, g.members.join(" ")),
        el("td", {}, g.leader || "none"), el("td", {}, fmt(g.term)), el("td", {}, fmt(g.commit)),
        el("td", {}, Object.entries(g.applied).map(([n, a]) => `${n}:${a}`).join(" ")), el("td", {}, fmt(g.keys))));
    }
    p.replaceChildren(t);
  } else if (s.converged !== null && s.converged !== undefined) {
    $("mode-title").textContent = "Version vectors (multi-leader)";
    const t = el("table", {class: "grid"}, el("tr", {}, el("th", {}, "node"), el("th", {}, "version vector"), el("th", {}, "peers (lag ops)")));
    for (const n of s.nodes) {
      t.append(el("tr", {}, el("td", {}, n.id), el("td", {}, (n.extra && n.extra.version_vector) || "–"),
        el("td", {}, (n.peers || []).map((q) => `${q.id}:${q.state}/${q.lag_ops}`).join(" "))));
    }
    p.replaceChildren(el("p", {}, s.converged ? "converged: every node has the same version vector" : "not converged yet"), t);
  } else if (s.ring) {
    $("mode-title").textContent = "Ring (leaderless)";
    const colors = ["#3fb950", "#39c5cf", "#d29922", "#f85149", "#58a6ff", "#bc8cff", "#ff7b72"];
    const color = (n) => colors[s.ring.members.indexOf(n) % colors.length];
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", "-110 -110 220 220");
    for (const [f, owner] of s.ring.tokens) {
      const a = f * 2 * Math.PI - Math.PI / 2;
      const line = document.createElementNS(svgNS, "line");
      line.setAttribute("x1", 80 * Math.cos(a)); line.setAttribute("y1", 80 * Math.sin(a));
      line.setAttribute("x2", 100 * Math.cos(a)); line.setAttribute("y2", 100 * Math.sin(a));
      line.setAttribute("stroke", color(owner)); line.setAttribute("stroke-width", "1.5");
      svg.append(line);
    }
    if (ringKey.token !== undefined) {
      const a = ringKey.token * 2 * Math.PI - Math.PI / 2;
      const dot = document.createElementNS(svgNS, "circle");
      dot.setAttribute("cx", 70 * Math.cos(a)); dot.setAttribute("cy", 70 * Math.sin(a)); dot.setAttribute("r", "5");
      dot.setAttribute("fill", "#fff"); svg.append(dot);
    }
    const legend = el("div", {}, ...s.ring.members.map((m) => el("span", {style: `color:${color(m)};margin-right:.6em`}, `■ ${m}`)));
    const form = el("form", {onsubmit: async (ev) => {
      ev.preventDefault();
      const r = await (await fetch(`/api/placement?key=${encodeURIComponent(ev.target.elements.k.value)}`)).json();
      ringKey.token = r.token; ringKey.text = r.ok ? `${r.key} → replicas ${r.replicas.join(", ")}` : r.error;
    }}, el("input", {name: "k", placeholder: "key", value: ringKey.key || ""}), el("button", {type: "submit"}, "place"));
    if (!p.querySelector("form")) p.replaceChildren(el("div", {id: "ring"}), form, el("p", {id: "placement"}), legend, el("p", {class: "dim"}, ""));
    p.querySelector("#ring").replaceChildren(svg);
    p.querySelector("#placement").textContent = ringKey.text || "";
    p.lastChild.textContent = `${s.ring.members.length} nodes, ${s.ring.vnodes} vnodes each, N=${s.ring.replicas}; ` +
      s.nodes.map((n) => `${n.id}: hints ${fmt(n.extra && n.extra.hints_held)}, read repairs ${fmt(n.extra && n.extra.read_repairs)}`).join("; ");
  } else {
    $("mode-title").textContent = "Followers of the leader";
    const leader = s.nodes.find((n) => n.id === s.leader);
    const t = el("table", {class: "grid"}, el("tr", {}, ...["follower", "state", "match", "lag ops", "lag ms"].map((h) => el("th", {}, h))));
    for (const f of (leader && leader.followers) || []) {
      t.append(el("tr", {}, el("td", {}, f.id || f.ip), el("td", {}, f.state || ""), el("td", {}, fmt(f.offset)),
        el("td", {}, fmt(f.lag_ops)), el("td", {}, fmt(f.lag_ms))));
    }
    p.replaceChildren(t);
  }
}
const ringKey = {};

function renderHeader(s) {
  $("mode").textContent = s.mode;
  $("leader").textContent = s.single_leader ? (s.leader || "none")
    : (s.groups && s.groups.length ? "one per group" : "none: every node takes writes");
  $("term").textContent = fmt(s.term);
  $("pgkind").textContent = s.playground.kind;
  $("convergence").textContent = s.converged === null || s.converged === undefined ? "" : (s.converged ? "converged" : "diverged");
  const via = $("probe-via");
  if (via.options.length === 1) for (const n of s.nodes) via.append(el("option", {value: n.id}, n.id));
  const wl = $("probe-wlevel");
  if (wl.options.length === 1) for (const l of s.write_levels) wl.append(el("option", {value: l}, l));
}

function render(s) {
  state = s;
  renderHeader(s); renderNodes(s); renderLinks(s); renderEvents(s); renderMode(s);
}

function connect() {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "kv"; };
  ws.onmessage = (ev) => { const m = JSON.parse(ev.data); if (m.type === "state") render(m); };
  ws.onclose = () => { $("conn").textContent = "disconnected, retrying…"; $("conn").className = "kv off";
                       setTimeout(connect, 1000); };
}

$("probe").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const value = $("probe-value").value || `v${Date.now() % 100000}`;
  $("probe-value").value = value;
  $("probe-result").textContent = "writing and reading…";
  const r = await post("/api/read-everywhere", {key: $("probe-key").value, value, via: $("probe-via").value,
                                                 write_level: $("probe-wlevel").value});
  if (!r.ok && !r.write) { $("probe-result").textContent = `refused: ${r.error}`; return; }
  const w = r.write;
  $("probe-write").textContent = w.ok ? `SET ${r.key} ${r.value} via ${r.via}${r.write_level ? " at " + r.write_level : ""}: ${w.reply} (${w.ms} ms); session token ${r.session_token ?? "–"}`
                                      : `SET via ${r.via} failed: ${w.error}`;
  const t = el("table", {class: "grid", id: "probe-table"},
               el("tr", {}, el("th", {}, "node"), ...r.levels.map((l) => el("th", {}, l === "bounded" ? `bounded ${r.bounded_ms}ms` : l))));
  for (const n of r.nodes) {
    const row = el("tr", {"data-node": n}, el("th", {}, n));
    for (const l of r.levels) {
      const c = r.reads[n][l];
      const cls = !c.ok ? "refused" : (c.fresh ? "fresh" : "stale");
      row.append(el("td", {class: cls, "data-level": l, "data-node": n},
                    c.ok ? (c.value === null ? "(nil)" : String(c.value)) : c.error, " ", el("span", {class: "ms"}, `${c.ms} ms`)));
    }
    t.append(row);
  }
  $("probe-result").replaceChildren(t, el("p", {class: "dim"}, "green: the value just written; amber: an older value; red: the node refused (the error says why)."));
});

connect();
