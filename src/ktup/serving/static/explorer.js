// ktup explorer: reads the service's own JSON API and draws the page. No framework, no build step.
// Every piece of data enters the page through textContent / attributes, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const state = { run: null, user: null, k: 10, usersOffset: 0, filter: "", seq: 0 };

// ------------------------------------------------------------------ helpers
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [key, val] of Object.entries(attrs || {})) {
    if (val === null || val === undefined || val === false) continue;
    if (key === "text") node.textContent = val; else node.setAttribute(key, val === true ? "" : val);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, val] of Object.entries(attrs || {})) node.setAttribute(key, val);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clip(text, n) {
  text = String(text);
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function fmt(x, digits = 4) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–";
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// GET a JSON endpoint; any failure becomes an ApiError carrying the API's own one-line message.
async function api(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Accept: "application/json" } });
  } catch (e) {
    throw new ApiError(0, `cannot reach the service (${e.message})`);
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = body && typeof body.error === "string" ? body.error : `HTTP ${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, msg);
  }
  if (body === null) throw new ApiError(resp.status, "the service answered with something that is not JSON");
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function itemLabel(ref) {
  const t = ref.display_title || ref.title;   // "The Birdcage", not "Birdcage, The"
  return t ? t : `item ${ref.item}`;
}

// ------------------------------------------------------------------ run summary
async function loadRun() {
  let run;
  try {
    run = await api("/run");
  } catch (e) {
    $("run-line").textContent = `Could not read the run: ${e.message}`;
    return;
  }
  state.run = run;
  $("run-line").textContent = `${run.model} on ${run.dataset}` + (run.run_id ? ` · run ${run.run_id}` : "");
  $("k").max = String(run.items);
  const facts = $("run-facts");
  facts.replaceChildren();
  const rows = [
    ["Model", run.model + (run.explains ? " (explains its recommendations)" : " (no preferences: no explanations)")],
    ["Dataset", `${run.dataset}: ${run.users} users, ${run.items} items`],
    ["Run", run.run_id || "–"],
    ["Status", run.status || "–"],
    ["Epochs", run.epochs === null || run.epochs === undefined ? "–" : `${run.epochs} (best ${run.best_epoch ?? "–"})`],
  ];
  if (run.valid_metric) rows.push([`Best valid ${run.valid_metric}`, fmt(run.best_valid)]);
  for (const [term, def] of rows) facts.append(el("dt", { text: term }), el("dd", { text: String(def) }));

  const table = $("metrics");
  if (run.test) {
    const proto = run.protocol ? `protocol ${run.protocol.name}: ${run.protocol.description}` : "protocol not recorded";
    $("metrics-caption").textContent = `Test metrics of the best checkpoint (${proto})`;
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const [name, value] of Object.entries(run.test)) {
      body.append(el("tr", {}, el("th", { scope: "row", text: name }), el("td", { class: "num", text: fmt(value) })));
    }
    table.hidden = false;
  } else {
    facts.append(el("dt", { text: "Test metrics" }), el("dd", { text: "none recorded (an export folder, or an unfinished run)" }));
  }
  const plots = $("plots");
  plots.replaceChildren();
  for (const name of run.plots) {
    const stem = name.replace(/\.png$/i, "");
    const what = stem === "loss" ? "training losses per epoch" : stem === "valid" ? "validation metrics per evaluation" : stem;
    plots.append(el("figure", {},
      el("img", { src: `/run/plots/${encodeURIComponent(name)}`, alt: `Training curve of this run: ${what} (${name}); the numbers are in the run's metrics.jsonl`, loading: "lazy" }),
      el("figcaption", { text: `${name}: ${what}` })));
  }
}

// ------------------------------------------------------------------ users by activity
async function loadUsers(reset) {
  if (reset) { state.usersOffset = 0; $("user-list").replaceChildren(); }
  const q = new URLSearchParams({ offset: state.usersOffset, limit: 50 });
  if (state.filter) q.set("q", state.filter);
  let page;
  try {
    page = await api(`/users?${q}`);
  } catch (e) {
    $("browse-note").textContent = `Could not list users: ${e.message}`;
    return;
  }
  const list = $("user-list");
  for (const u of page.users) {
    const btn = el("button", { type: "button", "data-user": u.user, "aria-label": `User ${u.user}, ${u.interactions} interactions` },
      el("span", { text: u.user }), el("span", { class: "n", text: `${u.interactions} interactions` }));
    btn.addEventListener("click", () => { $("user").value = u.user; showUser(u.user, readK()); });
    list.append(el("li", {}, btn));
  }
  state.usersOffset += page.users.length;
  $("browse-note").textContent = `${page.total} users${state.filter ? ` with ids starting “${state.filter}”` : ""}, most active first; showing ${state.usersOffset}.`;
  $("more-users").hidden = state.usersOffset >= page.total;
}

