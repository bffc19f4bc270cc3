// Transcript page: blind toggle, lazy "what did this seat see", live updates (SSE).
(function () {
  "use strict";
  var body = document.body;
  var blind = document.getElementById("blind");
  function setBlind(on) {
    body.classList.toggle("blind", on);
    if (blind) { blind.setAttribute("aria-pressed", on ? "true" : "false"); }
    try { localStorage.setItem("roundtable.blind", on ? "1" : "0"); } catch (e) { /* private mode */ }
  }
  var stored = null;
  try { stored = localStorage.getItem("roundtable.blind"); } catch (e) { stored = null; }
  setBlind(stored === "1");
  if (blind) {
    blind.addEventListener("click", function () { setBlind(!body.classList.contains("blind")); });
  }

  function wirePrompts(root) {
    root.querySelectorAll("details.prompt").forEach(function (d) {
      if (d.dataset.wired) { return; }
      d.dataset.wired = "1";
      d.addEventListener("toggle", function () {
        if (!d.open || d.dataset.loaded) { return; }
        d.dataset.loaded = "1";
        var target = d.querySelector(".prompt-body");
        target.textContent = "Loading the prompt…";
        fetch(d.dataset.url, {credentials: "same-origin"}).then(function (r) {
          return r.text().then(function (t) { return {ok: r.ok, text: t}; });
        }).then(function (res) {
          target.innerHTML = res.ok ? res.text : "";
          if (!res.ok) { target.textContent = "Could not load the prompt."; }
        }).catch(function () { target.textContent = "Could not load the prompt."; });
      });
    });
  }
  wirePrompts(document);

  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var transcript = document.getElementById("transcript");
  function section(round) {
    var id = "round-" + round;
    var s = document.getElementById(id);
    if (s) { return s; }
    s = document.createElement("section");
    s.className = "round";
    s.id = id;
    s.dataset.round = String(round);
    s.setAttribute("aria-labelledby", "round-h-" + round);
    s.innerHTML = '<h2 id="round-h-' + round + '">Round ' + (round + 1) + '</h2>' +
      '<div class="lines"></div><div class="events"></div>';
    transcript.appendChild(s);
    return s;
  }
  function insert(where, html, id) {
    if (document.getElementById(id)) { return; }
    var tmp = document.createElement("div");
    tmp.innerHTML = html;
    var node = tmp.firstElementChild;
    if (!node) { return; }
    node.classList.add("new");
    where.appendChild(node);
    wirePrompts(node);
  }
  var source = new EventSource(live.dataset.url);
  source.addEventListener("message", function (ev) {
    var d = JSON.parse(ev.data);
    insert(section(d.round).querySelector(".lines"), d.html, "m" + d.id);
    var shown = document.getElementById("shown");
    if (shown) { shown.textContent = document.querySelectorAll("article.msg").length + " lines shown."; }
  });
  source.addEventListener("fault", function (ev) {
    var d = JSON.parse(ev.data);
    var where = d.round === null ? transcript : section(d.round).querySelector(".events");
    insert(where, d.html, "e" + d.id);
  });
  source.addEventListener("progress", function (ev) {
    var p = JSON.parse(ev.data);
    document.getElementById("progress").textContent = p.resolved + " / " + p.planned;
    var bar = document.getElementById("progress-bar");
    bar.max = p.planned || 1;
    bar.value = p.resolved;
    document.getElementById("tokens").textContent =
      p.input_tokens.toLocaleString("en") + " / " + p.output_tokens.toLocaleString("en");
    document.getElementById("cost").textContent = "$" + p.cost_usd.toFixed(4);
    var st = document.getElementById("status");
    st.textContent = p.status;
    st.className = "badge status-" + p.status;
    live.textContent = "Live: " + p.messages + " lines stored, " + p.resolved + " of " +
      p.planned + " turns.";
  });
  source.addEventListener("done", function (ev) {
    var d = JSON.parse(ev.data);
    live.textContent = "The run is " + d.status + ". Reload for the codes.";
    live.classList.add("finished");
    source.close();
  });
})();
