// Attention signals for the inbox (issue 17): when a folded, long param value is
// opened, mark the approve form of that decision so the approval records it.
(function () {
  "use strict";
  document.addEventListener("toggle", function (event) {
    var fold = event.target;
    if (!(fold instanceof HTMLDetailsElement) || !fold.open || !fold.classList.contains("fold")) {
      return;
    }
    var detail = fold.closest("#decision-detail");
    if (!detail) {
      return;
    }
    detail.querySelectorAll("input[name=params_expanded]").forEach(function (input) {
      input.value = "1";
    });
  }, true);
})();