function readK() {
  const raw = $("k").value.trim();
  return raw === "" ? "" : raw;
}

// ------------------------------------------------------------------ one user
async function showUser(user, k) {
  const seq = ++state.seq;     // a slower, older answer never overwrites a newer one
  clearError();
  user = String(user).trim();
  if (!user) { showError("type a user id (or pick one from the list)"); return; }
  $("status").textContent = `Loading user ${user}…`;
  const q = new URLSearchParams();
  if (k !== "") q.set("k", k);
  const path = `/users/${encodeURIComponent(user)}`;
  let recs, hist;
  try {
    [recs, hist] = await Promise.all([api(`${path}/recommendations?${q}`), api(`${path}/history?limit=200`)]);
  } catch (e) {
    if (seq !== state.seq) return;
    $("user-view").hidden = true;
    $("status").textContent = "Nothing to show.";
    showError(e.message);
    return;
  }
  if (seq !== state.seq) return;
  state.user = user;
  state.k = recs.k;
  history.replaceState(null, "", `#user=${encodeURIComponent(user)}&k=${recs.k}`);
  for (const b of document.querySelectorAll("#user-list button")) {
    b.setAttribute("aria-current", b.dataset.user === user ? "true" : "false");
  }
  $("user-h").textContent = `User ${user}`;
  $("recs-h").textContent = `Top ${recs.k} recommendations`;
  renderRecs(user, recs.recommendations);
  renderHistory(hist);
  $("user-view").hidden = false;
  $("status").textContent = `User ${user}: ${recs.recommendations.length} recommendations, ${hist.total} items in the history.`;
}

function renderHistory(hist) {
  const shown = hist.items.length;
  $("hist-h").textContent = `History (${hist.total} items)`;
  $("hist-note").textContent = `${hist.order}` + (shown < hist.total ? `; the latest ${shown} shown` : "");
  const list = $("history");
  list.replaceChildren();
  for (const h of hist.items) {
    const when = h.timestamp === null ? h.split : `${new Date(h.timestamp * 1000).toISOString().slice(0, 10)} · ${h.split}`;
    list.append(el("li", {}, el("span", { text: itemLabel(h) + " " }), el("span", { class: "when", text: `(${when})` })));
  }
}

function renderRecs(user, recs) {
  const list = $("recs");
  list.replaceChildren();
  if (!recs.length) list.append(el("li", { class: "muted", text: "No item left to recommend: the user has seen them all." }));
  recs.forEach((r, idx) => {
    const panelId = `exp-${idx}`;
    const btn = el("button", { type: "button", class: "why", "aria-expanded": "false", "aria-controls": panelId,
                               "aria-label": `Why ${itemLabel(r)}?` , text: "Why?" });
    const panel = el("div", { class: "explanation", id: panelId, role: "region", "aria-label": `Why ${itemLabel(r)} is recommended`, hidden: true });
    btn.addEventListener("click", () => toggleExplanation(user, r, btn, panel));
    list.append(el("li", { class: "rec", "data-item": r.item },
      el("div", { class: "rec-head" },
        el("span", { class: "rank", text: String(r.rank) }),
        el("span", { class: "rec-title", text: itemLabel(r) }),
        el("span", { class: "rec-meta", text: `item ${r.item} · score ${fmt(r.score, 3)}` }),
        btn),
      panel));
  });
}

async function toggleExplanation(user, rec, btn, panel) {
  const open = btn.getAttribute("aria-expanded") !== "true";
  btn.setAttribute("aria-expanded", String(open));
  panel.hidden = !open;
  if (!open || panel.dataset.loaded) return;
  panel.dataset.loaded = "1";
  panel.replaceChildren(el("p", { class: "muted", text: "Loading the explanation…" }));
  try {
    const body = await api(`/users/${encodeURIComponent(user)}/items/${encodeURIComponent(rec.item)}/explanation`);
    renderExplanation(panel, body.explanation);
  } catch (e) {
    const model = state.run ? state.run.model : "this model";
    const why = e.status === 400 && state.run && !state.run.explains
      ? `${model} ranks items with user and item embeddings alone: it induces no preferences and binds nothing to KG relations, so there are no relation weights and no KG path to show.`
      : "";
    panel.replaceChildren(el("p", { class: "exp-empty", text: `No explanation: ${e.message}.` }), why ? el("p", { class: "exp-empty", text: why }) : null);
  }
}

