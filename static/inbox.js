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

  // After every move the next decision shows from its top, with its action and buttons
  // in view, and its row in view in the list; focus never scrolls the page.
  function reveal() {
    const pane = document.querySelector("#inbox .inbox-detail");
    if (pane) { pane.scrollTop = 0; }
    const row = document.querySelector("#inbox .inbox-row.is-selected");
    const grid = document.querySelector("#inbox .inbox-grid");
    if (row && grid && window.matchMedia("(min-width: 901px)").matches) {
      // The sticky pane fills the viewport once the list's top reaches it.
      const bar = document.querySelector(".topbar");
      const offset = (bar ? bar.getBoundingClientRect().height : 0) + 8;
      const top = grid.getBoundingClientRect().top + window.scrollY - offset;
      if (window.scrollY < top) { window.scrollTo(0, top); }
      row.scrollIntoView({ block: "nearest" });
    } else if (pane) {
      pane.scrollIntoView({ block: "start" });
    }
    // Keep the keyboard where the reviewer is typing (the reason box, say).
    const active = document.activeElement;
    if (active && active !== document.body && typing(active)) { return; }
    const approve = document.getElementById("approve-button");
    if (approve) { approve.focus({ preventScroll: true }); }
  }

  function setView(view) {
    const grid = document.querySelector("#inbox .inbox-grid");
    if (grid) { grid.dataset.view = view; }
  }

  function move(step) {
    const list = rows();
    if (!list.length) { return; }
    const current = selectedIndex(list);
    let index = current + step;
    // j past the last row, or k before the first, continues on the next or previous page.
    if (index >= list.length) { click("next-page"); return; }
    if (index < 0 && current === 0) {
      click("prev-page");  // it opens the previous page at its last row
      return;
    }
    index = Math.max(0, Math.min(list.length - 1, index));
    // The row link carries hx-get, hx-target and hx-push-url: a click is all it takes,
    // and htmx keeps the history, so Back shows the decision shown before.
    const link = list[index].querySelector(".row-link");
    if (link) { link.click(); }
  }

  function toggleSelection() {
    const row = document.querySelector("#inbox .inbox-row.is-selected");
    const box = row && row.querySelector(".bulk-check");
    if (!box) {
      say("Only routine decisions can be selected for bulk approval.");
      return;
    }
    box.checked = !box.checked;
    syncSelectAll();
  }

  function syncSelectAll() {
    const all = document.getElementById("select-all");
    if (!all) { return; }
    const boxes = Array.from(document.querySelectorAll("#bulk-form .bulk-check"));
    const checked = boxes.filter(function (box) { return box.checked; }).length;
    all.checked = boxes.length > 0 && checked === boxes.length;
    all.indeterminate = checked > 0 && checked < boxes.length;
  }

  // A key that cannot act says why, in the status line.
  function say(text) {
    let line = document.getElementById("key-feedback");
    if (!line) { return; }
    line.textContent = "";
    window.setTimeout(function () { line.textContent = text; }, 10);
  }

  function approve() {
    const button = document.getElementById("approve-button");
    const panel = document.getElementById("confirm-panel");
    if (button) {
      // A decision that needs confirmation: a opens it (and keeps it open); only
      // Shift+A, a different key, confirms.
      if (panel) {
        panel.open = true;
        say("Check the amount and recipient, then press Shift+A to confirm.");
        const confirm = document.getElementById("confirm-approve-button");
        if (confirm) { confirm.focus({ preventScroll: true }); confirm.scrollIntoView({ block: "nearest" }); }
        return;
      }
      button.click();
      return;
    }
    const why = document.getElementById("cannot-act");
    say(why ? why.textContent.trim() : "There is no decision to approve here.");
  }

  function confirmApprove() {
    const panel = document.getElementById("confirm-panel");
    if (panel && panel.open) { click("confirm-approve-button"); }
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
      a: approve,
      A: confirmApprove,
      r: function () {
        if (document.getElementById("reject-panel")) { openReject(); return; }
        const why = document.getElementById("cannot-act");
        say(why ? why.textContent.trim() : "There is no decision to reject here.");
      },
      e: function () { click("edit-button"); },
      x: toggleSelection,
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
    const link = event.target.closest("#inbox .row-link");
    if (link && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
      setView("detail");  // on a phone, the decision replaces the list
    }
  });

  // A modified click on a row link opens its href in a new tab, as links do:
  // stop it here, before htmx's listener on the link swaps it into this page.
  document.addEventListener("click", function (event) {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) {
      if (event.target.closest("#inbox .row-link")) { event.stopPropagation(); }
    }
  }, true);

  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      document.querySelectorAll("#bulk-form .bulk-check").forEach(function (box) {
        box.checked = event.target.checked;
      });
      return;
    }
    if (event.target.classList && event.target.classList.contains("bulk-check")) { syncSelectAll(); }
  });

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
    // A row link opened a decision: show it (on a phone, instead of the list).
    if (event.detail.elt && event.detail.elt.classList && event.detail.elt.classList.contains("row-link")) {
      setView("detail");
      reveal();
      return;
    }
    if (event.detail.target && (event.detail.target.id === "inbox" || event.detail.target.id === "decision-detail")) {
      reveal();
      const selected = document.querySelector("#inbox .inbox-row.is-selected .row-link");
      if (!document.getElementById("approve-button") && selected) { selected.focus({ preventScroll: true }); }
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
