// Segmentation dataset page: the pixel share chart and the mask opacity slider (dataset_detail.js
// keeps the progress bar while the ingest runs).
(function () {
  "use strict";
  const slider = document.getElementById("mask-opacity");
  const samples = document.getElementById("samples");
  if (slider && samples) {
    const apply = () => samples.style.setProperty("--mask-opacity", slider.value / 100);
    slider.addEventListener("input", apply);
    apply();
  }

  const el = document.getElementById("pixel-chart");
  const data = document.getElementById("pixel-rows-data");
  if (!el || !data || !window.Plotly) return;
  const rows = JSON.parse(data.textContent);
  const names = { train: "Train", val: "Validation", test: "Test" };
  const colours = { train: "#2b59c3", val: "#e0a526", test: "#3aa981" };
  const traces = ["train", "val", "test"]
    .filter((s) => rows.some((r) => r[s] > 0))
    .map((s) => ({ type: "bar", name: names[s], x: rows.map((r) => r.name), y: rows.map((r) => r[s]),
                   marker: { color: colours[s] },
                   hovertemplate: "%{x}: %{y:.1f}% of " + names[s].toLowerCase() + " pixels<extra></extra>" }));
  const font = getComputedStyle(document.body).fontFamily;
  Plotly.newPlot(el, traces, {
    barmode: "group", bargap: 0.25, margin: { t: 30, r: 10, b: 50, l: 50 }, height: 300,
    font: { family: font, size: 13, color: "#1d2330" },
    xaxis: { title: { text: "Class" }, type: "category", automargin: true },
    yaxis: { title: { text: "Pixels (%)" }, gridcolor: "#e3e6ec", rangemode: "tozero" },
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", traceorder: "normal" },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
  }, { displayModeBar: false, responsive: true });
})();
