// Detection evaluation page: a Plotly precision-recall curve per class, and the worst images with
// their true and predicted boxes drawn over them.
(function () {
  "use strict";
  const curves = JSON.parse(document.getElementById("pr-curves-data").textContent);
  const el = document.getElementById("pr-curves");
  if (el && window.Plotly) {
    for (const [name, curve] of Object.entries(curves)) {
      const box = document.createElement("div");
      box.className = "pr-curve";
      box.dataset.class = name;
      el.appendChild(box);
      Plotly.newPlot(box, [{ x: curve.recall, y: curve.precision, mode: "lines", name: name,
        line: { color: "#2b59c3", shape: "hv" }, hovertemplate: "recall %{x:.2f}<br>precision %{y:.3f}<extra></extra>" }],
      { title: { text: name, font: { size: 14 } }, margin: { t: 36, r: 10, b: 45, l: 55 }, height: 280,
        xaxis: { title: { text: "Recall" }, range: [0, 1.02] }, yaxis: { title: { text: "Precision" }, range: [0, 1.02] } },
      { displayModeBar: false, responsive: true });
    }
  }
  // Precision and recall per class at the slider's threshold, from the report's table of them.
  const table = JSON.parse(document.getElementById("thresholds-data").textContent);
  const slider = document.getElementById("eval-threshold");
  if (table && slider) {
    const show = () => {
      const value = parseFloat(slider.value);
      const at = table.thresholds.reduce((best, t, i) => (Math.abs(t - value) < Math.abs(table.thresholds[best] - value) ? i : best), 0);
      document.getElementById("eval-threshold-value").textContent = table.thresholds[at].toFixed(2);
      document.querySelectorAll("#threshold-table tr[data-class]").forEach((row) => {
        row.querySelector(".precision").textContent = table.precision[row.dataset.class][at].toFixed(3);
        row.querySelector(".recall").textContent = table.recall[row.dataset.class][at].toFixed(3);
      });
    };
    slider.addEventListener("input", show);
  }
  const drawing = JSON.parse(document.getElementById("worst-boxes").textContent);
  document.querySelectorAll("#worst-images figure.worst").forEach((figure) => {
    const img = figure.querySelector("img");
    const canvas = figure.querySelector("canvas");
    const boxes = drawing.images[figure.dataset.index] || [];
    const draw = () => { canvas.dataset.boxes = String(window.drawBoxes(canvas, img, drawing.width, drawing.height, boxes)); };
    if (img.complete && img.naturalWidth) draw(); else img.addEventListener("load", draw);
    window.addEventListener("resize", draw);
  });
})();