// ------------------------------------------------------------------ one explanation
function renderExplanation(panel, x) {
  panel.replaceChildren(el("p", { class: "exp-text", text: x.text }));
  const figs = el("div", { class: "exp-figures" });
  figs.append(el("p", { class: "figure-title", text: "Relation weights (the induced preference over the user's reasons)" }));
  figs.append(weightsChart(x), weightsTable(x));
  figs.append(el("p", { class: "figure-title", text: "Evidence in the knowledge graph" }));
  const ev = x.evidence;
  if (!ev) {
    figs.append(el("p", { class: "exp-empty", text: `${x.model}'s preferences are latent (not bound to KG relations), so there is no KG path to draw.` }));
  } else {
    const graph = evidenceGraph(x);
    if (graph) figs.append(graph, evidenceList(x));
    if (ev.note) figs.append(el("p", { class: "exp-empty", text: ev.note[0].toUpperCase() + ev.note.slice(1) + "." }));
  }
  panel.append(figs);
}

let figureCount = 0;

const MAX_BARS = 8;

// The relation's readable name, with its token when another relation reads the same (inverse relations).
function relLabel(p, prefs) {
  const clash = p.relation && prefs.some((q) => q !== p && q.relation_name === p.relation_name);
  return clash ? `${p.relation_name} (${p.relation})` : p.relation_name;
}

function weightsChart(x) {
  const all = x.preferences;
  const prefs = all.slice(0, MAX_BARS);
  const id = `w${++figureCount}`;
  const rest = all.length - prefs.length;
  const rowH = 20, labelW = 300, barW = 300, width = labelW + barW + 50, height = (prefs.length + (rest ? 1 : 0)) * rowH + 8;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "weights",
                             "aria-labelledby": `${id}-t ${id}-d` });
  svg.append(svgEl("title", { id: `${id}-t` }, `Relation weights for ${itemLabel(x)}`));
  svg.append(svgEl("desc", { id: `${id}-d` }, all.map((p) => `${relLabel(p, all)}: ${fmt(p.weight, 2)}`).join("; ")));
  const max = Math.max(...prefs.map((p) => p.weight), 1e-9);
  prefs.forEach((p, i) => {
    const y = 4 + i * rowH;
    const label = svgEl("text", { x: labelW - 6, y: y + 13, "text-anchor": "end" }, clip(relLabel(p, all), 42));
    label.append(svgEl("title", {}, `${relLabel(p, all)}: weight ${fmt(p.weight, 3)}`));
    svg.append(label);
    svg.append(svgEl("rect", { class: "bar-track", x: labelW, y: y + 3, width: barW, height: rowH - 6 }));
    svg.append(svgEl("rect", { class: i === 0 ? "bar top" : "bar", x: labelW, y: y + 3, width: Math.max(1, (barW * p.weight) / max), height: rowH - 6 }));
    svg.append(svgEl("text", { x: labelW + barW + 6, y: y + 13 }, fmt(p.weight, 2)));
  });
  if (rest) {
    const left = all.slice(MAX_BARS).reduce((acc, p) => acc + p.weight, 0);
    svg.append(svgEl("text", { class: "edge-label", x: labelW - 6, y: 4 + prefs.length * rowH + 13, "text-anchor": "middle" },
      `and ${rest} more relations with ${fmt(left, 2)} of the weight together (all in the table)`));
  }
  return svg;
}

function weightsTable(x) {
  const body = el("tbody");
  for (const p of x.preferences) {
    body.append(el("tr", {}, el("th", { scope: "row", text: p.relation ? `${p.relation_name} (${p.relation})` : p.relation_name }),
      el("td", { class: "num", text: fmt(p.weight, 3) }), el("td", { class: "num", text: fmt(p.score) })));
  }
  return el("details", {}, el("summary", { text: "Relation weights as a table" }),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Relation" }), el("th", { scope: "col", text: "Weight" }),
      el("th", { scope: "col", text: "Score if this were the reason" }))), body));
}

