/// The dashboard served at `/`: one self-contained HTML page (no external script, style or font, so it works offline)
/// that follows `/api/v1/events` (server-sent events, one `OpsSnapshot` a second) and redraws: a card per device with
/// its memory bar, launch and request rates, circuit and the actors placed on it; a chart of launches and requests a
/// second and one of mean launch and actor-call latency, over the last five minutes; the actors; the warnings and errors
/// the process logged; in cluster mode every node of the membership table with its status and devices (from the shared
/// table, so any node's page shows the whole cluster). `/?events=N` stops after N updates and marks
/// `<body data-updates="N">` (for a headless browser, which can only dump the page once loading has finished);
/// `/?interval_ms=M` paces the updates. Static text; any thread.
public enum DashboardPage {
    public static let html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>GPUBridge</title>
        <style>
        body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
        header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 20px; align-items: center; }
        header h1 { font-size: 18px; margin: 0; }
        .badge { padding: 2px 8px; border-radius: 10px; font-size: 12px; background: #888; }
        .ready { background: #2e8b57; } .notready { background: #c0392b; }
        main { padding: 16px 20px; display: grid; gap: 16px; }
        section h2 { font-size: 15px; margin: 0 0 8px; }
        .cards { display: flex; flex-wrap: wrap; gap: 12px; }
        .card { background: #fff; border-radius: 6px; padding: 12px; min-width: 260px; box-shadow: 0 1px 2px #0002; }
        .card h3 { margin: 0 0 4px; font-size: 14px; }
        .bar { height: 10px; background: #e3e6ea; border-radius: 5px; overflow: hidden; margin: 4px 0; display: flex; }
        .bar .use { background: #2f6fdb; } .bar .cache { background: #9fbef0; }
        .muted { color: #667; font-size: 12px; }
        table { border-collapse: collapse; background: #fff; width: 100%; }
        td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; font-size: 13px; }
        canvas { background: #fff; border-radius: 6px; width: 100%; height: 180px; }
        ul { margin: 4px 0; padding-left: 18px; }
        </style>
        </head>
        <body>
        <header><h1>GPUBridge</h1><span id="readiness" class="badge">connecting</span>
        <span id="totals" class="muted"></span><span id="updated" class="muted"></span></header>
        <main>
        <section><h2>Devices</h2><div id="devices" class="cards"></div></section>
        <section><h2>Launches and requests a second (up to the last 5 minutes)</h2><canvas id="chart" width="1000" height="180">
        </canvas><div class="muted"><span style="color:#2f6fdb">&#9632;</span> launches/s
        <span style="color:#e67e22">&#9632;</span> requests/s</div></section>
        <section><h2>Mean latency per update, milliseconds</h2><canvas id="latency" width="1000" height="180">
        </canvas><div class="muted"><span style="color:#8e44ad">&#9632;</span> kernel launch (enqueue to end)
        <span style="color:#16a085">&#9632;</span> actor call</div></section>
        <section><h2>Actors</h2><div id="actors" class="muted">none</div></section>
        <section id="cluster-section" hidden><h2>Cluster: every node of the membership table</h2><table><thead><tr>
        <th>node</th><th>status</th><th>last alive</th><th>lease ends</th><th>activations</th><th>calls in flight</th>
        <th>devices (free of total)</th></tr></thead><tbody id="members"></tbody></table></section>
        <section><h2>Recent warnings and errors</h2><div id="errors" class="muted">none</div></section>
        </main>
        <script>
        "use strict";
        const history = [];
        const esc = s => String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\\"":"&quot;","'":"&#39;"}[c]));
        const mib = b => (b / 1048576).toFixed(1) + " MiB";
        const sum = values => values.reduce((n, v) => n + v, 0);
        function rate(key, device) {
          if (history.length < 2) return 0;
          const a = history[history.length - 2], b = history[history.length - 1];
          const dt = (b.t - a.t) / 1000;
          return dt > 0 ? Math.max(0, (b[key][device] || 0) - (a[key][device] || 0)) / dt : 0;
        }
        function render(s) {
          const t = Date.parse(s.time);
          const launches = {}, requests = {};
          for (const d of s.devices) {
            launches[d.id] = d.counters.launches;
            requests[d.id] = d.broker.succeeded + d.broker.failed;
          }
          const actorList = (s.actors && s.actors.actors) || [];
          history.push({t, launches, requests,
            awaited: sum(s.devices.map(d => d.counters.launchesAwaited)),
            launchNs: sum(s.devices.map(d => d.counters.launchNanoseconds)),
            ended: sum(actorList.map(a => a.calls - a.inFlight)),
            callSeconds: sum(actorList.map(a => a.callSeconds))});
          while (history.length > 1 && t - history[0].t > 300000) history.shift();
          const ready = document.getElementById("readiness");
          ready.textContent = s.readiness.ready ? "ready" : "not ready";
          ready.className = "badge " + (s.readiness.ready ? "ready" : "notready");
          ready.title = s.readiness.checks.map(c => c.name + ": " + c.detail).join("\\n");
          const totalLaunches = s.devices.reduce((n, d) => n + d.counters.launches, 0);
          const totalRequests = s.devices.reduce((n, d) => n + d.broker.succeeded + d.broker.failed, 0);
          document.getElementById("totals").innerHTML = "launches <b id=\\"launches-total\\">" + totalLaunches +
            "</b> · requests <b id=\\"requests-total\\">" + totalRequests + "</b>";
          document.getElementById("updated").textContent = "updated " + new Date(t).toLocaleTimeString();
          const actors = (s.actors && s.actors.actors) || [];
          document.getElementById("devices").innerHTML = s.devices.map(d => {
            const use = 100 * d.pool.bytesInUse / d.totalMemory, cache = 100 * (d.pool.bytesReserved - d.pool.bytesInUse) / d.totalMemory;
            const here = actors.filter(a => a.device === d.id);
            return "<div class=\\"card\\" data-device=\\"" + esc(d.id) + "\\"><h3>" + esc(d.id) + " · " + esc(d.name) + "</h3>" +
              "<div class=\\"bar\\"><div class=\\"use\\" style=\\"width:" + use + "%\\"></div><div class=\\"cache\\" style=\\"width:" + cache + "%\\"></div></div>" +
              "<div class=\\"muted\\">" + mib(d.pool.bytesInUse) + " in use, " + mib(d.pool.bytesReserved - d.pool.bytesInUse) +
              " cached, of " + mib(d.totalMemory) + "</div>" +
              "<div>" + rate("launches", d.id).toFixed(1) + " launches/s · " + rate("requests", d.id).toFixed(1) + " requests/s</div>" +
              "<div class=\\"muted\\">circuit " + esc(d.broker.circuit) + " · running " + d.broker.running + " · waiting " + d.broker.waiting +
              (d.lost ? " · <b>lost: " + esc(d.lost) + "</b>" : "") + "</div>" +
              "<ul class=\\"device-actors\\">" + here.map(a => "<li data-actor=\\"" + esc(a.type + "/" + a.key) + "\\">" + esc(a.type) + " / " + esc(a.key) + " · " + a.calls + " calls</li>").join("") + "</ul></div>";
          }).join("");
          document.getElementById("actors").innerHTML = s.actors
            ? "<span id=\\"actors-active\\">" + s.actors.active + "</span> active<table><thead><tr><th>actor</th><th>phase</th>" +
              "<th>device</th><th>activations</th><th>calls</th><th>failed</th><th>in flight</th><th>mean ms</th><th>last call</th>" +
              "</tr></thead><tbody>" +
              actors.map(a => "<tr><td>" + esc(a.type + "/" + a.key) + "</td><td>" + esc(a.phase) + "</td><td>" + esc(a.device || "-") +
                "</td><td>" + a.activations + "</td><td class=\\"calls\\">" + a.calls + "</td><td>" + a.failedCalls + "</td><td>" +
                a.inFlight + "</td><td>" + (a.calls - a.inFlight > 0 ? (1000 * a.callSeconds / (a.calls - a.inFlight)).toFixed(2) : "-") +
                "</td><td>" + (a.lastCall ? esc(new Date(a.lastCall).toLocaleTimeString()) : "-") + "</td></tr>").join("") +
              "</tbody></table>"
            : "this process hosts no actors";
          const section = document.getElementById("cluster-section");
          section.hidden = !s.cluster;
          if (s.cluster) {
            document.getElementById("members").innerHTML = s.cluster.members.map(m =>
              "<tr data-node=\\"" + esc(m.node.host + ":" + m.node.port) + "\\"><td>" + esc(m.node.host + ":" + m.node.port) +
              (m.node.host === s.cluster.node.host && m.node.port === s.cluster.node.port ? " (this node)" : "") +
              "</td><td>" + esc(m.status) + "</td><td>" + esc(new Date(m.iAmAlive).toLocaleTimeString()) + "</td><td>" +
              esc(new Date(m.leaseExpires).toLocaleTimeString()) + "</td><td>" + m.capacity.activations + "</td><td>" +
              m.capacity.callsInFlight + "</td><td>" + m.capacity.devices.map(d =>
                "<div class=\\"member-device\\">" + esc(d.id) + " " + esc(d.name) + ": " + mib(d.freeMemory) + " of " + mib(d.totalMemory) +
                "<div class=\\"bar\\"><div class=\\"use\\" style=\\"width:" + (d.totalMemory > 0 ? 100 * (d.totalMemory - d.freeMemory) / d.totalMemory : 0) +
                "%\\"></div></div></div>").join("") + "</td></tr>").join("");
          }
          const errors = s.errors ? s.errors.entries : [];
          document.getElementById("errors").innerHTML = s.errors
            ? Object.entries(s.errors.counts).map(([level, n]) => esc(level) + " " + n).join(" · ") +
              (errors.length ? "<table><thead><tr><th>time</th><th>level</th><th>source</th><th>message</th></tr></thead><tbody>" +
              errors.map(e => "<tr class=\\"error-entry\\" data-level=\\"" + esc(e.level) + "\\" title=\\"" + esc(e.metadata) + "\\"><td>" +
                esc(new Date(e.time).toLocaleTimeString()) + "</td><td>" + esc(e.level) + "</td><td>" + esc(e.source) + "</td><td>" +
                esc(e.message) + "</td></tr>").join("") + "</tbody></table>" : "none logged")
            : "this process keeps no log of its errors";
          drawCharts();
        }
        function drawCharts() {
          const rates = [], latency = [];
          for (let i = 1; i < history.length; i++) {
            const a = history[i - 1], b = history[i], dt = (b.t - a.t) / 1000;
            const total = (x, k) => sum(Object.values(x[k]));
            rates.push({t: b.t, l: dt > 0 ? (total(b, "launches") - total(a, "launches")) / dt : 0,
                        r: dt > 0 ? (total(b, "requests") - total(a, "requests")) / dt : 0});
            // Mean over the interval: time added over launches (calls) ended; nothing ended, no point.
            const launches = b.awaited - a.awaited, calls = b.ended - a.ended;
            latency.push({t: b.t, l: launches > 0 ? (b.launchNs - a.launchNs) / launches / 1e6 : null,
                          c: calls > 0 ? 1000 * (b.callSeconds - a.callSeconds) / calls : null});
          }
          draw("chart", rates, [["l", "#2f6fdb"], ["r", "#e67e22"]], "/s");
          draw("latency", latency, [["l", "#8e44ad"], ["c", "#16a085"]], " ms");
        }
        function draw(id, points, series, unit) {
          const canvas = document.getElementById(id), g = canvas.getContext("2d");
          const w = canvas.width, h = canvas.height;
          g.clearRect(0, 0, w, h);
          if (!points.length) return;
          const values = points.flatMap(p => series.map(([k]) => p[k])).filter(v => v !== null);
          const top = Math.max(unit === "/s" ? 1 : 0.001, ...values);
          // The x axis spans the history kept (one minute at least, five at most).
          const end = points[points.length - 1].t, span = Math.min(300000, Math.max(60000, end - history[0].t));
          g.fillStyle = "#667"; g.fillText((unit === "/s" ? top.toFixed(0) : top.toPrecision(3)) + unit, 4, 12);
          for (const [key, color] of series) {
            g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
            let drawing = false;
            for (const p of points) {
              if (p[key] === null) { drawing = false; continue; }
              const x = w - (end - p.t) / span * w, y = h - 4 - (p[key] / top) * (h - 20);
              drawing ? g.lineTo(x, y) : g.moveTo(x, y);
              drawing = true;
            }
            g.stroke();
          }
        }
        function connect() {
          // ?events=N stops after N updates (a headless browser can then finish loading); ?interval_ms=M paces them.
          const params = new URLSearchParams(location.search), query = new URLSearchParams();
          const limit = parseInt(params.get("events") || "0", 10);
          if (limit > 0) query.set("count", limit);
          if (params.get("interval_ms")) query.set("interval_ms", params.get("interval_ms"));
          const events = new EventSource("api/v1/events" + (limit > 0 || params.get("interval_ms") ? "?" + query : ""));
          let received = 0;
          events.onmessage = e => {
            render(JSON.parse(e.data));
            if (limit > 0 && ++received >= limit) { events.close(); document.body.dataset.updates = received; }
          };
          events.onerror = () => {
            const ready = document.getElementById("readiness");
            ready.textContent = "disconnected"; ready.className = "badge notready";
          };
        }
        connect();
        </script>
        </body>
        </html>
        """
}
