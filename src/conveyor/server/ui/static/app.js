// Conveyor web UI: the buttons that change things call the REST API with the session's CSRF
// token (double submit: the cookie's value echoed in a header), then reload the page.
"use strict";

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

function flash(text, bad) {
  const box = document.querySelector(".flash");
  if (!box) return;
  box.textContent = text;
  box.classList.toggle("bad", Boolean(bad));
  box.hidden = false;
}

async function send(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("conveyor_csrf") },
    body: JSON.stringify(body || {}),
  });
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = null; }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    throw new Error((error.message || response.statusText) + (error.hint ? " " + error.hint : ""));
  }
  return payload;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-post]");
  if (button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      await send(button.dataset.post, button.dataset.body ? JSON.parse(button.dataset.body) : {});
      sessionStorage.setItem("conveyor-flash", button.dataset.done || "Done.");
      window.location.reload();
    } catch (e) {
      flash(e.message, true);
      button.disabled = false;
    }
    return;
  }
  if (event.target.closest("[data-logout]")) {
    try { await send("/api/v1/logout", {}); } catch (e) { /* the session may be gone already */ }
    window.location.assign("/ui/login");
  }
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("[data-login]");
  if (!form) return;
  event.preventDefault();
  const problem = form.querySelector(".error");
  try {
    await send("/api/v1/login", { user: form.elements.name.value, password: form.elements.password.value });
    window.location.assign(form.dataset.next || "/ui/");
  } catch (e) {
    problem.textContent = e.message;
    problem.hidden = false;
  }
});

// Sections marked data-refresh="SECONDS" are redrawn in place from the same page, fetched
// again, while the tab is visible: live figures without reloading the page. A section whose
// fresh copy is no longer marked (a pipeline run that ended) stops there.
async function refresh(section, timer) {
  if (document.hidden) return;
  try {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const replacement = fresh.getElementById(section.id);
    if (!replacement) return;
    section.replaceChildren(...replacement.childNodes);
    if (!replacement.hasAttribute("data-refresh")) {
      window.clearInterval(timer.id);
      section.removeAttribute("data-refresh");
    }
  } catch (e) { /* offline for a moment: try again at the next tick */ }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const section of document.querySelectorAll("[data-refresh][id]")) {
    const seconds = Math.max(5, Number(section.dataset.refresh) || 30);
    const timer = {};
    timer.id = window.setInterval(() => refresh(section, timer), seconds * 1000);
  }
  const told = sessionStorage.getItem("conveyor-flash");
  if (told) {
    sessionStorage.removeItem("conveyor-flash");
    flash(told, false);
  }
});
