"""Settings: typed validation, validate-then-atomic-write, quarantine of a corrupt config.json."""

from __future__ import annotations

import json

import pytest

from modules.options import OptionError, Options


def test_defaults_and_roundtrip(tmp_path):
    path = tmp_path / "config.json"
    opts = Options(path)
    opts.load()
    assert opts.get("samples_format") == "png"
    assert opts.samples_save is True  # attribute access, as extensions use it
    assert opts.apply({"samples_format": "jpg", "CLIP_stop_at_last_layers": 2}) == ["samples_format",
                                                                                     "CLIP_stop_at_last_layers"]
    again = Options(path)
    again.load()
    assert again.get("samples_format") == "jpg" and again.get("CLIP_stop_at_last_layers") == 2


@pytest.mark.parametrize("changes, field", [
    ({"samples_format": "bmp"}, "samples_format"),
    ({"CLIP_stop_at_last_layers": "2"}, "CLIP_stop_at_last_layers"),
    ({"CLIP_stop_at_last_layers": 99}, "CLIP_stop_at_last_layers"),
    ({"samples_save": 1}, "samples_save"),
    ({"no_such_setting": 1}, "no_such_setting"),
    ({"jpeg_quality": float("nan")}, "jpeg_quality"),
    ({"samples_format": "x" * 20_000}, "samples_format"),
])
def test_bad_values_are_refused_and_nothing_is_written(tmp_path, changes, field):
    path = tmp_path / "config.json"
    opts = Options(path)
    opts.apply({"samples_format": "webp"})
    before = path.read_bytes()
    with pytest.raises(OptionError) as err:
        opts.apply({"save_txt": True, **changes})  # a good key beside the bad one is not written either
    assert err.value.field == field
    assert path.read_bytes() == before
    assert opts.get("save_txt") is False


def test_restricted_settings_are_refused_over_the_api(tmp_path):
    opts = Options(tmp_path / "config.json")
    with pytest.raises(OptionError, match="outdir_txt2img_samples"):
        opts.apply({"outdir_txt2img_samples": "/etc"}, from_api=True)
    opts.apply({"outdir_txt2img_samples": "elsewhere"})  # the local user may
    assert opts.get("outdir_txt2img_samples") == "elsewhere"


def test_corrupt_config_is_quarantined_not_overwritten(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"samples_format": "jpg", ', encoding="utf-8")
    opts = Options(path)
    opts.load()
    assert opts.quarantined is not None and opts.quarantined.exists()
    assert opts.quarantined.read_text(encoding="utf-8") == '{"samples_format": "jpg", '
    assert opts.get("samples_format") == "png"
    opts.apply({"samples_format": "webp"})
    assert json.loads(path.read_text(encoding="utf-8"))["samples_format"] == "webp"
    assert opts.quarantined.read_text(encoding="utf-8") == '{"samples_format": "jpg", '


def test_unknown_keys_in_config_are_kept(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"some_extension_option": [1, 2], "samples_format": "jpg"}), encoding="utf-8")
    opts = Options(path)
    opts.load()
    opts.apply({"save_txt": True})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["some_extension_option"] == [1, 2] and data["save_txt"] is True


def test_output_folder_defaults_are_absolute_when_the_data_folder_is_elsewhere(tmp_path):
    """A1111 writes absolute outdir_* defaults for a data folder outside its install folder; extensions join a
    relative one to the working directory (the install folder), ours to the data folder."""
    import os

    from modules.options import anchor_folder_defaults, default_registry
    from modules.paths import INSTALL_DIR

    registry = default_registry()
    elsewhere = anchor_folder_defaults(registry, tmp_path, INSTALL_DIR)
    assert elsewhere["outdir_txt2img_samples"].default == str(tmp_path / "outputs" / "txt2img-images")
    assert elsewhere["outdir_save"].default == str(tmp_path / "log" / "images")
    assert elsewhere["outdir_samples"].default == ""  # empty: "the folders below", unchanged
    assert elsewhere["jpeg_quality"] is registry["jpeg_quality"]
    assert os.path.join(str(INSTALL_DIR), elsewhere["outdir_txt2img_samples"].default) == \
        str(tmp_path / "outputs" / "txt2img-images")  # what infinite-image-browsing does with it
    at_home = anchor_folder_defaults(registry, INSTALL_DIR, INSTALL_DIR)
    assert at_home["outdir_txt2img_samples"].default == "outputs/txt2img-images"  # A1111's own relative form


def test_a_saved_relative_default_reads_as_the_absolute_default(tmp_path):
    """A config.json written before the defaults were absolute holds "outputs/txt2img-images"; images-browser read
    that as <install>/outputs/txt2img-images and listed nothing. A relative value of the user's own stays."""
    import json

    from modules.options import Options, anchor_folder_defaults, default_registry
    from modules.paths import INSTALL_DIR

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"outdir_txt2img_samples": "outputs/txt2img-images",
                                  "outdir_img2img_samples": "my-pictures", "outdir_save": "log/images"}))
    options = Options(config, anchor_folder_defaults(default_registry(), tmp_path, INSTALL_DIR))
    options.load()
    assert options.get("outdir_txt2img_samples") == str(tmp_path / "outputs" / "txt2img-images")
    assert options.get("outdir_save") == str(tmp_path / "log" / "images")
    assert options.get("outdir_img2img_samples") == "my-pictures"
    at_home = Options(config, default_registry())
    at_home.load()
    assert at_home.get("outdir_txt2img_samples") == "outputs/txt2img-images"  # data folder = install folder
