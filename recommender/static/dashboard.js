// flashrec dashboard: polls the serving API and renders the live views.
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let sessionId = newSessionId();
const known = new Map(); // product_id -> {product_name, category}

function newSessionId() {
  return "dash-" + Math.random().toString(36).slice(2, 10);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function label(p) {
  return p.product_name ? `${p.product_name} (${p.product_id})` : p.product_id;
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function remember(rows) {
  for (const r of rows) {
    if (!r.product_id) continue;
    const old = known.get(r.product_id) || {};
    known.set(r.product_id, {
      product_name: r.product_name ?? old.product_name,
      category: r.category ?? old.category,
    });
  }
}

async function refreshTrending() {
  try {
    const data = await getJson("/v1/trending?limit=5");
    const box = $("trending");
    box.replaceChildren();
    if (!data.categories.length) box.append(el("p", { class: "muted" }, "no trending rows yet"));
    for (const block of data.categories) {
      remember(block.trending);
      const list = el("ol");
      for (const row of block.trending) {
        list.append(el("li", { class: "trend-item" },
          label(row), el("span", { class: "score" }, String(row.engagement_score))));
      }
      box.append(el("div", { class: "card", "data-category": block.category },
        el("h4", {}, block.category), list));
    }
    renderCatalog();
  } catch (err) {
    $("trending").replaceChildren(el("p", { class: "stale" }, `trending unavailable: ${err.message}`));
  }
}

function renderCatalog() {
  const options = $("known-products");
  const chips = $("catalog");
  options.replaceChildren();
  chips.replaceChildren();
  for (const [id, p] of [...known.entries()].slice(0, 60)) {
    const chip = chips.childElementCount < 16;
    options.append(el("option", { value: id }, p.product_name || id));
    if (chip) {
      chips.append(el("button", { type: "button", class: "product", onclick: () => click(id) },
        p.product_name || id));
    }
  }
}

async function showAlsoViewed(productId) {
  const box = $("also-viewed");
  try {
    const data = await getJson(`/v1/products/${encodeURIComponent(productId)}/also-viewed?limit=10`);
    const list = el("ol");
    for (const row of data.also_viewed) {
      list.append(el("li", { class: "also-item" },
        label(row), el("span", { class: "score" }, `${row.co_view_count} sessions`)));
    }
    box.replaceChildren(el("p", {}, `Viewed with ${label(data.product)}:`),
      data.also_viewed.length ? list : el("p", { class: "muted" }, "no co-views in the last 30 minutes"));
  } catch (err) {
    box.replaceChildren(el("p", { class: "stale" }, err.message));
  }
}

async function click(productId) {
  try {
    const data = await getJson(`/v1/sessions/${encodeURIComponent(sessionId)}/clicks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ item_id: productId, user_consent: true, how_many: 10 }),
    });
    renderSession(data);
    $("also-product").value = productId;
    showAlsoViewed(productId);
    refreshSessionTrending();
  } catch (err) {
    $("recommendations").replaceChildren(el("li", { class: "stale" }, err.message));
  }
}

function renderSession(data) {
  $("session-items").replaceChildren(...data.items.map((p) => el("li", {}, label(p))));
  $("rec-source").textContent = data.source === "popular" ? "(popular: no known item yet)" : "";
  $("recommendations").replaceChildren(...data.recommendations.map((p) =>
    el("li", { class: "rec-item" }, label(p), el("span", { class: "score" }, p.score.toFixed(3)))));
}

async function refreshSessionTrending() {
  try {
    const data = await getJson(`/v1/sessions/${encodeURIComponent(sessionId)}/trending?limit=3`);
    $("session-trending").replaceChildren(...data.categories.map((c) =>
      el("div", { class: "card" }, el("h4", {}, c.category),
        el("ol", {}, ...c.trending.map((r) => el("li", {}, label(r)))))));
  } catch (err) {
    $("session-trending").replaceChildren(el("p", { class: "stale" }, err.message));
  }
}

function ageText(seconds) {
  if (seconds == null) return "–";
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${(seconds / 60).toFixed(1)} min`;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/;

function statusCell(value) {
  // timestamps also show their age: the freshness of each view at a glance
  if (typeof value === "string" && ISO_TIME.test(value)) {
    const age = (Date.now() - Date.parse(value)) / 1000;
    return el("td", { class: age > 60 ? "stale" : "fresh" }, `${value} (${ageText(Math.max(age, 0))} ago)`);
  }
  return el("td", {}, String(value ?? ""));
}

async function refreshStatus() {
  try {
    const data = await getJson("/v1/status");
    const ix = data.index;
    $("index-status").replaceChildren(el("p", { id: "index-line" },
      `VMIS-kNN index: ${ix.sessions} sessions, ${ix.items} items, ${ix.updates_applied} live updates; `,
      `sync ${ix.sync_state}, last heard ${ageText(ix.sync_age_s)} ago, session store ${ix.session_store}`));
    const rows = data.views || [];
    if (!rows.length) {
      $("view-status").replaceChildren(el("p", { class: "muted" }, data.views_error || "no status rows"));
    } else {
      const cols = Object.keys(rows[0]);
      const table = el("table", { id: "status-table" },
        el("tr", {}, ...cols.map((c) => el("th", {}, c))));
      for (const r of rows) table.append(el("tr", {}, ...cols.map((c) => statusCell(r[c]))));
      $("view-status").replaceChildren(table);
    }
    $("clock").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("clock").className = "fresh";
  } catch (err) {
    $("clock").textContent = `API unreachable: ${err.message}`;
    $("clock").className = "stale";
  }
}

function startSession() {
  sessionId = newSessionId();
  $("session-id").textContent = sessionId;
  $("session-items").replaceChildren();
  $("recommendations").replaceChildren(
    el("li", { class: "muted", id: "session-hint", style: "list-style: none" },
      "click a product to start this session"));
  $("session-trending").replaceChildren();
}

$("also-form").addEventListener("submit", (e) => {
  e.preventDefault();
  showAlsoViewed($("also-product").value.trim());
});
$("new-session").addEventListener("click", startSession);

async function tick() {
  await Promise.all([refreshTrending(), refreshStatus()]);
}

startSession();
tick().then(() => {
  // show a first product's neighbours at once; reading only: a session starts with the
  // user's first click, so a page load records nothing
  const first = known.keys().next().value;
  if (first) { $("also-product").value = first; showAlsoViewed(first); }
});
setInterval(tick, POLL_MS);
