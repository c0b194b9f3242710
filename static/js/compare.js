// Compare page: the jobs' curves overlaid, one chart per curve, one colour per job (the table's),
// smoothed with TensorBoard's debiased EMA (raw kept faint), and running jobs growing live: one
// EventSource per running job, after the cursor the compare API gave, appended with extendTraces.
(function () {
  "use strict";
  const root = document.getElementById("compare");
  if (!root || !window.Plotly) return;
  // The charts (compare.selectors.compare_charts): the losses, each val metric of the jobs' tasks, lr.
  const CHARTS = JSON.parse(document.getElementById("compare-charts").textContent);
  const CURVES = CHARTS.map((c) => c.key);
  const TITLES = Object.fromEntries(CHARTS.map((c) => [c.key, c.axis]));
  const FRACTIONS = new Set(CHARTS.filter((c) => c.fraction).map((c) => c.key));
  const AXES = { epoch: "Epoch", step: "Step", time: "Seconds since the job's first point" };
  const charts = Object.fromEntries(CURVES.map((c) => [c, document.getElementById("chart-" + c)]));
  const colours = Array.from(root.querySelectorAll(".legend .swatch")).map((s) => s.style.backgroundColor);
  const axisSelect = document.getElementById("x-axis");
  const slider = document.getElementById("smoothing");
  const sliderValue = document.getElementById("smoothing-value");
  const config = { displaylogo: false, responsive: true };
  let jobs = [];
  let sources = [];
  let smoothers = {};  // curve -> [per job: the EMA's running state], so live points go on smoothing
  let loads = 0;

  // TensorBoard's smoothing: an exponential moving average, debiased so that the first points are
  // not pulled towards zero. Non-finite values pass through as they are.
  function smoother(weight) {
    let last = 0, count = 0;
    return (y) => {
      if (!Number.isFinite(y) || weight <= 0) return y;
      last = last * weight + (1 - weight) * y;
      count += 1;
      return last / (1 - Math.pow(weight, count));
    };
  }
  const weight = () => Math.min(Math.max(parseFloat(slider.value) || 0, 0), 0.999);
  const mode = (curve) => (curve.startsWith("val_") ? "lines+markers" : "lines");

  function layout(curve) {
    const yaxis = { title: { text: TITLES[curve] } };
    if (curve === "lr") Object.assign(yaxis, { type: "log", exponentformat: "power" });
    if (FRACTIONS.has(curve)) Object.assign(yaxis, { tickformat: ".0%", rangemode: "tozero" });
    return { margin: { t: 10, r: 20, b: 45, l: 65 }, showlegend: false, hovermode: "closest", yaxis,
      xaxis: { title: { text: AXES[axisSelect.value] }, rangemode: "tozero" } };
  }

  // Trace 2i is job i's raw curve (faint, no hover), trace 2i+1 its smoothed one.
  function draw() {
    smoothers = {};
    for (const curve of CURVES) {
      smoothers[curve] = jobs.map(() => smoother(weight()));
      const traces = jobs.flatMap((job, i) => {
        const pairs = job.series[curve] || [];
        const x = pairs.map((p) => p[0]), y = pairs.map((p) => p[1]);
        const line = { color: colours[i], width: 1.5 };
        return [
          { x, y, name: `#${job.id} ${job.name}`, mode: mode(curve), line, marker: { size: 4 }, opacity: 0.25,
            hoverinfo: "skip", legendgroup: String(job.id) },
          { x: x.slice(), y: y.map(smoothers[curve][i]), name: `#${job.id} ${job.name}`, mode: mode(curve), line,
            marker: { size: 4 }, legendgroup: String(job.id) },
        ];
      });
      Plotly.react(charts[curve], traces, layout(curve), config);
    }
  }

  // The slider redraws every smoothed trace from the raw one Plotly holds (live points included).
  function resmooth() {
    sliderValue.value = weight().toFixed(2);
    for (const curve of CURVES) {
      const el = charts[curve];
      smoothers[curve] = jobs.map(() => smoother(weight()));
      const ys = jobs.map((_, i) => el.data[2 * i].y.map(smoothers[curve][i]));
      Plotly.restyle(el, { y: ys }, jobs.map((_, i) => 2 * i + 1));
    }
  }

  function xOf(point, job) {
    const axis = axisSelect.value;
    if (axis !== "time") return point[axis];
    if (job.time_origin === null) job.time_origin = point.time;  // a job that had no point yet
    return Math.round((point.time - job.time_origin) * 1000) / 1000;
  }

  let pending = [];
  let scheduled = false;
  function flush() {
    scheduled = false;
    const batches = {};
    for (const { job, i, curve, point } of pending) {
      const b = (batches[curve] = batches[curve] || {});
      const t = (b[i] = b[i] || { x: [], y: [], smooth: [] });
      t.x.push(xOf(point, job)); t.y.push(point.value); t.smooth.push(smoothers[curve][i](point.value));
    }
    pending = [];
    for (const [curve, perJob] of Object.entries(batches)) {
      const idx = Object.keys(perJob).map(Number);
      const x = [], y = [], traces = [];
      for (const i of idx) {
        x.push(perJob[i].x, perJob[i].x.slice()); y.push(perJob[i].y, perJob[i].smooth);
        traces.push(2 * i, 2 * i + 1);
      }
      Plotly.extendTraces(charts[curve], { x, y }, traces);
    }
    window.comparePointsAdded = (window.comparePointsAdded || 0) + 1;
  }

  function onPoint(job, i, point) {
    const curve = point.name === "lr" ? "lr" : point.split + "_" + point.name;
    if (!charts[curve]) return;
    pending.push({ job, i, curve, point });
    if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
  }

  function showStatus(job, status) {
    const badge = document.querySelector('#compare-table tr[data-job="' + job.id + '"] [data-status]');
    if (badge) { badge.textContent = status; badge.className = "status status-" + status; }
  }

  function follow() {
    jobs.forEach((job, i) => {
      if (job.status !== "queued" && job.status !== "running") return;
      const source = new EventSource(job.events + "?after=" + job.cursor);
      source.addEventListener("metric", (e) => onPoint(job, i, JSON.parse(e.data)));
      source.addEventListener("status", (e) => {
        const s = JSON.parse(e.data);
        showStatus(job, s.status);
        // A job taken back after its worker died drops the points it computes again: draw anew.
        if ((job.attempt > 0 && s.attempt > job.attempt) || (job.status === "running" && s.status === "queued")) load();
        else job.status = s.status;
      });
      source.addEventListener("end", (e) => { showStatus(job, JSON.parse(e.data).status); source.close(); });
      sources.push(source);
    });
  }

  function load() {
    const mine = ++loads;
    sources.forEach((s) => s.close());
    sources = []; pending = [];
    fetch(root.dataset.api + "&x=" + axisSelect.value, { credentials: "same-origin" })
      .then((r) => { if (!r.ok) throw new Error("compare " + r.status); return r.json(); })
      .then((d) => {
        if (mine !== loads) return;  // the axis changed again meanwhile
        jobs = d.jobs;
        draw();
        follow();
        window.compareReady = true;
      })
      .catch(() => { if (mine === loads) setTimeout(load, 2000); });
  }

  axisSelect.addEventListener("change", () => { window.compareReady = false; load(); });
  slider.addEventListener("input", resmooth);
  load();
})();
