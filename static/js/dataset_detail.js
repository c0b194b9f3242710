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
    const traces = ["train", "val", "test"]
      .filter((s) => counts[s] && Object.values(counts[s]).some((n) => n > 0))
      .map((s) => ({ type: "bar", name: names[s], x: classes, y: classes.map((c) => counts[s][c] || 0) }));
    Plotly.newPlot(el, traces, {
      barmode: "stack", margin: { t: 10, r: 10, b: 60, l: 50 }, height: 300,
      xaxis: { title: { text: "Class" }, type: "category" }, yaxis: { title: { text: "Images" } },
      legend: { orientation: "h", y: 1.12 },
    }, { displayModeBar: false, responsive: true });
  }

  if (panel.dataset.status === "queued" || panel.dataset.status === "running") poll();
  else chart();
})();
