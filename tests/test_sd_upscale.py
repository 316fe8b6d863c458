"""img2img's "SD upscale" script: upscale, redraw tile by tile, blend the overlaps (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.errors import FieldError
from modules.processing import sd_upscale
from modules.processing.context import CheckpointIdentity, ProcessingContext
from modules.processing.img2img import img2img
from modules.processing.params import Img2ImgParams
from tests.support.engine import default_settings, load_tiny
from tests.support.tiny_checkpoints import write_tiny_checkpoint


def picture(size=64) -> Image.Image:
    return Image.fromarray((np.random.RandomState(2).rand(size, size, 3) * 255).astype(np.uint8))


def test_split_and_combine_give_back_the_image():
    image = picture(150)
    grid = sd_upscale.split_grid(image, 64, 64, 16)
    assert len(grid.tiles) == 3 and len(grid.tiles[0]) == 3
    assert grid.tiles[-1][-1].x + 64 == 150 and grid.tiles[-1][-1].y + 64 == 150  # the last tile ends at the edge
    assert np.array_equal(np.asarray(sd_upscale.combine_grid(grid)), np.asarray(image))


def test_arguments_follow_a1111_and_bad_ones_are_refused():
    names = ["None", "Lanczos", "Nearest"]
    args = sd_upscale.parse_args(["", 32, 1, 2.0], names)
    assert (args.overlap, args.upscaler, args.scale) == (32, "Lanczos", 2.0)
    assert sd_upscale.parse_args([], names).overlap == 64
    for bad in (["", 32, 9, 2.0], ["", 32, "Nope", 2.0], ["", 999, 0, 2.0], ["", 32, 0, 9.0]):
        with pytest.raises(FieldError):
            sd_upscale.parse_args(bad, names)


def test_sd_upscale_redraws_the_upscaled_picture(tmp_path):
    model = load_tiny(write_tiny_checkpoint("sd1", tmp_path, "tiny"))
    ctx = ProcessingContext(model=model, checkpoint=CheckpointIdentity("t", "tiny", "0123456789"),
                            settings=default_settings(), data_dir=tmp_path)
    p = Img2ImgParams(prompt="a wall", width=64, height=64, steps=2, seed=4, denoising_strength=0.3,
                      sampler_name="Euler", init_images=[picture(64)], batch_size=4)
    args = sd_upscale.parse_args(["", 16, "Lanczos", 2.0], ["None", "Lanczos"])
    out = args.run(p, ctx, img2img)
    assert len(out.images) == 1 and out.images[0].size == (128, 128)
    text = out.infotexts[0]
    assert "SD upscale overlap: 16, SD upscale upscaler: Lanczos" in text and "Denoising strength: 0.3" in text
    lanczos = picture(64).resize((128, 128), Image.Resampling.LANCZOS)
    assert not np.array_equal(np.asarray(out.images[0]), np.asarray(lanczos))  # redrawn, not only resized
    assert out.saved_paths[0] is not None and Image.open(out.saved_paths[0]).info["parameters"] == text


def test_api_sd_upscale(tmp_path):
    import base64
    import io

    from tests.support.api_client import api_client

    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny")
    buf = io.BytesIO()
    picture(64).save(buf, format="PNG")
    with api_client(tmp_path) as client:
        body = {"prompt": "x", "width": 64, "height": 64, "steps": 2, "denoising_strength": 0.3,
                "init_images": [base64.b64encode(buf.getvalue()).decode()], "script_name": "sd upscale",
                "script_args": ["", 16, "Lanczos", 1.5]}
        r = client.post("/sdapi/v1/img2img", json=body)
        assert r.status_code == 200, r.text
        out = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
        assert out.size == (96, 96) and "SD upscale upscaler: Lanczos" in out.info["parameters"]
        bad = client.post("/sdapi/v1/img2img", json={**body, "script_args": ["", 16, "ESRGAN 99x", 2]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "script_args"]
