// Applies the chosen A1111 localization to the page: every text node whose trimmed text equals a key of the map,
// and the placeholder, title and aria-label attributes, now and whenever gradio adds or changes nodes.
// Names of models, files and styles are never translated (their dropdowns are skipped, as A1111 skips them).
async function applyLocalization() {
  // The page head carries the map (A1111 extensions read window.localization from their first line); a page
  // served without it asks the server.
  let map = window.__sdPage && window.__sdPage.localization;
  if (!map) {
    try {
      const response = await fetch("internal/localization", {cache: "no-store"});
      map = response.ok ? await response.json() : {};
    } catch (err) {
      return;
    }
  }
  window.localization = map;  // A1111 extensions read it from here
  if (!map || Object.keys(map).length === 0) return;
  if (map.rtl === true) document.documentElement.setAttribute("dir", "rtl");
  // the Settings tab's "stored only" badge is CSS text (content: var(--stored-only-label)), not a text node
  if (typeof map["stored only"] === "string") {
    document.documentElement.style.setProperty("--stored-only-label", JSON.stringify(map["stored only"]));
  }
  const skipTags = new Set(["SCRIPT", "STYLE", "TEXTAREA", "CODE"]);
  // Dropdowns of names (modules/ui/untranslated.py): their labels are translated, their options and chosen values
  // are not (localized_choices.js gave the other dropdowns' choices their translated labels before gradio drew them).
  // Generated text (infotext, PNG info) is data, never UI text. (Galleries show no captions: their label and
  // buttons are UI text and are translated.)
  const lists = (window.__sdPage && window.__sdPage.untranslated) || {};
  const uiWords = new Set(lists.uiWordsInNameLists || []);
  const nameListSelectors = [...(lists.nameDropdowns || []).map((id) => "#" + id),
                             ...(lists.nameDropdownSuffixes || []).map((suffix) => `[id$="${suffix}"]`)];
  const namesSelector = nameListSelectors.flatMap((list) => [list + " ul", list + " .token",
                                                              list + " [role=option]"]).join(",");
  const dataSelector = (lists.data || []).join(",") || "#__nothing__";
  const ignoredSelector = [namesSelector, dataSelector].filter(Boolean).join(",");
  const isNumber = /^[\s\d.,:%/+-]*$/;
  // keys with "{}" are templates for text gradio builds around a value ("Remove {}" on a chosen token)
  const templates = Object.keys(map).filter((k) => k.includes("{}") && typeof map[k] === "string").map((k) => {
    const [before, after] = k.split("{}", 2).map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    return [new RegExp("^" + before + "(.+)" + after + "$"), map[k]];
  });
  const translate = (text) => {
    const key = text.trim();
    if (!key || isNumber.test(key)) return null;
    const value = map[key];
    if (typeof value === "string") return text.replace(key, value);
    for (const [pattern, translated] of templates) {
      const found = pattern.exec(key);
      if (found) return text.replace(key, translated.replace("{}", found[1]));
    }
    return null;
  };
  const ignored = (element) => element && element.closest && element.closest(ignoredSelector);
  const translateText = (node) => {
    const parent = node.parentElement;
    if (!parent || skipTags.has(parent.tagName)) return;
    if (ignored(parent) && !(uiWords.has(node.nodeValue.trim()) && namesSelector &&
                             parent.closest(namesSelector) && !parent.closest(dataSelector))) return;
    const done = translate(node.nodeValue);
    if (done !== null && done !== node.nodeValue) node.nodeValue = done;
  };
  const translateAttributes = (element) => {
    if (ignored(element)) return;
    for (const name of ["placeholder", "title", "aria-label"]) {
      const value = element.getAttribute && element.getAttribute(name);
      if (!value) continue;
      const done = translate(value);
      if (done !== null && done !== value) element.setAttribute(name, done);
    }
  };
  const walk = (root) => {
    if (root.nodeType === Node.TEXT_NODE) return translateText(root);
    if (root.nodeType !== Node.ELEMENT_NODE) return;
    translateAttributes(root);
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.nodeType === Node.TEXT_NODE) translateText(node); else translateAttributes(node);
    }
  };
  walk(document.body);
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === "characterData") translateText(m.target);
      else if (m.type === "attributes") translateAttributes(m.target);
      else m.addedNodes.forEach(walk);
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true, attributes: true,
                             attributeFilter: ["placeholder", "title", "aria-label"]});
}
