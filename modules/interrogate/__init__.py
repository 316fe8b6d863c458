"""img2text (A1111's "interrogate"): captions and tags for an image, for the img2img buttons, PNG Info and
``POST /sdapi/v1/interrogate``. Processing code: no gradio, no fastapi.

* ``tags``: A1111's tag-list formatting (threshold, sort, spaces, escaping, filter, ranks) shared by the taggers.
* ``wd14``: SmilingWolf's WD14 taggers (``model.onnx`` + ``selected_tags.csv``) through onnxruntime.
* ``service``: which model a request names, where its files are, loading on use and unloading after.
"""
