"""ControlNet built into the engine, speaking Mikubill's sd-webui-controlnet contract (unit fields, preprocessor
names and sliders, model titles, ``/controlnet/*``, infotext).

- ``preprocessors``: the control-map preprocessors (weight-free ones built in; weighted ones listed with the file
  they need) and their sliders, with the extension's names, labels and tags.
- ``units``: one ControlNet unit, parsed from the extension's API dict (aliases, ints for enum fields) into typed
  values; its infotext form.
- ``hints``: a unit's input image -> the control map at the generation size (resize modes, pixel perfect).
- ``models``: the ``models/ControlNet`` folder, layout and family detection, loading through the safe loader, cache.
- ``control``: the residuals the UNet adds per step (weights, control modes, guidance range, hires option).

Processing code: imports no gradio and no fastapi.
"""
