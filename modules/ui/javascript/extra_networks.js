// The Extra Networks panel under the prompt (modules/ui/extra_networks_panel.py), A1111-like. Each page's gr.HTML
// runs this on load with `element`; the pane itself (controls, folder tree, cards) is HTML from the server
// (GET ./sd_extra_networks/pane), fetched again whenever the tab is shown. A card click adds its prompt text to the
// prompt (or takes it out again, as A1111 does), or switches the checkpoint; 🛠️ opens the edit dialog, saved to the
// network's name.json; ⓘ shows the file's metadata. Our own code, written against gradio 6's page.
(function () {
  "use strict";
  if (window.sdExtraNetworks) return;
  const t = (text) => (window.localization || {})[text] || text;
  const json = (r) => r.json().then((body) => (r.ok ? body : Promise.reject(new Error(body.detail || r.status))));
  const get = (path, params) => fetch("./sd_extra_networks/" + path + "?" + new URLSearchParams(params),
    {credentials: "same-origin"}).then(json);
  const post = (path, body) => fetch("./sd_extra_networks/" + path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)}).then(json);
  const state = {};  // per pane (tabname_page): search text, folder, sort key, direction, tree shown

  function addCss() {
    if (document.getElementById("sd-extra-networks-css") || !window.__sdExtraNetworksCss) return;
    const style = document.createElement("style");
    style.id = "sd-extra-networks-css";
    style.textContent = window.__sdExtraNetworksCss;
    document.head.appendChild(style);
  }

  // -- the prompt ---------------------------------------------------------------------------------------------------

  function promptBox(tabname, negative) {
    return document.querySelector("#" + tabname + (negative ? "_neg_prompt" : "_prompt") + " textarea");
  }
  function evaluate(expression) {
    if (!expression) return "";
    // A1111's item["prompt"] is a JavaScript expression over the page's opts (the default multiplier)
    const opts = Object.assign({extra_networks_default_multiplier: 1}, window.opts || {});
    if (opts.extra_networks_default_multiplier === undefined || opts.extra_networks_default_multiplier === null) {
      opts.extra_networks_default_multiplier = 1;
    }
    try {
      return String(new Function("opts", "return (" + expression + ");")(opts));
    } catch (e) {
      console.error("extra networks: bad prompt expression", expression, e);
      return "";
    }
  }
  const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // Take the card's text out of the prompt if it is there: a <kind:name:...> tag with any weight (plus the
  // activation text after it), else the exact text. Returns whether something was removed.
  function removeFrom(box, text) {
    const tag = /^<(\w+):([^:>]+)(:[^>]*)?>(.*)$/s.exec(text);
    const before = box.value;
    let after = before;
    if (tag) {
      const rest = tag[4] ? escapeRe(tag[4]) : "";
      const re = new RegExp("\\s*<" + escapeRe(tag[1]) + ":" + escapeRe(tag[2]) + "(:[^>]*)?>" + "(" + rest + ")?");
      after = before.replace(re, "");
    } else if (text && before.includes(text)) {
      const re = new RegExp("\\s*" + escapeRe(text));
      after = before.replace(re, "");
    }
    if (after === before) return false;
    box.value = after.replace(/^\s+/, "");
    return true;
  }
  function addTo(box, text) {
    if (!box || !text) return;
    if (!removeFrom(box, text)) {
      const sep = (window.opts && typeof window.opts.extra_networks_add_text_separator === "string")
        ? window.opts.extra_networks_add_text_separator : " ";
      box.value = box.value.trim() === "" ? text : box.value + sep + text;
    }
    window.updateInput ? window.updateInput(box) : box.dispatchEvent(new Event("input", {bubbles: true}));
  }
  function cardClicked(card) {
    const tabname = card.dataset.tabname;
    const text = evaluate(card.dataset.prompt);
    const negative = evaluate(card.dataset.negPrompt);
    if (negative) {
      addTo(promptBox(tabname, false), text);
      addTo(promptBox(tabname, true), negative);
    } else {
      let box = promptBox(tabname, false);
      const active = (window.activePromptTextarea || {})[tabname];
      if (card.dataset.allowNeg === "true" && active && document.contains(active)) box = active;
      addTo(box, text);
    }
  }

  // -- the checkpoint -----------------------------------------------------------------------------------------------

  // Choose it in the quick-settings list the way a person does, so the same load runs (and the list shows it).
  async function chooseCheckpoint(title, name) {
    const input = document.querySelector("#setting_sd_model_checkpoint input");
    if (!input) return;
    input.focus();
    input.dispatchEvent(new MouseEvent("click", {bubbles: true}));
    let options = [];
    for (let i = 0; i < 50 && options.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      options = Array.from(document.querySelectorAll("#setting_sd_model_checkpoint [role=option], " +
        "ul.options [role=option]"));
    }
    const label = (o) => (o.getAttribute("aria-label") || o.textContent || "").trim();
    const option = options.find((o) => label(o) === title) ||
      options.find((o) => title && label(o).startsWith(title + " ")) ||
      options.find((o) => name && (label(o).startsWith(name + ".") || label(o) === name));
    if (!option) { input.blur(); console.warn("extra networks: no checkpoint", title); return; }
    option.dispatchEvent(new MouseEvent("mousedown", {bubbles: true}));
    option.dispatchEvent(new MouseEvent("click", {bubbles: true}));
    setTimeout(() => input.blur(), 50);
  }
  // A1111's selectCheckpoint(name) clicks a hidden #change_checkpoint; this page has the list itself.
  if (!document.getElementById("change_checkpoint")) {
    window.selectCheckpoint = (name) => chooseCheckpoint(name, name);
  }

  // -- filtering and sorting ----------------------------------------------------------------------------------------

  function apply(pane) {
    const s = state[pane.id] || {};
    const cards = pane.querySelector(".extra-network-cards");
    if (!cards) return;
    const words = (s.search || "").toLowerCase().split(/\s+/).filter(Boolean);
    const folder = s.folder || "";
    const all = Array.from(cards.querySelectorAll(":scope > .card"));
    for (const card of all) {
      const path = card.dataset.path || "";
      const inFolder = !folder || path === folder || path.startsWith(folder + "/");
      const text = card.dataset.search || "";
      card.style.display = inFolder && words.every((w) => text.includes(w)) ? "" : "none";
    }
    const key = "sort" + (s.sort || "default").replace(/(^|_)(\w)/g, (_, __, c) => c.toUpperCase());
    const dir = s.dir === "Descending" ? -1 : 1;
    const value = (card) => card.dataset[key] ?? "";
    const numeric = all.every((c) => value(c) !== "" && !isNaN(Number(value(c))));
    all.sort((a, b) => {
      const x = value(a), y = value(b);
      const c = numeric ? Number(x) - Number(y) : String(x).localeCompare(String(y));
      return c * dir;
    });
    for (const card of all) cards.appendChild(card);
    pane.querySelectorAll(".tree-dir").forEach((d) => d.classList.toggle("selected", (d.dataset.path || "") === folder));
  }
  function restoreControls(pane) {
    const s = state[pane.id];
    const search = pane.querySelector(".extra-network-control--search-text");
    const sort = pane.querySelector(".extra-network-control--sort");
    const dir = pane.querySelector(".extra-network-control--sort-dir");
    if (!s) {
      state[pane.id] = {search: "", folder: "", sort: sort ? sort.value : "default",
        dir: dir ? dir.dataset.sortdir : "Ascending", tree: pane.classList.contains("tree-open")};
    } else {
      if (search) search.value = s.search;
      if (sort) sort.value = s.sort;
      if (dir) { dir.dataset.sortdir = s.dir; dir.textContent = s.dir === "Descending" ? "▼" : "▲"; }
      pane.classList.toggle("tree-open", !!s.tree);
    }
    const tree = pane.querySelector(".extra-network-control--tree-view");
    if (tree) tree.classList.toggle("active", pane.classList.contains("tree-open"));
    apply(pane);
  }

  // -- loading ------------------------------------------------------------------------------------------------------

  function show(element, html) {
    element.querySelector(".sd-extra-networks-body").innerHTML = html;
    const pane = element.querySelector(".extra-network-pane");
    if (pane) restoreControls(pane);
  }
  function load(element, refresh) {
    const {tabname, page} = element.querySelector(".sd-extra-networks-body").dataset;
    const request = refresh ? post("refresh", {page, tabname}) : get("pane", {page, tabname});
    return request.then((body) => show(element, body.html),
      (err) => show(element, "<div class='extra-network-note'>" + t("Could not load the list:") + " " +
        String(err.message).replace(/</g, "&lt;") + "</div>"));
  }
  function reloadCard(card) {
    return get("get-single-card", {page: card.dataset.page, tabname: card.dataset.tabname, name: card.dataset.name})
      .then((body) => {
        const holder = document.createElement("div");
        holder.innerHTML = body.html;
        const fresh = holder.firstElementChild;
        if (fresh) {
          fresh.style.display = card.style.display;
          card.replaceWith(fresh);
        }
      });
  }

  // -- the dialogs --------------------------------------------------------------------------------------------------

  function overlay(id) {
    document.getElementById(id)?.remove();
    const back = document.createElement("div");
    back.className = "edit-user-metadata-overlay";
    back.id = id;
    back.addEventListener("click", (e) => { if (e.target === back) back.remove(); });
    const box = document.createElement("div");
    box.className = "edit-user-metadata";
    back.appendChild(box);
    document.body.appendChild(back);
    return [back, box];
  }
  const el = (tag, props, children) => {
    const node = Object.assign(document.createElement(tag), props || {});
    for (const child of children || []) node.append(child);
    return node;
  };
  function labelled(text, control) { return el("label", {}, [t(text), control]); }

  // The image the output panel shows now: the selected one, else the first (A1111: the gallery's selection).
  function currentImage(tabname) {
    const gallery = document.getElementById(tabname + "_gallery");
    if (!gallery) return null;
    const selected = gallery.querySelector("button.thumbnail-item.selected img, .thumbnail-item.selected img");
    const shown = gallery.querySelector(".preview img, [data-testid=detailed-image], img.main-image");
    const img = selected || shown || gallery.querySelector("img");
    return img && img.src ? img.src : null;
  }
  async function imageAsDataUrl(src) {
    const blob = await (await fetch(src, {credentials: "same-origin"})).blob();
    return await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  async function openEditor(card) {
    const {tabname, page, name} = card.dataset;
    let info;
    try { info = await get("user-metadata", {page, name}); } catch (e) { alert(e.message); return; }
    const meta = info.user_metadata || {};
    const [back, box] = overlay(tabname + "_" + page + "_edit_user_metadata");
    const message = el("div", {className: "edit-user-metadata-message"});
    const description = el("textarea", {rows: 3, className: "edit-user-metadata-description",
      value: meta.description || ""});
    const fields = [el("h2", {textContent: name}), el("div", {className: "edit-user-metadata-filename",
      textContent: info.filename || ""}), labelled("Description", description)];
    const values = () => ({description: description.value});
    let extra = () => ({});
    if (info.is_lora) {
      const version = el("select", {className: "edit-user-metadata-sd-version"},
        ["Unknown", "SD1", "SD2", "SDXL"].map((v) => el("option", {value: v, textContent: v})));
      version.value = meta["sd version"] || "Unknown";
      const activation = el("textarea", {rows: 2, className: "edit-user-metadata-activation-text",
        value: meta["activation text"] || ""});
      const weight = Number(meta["preferred weight"] || 0);
      const number = el("input", {type: "number", min: -10, max: 10, step: 0.01, value: weight,
        className: "edit-user-metadata-preferred-weight"});
      const range = el("input", {type: "range", min: 0, max: 2, step: 0.01, value: weight});
      range.addEventListener("input", () => { number.value = range.value; });
      number.addEventListener("input", () => { range.value = number.value; });
      const negative = el("textarea", {rows: 2, className: "edit-user-metadata-negative-text",
        value: meta["negative text"] || ""});
      fields.push(labelled("Stable Diffusion version", version), labelled("Activation text", activation),
        labelled("Preferred weight", el("div", {className: "weight-row"}, [range, number])),
        labelled("Negative prompt", negative));
      extra = () => ({"sd version": version.value, "activation text": activation.value,
        "preferred weight": number.value === "" ? 0 : Number(number.value), "negative text": negative.value});
    }
    const notes = el("textarea", {rows: 3, className: "edit-user-metadata-notes", value: meta.notes || ""});
    fields.push(labelled("Notes", notes));
    const say = (text, error) => { message.textContent = text; message.classList.toggle("error", !!error); };
    const replace = el("button", {type: "button", className: "edit-user-metadata-replace-preview",
      textContent: t("Replace preview"), title: t("Replace the preview with the image shown in the output panel")});
    replace.addEventListener("click", async () => {
      const src = currentImage(tabname);
      if (!src) { say(t("There is no image in the output panel to use as a preview."), true); return; }
      try {
        await post("replace-preview", {page, name, image: await imageAsDataUrl(src)});
        say(t("Preview replaced."));
        await reloadCard(card);
        card = document.querySelector(cardSelector(tabname, page, name)) || card;
      } catch (e) { say(e.message, true); }
    });
    const cancel = el("button", {type: "button", className: "edit-user-metadata-cancel", textContent: t("Cancel")});
    cancel.addEventListener("click", () => back.remove());
    const save = el("button", {type: "button", className: "edit-user-metadata-save primary", textContent: t("Save")});
    save.addEventListener("click", async () => {
      try {
        await post("user-metadata", {page, name, user_metadata: Object.assign(values(), extra(),
          {notes: notes.value})});
        await reloadCard(document.querySelector(cardSelector(tabname, page, name)) || card);
        back.remove();
      } catch (e) { say(e.message, true); }
    });
    box.append(...fields, message, el("div", {className: "edit-user-metadata-buttons"}, [replace, cancel, save]));
  }
  const cardSelector = (tabname, page, name) =>
    "#" + tabname + "_" + page + "_cards .card[data-name=\"" + CSS.escape(name) + "\"]";

  async function showMetadata(card) {
    const {page, name, tabname} = card.dataset;
    let text = "";
    try { text = (await get("metadata", {page: page.replace(/_/g, " "), item: name})).metadata || ""; }
    catch (e) { text = e.message; }
    const [back, box] = overlay(tabname + "_" + page + "_metadata_popup");
    const close = el("button", {type: "button", textContent: t("Close")});
    close.addEventListener("click", () => back.remove());
    box.append(el("h2", {textContent: name}), el("pre", {textContent: text}),
      el("div", {className: "edit-user-metadata-buttons"}, [close]));
  }

  // -- events -------------------------------------------------------------------------------------------------------

  function wire(element) {
    element.addEventListener("click", (e) => {
      const target = e.target;
      const pane = target.closest(".extra-network-pane");
      if (!pane) return;
      const s = state[pane.id] || (state[pane.id] = {});
      const card = target.closest(".card");
      if (card) {
        e.preventDefault();
        if (target.closest(".edit-button")) openEditor(card);
        else if (target.closest(".metadata-button")) showMetadata(card);
        else if (card.dataset.action === "checkpoint") chooseCheckpoint(card.dataset.checkpoint, card.dataset.name);
        else if (card.dataset.action === "prompt") cardClicked(card);
        return;
      }
      const dir = target.closest(".tree-dir");
      if (dir) { s.folder = dir.dataset.path || ""; apply(pane); return; }
      if (target.closest(".extra-network-control--sort-dir")) {
        const button = target.closest(".extra-network-control--sort-dir");
        s.dir = button.dataset.sortdir === "Ascending" ? "Descending" : "Ascending";
        button.dataset.sortdir = s.dir;
        button.textContent = s.dir === "Descending" ? "▼" : "▲";
        button.title = t("Sort direction: " + s.dir);
        apply(pane);
      } else if (target.closest(".extra-network-control--tree-view")) {
        s.tree = !pane.classList.contains("tree-open");
        pane.classList.toggle("tree-open", s.tree);
        target.closest("button").classList.toggle("active", s.tree);
      } else if (target.closest(".extra-network-control--refresh")) {
        load(element, true);
      }
    });
    element.addEventListener("input", (e) => {
      const pane = e.target.closest(".extra-network-pane");
      if (!pane || !e.target.matches(".extra-network-control--search-text")) return;
      e.stopPropagation();  // not gradio's: this box is ours
      (state[pane.id] || (state[pane.id] = {})).search = e.target.value;
      apply(pane);
    });
    element.addEventListener("change", (e) => {
      const pane = e.target.closest(".extra-network-pane");
      if (!pane || !e.target.matches(".extra-network-control--sort")) return;
      (state[pane.id] || (state[pane.id] = {})).sort = e.target.value;
      apply(pane);
    });
  }

  function mount(element) {
    addCss();
    if (!element || element.__sdExtraNetworks) return;
    element.__sdExtraNetworks = true;
    wire(element);
    load(element, false);
    // the list may have changed while another tab was shown (a model loaded: embeddings; files added)
    let shown = true, loaded = Date.now();
    new IntersectionObserver((entries) => {
      const visible = entries.some((entry) => entry.isIntersecting);
      if (visible && !shown && Date.now() - loaded > 2000) { loaded = Date.now(); load(element, false); }
      shown = visible;
    }).observe(element);
  }

  window.sdExtraNetworks = {mount, load, cardClicked, chooseCheckpoint, apply};
})();
