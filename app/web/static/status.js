// Live refresh for the gonogo status page: polls /status.json and redraws in place.
// The server renders the same page first, so it still works without JavaScript.
(function () {
  "use strict";

  var refreshMs = Number(document.body.dataset.refreshSeconds || 2) * 1000;
  var maxBackoffMs = 30000;
  var decisionWords = { go: "go", no_go: "no go", rollback: "rollback" };
  var previous = {};

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) {
        node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
      }
    });
    return node;
  }

  function localTime(iso) {
    if (!iso) return "";
    var moment = new Date(iso);
    return isNaN(moment.getTime()) ? iso : moment.toLocaleTimeString();
  }

  function timeEl(iso) {
    return el("time", { datetime: iso || "", text: localTime(iso) });
  }

  function badge(decision, label, colour, tag) {
    return el(tag || "p", { class: "badge badge-" + decision }, [
      el("span", { class: "icon", "aria-hidden": "true" }),
      el("span", { class: "decision-text", text: label }),
      colour ? " " : null,
      colour ? el("span", { class: "colour", text: "(" + colour + ")" }) : null,
    ]);
  }

  function gateCard(gate) {
    var rows = gate.criteria.map(function (c) {
      return el("tr", { class: "outcome-" + c.outcome + (c.dry_run ? " dry-run" : "") }, [
        el("th", { scope: "row" }, [c.name, c.dry_run ? " " : null, c.dry_run ? el("span", { class: "tag", text: "dry run" }) : null]),
        el("td", { class: "value" }, [c.value_text, c.baseline_text ? el("span", { class: "baseline", text: c.baseline_text }) : null]),
        el("td", { class: "cond", text: c.go }),
        el("td", { class: "cond", text: c.rollback || "\u2014" }),
        el("td", {}, [
          el("span", { class: "outcome", text: c.outcome }),
          el("span", { class: "reason", text: c.reason }),
          c.comparison ? el("span", { class: "comparison", text: c.comparison }) : null,
        ]),
      ]);
    });
    var headings = ["Criterion", "Value", "Go", "Rollback", "Outcome"].map(function (h) {
      return el("th", { scope: "col", text: h });
    });
    var meta = [el("span", { class: "steady", text: gate.steady.text }), " \u00b7 every " + gate.interval + " \u00b7 "];
    if (gate.evaluated_at) meta.push("evaluated ", timeEl(gate.evaluated_at));
    else meta.push("not evaluated yet");
    return el("article", {
      class: "gate decision-" + gate.decision,
      "data-gate": gate.name,
      "aria-labelledby": "gate-" + gate.name,
    }, [
      el("header", { class: "gate-head" }, [
        el("h3", { id: "gate-" + gate.name, text: gate.name }),
        badge(gate.decision, gate.label, gate.colour),
      ]),
      gate.description ? el("p", { class: "description", text: gate.description }) : null,
      el("p", { class: "meta" }, meta),
      gate.reasons.length
        ? el("ul", { class: "reasons", "aria-label": "Reasons" }, gate.reasons.map(function (r) {
            return el("li", { text: r });
          }))
        : null,
      gate.dry_run_reasons && gate.dry_run_reasons.length
        ? el("ul", { class: "reasons dry-run-reasons", "aria-label": "Dry-run reasons (not deciding)" }, gate.dry_run_reasons.map(function (r) {
            return el("li", { text: r });
          }))
        : null,
      el("div", { class: "table-wrap" }, [
        el("table", { class: "criteria" }, [
          el("caption", { class: "visually-hidden", text: "Criteria of " + gate.name }),
          el("thead", {}, [el("tr", {}, headings)]),
          el("tbody", {}, rows),
        ]),
      ]),
    ]);
  }

  function checksTable(checks) {
    if (!checks.length) return el("p", { class: "empty", text: "No checks are running." });
    var headings = ["Gate", "Version", "Where", "Started", "Now", "Missing sign-offs"].map(function (h) {
      return el("th", { scope: "col", text: h });
    });
    var rows = checks.map(function (check) {
      var where = [check.environment, check.stage].filter(Boolean).join(" / ") || "\u2014";
      return el("tr", { "data-check": check.id }, [
        el("th", { scope: "row", text: check.gate }),
        el("td", {}, [el("a", { href: "/checks/" + encodeURIComponent(check.id), text: check.version })]),
        el("td", { text: where }),
        el("td", {}, [timeEl(check.created_at)]),
        el("td", {}, [badge(check.decision, check.label, null, "span")]),
        el("td", { text: check.missing_signoffs.join(", ") || "none" }),
      ]);
    });
    return el("div", { class: "table-wrap" }, [
      el("table", { class: "checks" }, [el("thead", {}, [el("tr", {}, headings)]), el("tbody", {}, rows)]),
    ]);
  }

  function render(status) {
    var gateList = document.getElementById("gate-list");
    var cards = status.gates.map(gateCard);
    if (!cards.length) {
      cards = [el("p", { class: "empty", text: "No gates are defined. Add gate files to GONOGO_GATES_DIR or PUT /api/v1/gates/{name}." })];
    }
    gateList.replaceChildren.apply(gateList, cards);
    var checkList = document.getElementById("check-list");
    checkList.replaceChildren(checksTable(status.checks));

    var summary = document.getElementById("summary");
    summary.replaceChildren.apply(summary, Object.keys(status.summary).map(function (decision) {
      return el("span", { class: "pill pill-" + decision, text: status.summary[decision] + " " + decisionWords[decision] });
    }));
    var updated = document.getElementById("updated");
    updated.setAttribute("datetime", status.generated_at);
    updated.textContent = localTime(status.generated_at);

    var changes = [];
    status.gates.forEach(function (gate) {
      var before = previous[gate.name];
      if (before && before !== gate.label) changes.push(gate.name + ": " + before + " to " + gate.label);
      previous[gate.name] = gate.label;
    });
    if (changes.length) document.getElementById("announcer").textContent = "Decision changed. " + changes.join(". ");
  }

  function setConnection(text, lost) {
    var node = document.getElementById("connection");
    node.textContent = text;
    node.classList.toggle("lost", lost);
  }

  function poll(delay) {
    window.setTimeout(function () {
      fetch("/status.json", { cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (status) {
          render(status);
          setConnection("live, every " + refreshMs / 1000 + " s", false);
          poll(refreshMs);
        })
        .catch(function () {
          var next = Math.min(maxBackoffMs, delay * 2);
          setConnection("connection lost, retrying in " + Math.round(next / 1000) + " s", true);
          poll(next);
        });
    }, delay);
  }

  document.querySelectorAll("[data-gate]").forEach(function (card) {
    var text = card.querySelector(".decision-text");
    if (text) previous[card.dataset.gate] = text.textContent;
  });
  document.querySelectorAll("time[datetime]").forEach(function (node) {
    node.textContent = localTime(node.getAttribute("datetime"));
  });
  poll(refreshMs);
})();
