// Job page, "Download and export": while an export is queued or running, poll the API and reload when all are finished.
(function () {
  "use strict";
  const box = document.getElementById("exports");
  if (!box || !box.querySelector('[data-export-status="queued"], [data-export-status="running"]')) return;
  const poll = () => fetch(box.dataset.exportsUrl, { credentials: "same-origin" }).then((r) => r.json()).then((page) => {
    const exports = page.results || page;  // the list API answers a page: {count, next, previous, results}
    if (exports.every((e) => e.status === "done" || e.status === "error")) window.location.reload();
    else setTimeout(poll, 1000);
  }).catch(() => setTimeout(poll, 3000));
  setTimeout(poll, 1000);
})();
