// housekeep dashboard: live updates. The page says which parts of the
// store it shows (data-live: jobs, reports, audit) and the watermark it was
// drawn at (data-seen). When the server reports that one of those parts
// moved, fetch this page again and swap its <main>, so progress moves
// without a reload and without losing the scroll. A filter being edited is
// never swapped away: the refresh waits until the form is left or sent.
"use strict";
(function () {
  const body = document.body;
  const watched = (body.dataset.live || "").split(" ").filter(Boolean);
  if (watched.length === 0) return;
  let seen = {};
  try { seen = JSON.parse(body.dataset.seen || "{}"); } catch (_) { /* refresh on the first event */ }

  let fetching = false;
  let again = false;
  let waiting = false;
  const editing = () => {
    const focused = document.activeElement;
    return focused && focused.closest && focused.closest("main form") !== null;
  };

  async function refresh() {
    if (editing()) {
      waiting = true;
      return;
    }
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        location.reload();
        return;
      }
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("main");
      const current = document.querySelector("main");
      if (fresh && current && !editing()) {
        current.replaceWith(fresh);
        body.dataset.refreshed = String(Number(body.dataset.refreshed || 0) + 1);
      } else if (editing()) {
        waiting = true;
      }
    } catch (_) {
      // The next change tries again.
    } finally {
      fetching = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  document.addEventListener("focusout", () => {
    // Focus moves after focusout: look once it has settled.
    setTimeout(() => {
      if (waiting && !editing()) {
        waiting = false;
        refresh();
      }
    }, 0);
  });

  const status = document.getElementById("live");
  const events = new EventSource("/live");
  events.addEventListener("change", (event) => {
    let now;
    try { now = JSON.parse(event.data); } catch (_) { return; }
    const moved = watched.some((part) => now[part] !== seen[part]);
    seen = now;
    if (moved) refresh();
  });
  // The session ended (expired, signed out elsewhere, or no longer a
  // moderator): the reload shows the signed-out page.
  events.addEventListener("signed-out", () => {
    events.close();
    if (status) status.textContent = "signed out";
    location.reload();
  });
  events.onopen = () => { if (status) status.textContent = "live"; };
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) {
      // Refused for good (the session ended, most likely): the reload
      // shows why.
      if (status) status.textContent = "not live";
      setTimeout(() => location.reload(), 2000);
    } else if (status) {
      status.textContent = "reconnecting…";
    }
  };
})();
