// Freight dashboard: live progress bars. Elements with data-batch-id and
// data-terminal="false" are polled once a second through /ui/progress; a batch page
// (data-reload="true") reloads when its batch ends, to show result files and cost.
(function () {
  "use strict";
  var POLL_MS = 1000;

  function live() {
    return Array.prototype.slice.call(
      document.querySelectorAll('[data-batch-id][data-terminal="false"]'));
  }

  function set(node, selector, fn) {
    Array.prototype.forEach.call(node.querySelectorAll(selector), fn);
  }

  function update(node, b) {
    set(node, ".bar", function (el) { el.setAttribute("aria-valuenow", String(b.percent)); });
    set(node, ".bar > span", function (el) { el.style.width = b.percent + "%"; });
    set(node, '[data-field="percent"]', function (el) { el.textContent = b.percent + "%"; });
    set(node, '[data-field="counts"]', function (el) { el.textContent = b.done + " / " + b.total; });
    set(node, '[data-field="expected_completion"]', function (el) {
      el.textContent = b.expected_completion;
    });
    ["num_succeeded", "num_errored", "input_tokens", "output_tokens"].forEach(function (name) {
      set(node, '[data-field="' + name + '"]', function (el) {
        el.textContent = b[name].toLocaleString("en-US");
      });
    });
    set(node, '[data-field="status"]', function (el) {
      el.textContent = b.status;
      el.className = "status " + b.status;
    });
    if (b.is_terminal) {
      node.setAttribute("data-terminal", "true");
      if (node.getAttribute("data-reload") === "true") { window.location.reload(); }
    }
  }

  function poll() {
    var nodes = live();
    if (!nodes.length) { return; }
    var ids = nodes.map(function (n) { return n.getAttribute("data-batch-id"); });
    var query = ids.map(function (id) { return "ids=" + encodeURIComponent(id); }).join("&");
    fetch("/ui/progress?" + query, { credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (data) {
        if (data) {
          nodes.forEach(function (n) {
            var b = data.batches[n.getAttribute("data-batch-id")];
            if (b) { update(n, b); }
          });
        }
      })
      .catch(function () { /* the server restarting: try again next tick */ })
      .then(function () { window.setTimeout(poll, POLL_MS); });
  }

  window.setTimeout(poll, POLL_MS);
})();
