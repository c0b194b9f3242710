// The sweep page: a leaderboard, a parallel-coordinates plot and one scatter per parameter, all
// redrawn from the sweep's JSON, polled every 2 s while the sweep runs.
(function () {
  "use strict";
  const root = document.getElementById("sweep");
  const jobBase = root.dataset.jobUrl;
  const POLL_MS = 2000;
  const ACTIVE = ["queued", "running"];

  function text(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
    return String(value);
  }

  function isLog(data, name) {
    const rule = data.search && data.search.space && data.search.space[name];
    if (rule && rule.log) return true;
    const values = data.grid && data.grid[name];
    if (!values || values.some((v) => typeof v !== "number" || v <= 0)) return false;
    return Math.max(...values) / Math.min(...values) >= 100;  // a grid spanning decades reads best on a log axis
  }

  function renderStatus(data) {
    const badge = document.getElementById("status-badge");
    badge.textContent = data.status;
    badge.className = "status status-" + data.status;
    document.getElementById("progress-bar").style.width = Math.round(data.progress * 100) + "%";
    document.getElementById("progress-text").textContent = data.trials_ended + " / " + data.trials_total + " trials ended";
    const error = document.getElementById("sweep-error");
    error.hidden = !data.error;
    error.textContent = data.error || "";
    document.getElementById("train-best").disabled = !data.best_job;
    const abort = document.getElementById("abort-form");
    if (abort && ACTIVE.indexOf(data.status) < 0) abort.style.display = "none";
  }

  function renderLeaderboard(data) {
    const body = document.querySelector("#leaderboard tbody");
    const bestId = data.best_job && data.best_job.id;
    body.replaceChildren(...data.jobs.map((job) => {
      const row = document.createElement("tr");
      if (job.id === bestId) row.className = "best";
      const cells = [
        job.id === bestId ? "★ " + job.number : String(job.number),
        null,
        job.status + (job.stop_reason ? " (" + job.stop_reason.replace("_", " ") + ")" : ""),
        text(job.epoch),
        ...data.params.map((name) => text(job.params[name])),
        text(job.value),
      ];
      cells.forEach((value, i) => {
        const cell = document.createElement("td");
        if (i === 1) {
          const link = document.createElement("a");
          link.href = jobBase + job.id + "/";
          link.textContent = job.name;
          cell.appendChild(link);
        } else if (i === 2) {
          const badge = document.createElement("span");
          badge.className = "status status-" + job.status;
          badge.textContent = value;
          cell.appendChild(badge);
        } else {
          cell.textContent = value;
        }
        row.appendChild(cell);
      });
      return row;
    }));
  }

  // Every choice the sweep may try gets its place on an axis, tried yet or not.
  function choicesOf(data, name, values) {
    const rule = data.search && data.search.space && data.search.space[name];
    const declared = (rule && rule.choices) || (data.grid && data.grid[name]) || [];
    return Array.from(new Set(declared.concat(values).map(String)));
  }

  function dimension(data, name, jobs) {
    const values = jobs.map((job) => job.params[name]);
    if (values.every((v) => typeof v === "number")) {
      if (isLog(data, name)) return {label: "log10 " + name, values: values.map((v) => Math.log10(v))};
      return {label: name, values: values};
    }
    const choices = choicesOf(data, name, values);
    return {label: name, values: values.map((v) => choices.indexOf(String(v))),
            tickvals: choices.map((_, i) => i), ticktext: choices, range: [0, Math.max(choices.length - 1, 1)]};
  }

  function renderParcoords(data, scored) {
    const metric = scored.map((job) => job.value);
    const dimensions = data.params.map((name) => dimension(data, name, scored));
    dimensions.push({label: data.metric, values: metric});
    const reverse = data.mode === "min";
    Plotly.react("parcoords", [{
      type: "parcoords",
      line: {color: metric, colorscale: "Viridis", reversescale: reverse, showscale: true,
             colorbar: {title: {text: data.metric}}},
      dimensions: dimensions,
    }], {margin: {l: 70, r: 70, t: 50, b: 30}}, {displaylogo: false, responsive: true});
  }

  function renderScatters(data, scored) {
    const holder = document.getElementById("scatters");
    const bestId = data.best_job && data.best_job.id;
    // Every chart's box first, then the drawing: a chart drawn before its neighbours exist would
    // keep the width of a grid that had one column.
    const charts = data.params.map((name) => {
      let chart = document.getElementById("scatter-" + name);
      if (!chart) {
        chart = document.createElement("div");
        chart.id = "scatter-" + name;
        chart.className = "chart scatter";
        holder.appendChild(chart);
      }
      return chart;
    });
    data.params.forEach((name, i) => {
      const chart = charts[i];
      const best = scored.filter((job) => job.id === bestId);
      const numeric = scored.every((job) => typeof job.params[name] === "number");
      const axis = numeric ? {title: {text: name}, type: isLog(data, name) ? "log" : "linear"}
        : {title: {text: name}, type: "category", categoryorder: "array",
           categoryarray: choicesOf(data, name, scored.map((job) => job.params[name]))};
      Plotly.react(chart, [
        {type: "scatter", mode: "markers", name: "trials", x: scored.map((job) => job.params[name]),
         y: scored.map((job) => job.value), text: scored.map((job) => job.name),
         marker: {size: 9, color: scored.map((job) => (job.status === "done" ? "#3b6fd8" : "#aab3c5"))}},
        {type: "scatter", mode: "markers", name: "best", x: best.map((job) => job.params[name]),
         y: best.map((job) => job.value), text: best.map((job) => job.name),
         marker: {size: 18, symbol: "star", color: "#f0a500", line: {color: "#7a5200", width: 1}}},
      ], {xaxis: axis, yaxis: {title: {text: data.metric}}, margin: {l: 60, r: 20, t: 20, b: 50}, showlegend: false},
      {displaylogo: false, responsive: true});
    });
  }

  function render(data) {
    renderStatus(data);
    renderLeaderboard(data);
    const scored = data.jobs.filter((job) => job.value !== null && job.value !== undefined);
    renderParcoords(data, scored);
    renderScatters(data, scored);
  }

  function poll() {
    fetch(root.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((data) => {
        render(data);
        if (ACTIVE.indexOf(data.status) >= 0) setTimeout(poll, POLL_MS);
      })
      .catch(() => setTimeout(poll, POLL_MS * 2));
  }

  const initial = JSON.parse(document.getElementById("sweep-data").textContent);
  render(initial);
  if (ACTIVE.indexOf(initial.status) >= 0) setTimeout(poll, POLL_MS);
})();
