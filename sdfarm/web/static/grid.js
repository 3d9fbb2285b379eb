// The grid viewer: axis choices in the URL, a zoom overlay, and live cells while the sweep
// renders. Cells are built once by the server; polling only touches cells whose status changed.
"use strict";

(function () {
  const grid = document.getElementById("grid");
  if (!grid) return;
  const POLL_MS = 2000;
  // job id -> its <td>, built once: a poll of 1,000 cells does no DOM query per cell.
  const cells = new Map();
  grid.querySelectorAll("td[data-job]").forEach((td) => cells.set(td.dataset.job, td));

  // Axis choices: a new URL (shareable), the server lays the grid out again.
  const form = document.querySelector("form.grid-axes");
  form.querySelectorAll("select").forEach((select) => {
    select.addEventListener("change", () => {
      const params = new URLSearchParams(new FormData(form));
      window.location.search = params.toString();
    });
  });

  function cellLabels(td) {
    const table = td.closest("table");
    const column = table.tHead.rows[0].cells[td.cellIndex].textContent;
    const row = td.parentElement.cells[0].textContent;
    return [column, row].filter((label) => label).join(" · ");
  }

  // Zoom: a done cell opens its full image over the page; Esc or a click outside closes it.
  const zoom = document.getElementById("zoom");
  const zoomImage = document.getElementById("zoom-image");
  const zoomLink = document.getElementById("zoom-link");
  const zoomLabels = document.getElementById("zoom-labels");

  function openZoom(td) {
    const job = td.dataset.job;
    zoomImage.src = "/files/image/" + job;
    zoomImage.alt = "job " + job;
    zoomLink.href = "/jobs/" + job;
    zoomLink.textContent = "Job " + job;
    zoomLabels.textContent = cellLabels(td);
    zoom.hidden = false;
  }

  function closeZoom() {
    zoom.hidden = true;
    zoomImage.removeAttribute("src");
  }

  grid.addEventListener("click", (event) => {
    const td = event.target.closest("td[data-job]");
    if (!td || td.dataset.status !== "done" || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    openZoom(td);
  });
  zoom.addEventListener("click", (event) => {
    if (event.target === zoom) closeZoom();
  });
  document.getElementById("zoom-close").addEventListener("click", closeZoom);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !zoom.hidden) closeZoom();
  });

  function fill(td, cell) {
    td.dataset.status = cell.status;
    const link = td.querySelector("a");
    link.replaceChildren();
    if (cell.thumb) {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.src = cell.thumb;
      img.alt = "job " + cell.job_id;
      link.append(img);
    } else {
      const span = document.createElement("span");
      span.className = "status";
      span.textContent = cell.status;
      link.append(span);
    }
  }

  async function poll() {
    let finished = false;
    try {
      const response = await sdfarmFetch(grid.dataset.api, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        for (const page of data.pages) {
          for (const cell of page.cells) {
            const td = cells.get(String(cell.job_id));
            if (td && td.dataset.status !== cell.status) fill(td, cell);
          }
        }
        finished = data.finished;
      }
    } catch (error) {
      // The server restarting or the network gone: try again at the next tick.
    }
    if (finished) {
      const live = document.getElementById("grid-live");
      if (live) live.textContent = "finished";
      grid.dataset.finished = "true";
    } else {
      window.setTimeout(poll, POLL_MS);
    }
  }

  if (grid.dataset.finished !== "true") window.setTimeout(poll, POLL_MS);
})();
