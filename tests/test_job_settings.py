"""The typed settings snapshot processing reads: every field a declared setting of the matching kind, defaults
from the declaration (A1111's published defaults as the oracle), values converted once, the full mapping kept."""

from __future__ import annotations

import dataclasses

from modules.options import default_registry
from modules.processing.job_settings import JobSettings

KIND = {bool: "bool", int: "int", float: "float", str: "str"}


def test_every_field_is_a_declared_setting_of_its_kind():
    registry = default_registry()
    fields = [f for f in dataclasses.fields(JobSettings) if f.name != "source"]
    assert len(fields) > 30
    for f in fields:
        assert f.name in registry, f.name
        declared = registry[f.name].kind
        assert declared == f.type or (f.type == "str" and declared in ("str", "radio", "dropdown", "text",
                                                                         "color", "textbox")), (f.name, declared)


def test_defaults_are_a1111s_and_values_are_converted():
    empty = JobSettings.of({})
    # A1111's shared_options.py defaults, written out
    assert (empty.jpeg_quality, empty.samples_format, empty.grid_format) == (80, "png", "png")
    assert (empty.CLIP_stop_at_last_layers, empty.emphasis, empty.comma_padding_backtrack) == (1, "Original", 20)
    assert (empty.samples_save, empty.grid_save, empty.save_txt, empty.enable_pnginfo) == (True, True, False, True)
    assert (empty.n_rows, empty.code_former_weight, empty.face_restoration_model) == (-1, 0.5, "CodeFormer")
    assert (empty.initial_noise_multiplier, empty.img2img_background_color) == (1.0, "#ffffff")
    given = JobSettings.of({"jpeg_quality": "95", "save_txt": "true", "n_rows": 3.0, "tiling": None,
                            "some_extension_key": [1]})
    assert given.jpeg_quality == 95 and given.save_txt is True and given.n_rows == 3 and given.tiling is False
    assert given["some_extension_key"] == [1] and given.get("missing", "x") == "x" and len(given) == 5
    assert JobSettings.of(given) is given
    assert dict(given) == {"jpeg_quality": "95", "save_txt": "true", "n_rows": 3.0, "tiling": None,
                           "some_extension_key": [1]}
