// The record browser of a Condor report: filters, search, pages of rows, and one record's full view.
// Data comes from the JSON in #index and #chunk-N elements. Every piece of text reaches the page through
// textContent, never as HTML: the text was written by a model and is not to be trusted.
(function () {
  "use strict";
  var PAGE = 50;
  var FIELDS = ["domain", "task", "difficulty", "language", "status"];
  var data = JSON.parse(document.getElementById("index").textContent);
  var n = data.count;
  var chunks = [];          // parsed detail chunks, kept while a record of theirs is open or being indexed
  var haystack = null;      // lower-cased question + answers per record, built in the background
  var selected = {};        // field -> code, or -1 for any
  var query = "";
  var matches = [];
  var page = 0;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function chunk(i) {
    var k = Math.floor(i / data.chunk);
    if (!chunks[k]) { chunks[k] = JSON.parse(document.getElementById("chunk-" + k).textContent); }
    return chunks[k][i - k * data.chunk];
  }

  // -- filters --------------------------------------------------------------------------------------
  function buildControls() {
    var controls = document.getElementById("controls");
    var search = document.getElementById("search");
    FIELDS.forEach(function (field) {
      var counts = new Array(data.values[field].length).fill(0);
      var codes = data.codes[field];
      for (var i = 0; i < n; i++) { counts[codes[i]]++; }
      var select = el("select");
      select.id = "filter-" + field;
      select.setAttribute("aria-label", field);
      var any = el("option", null, "any " + field);
      any.value = "-1";
      select.appendChild(any);
      data.values[field].map(function (v, code) { return [v, code]; })
        .sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; })
        .forEach(function (pair) {
          var option = el("option", null, pair[0] + " (" + counts[pair[1]] + ")");
          option.value = String(pair[1]);
          select.appendChild(option);
        });
      select.addEventListener("change", function () { selected[field] = Number(select.value); apply(); });
      selected[field] = -1;
      controls.insertBefore(select, search);
    });
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { query = search.value.trim().toLowerCase(); apply(); }, 120);
    });
    document.getElementById("prev").addEventListener("click", function () { if (page > 0) { page--; render(); } });
    document.getElementById("next").addEventListener("click", function () {
      if ((page + 1) * PAGE < matches.length) { page++; render(); }
    });
    document.getElementById("close").addEventListener("click", function () {
      document.getElementById("record").hidden = true;
    });
  }

  function textOf(i) {
    if (haystack) { return haystack[i]; }
    return data.q[i].toLowerCase();
  }

  function apply() {
    var started = performance.now();
    var active = FIELDS.filter(function (f) { return selected[f] >= 0; });
    var found = [];
    for (var i = 0; i < n; i++) {
      var keep = true;
      for (var j = 0; j < active.length; j++) {
        if (data.codes[active[j]][i] !== selected[active[j]]) { keep = false; break; }
      }
      if (keep && query && textOf(i).indexOf(query) < 0) { keep = false; }
      if (keep) { found.push(i); }
    }
    matches = found;
    page = 0;
    render();
    window.__condorApplyMs = performance.now() - started;  // read by bench/bench_report.py
  }

  function render() {
    var body = document.getElementById("rows");
    var fragment = document.createDocumentFragment();
    var end = Math.min(matches.length, (page + 1) * PAGE);
    for (var k = page * PAGE; k < end; k++) {
      fragment.appendChild(row(matches[k]));
    }
    body.replaceChildren(fragment);
    var note = matches.length + " of " + n + " records";
    if (query && !haystack) { note += " (searching questions; answers are still being indexed)"; }
    document.getElementById("count").textContent = note;
    var pages = Math.max(1, Math.ceil(matches.length / PAGE));
    document.getElementById("page").textContent = "page " + (page + 1) + " of " + pages;
  }

  function row(i) {
    var tr = el("tr");
    tr.dataset.index = String(i);
    tr.appendChild(el("td", null, data.id[i]));
    ["domain", "task", "difficulty", "language", "status"].forEach(function (f) {
      tr.appendChild(el("td", null, data.values[f][data.codes[f][i]]));
    });
    tr.appendChild(el("td", null, data.score[i] === null ? "" : data.score[i]));
    var q = el("td", null, data.q[i]);
    q.title = data.q[i];
    tr.appendChild(q);
    tr.addEventListener("click", function () { open(i); });
    return tr;
  }

  // -- one record -----------------------------------------------------------------------------------
  function open(i) {
    var d = chunk(i);
    var body = document.getElementById("record-body");
    var parts = document.createDocumentFragment();
    document.getElementById("record-title").textContent = data.id[i];
    var meta = [d.tag, data.values.task[data.codes.task[i]], data.values.difficulty[data.codes.difficulty[i]],
      data.values.language[data.codes.language[i]], data.values.status[data.codes.status[i]]].filter(Boolean);
    parts.appendChild(el("div", "meta", meta.join(" · ")));
    if (d.rejection) {
      var why = el("div", "rejection");
      why.appendChild(el("b", null, "Rejected at " + d.rejection.stage + ": " + d.rejection.reason));
      if (d.rejection.detail) { why.appendChild(el("div", null, d.rejection.detail)); }
      (d.attempts || []).forEach(function (text, k) { why.appendChild(el("div", "text", "Attempt " + (k + 1) + ": " + text)); });
      parts.appendChild(why);
    }
    parts.appendChild(el("div", "question", data.q[i] || "(no question)"));
    if (d.chosen) {
      parts.appendChild(el("p", "note", "Chosen: version " + d.chosen.v + (d.chosen.why ? " — " + d.chosen.why : "")));
    }
    if (d.pairwise) {
      var side = { a: "original", b: "final", tie: "tie" };
      var verdicts = (d.pairwise.verdicts || []).map(function (v) {
        return (v.first === "a" ? "original shown first" : "final shown first") + ": " + side[v.winner];
      }).join("; ");
      parts.appendChild(el("p", "note", "Judge, final against original: " + side[d.pairwise.winner] +
        (d.pairwise.consistent ? " (both orders agree)" : " (orders disagree: a tie)") + (verdicts ? " — " + verdicts : "")));
    }
    var versions = el("div", "versions");
    var critiques = {};
    (d.critiques || []).forEach(function (c) { critiques[c.r] = c; });
    d.versions.forEach(function (v, k) {
      var box = el("div", "version" + (d.chosen && d.chosen.v === k ? " chosen" : ""));
      var title = "Version " + k + (k === 0 ? " (original)" : " (round " + v.r + ")");
      if (v.s !== null && v.s !== undefined) { title += " · score " + v.s; }
      if (v.cut) { title += " · cut off"; }
      box.appendChild(el("h3", null, title));
      var critique = critiques[v.r];
      if (k > 0 && critique) {
        var c = el("div", "critique");
        c.appendChild(el("b", null, "Critique that led to it"));
        [["Strengths", critique.strengths], ["Weaknesses", critique.weaknesses], ["Suggestions", critique.suggestions]]
          .forEach(function (pair) { if (pair[1]) { c.appendChild(el("div", null, pair[0] + ": " + pair[1])); } });
        box.appendChild(c);
      }
      box.appendChild(el("div", "text", v.a));
      if (v.why) { box.appendChild(el("p", "note", "Judge: " + v.why)); }
      versions.appendChild(box);
    });
    if (d.versions.length) { parts.appendChild(versions); }
    (d.notes || []).forEach(function (note) { parts.appendChild(el("p", "note", note)); });
    body.replaceChildren(parts);
    var panel = document.getElementById("record");
    panel.hidden = false;
    panel.scrollIntoView({ block: "start" });
  }

  // -- the search index, built a chunk at a time so that the page stays responsive -------------------
  function indexAnswers() {
    var hay = new Array(n);
    var k = 0;
    var total = Math.ceil(n / data.chunk);
    function step() {
      var started = performance.now();
      while (k < total && performance.now() - started < 40) {
        var parsed = chunks[k] || JSON.parse(document.getElementById("chunk-" + k).textContent);
        for (var j = 0; j < parsed.length; j++) {
          var i = k * data.chunk + j;
          var text = data.q[i];
          var versions = parsed[j].versions;
          for (var v = 0; v < versions.length; v++) { text += "\n" + versions[v].a; }
          hay[i] = text.toLowerCase();
        }
        k++;
      }
      if (k < total) { setTimeout(step, 0); return; }
      haystack = hay;
      window.__condorSearchReady = performance.now();
      if (query) { apply(); } else { render(); }
    }
    setTimeout(step, 0);
  }

  buildControls();
  apply();
  document.body.dataset.ready = "1";
  window.__condorReady = performance.now();
  indexAnswers();
})();
