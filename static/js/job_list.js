// Jobs page: filters that apply as they change, the user's choice of columns (remembered in
// localStorage), selection for the bulk actions, collapsible groups and notes edited in place.
(function () {
  "use strict";
  const STORE = "workbench.jobs.columns";
  const table = document.getElementById("jobs-table");
  const filter = document.getElementById("job-filter");
  if (filter) {
    filter.querySelectorAll("select, input[type=checkbox]").forEach((el) =>
      el.addEventListener("change", () => filter.submit()));
  }
  if (!table) return;

  // --- columns --------------------------------------------------------------------------
  const defaults = JSON.parse(document.getElementById("default-columns").textContent);
  const choices = Array.from(document.querySelectorAll("input[data-column]"));
  function chosen() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORE));
      if (Array.isArray(saved)) return saved;
    } catch (e) { /* a damaged entry: the defaults */ }
    return defaults;
  }
  function showColumns(keys) {
    const shown = new Set(keys);
    choices.forEach((box) => { box.checked = shown.has(box.dataset.column); });
    document.getElementById("job-columns-style").textContent = choices
      .filter((box) => !shown.has(box.dataset.column))
      .map((box) => '#jobs-table [data-col="' + box.dataset.column + '"] { display: none; }').join("\n");
  }
  choices.forEach((box) => box.addEventListener("change", () => {
    const keys = choices.filter((b) => b.checked).map((b) => b.dataset.column);
    localStorage.setItem(STORE, JSON.stringify(keys));
    showColumns(keys);
  }));
  document.getElementById("columns-default").addEventListener("click", () => {
    localStorage.removeItem(STORE);
    showColumns(defaults);
  });
  showColumns(chosen());

  // --- selection and bulk actions --------------------------------------------------------
  const boxes = Array.from(table.querySelectorAll("input[name=jobs]"));
  const all = document.getElementById("select-all");
  const count = document.getElementById("selected-count");
  function selectionChanged() {
    const n = boxes.filter((b) => b.checked).length;
    count.textContent = n ? n + " selected" : "No job selected";
    document.querySelectorAll("button.bulk").forEach((b) => { b.disabled = n === 0; });
    all.checked = n > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
  }
  boxes.forEach((b) => b.addEventListener("change", selectionChanged));
  all.addEventListener("change", () => { boxes.forEach((b) => { b.checked = all.checked; }); selectionChanged(); });
  document.getElementById("bulk-form").addEventListener("submit", (e) => {
    const n = boxes.filter((b) => b.checked).length;
    if (e.submitter && e.submitter.value === "delete" &&
        !window.confirm("Delete " + n + " job" + (n === 1 ? "" : "s") + " with their snapshots and curves?")) {
      e.preventDefault();
    }
  });
  selectionChanged();

  // --- groups ----------------------------------------------------------------------------
  table.querySelectorAll("tr.group-row").forEach((header) => {
    const toggle = header.querySelector(".group-toggle");
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "▾" : "▸";
      let row = header.nextElementSibling;
      while (row && !row.classList.contains("group-row")) { row.hidden = !open; row = row.nextElementSibling; }
    });
  });

  // --- notes, edited in place and saved through PATCH /api/v1/jobs/{id}/ ----------------
  const csrf = document.querySelector("#bulk-form input[name=csrfmiddlewaretoken]").value;
  function editNote(button) {
    const cell = button.closest("td");
    const text = cell.querySelector(".note-text");
    const input = document.createElement("input");
    input.type = "text"; input.className = "note-input"; input.value = text.textContent;
    input.setAttribute("aria-label", "Notes");
    text.hidden = true; button.hidden = true;
    cell.prepend(input);
    input.focus();
    let done = false;
    function finish(save) {
      if (done) return;
      done = true;
      const restore = () => { input.remove(); text.hidden = false; button.hidden = false; };
      if (!save || input.value === text.textContent) { restore(); return; }
      fetch(button.dataset.url, { method: "PATCH", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ notes: input.value }) })
        .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
        .then(({ ok, body }) => {
          if (!ok) throw new Error(body.error || "not saved");
          text.textContent = body.notes; cell.classList.remove("has-error"); cell.title = "";
        })
        .catch((err) => { cell.classList.add("has-error"); cell.title = "Not saved: " + err.message; })
        .finally(restore);
    }
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
  }
  table.querySelectorAll(".edit-note").forEach((b) => b.addEventListener("click", () => editNote(b)));
})();
