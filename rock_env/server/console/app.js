// rock-env web console: a small single-page app over the admin's JSON API.
// Every text that comes from the server is put into the page with textContent (never innerHTML),
// so observations, commands and output that contain HTML render as text.
"use strict";

(function () {
  const TOKEN_KEY = "rockEnvToken";
  const main = document.getElementById("main");
  let timer = null; // the current page's refresh timer
  let cleanup = []; // what the current page must close when the user leaves it

  // --- helpers ------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || "HTTP " + status);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(path, options) {
    const headers = Object.assign({}, (options && options.headers) || {});
    if (token()) headers["Authorization"] = "Bearer " + token();
    const resp = await fetch(path, Object.assign({}, options || {}, { headers }));
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch (e) { body = { message: resp.statusText }; }
      throw new ApiError(resp.status, body);
    }
    return resp;
  }

  async function getJson(path) { return (await api(path)).json(); }

  function ago(t) {
    if (!t) return "";
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 60) return s.toFixed(0) + "s";
    if (s < 3600) return (s / 60).toFixed(0) + "m";
    if (s < 86400) return (s / 3600).toFixed(1) + "h";
    return (s / 86400).toFixed(1) + "d";
  }

  function fmt(n, digits) {
    if (n === null || n === undefined) return "–";
    return Number(n).toFixed(digits === undefined ? 1 : digits);
  }

  function show(...nodes) {
    main.replaceChildren(...nodes);
  }

  function banner(text) { return el("div", { class: "banner", role: "alert", text }); }

  function loginForm(message) {
    const input = el("input", { type: "password", id: "token", placeholder: "API token", autocomplete: "current-password" });
    const form = el("form", { class: "login", id: "login" },
      el("h1", { text: "rock-env console" }),
      el("p", { class: "muted", text: "This server needs its API token (the same as for the API)." }),
      message ? banner(message) : null,
      input,
      el("button", { type: "submit", text: "Log in" }));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      route();
    });
    show(form);
    input.focus();
  }

  function failed(err) {
    if (err instanceof ApiError && err.status === 401) {
      loginForm(token() ? err.message : "");
      return;
    }
    show(banner(err instanceof ApiError ? (err.body.error || "Error") + ": " + err.message : String(err)));
  }

  function table(columns, rows, opts) {
    const head = el("tr", {}, columns.map((c) => el("th", { text: c[0] })));
    const body = rows.map((row) => el("tr", { "data-id": row.id || null }, columns.map((c) => {
      const value = c[1](row);
      return el("td", { class: c[2] || null }, value instanceof Node ? value : (value === null || value === undefined ? "" : String(value)));
    })));
    if (!rows.length) body.push(el("tr", {}, el("td", { colspan: columns.length, class: "muted", text: (opts && opts.empty) || "none" })));
    const kv = columns.every((c) => !c[0]);  // a key/value table: no header row
    return el("table", { id: (opts && opts.id) || null, class: kv ? "kv" : null }, kv ? null : el("thead", {}, head), el("tbody", {}, body));
  }

  function plot(label, points, key, unit) {
    const w = 420, h = 110, pad = 4;
    const values = points.map((p) => p[key]).filter((v) => v !== null && v !== undefined);
    const max = Math.max(1e-9, ...values);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const axis = document.createElementNS(svg.namespaceURI, "line");
    for (const [k, v] of Object.entries({ x1: 0, y1: h - pad, x2: w, y2: h - pad, class: "axis" })) axis.setAttribute(k, v);
    svg.append(axis);
    if (points.length > 1) {
      const t0 = points[0].t, t1 = points[points.length - 1].t;
      const coords = points.filter((p) => p[key] !== null && p[key] !== undefined).map((p) => {
        const x = ((p.t - t0) / Math.max(1e-9, t1 - t0)) * w;
        const y = h - pad - (p[key] / max) * (h - 2 * pad);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      const line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("points", coords.join(" "));
      svg.append(line);
    }
    const last = values.length ? values[values.length - 1] : null;
    return el("div", { class: "card plot" },
      el("div", { class: "l", text: `${label}: now ${fmt(last, 2)} ${unit}, max ${fmt(values.length ? max : null, 2)} ${unit} (last ${points.length ? ago(points[0].t) : "0s"})` }),
      svg);
  }

  function every(ms, fn) {
    fn();
    timer = setInterval(fn, ms);
  }

  function filterBox(onChange, value) {
    const input = el("input", { type: "search", id: "filter", placeholder: "filter (id, env, image, owner, worker…)", value: value || "" });
    input.addEventListener("input", () => onChange(input.value));
    return input;
  }

  function matches(row, needle) {
    if (!needle) return true;
    const hay = [row.id, row.what, row.runtime, row.worker_id, row.owner, row.status].join(" ").toLowerCase();
    return needle.toLowerCase().split(/\s+/).every((w) => hay.includes(w));
  }

  // --- pages ---------------------------------------------------------------------------------

  async function overview() {
    every(2000, async () => {
      let data;
      try { data = await getJson("/api/v1/console/overview"); } catch (err) { clearInterval(timer); failed(err); return; }
      document.getElementById("viewer").textContent = "as " + data.viewer + (data.sees_all ? " (all owners)" : "");
      const c = data.counts;
      const errors = Object.entries(data.errors).sort((a, b) => b[1] - a[1]).map(([type, n]) => ({ type, n }));
      show(
        el("h1", { text: "Overview" }),
        el("div", { class: "cards", id: "counts" },
          [["workers", data.workers.filter((w) => w.status === "alive").length], ["envs", c.envs], ["vector envs", c.vecs],
            ["vector sub-envs", c.vec_sub_envs], ["sandboxes", c.sandboxes]].map(([l, n]) =>
            el("div", { class: "card" }, el("div", { class: "n", text: n }), el("div", { class: "l", text: l })))),
        el("h2", { text: "Last minutes" }),
        el("div", { class: "plots" },
          plot("steps/s", data.series, "steps_per_s", "/s"),
          plot("step latency", data.series, "step_latency_ms", "ms"),
          plot("requests/s", data.series, "requests_per_s", "/s")),
        el("h2", { text: "Workers" }),
        table([
          ["id", (w) => w.id], ["status", (w) => el("span", { class: w.status === "alive" ? "ok" : "bad", text: w.status })],
          ["url", (w) => w.url], ["runtimes", (w) => w.capacity.runtimes.join(", ")],
          ["slots used", (w) => `${w.used_slots} / ${w.capacity.slots}`], ["cpus", (w) => w.capacity.cpus],
          ["heartbeat", (w) => ago(w.last_heartbeat) + " ago"],
        ], data.workers, { id: "workers" }),
        el("h2", { text: "Errors by type (since start)" }),
        table([["type", (e) => e.type], ["count", (e) => e.n]], errors, { id: "errors", empty: "no errors" }),
        el("p", { class: "muted", text: `rock-env ${data.version} (${data.role})` }));
    });
  }

  function objectColumns(kind) {
    const link = (r) => el("a", { href: `#/${kind}/${encodeURIComponent(r.id)}`, text: r.id });
    return [
      ["id", link], [kind === "sandbox" ? "image" : "env id", (r) => r.what],
      kind === "vec" ? ["sub-envs", (r) => r.size] : ["runtime", (r) => r.runtime || ""],
      ["worker", (r) => r.worker_id], ["owner", (r) => r.owner], ["age", (r) => ago(r.created)],
      ["idle", (r) => ago(r.last_used)], ["status", (r) => r.status],
    ];
  }

  function listPage(title, pick) {
    let needle = new URLSearchParams(location.hash.split("?")[1] || "").get("q") || "";
    let data = null;
    const holder = el("div", { id: "lists" });
    const draw = () => {
      if (!data) return;
      holder.replaceChildren(...pick.map(([label, key, kind]) =>
        el("div", {}, el("h2", { text: label }),
          table(objectColumns(kind), data[key].filter((r) => matches(r, needle)), { id: key }))));
    };
    show(el("h1", { text: title }), el("div", { class: "toolbar" }, filterBox((v) => { needle = v; draw(); }, needle)), holder);
    every(3000, async () => {
      try { data = await getJson("/api/v1/console/objects"); } catch (err) { clearInterval(timer); failed(err); return; }
      draw();
    });
  }

  // --- the sandbox page: live terminal, recent commands, files, stop ---------------------------

  async function sandboxPage(id, session) {
    let info;
    try { info = await getJson(`/api/v1/console/sandboxes/${encodeURIComponent(id)}`); } catch (err) { failed(err); return; }
    const sb = info.sandbox;
    session = session || (info.sessions[0] && info.sessions[0].name) || "default";
    const status = el("span", { id: "attach-status", class: "muted", text: "connecting…" });
    const takeBtn = el("button", { id: "takeover", type: "button", text: "Take over (type)" });
    const ctrlC = el("button", { id: "ctrl-c", type: "button", text: "Ctrl-C", disabled: true });
    const stopBtn = el("button", { id: "stop", type: "button", class: "danger", text: "Stop sandbox" });
    const sessionSel = el("select", { id: "session" }, [...new Set([session, ...info.sessions.map((s) => s.name)])].map((n) =>
      el("option", { value: n, text: n, selected: n === session })));
    sessionSel.addEventListener("change", () => { location.hash = `#/sandbox/${encodeURIComponent(id)}?session=${encodeURIComponent(sessionSel.value)}`; });
    const recentBox = el("div", { id: "recent" });
    const filesBox = el("div", { id: "files" });
    const message = el("div", { id: "message" });
    const termBox = el("div", { id: "terminal" });
    show(
      el("h1", {}, "Sandbox ", el("span", { id: "sandbox-id", text: sb.id })),
      table([["", (r) => r[0]], ["", (r) => r[1]]], [
        ["image", sb.what], ["runtime", sb.runtime || ""], ["worker", sb.worker_id], ["owner", sb.owner],
        ["age", ago(sb.created)], ["idle", ago(sb.last_used)]], {}),
      el("div", { class: "toolbar" }, "session", sessionSel, takeBtn, ctrlC, status, el("span", { style: "flex:1" }), stopBtn),
      message,
      el("div", { class: "grid2" },
        el("div", {}, termBox),
        el("div", {}, el("h2", { text: "Recent commands" }), recentBox)),
      el("h2", { text: "Files" }), filesBox);

    const recent = [];
    const drawRecent = () => {
      recentBox.replaceChildren(table([
        ["command", (c) => c.cmd, "wrap"], ["exit", (c) => (c.exit_code === null || c.exit_code === undefined ? (c.duration === undefined ? "running" : "–") : c.exit_code)],
        ["took", (c) => (c.duration === undefined || c.duration === null ? "" : fmt(c.duration, 2) + "s")], ["when", (c) => ago(c.started) + " ago"],
      ], recent.slice(-30).reverse(), { id: "recent-table", empty: "no commands yet" }));
    };

    // the terminal: watch by default; typing only after an explicit take-over
    const term = new Terminal({ convertEol: true, cursorBlink: true, fontSize: 13, scrollback: 5000, theme: { background: "#000000" } });
    term.open(termBox);
    window.rockConsole = { term, text: () => { const b = term.buffer.active; const out = []; for (let i = 0; i < b.length; i++) { const l = b.getLine(i); if (l.isWrapped && out.length) out[out.length - 1] += l.translateToString(true); else out.push(l.translateToString(true)); } return out.join("\n"); } };
    const proto = ["rock-env"];
    if (token()) proto.push("bearer." + btoa(unescape(encodeURIComponent(token()))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/console/sandboxes/${encodeURIComponent(id)}/attach?session=${encodeURIComponent(session)}`, proto);
    cleanup.push(() => { ws.close(); term.dispose(); });
    let taken = false, line = "";
    const setTaken = (on) => {
      taken = on;
      takeBtn.textContent = on ? "Release (watch only)" : "Take over (type)";
      takeBtn.classList.toggle("on", on);
      ctrlC.disabled = !on;
      status.textContent = on ? "you control this session: type a command and press Enter" : "watching";
      if (on) term.focus();
    };
    takeBtn.addEventListener("click", () => {
      if (!taken && !confirm("Take over this session? Commands you type run in it, next to the agent's.")) return;
      ws.send(JSON.stringify({ type: taken ? "release" : "takeover" }));
    });
    ctrlC.addEventListener("click", () => ws.send(JSON.stringify({ type: "interrupt" })));
    term.onData((data) => {
      if (!taken) { status.textContent = "watching only: press “Take over” to type"; return; }
      for (const ch of data) {
        if (ch === "\r") {
          term.write("\r\x1b[2K");
          if (line.trim()) ws.send(JSON.stringify({ type: "input", line }));
          line = "";
        } else if (ch === "\x7f" || ch === "\b") {
          if (line) { line = line.slice(0, -1); term.write("\b \b"); }
        } else if (ch === "\x03") {
          ws.send(JSON.stringify({ type: "interrupt" }));
        } else if (ch >= " ") {
          line += ch;
          term.write(ch);
        }
      }
    });
    ws.addEventListener("open", () => { status.textContent = "watching"; });
    ws.addEventListener("close", (ev) => {
      status.textContent = "detached" + (ev.code !== 1000 && ev.code !== 1005 ? ` (code ${ev.code})` : "");
      status.className = "bad";
    });
    ws.addEventListener("message", (ev) => {
      const msg = JSON.parse(ev.data);
      switch (msg.event) {
        case "hello":
          recent.push(...msg.recent);
          if (msg.current) { recent.push(msg.current); term.write(`\x1b[36m$ ${msg.current.cmd}\x1b[0m\r\n`); }
          term.write(`\x1b[90m[attached to session ${msg.session}: watching]\x1b[0m\r\n`);
          drawRecent();
          break;
        case "command":
          recent.push({ cmd: msg.cmd, started: Date.now() / 1000 });
          term.write(`\x1b[${msg.by === "console" ? "33" : "36"}m$ ${msg.cmd}\x1b[0m${msg.by === "console" ? "" : "  \x1b[90m(agent/API)\x1b[0m"}\r\n`);
          drawRecent();
          break;
        case "output":
          term.write(msg.text);
          break;
        case "exit": {
          const last = recent[recent.length - 1];
          if (last) Object.assign(last, { exit_code: msg.exit_code, duration: msg.duration, timed_out: msg.timed_out });
          term.write(`\x1b[90m[exit ${msg.exit_code === undefined ? "?" : msg.exit_code}${msg.timed_out ? ", timed out" : ""}]\x1b[0m\r\n`);
          if (taken && line) term.write(line);
          drawRecent();
          break;
        }
        case "takeover": setTaken(true); break;
        case "release": setTaken(false); break;
        case "error": message.replaceChildren(banner(`${msg.error}: ${msg.message}`)); break;
      }
    });

    stopBtn.addEventListener("click", async () => {
      if (!confirm(`Stop sandbox ${id}? Its processes and files are gone after this.`)) return;
      try {
        await api(`/api/v1/console/sandboxes/${encodeURIComponent(id)}/stop`, { method: "POST" });
        message.replaceChildren(el("div", { class: "ok", id: "stopped", text: `sandbox ${id} stopped` }));
        ws.close();
        const back = setTimeout(() => { location.hash = "#/sandboxes"; }, 1500);
        cleanup.push(() => clearTimeout(back));
      } catch (err) { message.replaceChildren(banner(err.message)); }
    });

    // files: browse and download
    const browse = async (path) => {
      let entries;
      try { entries = await (await api(`/api/v1/console/sandboxes/${encodeURIComponent(id)}/dir?path=${encodeURIComponent(path)}`)).json(); }
      catch (err) { filesBox.replaceChildren(banner(err.message)); return; }
      const pathInput = el("input", { id: "path", value: path, size: 50 });
      pathInput.addEventListener("keydown", (ev) => { if (ev.key === "Enter") browse(pathInput.value); });
      const parent = path.replace(/\/+$/, "").replace(/\/[^/]*$/, "") || "/";
      entries.sort((a, b) => (a.type === "dir" ? 0 : 1) - (b.type === "dir" ? 0 : 1) || a.name.localeCompare(b.name));
      filesBox.replaceChildren(
        el("div", { class: "toolbar" }, pathInput, el("button", { type: "button", text: "Go", onclick: () => browse(pathInput.value) }),
          el("button", { type: "button", text: "Up", onclick: () => browse(parent) })),
        table([
          ["name", (f) => f.type === "dir"
            ? el("a", { href: "#", class: "dir", text: f.name + "/", onclick: (ev) => { ev.preventDefault(); browse(f.path); } })
            : el("a", { href: "#", class: "file", text: f.name, onclick: (ev) => { ev.preventDefault(); download(f.path, f.name); } })],
          ["type", (f) => f.type], ["size", (f) => f.size], ["modified", (f) => ago(f.mtime) + " ago"],
        ], entries, { id: "files-table", empty: "empty directory" }));
    };
    const download = async (path, name) => {
      try {
        const blob = await (await api(`/api/v1/console/sandboxes/${encodeURIComponent(id)}/file?path=${encodeURIComponent(path)}`)).blob();
        const url = URL.createObjectURL(blob);
        const a = el("a", { href: url, download: name });
        document.body.append(a); a.click(); a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (err) { message.replaceChildren(banner(err.message)); }
    };
    browse(info.config.workdir || "/");
    drawRecent();
  }

  // --- the env page: follows an episode ---------------------------------------------------------

  function envPage(id, vecIndex) {
    const isVec = vecIndex !== undefined;
    const picker = isVec ? el("input", { type: "number", id: "sub-env", min: 0, value: vecIndex, style: "width:90px" }) : null;
    if (picker) picker.addEventListener("change", () => { location.hash = `#/vec/${encodeURIComponent(id)}?i=${encodeURIComponent(picker.value)}`; });
    show(el("h1", {}, isVec ? "Vector env " : "Env ", el("span", { text: id })),
      isVec ? el("div", { class: "toolbar" }, "sub-env", picker) : null,
      el("div", { id: "env" }, el("p", { class: "muted", text: "Loading…" })));
    const url = isVec ? `/api/v1/console/vecs/${encodeURIComponent(id)}?index=${encodeURIComponent(vecIndex)}` : `/api/v1/console/envs/${encodeURIComponent(id)}`;
    every(1000, async () => {
      let data;
      try { data = await getJson(url); } catch (err) { clearInterval(timer); failed(err); return; }
      const h = data.history, e = data.env;
      const obs = typeof h.observation === "string" ? h.observation : JSON.stringify(h.observation, null, 2);
      document.getElementById("env").replaceChildren(
        table([["", (r) => r[0]], ["", (r) => r[1]]], [
          ["env id", e.what], ...(isVec ? [["sub-envs", e.size]] : []), ["worker", e.worker_id], ["owner", e.owner], ["age", ago(e.created)], ["idle", ago(e.last_used)],
          ["episode", isVec ? "–" : h.episode], ["step", h.step], ["return", fmt(h.episode_return, 3)], ["done", h.done ? "yes" : "no"],
        ], { id: "env-info" }),
        el("div", { class: "grid2" },
          el("div", {}, el("h2", { text: "Current observation" }), el("pre", { class: "obs", id: "observation", text: h.updated ? obs : "(not reset yet)" })),
          el("div", {}, el("h2", { text: "Last actions and rewards" }),
            table([["step", (s) => s.step], ["action", (s) => s.action === null ? "(none)" : s.action, "wrap"], ["reward", (s) => fmt(s.reward, 3)],
              ["end", (s) => (s.terminated ? "terminated" : s.truncated ? "truncated" : "")]],
            h.steps.slice().reverse(), { id: "steps", empty: "no steps yet" }))));
    });
  }

  // --- env hub ------------------------------------------------------------------------------------

  async function hubList() {
    let data;
    try { data = await getJson("/api/v1/hub"); } catch (err) { failed(err); return; }
    let needle = "";
    const holder = el("div");
    const draw = () => holder.replaceChildren(table([
      ["name", (s) => el("a", { href: `#/hub/${encodeURIComponent(s.name)}`, text: s.name })],
      ["latest", (s) => "v" + s.latest], ["versions", (s) => s.versions.length], ["env / entry point", (s) => s.env || s.entry_point || ""],
      ["tags", (s) => s.tags.join(", ")], ["description", (s) => s.description, "wrap"], ["pushed", (s) => ago(s.pushed_at) + " ago"],
    ], data.envs.filter((s) => !needle || [s.name, s.description, s.tags.join(" ")].join(" ").toLowerCase().includes(needle.toLowerCase())),
    { id: "hub", empty: "no specs pushed yet: rock-env hub push SPEC.yaml" }));
    show(el("h1", { text: "Env hub" }), el("p", { class: "muted", text: "Shared env definitions: rock.make(\"hub:NAME-vN\")." }),
      el("div", { class: "toolbar" }, filterBox((v) => { needle = v; draw(); })), holder);
    draw();
  }

  async function hubEntry(name) {
    let data;
    try { data = await getJson(`/api/v1/hub/${encodeURIComponent(name)}`); } catch (err) { failed(err); return; }
    show(el("h1", {}, "Env hub: ", el("span", { text: data.name })),
      ...data.versions.map((v) => el("div", { class: "card", style: "margin-bottom:12px" },
        el("h2", { text: v.id }),
        table([["", (r) => r[0]], ["", (r) => r[1], "wrap"]], [
          ["description", v.spec.description], ["tags", (v.spec.tags || []).join(", ")], ["env", v.spec.env || ""],
          ["entry point", v.resolved ? v.resolved.entry_point : v.spec.entry_point || ""], ["runs", v.spec.local ? "locally or on the server" : "on the server"],
          ["pushed", `${ago(v.pushed_at)} ago by ${v.pushed_by}`], ["digest", v.digest],
        ], {}),
        el("pre", { class: "obs", text: JSON.stringify(v.spec, null, 2) }))));
  }

  // --- routing ------------------------------------------------------------------------------------

  function route() {
    clearInterval(timer);
    for (const fn of cleanup.splice(0)) { try { fn(); } catch (e) { /* already closed */ } }
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    document.getElementById("logout").hidden = !token();
    for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + (parts[0] || ""));
    if (!parts.length) return overview();
    if (parts[0] === "envs") return listPage("Envs", [["Envs", "envs", "env"], ["Vector envs", "vecs", "vec"]]);
    if (parts[0] === "sandboxes") return listPage("Sandboxes", [["Sandboxes", "sandboxes", "sandbox"]]);
    if (parts[0] === "sandbox" && parts[1]) return sandboxPage(parts[1], params.get("session"));
    if (parts[0] === "env" && parts[1]) return envPage(parts[1]);
    if (parts[0] === "vec" && parts[1]) return envPage(parts[1], Math.max(0, parseInt(params.get("i") || "0", 10) || 0));
    if (parts[0] === "hub" && parts[1]) return hubEntry(parts[1]);
    if (parts[0] === "hub") return hubList();
    show(banner("no such page: " + hash));
  }

  document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); route(); });
  window.addEventListener("hashchange", route);
  route();
})();
