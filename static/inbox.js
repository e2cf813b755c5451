// Reviewer inbox: keyboard triage, row selection, countdowns and bulk confirmation.
// Loaded as a file (CSP allows no inline script); everything is delegated from
// document so it keeps working after htmx swaps parts of the page.
(function () {
  "use strict";

  function rows() {
    return Array.from(document.querySelectorAll("#inbox .inbox-row"));
  }

  function selectedIndex(list) {
    const detail = document.getElementById("decision-detail");
    const id = detail && detail.dataset.decisionId;
    return list.findIndex(function (row) { return row.dataset.id === id; });
  }

  function markSelected() {
    const detail = document.getElementById("decision-detail");
    const id = detail && detail.dataset.decisionId;
    rows().forEach(function (row) {
      row.classList.toggle("is-selected", row.dataset.id === id);
      if (row.dataset.id === id) { row.setAttribute("aria-current", "true"); } else { row.removeAttribute("aria-current"); }
    });
  }

  function move(step) {
    const list = rows();
    if (!list.length) { return; }
    let index = selectedIndex(list) + step;
    index = Math.max(0, Math.min(list.length - 1, index));
    // The row link carries hx-get, hx-target and hx-push-url: a click is all it takes.
    const link = list[index].querySelector(".row-link");
    if (link) { link.click(); }
  }

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable='true']") !== null;
  }

  function click(id) {
    const element = document.getElementById(id);
    if (element) { element.click(); }
  }

  function openReject() {
    const panel = document.getElementById("reject-panel");
    if (!panel) { return; }
    panel.open = true;
    const reason = document.getElementById("id_reason");
    if (reason) { reason.focus(); }
  }

  function showShortcuts() {
    const dialog = document.getElementById("shortcuts-dialog");
    if (dialog && !dialog.open) { dialog.showModal(); }
  }

  document.addEventListener("keydown", function (event) {
    if (!document.getElementById("inbox")) { return; }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.id === "id_reason") {
      event.preventDefault();
      event.target.form.requestSubmit();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    if (document.querySelector("dialog[open]")) { return; }
    const actions = {
      j: function () { move(1); },
      k: function () { move(-1); },
      a: function () { click("approve-button"); },
      r: openReject,
      e: function () { click("edit-button"); },
      "?": showShortcuts,
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("#shortcuts-button")) { showShortcuts(); }
  });

  // A modified click on a row link opens its href in a new tab, as links do:
  // stop it here, before htmx's listener on the link swaps it into this page.
  document.addEventListener("click", function (event) {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) {
      if (event.target.closest("#inbox .row-link")) { event.stopPropagation(); }
    }
  }, true);

  // Bulk approval asks first, stating how many decisions it will approve.
  document.addEventListener("htmx:confirm", function (event) {
    if (event.detail.question !== "bulk") { return; }
    event.preventDefault();
    const count = document.querySelectorAll("#bulk-form .bulk-check:checked").length;
    const dialog = document.getElementById("bulk-dialog");
    if (!count || !dialog) { return; }
    document.getElementById("bulk-count").textContent = String(count);
    document.getElementById("bulk-count-button").textContent = String(count);
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue === "confirm") { event.detail.issueRequest(true); }
    });
    dialog.returnValue = "";
    dialog.showModal();
  });

  // After an action the server sends the next decision: put the keyboard on it.
  document.addEventListener("htmx:afterSettle", function (event) {
    markSelected();
    tick();
    // A row link opened a decision: put the keyboard on its approve button.
    if (event.detail.elt && event.detail.elt.classList && event.detail.elt.classList.contains("row-link")) {
      (document.getElementById("approve-button") || event.detail.elt).focus({ preventScroll: false });
      return;
    }
    if (event.detail.target && event.detail.target.id === "inbox") {
      const approve = document.getElementById("approve-button");
      const selected = document.querySelector("#inbox .inbox-row.is-selected .row-link");
      const target = approve || selected;
      if (target) { target.focus({ preventScroll: true }); }
    }
  });

  function tick() {
    const now = Date.now();
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      const left = Math.round((Date.parse(el.getAttribute("datetime")) - now) / 60000);
      if (Number.isNaN(left)) { return; }
      if (left <= 0) { el.textContent = "now"; el.classList.add("is-overdue"); return; }
      const hours = Math.floor(left / 60);
      const minutes = left % 60;
      el.textContent = hours ? hours + " h " + minutes + " min" : minutes + " min";
      el.classList.toggle("is-soon", left < 60);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    markSelected();
    tick();
    setInterval(tick, 30000);
  });
})();
