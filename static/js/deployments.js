// Live progress of a deployment page: polls the deployment's logs endpoint (same session) and
// updates status, endpoint, events and the build log. No framework, no dependency.
(function () {
  "use strict";
  var root = document.getElementById("deployment");
  if (!root) { return; }
  var url = root.getAttribute("data-logs-url");
  var after = parseInt(root.getAttribute("data-last-line") || "0", 10) || 0;
  var log = document.getElementById("deployment-log");
  var statusEl = document.getElementById("deployment-status");
  var endpointEl = document.getElementById("deployment-endpoint");
  var errorEl = document.getElementById("deployment-error");
  var eventsEl = document.getElementById("deployment-events");
  var settled = { running: true, stopped: true, failed: true };

  function render(data) {
    statusEl.textContent = data.status;
    endpointEl.textContent = data.endpoint_url || "\u2014";
    errorEl.textContent = data.error || "";
    eventsEl.textContent = "";
    data.events.forEach(function (e) {
      var li = document.createElement("li");
      li.textContent = e.created_at.replace("T", " ").slice(0, 19) + " " + e.status + " " + e.message;
      eventsEl.appendChild(li);
    });
    data.lines.forEach(function (line) {
      log.appendChild(document.createTextNode(line.line + "\n"));
      after = Math.max(after, line.id);
    });
    if (data.lines.length) { log.scrollTop = log.scrollHeight; }
  }

  function poll() {
    fetch(url + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data) { render(data); }
        setTimeout(poll, data && settled[data.status] ? 5000 : 1000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
