// Passkeys: register one on the profile page, and sign a step-up approval in the inbox.
// Loaded as a file (CSP allows no inline script); the server verifies everything.
(function () {
  "use strict";

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function showError(element, text) {
    if (!element) { return; }
    element.textContent = text;
    element.hidden = false;
  }

  async function fetchJSON(url, method) {
    const response = await fetch(url, {
      method: method,
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" },
      credentials: "same-origin",
    });
    const body = await response.json();
    if (!response.ok) {
      const error = new Error(body.error || "The request failed.");
      error.registerUrl = body.register_url;
      throw error;
    }
    return JSON.parse(body.options);
  }

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (form.id === "passkey-register-form") {
      event.preventDefault();
      const error = document.getElementById("passkey-error");
      try {
        const options = await fetchJSON(form.dataset.optionsUrl, "POST");
        const credential = await navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
        });
        form.querySelector("input[name=response]").value = JSON.stringify(credential.toJSON());
        form.submit();
      } catch (exc) {
        showError(error, "The passkey was not registered: " + exc.message);
      }
      return;
    }
    if (form.dataset.stepUpUrl) {
      event.preventDefault();
      event.stopImmediatePropagation();
      const error = document.getElementById("step-up-error");
      try {
        const options = await fetchJSON(form.dataset.stepUpUrl, "GET");
        const credential = await navigator.credentials.get({
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
        });
        form.querySelector("input[name=assertion]").value = JSON.stringify(credential.toJSON());
        form.submit();
      } catch (exc) {
        showError(error, exc.message);
      }
    }
  }, true);
})();
