// Detection dataset page: boxes per class per split, and the box size histogram per class
// (dataset_detail.js keeps the progress bar while the ingest runs).
(function () {
  "use strict";
  const rowsData = document.getElementById("box-rows-data");
  const sizesData = document.getElementById("box-sizes-data");
  if (!rowsData || !sizesData || !window.Plotly) return;
  const rows = JSON.parse(rowsData.textContent);
  const sizes = JSON.parse(sizesData.textContent);
  const font = getComputedStyle(document.body).fontFamily;
  const base = {
    margin: { t: 30, r: 10, b: 50, l: 50 }, height: 300, font: { family: font, size: 13, color: "#1d2330" },
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", traceorder: "normal" },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
  };
  const config = { displayModeBar: false, responsive: true };

  const names = { train: "Train", val: "Validation", test: "Test" };
  const splitColours = { train: "#2b59c3", val: "#e0a526", test: "#3aa981" };
  const bars = ["train", "val", "test"]
    .filter((s) => rows.some((r) => r[s] > 0))
    .map((s) => ({ type: "bar", name: names[s], x: rows.map((r) => r.name), y: rows.map((r) => r[s]),
                   marker: { color: splitColours[s] },
                   hovertemplate: "%{x}: %{y} " + names[s].toLowerCase() + " boxes<extra></extra>" }));
  Plotly.newPlot(document.getElementById("box-chart"), bars, Object.assign({}, base, {
    barmode: "stack", bargap: 0.25,
    xaxis: { title: { text: "Class" }, type: "category", automargin: true },
    yaxis: { title: { text: "Boxes" }, gridcolor: "#e3e6ec", rangemode: "tozero" },
  }), config);

  const measure = document.getElementById("size-measure");
  const labels = { side: "√(width × height) (pixels)", width: "Width (pixels)", height: "Height (pixels)" };
  function values(size, what) {
    if (what === "side") return size.width.map((w, i) => Math.sqrt(w * size.height[i]));
    return size[what];
  }
  function drawSizes() {
    const what = measure.value;
    const traces = rows.filter((r) => sizes[r.name] && sizes[r.name].width.length).map((r) => ({
      type: "histogram", name: r.name, x: values(sizes[r.name], what),
      marker: { color: r.colour }, xbins: { size: 2 },
      hovertemplate: r.name + ": %{y} boxes of %{x} px<extra></extra>" }));
    Plotly.react(document.getElementById("size-chart"), traces, Object.assign({}, base, {
      barmode: "stack", bargap: 0.05,
      xaxis: { title: { text: labels[what] }, rangemode: "tozero" },
      yaxis: { title: { text: "Boxes" }, gridcolor: "#e3e6ec", rangemode: "tozero" },
    }), config);
  }
  measure.addEventListener("change", drawSizes);
  drawSizes();
})();
