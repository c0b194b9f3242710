// Job page: a long run's curves come first as a cut that keeps their shape (the metrics API's
// max_points), then grow as the server pushes newer points (server-sent events), no polling, no reload.
(function () {
  "use strict";
  const panel = document.getElementById("job-status");
  if (!panel || !window.Plotly) return;
  const lossEl = document.getElementById("loss-chart");
  const lrEl = document.getElementById("lr-chart");
  const systemEl = document.getElementById("system-chart");
  // The worker's `system` points: CPU and GPU in percent on the left axis, memory in MB on the right.
  const SYSTEM = { cpu_percent: 0, memory_mb: 1, gpu_utilization: 2, gpu_memory_mb: 3 };
  // The task's live metrics (its `metrics`: accuracy; mean IoU and pixel accuracy), each a fraction
  // on the right axis, after the two losses.
  const METRICS = JSON.parse(document.getElementById("job-metrics").textContent);
  const COLOURS = ["#16794c", "#9c36b5", "#0c8599", "#e67700"];
  const PART_COLOURS = ["#74c0fc", "#4263eb", "#1864ab"];
  // The parts of the training loss the task reports (detection: heatmap, size, offset), dotted
  // on the loss axis after the metrics.
  const LOSS_PARTS = JSON.parse(document.getElementById("job-loss-parts").textContent);
  const TRACES = { "train/loss": 0, "val/loss": 1 };
  METRICS.forEach((m, i) => { TRACES["val/" + m.name] = 2 + i; });
  LOSS_PARTS.forEach((name, i) => { TRACES["train/" + name] = 2 + METRICS.length + i; });
  const CURVES = Object.keys(TRACES).length;
  const traceIndexes = [...Array(CURVES).keys()];
  const empty = () => ({ x: traceIndexes.map(() => []), y: traceIndexes.map(() => []) });
  const layout = { margin: { t: 10, r: 60, b: 45, l: 60 }, legend: { orientation: "h", y: 1.12 },
    xaxis: { title: { text: "Epoch" }, rangemode: "tozero" }, yaxis: { title: { text: "Loss" }, rangemode: "tozero" },
    yaxis2: { title: { text: METRICS.map((m) => m.label).join(" / ") }, overlaying: "y", side: "right",
      autorange: false, range: [0, 1.02], dtick: 0.2, tickformat: ".0%", showgrid: false } };
  const config = { displaylogo: false, responsive: true };
  Plotly.newPlot(lossEl, [
    { name: "train loss", x: [], y: [], mode: "lines", line: { color: "#2b59c3" } },
    { name: "val loss", x: [], y: [], mode: "lines+markers", line: { color: "#e8590c" } },
    ...METRICS.map((m, i) => ({ name: "val " + m.in_sentence, x: [], y: [], mode: "lines+markers", yaxis: "y2",
      line: { color: COLOURS[i % COLOURS.length] } })),
    ...LOSS_PARTS.map((name, i) => ({ name: "train " + name.replace(/^loss_/, "") + " loss", x: [], y: [],
      mode: "lines", line: { color: PART_COLOURS[i % PART_COLOURS.length], dash: "dot", width: 1.5 } })),
  ], layout, config);
  Plotly.newPlot(lrEl, [{ name: "learning rate", x: [], y: [], mode: "lines", line: { color: "#7048e8" } }],
    { margin: { t: 10, r: 60, b: 45, l: 60 }, xaxis: { title: { text: "Epoch" }, rangemode: "tozero" },
      yaxis: { title: { text: "Learning rate" }, type: "log", exponentformat: "power" } }, config);
  Plotly.newPlot(systemEl, [
    // Markers too: a job shorter than the sampling interval has one sample, which a line alone does not show.
    { name: "CPU %", x: [], y: [], mode: "lines+markers", marker: { size: 4 }, line: { color: "#2b59c3" } },
    { name: "memory MB", x: [], y: [], mode: "lines+markers", marker: { size: 4 }, yaxis: "y2", line: { color: "#9c36b5" } },
    { name: "GPU %", x: [], y: [], mode: "lines+markers", marker: { size: 4 }, line: { color: "#16794c" } },
    { name: "GPU memory MB", x: [], y: [], mode: "lines+markers", marker: { size: 4 }, yaxis: "y2",
      line: { color: "#e8590c", dash: "dot" } },
  ], { margin: { t: 10, r: 70, b: 45, l: 60 }, legend: { orientation: "h", y: 1.15 },
    xaxis: { title: { text: "Epoch" }, rangemode: "tozero" }, yaxis: { title: { text: "%" }, rangemode: "tozero" },
    yaxis2: { title: { text: "MB" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } }, config);

  let pending = [];
  let scheduled = false;
  function flush() {
    scheduled = false;
    const loss = empty();
    const lr = { x: [[]], y: [[]] };
    const system = { x: [[], [], [], []], y: [[], [], [], []] };
    for (const p of pending) {
      if (p.split === "system") {
        const s = SYSTEM[p.name];
        if (s !== undefined) { system.x[s].push(p.epoch); system.y[s].push(p.value); }
        continue;
      }
      if (p.name === "lr") { lr.x[0].push(p.epoch); lr.y[0].push(p.value); continue; }
      const i = TRACES[p.split + "/" + p.name];
      if (i === undefined) continue;
      loss.x[i].push(p.epoch); loss.y[i].push(p.value);
    }
    pending = [];
    Plotly.extendTraces(lossEl, loss, traceIndexes);
    Plotly.extendTraces(lrEl, lr, [0]);
    Plotly.extendTraces(systemEl, system, [0, 1, 2, 3]);
    window.systemPointsShown = (window.systemPointsShown || 0) + system.x.flat().length;
    window.jobPointsShown = (window.jobPointsShown || 0) + loss.x.flat().length + lr.x[0].length;
  }
  function addPoint(p) {
    pending.push(p);
    if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
  }

  const fmt = (s) => {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  };
  const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(2) + "%");
  const text = (id, value) => { const el = document.getElementById(id); if (el) el.textContent = value; };

  const jobUrl = panel.dataset.events.replace(/events\/$/, "");
  // The log's lines come with the stream: its first `log` event is the tail (it replaces what the
  // page shows), each later one only the lines appended since. No request per status event.
  const LOG_LINES = 40;
  const logEl = document.getElementById("log-tail");
  let logLines = logEl.textContent.split("\n").filter((line) => line !== "");
  function showLog(d) {
    logLines = (d.tail ? d.lines : logLines.concat(d.lines)).slice(-LOG_LINES);
    logEl.textContent = logLines.map((line) => line + "\n").join("");
    window.logLinesShown = (window.logLinesShown || 0) + d.lines.length;
  }

  const epochs = JSON.parse(document.getElementById("job-epochs").textContent);
  let initialStatus = panel.dataset.status;
  function showStatus(s) {
    const badge = document.getElementById("status-badge");
    badge.textContent = s.status;
    badge.className = "status status-" + s.status;
    document.getElementById("progress-bar").style.width = Math.round(s.progress * 100) + "%";
    text("progress-text", Math.round(s.progress * 100) + "%");
    const attemptEl = document.getElementById("attempt");
    attemptEl.hidden = !(s.attempt > 1);
    attemptEl.textContent = "attempt " + s.attempt;
    const workerEl = document.getElementById("job-worker");
    workerEl.hidden = !s.worker;
    workerEl.textContent = "worker " + (s.worker || "");
    document.getElementById("taken-back").hidden = !s.stale;
    text("epoch", s.epoch.toFixed(2) + " / " + epochs);
    text("elapsed", fmt(s.elapsed_seconds));
    text("eta", s.status === "running" ? fmt(s.eta_seconds) : "–");
    METRICS.forEach((m) => text(m.id, pct(s.latest && s.latest[m.key])));
    const best = METRICS[0];  // the task's first metric is the one a job is judged by
    if (s.best && s.best[best.key] !== undefined) {
      const named = METRICS.length > 1 ? best.in_sentence + " " : "";
      text("best", named + pct(s.best[best.key]) + " at epoch " + s.best[best.key + "_epoch"].toFixed(2));
    }
    const error = document.getElementById("job-error");
    error.hidden = !s.error;
    error.textContent = s.error || "";
    const snaps = document.getElementById("snapshots");
    if (s.snapshots && s.snapshots.length) {
      snaps.innerHTML = s.snapshots.map((e) => "<li>epoch " + (+e.toFixed(2)) + "</li>").join("");
    }
  }

  // A job taken back after its worker died is queued again, and its points after the snapshot it
  // resumes from are dropped (they are computed again): draw the curves anew from the first point.
  let source = null;
  let attempt = null;
  let lastStatus = initialStatus;
  function restarted(s) {
    const again = (attempt !== null && s.attempt > attempt) || (lastStatus === "running" && s.status === "queued");
    attempt = s.attempt;
    lastStatus = s.status;
    return again;
  }
  // At most this many points per curve on load, minima and maxima kept: a long run draws at once.
  const MAX_POINTS = 2000;
  let loads = 0;
  function load() {
    const mine = ++loads;  // a slow answer for a load that a restart has replaced is dropped
    fetch(jobUrl + "metrics/?max_points=" + MAX_POINTS, { credentials: "same-origin" })
      .then((r) => { if (!r.ok) throw new Error("metrics " + r.status); return r.json(); })
      .then((d) => {
        if (mine !== loads) return;
        d.points.forEach(addPoint);
        connect(d.cursor);  // the cut's cursor is the job's highest point id: the stream sends only newer ones
      })
      .catch(() => { if (mine === loads) setTimeout(load, 2000); });
  }
  function connect(cursor) {
    source = new EventSource(panel.dataset.events + "?after=" + cursor);
    source.addEventListener("metric", (e) => addPoint(JSON.parse(e.data)));
    source.addEventListener("log", (e) => showLog(JSON.parse(e.data)));
    source.addEventListener("status", (e) => {
      const s = JSON.parse(e.data);
      if (restarted(s)) {
        source.close();
        pending = [];
        Plotly.restyle(lossEl, empty(), traceIndexes);
        Plotly.restyle(lrEl, { x: [[]], y: [[]] }, [0]);
        Plotly.restyle(systemEl, { x: [[], [], [], []], y: [[], [], [], []] }, [0, 1, 2, 3]);
        window.jobRedraws = (window.jobRedraws || 0) + 1;
        window.jobPointsShown = 0;
        load();  // the cut anew (the dropped points are gone from it), then the stream after its cursor
      }
      showStatus(s);
    });
    source.addEventListener("end", (e) => {
      source.close();
      const status = JSON.parse(e.data).status;
      // The buttons differ for a finished job: reload once so they match, the curves come back from the cut.
      if (initialStatus === "queued" || initialStatus === "running") {
        initialStatus = status;
        setTimeout(() => window.location.reload(), 1500);
      }
    });
  }
  load();
})();
