// sdfarm's page script: no build step, served as is from the installed package.
"use strict";

// Every request the page's scripts make carries the CSRF token the server put in <body>.
function sdfarmFetch(url, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("X-CSRF-Token", document.body.dataset.csrf);
  return fetch(url, { ...options, headers, credentials: "same-origin" });
}
