// The database pool panel of this project's Locust web UI (locustfiles/pool_panel.py): a
// chart of connections in use, waiters, PostgreSQL backends and Locust users, polled from
// ./bench/pool every interval. Plain DOM and SVG: nothing is loaded from a network.
(function () {
  "use strict";
  var SERIES = [
    { key: "pool_in_use", label: "connections in use", colour: "#1f77b4", axis: "left" },
    { key: "db_backends", label: "PostgreSQL backends", colour: "#2ca02c", axis: "left" },
    { key: "pool_waiting", label: "waiting for a connection", colour: "#d62728", axis: "right" },
    { key: "users", label: "Locust users", colour: "#888888", axis: "right", dash: "4 3" },
  ];
  var W = 460, H = 170, PAD = { l: 34, r: 38, t: 8, b: 20 };
  var NS = "http://www.w3.org/2000/svg";

  var box = document.createElement("div");
  box.id = "bench-pool-panel";
  box.style.cssText = "position:fixed;right:12px;bottom:12px;z-index:2000;background:#fff;color:#222;" +
    "border:1px solid #bbb;border-radius:6px;box-shadow:0 2px 8px rgba(0,0,0,.25);padding:8px 10px;" +
    "font:12px system-ui,sans-serif;width:" + (W + 4) + "px";
  box.innerHTML =
    '<div style="display:flex;justify-content:space-between;align-items:center">' +
    '<b>Database pool</b><span id="bench-pool-status" style="color:#777">waiting for samples</span>' +
    '<button id="bench-pool-toggle" style="font-size:11px">hide</button></div>' +
    '<div id="bench-pool-body"></div>';
  document.body.appendChild(box);
  var body = box.querySelector("#bench-pool-body");
  box.querySelector("#bench-pool-toggle").onclick = function () {
    var hidden = body.style.display === "none";
    body.style.display = hidden ? "" : "none";
    this.textContent = hidden ? "hide" : "show";
  };

  var svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  body.appendChild(svg);
  var legend = document.createElement("div");
  legend.style.cssText = "display:grid;grid-template-columns:1fr 1fr;gap:2px 12px;margin-top:4px";
  SERIES.forEach(function (s) {
    legend.innerHTML += '<span><span style="display:inline-block;width:14px;border-top:2px ' +
      (s.dash ? "dashed " : "solid ") + s.colour + ';vertical-align:middle"></span> ' + s.label +
      " (" + s.axis + " axis): <b id=\"bench-" + s.key + "\">–</b></span>";
  });
  body.appendChild(legend);
  var note = document.createElement("div");
  note.style.cssText = "color:#777;margin-top:2px";
  note.innerHTML = 'sampled at <span id="bench-sampled-at">–</span>; ' +
    '<a href="./bench/pool.csv">CSV</a>';
  body.appendChild(note);

  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  function draw(samples) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (!samples.length) return;
    var t1 = samples[samples.length - 1].unix_s;
    samples = samples.filter(function (s) { return s.unix_s >= t1 - 300; });
    var t0 = Math.min(samples[0].unix_s, t1 - 10), span = t1 - t0;
    var top = { left: 1, right: 1 };
    samples.forEach(function (s) {
      SERIES.forEach(function (k) { if (s[k.key] !== "") top[k.axis] = Math.max(top[k.axis], +s[k.key]); });
    });
    var x = function (t) { return PAD.l + (W - PAD.l - PAD.r) * (t - t0) / span; };
    var y = function (v, axis) { return H - PAD.b - (H - PAD.t - PAD.b) * v / (top[axis] * 1.1); };
    svg.appendChild(el("rect", { x: PAD.l, y: PAD.t, width: W - PAD.l - PAD.r, height: H - PAD.t - PAD.b,
      fill: "none", stroke: "#ddd" }));
    [["left", PAD.l - 4, "end"], ["right", W - PAD.r + 4, "start"]].forEach(function (a) {
      [0, top[a[0]]].forEach(function (v) {
        var t = el("text", { x: a[1], y: y(v, a[0]) + 4, "text-anchor": a[2], "font-size": 10, fill: "#555" });
        t.textContent = v;
        svg.appendChild(t);
      });
    });
    var label = el("text", { x: W / 2, y: H - 4, "text-anchor": "middle", "font-size": 10, fill: "#555" });
    label.textContent = "the last " + Math.round(span) + " s (at most 5 minutes)";
    svg.appendChild(label);
    SERIES.forEach(function (k) {
      var points = samples.filter(function (s) { return s[k.key] !== ""; })
        .map(function (s) { return x(s.unix_s).toFixed(1) + "," + y(+s[k.key], k.axis).toFixed(1); });
      svg.appendChild(el("polyline", { points: points.join(" "), fill: "none", stroke: k.colour,
        "stroke-width": 2, "stroke-dasharray": k.dash || "none" }));
    });
  }

  function poll() {
    fetch("./bench/pool", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var samples = data.samples.map(function (s) {
          var out = {};
          Object.keys(s).forEach(function (k) { out[k] = s[k] === "" ? "" : +s[k]; });
          return out;
        });
        var last = samples[samples.length - 1];
        if (last) {
          SERIES.forEach(function (k) { document.getElementById("bench-" + k.key).textContent = last[k.key]; });
          document.getElementById("bench-sampled-at").textContent = new Date(last.unix_s * 1000).toLocaleTimeString();
          document.getElementById("bench-pool-status").textContent = samples.length + " samples";
          box.setAttribute("data-unix-s", last.unix_s);
        }
        draw(samples);
      })
      .catch(function (e) { document.getElementById("bench-pool-status").textContent = "no data: " + e; })
      .finally(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
