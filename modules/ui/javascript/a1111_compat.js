// The page-side API that A1111 extensions' javascript/*.js call. A1111 defines it in script.js and javascript/*.js,
// loaded before the extensions' scripts; this file is loaded inline in the page head at the same point (see
// modules/ui/extension_assets.py), so an extension's top-level code finds every name below. Our own code, written
// for gradio 6's page: no shadow root, lazily mounted tabs, tab buttons with role=tab.
//
// window.__sdPage (written into the page just before this script) carries the localization of the moment the page
// was served: {localization}. The settings come from ./internal/page-options (it needs the login; the page does not).
(function () {
  "use strict";
  if (window.__sdA1111Page) return;
  window.__sdA1111Page = true;
  const w = window;
  const page = w.__sdPage || {};

  // -- the app root -------------------------------------------------------------------------------------------------

  // A1111 returns <gradio-app> (its shadow root when there is one) and gives the element getElementById, so that
  // gradioApp().getElementById(...), .querySelector(...) and .appendChild(...) all work. Before the element is
  // parsed (a script's top level) it is the document.
  w.gradioApp = function () {
    const app = document.getElementsByTagName("gradio-app")[0];
    if (!app) return document;
    if (app.shadowRoot) return app.shadowRoot;
    if (!app.getElementById) app.getElementById = (id) => document.getElementById(id);
    return app;
  };

  // gradio 3's textbox was label > textarea; gradio 6 puts a div between them. Extensions select prompts with
  // "#txt2img_prompt > label > textarea" (tagcomplete and many others), so such selectors also match the gradio 6
  // nesting: "> label > textarea|input" is read as "> label textarea|input".
  const labelChild = /(>\s*label)\s*>\s*(?=(textarea|input)\b)/g;
  const widen = (selector) =>
    typeof selector === "string" && selector.includes("label") ? selector.replace(labelChild, "$1 ") : selector;
  for (const proto of [Document.prototype, Element.prototype, DocumentFragment.prototype]) {
    for (const name of ["querySelector", "querySelectorAll", "matches", "closest"]) {
      const original = proto[name];
      if (typeof original !== "function" || Object.prototype.hasOwnProperty.call(proto, "__a1111_" + name)) continue;
      Object.defineProperty(proto, "__a1111_" + name, {value: original});
      Object.defineProperty(proto, name, {
        configurable: true, writable: true,
        value: function (selector, ...rest) { return original.call(this, widen(selector), ...rest); },
      });
    }
  }

  const topTabs = () => gradioApp().querySelector("#tabs");
  // gradio 6: the tab buttons of a gr.Tabs are [role=tab] in its own .tab-wrapper (a hidden copy is used to measure)
  const tabButtons = (tabs) => {
    if (!tabs) return [];
    const wrapper = Array.from(tabs.children).find((c) => c.classList.contains("tab-wrapper")) || tabs;
    return Array.from(wrapper.querySelectorAll("button[role=tab]"));
  };
  const isSelected = (button) =>
    button.getAttribute("aria-selected") === "true" || button.classList.contains("selected");

  w.get_uiCurrentTab = () => tabButtons(topTabs()).find(isSelected) || null;
  w.get_uiCurrentTabContent = () =>
    gradioApp().querySelector('#tabs > .tabitem[id^=tab_]:not([style*="display: none"])');

  // -- callbacks ----------------------------------------------------------------------------------------------------

  const queues = {
    uiUpdateCallbacks: [], uiAfterUpdateCallbacks: [], uiLoadedCallbacks: [], uiTabChangeCallbacks: [],
    optionsChangedCallbacks: [], optionsAvailableCallbacks: [],
  };
  Object.assign(w, queues);  // A1111 exposes the queues; some extensions push to them directly

  w.executeCallbacks = function (queue, arg) {
    for (const callback of queue || []) {
      try {
        callback(arg);
      } catch (err) {
        console.error("error running callback", callback, ":", err);
      }
    }
  };

  let uiLoaded = false;
  let optionsAvailable = false;

  w.onUiUpdate = (callback) => { w.uiUpdateCallbacks.push(callback); };
  w.onAfterUiUpdate = (callback) => { w.uiAfterUpdateCallbacks.push(callback); };
  w.onUiTabChange = (callback) => { w.uiTabChangeCallbacks.push(callback); };
  w.onOptionsChanged = (callback) => { w.optionsChangedCallbacks.push(callback); };
  w.onUiLoaded = (callback) => {
    w.uiLoadedCallbacks.push(callback);
    if (uiLoaded) setTimeout(() => executeCallbacks([callback]), 0);  // a script that came late still gets it
  };
  w.onOptionsAvailable = (callback) => {
    if (optionsAvailable) {
      executeCallbacks([callback]);
      return;
    }
    w.optionsAvailableCallbacks.push(callback);
  };

  // -- settings: window.opts ----------------------------------------------------------------------------------------

  // Filled once the UI is there (as A1111 fills it from its settings JSON after the first update), then kept
  // current: re-read after the page changes (a setting applied in Settings or the quick settings) and when the tab
  // comes back into view; the server answers 204 when nothing changed.
  w.opts = {};
  let optsVersion = "";
  const applyOptions = (values, version) => {
    w.opts = Object.assign({}, values || {});
    optsVersion = version;
    if (!optionsAvailable) {
      optionsAvailable = true;
      executeCallbacks(w.optionsAvailableCallbacks);
    }
    executeCallbacks(w.optionsChangedCallbacks);
    // A page change for the MutationObservers that wait for opts (aspect-ratio-helper): in A1111 its own
    // onOptionsChanged work changes the page right after; here nothing might until the user does something.
    const mark = document.createComment("opts");
    gradioApp().appendChild(mark);
    mark.remove();
  };
  let refreshing = false, lastRefresh = 0, refreshTimer = null;
  const refreshOptions = async () => {
    if (refreshing || !uiLoaded) return;
    refreshing = true;
    lastRefresh = Date.now();
    try {
      const url = "internal/page-options?known=" + encodeURIComponent(optsVersion);
      const response = await fetch(url, {cache: "no-store", credentials: "same-origin"});
      if (response.status === 200) {
        const data = await response.json();
        if (data && data.version !== optsVersion) applyOptions(data.opts, data.version);
      }
    } catch (err) {
      // the server restarting: the next update asks again
    } finally {
      refreshing = false;
    }
  };
  const scheduleRefresh = () => {
    if (refreshTimer !== null || document.hidden) return;  // a hidden tab asks when it is shown again
    const wait = Math.max(0, 1000 - (Date.now() - lastRefresh));
    refreshTimer = setTimeout(() => { refreshTimer = null; refreshOptions(); }, wait);
  };
  document.addEventListener("visibilitychange", () => { if (!document.hidden) scheduleRefresh(); });
  w.addEventListener("focus", scheduleRefresh);

  // -- localization and tooltips ------------------------------------------------------------------------------------

  if (typeof w.localization !== "object" || w.localization === null) w.localization = page.localization || {};
  w.getTranslation = (text) => (text ? w.localization[text] : undefined);

  // A1111's hints: titles["Some label"] = "tooltip"; extensions add theirs with titles = Object.assign({}, titles,
  // mine) (so it is read from window each time). Set on the elements gradio adds whose text (or value, or a class)
  // is a key, translated when the localization has the tooltip.
  if (typeof w.titles !== "object" || w.titles === null) w.titles = {};
  w.titles = Object.assign({}, page.titles || {}, w.titles);  // ours first: an extension's hint for a text wins
  const icons = page.icons || {};  // a tool button's emoji -> the icon the page draws for it (tool_buttons.py)
  let originals = null;  // translated text -> English text, for labels the localization already replaced
  const tooltipOf = (el) => {
    const titles = w.titles || {};
    const text = (el.textContent || "").trim();
    let tip = titles[text] || (el.value && titles[el.value]);
    if (!tip && text) {
      if (originals === null) {
        originals = {};
        for (const [k, v] of Object.entries(w.localization || {})) if (typeof v === "string") originals[v] = k;
      }
      tip = titles[originals[text]];
    }
    if (!tip) for (const c of el.classList || []) if (titles[c]) { tip = titles[c]; break; }
    return tip ? ((w.localization || {})[tip] || tip) : null;
  };
  const applyTooltips = (root) => {
    if (!root || root.nodeType !== Node.ELEMENT_NODE) return;
    const elements = root.matches("span, button, select, p") ? [root] : [];
    elements.push(...root.querySelectorAll("span, button, select, p"));
    for (const el of elements) {
      if (el.tagName === "BUTTON" && !el.dataset.sdIcon) {
        const icon = icons[(el.textContent || "").trim()];
        if (icon) el.dataset.sdIcon = icon;
      }
      if (el.title) continue;
      const tip = tooltipOf(el);
      if (tip) el.title = tip;
    }
  };

  // -- the observer -------------------------------------------------------------------------------------------------

  // A tab change is reported once the new tab's content is there (gradio 6 mounts a tab when it is first opened;
  // switching back to a mounted tab changes only attributes, so that is watched too).
  let currentTab = null, pendingTab = null, pendingTimer = null, afterTimer = null;
  const tabChanged = () => {
    pendingTab = null;
    clearTimeout(pendingTimer);
    executeCallbacks(w.uiTabChangeCallbacks);
  };
  const checkTab = () => {
    const tab = get_uiCurrentTab();
    if (tab && tab !== currentTab) {
      currentTab = pendingTab = tab;
      clearTimeout(pendingTimer);
      pendingTimer = setTimeout(tabChanged, 2000);  // content that never comes: report the change anyway
    }
    if (pendingTab) {
      const content = get_uiCurrentTabContent();
      if (content && content.id === pendingTab.getAttribute("aria-controls")) tabChanged();
    }
  };
  const afterUpdate = () => {
    executeCallbacks(w.uiAfterUpdateCallbacks);
    if (!uiLoaded) return;
    if (optionsAvailable) scheduleRefresh();
    else refreshOptions();  // the first time: at once
  };
  // gradio 6 builds a tab's contents when it is first opened; A1111 has every tab in the page from the start and
  // extensions look up #img2img_prompt, their own tab's elements (images-browser: those of each of its inner
  // tabs)... in onUiLoaded. With extension scripts in the page, every tab is opened once, panels hidden meanwhile,
  // before onUiLoaded: the top-level ones (tab_<id>, its button tab_<id>-button) first, then the tabs inside them,
  // each tab list back on the tab it showed. A tab stays built after.
  let mounting = false;
  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const untilOrTimeout = async (ready) => {  // at most ~5 s of frames: a tab that never builds is left as it is
    for (let i = 0; i < 300 && !ready(); i++) await nextFrame();
  };
  // Gradio re-renders a tab bar as its selection changes: each tab is looked up afresh by the panel it controls,
  // or by its place.
  const tabKey = (button, i) => button.getAttribute("aria-controls") || "#" + i;
  const findTab = (holder, key) => {
    const found = tabButtons(holder).filter((button, i) => tabKey(button, i) === key);
    return found.find(isSelected) || found[0] || null;
  };
  const panelBuilt = (button) => {
    const id = button.getAttribute("aria-controls");
    const panel = id ? gradioApp().querySelector("#" + CSS.escape(id)) : null;
    return !id || (panel !== null && panel.children.length > 0);
  };
  const openEachTab = async (holder) => {  // each tab opened once, then the one shown before again
    const buttons = tabButtons(holder);
    const keys = [...new Set(buttons.map(tabKey))];
    const before = buttons.findIndex(isSelected);
    const shown = before < 0 ? null : tabKey(buttons[before], before);
    for (const key of keys) {
      const button = findTab(holder, key);
      if (key === shown || !button) continue;
      button.click();
      await untilOrTimeout(() => {
        const now = findTab(holder, key);
        return now !== null && isSelected(now) && panelBuilt(now);
      });
    }
    const back = shown && findTab(holder, shown);
    if (back) {
      back.click();
      await untilOrTimeout(() => isSelected(findTab(holder, shown) || back));
    }
  };
  // A closed accordion's contents, too, are built when it is first opened (dynamic-prompts clicks a button inside
  // its closed "Collection actions" to load the wildcards tree): all are opened at once and closed again.
  const closedAccordionContent = (accordion) => {
    const content = accordion.querySelector(":scope > [data-testid=accordion-content]");
    return content && content.style.display === "none" ? content : null;
  };
  const built = (content) => Array.from(content.children).some((child) => child.children.length > 0);
  const untilSettled = async (count, total) => {  // all there, or no new one for 20 frames (an empty accordion)
    for (let last = -1, still = 0; still < 20 && last < total;) {
      await nextFrame();
      const now = count();
      still = now === last ? still + 1 : 0;
      last = now;
    }
  };
  const openEveryAccordion = async (root) => {
    for (let round = 0; round < 4; round++) {  // accordions inside accordions show up as their parents open
      const closed = Array.from(root.querySelectorAll(".gr-accordion")).map((accordion) => ({
        accordion, toggle: accordion.querySelector(":scope > .label-wrap"), content: closedAccordionContent(accordion),
      })).filter(({toggle, content}) => toggle && content && !built(content));
      if (!closed.length) return;
      closed.forEach(({toggle}) => toggle.click());
      await untilSettled(() => closed.filter(({content}) => built(content)).length, closed.length);
      closed.forEach(({toggle}) => toggle.click());
      await untilOrTimeout(() => closed.every(({accordion}) => closedAccordionContent(accordion) !== null));
    }
  };
  const mountTabs = async () => {
    const root = gradioApp();
    mounting = true;
    root.classList.add("sd-mounting-tabs");
    try {
      // #tabs first, then the tab sets inside its tabs (each set on its own, all at once), then those inside them
      const visited = new Set();
      const unvisited = () => Array.from(root.querySelectorAll(".tabs")).filter((tabs) => !visited.has(tabs));
      for (let sets = [root.querySelector("#tabs")].filter(Boolean); sets.length; sets = unvisited()) {
        sets.forEach((tabs) => visited.add(tabs));
        await Promise.all(sets.map(openEachTab));
      }
      await openEveryAccordion(root);
    } finally {
      root.classList.remove("sd-mounting-tabs");
      mounting = false;
      currentTab = get_uiCurrentTab();  // the visits were not the user's: no onUiTabChange for them
      pendingTab = null;
    }
  };
  const uiReady = () => {
    uiLoaded = true;
    const prompt = gradioApp().querySelector("#txt2img_prompt textarea");
    if (prompt) w.activePromptTextarea.txt2img = prompt;
    executeCallbacks(w.uiLoadedCallbacks);
  };
  let starting = false;
  const observe = () => {
    const root = gradioApp();
    new MutationObserver((mutations) => {
      if (!uiLoaded && !starting && gradioApp().querySelector("#txt2img_prompt")) {  // A1111: the prompt is there
        starting = true;
        if (w.__sdPage && w.__sdPage.mountTabs) mountTabs().then(uiReady, uiReady);
        else uiReady();
      }
      executeCallbacks(w.uiUpdateCallbacks, mutations);
      clearTimeout(afterTimer);
      afterTimer = setTimeout(afterUpdate, 200);
      for (const m of mutations) m.addedNodes.forEach(applyTooltips);
      if (!mounting) checkTab();
    }).observe(root, {childList: true, subtree: true});
    new MutationObserver(() => { if (!mounting) checkTab(); }).observe(root, {attributes: true, subtree: true,
                                                  attributeFilter: ["aria-selected", "style"]});
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", observe);
  else observe();

  // -- visibility ---------------------------------------------------------------------------------------------------

  w.uiElementIsVisible = function (el) {
    for (let node = el; node && node !== document; node = node.parentNode || node.host) {
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      if (getComputedStyle(node).display === "none") return false;
    }
    return true;
  };
  w.uiElementInSight = function (el) {
    const rect = el.getBoundingClientRect();
    return rect.bottom > 0 && rect.top < w.innerHeight;
  };

  // -- tabs ---------------------------------------------------------------------------------------------------------

  w.get_tab_index = function (tabId) {
    const buttons = tabButtons(gradioApp().getElementById(tabId));
    const index = buttons.findIndex(isSelected);
    return index < 0 ? 0 : index;
  };
  w.args_to_array = (args) => Array.from(args);
  w.create_tab_index_args = function (tabId, args) {
    const out = Array.from(args);
    out[0] = get_tab_index(tabId);
    return out;
  };
  w.get_img2img_tab_index = function () {
    const out = Array.from(arguments);
    out.splice(-2);
    out[0] = get_tab_index("mode_img2img");
    return out;
  };
  w.get_extras_tab_index = function () {
    const rest = Array.from(arguments).slice(2);
    return [get_tab_index("mode_extras"), get_tab_index("extras_resize_mode"), ...rest];
  };

  const clickTopTab = (elemId, index) => {
    const buttons = tabButtons(topTabs());
    const button = buttons.find((b) => b.getAttribute("aria-controls") === elemId) || buttons[index];
    if (button) button.click();
  };
  const clickImg2imgMode = (no) => {
    clickTopTab("tab_img2img", 1);
    // the img2img tab mounts on first view: its mode tabs may come a moment later
    const pick = (tries) => {
      const button = tabButtons(gradioApp().getElementById("mode_img2img"))[no];
      if (button) button.click();
      else if (tries > 0) setTimeout(() => pick(tries - 1), 50);
    };
    pick(40);
  };
  w.switch_to_txt2img = function () { clickTopTab("tab_txt2img", 0); return Array.from(arguments); };
  w.switch_to_img2img_tab = function (no) { clickImg2imgMode(no); };
  w.switch_to_img2img = function () { clickImg2imgMode(0); return Array.from(arguments); };
  w.switch_to_sketch = function () { clickImg2imgMode(1); return Array.from(arguments); };
  w.switch_to_inpaint = function () { clickImg2imgMode(2); return Array.from(arguments); };
  w.switch_to_inpaint_sketch = function () { clickImg2imgMode(3); return Array.from(arguments); };
  w.switch_to_extras = function () { clickTopTab("tab_extras", 2); return Array.from(arguments); };

  // -- galleries ----------------------------------------------------------------------------------------------------

  const thumbnails = (root) => {
    if (!root) return [];
    const small = Array.from(root.querySelectorAll(".thumbnail-item.thumbnail-small"));
    return small.length ? small : Array.from(root.querySelectorAll(".thumbnail-item"));
  };
  w.all_gallery_buttons = function () {
    const content = get_uiCurrentTabContent();
    const galleries = content ? content.querySelectorAll("[id$=_gallery]") : [];
    return Array.from(galleries).filter(uiElementIsVisible).flatMap(thumbnails);
  };
  w.selected_gallery_button = () => all_gallery_buttons().find((b) => b.classList.contains("selected")) || null;
  w.selected_gallery_index = () => all_gallery_buttons().findIndex((b) => b.classList.contains("selected"));
  w.gallery_container_buttons = (galleryId) => thumbnails(gradioApp().getElementById(galleryId));
  w.selected_gallery_index_id = (galleryId) =>
    gallery_container_buttons(galleryId).findIndex((b) => b.classList.contains("selected"));
  w.extract_image_from_gallery = function (gallery) {
    if (!gallery || gallery.length === 0) return [null];
    if (gallery.length === 1) return [gallery[0]];
    const index = selected_gallery_index();
    return index < 0 || index >= gallery.length ? [null] : [gallery[index]];
  };

  // -- inputs -------------------------------------------------------------------------------------------------------

  // After setting a textbox's value from script, tell gradio (its components listen to "input").
  w.updateInput = function (target) {
    const event = new Event("input", {bubbles: true});
    Object.defineProperty(event, "target", {value: target});
    target.dispatchEvent(event);
  };

  // The prompt box the user last typed in, per tab (extra networks and prompt tools insert there).
  w.activePromptTextarea = w.activePromptTextarea || {};
  document.addEventListener("focusin", (e) => {
    const box = e.target && e.target.tagName === "TEXTAREA" && e.target.closest("[id$='_prompt'], [id$='_neg_prompt']");
    if (box) w.activePromptTextarea[box.id.replace(/_(neg_)?prompt$/, "")] = e.target;
  }, true);

  w.onEdit = function (editId, elem, afterMs, func) {
    let timer = null;
    const edited = function () {
      clearTimeout(timer);
      timer = setTimeout(func, afterMs);
    };
    edited.cancel = () => clearTimeout(timer);
    elem.addEventListener("input", edited);
    return edited;
  };

  const numberBox = (elemId) => gradioApp().querySelector("#" + elemId + " input[type=number]") ||
    gradioApp().querySelector("#" + elemId + " input");
  w.setRandomSeed = function (elemId) {
    const box = numberBox(elemId);
    if (!box) return [];
    box.value = "-1";
    updateInput(box);
    return [];
  };
  w.switchWidthHeight = function (tabname) {
    const width = numberBox(tabname + "_width"), height = numberBox(tabname + "_height");
    if (!width || !height) return [];
    const old = width.value;
    width.value = height.value;
    height.value = old;
    updateInput(width);
    updateInput(height);
    return [];
  };
  w.dimensionChange = function () {};  // A1111's img2img aspect overlay; gradio 6's image editor has its own
  w.currentImg2imgSourceResolution = function (width, height, scaleBy) {
    // the picture of the img2img mode tab that shows (A1111 looks in #mode_img2img too): the tab's first visible
    // panel is now the Generation tab beside the Extra Networks ones, which holds every mode's picture
    const img = gradioApp().querySelector("#mode_img2img > .tabitem:not([style*='display: none']) img") ||
                gradioApp().querySelector("#mode_img2img .tabitem:not([style*='display: none']) img");
    return img ? [img.naturalWidth, img.naturalHeight, scaleBy] : [0, 0, scaleBy];
  };
  w.updateImg2imgResizeToTextAfterChangingImage = function () {
    setTimeout(() => gradioApp().getElementById("img2img_update_resize_to")?.click(), 500);
    return [];
  };

  // -- dialogs ------------------------------------------------------------------------------------------------------

  w.ask_for_style_name = function (_, promptText, negativePromptText) {
    const name = prompt("Style name:");
    return name === null ? [null, null, null] : [name, promptText, negativePromptText];
  };
  w.confirm_clear_prompt = function (promptText, negativePromptText) {
    if (confirm("Delete prompt?")) return ["", ""];
    return [promptText, negativePromptText];
  };

  // -- generation helpers -------------------------------------------------------------------------------------------

  w.randomId = function () {
    const part = () => Math.random().toString(36).slice(2, 7);
    return "task(" + part() + part() + part() + ")";
  };
  w.create_submit_args = function (args) {
    const out = Array.from(args);
    if (Array.isArray(out[out.length - 1])) out[out.length - 1] = null;  // don't upload the previous gallery
    return out;
  };
  w.showSubmitButtons = function (tabname, show) {
    const generate = gradioApp().getElementById(tabname + "_generate");
    const interrupt = gradioApp().getElementById(tabname + "_interrupt");
    if (generate) generate.style.display = show ? "" : "none";
    if (interrupt) interrupt.style.display = show ? "none" : "";
  };
  w.showRestoreProgressButton = function (tabname, show) {
    const button = gradioApp().getElementById(tabname + "_restore_progress");
    if (button) button.style.display = show ? "" : "none";
  };
  const submitFor = (tabname, args, tabIndex) => {
    const out = create_submit_args(args);
    out[0] = randomId();
    if (tabIndex !== undefined) out[1] = tabIndex;
    return out;
  };
  w.submit = function () { return submitFor("txt2img", arguments); };
  w.submit_txt2img_upscale = function () { return submitFor("txt2img", arguments); };
  w.submit_img2img = function () { return submitFor("img2img", arguments, get_tab_index("mode_img2img")); };
  w.submit_extras = function () { return submitFor("extras", arguments); };

  w.desiredCheckpointName = null;
  w.selectCheckpoint = function (name) {
    w.desiredCheckpointName = name;
    const button = gradioApp().getElementById("change_checkpoint");
    if (button) button.click();
    else console.warn("selectCheckpoint: choose the checkpoint in the list at the top of the page:", name);
  };

  // -- requests and progress ----------------------------------------------------------------------------------------

  w.request = function (url, data, handler, errorHandler) {
    fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(data),
                credentials: "same-origin"})
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.status + " " + r.statusText))))
      .then((json) => handler(json), (err) => errorHandler && errorHandler(err));
  };
  w.requestGet = function (url, data, handler, errorHandler) {
    const query = new URLSearchParams(data || {}).toString();
    fetch(query ? url + "?" + query : url, {credentials: "same-origin"})
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.status + " " + r.statusText))))
      .then((json) => handler(json), (err) => errorHandler && errorHandler(err));
  };
  w.localSet = (k, v) => { try { localStorage.setItem(k, v); } catch (e) { /* storage off */ } };
  w.localGet = (k, def) => {
    try {
      const v = localStorage.getItem(k);
      return v === null ? def : v;
    } catch (e) {
      return def;
    }
  };
  w.localRemove = (k) => { try { localStorage.removeItem(k); } catch (e) { /* storage off */ } };

  w.formatTime = function (secs) {
    if (secs > 3600) return Math.floor(secs / 3600) + ":" + String(Math.floor(secs / 60) % 60).padStart(2, "0") + ":" +
      String(Math.floor(secs) % 60).padStart(2, "0");
    if (secs > 60) return Math.floor(secs / 60) + ":" + String(Math.floor(secs) % 60).padStart(2, "0");
    return Math.floor(secs) + "s";
  };

  // A1111's progress bar for a task: asks ./internal/progress about idTask (every half second) and shows it in
  // container; onProgress(answer) after each answer, atEnd() when the task completed or nothing was heard of it for
  // inactivityTimeout seconds.
  w.requestProgress = function (idTask, container, gallery, atEnd, onProgress, inactivityTimeout = 40) {
    const started = Date.now();
    let lastActive = started, livePreviewId = -1, stopped = false;
    const bar = document.createElement("div");
    bar.className = "progressDiv";
    const inner = document.createElement("div");
    inner.className = "progress";
    bar.appendChild(inner);
    if (container && container.parentNode) container.parentNode.insertBefore(bar, container);
    const finish = () => {
      if (stopped) return;
      stopped = true;
      bar.remove();
      if (atEnd) atEnd();
    };
    const poll = () => {
      request("./internal/progress", {id_task: idTask, id_live_preview: livePreviewId, live_preview: !!gallery},
        (res) => {
          if (res.completed) return finish();
          if (res.active || res.queued) lastActive = Date.now();
          else if (Date.now() - lastActive > inactivityTimeout * 1000) return finish();
          const pct = Math.round((res.progress || 0) * 100);
          inner.style.width = pct + "%";
          inner.textContent = res.queued ? "In queue..." : (pct ? pct + "%" : "") +
            (res.eta ? " ETA: " + formatTime(res.eta) : "");
          if (res.id_live_preview !== undefined) livePreviewId = res.id_live_preview;
          if (onProgress) onProgress(res);
          setTimeout(poll, 500);
        },
        () => finish());
    };
    poll();
    return {stop: finish};
  };

  // -- page ---------------------------------------------------------------------------------------------------------

  w.set_theme = function (theme) {
    const url = new URL(w.location.href);
    if (url.searchParams.get("__theme") === theme) return;
    url.searchParams.set("__theme", theme);
    w.location.replace(url);
  };

  // After "Apply and restart UI": wait until the server answers again, then load the page anew.
  w.restart_reload = function () {
    document.body.style.backgroundColor = "var(--background-fill-primary)";
    const note = document.createElement("h1");
    note.textContent = "Reloading...";
    note.style.cssText = "font-family:monospace;margin-top:20%;color:lightgray;text-align:center";
    document.body.replaceChildren(note);
    const ping = () => {
      fetch("./internal/ping", {cache: "no-store"})
        .then((r) => (r.ok ? w.location.reload() : setTimeout(ping, 500)), () => setTimeout(ping, 500));
    };
    setTimeout(ping, 2000);
    return [];
  };
})();
