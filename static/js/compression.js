// Compression page: poll the progress while it runs, then reload to show the before/after table.
(function () {
  "use strict";
  const panel = document.getElementById("compression");
  if (!panel || !(panel.dataset.status === "queued" || panel.dataset.status === "running")) return;
  const poll = () => fetch(panel.dataset.api, { credentials: "same-origin" }).then((r) => r.json()).then((d) => {
    const bar = document.getElementById("progress-bar");
    if (bar) bar.style.width = Math.round(d.progress * 100) + "%";
    if (d.status === "done" || d.status === "error") window.location.reload();
    else setTimeout(poll, 500);
  }).catch(() => setTimeout(poll, 2000));
  poll();
})();
