// Inspect page: a histogram of each weighted layer's weights (and bias), and 1-D outputs as bars.
(function () {
  "use strict";
  const data = document.getElementById("layers-data");
  if (!data || !window.Plotly) return;
  const layers = JSON.parse(data.textContent);
  const config = { displayModeBar: false, responsive: true };
  const layout = (title) => ({ margin: { t: 28, r: 10, b: 36, l: 44 }, height: 220, bargap: 0.02,
    title: { text: title, font: { size: 13 } }, legend: { orientation: "h" } });

  function centres(edges) {
    return edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
  }

  document.querySelectorAll(".histogram-chart").forEach((el) => {
    const params = layers[Number(el.dataset.layer)].params;
    const traces = Object.entries(params).map(([name, p]) => ({
      type: "bar", name: name, x: centres(p.histogram.edges), y: p.histogram.counts,
      width: p.histogram.edges[1] - p.histogram.edges[0], opacity: 0.75,
      hovertemplate: name + " %{x:.4f}: %{y}<extra></extra>",
    }));
    Plotly.newPlot(el, traces, { ...layout("Parameter histogram"), barmode: "overlay" }, config);
  });

  document.querySelectorAll(".values-chart").forEach((el) => {
    const values = layers[Number(el.dataset.layer)].values || [];
    Plotly.newPlot(el, [{ type: "bar", y: values, hovertemplate: "unit %{x}: %{y:.4f}<extra></extra>" }],
      layout(values.length < 64 ? "Output values" : "First 64 output values"), config);
  });
})();
