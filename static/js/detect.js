// Detect page: the predicted boxes over the upload, those scoring below the slider hidden, with no
// new request (the page was sent every box the detector kept).
(function () {
  "use strict";
  const slider = document.getElementById("score-threshold");
  const data = document.getElementById("detect-drawing");
  if (!slider || !data) return;
  const drawing = JSON.parse(data.textContent);
  const img = document.getElementById("detect-photo");
  const canvas = document.getElementById("detect-canvas");
  const value = document.getElementById("score-threshold-value");
  const shown = document.getElementById("boxes-shown");
  const rows = document.querySelectorAll("#detect-boxes tbody tr[data-score]");
  function draw() {
    const threshold = parseFloat(slider.value);
    const kept = drawing.boxes.filter((b) => b.score >= threshold)
      .map((b) => ({ box: b.box, colour: b.colour, text: b.label + " " + b.score.toFixed(2) }));
    window.drawBoxes(canvas, img, drawing.width, drawing.height, kept);
    rows.forEach((row) => { row.hidden = parseFloat(row.dataset.score) < threshold; });
    value.textContent = threshold.toFixed(2);
    shown.textContent = kept.length + " of " + drawing.boxes.length + " boxes shown";
    canvas.dataset.boxes = String(kept.length);  // what a browser test reads back
  }
  slider.addEventListener("input", draw);
  window.addEventListener("resize", draw);
  if (img.complete) draw(); else img.addEventListener("load", draw);
})();