// item → entity → history item, the relation's name on every edge; direct item → history links dashed.
function evidenceGraph(x) {
  const ev = x.evidence;
  const rel = ev.relation_name;
  const ents = ev.entities;
  const hist = new Map();                  // history item id → {ref, from: [entity index]}
  ents.forEach((e, j) => e.history_items.forEach((h) => {
    if (!hist.has(h.item)) hist.set(h.item, { ref: h, from: [], direct: false });
    hist.get(h.item).from.push(j);
  }));
  for (const h of ev.direct_history) {
    if (!hist.has(h.item)) hist.set(h.item, { ref: h, from: [], direct: false });
    hist.get(h.item).direct = true;
  }
  if (!ents.length && !hist.size) return null;
  const id = `g${++figureCount}`;
  const nodeW = 176, nodeH = 38, gapY = 12, cols = [2, 302, 602], width = 780;
  const rows = Math.max(ents.length, hist.size, 1);
  const height = rows * (nodeH + gapY) + 24;
  const yOf = (i, n) => 12 + ((rows - n) * (nodeH + gapY)) / 2 + i * (nodeH + gapY);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "evidence",
                             "aria-labelledby": `${id}-t ${id}-d` });
  const paths = evidencePaths(x);
  svg.append(svgEl("title", { id: `${id}-t` }, `Knowledge-graph evidence for ${itemLabel(x)} through ${rel}`));
  svg.append(svgEl("desc", { id: `${id}-d` }, paths.join("; ")));
  const edges = svgEl("g", { class: "edges" }), labels = svgEl("g", { class: "labels" }), nodes = svgEl("g", { class: "nodes" });
  svg.append(edges, labels, nodes);
  const itemPos = { x: cols[0], y: yOf(0, 1) };
  const entPos = ents.map((e, j) => ({ x: cols[1], y: yOf(j, ents.length) }));
  const histKeys = [...hist.keys()];
  const histPos = new Map(histKeys.map((key, j) => [key, { x: cols[2], y: yOf(j, histKeys.length) }]));

  function edge(a, b, cls, title, labelAt) {
    const x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x, y2 = b.y + nodeH / 2;
    const line = svgEl("line", { class: `edge ${cls}`, x1, y1, x2, y2 });
    line.append(svgEl("title", {}, title));
    edges.append(line);
    const lx = x1 + (x2 - x1) * labelAt, ly = y1 + (y2 - y1) * labelAt - 4;
    labels.append(svgEl("text", { class: "edge-label", x: lx, y: ly, "text-anchor": "middle" }, clip(rel, 22)));
  }
  function node(pos, cls, label, sub, title) {
    const g = svgEl("g", { class: `node ${cls}` });
    g.append(svgEl("title", {}, title));
    g.append(svgEl("rect", { x: pos.x, y: pos.y, width: nodeW, height: nodeH, rx: 6 }));
    g.append(svgEl("text", { x: pos.x + 8, y: pos.y + 16 }, clip(label, 25)));
    g.append(svgEl("text", { class: "node-sub", x: pos.x + 8, y: pos.y + 31 }, clip(sub, 30)));
    nodes.append(g);
  }
  ents.forEach((e, j) => edge(itemPos, entPos[j], "to-entity", `${itemLabel(x)} — ${rel} → ${e.name}`, 0.55));
  for (const [key, h] of hist) {
    for (const j of h.from) edge(entPos[j], histPos.get(key), "to-history", `${ents[j].name} — ${rel} → ${itemLabel(h.ref)}`, 0.62);
    if (h.direct) edge(itemPos, histPos.get(key), "direct", `${itemLabel(x)} — ${rel} → ${itemLabel(h.ref)} (linked directly)`, 0.8);
  }
  node(itemPos, "item", itemLabel(x), `recommended · item ${x.item}`, `Recommended: ${itemLabel(x)} (item ${x.item})`);
  ents.forEach((e, j) => {
    const like = e.examples && e.examples.length ? `, as in ${e.examples.map(itemLabel).join(", ")}` : "";
    node(entPos[j], "entity", e.name, `${e.n_items} items, ${e.n_history} in history`,
         `${e.name} (entity ${e.entity}): ${e.n_items} items reach it through ${rel}${like}; ${e.n_history} of them are in the history`);
  });
  for (const [key, h] of hist) node(histPos.get(key), "hist", itemLabel(h.ref), `in the history · item ${h.ref.item}`, `In the history: ${itemLabel(h.ref)} (item ${h.ref.item})`);
  return svg;
}

function evidencePaths(x) {
  const ev = x.evidence, rel = ev.relation_name, out = [];
  for (const e of ev.entities) {
    if (!e.history_items.length) out.push(`${itemLabel(x)} —${rel}→ ${e.name} (no history item reaches it)`);
    for (const h of e.history_items) out.push(`${itemLabel(x)} —${rel}→ ${e.name} —${rel}→ ${itemLabel(h)}`);
  }
  for (const h of ev.direct_history) out.push(`${itemLabel(x)} —${rel}→ ${itemLabel(h)} (directly)`);
  return out;
}

function evidenceList(x) {
  const list = el("ul");
  for (const p of evidencePaths(x)) list.append(el("li", { text: p }));
  return el("details", {}, el("summary", { text: "The graph as a list of paths" }), list);
}

// ------------------------------------------------------------------ wiring
function fromHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const user = params.get("user");
  if (params.get("k")) $("k").value = params.get("k");
  if (user) { $("user").value = user; showUser(user, readK()); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("pick").addEventListener("submit", (ev) => {
    ev.preventDefault();
    showUser($("user").value, readK());
  });
  let timer = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.filter = $("filter").value.trim(); loadUsers(true); }, 200);
  });
  $("more-users").addEventListener("click", () => loadUsers(false));
  loadRun().then(fromHash);
  loadUsers(true);
});
