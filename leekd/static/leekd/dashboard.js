// The leek dashboard refreshes itself: fetch the figures' fragment, swap it in, repeat.
(function () {
  "use strict";
  var box = document.getElementById("leek-dashboard");
  var note = document.getElementById("leek-refreshed");
  if (!box || !window.fetch) return;
  var every = Math.max(1, parseInt(box.dataset.refresh || "5", 10)) * 1000;
  var refreshes = 0;

  function refresh() {
    fetch(box.dataset.url, { credentials: "same-origin", cache: "no-store" })
      .then(function (reply) {
        if (reply.redirected) throw new Error("the session has ended; reload the page to log in");
        if (!reply.ok) throw new Error("the server answered " + reply.status);
        return reply.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        refreshes += 1;
        box.dataset.refreshes = String(refreshes);
        note.textContent = "Refreshed at " + new Date().toLocaleTimeString() + "; again in " + every / 1000 + " s.";
        setTimeout(refresh, every);
      })
      .catch(function (err) {
        note.textContent = "Could not refresh: " + err.message + ". Trying again in " + every / 1000 + " s.";
        if (!/session/.test(err.message)) setTimeout(refresh, every);
      });
  }
  setTimeout(refresh, every);
})();
