"""A1111's Extra Networks card browser in a real browser (issue 21 item 1): the tabs beside Generation, cards with
previews, search, sort, the folder tree, a LoRA card's prompt text from its name.json, the edit dialog writing
name.json, replace preview from the output image, and a checkpoint card switching the checkpoint. The files on
disk and the prompt box are the oracles."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from PIL import Image
from playwright.sync_api import Page, expect

from tests.support.server import make_data_dir, running_server, wait_for_model
from tests.test_ui_browser import browser, js_errors, page, page_errors  # noqa: F401 (fixtures)
from tests.support.tiny_lora import write_lora

SHOTS = "/tmp/extra-networks-{}.png"


def _png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 48), color).save(out, format="PNG")
    return out.getvalue()


def _lora_sd() -> dict[str, torch.Tensor]:
    key = "lora_te_text_model_encoder_layers_0_mlp_fc1"
    return {f"{key}.lora_down.weight": torch.zeros(2, 4), f"{key}.lora_up.weight": torch.zeros(4, 2)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("e2e-cards"), ["tiny", "other"])
    lora = data_dir / "models" / "Lora"
    write_lora(lora / "styles", "detail", _lora_sd())
    write_lora(lora, "bright", _lora_sd())
    write_lora(lora, "anime", _lora_sd())
    (lora / "styles" / "detail.json").write_text(json.dumps({"preferred weight": 0.8,
                                                             "description": "adds fine detail"}))
    (lora / "styles" / "detail.png").write_bytes(_png((200, 30, 30)))
    (lora / "bright.preview.png").write_bytes(_png((240, 220, 40)))
    (data_dir / "models" / "hypernetworks").mkdir(parents=True, exist_ok=True)
    (data_dir / "models" / "hypernetworks" / "oldnet.pt").write_bytes(b"not used")
    with running_server(data_dir) as srv:
        wait_for_model(srv)
        yield srv


def _open_lora_tab(page: Page, tab: str = "txt2img") -> None:
    page.locator(f"#{tab}_extra_tabs > .tab-wrapper [role=tab]", has_text=re.compile(r"^Lora$")).click()
    expect(page.locator(f"#{tab}_lora_cards .card")).to_have_count(3)


def _card(page: Page, name: str, tab: str = "txt2img", page_id: str = "lora"):
    return page.locator(f"#{tab}_{page_id}_cards .card[data-name='{name}']")


def test_tabs_cards_search_sort_and_tree(page: Page, server, js_errors):
    tabs = page.locator("#txt2img_extra_tabs > .tab-wrapper [role=tab]")
    expect(tabs).to_have_text(["Generation", "Textual Inversion", "Hypernetworks", "Checkpoints", "Lora"])
    _open_lora_tab(page)
    expect(page.locator("#txt2img_lora_cards_html")).to_be_visible()
    page.wait_for_function("() => Array.from(document.querySelectorAll('#txt2img_lora_cards img.preview'))"
                           ".every((img) => img.complete)")
    page.locator("#txt2img_lora_cards_html").screenshot(path=SHOTS.format("lora-tab"))
    # previews are served through the thumb route and really load
    detail_img = _card(page, "detail").locator("img.preview")
    expect(detail_img).to_have_attribute("src", re.compile(r"^\./sd_extra_networks/thumb\?filename=.*detail\.png"))
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 32", arg=detail_img.element_handle())
    expect(_card(page, "detail").locator(".description")).to_have_text("adds fine detail")
    expect(_card(page, "anime").locator("img")).to_have_count(0)

    names = page.locator("#txt2img_lora_cards .card:visible .name")
    page.locator("#txt2img_lora_extra_sort").select_option("name")
    expect(names).to_have_text(["anime", "bright", "detail"])
    page.locator("#txt2img_lora_extra_sortorder").click()
    expect(names).to_have_text(["detail", "bright", "anime"])
    page.locator("#txt2img_lora_extra_sortorder").click()

    search = page.locator("#txt2img_lora_extra_search")
    search.fill("bri")
    expect(names).to_have_text(["bright"])
    search.fill("")
    expect(names).to_have_count(3)

    # the folder tree filters to a folder
    tree = page.locator("#txt2img_lora_tree")
    expect(tree).to_be_visible()
    tree.locator(".tree-dir[data-path='styles']").click()
    expect(names).to_have_text(["detail"])
    tree.locator(".tree-dir[data-path='']").click()
    expect(names).to_have_count(3)
    page.locator("#txt2img_lora_extra_tree_view").click()
    expect(tree).to_be_hidden()

    # Hypernetworks are listed, and said to be unsupported
    page.locator("#txt2img_extra_tabs > .tab-wrapper [role=tab]", has_text="Hypernetworks").click()
    expect(page.locator("#txt2img_hypernetworks_cards .card[data-name='oldnet']")).to_be_visible()
    expect(page.locator("#txt2img_hypernetworks_pane .extra-network-note")).to_contain_text("not supported")

    # img2img has the same tabs (mounted when its tab is first shown)
    page.locator("#tab_img2img-button, #tabs [role=tab]", has_text=re.compile(r"^img2img$")).first.click()
    expect(page.locator("#img2img_extra_tabs > .tab-wrapper [role=tab]")).to_have_text(
        ["Generation", "Textual Inversion", "Hypernetworks", "Checkpoints", "Lora"])
    page.locator("#img2img_extra_tabs > .tab-wrapper [role=tab]", has_text=re.compile(r"^Lora$")).click()
    expect(page.locator("#img2img_lora_cards .card")).to_have_count(3)
    page.locator("#tabs [role=tab]", has_text=re.compile(r"^txt2img$")).first.click()
    assert js_errors == []


def test_lora_card_adds_and_removes_its_tag(page: Page, server, js_errors):
    _open_lora_tab(page)
    box = page.locator("#txt2img_prompt textarea")
    box.fill("")
    _card(page, "detail").click()
    expect(box).to_have_value("<lora:detail:0.8>")
    _card(page, "anime").click()  # no name.json: A1111's default multiplier (1.0)
    expect(box).to_have_value("<lora:detail:0.8> <lora:anime:1>")
    _card(page, "detail").click()  # a second click takes it out again, as in A1111
    expect(box).to_have_value("<lora:anime:1>")
    assert js_errors == []


def test_edit_dialog_writes_name_json(page: Page, server, js_errors):
    _open_lora_tab(page)
    json_path = server.data_dir / "models" / "Lora" / "bright.json"
    assert not json_path.exists()
    _card(page, "bright").hover()
    _card(page, "bright").locator(".edit-button").click()
    dialog = page.locator("#txt2img_lora_edit_user_metadata .edit-user-metadata")
    expect(dialog).to_be_visible()
    dialog.locator(".edit-user-metadata-description").fill("sunny look")
    dialog.locator(".edit-user-metadata-activation-text").fill("sunlit")
    dialog.locator(".edit-user-metadata-preferred-weight").fill("0.55")
    dialog.locator(".edit-user-metadata-negative-text").fill("dark")
    dialog.locator(".edit-user-metadata-sd-version").select_option("SD1")
    dialog.locator(".edit-user-metadata-notes").fill("from the test")
    page.screenshot(path=SHOTS.format("edit-dialog"))
    dialog.locator(".edit-user-metadata-save").click()
    expect(dialog).to_be_hidden()
    assert json.loads(json_path.read_text(encoding="utf-8")) == {
        "description": "sunny look", "activation text": "sunlit", "preferred weight": 0.55,
        "negative text": "dark", "sd version": "SD1", "notes": "from the test"}
    expect(_card(page, "bright").locator(".description")).to_have_text("sunny look")
    # the card now adds the new weight and activation text, and the negative text to the negative prompt
    page.locator("#txt2img_prompt textarea").fill("")
    page.locator("#txt2img_neg_prompt textarea").fill("")
    _card(page, "bright").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("<lora:bright:0.55> sunlit")
    expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("(dark:1)")
    assert js_errors == []


def test_replace_preview_from_the_output_image(page: Page, server, js_errors):
    page.locator("#txt2img_extra_tabs > .tab-wrapper [role=tab]", has_text="Generation").click()
    page.locator("#txt2img_prompt textarea").fill("a red fox")
    page.locator("#txt2img_steps input[type=number]").fill("2")
    page.locator("#txt2img_width input[type=number]").fill("64")
    page.locator("#txt2img_height input[type=number]").fill("64")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=60_000)
    _open_lora_tab(page)
    _card(page, "anime").hover()
    _card(page, "anime").locator(".edit-button").click()
    dialog = page.locator("#txt2img_lora_edit_user_metadata .edit-user-metadata")
    dialog.locator(".edit-user-metadata-replace-preview").click()
    expect(dialog.locator(".edit-user-metadata-message")).to_have_text("Preview replaced.")
    preview = server.data_dir / "models" / "Lora" / "anime.png"
    image = Image.open(preview)
    assert image.size == (64, 64) and "a red fox" in image.info.get("parameters", "")
    expect(_card(page, "anime").locator("img.preview")).to_have_count(1)
    dialog.locator(".edit-user-metadata-cancel").click()
    expect(dialog).to_be_hidden()
    page.screenshot(path=SHOTS.format("after-preview"))
    assert js_errors == []


def test_checkpoint_card_switches_the_checkpoint(page: Page, server, js_errors):
    page.locator("#txt2img_extra_tabs > .tab-wrapper [role=tab]", has_text="Checkpoints").click()
    current = server.get_json("/sdapi/v1/options")["sd_model_checkpoint"]
    other = "tiny" if current.startswith("other.") else "other"
    card = _card(page, other, page_id="checkpoints")
    expect(card).to_be_visible()
    card.click()
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile(rf"^{other}\.safetensors"))
    wait_for_model(server)
    assert server.get_json("/sdapi/v1/options")["sd_model_checkpoint"].startswith(f"{other}.safetensors")
    assert js_errors == []
