"""A1111 modules that extensions import (issue 17 section 2): ``modules.devices`` (adetailer imports
``NansException`` from it) gives the running app's device policy and our NaN error; ``modules.sd_samplers`` and
``modules.sd_schedulers`` are views of our one sampler table; ``modules.hashes`` hashes through the app's cache."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from modules.processing.sampling import NansError


def test_devices_follow_the_running_app(tiny_api_client):
    from modules import devices

    policy = tiny_api_client.app.state.runtime.manager.device_policy
    assert devices.device == policy.device == torch.device("cpu")  # no GPU here: the app's choice
    assert devices.cpu == torch.device("cpu")
    assert devices.dtype == devices.dtype_unet == policy.dtype == torch.float32
    assert devices.dtype_vae == policy.vae_dtype
    assert devices.device_esrgan == policy.device_for("esrgan")
    assert devices.get_optimal_device() == policy.device and devices.get_optimal_device_name() == "cpu"
    assert devices.has_mps() is False
    devices.torch_gc()
    with devices.autocast():  # fp32: no autocast at all
        assert not torch.is_autocast_enabled("cpu")
    with devices.without_autocast():
        assert not torch.is_autocast_enabled("cpu")
    assert devices.cond_cast_unet(torch.ones(2, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(AttributeError, match="A1111 internals"):
        devices.sd_hijack_something  # noqa: B018


def test_nans_exception_is_the_error_our_sampler_raises(tiny_api_client):
    from modules.devices import NansException, test_for_nans

    assert NansException is NansError
    with pytest.raises(NansException, match="all NaNs was produced in unet"):
        test_for_nans(torch.full((2, 2), float("nan")), "unet")
    test_for_nans(torch.tensor([float("nan"), 1.0]), "unet")  # A1111 raises only when every value is NaN


def test_importing_the_facade_does_not_import_torch():
    code = "import sys; import modules.devices; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sampler_and_scheduler_lists_as_extensions_read_them(tiny_api_client):
    from modules import samplers, sd_samplers, sd_schedulers

    assert [s.name for s in sd_samplers.all_samplers] == samplers.sampler_names()
    euler_a = sd_samplers.find_sampler_config("Euler a")
    assert euler_a.name == "Euler a" and "k_euler_a" in euler_a.aliases and euler_a.constructor is None
    assert sd_samplers.find_sampler_config(None) == sd_samplers.all_samplers[0]
    assert sd_samplers.find_sampler_config("no such sampler") is None
    assert sd_samplers.samplers_map["k_euler_a"] == "Euler a"
    opts = tiny_api_client.app.state.runtime.options
    opts.apply({"hide_samplers": ["Euler a"]})
    try:
        assert "Euler a" not in sd_samplers.visible_sampler_names() and "Euler" in sd_samplers.visible_sampler_names()
    finally:
        opts.apply({"hide_samplers": []})
    assert [s.label for s in sd_schedulers.schedulers] == samplers.schedule_labels()
    assert sd_schedulers.schedulers_map["karras"] is sd_schedulers.schedulers_map["Karras"]
    assert sd_schedulers.schedulers_map["Karras"].default_rho == samplers.find_schedule("karras").default_rho


def test_hashes_as_extensions_call_them(tiny_api_client, tmp_path):
    import hashlib
    import os

    from modules import hashes

    path = tmp_path / "model.safetensors"
    header = b'{"__metadata__":{}}'
    payload = b"tensor bytes " * 1000
    path.write_bytes(len(header).to_bytes(8, "little") + header + payload)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()  # the oracle: hashlib on the whole file
    assert hashes.calculate_sha256(path) == expected
    assert hashes.sha256_from_cache(path, "test/model") is None  # not hashed yet: nothing is read
    assert hashes.sha256(path, "test/model") == expected
    assert hashes.sha256_from_cache(path, "test/model") == expected  # kept in the app's cache.json
    with open(path, "rb") as f:
        assert hashes.addnet_hash_safetensors(f) == hashlib.sha256(payload).hexdigest()
    assert hashes.sha256(path, "test/model-addnet", use_addnet_hash=True) == hashlib.sha256(payload).hexdigest()
    path.write_bytes(path.read_bytes() + b"changed")
    os.utime(path, (1, 1))
    assert hashes.sha256_from_cache(path, "test/model") is None  # the file changed: the cached value is stale


def test_sd_upscalers_are_a1111s_list_and_upscale_to_a1111s_size(tiny_api_client):
    """Ultimate SD upscale indexes shared.sd_upscalers (an index radio) and calls data.scaler.upscale."""
    from PIL import Image

    from modules import shared

    names = [u["name"] for u in tiny_api_client.get("/sdapi/v1/upscalers").json()]
    upscalers = shared.sd_upscalers
    assert [u.name for u in upscalers] == names and names[:3] == ["None", "Lanczos", "Nearest"]
    nearest = upscalers[2]
    image = Image.new("RGB", (30, 20), (10, 20, 30))
    image.putpixel((0, 0), (255, 0, 0))
    bigger = nearest.scaler.upscale(image, 2.5, nearest.data_path)
    assert bigger.size == (72, 48)  # 75x50 rounded down to 8 pixels, as A1111's Upscaler.upscale
    assert bigger.getpixel((1, 1)) == (255, 0, 0) and bigger.getpixel((40, 40)) == (10, 20, 30)  # nearest: no blur


def test_images_grid_split_and_combine_in_a1111s_layout():
    """sd-upscale-style extensions walk grid.tiles as [y, h, [[x, w, tile], ...]] and paste tiles back."""
    import numpy as np
    from PIL import Image

    from modules import images

    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (100, 150, 3), dtype=np.uint8))
    grid = images.split_grid(picture, tile_w=64, tile_h=64, overlap=16)
    assert (grid.tile_w, grid.tile_h, grid.image_w, grid.image_h, grid.overlap) == (64, 64, 150, 100, 16)
    for y, h, row in grid.tiles:
        assert h == 64 and row[-1][0] + 64 == 150  # the last tile ends at the edge
        for x, w, tile in row:
            assert w == 64 and tile.tobytes() == picture.crop((x, y, x + 64, y + 64)).tobytes()
    assert grid.tiles[-1][0] + 64 == 100
    assert images.combine_grid(grid).tobytes() == picture.tobytes()  # unchanged tiles give the picture back
    for _y, _h, row in grid.tiles:
        for tile in row:
            tile[2] = Image.new("RGB", (64, 64), (7, 7, 7))
    assert set(images.combine_grid(grid).getdata()) == {(7, 7, 7)}
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert images.flatten(rgba, "#00ff00").getpixel((0, 0)) == (0, 255, 0)  # transparent: the background


def test_api_helpers_extensions_import(tmp_path):
    """rembg and ControlNet decode and encode with modules.api.api; A1111's encoder returns bytes."""
    import base64
    import io

    from PIL import Image

    from modules.api import api
    from modules.api.images import BadImage

    image = Image.new("RGB", (3, 2), (1, 2, 3))
    encoded = api.encode_pil_to_base64(image)
    assert isinstance(encoded, bytes)
    assert Image.open(io.BytesIO(base64.b64decode(encoded))).getpixel((2, 1)) == (1, 2, 3)
    assert api.decode_base64_to_image("data:image/png;base64," + encoded.decode()).size == (3, 2)
    with pytest.raises(BadImage):
        api.decode_base64_to_image("not an image")
    assert api.validate_sampler_name("euler a") == "Euler a"


