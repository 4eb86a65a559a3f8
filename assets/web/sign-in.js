// housekeep dashboard: the sign-in page. It shows a code; a moderator sends
// it to the bot. Meanwhile this asks the server whether this browser was
// approved (the server holds each request up to 20 s and answers at once
// when it is): 200 means the session cookie is set, so open the dashboard;
// 204 means not yet, ask again; 410 means the code expired or was voided,
// so reload for a new one.
"use strict";
(function () {
  const status = document.getElementById("status");
  const expiresIn = Number((status && status.dataset.expiresIn) || 300);
  const shownAt = Date.now();
  const say = (text) => { if (status) status.textContent = text; };

  async function wait() {
    if (Date.now() - shownAt > expiresIn * 1000) {
      location.reload();
      return;
    }
    let response;
    try {
      response = await fetch("/sign-in/wait", { method: "POST", credentials: "same-origin", cache: "no-store" });
    } catch (_) {
      say("Cannot reach the dashboard; trying again…");
      setTimeout(wait, 5000);
      return;
    }
    if (response.status === 200) {
      say("Signed in; opening the dashboard…");
      location.assign("/");
    } else if (response.status === 204) {
      wait();
    } else if (response.status === 410) {
      location.reload();
    } else {
      say("The dashboard answered " + response.status + "; trying again…");
      setTimeout(wait, 5000);
    }
  }
  wait();
})();
