"""The compute budget (campaign B12): a job's megapixel-steps are checked before it is queued, for the UI, the
API, the job API and scripts that multiply jobs; the limit is a setting the API cannot change."""

from __future__ import annotations

import json

import pytest

from modules.processing.params import BUDGET_FIELD, Txt2ImgParams, megapixel_steps


def test_megapixel_steps_counts_size_steps_images_and_the_hires_pass():
    assert megapixel_steps(Txt2ImgParams(width=512, height=512, steps=20)) == pytest.approx(5.24288)
    assert megapixel_steps(Txt2ImgParams(width=512, height=512, steps=20, batch_size=4, n_iter=3)) == \
        pytest.approx(5.24288 * 12)
    hires = Txt2ImgParams(width=512, height=512, steps=20, enable_hr=True, hr_scale=2.0, hr_second_pass_steps=10)
    assert megapixel_steps(hires) == pytest.approx(5.24288 + 1024 * 1024 * 10 / 1e6)
    resized = Txt2ImgParams(width=512, height=256, steps=10, enable_hr=True, hr_resize_x=1024)
    assert megapixel_steps(resized) == pytest.approx((512 * 256 * 10 + 1024 * 512 * 10) / 1e6)


@pytest.fixture(scope="module")
def small_budget(tmp_path_factory):
    from tests.support.api_client import api_client
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("budget")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    (root / "config.json").write_text(json.dumps({"max_job_megapixel_steps": 1}), encoding="utf-8")
    with api_client(root) as client:
        yield client


def test_jobs_over_the_budget_are_422_before_queueing(small_budget):
    client = small_budget
    rt = client.app.state.runtime
    before = len(rt.jobs.jobs())
    for body in ({"width": 512, "height": 512, "steps": 20},
                 {"width": 64, "height": 64, "steps": 10, "batch_size": 64, "n_iter": 100},
                 {"width": 64, "height": 64, "steps": 1, "enable_hr": True, "hr_scale": 8, "hr_second_pass_steps": 500}):
        r = client.post("/sdapi/v1/txt2img", json=body)
        assert r.status_code == 422, r.text
        assert BUDGET_FIELD in r.text and "max_job_megapixel_steps" in r.text
        assert client.post("/api/v1/jobs/txt2img", json=body).status_code == 422
    assert len(rt.jobs.jobs()) == before  # nothing was queued
    assert client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 2}).status_code == 200
    # the limit cannot be lifted over the API, neither stored nor per request
    assert client.post("/sdapi/v1/options", json={"max_job_megapixel_steps": 0}).status_code == 422
    r = client.post("/sdapi/v1/txt2img", json={"width": 512, "height": 512, "steps": 20,
                                               "override_settings": {"max_job_megapixel_steps": 0}})
    assert r.status_code == 422


def test_an_xyz_plot_counts_all_its_cells(small_budget):
    args = ["Seed", "1-200", [], "Nothing", "", [], "Nothing", "", [], True, False, False, False, False, False,
            False, 0, False]
    r = small_budget.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 2,
                                                     "script_name": "x/y/z plot", "script_args": args})
    assert r.status_code == 422 and "megapixel-steps" in r.text


def test_an_xyz_plot_counts_all_its_cells_against_the_time_budget(tmp_path):
    """max_job_seconds: one cell fits, the whole plot (200 cells) does not; refused before any cell runs."""
    from tests.support.api_client import api_client
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny")
    (tmp_path / "config.json").write_text(json.dumps({"max_job_megapixel_steps": 0}), encoding="utf-8")
    body = {"width": 64, "height": 64, "steps": 2}
    args = ["Seed", "1-200", [], "Nothing", "", [], "Nothing", "", [], True, False, False, False, False, False,
            False, 0, False]
    with api_client(tmp_path) as client:
        rt = client.app.state.runtime
        assert client.post("/sdapi/v1/txt2img", json=body).status_code == 200  # the model is loaded and measured
        rt.options.apply({"max_job_seconds": 1e9})
        one_cell = rt.check_job_seconds(Txt2ImgParams(**body), rt.options.as_dict())
        rt.options.apply({"max_job_seconds": one_cell * 20})  # one cell fits easily, 200 cells do not
        before = sorted((tmp_path / "outputs").rglob("*.png"))
        r = client.post("/sdapi/v1/txt2img", json={**body, "script_name": "x/y/z plot", "script_args": args})
        assert r.status_code == 422 and "max_job_seconds" in r.text, r.text
        assert sorted((tmp_path / "outputs").rglob("*.png")) == before  # no cell ran
