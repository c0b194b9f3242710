// Dataset page: a live progress bar while the ingest runs, the class chart once it is ready.
(function () {
  "use strict";
  const panel = document.getElementById("dataset-status");
  if (!panel) return;

  function poll() {
    fetch(panel.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((d) => {
        const pct = Math.round(d.progress * 100);
        const bar = document.getElementById("progress-bar");
        if (bar) bar.style.width = pct + "%";
        const text = document.getElementById("progress-text");
        if (text) text.textContent = pct + "%";
        const badge = document.getElementById("status-badge");
        badge.textContent = d.status;
        badge.className = "status status-" + d.status;
        if (d.status === "ready" || d.status === "error") window.location.reload();
        else setTimeout(poll, 500);
      })
      .catch(() => setTimeout(poll, 2000));
  }

  function chart() {
    const el = document.getElementById("class-chart");
    const data = document.getElementById("class-counts-data");
    if (!el || !data || !window.Plotly) return;
    const counts = JSON.parse(data.textContent);
    const classes = JSON.parse(document.getElementById("classes-data").textContent);
    const names = { train: "Train", val: "Validation", test: "Test" };
    const colours = { train: "#2b59c3", val: "#e0a526", test: "#3aa981" };  // the accent first
    const traces = ["train", "val", "test"]
      .filter((s) => counts[s] && Object.values(counts[s]).some((n) => n > 0))
      .map((s) => ({ type: "bar", name: names[s], x: classes, y: classes.map((c) => counts[s][c] || 0),
                     marker: { color: colours[s] }, hovertemplate: "%{x}: %{y} " + names[s].toLowerCase() + "<extra></extra>" }));
    const font = getComputedStyle(document.body).fontFamily;
    Plotly.newPlot(el, traces, {
      barmode: "stack", bargap: 0.25, margin: { t: 30, r: 10, b: 50, l: 50 }, height: 300,
      font: { family: font, size: 13, color: "#1d2330" },
      xaxis: { title: { text: "Class" }, type: "category", automargin: true },
      yaxis: { title: { text: "Images" }, gridcolor: "#e3e6ec", rangemode: "tozero" },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", traceorder: "normal" },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    }, { displayModeBar: false, responsive: true });
  }

  if (panel.dataset.status === "queued" || panel.dataset.status === "running") poll();
  else chart();
})();
