// Result pages (evaluation, classify many, compression): progress while the work runs, then the confusion
// matrix as a heatmap, in counts or row-normalised.
(function () {
  "use strict";
  const panel = document.querySelector("[data-result-api]");
  if (!panel) return;
  if (panel.dataset.status === "queued" || panel.dataset.status === "running") {
    const poll = () => fetch(panel.dataset.resultApi, { credentials: "same-origin" }).then((r) => r.json()).then((d) => {
      const bar = document.getElementById("progress-bar");
      if (bar) bar.style.width = Math.round(d.progress * 100) + "%";
      if (d.status === "done" || d.status === "error") window.location.reload();
      else setTimeout(poll, 500);
    }).catch(() => setTimeout(poll, 2000));
    poll();
    return;
  }
  const el = document.getElementById("confusion-chart");
  if (!el || !window.Plotly) return;
  const counts = JSON.parse(document.getElementById("confusion-data").textContent);
  const classes = JSON.parse(document.getElementById("classes-data").textContent);
  const normalised = counts.map((row) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (total ? v / total : 0));
  });
  function draw(normalise) {
    const z = normalise ? normalised : counts;
    const text = z.map((row) => row.map((v) => (normalise ? (v * 100).toFixed(0) + "%" : String(v))));
    Plotly.react(el, [{
      type: "heatmap", z: z, x: classes, y: classes, text: text, texttemplate: classes.length <= 20 ? "%{text}" : "",
      colorscale: [[0, "#f5f8ff"], [0.5, "#7c9be0"], [1, "#1d3f91"]], zmin: 0, hovertemplate: "true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
    }], {
      margin: { t: 10, r: 10, b: 60, l: 80 }, height: Math.min(720, 200 + 36 * classes.length),
      xaxis: { title: { text: "Predicted" }, type: "category", side: "bottom" },
      yaxis: { title: { text: "True" }, type: "category", autorange: "reversed" },
    }, { displayModeBar: false, responsive: true });
  }
  const toggle = document.getElementById("normalise");
  toggle.addEventListener("change", () => draw(toggle.checked));
  draw(false);
})();
