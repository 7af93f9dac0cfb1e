// The browsable view's behaviour: search over the records and tables, and long tables that expand.
// Runs from disk with no server and no network; everything it needs is in the page.
(function () {
  "use strict";
  var root = document.documentElement;
  var errors = [];
  window.addEventListener("error", function (event) {
    errors.push(String(event.message || event.error || "error"));
    root.setAttribute("data-view-errors", errors.join(" | "));
  });

  var LONG_TABLE = 12; // rows shown before "show all"

  function rowsOf(table) {
    var rows = [];
    var bodies = table.tBodies.length ? table.tBodies : [table];
    for (var b = 0; b < bodies.length; b++) {
      var trs = bodies[b].rows || [];
      for (var r = 0; r < trs.length; r++) {
        if (!trs[r].querySelector("th") || trs[r].querySelector("td")) rows.push(trs[r]);
      }
    }
    return rows;
  }

  function collapseLongTables() {
    var tables = document.querySelectorAll("section.record table, section.chapter table");
    for (var t = 0; t < tables.length; t++) {
      var table = tables[t];
      var rows = rowsOf(table);
      if (rows.length <= LONG_TABLE) continue;
      for (var i = LONG_TABLE; i < rows.length; i++) rows[i].classList.add("view-collapsed", "view-hidden");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "view-more";
      button.textContent = "show all " + rows.length + " rows";
      button.addEventListener("click", (function (rs, btn) {
        return function () {
          for (var k = 0; k < rs.length; k++) rs[k].classList.remove("view-collapsed", "view-hidden");
          btn.remove();
        };
      })(rows, button));
      table.insertAdjacentElement("afterend", button);
    }
  }

  function search(query, count) {
    var terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    var records = document.querySelectorAll("section.record");
    var shown = 0;
    for (var s = 0; s < records.length; s++) {
      var section = records[s];
      var text = section.textContent.toLowerCase();
      var hit = terms.every(function (term) { return text.indexOf(term) >= 0; });
      section.classList.toggle("view-hidden", !hit);
      if (hit) shown++;
      var rows = section.querySelectorAll("tr");
      for (var r = 0; r < rows.length; r++) {
        var rowText = rows[r].textContent.toLowerCase();
        var rowHit = terms.length > 0 && terms.some(function (term) { return rowText.indexOf(term) >= 0; });
        rows[r].classList.toggle("view-match", rowHit);
        if (rowHit) rows[r].classList.remove("view-hidden");
      }
    }
    count.textContent = terms.length
      ? shown + " of " + records.length + " records match"
      : records.length + " records";
    root.setAttribute("data-view-shown", String(shown));
  }

  function toolbar() {
    var bar = document.createElement("div");
    bar.className = "view-toolbar";
    var input = document.createElement("input");
    input.type = "search";
    input.placeholder = "Search records (measurement, metric, parameter, clause)";
    input.setAttribute("aria-label", "Search records");
    var count = document.createElement("span");
    count.className = "view-count";
    bar.appendChild(input);
    bar.appendChild(count);
    var banner = document.querySelector(".view-banner");
    (banner || document.body.firstChild).insertAdjacentElement(banner ? "afterend" : "beforebegin", bar);
    input.addEventListener("input", function () { search(input.value, count); });
    // A link may carry a query: index.html#q=refusal
    var match = /(?:^#|&)q=([^&]*)/.exec(window.location.hash);
    if (match) input.value = decodeURIComponent(match[1].replace(/\+/g, " "));
    search(input.value, count);
  }

  function start() {
    collapseLongTables();
    toolbar();
    root.setAttribute("data-view-ready", "1");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
