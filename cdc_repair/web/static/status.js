// cdc-repair status page: charts (uPlot, vendored) and auto-refresh. The numbers are server-rendered HTML;
// this script only redraws them every few seconds and adds the charts from /api/history.
(function () {
  "use strict";
  var me = document.currentScript;
  var refreshS = Number((me && me.getAttribute("data-refresh")) || 5);
  var charts = [];
  var specs = [
    { title: "Binlog lag (s)", series: [["lag_s", "lag s", "#c0392b"]] },
    { title: "Throughput (/s)", series: [["rows_per_s", "rows captured/s", "#2471a3"],
                                         ["keys_per_s", "keys checked/s", "#17a589"]] },
    { title: "Ledger", series: [["open", "open inconsistencies", "#d68910"],
                                ["found_per_min", "found/min", "#c0392b"],
                                ["repairs_per_min", "repairs applied/min", "#7d3c98"]] }
  ];

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function timeLabels(u, splits) {
    return splits.map(function (t) {
      var d = new Date(t * 1000);
      return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    });
  }

  function columns(h, spec) {
    var cols = [h.t];
    spec.series.forEach(function (s) { cols.push(h[s[0]] || []); });
    return cols;
  }

  function draw(h) {
    var box = document.getElementById("charts");
    if (!box || typeof uPlot === "undefined") { return; }
    var width = Math.max(300, Math.min(440, Math.floor((box.clientWidth - 60) / 3) - 16));
    if (charts.length === 0) {
      box.innerHTML = "";
      specs.forEach(function (spec) {
        var div = document.createElement("div");
        div.className = "chart";
        box.appendChild(div);
        var opts = {
          title: spec.title, width: width, height: 180,
          series: [{}].concat(spec.series.map(function (s) {
            return { label: s[1], stroke: s[2], width: 1.5, spanGaps: true };
          })),
          scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } } },
          // x: at most one HH:MM:SS label per 90 px (uPlot's default time labels overlap on a narrow chart)
          axes: [{ space: 90, values: timeLabels }, { size: 50 }]
        };
        charts.push(new uPlot(opts, columns(h, spec), div));
      });
    } else {
      charts.forEach(function (c, i) { c.setData(columns(h, specs[i])); });
    }
  }

  function loadHistory() {
    return fetch("/api/history", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(draw)
      .catch(function () { /* charts are an extra: the numbers stay */ });
  }

  function refreshNumbers() {
    return fetch("/", { cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["numbers", "tables"].forEach(function (id) {
          var fresh = doc.getElementById(id);
          var cur = document.getElementById(id);
          if (fresh && cur) { cur.innerHTML = fresh.innerHTML; }
        });
        var gen = doc.getElementById("generated-at");
        var curGen = document.getElementById("generated-at");
        if (gen && curGen) { curGen.textContent = gen.textContent; }
      })
      .catch(function () { /* keep the last numbers on a failed refresh */ });
  }

  loadHistory();
  setInterval(function () { refreshNumbers(); loadHistory(); }, refreshS * 1000);
})();
