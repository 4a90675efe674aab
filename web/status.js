// The admin's status view: /health polled every few seconds while open, drawn as small line
// charts (turns per second, latencies, pools, sockets) and tables (providers, MCP servers).

import { h, clear, showDialog } from "./dom.js";

const INTERVAL_MS = 3000;
const POINTS = 100;

const CHARTS = [
  { id: "rate", title: "Turns per second", series: ["turns/s"], unit: "/s" },
  { id: "latency", title: "Turn latency (since start)", series: ["p50", "p99"], unit: " ms" },
  { id: "ttft", title: "Time to first token (since start)", series: ["p50", "p99"], unit: " ms" },
  { id: "pools", title: "Database pools in use", series: ["readers", "writers", "waiting"], unit: "" },
  { id: "sockets", title: "Open connections", series: ["WebSockets", "HTTP"], unit: "" },
  { id: "providers", title: "Provider requests in flight", series: ["in flight", "waiting"], unit: "" },
];

const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9"];

export async function openStatus() {
  const history = Object.fromEntries(CHARTS.map((c) => [c.id, c.series.map(() => [])]));
  const canvases = {};
  const nows = {};
  const charts = h("div", { class: "charts" }, CHARTS.map((chart) => {
    canvases[chart.id] = h("canvas", { role: "img", "aria-label": chart.title });
    nows[chart.id] = h("span", { class: "now" });
    return h("div", { class: "chart" }, h("h3", {}, chart.title), nows[chart.id], canvases[chart.id]);
  }));
  const tables = h("div", {});
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const dialog = h("dialog", { class: "wide", "aria-labelledby": "status-heading" },
    h("form", { method: "dialog" },
      h("h2", { id: "status-heading" }, "Server status"), error, charts, tables,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Close"))));
  document.body.appendChild(dialog);
  let previous = null;
  const poll = async () => {
    try {
      const response = await fetch("/health", { headers: { Accept: "application/json" } });
      const health = await response.json();
      if (!health.websocket_stats) throw new Error("only an admin sees the server's figures");
      error.hidden = true;
      record(history, health, previous);
      previous = { at: performance.now(), health };
      for (const chart of CHARTS) draw(canvases[chart.id], history[chart.id], chart, nows[chart.id]);
      clear(tables).append(providerTable(health), mcpTable(health));
    } catch (failure) {
      error.textContent = `Cannot read /health: ${failure.message}`;
      error.hidden = false;
    }
  };
  await poll();
  const timer = setInterval(poll, INTERVAL_MS);
  await showDialog(dialog);
  clearInterval(timer);
  dialog.remove();
}

function record(history, health, previous) {
  const push = (id, values) => values.forEach((v, i) => {
    const series = history[id][i];
    series.push(v);
    if (series.length > POINTS) series.shift();
  });
  const turns = health.websocket_stats.turns;
  let rate = 0;
  if (previous) {
    const seconds = (performance.now() - previous.at) / 1000;
    rate = Math.max(0, turns.started - previous.health.websocket_stats.turns.started) / seconds;
  }
  push("rate", [rate]);
  push("latency", [turns.turn_latency_ms.p50 || 0, turns.turn_latency_ms.p99 || 0]);
  push("ttft", [turns.ttft_ms.p50 || 0, turns.ttft_ms.p99 || 0]);
  const pools = health.repository_stats;
  push("pools", [pools.readers.in_use, pools.writers.in_use, pools.readers.waiting + pools.writers.waiting]);
  push("sockets", [health.websocket_stats.active, health.http ? health.http.open : 0]);
  const providers = Object.values(health.llm_client_stats || {});
  push("providers", [
    providers.reduce((sum, p) => sum + (p.in_flight || 0), 0),
    providers.reduce((sum, p) => sum + (p.waiting || 0), 0),
  ]);
}

function draw(canvas, series, chart, now) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 280;
  const height = canvas.clientHeight || 120;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const max = Math.max(1, ...series.flat()) * 1.1;
  const style = getComputedStyle(document.documentElement);
  g.strokeStyle = style.getPropertyValue("--border");
  g.fillStyle = style.getPropertyValue("--muted");
  g.font = "11px system-ui, sans-serif";
  g.beginPath();
  g.moveTo(0, height - 0.5);
  g.lineTo(width, height - 0.5);
  g.stroke();
  g.fillText(format(max), 2, 11);
  series.forEach((points, i) => {
    g.strokeStyle = COLORS[i % COLORS.length];
    g.lineWidth = 2;
    g.beginPath();
    points.forEach((v, n) => {
      // The samples so far span the width (a single one is a dot at the left).
      const x = (n / Math.max(points.length - 1, 1)) * width;
      const y = height - (v / max) * (height - 4) - 1;
      if (n === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  });
  now.textContent = chart.series
    .map((name, i) => `${name} ${format(series[i][series[i].length - 1] || 0)}${chart.unit}`)
    .join(" · ");
}

function format(value) {
  if (Number.isInteger(value) || value >= 100) return Math.round(value).toString();
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function providerTable(health) {
  const rows = Object.entries(health.llm_client_stats || {}).map(([name, p]) =>
    h("tr", {}, h("td", {}, name), h("td", {}, p.model),
      h("td", { class: p.circuit === "closed" ? "state-ok" : "state-bad" }, p.circuit),
      h("td", {}, p.configured ? "yes" : "no key"), h("td", {}, String(p.requests)), h("td", {}, String(p.errors))));
  return h("table", { class: "state-table" },
    h("caption", {}, "Providers"),
    h("thead", {}, h("tr", {}, ["Provider", "Model", "Circuit", "Key", "Requests", "Errors"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

/** Starts an OAuth login to the server `name` and opens its authorization page in a new tab. */
function loginButton(name) {
  const button = h("button", { type: "button", class: "link" }, "Log in");
  button.addEventListener("click", async () => {
    // Opened now, while the click counts as the user's: a popup opened after an await is blocked.
    const tab = window.open("", "_blank");
    try {
      const response = await fetch(`/api/mcp/servers/${encodeURIComponent(name)}/login`, { method: "POST" });
      const body = await response.json();
      if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      if (tab) {
        tab.opener = null;
        tab.location.href = body.authorization_url;
      } else {
        location.assign(body.authorization_url);
      }
      button.textContent = "Waiting for the login…";
      button.disabled = true;
    } catch (failure) {
      if (tab) tab.close();
      button.replaceWith(h("span", { class: "error" }, ` ${failure.message}`));
    }
  });
  return h("span", {}, " ", button);
}

function mcpTable(health) {
  const servers = (health.mcp_stats && health.mcp_stats.servers) || {};
  const rows = Object.entries(servers).map(([name, s]) =>
    h("tr", {}, h("td", {}, name),
      h("td", { class: s.state === "ready" ? "state-ok" : "state-bad" }, String(s.state),
        s.state === "needs_login" ? loginButton(name) : null),
      h("td", {}, String(s.tools)), h("td", {}, String(s.calls)), h("td", {}, String(s.errors)),
      h("td", {}, s.last_error || "")));
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 6 }, "No MCP servers are configured.")));
  return h("table", { class: "state-table" },
    h("caption", {}, "MCP servers"),
    h("thead", {}, h("tr", {}, ["Server", "State", "Tools", "Calls", "Errors", "Last error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}
