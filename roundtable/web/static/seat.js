// The human seat page: @Name completion in the reply box (keyboard usable), sending the
// answer as JSON, and polling the seat's state so a new turn shows up by itself.
(function () {
  "use strict";
  var seat = document.getElementById("seat");
  if (!seat) { return; }
  var api = seat.getAttribute("data-api");
  var shownRound = seat.getAttribute("data-round");
  var poll = parseInt(seat.getAttribute("data-poll"), 10) || 1000;
  var box = document.getElementById("reply");
  var list = document.getElementById("mentions");
  var form = document.getElementById("answer");
  var statusLine = document.getElementById("answer-status");
  var sent = false;

  // ------------------------------------------------------------ @-completion
  var peers = [];
  var peersNode = document.getElementById("peers");
  if (peersNode) { peers = JSON.parse(peersNode.textContent); }
  var options = [];
  var active = -1;

  function fragment() {
    var upto = box.value.slice(0, box.selectionStart);
    var m = /(^|\s)@([^\s@]*)$/.exec(upto);
    return m ? {start: upto.length - m[2].length - 1, text: m[2]} : null;
  }

  function close() {
    list.hidden = true;
    list.innerHTML = "";
    options = [];
    active = -1;
    box.setAttribute("aria-expanded", "false");
    box.removeAttribute("aria-activedescendant");
  }

  function highlight(i) {
    active = i;
    Array.prototype.forEach.call(list.children, function (li, j) {
      li.setAttribute("aria-selected", j === i ? "true" : "false");
    });
    if (i >= 0) { box.setAttribute("aria-activedescendant", "mention-" + i); }
  }

  function open() {
    var f = fragment();
    if (!f) { close(); return; }
    var low = f.text.toLowerCase();
    options = peers.filter(function (p) { return p.toLowerCase().indexOf(low) === 0; });
    if (!options.length) { close(); return; }
    list.innerHTML = "";
    options.forEach(function (name, i) {
      var li = document.createElement("li");
      li.id = "mention-" + i;
      li.setAttribute("role", "option");
      li.textContent = "@" + name;
      li.addEventListener("mousedown", function (ev) { ev.preventDefault(); insert(i); });
      list.appendChild(li);
    });
    list.hidden = false;
    box.setAttribute("aria-expanded", "true");
    highlight(0);
  }

  function insert(i) {
    var f = fragment();
    if (!f) { close(); return; }
    var before = box.value.slice(0, f.start);
    var after = box.value.slice(box.selectionStart);
    var word = "@" + options[i] + " ";
    box.value = before + word + after;
    var caret = (before + word).length;
    box.setSelectionRange(caret, caret);
    close();
    box.focus();
  }

  // ------------------------------------------------------------ sending
  function send() {
    if (sent) { return; }
    var text = box.value.trim();
    if (!text) { statusLine.textContent = "Type your turn first."; return; }
    var who = document.getElementById("who").value.trim();
    try { localStorage.setItem("roundtable-seat-who", who); } catch (e) { /* private mode */ }
    document.getElementById("send").disabled = true;
    fetch(api, {method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({round: parseInt(shownRound, 10), text: text, who: who})})
      .then(function (r) { return r.json().then(function (body) { return [r.ok, body]; }); })
      .then(function (res) {
        if (!res[0]) {
          statusLine.className = "error";
          statusLine.textContent = res[1].error || "not sent";
          document.getElementById("send").disabled = false;
          return;
        }
        sent = true;
        statusLine.className = "";
        statusLine.textContent = "Sent. Waiting for your next turn…";
        box.readOnly = true;
      })
      .catch(function () {
        statusLine.className = "error";
        statusLine.textContent = "The server did not answer; try again.";
        document.getElementById("send").disabled = false;
      });
  }

  if (form) {
    try { document.getElementById("who").value = localStorage.getItem("roundtable-seat-who") || ""; }
    catch (e) { /* private mode */ }
    box.addEventListener("input", open);
    box.addEventListener("click", open);
    box.addEventListener("blur", function () { setTimeout(close, 100); });
    box.addEventListener("keydown", function (ev) {
      if (!list.hidden && options.length) {
        if (ev.key === "ArrowDown") { ev.preventDefault(); highlight((active + 1) % options.length); return; }
        if (ev.key === "ArrowUp") { ev.preventDefault(); highlight((active - 1 + options.length) % options.length); return; }
        if (ev.key === "Enter" || ev.key === "Tab") { ev.preventDefault(); insert(active < 0 ? 0 : active); return; }
        if (ev.key === "Escape") { ev.preventDefault(); close(); return; }
      }
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); send(); }
    });
    form.addEventListener("submit", function (ev) { ev.preventDefault(); send(); });
    box.focus();
  }

  // ------------------------------------------------------------ live
  function check() {
    fetch(api, {credentials: "same-origin"}).then(function (r) { return r.json(); })
      .then(function (s) {
        var now = s.round === null || s.round === undefined ? "" : String(s.round);
        var badge = document.getElementById("status");
        if (badge && s.status) { badge.textContent = s.status; badge.className = "badge status-" + s.status; }
        // a new pending turn, or the shown one is no longer pending (answered, skipped)
        if (now !== shownRound && (now !== "" || sent || shownRound !== "")) {
          if (now === "" && !sent && shownRound !== "") {
            statusLine.className = "error";
            statusLine.textContent = "This turn is no longer waiting (skipped after the timeout).";
          }
          if (now !== "" || s.final) { location.reload(); return; }
        }
        if (!s.final || now !== "") { setTimeout(check, poll); }
      })
      .catch(function () { setTimeout(check, poll * 2); });
  }
  if (seat.getAttribute("data-final") !== "true" || shownRound !== "") { setTimeout(check, poll); }
})();
