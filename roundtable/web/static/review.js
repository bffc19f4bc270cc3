// Review page: keys 1-9 toggle flags, l level, Enter commit, s skip, u undo, arrows move,
// r reveal (after commit). Every action is one POST, saved by the server at once.
(function () {
  "use strict";
  var root = document.getElementById("review");
  if (!root) { return; }
  var base = root.dataset.url;
  var position = Number(root.dataset.position);
  var total = Number(root.dataset.total);
  var flags = root.dataset.flags.split(",");
  var say = document.getElementById("say");
  var busy = false;
  // This sitting's changes (item positions), as in the terminal app: u undoes the last one,
  // going back to its item. Kept per tab (sessionStorage), so a reload keeps the sitting.
  var historyKey = "roundtable.review.history:" + base;
  function history() {
    try { return JSON.parse(sessionStorage.getItem(historyKey) || "[]"); } catch (e) { return []; }
  }
  function setHistory(h) {
    try { sessionStorage.setItem(historyKey, JSON.stringify(h)); } catch (e) { /* private mode */ }
  }

  function go(pos) { window.location.search = "?item=" + (pos + 1); }

  function show(data) {
    var st = data.state;
    document.querySelectorAll("button.flag").forEach(function (b) {
      b.setAttribute("aria-pressed", st.values[b.dataset.flag] ? "true" : "false");
    });
    var lv = document.getElementById("level-value");
    if (lv) { lv.textContent = st.level || "none"; }
    document.getElementById("state-text").textContent =
      st.committed ? "committed" : (st.skipped ? "skipped" : "open");
    document.getElementById("reveal-btn").disabled = !st.committed;
    var p = data.progress;
    document.getElementById("review-progress").textContent =
      p.committed + " committed, " + p.skipped + " skipped";
    document.getElementById("review-bar").value = p.committed;
    document.getElementById("note").value = st.note;
  }

  function reveal(r) {
    var box = document.getElementById("reveal");
    var rows = Object.keys(r.judges).map(function (j) {
      var cells = flags.map(function (f) {
        var v = r.judges[j][f];
        return "<td>" + (v === null ? "–" : (v ? "yes" : "no")) + "</td>";
      }).join("");
      return "<tr><th scope=\"row\"></th>" + cells + "</tr>";
    });
    var table = document.createElement("table");
    table.className = "codes";
    table.innerHTML = "<thead><tr><th scope=\"col\">judge</th>" + flags.map(function (f) {
      return "<th scope=\"col\"></th>";
    }).join("") + "</tr></thead><tbody>" + rows.join("") + "</tbody>";
    var heads = table.querySelectorAll("thead th");
    flags.forEach(function (f, i) { heads[i + 1].textContent = f; });
    var names = table.querySelectorAll("tbody th");
    Object.keys(r.judges).forEach(function (j, i) { names[i].textContent = j; });
    box.innerHTML = "<h3>Judges (revealed)</h3>";
    box.appendChild(table);
    var ids = document.createElement("p");
    ids.textContent = "True models: " + Object.keys(r.identities).map(function (n) {
      return n + " = " + r.identities[n];
    }).join(", ");
    box.appendChild(ids);
    box.hidden = false;
  }

  function act(body, message, at) {
    if (busy) { return; }
    busy = true;
    var where = at === undefined ? position : at;
    fetch(base + "/" + (where + 1), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)
    }).then(function (r) { return r.json(); }).then(function (data) {
      busy = false;
      if (data.error) { say.textContent = data.error; say.className = "say error"; return; }
      var changed = body.action !== "undo" && body.action !== "reveal" && !data.unchanged;
      if (changed) { var h = history(); h.push(where); setHistory(h); }
      if (where !== position) {  // an undo on an earlier item of this sitting: go there
        go(where);
        return;
      }
      show(data);
      say.className = "say ok";
      var stamp = " · saved " + new Date().toLocaleTimeString();
      if (body.action === "reveal") { reveal(data.reveal); say.textContent = "Revealed."; return; }
      if (body.action === "undo") {
        say.textContent = data.unchanged ? "Nothing to undo on this item." : "Undid the last change" + stamp;
        return;
      }
      if (body.action === "commit" || body.action === "skip") {
        if (data.next !== null && data.next !== undefined) { go(data.next); return; }
        say.textContent = "Item " + (position + 1) + (body.action === "commit" ? " committed" : " skipped") +
          stamp + ". This was the last item.";
        return;
      }
      say.textContent = (message || "Saved") + stamp;
    }).catch(function () { busy = false; say.textContent = "Not saved: the server did not answer."; say.className = "say error"; });
  }

  function run(action) {
    if (action === "prev") { if (position > 0) { go(position - 1); } else { say.textContent = "Already at the first item."; } return; }
    if (action === "next") { if (position + 1 < total) { go(position + 1); } else { say.textContent = "Already at the last item."; } return; }
    if (action === "note") { act({action: "note", text: document.getElementById("note").value}, "Note saved"); return; }
    if (action === "undo") {
      var h = history();
      var at = h.length ? h.pop() : position;
      setHistory(h);
      act({action: "undo"}, "Undone", at);
      return;
    }
    if (action === "reveal" && document.getElementById("reveal-btn").disabled) {
      say.textContent = "Reveal is locked: commit your codes for this item first (Enter).";
      return;
    }
    act({action: action});
  }

  document.querySelectorAll("button.flag").forEach(function (b) {
    b.addEventListener("click", function () {
      act({action: "toggle", index: Number(b.dataset.index)}, b.dataset.flag + " toggled");
    });
  });
  document.querySelectorAll("button[data-action]").forEach(function (b) {
    b.addEventListener("click", function () { run(b.dataset.action); });
  });
  var keys = {"l": "level", "Enter": "commit", "n": "commit", "s": "skip", "u": "undo",
              "ArrowLeft": "prev", "ArrowRight": "next", "r": "reveal"};
  var note = document.getElementById("note");
  note.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { note.blur(); }
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run("note"); note.blur(); }
  });
  document.addEventListener("keydown", function (ev) {
    var tag = ev.target.tagName;
    if (tag === "TEXTAREA" || tag === "INPUT" || tag === "SELECT" || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (ev.target.tagName === "SUMMARY" && ev.key === "Enter") { return; }
    var n = Number(ev.key);
    if (ev.key.length === 1 && n >= 1 && n <= flags.length) {
      ev.preventDefault();
      act({action: "toggle", index: n - 1}, flags[n - 1] + " toggled");
      return;
    }
    if (ev.key === "e") { ev.preventDefault(); note.focus(); return; }
    if (ev.key === "?") { var help = document.querySelector("details.help"); help.open = !help.open; return; }
    if (keys[ev.key]) { ev.preventDefault(); run(keys[ev.key]); }
  });
})();
