// ftpdiag session report: filters, search and folding on top of plain HTML.
// Everything is already in the page; this script only hides and shows rows.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("ftpdiag-data").textContent);
  var labels = data.labels;

  function setup(section, info) {
    var tools = section.querySelector(".tools");
    var rows = Array.prototype.slice.call(section.querySelectorAll("table.tl > tbody > tr"));
    var bad = tools.querySelector(".f-bad");
    var chan = tools.querySelector(".f-chan");
    var query = tools.querySelector(".f-q");
    var count = tools.querySelector(".f-n");
    var texts = null; // lower-cased row texts, computed on the first search
    info.channels.forEach(function (c) {
      var option = document.createElement("option");
      option.value = String(c[0]);
      option.textContent = c[1];
      chan.appendChild(option);
    });
    if (!info.channels.length) chan.hidden = true;

    function apply() {
      var onlyBad = bad.checked, pipe = chan.value, q = query.value.trim().toLowerCase();
      if (q && texts === null) texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
      var shown = 0;
      for (var i = 0; i < rows.length; i++) {
        var r = rows[i];
        var keep = (!onlyBad || r.classList.contains("bad")) &&
          (!pipe || r.getAttribute("data-p") === pipe) &&
          (!q || texts[i].indexOf(q) >= 0);
        r.classList.toggle("hidden", !keep);
        if (keep) shown++;
      }
      section.querySelectorAll(".chan").forEach(function (c) {
        c.classList.toggle("hidden", !!pipe && c.getAttribute("data-p") !== pipe);
      });
      count.textContent = shown + " / " + rows.length + " " + labels.shown;
    }
    var opened = false;
    tools.querySelector(".f-fold").addEventListener("click", function () {
      opened = !opened;
      section.querySelectorAll("table.tl details").forEach(function (d) { d.open = opened; });
    });
    var timer = 0;
    bad.addEventListener("change", apply);
    chan.addEventListener("change", apply);
    query.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(apply, 120);
    });
    tools.hidden = false;
    count.textContent = rows.length + " " + labels.shown;
  }

  data.sessions.forEach(function (info) {
    var section = document.getElementById("s" + info.id);
    if (section) setup(section, info);
  });

  // "/" jumps to the first search box, as in many web applications.
  document.addEventListener("keydown", function (e) {
    var tag = (e.target && e.target.tagName) || "";
    if (e.key === "/" && tag !== "INPUT" && tag !== "SELECT" && tag !== "TEXTAREA") {
      var box = document.querySelector(".f-q");
      if (box) { e.preventDefault(); box.focus(); }
    }
  });

  // A link to a row inside a folded or filtered part shows it.
  function reveal() {
    var target = location.hash && document.getElementById(location.hash.slice(1));
    if (target) target.classList.remove("hidden");
  }
  window.addEventListener("hashchange", reveal);

  // Print (or save as PDF) with every folded reply and diagnosis open.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) {
      d.setAttribute("open", "");
      d.setAttribute("data-reopen", "");
    });
  });
  window.addEventListener("afterprint", function () {
    document.querySelectorAll("details[data-reopen]").forEach(function (d) {
      d.removeAttribute("open");
      d.removeAttribute("data-reopen");
    });
  });
})();
