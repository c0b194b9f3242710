// Job form, "Start from": the compatibility report of the chosen source against the chosen network
// and dataset, from GET /api/v1/pretrained/compatibility/ (the same check the job's creation makes).
(function () {
  "use strict";
  const box = document.getElementById("network-source");
  if (!box) return;
  const report = document.getElementById("compatibility");
  const summary = document.getElementById("compatibility-summary");
  const body = document.querySelector("#compatibility-table tbody");
  const error = document.getElementById("compatibility-error");
  const field = (name) => document.getElementById("id_" + name);
  const LABELS = { copied: "copied", remade: "re-made", new: "left new" };
  let timer = null;
  let asked = 0;

  function source() {
    const chosen = box.querySelector("input[name=pretrained_source]:checked");
    return chosen ? chosen.value : "";
  }

  function showFields() {
    const kind = source();
    ["pretrained_job", "pretrained_epoch"].forEach((n) => { field(n).closest(".field").hidden = kind !== "job"; });
    field("pretrained_model").closest(".field").hidden = kind !== "model";
    ["freeze_epochs", "pretrained_lr_mult"].forEach((n) => { field(n).closest(".field").hidden = kind === ""; });
  }

  function query() {
    const params = new URLSearchParams({ dataset: field("dataset").value, network: field("network").value });
    if (source() === "job") {
      params.set("job", field("pretrained_job").value.trim());
      if (field("pretrained_epoch").value.trim()) params.set("epoch", field("pretrained_epoch").value.trim());
    } else {
      params.set("model", field("pretrained_model").value);
    }
    return params;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function draw(data) {
    summary.textContent = `From ${data.source}: ${data.summary}`;
    body.replaceChildren(...data.rows.map((row) => {
      const tr = document.createElement("tr");
      tr.className = "action-" + row.action;
      [row.name, `${row.layer} ${row.type}`, JSON.stringify(row.shape),
        row.source_shape ? JSON.stringify(row.source_shape) : "–", LABELS[row.action]].forEach((t) => tr.append(cell(t)));
      return tr;
    }));
    report.hidden = false;
    error.hidden = true;
  }

  async function refresh() {
    showFields();
    const kind = source();
    if (!kind || (kind === "job" && !field("pretrained_job").value.trim()) || (kind === "model" && !field("pretrained_model").value)) {
      report.hidden = true;
      error.hidden = true;
      return;
    }
    const mine = ++asked;
    const response = await fetch(box.dataset.api + "?" + query(), { credentials: "same-origin" });
    const data = await response.json();
    if (mine !== asked) return;
    if (response.ok) {
      draw(data);
    } else {
      report.hidden = true;
      error.textContent = data.error;
      error.hidden = false;
    }
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  ["dataset", "network", "pretrained_job", "pretrained_epoch", "pretrained_model"].forEach((n) => {
    field(n).addEventListener("input", later);
    field(n).addEventListener("change", later);
  });
  box.querySelectorAll("input[name=pretrained_source]").forEach((input) => input.addEventListener("change", later));
  refresh();
})();
