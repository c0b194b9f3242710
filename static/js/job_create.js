// Job form: a built-in network's own default settings (networks.builtin.DEFAULT_SETTINGS), filled in
// as the network changes, in the fields the user has not changed from the previous network's.
(function () {
  "use strict";
  const table = document.getElementById("network-defaults");
  const network = document.getElementById("id_network");
  if (!table || !network) return;
  const defaults = JSON.parse(table.textContent);
  let previous = network.value;

  function same(text, value) {
    return text.trim() === String(value) || (text.trim() !== "" && Number(text) === value);
  }

  network.addEventListener("change", () => {
    const before = defaults[previous] || defaults[""], after = defaults[network.value] || defaults[""];
    previous = network.value;
    Object.entries(after).forEach(([name, value]) => {
      const input = document.getElementById("id_" + name);
      if (!input || !same(input.value, before[name])) return;  // the user's own value wins
      input.value = String(value);
      input.dispatchEvent(new Event("change"));
    });
  });
})();

// Job form: the learning rate over the chosen epochs, drawn as the schedule fields change. The
// server computes it with the schedule code training runs (GET /api/v1/lr-schedule/): no copy of
// the formulas here.
(function () {
  "use strict";
  const chart = document.getElementById("lr-preview");
  if (!chart || !window.Plotly) return;
  const error = document.getElementById("lr-preview-error");
  const FIELDS = ["lr_policy", "learning_rate", "epochs", "lr_step_size", "lr_gamma", "lr_milestones"];
  const inputs = FIELDS.map((name) => document.getElementById("id_" + name)).filter(Boolean);
  let timer = null;
  let asked = 0;

  function query() {
    const params = new URLSearchParams();
    inputs.forEach((input) => { if (input.value.trim() !== "") params.set(input.name, input.value.trim()); });
    return params.toString();
  }

  function draw(points) {
    const y = points.map((p) => p[1]);
    const positive = y.filter((v) => v > 0);
    const spread = positive.length ? Math.max(...positive) / Math.min(...positive) : 1;
    Plotly.react(chart, [{ x: points.map((p) => p[0]), y, mode: "lines", line: { color: "#7048e8", width: 2 },
      name: "learning rate", hovertemplate: "epoch %{x:.2f}: %{y:.3g}<extra></extra>" }],
    { margin: { t: 14, r: 16, b: 40, l: 64 }, height: 200, showlegend: false,
      xaxis: { title: { text: "Epoch" }, rangemode: "tozero" },
      // A log axis for rates that span decades, labelled at the powers of ten only (no crowded minor labels).
      yaxis: spread > 50 ? { title: { text: "Learning rate" }, type: "log", exponentformat: "power", dtick: 1 }
        : { title: { text: "Learning rate" }, rangemode: "tozero", exponentformat: "power" } },
    { displaylogo: false, responsive: true, displayModeBar: false });
  }

  function refresh() {
    const mine = ++asked;
    fetch(chart.dataset.api + "?" + query(), { credentials: "same-origin" })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (mine !== asked) return;  // a newer change is on its way
        error.hidden = ok;
        error.textContent = ok ? "" : "Preview: " + body.error;
        if (ok) { draw(body.points); window.lrPreviewDrawn = (window.lrPreviewDrawn || 0) + 1; }
      })
      .catch(() => {});
  }

  function later() { clearTimeout(timer); timer = setTimeout(refresh, 250); }
  inputs.forEach((input) => { input.addEventListener("input", later); input.addEventListener("change", later); });
  refresh();
})();
