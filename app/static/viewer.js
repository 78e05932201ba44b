// mbc-cds card viewer: plain JavaScript, no build step, no third-party code.
// Data from the service is only ever put into the page as text (textContent) or through renderMarkdown,
// which escapes HTML before it adds its own few tags.
"use strict";

(function () {
  const SERVICE = "/cds-services/mbc-palliative-care";
  const ORDER_SIGN = "/cds-services/mbc-order-sign";
  // Feedback goes to the service that issued the cards on screen.
  let currentService = SERVICE;
  const OVERVIEW_RULE = "mbc-overview";
  const INDICATOR_TEXT = { critical: "Critical", warning: "Warning", info: "Info" };

  // ---------------------------------------------------------------------------------------------------
  // a tiny safe markdown renderer: escape first, then **bold**, *italic*, `code`, lists, line breaks
  // ---------------------------------------------------------------------------------------------------
  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function inline(escaped) {
    return escaped
      .replace(/`([^`]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*\w])\*([^*\s][^*]*?)\*(?!\*)/g, "$1<em>$2</em>");
  }

  function renderMarkdown(text) {
    const lines = String(text || "").replace(/\r\n?/g, "\n").split("\n");
    const out = [];
    let list = null; // "ul" | "ol"
    let para = [];
    const flushPara = () => {
      if (para.length) out.push("<p>" + para.join("<br>") + "</p>");
      para = [];
    };
    const closeList = () => {
      if (list) out.push("</" + list + ">");
      list = null;
    };
    for (const raw of lines) {
      const line = raw.trimEnd();
      const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
      const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        flushPara();
        const kind = bullet ? "ul" : "ol";
        if (list !== kind) {
          closeList();
          out.push("<" + kind + ">");
          list = kind;
        }
        out.push("<li>" + inline(escapeHtml((bullet || numbered)[1])) + "</li>");
      } else if (!line.trim()) {
        flushPara();
        closeList();
      } else {
        closeList();
        para.push(inline(escapeHtml(line)));
      }
    }
    flushPara();
    closeList();
    return out.join("");
  }

  // ---------------------------------------------------------------------------------------------------
  // Bundle -> prefetch (same rules as app/hook_requests.py)
  // ---------------------------------------------------------------------------------------------------
  function rewriteRefs(value, map) {
    if (Array.isArray(value)) return value.map((v) => rewriteRefs(v, map));
    if (value && typeof value === "object") {
      const out = {};
      for (const [k, v] of Object.entries(value)) {
        out[k] = k === "reference" && typeof v === "string" && map[v] ? map[v] : rewriteRefs(v, map);
      }
      return out;
    }
    return value;
  }

  function bundleResources(bundle) {
    if (!bundle || bundle.resourceType !== "Bundle") throw new Error("this is not a FHIR Bundle");
    const map = {};
    const resources = [];
    for (const entry of bundle.entry || []) {
      if (!entry || typeof entry.resource !== "object" || !entry.resource) continue;
      const res = JSON.parse(JSON.stringify(entry.resource));
      const type = res.resourceType;
      if (typeof type !== "string") continue;
      const fullUrl = typeof entry.fullUrl === "string" ? entry.fullUrl : "";
      if (!res.id) {
        const req = entry.request || {};
        const url = String(req.url || "");
        if (req.method === "PUT" && url.startsWith(type + "/") && !url.includes("?")) res.id = url.slice(type.length + 1);
        else if (fullUrl.startsWith("urn:uuid:")) res.id = fullUrl.slice(9);
      }
      if (fullUrl && res.id) map[fullUrl] = type + "/" + res.id;
      resources.push(res);
    }
    return resources.map((r) => rewriteRefs(r, map));
  }

  function typeOfTemplate(template) {
    return template.split("?", 1)[0].split("/", 1)[0];
  }

  function prefetchFromResources(resources, templates, patientId) {
    const byType = {};
    for (const r of resources) (byType[r.resourceType] = byType[r.resourceType] || []).push(r);
    const prefetch = {};
    for (const [key, template] of Object.entries(templates)) {
      const type = typeOfTemplate(template);
      const items = byType[type] || [];
      const isRead = !template.includes("?") && template.split("?", 1)[0].includes("/");
      if (isRead) {
        const match = type === "Patient" ? items.filter((r) => r.id === patientId) : items.slice(0, 1);
        prefetch[key] = match.length ? match[0] : null;
      } else {
        prefetch[key] = {
          resourceType: "Bundle", type: "searchset", total: items.length,
          entry: items.map((r) => ({ resource: r, search: { mode: "match" } })),
        };
      }
    }
    return prefetch;
  }

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  async function requestFromBundle(bundle) {
    const resources = bundleResources(bundle);
    const patient = resources.find((r) => r.resourceType === "Patient" && r.id);
    if (!patient) throw new Error("the Bundle has no Patient with an id");
    const discovery = await getJson("/cds-services");
    const service = (discovery.services || []).find((s) => SERVICE.endsWith("/" + s.id));
    if (!service) throw new Error("discovery does not list the service");
    return {
      hook: "patient-view",
      hookInstance: uuid4(),
      context: { patientId: patient.id, userId: "Practitioner/example" },
      prefetch: prefetchFromResources(resources, service.prefetch || {}, patient.id),
    };
  }

  // ---------------------------------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------------------------------
  async function getJson(url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" } });
    const data = await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = new Error((data && (data.detail || data.error)) || "HTTP " + resp.status);
      err.status = resp.status;
      err.code = data && data.error;
      throw err;
    }
    return data;
  }

  async function postJson(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const data = await resp.json().catch(() => null);
    return { ok: resp.ok, status: resp.status, data };
  }

  // ---------------------------------------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function safeHttpUrl(url) {
    try {
      const u = new URL(url, window.location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function markdownNode(text, cls) {
    const div = el("div", { class: cls || "detail" });
    div.innerHTML = renderMarkdown(text); // renderMarkdown escapes all data before adding its own tags
    return div;
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = "status" + (kind ? " " + kind : "");
  }

  // ---------------------------------------------------------------------------------------------------
  // cards: collapsed to indicator, summary and source; critical cards open. In the order the service sent.
  // ---------------------------------------------------------------------------------------------------
  function ruleOf(card) {
    return (card.source && card.source.topic && card.source.topic.code) || "";
  }

  // The detail ends with a "**Source:** ..." paragraph that repeats card.source at length; the viewer shows
  // one citation per card (the source line) and keeps the long form as that line's tooltip.
  function splitDetail(detail) {
    const paras = String(detail || "").split(/\n\s*\n/);
    const i = paras.findIndex((p) => /^\*\*Source:\*\*/.test(p.trim()));
    if (i < 0) return { body: String(detail || ""), citation: "" };
    const citation = paras[i].trim().replace(/^\*\*Source:\*\*\s*/, "").replace(/\s*Suggestions are drafts[^.]*\.\s*$/, "");
    paras.splice(i, 1);
    return { body: paras.join("\n\n"), citation };
  }

  function sourceNode(card, citation) {
    const src = card.source || {};
    const label = String(src.label || "unknown").replace(/^mbc-cds:\s*/, "");
    const p = el("p", { class: "source", title: citation || null }, "Source: ");
    const url = src.url && safeHttpUrl(src.url);
    if (url) p.append(el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: label }));
    else p.append(document.createTextNode(label));
    const rule = ruleOf(card);
    if (rule) p.append(el("span", { class: "rule", text: " · rule " + rule }));
    return p;
  }

  function linksNode(card) {
    const sourceUrl = card.source && card.source.url && safeHttpUrl(card.source.url);
    // A link to the page the source line already links is the same citation twice.
    const links = (card.links || []).filter((l) => safeHttpUrl(l.url) && safeHttpUrl(l.url) !== sourceUrl);
    if (!links.length) return null;
    const ul = el("ul", { class: "links" });
    for (const l of links) {
      ul.append(el("li", {}, el("a", { href: safeHttpUrl(l.url), target: "_blank", rel: "noopener noreferrer",
        text: l.label + (l.type === "smart" ? " (SMART app)" : "") })));
    }
    return ul;
  }

  // CDS Hooks 2.0 feedback: accepted with acceptedSuggestions, or overridden with an overrideReason.
  async function postFeedback(card, item) {
    const body = { feedback: [Object.assign({ card: card.uuid, outcomeTimestamp: new Date().toISOString() }, item)] };
    try {
      const r = await postJson(currentService + "/feedback", body);
      if (r.ok) return { ok: true, text: r.data && r.data.stored ? "feedback stored" : "feedback was already stored" };
      return { ok: false, text: "feedback failed (HTTP " + r.status + "): " + ((r.data && (r.data.detail || r.data.error)) || "no details") };
    } catch (e) {
      return { ok: false, text: "feedback failed: " + e.message };
    }
  }

  function showResult(node, result, prefix) {
    node.textContent = prefix + ": " + result.text + ".";
    node.className = "result " + (result.ok ? "ok" : "error");
  }

  function feedbackNode(card) {
    if (!card.uuid) return null;
    const box = el("div", { class: "actions" });
    const result = el("p", { class: "result", role: "status", "aria-live": "polite" });
    const suggestions = card.suggestions || [];
    // "any": each suggestion on its own; "at-most-one": accepting one closes the others.
    const single = card.selectionBehavior === "at-most-one";
    const accepts = [];
    let dismissed = false;

    if (suggestions.length) {
      const ul = el("ul", { class: "suggestions", "aria-label": single ? "Suggestions (accept at most one)" : "Suggestions (accept any)" });
      ul.dataset.selection = card.selectionBehavior || "";
      for (const s of suggestions) {
        const li = el("li", { class: "suggestion" });
        const action = (s.actions || [])[0] || {};
        const res = action.resource || {};
        const head = el("div", { class: "suggestion-head" });
        head.append(el("span", { class: "suggestion-label", text: s.label }));
        if (s.isRecommended) head.append(el("span", { class: "recommended", text: " recommended" }));
        if (res.resourceType) {
          head.append(el("span", { class: "muted", text: " (draft " + res.resourceType + (res.priority ? ", " + res.priority : "") + ")" }));
        }
        if (s.uuid) {
          const btn = el("button", { type: "button", class: "accept", "aria-label": "Accept: " + s.label, text: "Accept" });
          btn.addEventListener("click", async () => {
            btn.disabled = true;
            const r = await postFeedback(card, { outcome: "accepted", acceptedSuggestions: [{ id: s.uuid }] });
            showResult(result, r, "Accepted " + JSON.stringify(s.label));
            if (!r.ok) {
              btn.disabled = dismissed;
              return;
            }
            li.classList.add("accepted");
            btn.textContent = "Accepted";
            if (single) accepts.forEach((b) => (b.disabled = true));
          });
          accepts.push(btn);
          head.append(" ", btn);
        }
        li.append(head);
        if (res.resourceType) {
          const d = el("details", { class: "resource" }, el("summary", { text: "Draft resource" }));
          d.append(el("pre", { text: JSON.stringify(res, null, 2) }));
          li.append(d);
        }
        ul.append(li);
      }
      box.append(ul);
    }

    const reasons = card.overrideReasons || [];
    const row = el("div", { class: "dismiss" });
    const selectId = "reason-" + card.uuid;
    let select = null;
    if (reasons.length) {
      select = el("select", { id: selectId });
      select.append(el("option", { value: "", text: "No reason given" }));
      reasons.forEach((r, i) => select.append(el("option", { value: String(i), text: r.display || r.code })));
      row.append(el("label", { for: selectId, text: "Reason " }), select, " ");
    }
    const dismiss = el("button", { type: "button", class: "dismiss-btn", "aria-label": "Dismiss: " + card.summary, text: "Dismiss card" });
    dismiss.addEventListener("click", async () => {
      const item = { outcome: "overridden" };
      if (select && select.value !== "") item.overrideReason = { reason: reasons[Number(select.value)] };
      dismiss.disabled = true;
      if (select) select.disabled = true;
      const r = await postFeedback(card, item);
      showResult(result, r, "Dismissed");
      if (!r.ok) {
        dismiss.disabled = false;
        if (select) select.disabled = false;
        return;
      }
      dismissed = true;
      accepts.forEach((b) => (b.disabled = true));
      const holder = box.closest("article, .overview");
      if (holder) holder.classList.add("dismissed");
    });
    row.append(dismiss);
    box.append(row, result);
    return box;
  }

  let cardCount = 0;

  function cardNode(card) {
    const indicator = INDICATOR_TEXT[card.indicator] ? card.indicator : "info";
    const open = indicator === "critical";
    const bodyId = "card-body-" + ++cardCount;
    const art = el("article", { class: "card " + indicator + (open ? " open" : ""), "data-rule": ruleOf(card),
      "data-uuid": card.uuid || null, "aria-label": INDICATOR_TEXT[indicator] + ": " + card.summary });
    const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": open ? "true" : "false", "aria-controls": bodyId });
    toggle.append(el("span", { class: "indicator", text: INDICATOR_TEXT[indicator] }), " ",
      el("span", { class: "summary-text", text: card.summary }));
    const n = (card.suggestions || []).length;
    if (n) toggle.append(el("span", { class: "count", text: n + " suggestion" + (n === 1 ? "" : "s") }));
    const { body, citation } = splitDetail(card.detail);
    art.append(el("h3", { class: "summary" }, toggle), sourceNode(card, citation));
    const content = el("div", { class: "card-body", id: bodyId, hidden: !open });
    if (body) content.append(markdownNode(body));
    const links = linksNode(card);
    if (links) content.append(links);
    const fb = feedbackNode(card);
    if (fb) content.append(fb);
    art.append(content);
    toggle.addEventListener("click", () => {
      const nowOpen = content.hidden;
      content.hidden = !nowOpen;
      toggle.setAttribute("aria-expanded", nowOpen ? "true" : "false");
      art.classList.toggle("open", nowOpen);
    });
    return art;
  }

  // The overview card becomes the compact patient header line (phase, sites), not a card above the others.
  function overviewNode(card) {
    const detail = card.detail || "";
    const wrap = el("div", { class: "overview", "data-rule": OVERVIEW_RULE, "data-uuid": card.uuid || null });
    const phase = /\*\*Phase:\s*([^*]+)\*\*/.exec(detail);
    const sites = /\*\*Metastatic sites:\*\*\s*(.+)/.exec(detail);
    const phaseName = phase ? phase[1].trim() : "not stated";
    const line = el("p", { class: "overview-line" });
    line.append(el("span", { class: "phase phase-" + phaseName.split(/\s/)[0], text: "Phase: " + phaseName }), " · ",
      el("span", { class: "sites", text: "Metastatic sites: " + (sites ? sites[1].trim() : "none recorded") }));
    wrap.append(line);
    const evidence = [];
    if (phase) {
      const lines = detail.split("\n");
      let i = lines.findIndex((l) => l.includes(phase[0])) + 1;
      while (i > 0 && i < lines.length && /^\s*-\s+/.test(lines[i])) evidence.push(lines[i++].replace(/^\s*-\s+/, ""));
    }
    const more = el("details", { class: "overview-more" }, el("summary", { text: evidence.length ? "Why this phase (" + evidence.length + ")" : "Overview" }));
    if (evidence.length) more.append(markdownNode(evidence.map((e) => "- " + e).join("\n"), "evidence"));
    const { body, citation } = splitDetail(detail.replace(/\n\s*\n\*\*Other cards for this patient\*\*[\s\S]*$/, ""));
    const full = el("details", {}, el("summary", { text: "Full overview" }));
    full.append(markdownNode(body));
    more.append(full, sourceNode(card, citation));
    const fb = feedbackNode(card);
    if (fb) more.append(fb);
    wrap.append(more);
    return wrap;
  }

  function age(birthDate, now) {
    const b = /^(\d{4})-(\d{2})-(\d{2})/.exec(birthDate || "");
    if (!b) return null;
    let years = now.getUTCFullYear() - Number(b[1]);
    if (now.getUTCMonth() + 1 < Number(b[2]) || (now.getUTCMonth() + 1 === Number(b[2]) && now.getUTCDate() < Number(b[3]))) years--;
    return years >= 0 && years < 150 ? years : null;
  }

  function patientName(patient) {
    const name = (patient.name || [])[0];
    if (!name) return "";
    if (name.text) return name.text;
    return [...(name.given || []), name.family || ""].join(" ").trim();
  }

  // The header is set from the request just sent (sample or pasted Bundle), never from the sample list.
  function showPatient(request) {
    const patientId = (request.context && request.context.patientId) || "";
    const prefetch = request.prefetch || {};
    let patient = prefetch.patient && prefetch.patient.resourceType === "Patient" ? prefetch.patient : null;
    if (!patient) patient = Object.values(prefetch).find((v) => v && v.resourceType === "Patient") || { id: patientId };
    const parts = [];
    const a = age(patient.birthDate, new Date());
    if (patient.gender) parts.push(patient.gender);
    if (a !== null) parts.push(a + " years");
    if (patient.birthDate) parts.push("born " + patient.birthDate);
    parts.push("Patient/" + (patient.id || patientId));
    $("patient-name").textContent = patientName(patient) || "Patient " + (patient.id || patientId);
    $("patient-facts").textContent = parts.join(" · ");
    $("patient").hidden = false;
  }

  function showCards(cards) {
    const overview = cards.find((c) => ruleOf(c) === OVERVIEW_RULE);
    const others = cards.filter((c) => c !== overview);
    $("overview-body").replaceChildren(overview ? overviewNode(overview) : el("p", { class: "muted", text: "No overview card: the service found no metastatic breast cancer in this record." }));
    const list = $("cards");
    list.replaceChildren(...others.map(cardNode));
    if (!others.length) list.append(el("p", { class: "muted", text: "No cards." }));
    $("cards-section").hidden = false;
  }

  // ---------------------------------------------------------------------------------------------------
  // timeline: drawn by the server (/demo/timeline.svg) from the facts the rules read for this request
  // ---------------------------------------------------------------------------------------------------
  function resourcesOf(request) {
    const out = {};
    for (const value of Object.values(request.prefetch || {})) {
      if (!value || typeof value !== "object") continue;
      const items = value.resourceType === "Bundle" ? (value.entry || []).map((e) => e && e.resource) : [value];
      for (const r of items) if (r && r.resourceType && r.id) out[r.resourceType + "/" + r.id] = r;
    }
    return out;
  }

  let currentResources = {};

  function showResource(ref) {
    const res = currentResources[ref];
    $("resource-title").textContent = ref;
    $("resource-json").textContent = res ? JSON.stringify(res, null, 2) : "This resource is not in the request.";
    $("resource-view").hidden = false;
  }

  async function showTimeline(request) {
    const box = $("timeline-body");
    box.replaceChildren(el("p", { class: "muted", text: "Drawing the timeline…" }));
    $("timeline").hidden = false;
    try {
      const resp = await fetch("/demo/timeline.svg", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const doc = new DOMParser().parseFromString(await resp.text(), "image/svg+xml");
      const svg = doc.documentElement;
      if (svg.nodeName !== "svg") throw new Error("the timeline is not SVG");
      currentResources = resourcesOf(request);
      box.replaceChildren(document.importNode(svg, true));
      $("resource-view").hidden = true;
      document.body.dataset.timeline = "ready";
    } catch (e) {
      box.replaceChildren(el("p", { class: "muted", text: "No timeline: " + e.message }));
      document.body.dataset.timeline = "failed";
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // firing the hook
  // ---------------------------------------------------------------------------------------------------
  let busy = false;

  async function fire(makeRequest, service = SERVICE) {
    if (busy) return;
    busy = true;
    $("fire-sample").disabled = true;
    $("fire-bundle").disabled = true;
    setStatus("Building the request…");
    try {
      const request = await makeRequest();
      setStatus("Calling the service…");
      const t0 = performance.now();
      const r = await postJson(service, request);
      currentService = service;
      $("request-json").textContent = JSON.stringify(request, null, 2);
      $("response-json").textContent = JSON.stringify(r.data, null, 2);
      $("exchange").hidden = false;
      delete document.body.dataset.timeline;
      if (!r.ok || !r.data || !Array.isArray(r.data.cards)) {
        setStatus("The service answered HTTP " + r.status + ": " + ((r.data && (r.data.detail || r.data.error)) || "no details"), "error");
        return;
      }
      showPatient(request);
      showCards(r.data.cards);
      showTimeline(request);
      const n = r.data.cards.length;
      setStatus(n + " card" + (n === 1 ? "" : "s") + " in " + Math.round(performance.now() - t0) + " ms.", "ok");
    } catch (e) {
      setStatus("Failed: " + e.message, "error");
    } finally {
      busy = false;
      $("fire-sample").disabled = !$("sample-select").value;
      $("fire-bundle").disabled = false;
    }
  }

  async function init() {
    // Every point of the timeline links its resource: show it from the request, not by navigating away.
    $("timeline-body").addEventListener("click", (ev) => {
      const link = ev.target.closest && ev.target.closest("a[data-ref]");
      if (!link) return;
      ev.preventDefault();
      showResource(link.getAttribute("data-ref"));
    });
    const select = $("sample-select");
    select.addEventListener("change", () => {
      const opt = select.selectedOptions[0];
      $("sample-description").textContent = (opt && opt.dataset.description) || "";
      $("fire-sample").disabled = !select.value;
    });
    $("fire-sample").addEventListener("click", () =>
      fire(() => getJson("/demo/request/" + encodeURIComponent(select.value))));
    $("fire-bundle").addEventListener("click", () =>
      fire(() => {
        let bundle;
        try {
          bundle = JSON.parse($("bundle-input").value);
        } catch (e) {
          throw new Error("the text is not valid JSON (" + e.message + ")");
        }
        return requestFromBundle(bundle);
      }));
    try {
      const data = await getJson("/demo/samples");
      const options = [el("option", { value: "", text: "Choose a sample patient" })];
      for (const s of data.samples || []) {
        const opt = el("option", { value: s.id, text: s.title ? s.title + " (" + s.id + ")" : s.id });
        opt.dataset.description = s.description || "";
        options.push(opt);
      }
      select.replaceChildren(...options);
      select.disabled = false;
      document.body.dataset.ready = "true";
    } catch (e) {
      if (e.status === 404 && e.code === "demo-mode-off") {
        const banner = $("demo-off");
        banner.textContent = "This viewer needs demo mode: this service verifies EHR tokens " +
          "(MBC_CDS_REQUIRE_JWT=true), so it does not serve sample patients and will not answer unsigned calls. " +
          "Run `mbc-cds demo` (or set MBC_CDS_REQUIRE_JWT=false on a local, synthetic-data instance).";
        banner.hidden = false;
        $("choose").hidden = true;
        document.body.dataset.ready = "demo-off";
      } else {
        select.replaceChildren(el("option", { value: "", text: "No sample patients (" + e.message + ")" }));
        document.body.dataset.ready = "true";
      }
    }
  }

  // order-sign with a sample draft order (the sample patient chosen above): one isolated control.
  async function initOrderSign() {
    const drafts = $("draft-select");
    const button = $("fire-order-sign");
    const sync = () => (button.disabled = !(drafts.value && $("sample-select").value));
    drafts.addEventListener("change", sync);
    $("sample-select").addEventListener("change", sync);
    button.addEventListener("click", () =>
      fire(() => getJson("/demo/order-request/" + encodeURIComponent($("sample-select").value) +
                         "?draft=" + encodeURIComponent(drafts.value)), ORDER_SIGN));
    try {
      const data = await getJson("/demo/drafts");
      const options = [el("option", { value: "", text: "Choose a draft order" })];
      for (const d of data.drafts || []) options.push(el("option", { value: d.id, text: d.title || d.id }));
      drafts.replaceChildren(...options);
      drafts.disabled = false;
    } catch (e) {
      $("order-sign-row").hidden = true;
    }
  }

  window.mbcViewer = { renderMarkdown, escapeHtml, bundleResources, prefetchFromResources, cardNode, splitDetail };
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("DOMContentLoaded", initOrderSign);
})();
