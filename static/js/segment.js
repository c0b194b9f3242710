// Segment page: the predicted mask's opacity over the uploaded image, from the slider.
(function () {
  "use strict";
  const slider = document.getElementById("mask-opacity");
  const result = document.getElementById("segment-result");
  if (!slider || !result) return;
  const apply = () => result.style.setProperty("--mask-opacity", slider.value / 100);
  slider.addEventListener("input", apply);
  apply();
})();
