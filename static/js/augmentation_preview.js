// Job form: training images of the chosen dataset, original above and augmented below, redrawn as
// the augmentation fields change. A worker changes them with the code training runs
// (GET /api/v1/datasets/{id}/augmentation-preview/): no copy of the operations here.
(function () {
  "use strict";
  const grid = document.getElementById("augmentation-preview");
  if (!grid) return;
  const COUNT = 12;
  const error = document.getElementById("augmentation-preview-error");
  const status = document.getElementById("augmentation-preview-status");
  const networkView = document.getElementById("augmentation-network-view");
  const dataset = document.getElementById("id_dataset");
  const channels = JSON.parse(document.getElementById("dataset-channels").textContent);
  const inputs = Array.from(document.querySelectorAll("[data-augmentation]"));
  let seed = 0;
  let timer = null;
  let asked = 0;
  let shown = [];

  function field(key) { return document.getElementById("id_aug_" + key); }

  // A number as typed: left out when blank or zero (the default), sent as typed when it is not a
  // number, so the server's message names the key.
  function number(key, fallback) {
    const raw = field(key).value.trim();
    if (raw === "") return fallback;
    const value = Number(raw);
    return Number.isNaN(value) ? raw : value;
  }

  function colour() { return channels[dataset.value] === 3; }

  function spec() {
    const s = {};
    if (field("flip").value !== "none") s.flip = field("flip").value;
    if (field("rot90").checked) s.rot90 = true;
    ["rotate_degrees", "translate", "crop_padding", "noise_std"].forEach((key) => {
      const value = number(key, 0);
      if (value !== 0) s[key] = value;
    });
    const scale = [number("scale_low", 1), number("scale_high", 1)];
    if (scale[0] !== 1 || scale[1] !== 1) s.scale = scale;
    const hsv = { hue: number("hue", 0), saturation: number("saturation", 0), value: number("value", 0) };
    if (colour() && (hsv.hue || hsv.saturation || hsv.value)) s.hsv = hsv;
    if (field("mean").value !== "image") s.mean = field("mean").value;
    return s;
  }

  function showColourFields() {
    const known = dataset && dataset.value in channels;
    const row = document.getElementById("augmentation-colour");
    row.hidden = known && !colour() && !row.querySelector(".has-error");  // a refused value stays in sight
    document.getElementById("augmentation-grayscale-note").hidden = !known || colour();
  }

  function cell(image) {
    const figure = document.createElement("figure");
    figure.className = "augmentation-cell";
    const original = new Image();
    original.className = "augmentation-original";
    original.src = image.original;
    original.alt = image.label + " (original)";
    const augmented = new Image();
    augmented.className = "augmentation-augmented";
    augmented.src = networkView.checked ? image.network : image.augmented;
    augmented.alt = image.label + " (augmented)";
    const caption = document.createElement("figcaption");
    caption.textContent = image.label;
    figure.append(original, augmented, caption);
    return figure;
  }

  function draw(images) {
    shown = images;
    grid.replaceChildren(...images.map(cell));
  }

  function refresh() {
    showColourFields();
    if (!dataset || !dataset.value) return;
    const mine = ++asked;
    const params = new URLSearchParams({ augmentation: JSON.stringify(spec()), seed: String(seed), count: String(COUNT) });
    status.textContent = "Drawing…";
    fetch(grid.dataset.api.replace("/datasets/0/", "/datasets/" + dataset.value + "/") + "?" + params,
      { credentials: "same-origin" })
      // The API says why in JSON (a 503/504 when no serving worker answers); a proxy's page in front of it does not.
      .then((r) => r.json().then((body) => ({ ok: r.ok, body }),
        () => ({ ok: false, body: { error: "the server answered HTTP " + r.status + " " + r.statusText } })))
      .then(({ ok, body }) => {
        if (mine !== asked) return;  // a newer change is on its way
        if (!ok) { fail(body.error); return; }
        error.hidden = true;
        error.textContent = "";
        status.textContent = "Sample " + (body.seed + 1);
        grid.classList.remove("stale");
        draw(body.images);
        window.augmentationPreviewDrawn = (window.augmentationPreviewDrawn || 0) + 1;
      })
      .catch(() => { if (mine === asked) fail("the server could not be reached"); });
  }

  function fail(message) {
    error.hidden = false;
    error.textContent = "Preview: " + message;
    status.textContent = "";
    grid.classList.add("stale");
  }

  function later() { clearTimeout(timer); timer = setTimeout(refresh, 300); }
  inputs.concat(dataset ? [dataset] : []).forEach((input) => {
    input.addEventListener("input", later);
    input.addEventListener("change", later);
  });
  document.getElementById("augmentation-resample").addEventListener("click", () => { seed += 1; refresh(); });
  networkView.addEventListener("change", () => draw(shown));
  refresh();
})();
