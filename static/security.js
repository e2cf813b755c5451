// Security screens: the copy button beside a key shown once. Loaded as a file
// (CSP allows no inline script) and delegated from document.
(function () {
  "use strict";

  function announce(button, text) {
    const status = document.getElementById("copy-status");
    if (status) { status.textContent = text; }
    button.textContent = text === "Copied." ? "Copied" : "Copy";
  }

  function fallbackCopy(source) {
    source.focus();
    source.select();
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    const source = document.getElementById(button.dataset.copyTarget);
    if (!source) { return; }
    const text = source.value !== undefined ? source.value : source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { announce(button, "Copied."); },
        function () { announce(button, fallbackCopy(source) ? "Copied." : "Select the key and copy it."); }
      );
    } else {
      announce(button, fallbackCopy(source) ? "Copied." : "Select the key and copy it.");
    }
  });

  // Selecting the whole key on focus makes a manual copy one keystroke.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("input.key-value")) { event.target.select(); }
  });
})();
