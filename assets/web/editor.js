// The template editor's comfort: a preview that follows the typing, variables inserted at the
// cursor, the test email sent in place. Without it the form still saves, and its "Preview"
// and "Send test email" buttons post the form and show the answer on a new page.
"use strict";

(() => {
  const form = document.getElementById("editor");
  if (!form) return;
  const csrf = form.querySelector("input[name=csrf]").value;
  const frame = document.getElementById("preview-frame");
  const subject = document.getElementById("preview-subject");
  const text = document.getElementById("preview-text");
  const problem = document.getElementById("preview-error");
  const result = document.getElementById("test-result");

  // The form as the server reads it, but sent by fetch with the token in a header.
  const post = (url) =>
    fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
    }).then((response) => response.json().then((body) => ({ ok: response.ok, body })));

  const mark = (field) => {
    for (const name of ["subject", "body", "text", "event"]) {
      const input = form.elements[name];
      if (!input) continue;
      input.closest(".field").classList.toggle("invalid", name === field);
      if (name === field) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  };

  // One request at a time; typing during one asks for one more when it ends.
  let timer = null;
  let busy = false;
  let again = false;
  const refresh = () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    post("/templates/preview")
      .then(({ ok, body }) => {
        if (ok) {
          subject.textContent = body.subject;
          text.textContent = body.text;
          frame.src = body.frame;
          problem.hidden = true;
          mark(null);
        } else {
          problem.textContent = body.error ? body.error.message : "The preview failed.";
          problem.hidden = false;
          mark(body.error && body.error.field);
        }
      })
      .catch(() => {
        problem.textContent = "The server could not be reached for the preview.";
        problem.hidden = false;
      })
      .finally(() => {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  };
  for (const name of ["subject", "body", "text"]) {
    form.elements[name].addEventListener("input", soon);
  }
  // A new event to render with, or the body switched between HTML and MJML.
  form.addEventListener("change", (event) => {
    const name = event.target.name;
    if (name === "event" || name === "format") refresh();
  });

  // The field a variable goes into: the last one the cursor was in, the body at first. Typing
  // and clicking count as well as focus: a window without system focus (a browser in the
  // background) gets no focus events, yet the field still takes the keys.
  let target = form.elements.body;
  for (const name of ["subject", "body", "text"]) {
    for (const kind of ["focus", "input", "click", "select"]) {
      form.elements[name].addEventListener(kind, (event) => {
        target = event.target;
      });
    }
  }
  form.addEventListener("click", (event) => {
    const button = event.target.closest("[data-insert]");
    if (!button) return;
    const value = button.dataset.insert;
    const start = target.selectionStart ?? target.value.length;
    const end = target.selectionEnd ?? start;
    target.setRangeText(value, start, end, "end");
    target.focus();
    target.dispatchEvent(new Event("input", { bubbles: true }));
  });

  // The "Preview" and "Send test email" buttons answer in place instead of with a new page.
  form.addEventListener("submit", (event) => {
    const button = event.submitter;
    if (!button) return;
    if (button.hasAttribute("data-preview")) {
      event.preventDefault();
      clearTimeout(timer);
      refresh();
    } else if (button.hasAttribute("data-test-email")) {
      event.preventDefault();
      button.disabled = true;
      result.hidden = false;
      result.className = "flash";
      result.textContent = "Sending…";
      post("/templates/test-email")
        .then(({ ok, body }) => {
          const good = ok && body.sent;
          result.className = good ? "flash success" : "flash error";
          result.textContent = ok ? body.message : body.error.message;
        })
        .catch(() => {
          result.className = "flash error";
          result.textContent = "The server could not be reached.";
        })
        .finally(() => {
          button.disabled = false;
        });
    }
  });
})();
