// housekeep dashboard: live updates. When the server says something changed
// (a job progressed, a report arrived), fetch this page again and swap its
// <main>, so progress moves without a reload and without losing the scroll.
"use strict";
(function () {
  const main = () => document.querySelector("main");
  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        location.reload();
        return;
      }
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("main");
      if (fresh && main()) {
        main().replaceWith(fresh);
        document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      }
    } finally {
      pending = false;
    }
  }
  if (!document.body.dataset.live) return;
  const events = new EventSource("/live");
  events.addEventListener("change", refresh);
  const status = document.getElementById("live");
  events.onopen = () => { if (status) status.textContent = "live"; };
  events.onerror = () => { if (status) status.textContent = "reconnecting…"; };
})();
