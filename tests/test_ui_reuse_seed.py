"""♻️ reuses the seed of the image this browser session made (issue 17 section 5), through the page's own events on
a real server: two sessions generating at once each get their own seed back, as in A1111 (whose ♻️ reads the page's
generation info), never the other session's."""

from __future__ import annotations

import pytest

from modules.ui.common import seed_to_reuse
from tests.support.gradio_events import PageEvents
from tests.support.server import make_data_dir, running_server

SMALL = {"txt2img_width": 64, "txt2img_height": 64, "txt2img_steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(make_data_dir(tmp_path_factory.mktemp("reuse-seed"))) as srv:
        yield srv


def generate(page: PageEvents, seed: int, **values) -> None:
    result = page.call(page.dependency("txt2img_generate"), {**SMALL, "txt2img_seed": seed, **values}, timeout=300)
    assert result.success, result.error


def reuse(page: PageEvents, elem_id: str = "txt2img_reuse_seed") -> int:
    result = page.call(page.dependency(elem_id))
    assert result.success, result.error
    return int(result.outputs[0])


def test_each_session_gets_back_the_seed_of_its_own_image(server):
    ann, bob, new = PageEvents(server.url), PageEvents(server.url), PageEvents(server.url)
    generate(ann, 111)
    generate(bob, 2**40 + 3, txt2img_batch_size=2)
    assert reuse(ann) == 111
    assert reuse(bob) == 2**40 + 3
    assert reuse(new) == -1  # this session made nothing yet: random, as A1111
    assert reuse(ann, "txt2img_reuse_subseed") == -1  # no variation strength: the variation seed (-1) stays


def test_the_selected_image_decides_and_the_grid_counts_as_the_first():
    info = {"all_seeds": [7, 8, 9], "all_subseeds": [30, 31, 32], "index_of_first_image": 1, "subseed_strength": 0.0}
    assert seed_to_reuse(info, None, 5) == 7
    assert seed_to_reuse(info, 0, 5) == 7  # the grid
    assert seed_to_reuse(info, 3, 5) == 9
    assert seed_to_reuse(info, 40, 5) == 7  # out of range: the first
    assert seed_to_reuse(info, 2, 5, subseed=True) == 5  # no variation strength: unchanged
    assert seed_to_reuse({**info, "subseed_strength": 0.4}, 2, 5, subseed=True) == 31
    assert seed_to_reuse(None, 0, 5) == -1
