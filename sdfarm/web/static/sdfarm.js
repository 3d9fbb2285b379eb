// sdfarm's page script: no build step, served as is from the installed package.
"use strict";

// Every request the page's scripts make carries the CSRF token the server put in <body>.
function sdfarmFetch(url, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("X-CSRF-Token", document.body.dataset.csrf);
  return fetch(url, { ...options, headers, credentials: "same-origin" });
}

// Live parts of a page (elements with an id and `data-live`) are refreshed from the same page
// every few seconds: the server renders them (escaped by the templates), we swap the nodes.
// The fetched text is parsed by DOMParser, whose scripts never run, and imported as nodes:
// no innerHTML. Polling pauses while the tab is hidden.
const LIVE_SECONDS = 2;

async function refreshLive() {
  const live = document.querySelectorAll("[data-live][id]");
  if (!live.length || document.hidden) return;
  const response = await sdfarmFetch(location.href, { headers: { "X-Sdfarm-Live": "1" } });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const element of live) {
    const update = fresh.getElementById(element.id);
    if (update) element.replaceWith(document.importNode(update, true));
  }
  document.body.dataset.refreshed = String(Date.now());
}

function startLive() {
  if (!document.querySelector("[data-live][id]")) return;
  let timer = null;
  const tick = async () => {
    try { await refreshLive(); } catch (e) { /* the server restarts: try again next tick */ }
    timer = document.hidden ? null : setTimeout(tick, LIVE_SECONDS * 1000);
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null) tick();
  });
  timer = setTimeout(tick, LIVE_SECONDS * 1000);
}

// A "copy" button copies the text of the element its data-copy names.
function startCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
      } catch (e) {  // no clipboard API (plain http beyond localhost): select it for Ctrl+C
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  startLive();
  startCopyButtons();
});