def test_masking_crop_regions_as_a1111():
    from PIL import Image

    from modules import masking

    mask = Image.new("L", (100, 80))
    mask.paste(255, (30, 20, 40, 30))
    assert masking.get_crop_region(mask, pad=5) == (25, 15, 45, 35)
    assert masking.get_crop_region_v2(Image.new("L", (100, 80))) is None
    assert masking.get_crop_region(Image.new("L", (100, 80)), pad=4) == (96, 76, 4, 4)  # A1111's inverted box
    x1, y1, x2, y2 = masking.expand_crop_region((25, 15, 45, 35), 64, 32, 100, 80)
    assert (x2 - x1) / (y2 - y1) == 2 and x1 >= 0 and x2 <= 100  # the processing size's ratio, inside the image


def test_modelloader_downloads_once_into_the_folder_and_lists_models(tmp_path):
    from modules import modelloader

    source = tmp_path / "source" / "annotator.pth"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    models = tmp_path / "models"
    path = modelloader.load_file_from_url(source.as_uri(), model_dir=str(models))
    assert path == str(models / "annotator.pth") and (models / "annotator.pth").read_bytes() == b"weights"
    source.write_bytes(b"changed")
    assert modelloader.load_file_from_url(source.as_uri(), model_dir=str(models)) == path  # there: not fetched
    assert (models / "annotator.pth").read_bytes() == b"weights"
    with pytest.raises(ValueError):
        modelloader.load_file_from_url(source.as_uri(), model_dir=str(models), file_name="../escape.pth")
    with pytest.raises(ValueError, match="expected hash"):
        modelloader.load_file_from_url(source.as_uri(), model_dir=str(models), file_name="x.pth", hash_prefix="zz")
    assert not (models / "x.pth").exists() and not list(models.glob("*.partial"))
    (models / "notes.txt").write_text("x")
    assert modelloader.load_models(str(models), ext_filter=[".pth"]) == [path]
    assert modelloader.friendly_name("https://host/a/control_v11p_sd15_canny.pth") == "control_v11p_sd15_canny"


def test_names_a1111_modules_reexport_follow_the_running_app(tiny_api_client):
    """stable-diffusion-webui-state registers through scripts.script_callbacks; rembg reads paths_internal."""
    from modules import paths, script_callbacks, scripts, shared

    assert scripts.script_callbacks is script_callbacks and scripts.shared is shared and scripts.paths is paths
    from modules.paths_internal import data_path, models_path

    rt = tiny_api_client.app.state.runtime
    assert (models_path, data_path) == (str(rt.paths.models_dir), str(rt.paths.data_dir))
