// Runs in the page head, after gradio's inline config and before gradio draws the page: each dropdown's choice
// labels in the chosen localization (gradio shows the label, chosen value included, and sends the English value,
// so infotexts, the API and the settings file keep A1111's values). Name dropdowns keep their names, except the
// few UI words among them (window.__sdPage.untranslated, from modules/ui/untranslated.py).
(function localizeDropdownChoices() {
  const page = window.__sdPage || {};
  const map = page.localization;
  const config = window.gradio_config;
  if (!map || !config || !Array.isArray(config.components)) return;
  const lists = page.untranslated || {};
  const names = new Set(lists.nameDropdowns || []);
  const suffixes = lists.nameDropdownSuffixes || [];
  const uiWords = new Set(lists.uiWordsInNameLists || []);
  const isNameList = (id) => !!id && (names.has(id) || suffixes.some((s) => id.endsWith(s)));
  for (const component of config.components) {
    const props = component && component.props;
    if (!props || component.type !== "dropdown" || !Array.isArray(props.choices)) continue;
    const nameList = isNameList(props.elem_id);
    props.choices = props.choices.map((choice) => {
      if (!Array.isArray(choice) || typeof choice[0] !== "string") return choice;
      const label = choice[0];
      const translated = map[label];
      if (typeof translated !== "string" || (nameList && !uiWords.has(label))) return choice;
      return [translated, choice[1]];
    });
  }
})();
