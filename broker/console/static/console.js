// keybroker console: lint the policy editor's draft as it is typed. The only script of the
// console, served from the broker (the CSP allows no inline script). Without it the editor
// works the same through its Lint button.
"use strict";

(function () {
  const form = document.getElementById("editor");
  if (!form) {
    return;
  }
  const draft = form.elements.namedItem("document");
  const csrf = form.elements.namedItem("csrf").value;
  const state = document.getElementById("lint-state");
  const publish = document.getElementById("publish");
  const replayed = form.elements.namedItem("replayed");
  const original = draft.value;
  let timer = null;
  let sequence = 0;

  function item(className, parts) {
    const li = document.createElement("li");
    li.className = className;
    for (const part of parts) {
      if (part.code) {
        const code = document.createElement("code");
        code.textContent = part.code;
        li.append(code, " ");
      } else {
        li.append(part.text, " ");
      }
    }
    return li;
  }

  function show(result) {
    const box = document.getElementById("lint-results");
    box.replaceChildren();
    const heading = document.createElement("h3");
    const list = document.createElement("ul");
    if (result.problems.length) {
      heading.className = "refused";
      heading.textContent = "Invalid: " + result.problems.length + " problem" + (result.problems.length === 1 ? "" : "s");
      list.className = "problems";
      for (const p of result.problems) {
        const where = p.line ? "line " + p.line + (p.column ? ":" + p.column : "") : "";
        list.append(item("problem", [{ text: where }, { code: p.path || "$" }, { text: p.message }]));
      }
    } else if (result.warnings.length) {
      heading.className = "warned";
      heading.textContent = "Valid, " + result.warnings.length + " warning" + (result.warnings.length === 1 ? "" : "s");
      list.className = "warnings";
      for (const w of result.warnings) {
        list.append(item("warning", [{ code: w.code }, { code: w.rule }, { text: w.message }]));
      }
    } else {
      heading.className = "passed";
      heading.textContent = "Valid, no warnings";
    }
    box.append(heading, list);
  }

  async function lint() {
    const mine = ++sequence;
    state.textContent = "checking…";
    const body = new URLSearchParams({ csrf: csrf, document: draft.value });
    try {
      const answer = await fetch(form.dataset.lint, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf },
      });
      if (mine !== sequence) {
        return;
      }
      if (!answer.ok) {
        state.textContent = "could not check (" + answer.status + ")";
        return;
      }
      show(await answer.json());
      state.textContent = "as you type";
    } catch (error) {
      state.textContent = "could not check";
    }
  }

  draft.addEventListener("input", function () {
    // Any edit voids the replay the publish button relies on (the server checks it too).
    if (publish) {
      publish.disabled = true;
    }
    if (draft.value !== original) {
      replayed.value = "";
    }
    clearTimeout(timer);
    timer = setTimeout(lint, 300);
  });
})();
