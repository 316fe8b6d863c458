// The page helpers A1111 extensions call from their javascript/*.js: gradioApp(), onUiLoaded(), onUiUpdate(),
// onAfterUiUpdate(), onUiTabChange(), onOptionsChanged(), get_uiCurrentTab(). Loaded before any extension script.
(function () {
  if (window.gradioApp) return;
  const loaded = [], updated = [], afterUpdated = [], tabChanged = [], optionsChanged = [];
  window.gradioApp = () => {
    const app = document.getElementsByTagName("gradio-app")[0];
    return (app && app.shadowRoot) || document;
  };
  window.onUiLoaded = (cb) => loaded.push(cb);
  window.onUiUpdate = (cb) => updated.push(cb);
  window.onAfterUiUpdate = (cb) => afterUpdated.push(cb);
  window.onUiTabChange = (cb) => tabChanged.push(cb);
  window.onOptionsChanged = (cb) => optionsChanged.push(cb);
  window.get_uiCurrentTab = () => gradioApp().querySelector("#tabs > .tab-nav > button.selected");
  const run = (list, arg) => list.forEach((cb) => { try { cb(arg); } catch (err) { console.error(err); } });
  let isLoaded = false, lastTab = null, timer = null;
  new MutationObserver((mutations) => {
    if (!isLoaded && gradioApp().querySelector("#txt2img_prompt")) {  // A1111: the txt2img prompt is there
      isLoaded = true;
      run(loaded);
    }
    run(updated, mutations);
    clearTimeout(timer);
    timer = setTimeout(() => run(afterUpdated), 200);
    const tab = window.get_uiCurrentTab();
    if (tab && tab !== lastTab) { lastTab = tab; run(tabChanged); }
  }).observe(document, {childList: true, subtree: true});
})();
