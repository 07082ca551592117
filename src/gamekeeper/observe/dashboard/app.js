// Gamekeeper dashboard: plain JavaScript on the ops API (/api/v1), live through its server-sent-events stream.
// Rendering is batched per animation frame and the game-server table is virtualised (only the visible rows exist
// in the DOM), so thousands of servers and a busy stream do not freeze the page.
"use strict";

const $ = (id) => document.getElementById(id);
const OWNER = "game.kruise.io/owner-gss";
const ROW = 30;
const S = {
  gs: new Map(), gss: new Map(), events: [], warnings: [], selected: new Set(), sort: { key: "name", dir: 1 },
  filter: "", filterSet: "", filterOps: "", rows: [], dirtyRows: true, focus: 0, view: "overview", current: null,
  writable: false, scaleDraft: {}, loadedAt: Date.now(), dirtyWarnings: true, warningsAt: 0,
};
window.gamekeeper = S; // for tests and the curious: the page's state

// -- API ---------------------------------------------------------------------------------------------------------

function token() { return localStorage.getItem("gk-token") || ""; }
function headers(extra) {
  const h = Object.assign({ "X-Gamekeeper-Caller": "dashboard" }, extra || {});
  if (token()) h["Authorization"] = "Bearer " + token();
  return h;
}
async function api(path, opts) {
  const o = opts || {};
  const resp = await fetch(path, { method: o.method || "GET", headers: headers(o.body ? { "Content-Type": "application/json" } : {}),
    body: o.body ? JSON.stringify(o.body) : undefined });
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  return { status: resp.status, data };
}
const key = (o) => o.metadata.namespace + "/" + o.metadata.name;
const text = (v) => (v === undefined || v === null ? "" : String(v));
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
function ago(stamp) {
  if (!stamp) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(stamp)) / 1000));
  return s < 120 ? s + "s" : s < 7200 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h";
}

// -- loading and the stream -----------------------------------------------------------------------------------------

async function loadAll() {
  const [gs, gss, ev, who] = await Promise.all([api("/api/v1/gameservers"), api("/api/v1/gameserversets"),
    api("/api/v1/events?limit=300"), api("/api/v1/whoami")]);
  if (gs.status === 401) { setConn("down", "this address needs the token"); $("token-dialog").showModal(); return false; }
  S.gs = new Map(gs.data.items.map((o) => [key(o), o]));
  S.gss = new Map(gss.data.items.map((o) => [key(o), o]));
  S.events = ev.data.items;
  S.warnings = ev.data.items.filter((e) => e.type === "Warning").slice(-50);
  S.writable = who.data.writable;
  S.dirtyRows = true; S.dirtyWarnings = true;
  schedule();
  return true;
}

function setConn(cls, msg) { const c = $("conn"); c.className = "conn " + cls; c.textContent = msg; }

