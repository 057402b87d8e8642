// The page of `charlm serve`: pick a model, then try it. It only talks to this server's JSON API
// (v1/models, v1/MODEL/next|sample|score|tag|classify|translate); nothing is fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("charlm-token") || "";
let models = [];
let current = null;

// POST (with a body) or GET one of the API's paths; throws an Error with the server's message.
async function api(path, body) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (response.status === 401) $("token-box").hidden = false;
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(message) { $("status").textContent = message || ""; }

// Run f() after `ms` quiet milliseconds; only the answer to the latest call is shown.
function debounced(f, ms) {
  let timer = null, latest = 0;
  return () => {
    clearTimeout(timer);
    const call = ++latest;
    timer = setTimeout(async () => {
      try { await f(() => call === latest); say(""); } catch (err) { if (call === latest) say(err.message); }
    }, ms);
  };
}

// A token as it should be seen: spaces, newlines and tabs visible.
function shown(tok) { return tok.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5"); }

// Horizontal bars: rows of [label, value in 0..1]; widths relative to the largest value
// (relative = false: to 1).
function drawBars(box, rows, relative = true, digits = 4) {
  const top = relative ? Math.max(...rows.map((r) => r[1]), 1e-12) : 1;
  box.replaceChildren(...rows.map(([label, value]) => {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (100 * value / top).toFixed(1) + "%";
    track.append(fill);
    const number = document.createElement("span");
    number.className = "value";
    number.textContent = value.toFixed(digits);
    row.append(name, track, number);
    return row;
  }));
}

// -- language model ------------------------------------------------------------------------
// A conditional language model's requests carry the chosen label: P(text | label).
const given = () => ($("lm-label-row").hidden ? {} : { label: $("lm-label").value });

const updateNext = debounced(async (fresh) => {
  const prefix = $("lm-text").value;
  const data = await api(`v1/${current.name}/next`, { prefix, k: 10, ...given() });
  if (!fresh()) return;
  drawBars($("next-chart"), data.next.map((n) => [shown(n.token), n.prob]));
  $("next-chart").dataset.prefix = prefix;  // which text (and label) the bars are for
  $("next-chart").dataset.label = given().label || "";
}, 80);

async function sample() {
  const length = parseInt($("length").value, 10) || undefined;
  $("sample-go").disabled = true;
  try {
    const data = await api(`v1/${current.name}/sample`, {
      prime: $("lm-text").value, temperature: parseFloat($("temperature").value), length, num: 1, ...given() });
    $("sample-out").textContent = data.results[0].text;
    say("");
  } catch (err) { say(err.message); } finally { $("sample-go").disabled = false; }
}

async function compare() {
  try {
    const texts = [$("cmp-a").value, $("cmp-b").value];
    const data = await api(`v1/${current.name}/score`, { texts, ...given() });
    const best = data.results[0].logprob >= data.results[1].logprob ? 0 : 1;
    const head = document.createElement("tr");
    for (const h of ["sentence", "log P (nats)", "log10 P", "perplexity", "tokens"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    const rows = data.results.map((r, i) => {
      const tr = document.createElement("tr");
      if (i === best) tr.className = "best";
      for (const v of [(i === best ? "\u2605 " : "") + r.text, r.logprob.toFixed(3), r.log10prob.toFixed(3),
                       r.perplexity === null ? "-" : r.perplexity.toFixed(2), String(r.tokens.length)]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    });
    const ratio = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 5;
    const diff = Math.abs(data.results[0].logprob - data.results[1].logprob);
    td.textContent = `the likelier one is ${Math.exp(Math.min(diff, 700)).toPrecision(3)} times as probable`;
    ratio.append(td);
    $("cmp-out").replaceChildren(head, ...rows, ratio);
    say("");
  } catch (err) { say(err.message); }
}

// -- tagger --------------------------------------------------------------------------------
function hue(kind) { let h = 0; for (const c of kind) h = (h * 31 + c.charCodeAt(0)) % 360; return h; }

const updateTags = debounced(async (fresh) => {
  const text = $("tag-text").value;
  const out = $("tag-out");
  if (!text.trim()) { out.replaceChildren(); return; }
  const data = await api(`v1/${current.name}/tag`, { texts: [text], spans: current.entities });
  if (!fresh()) return;
  const r = data.results[0];
  const parts = [];
  if (current.entities) {  // tokens, entities highlighted with their type
    let i = 0;
    for (const span of r.spans.concat([{ start: r.tokens.length, end: r.tokens.length }])) {
      if (span.start > i) parts.push(document.createTextNode(r.tokens.slice(i, span.start).join(" ") + " "));
      if (span.end > span.start) {
        const mark = document.createElement("mark");
        mark.className = "ent";
        mark.dataset.type = span.type;
        mark.style.backgroundColor = `hsl(${hue(span.type)} 75% 85%)`;
        const type = document.createElement("span");
        type.className = "type";
        type.textContent = span.type;
        mark.append(document.createTextNode(span.text), type);
        parts.push(mark, document.createTextNode(" "));
      }
      i = span.end;
    }
  } else {  // every token with its tag under it
    r.tokens.forEach((tok, i) => {
      const t = document.createElement("span");
      t.className = "tok";
      const tag = document.createElement("small");
      tag.textContent = r.tags[i];
      t.append(document.createTextNode(tok), tag);
      parts.push(t);
    });
  }
  out.replaceChildren(...parts);
  out.dataset.text = text;
}, 120);

// -- classifier ----------------------------------------------------------------------------
const updateLabels = debounced(async (fresh) => {
  const text = $("cls-text").value;
  if (!text.trim()) { $("cls-chart").replaceChildren(); return; }
  const data = await api(`v1/${current.name}/classify`, { texts: [text], top_k: null });
  if (!fresh()) return;
  drawBars($("cls-chart"), Object.entries(data.results[0].probs), false);
  $("cls-chart").dataset.text = text;
}, 120);

// -- sequence to sequence ------------------------------------------------------------------
function svgElement(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// The attention matrix as an SVG heatmap: a row per output token, a column per source token, each
// cell's darkness its weight α<t,t'> over the matrix's largest (a row sums to 1, so the weights of a
// long source are small); its title and data-weight hold the figure.
function drawHeatmap(box, rowLabels, colLabels, weights) {
  const cell = 20, widest = (labels) => Math.max(1, ...labels.map((l) => l.length));
  const darkest = Math.max(1e-12, ...weights.flat());
  const left = 12 + 8 * widest(rowLabels), top = 12 + 8 * widest(colLabels);
  const svg = svgElement("svg", { width: left + cell * colLabels.length + 2, height: top + cell * rowLabels.length + 2,
                                  role: "img", "aria-label": "attention heatmap" });
  colLabels.forEach((label, j) => {
    const x = left + cell * j + cell * 0.65, y = top - 4;
    svg.append(svgElement("text", { x, y, transform: `rotate(-90 ${x} ${y})` }, label));
  });
  rowLabels.forEach((label, i) => {
    svg.append(svgElement("text", { x: left - 4, y: top + cell * i + cell * 0.7, "text-anchor": "end" }, label));
    weights[i].forEach((w, j) => {
      const rect = svgElement("rect", { x: left + cell * j, y: top + cell * i, width: cell, height: cell,
                                        "fill-opacity": (w / darkest).toFixed(3), class: "cell", "data-weight": String(w) });
      rect.append(svgElement("title", {}, `${label} \u2190 ${colLabels[j]}: ${w.toFixed(3)}`));
      svg.append(rect);
    });
  });
  box.replaceChildren(svg);
}

const updateTranslation = debounced(async (fresh) => {
  const text = $("tr-text").value;
  if (!text.trim()) { $("tr-out").textContent = ""; $("tr-heatmap").replaceChildren(); return; }
  const beam = parseInt($("tr-beam").value, 10) || 1;
  const data = await api(`v1/${current.name}/translate`, { texts: [text], beam, attention: true });
  if (!fresh()) return;
  const r = data.results[0];
  $("tr-out").textContent = r.output;
  if (r.attention) {  // rows: the output tokens, then <EOS> (when the output ended there)
    const rows = r.attention.map((_, i) => (i < r.tokens.length ? shown(r.tokens[i]) : "<EOS>"));
    drawHeatmap($("tr-heatmap"), rows, r.source_tokens.map(shown), r.attention);
  } else {
    $("tr-heatmap").replaceChildren(document.createTextNode("This model has no attention (--attention none)."));
  }
  $("tr-out").dataset.text = text;  // which source the output is for
}, 150);

// -- models --------------------------------------------------------------------------------
// Each part of the page, the endpoint it calls and its update; a model gets every part whose
// endpoint it serves (GET /v1/models lists a model's endpoints: a conditional language model
// serves next and classify).
const PANELS = [["lm", "next", updateNext], ["tag", "tag", updateTags], ["classify", "classify", updateLabels],
                ["translate", "translate", updateTranslation]];
const panelsOf = (m) => PANELS.filter(([, endpoint]) => m.endpoints.includes(endpoint));

function choose(name) {
  current = models.find((m) => m.name === name);
  const shownPanels = panelsOf(current);
  for (const [id] of PANELS) $(id).hidden = !shownPanels.some(([shown]) => shown === id);
  const conditional = current.endpoints.includes("next") && Array.isArray(current.labels);
  $("lm-label-row").hidden = !conditional;
  if (conditional) $("lm-label").replaceChildren(...current.labels.map((c) => new Option(c, c)));
  const info = current.info.model || {};
  $("model-about").textContent = `task ${current.task}, ${info.cell || "?"}, ` +
    `${(info.parameters || 0).toLocaleString()} parameters, ${current.info.vocabulary.size} tokens` +
    (conditional ? `, labels ${current.labels.join(", ")}` : "");
  for (const [, , update] of shownPanels) update();
}

async function start() {
  try {
    models = (await api("v1/models")).models.filter((m) => panelsOf(m).length);
  } catch (err) { say(err.message); return; }
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.task})`, m.name)));
  if (models.length) choose(models[0].name);
  say("");
}

$("model").addEventListener("change", (e) => choose(e.target.value));
$("lm-text").addEventListener("input", () => updateNext());
$("tag-text").addEventListener("input", () => updateTags());
$("cls-text").addEventListener("input", () => updateLabels());
$("tr-text").addEventListener("input", () => updateTranslation());
$("tr-beam").addEventListener("input", () => updateTranslation());
$("lm-label").addEventListener("change", () => updateNext());
$("temperature").addEventListener("input", (e) => { $("temperature-value").textContent = e.target.value; });
$("sample-go").addEventListener("click", sample);
$("cmp-go").addEventListener("click", compare);
$("token-box").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("charlm-token", token);
  $("token-box").hidden = true;
  start();
});
start();