// fetch-based SSE (EventSource cannot send the Authorization header a non-loopback API needs).
async function stream() {
  for (;;) {
    try {
      if (!(await loadAll())) { await sleep(3000); continue; }
      const resp = await fetch("/api/v1/stream", { headers: headers() });
      if (!resp.ok) throw new Error("stream " + resp.status);
      setConn("live", "live");
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        // One split per read: slicing message by message would copy a large burst's buffer once per message.
        const chunks = buf.split("\n\n");
        buf = chunks.pop();
        for (const chunk of chunks) {
          let ev = "message", data = "";
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event: ")) ev = line.slice(7); else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) onMessage(ev, JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    setConn("down", "reconnecting…");
    await sleep(1000);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function onMessage(ev, d) {
  if (ev === "gameserver" || ev === "gameserverset") {
    const m = ev === "gameserver" ? S.gs : S.gss;
    if (d.type === "DELETED") { m.delete(key(d.object)); S.selected.delete(key(d.object)); } else m.set(key(d.object), d.object);
    if (ev === "gameserver") S.dirtyRows = true;
  } else if (ev === "event") {
    S.events.push(d); if (S.events.length > 500) S.events.splice(0, S.events.length - 500);
    if (d.type === "Warning") { S.warnings.push(d); if (S.warnings.length > 50) S.warnings.shift(); S.dirtyWarnings = true; }
  }
  schedule();
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

// -- views ---------------------------------------------------------------------------------------------------------

function route() {
  const h = location.hash || "#/";
  const m = h.match(/^#\/gs\/([^/]+)\/([^/]+)$/);
  S.view = m ? "gs" : h.startsWith("#/servers") ? "servers" : h.startsWith("#/events") ? "events" : "overview";
  S.current = m ? decodeURIComponent(m[1]) + "/" + decodeURIComponent(m[2]) : null;
  const params = new URLSearchParams(h.split("?")[1] || "");
  if (S.view === "servers" && params.has("set")) { S.filterSet = params.get("set"); S.dirtyRows = true; }
  for (const v of ["overview", "servers", "gs", "events"]) $("view-" + v).hidden = S.view !== v;
  for (const v of ["overview", "servers", "events"]) {
    const a = $("nav-" + v);
    if (S.view === v || (v === "servers" && S.view === "gs")) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (S.view === "gs") loadGs();
  schedule();
}

function render() {
  if (S.view === "overview") renderSets();
  if (S.view === "servers") renderTable();
  if (S.view === "gs") renderGs();
  if (S.view === "events") renderEventList($("all-events"), S.events.slice(-200).reverse(), true);
  if (S.dirtyWarnings || Date.now() - S.warningsAt > 5000) {
    renderEventList($("warnings"), S.warnings.slice().reverse(), true);
    S.dirtyWarnings = false; S.warningsAt = Date.now();
  }
}

function counts(items, f) {
  const c = {};
  for (const o of items) { const k = f(o); c[k] = (c[k] || 0) + 1; }
  return c;
}
function chips(c) {
  const d = el("div", { class: "chips" });
  for (const [k, n] of Object.entries(c).sort()) d.append(el("span", { class: "chip ops-" + k, text: k + " " + n }));
  return d;
}

// Cards are made once per set and updated in place, so a replicas value being typed keeps its focus and text
// while the stream redraws the numbers around it.
const cards = new Map();
function makeCard(k, set) {
  const c = { input: el("input", { type: "number", min: "0", "aria-label": "Replicas for " + set.metadata.name, "data-scale": k }),
    btn: el("button", { type: "button", text: "Scale", "data-scale-go": k }), replicas: el("span"), rollout: el("span"),
    fill: el("span"), bar: el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": "Rollout progress" }),
    states: el("div", { class: "chips" }), ops: el("div", { class: "chips" }), set };
  c.bar.append(c.fill);
  const go = () => confirmScale(c.set, Number(c.input.value));
  c.input.addEventListener("input", () => { S.scaleDraft[k] = c.input.value; });
  c.input.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  c.btn.addEventListener("click", go);
  c.card = el("div", { class: "card", "data-set": set.metadata.name },
    el("h3", {}, el("span", { text: set.metadata.name + " " }), el("span", { class: "muted", text: set.metadata.namespace })),
    el("div", { class: "kv" }, el("span", { text: "replicas" }), c.replicas, el("span", { text: "rollout" }), c.rollout),
    c.bar, el("div", { class: "muted", text: "state" }), c.states, el("div", { class: "muted", text: "opsState" }), c.ops,
    el("div", { class: "toolbar" }, el("label", {}, "replicas ", c.input), c.btn,
      el("a", { href: "#/servers?set=" + encodeURIComponent(set.metadata.name), text: "servers →" })));
  return c;
}

function renderSets() {
  const box = $("sets");
  const empty = $("sets-empty");
  if (!S.gss.size) {
    if (!empty) box.replaceChildren(el("p", { class: "muted", id: "sets-empty", text: "No GameServerSets yet (gk apply -f FILE)." }));
    cards.clear();
    return;
  }
  if (empty) empty.remove();
  const byOwner = new Map();
  for (const g of S.gs.values()) {
    const k = g.metadata.namespace + "/" + ((g.metadata.labels || {})[OWNER] || "");
    if (!byOwner.has(k)) byOwner.set(k, []);
    byOwner.get(k).push(g);
  }
  for (const k of [...cards.keys()]) if (!S.gss.has(k)) { cards.get(k).card.remove(); cards.delete(k); }
  const order = [...S.gss.keys()].sort(natural);
  order.forEach((k, i) => {
    const set = S.gss.get(k);
    let c = cards.get(k);
    if (!c) { c = makeCard(k, set); cards.set(k, c); }
    c.set = set;
    if (box.children[i] !== c.card) box.insertBefore(c.card, box.children[i] || null);
    const st = set.status || {}, spec = set.spec || {}, members = byOwner.get(k) || [];
    const want = spec.replicas || 0, updated = st.updatedReplicas || 0;
    const pct = want ? Math.min(100, Math.round((100 * updated) / want)) : 100;
    const paused = spec.updateStrategy && spec.updateStrategy.rollingUpdate && spec.updateStrategy.rollingUpdate.paused;
    c.replicas.textContent = `${want} wanted, ${text(st.replicas)} current, ${text(st.readyReplicas)} ready`;
    c.rollout.textContent = `${updated}/${want} updated` + (paused ? " (paused)" : "");
    c.fill.style.width = pct + "%";
    c.bar.setAttribute("aria-valuenow", String(pct));
    c.states.replaceChildren(...chips(counts(members, (g) => text((g.status || {}).currentState) || "Unknown")).children);
    c.ops.replaceChildren(...chips(counts(members, (g) => (g.spec || {}).opsState || "None")).children);
    if (!(k in S.scaleDraft) && document.activeElement !== c.input) c.input.value = String(want);
  });
}

// -- the table -----------------------------------------------------------------------------------------------------

function rowData(g) {
  const st = g.status || {}, sp = g.spec || {};
  const sq = (st.serviceQualitiesConditions || []).filter((c) => "status" in c).map((c) => c.name + "=" + text(c.result)).join(", ");
  return { key: key(g), name: g.metadata.name, ns: g.metadata.namespace, set: (g.metadata.labels || {})[OWNER] || "",
    state: text(st.currentState), ops: sp.opsState || "None", dp: text(st.deletionPriority), up: text(st.updatePriority),
    sq, rv: g.metadata.resourceVersion, labels: JSON.stringify(g.metadata.labels || {}),
    haystack: "" };
}
// One collator: localeCompare with options builds one per call, which dominates sorting thousands of rows.
const natural = new Intl.Collator(undefined, { numeric: true }).compare;
// Row cells per object: an update replaces the object, so the cache never serves stale cells.
const rowCache = new WeakMap();
function cachedRow(g) { let r = rowCache.get(g); if (!r) { r = rowData(g); rowCache.set(g, r); } return r; }

function computeRows() {
  const f = S.filter.toLowerCase();
  let rows = [];
  const sets = new Set(), opss = new Set();
  for (const g of S.gs.values()) {
    const r = cachedRow(g);
    sets.add(r.set); opss.add(r.ops);
    if (S.filterSet && r.set !== S.filterSet) continue;
    if (S.filterOps && r.ops !== S.filterOps) continue;
    if (f) {
      if (!r.haystack) r.haystack = (r.name + " " + r.state + " " + r.ops + " " + r.sq + " " + r.labels).toLowerCase();
      if (!r.haystack.includes(f)) continue;
    }
    rows.push(r);
  }
  const k = S.sort.key, dir = S.sort.dir;
  const num = k === "dp" || k === "up";
  rows.sort((a, b) => dir * (num ? (Number(a[k]) || 0) - (Number(b[k]) || 0) : natural(a[k], b[k])) || natural(a.name, b.name));
  S.rows = rows;
  fillOptions($("filter-set"), sets, S.filterSet);
  fillOptions($("filter-ops"), opss, S.filterOps);
  $("gs-grid").setAttribute("aria-rowcount", String(rows.length));
  $("gs-count").textContent = `(${rows.length} of ${S.gs.size})`;
  S.dirtyRows = false;
}
function fillOptions(sel, values, current) {
  const want = ["", ...[...values].sort(natural)];
  const have = [...sel.options].map((o) => o.value);
  if (want.join("\n") === have.join("\n")) return;
  sel.replaceChildren(...want.map((v) => el("option", { value: v, text: v || "all" })));
  sel.value = current;
}

function renderTable() {
  if (S.dirtyRows) computeRows();
  const scroll = $("gs-scroll");
  $("gs-spacer").style.height = S.rows.length * ROW + "px";
  const first = Math.max(0, Math.floor(scroll.scrollTop / ROW) - 10);
  const last = Math.min(S.rows.length, first + Math.ceil((scroll.clientHeight || 600) / ROW) + 20);
  const box = $("gs-rows");
  box.style.top = first * ROW + "px";
  // Rows are replaced only when what they show changed: a row swapped under the pointer would eat a click.
  let sig = first + ":" + S.focus;
  for (let i = first; i < last; i++) sig += "|" + S.rows[i].key + "@" + S.rows[i].rv + (S.selected.has(S.rows[i].key) ? "*" : "");
  if (sig !== S.rowsSig) { S.rowsSig = sig; fillRows(box, first, last); }
  for (const b of document.querySelectorAll(".thead button")) {
    if (b.dataset.sort === S.sort.key) b.setAttribute("aria-sort", S.sort.dir > 0 ? "ascending" : "descending"); else b.removeAttribute("aria-sort");
  }
  const n = S.selected.size;
  $("sel-count").textContent = n + " selected";
  for (const id of ["act-ops-go", "act-kill", "act-dp-go", "sel-none"]) $(id).disabled = n === 0;
  const shown = S.rows.length && S.rows.every((r) => S.selected.has(r.key));
  $("sel-all").checked = Boolean(shown);
}

function fillRows(box, first, last) {
  const frag = document.createDocumentFragment();
  for (let i = first; i < last; i++) {
    const r = S.rows[i];
    const sel = S.selected.has(r.key);
    const cb = el("input", { type: "checkbox", "aria-label": "Select " + r.name, tabindex: "-1" });
    cb.checked = sel;
    cb.addEventListener("change", () => toggle(r.key, cb.checked));
    const row = el("div", { class: "row" + (sel ? " sel" : "") + (i === S.focus ? " focus" : ""), role: "row",
      "aria-rowindex": String(i + 1), "aria-selected": String(sel), "data-name": r.name, "data-key": r.key },
      el("span", { class: "c-sel", role: "gridcell" }, cb),
      el("span", { role: "gridcell" }, el("a", { href: `#/gs/${encodeURIComponent(r.ns)}/${encodeURIComponent(r.name)}`, text: r.name, tabindex: "-1" })),
      el("span", { role: "gridcell", text: r.set }),
      el("span", { role: "gridcell", class: "state", text: r.state }),
      el("span", { role: "gridcell", class: "ops ops-" + r.ops, text: r.ops }),
      el("span", { role: "gridcell", class: "dp", text: r.dp }),
      el("span", { role: "gridcell", text: r.up }),
      el("span", { role: "gridcell", text: r.sq, title: r.sq }));
    frag.append(row);
  }
  box.replaceChildren(frag);
}

function toggle(k, on) { if (on) S.selected.add(k); else S.selected.delete(k); schedule(); }

function moveFocus(delta) {
  if (!S.rows.length) return;
  S.focus = Math.max(0, Math.min(S.rows.length - 1, S.focus + delta));
  const scroll = $("gs-scroll"), top = S.focus * ROW;
  if (top < scroll.scrollTop) scroll.scrollTop = top;
  else if (top + ROW > scroll.scrollTop + scroll.clientHeight) scroll.scrollTop = top + ROW - scroll.clientHeight;
  schedule();
}

// -- bulk actions --------------------------------------------------------------------------------------------------

function selectedRows() { return [...S.selected].map((k) => S.gs.get(k)).filter(Boolean); }

// A missing or wrong token can be fixed here; a read-only API (no token configured) cannot.
function askToken(r) {
  if (r.status === 401 || (r.status === 403 && /token is wrong/.test((r.data && r.data.message) || ""))) $("token-dialog").showModal();
}

function confirmDialog(title, message, lines) {
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = message;
  $("confirm-list").replaceChildren(...lines.map((l) => el("li", { text: l })));
  const d = $("confirm");
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    $("confirm-cancel").focus();
  });
}

async function bulk(patch, what) {
  const targets = selectedRows();
  if (!targets.length) return;
  const byNs = new Map();
  for (const g of targets) {
    if (!byNs.has(g.metadata.namespace)) byNs.set(g.metadata.namespace, []);
    byNs.get(g.metadata.namespace).push(g);
  }
  const lines = targets.map((g) => `${g.metadata.namespace}/${g.metadata.name}: ${what(g)}`);
  const ok = await confirmDialog("Change " + targets.length + " game server" + (targets.length > 1 ? "s" : ""),
    "This merge patch will be written to each game server below (each only if it has not changed since shown): " + JSON.stringify(patch), lines);
  if (!ok) return;
  const out = [];
  for (const [ns, list] of byNs) {
    const r = await api(`/api/v1/namespaces/${encodeURIComponent(ns)}/gameservers/bulk-patch`, { method: "POST",
      body: { patch, items: list.map((g) => ({ name: g.metadata.name, resourceVersion: g.metadata.resourceVersion })) } });
    if (r.status === 200 || r.status === 207) for (const i of r.data.items) out.push(`${i.name}: ${i.result}${i.message ? " (" + i.message + ")" : ""}`);
    else out.push(`error ${r.status}: ${r.data.message || r.data}`);
    askToken(r);
  }
  $("result").textContent = out.join("; ");
  S.selected.clear();
  schedule();
}

async function confirmScale(set, replicas) {
  const cur = (set.spec || {}).replicas;
  if (!Number.isInteger(replicas) || replicas < 0) { $("result").textContent = "replicas must be a whole number ≥ 0"; return; }
  const ok = await confirmDialog("Scale " + set.metadata.name,
    `spec.replicas of GameServerSet ${set.metadata.namespace}/${set.metadata.name} goes from ${cur} to ${replicas}.` +
    (replicas < cur ? " Scale-in removes Kill, then WaitToBeDeleted, then None, then Allocated, then Maintaining servers, higher deletionPriority first." : ""), []);
  if (!ok) return;
  const r = await api(`/api/v1/namespaces/${encodeURIComponent(set.metadata.namespace)}/gameserversets/${encodeURIComponent(set.metadata.name)}/scale`,
    { method: "PUT", body: { metadata: { resourceVersion: set.metadata.resourceVersion }, spec: { replicas } } });
  $("result").textContent = r.status === 200 ? `${set.metadata.name} scaled to ${replicas}` : `error ${r.status}: ${r.data.message}`;
  if (r.status === 200) { delete S.scaleDraft[key(set)]; schedule(); }
  askToken(r);
}

// -- one game server -----------------------------------------------------------------------------------------------

let detail = null;
async function loadGs() {
  if (!S.current) return;
  const [ns, name] = S.current.split("/");
  const base = `/api/v1/namespaces/${encodeURIComponent(ns)}/gameservers/${encodeURIComponent(name)}`;
  const h = await api(base + "/history");
  detail = h.status === 200 ? h.data : null;
  const sel = $("log-container");
  const containers = detail ? detail.containers || [] : [];
  if (sel.dataset.gs !== S.current) { sel.dataset.gs = S.current; sel.replaceChildren(); }
  if (![...sel.options].length && containers.length) sel.replaceChildren(...containers.map((c) => el("option", { text: c })));
  const lg = await api(base + "/log?tailLines=200" + (sel.value ? "&container=" + encodeURIComponent(sel.value) : ""));
  $("gs-log").textContent = lg.status === 200 ? lg.data || "(empty)" : "(" + (lg.data.message || lg.status) + ")";
  schedule();
}

function renderGs() {
  const g = S.gs.get(S.current);
  const box = $("gs-summary");
  if (!g) { box.textContent = (S.current || "") + " is gone."; return; }
  $("h-gs").textContent = "Game server " + g.metadata.name;
  const st = g.status || {}, sp = g.spec || {};
  box.replaceChildren(el("div", { class: "kv" },
    el("span", { text: "state" }), el("span", { text: text(st.currentState) }),
    el("span", { text: "opsState" }), el("span", { class: "ops-" + (sp.opsState || "None"), text: sp.opsState || "None" }),
    el("span", { text: "set" }), el("span", { text: (g.metadata.labels || {})[OWNER] || "" }),
    el("span", { text: "deletionPriority" }), el("span", { text: text(st.deletionPriority) }),
    el("span", { text: "updatePriority" }), el("span", { text: text(st.updatePriority) }),
    el("span", { text: "networkDisabled" }), el("span", { text: text(sp.networkDisabled || false) }),
    el("span", { text: "resourceVersion" }), el("span", { text: text(g.metadata.resourceVersion) })));
  if (detail) {
    drawTimeline($("timeline"), detail);
    renderEventList($("gs-events"), (detail.events || []).slice().reverse(), false);
  }
}

const PALETTE = ["#1f6feb", "#9a6700", "#8250df", "#1a7f37", "#bf3989", "#0969da", "#cf222e"];
const OPS_COLOR = { None: "#1a7f37", WaitToBeDeleted: "#bf8700", Maintaining: "#cf222e", Allocated: "#0969da", Kill: "#6e7781" };

function drawTimeline(box, d) {
  const lanes = [];
  for (const [q, entries] of Object.entries(d.serviceQualityHistory || {})) lanes.push({ label: "probe " + q, points: entries.map((e) => ({ t: Date.parse(e.time), v: (e.status === false || e.status === "False" ? "fail: " : "") + text(e.result), note: e.action ? "→ " + JSON.stringify(e.action) : "" })) });
  lanes.push({ label: "opsState", ops: true, points: (d.opsStateHistory || []).map((e) => ({ t: Date.parse(e.time), v: e.to, note: e.by ? "by " + e.by : "" })) });
  const now = d.now ? Math.max(Date.parse(d.now), Date.now()) : Date.now();
  const all = lanes.flatMap((l) => l.points.map((p) => p.t)).filter((t) => !Number.isNaN(t));
  const t0 = all.length ? Math.min(...all) : now - 60000;
  const W = Math.max(600, box.clientWidth - 20), left = 130, right = 10, H = 34, top = 10;
  const x = (t) => left + ((t - t0) / Math.max(1, now - t0)) * (W - left - right);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(W)); svg.setAttribute("height", String(top + lanes.length * H + 24));
  const add = (tag, attrs, txt) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v)); if (txt !== undefined) e.textContent = txt; svg.append(e); return e; };
  const colors = new Map();
  lanes.forEach((lane, i) => {
    const y = top + i * H;
    add("text", { x: 4, y: y + 18 }, lane.label);
    lane.points.forEach((p, j) => {
      const end = j + 1 < lane.points.length ? lane.points[j + 1].t : now;
      let c = lane.ops ? OPS_COLOR[p.v] : colors.get(p.v);
      if (!c) { c = lane.ops ? "#6e7781" : PALETTE[colors.size % PALETTE.length]; if (!lane.ops) colors.set(p.v, c); }
      const r = add("rect", { x: x(p.t), y: y + 4, width: Math.max(2, x(end) - x(p.t)), height: H - 10, fill: c, rx: 3 });
      const tip = document.createElementNS(ns, "title"); tip.textContent = `${lane.label}: ${p.v} at ${new Date(p.t).toLocaleTimeString()} ${p.note}`; r.append(tip);
      if (x(end) - x(p.t) > 40) add("text", { x: x(p.t) + 4, y: y + 18, fill: "#fff", style: "fill:#fff" }, p.v);
    });
  });
  add("text", { x: left, y: top + lanes.length * H + 16 }, new Date(t0).toLocaleTimeString());
  add("text", { x: W - right - 60, y: top + lanes.length * H + 16 }, "now");
  box.setAttribute("aria-label", lanes.map((l) => l.label + ": " + l.points.map((p) => p.v).join(" then ")).join("; "));
  box.replaceChildren(svg);
}

function renderEventList(ul, events, withObject) {
  ul.replaceChildren(...events.slice(0, 100).map((e) => {
    const o = e.involvedObject || {};
    const li = el("li", {}, el("span", { class: e.type, text: e.type + " " }), el("b", { text: e.reason + " " }));
    if (withObject) li.append(o.kind === "GameServer" ? el("a", { href: `#/gs/${encodeURIComponent(o.namespace)}/${encodeURIComponent(o.name)}`, text: o.name }) : el("span", { text: o.name }), " ");
    li.append(el("span", { text: e.message + (e.count > 1 ? ` (x${e.count})` : "") + " · " + ago(e.lastTimestamp) }));
    return li;
  }));
}

// -- wiring --------------------------------------------------------------------------------------------------------

function init() {
  window.addEventListener("hashchange", route);
  $("filter").addEventListener("input", (e) => { S.filter = e.target.value; S.dirtyRows = true; schedule(); });
  $("filter-set").addEventListener("change", (e) => { S.filterSet = e.target.value; S.dirtyRows = true; schedule(); });
  $("filter-ops").addEventListener("change", (e) => { S.filterOps = e.target.value; S.dirtyRows = true; schedule(); });
  $("gs-scroll").addEventListener("scroll", schedule, { passive: true });
  for (const b of document.querySelectorAll(".thead button")) b.addEventListener("click", () => {
    S.sort = { key: b.dataset.sort, dir: S.sort.key === b.dataset.sort ? -S.sort.dir : 1 }; S.dirtyRows = true; schedule();
  });
  $("sel-all").addEventListener("change", (e) => { for (const r of S.rows) toggle(r.key, e.target.checked); });
  $("sel-none").addEventListener("click", () => { S.selected.clear(); schedule(); });
  $("gs-scroll").addEventListener("keydown", (e) => {
    const r = S.rows[S.focus];
    if (e.key === "ArrowDown") moveFocus(1); else if (e.key === "ArrowUp") moveFocus(-1);
    else if (e.key === "PageDown") moveFocus(15); else if (e.key === "PageUp") moveFocus(-15);
    else if (e.key === "Home") moveFocus(-1e9); else if (e.key === "End") moveFocus(1e9);
    else if (e.key === " " && r) toggle(r.key, !S.selected.has(r.key));
    else if (e.key === "Enter" && r) location.hash = `#/gs/${encodeURIComponent(r.ns)}/${encodeURIComponent(r.name)}`;
    else return;
    e.preventDefault();
  });
  $("act-ops-go").addEventListener("click", () => { const v = $("act-ops").value; bulk({ spec: { opsState: v } }, (g) => `opsState ${(g.spec || {}).opsState || "None"} → ${v}`); });
  $("act-kill").addEventListener("click", () => bulk({ spec: { opsState: "Kill" } }, (g) => `opsState ${(g.spec || {}).opsState || "None"} → Kill (the server is deleted and the set's replicas drop by one)`));
  $("act-dp-go").addEventListener("click", () => {
    const v = Number($("act-dp").value);
    if (!Number.isInteger(v)) { $("result").textContent = "deletionPriority must be a whole number"; return; }
    bulk({ spec: { deletionPriority: v } }, (g) => `deletionPriority ${text((g.status || {}).deletionPriority) || "-"} → ${v}`);
  });
  $("log-container").addEventListener("change", loadGs);
  $("token-open").addEventListener("click", () => { $("token-input").value = token(); $("token-dialog").showModal(); });
  $("token-dialog").addEventListener("close", () => {
    if ($("token-dialog").returnValue === "ok") { localStorage.setItem("gk-token", $("token-input").value.trim()); loadAll(); }
  });
  // The game-server page refreshes its history and log while open; cheap, and only for the one server.
  setInterval(() => { if (S.view === "gs" && !document.hidden) loadGs(); }, 2000);
  setInterval(() => { if (S.view !== "servers") schedule(); }, 5000); // "ago" texts
  route();
  stream();
}
init();
