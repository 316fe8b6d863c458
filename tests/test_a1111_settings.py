"""Every A1111 setting: GET/POST /sdapi/v1/options, override_settings and config.json hold all of A1111's keys;
the ones we do not act on are stored only (lenient, like A1111) and marked so in the Settings tab.

The oracle for "every key" is tests/fixtures/a1111_shared_options_keys.txt, written from A1111's
modules/shared_options.py independently of modules/a1111_settings.py.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from modules import a1111_settings
from modules.options import OptionError, OptionInfo, Options, builtin_options
from modules.ui import settings_tab as st

FIXTURE = Path(__file__).parent / "fixtures" / "a1111_shared_options_keys.txt"
A1111_KEYS = [line.strip() for line in FIXTURE.read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
OURS = [k for k in builtin_options() if k not in A1111_KEYS]  # our own settings A1111 lacks


@pytest.fixture
def opts(tmp_path: Path) -> Options:
    o = Options(tmp_path / "config.json")
    o.load()
    return o


def settings_of(client: Any) -> dict[str, Any]:
    """GET /sdapi/v1/options without sd_model_checkpoint (filled in once the background load has finished)."""
    got = client.get("/sdapi/v1/options").json()
    got.pop("sd_model_checkpoint")
    return got


def changed(key: str, info: OptionInfo, current: Any) -> Any:
    """A value of the setting's type, valid for it, different from ``current``."""
    choices = info.current_choices()  # fixed ones, or the runtime's (VAEs, localizations...)
    if info.kind == "bool":
        return not current
    if info.kind == "list":
        if choices:
            return [choices[-1]] if list(current or []) != [choices[-1]] else []
        return [*(current or []), "extra"]
    if choices:
        return next(c for c in choices if c != current)
    if info.kind in ("int", "float"):
        step = info.step or (1 if info.kind == "int" else 0.01)
        up = current + step
        value = up if info.maximum is None or up <= info.maximum else current - step
        return round(value, 6) if info.kind == "float" else int(value)
    if current is None:
        return "Lanczos"
    return "#123456" if str(current).startswith("#") else f"{current}x"


# -- the table and the registry ----------------------------------------------------------------------------------
def test_table_has_exactly_the_fixture_keys_in_a1111_order() -> None:
    assert len(A1111_KEYS) == len(set(A1111_KEYS)) == 281
    assert list(a1111_settings.A1111_SETTINGS) == A1111_KEYS
    assert a1111_settings.A1111_VERSION in FIXTURE.read_text(encoding="utf-8")
    # every row is well formed: its default has its kind, a fixed-choice default is one of its choices
    for fact in a1111_settings.A1111_SETTINGS.values():
        assert fact.section in a1111_settings.SECTIONS
        if fact.default is not None:
            assert isinstance(fact.default, {"bool": bool, "int": int, "float": (int, float), "str": str,
                                             "list": list}[fact.kind]), fact.key
        if fact.choices and fact.kind != "list":
            assert fact.default in fact.choices, fact.key
        if fact.minimum is not None:
            assert fact.minimum <= fact.default <= fact.maximum, fact.key


def test_registry_has_every_key_with_a1111_defaults(opts: Options) -> None:
    registry = opts.registry
    assert [k for k in registry if k in A1111_KEYS] == A1111_KEYS  # A1111's order, ours after
    # ours (with Forge's VAE / Text Encoder choice), then the built-in ControlNet's (sd-webui-controlnet's keys)
    assert list(registry)[len(A1111_KEYS):] == OURS == ["vae_tiling", "forge_additional_modules", "forge_unet_storage_dtype",
                                                        "flux_first_block_cache",
                                                        "max_job_megapixel_steps", "max_job_seconds",
                                                        "control_net_models_path", "control_net_modules_path",
                                                        "control_net_unit_count",
                                                        "control_net_model_cache_size", "control_net_no_detectmap",
                                                        "interrogate_wd14_model", "interrogate_wd14_general_threshold",
                                                        "interrogate_wd14_character_threshold"]
    for key, fact in a1111_settings.A1111_SETTINGS.items():
        assert opts.get(key) == fact.default, key
        assert registry[key].kind == fact.kind, key
    builtin = builtin_options()
    used = [k for k in A1111_KEYS if registry[k].used]
    assert set(used) == {k for k in A1111_KEYS if k in builtin} | a1111_settings.IMPLEMENTED
    assert len(used) == 64 + len(a1111_settings.IMPLEMENTED)  # the rest (about 212) are stored only
    # ours keep their own semantics and sections
    assert registry["vae_tiling"].section == ("vae", "VAE") and registry["vae_tiling"].used
    assert registry["max_job_seconds"].restricted


def test_stored_only_values_are_taken_as_leniently_as_a1111(opts: Options) -> None:
    # A1111 writes settings without type checks; real config.json files hold strings such as "0" for numbers
    opts.apply({"token_merging_ratio_hr": "0", "token_merging_ratio": 1, "uni_pc_order": 4.0, "sd_unet": "my-unet",
                "js_modal_lightbox_gamepad_repeat": 99999, "quicksettings_list": ("sd_model_checkpoint", "sd_vae")})
    assert opts.get("token_merging_ratio_hr") == "0"
    assert opts.get("token_merging_ratio") == 1.0 and isinstance(opts.get("token_merging_ratio"), float)
    assert opts.get("uni_pc_order") == 4 and isinstance(opts.get("uni_pc_order"), int)
    assert opts.get("quicksettings_list") == ["sd_model_checkpoint", "sd_vae"]
    for bad in ({"token_merging_ratio_hr": math.nan}, {"token_merging_ratio_hr": math.inf}, {"sd_unet": "x" * 20_000},
                {"hidden_tabs": ["x" * 9_000] * 20}):
        with pytest.raises(OptionError) as err:
            opts.validate(bad)
        assert err.value.field == next(iter(bad))
    # implemented keys stay strict, including the A1111 ones we read beyond builtin_options
    for bad in ({"samples_save": 1}, {"face_restoration": "yes"}, {"code_former_weight": 2.0},
                {"randn_source": "TPU"}, {"tiling": "false"}):
        with pytest.raises(OptionError) as err:
            opts.validate(bad)
        assert err.value.field == next(iter(bad))


def test_config_json_holds_every_key_and_loads_back_clean(opts: Options, caplog) -> None:
    opts.path.write_text(json.dumps({"token_merging_ratio_hr": "0", "from_an_extension": {"a": 1}}), encoding="utf-8")
    opts.load()
    assert opts.get("token_merging_ratio_hr") == "0"  # a stored-only value of another type is kept, as A1111 keeps it
    opts.apply({"jpeg_quality": 95})
    saved = json.loads(opts.path.read_text(encoding="utf-8"))
    assert list(saved)[:len(A1111_KEYS)] == A1111_KEYS  # every key, A1111's order, like A1111's config.json
    assert set(OURS) <= set(saved) and saved["from_an_extension"] == {"a": 1}
    assert saved["outdir_txt2img_samples"] == "outputs/txt2img-images" and saved["jpeg_quality"] == 95
    assert saved["token_merging_ratio_hr"] == "0" and saved["sd_model_checkpoint"] is None
    with caplog.at_level(logging.WARNING, logger="modules.options"):
        again = Options(opts.path)
        again.load()
    assert not caplog.records  # every default written survives its own validation
    assert again.as_dict() == opts.as_dict()


def test_restricted_keys_refuse_api_writes_but_not_a_posted_back_value(opts: Options) -> None:
    restricted = [k for k, info in opts.registry.items() if info.restricted]
    for key in ("temp_dir", "outdir_init_images", "grid_zip_filename_pattern", "api_useragent",
                "api_enable_requests", "restore_config_state_file", "samples_filename_pattern"):
        assert key in restricted
        with pytest.raises(OptionError) as err:
            opts.validate({key: changed(key, opts.registry[key], opts.get(key))}, from_api=True)
        assert err.value.field == key
    assert opts.validate({k: opts.get(k) for k in restricted}, from_api=True)  # unchanged: no write, accepted
    opts.apply({"temp_dir": "/tmp/elsewhere"})  # the local user may
    assert opts.get("temp_dir") == "/tmp/elsewhere"


def test_extensions_still_add_options_through_the_shared_facade(opts: Options) -> None:
    from modules import shared

    info = shared.OptionInfo(3, "Demo level", component_args={"minimum": 0, "maximum": 5, "step": 1},
                             section=("demo", "Demo extension"))
    opts.add_option("demo_level", info)
    assert info.used and opts.get("demo_level") == 3
    with pytest.raises(OptionError):
        opts.validate({"demo_level": 9})
    calls = []
    opts.onchange("demo_level", lambda: calls.append(opts.get("demo_level")), call=False)
    opts.apply({"demo_level": 4})
    assert calls == [4]
    keys = st.visible_keys(opts)
    assert keys[-1] == "demo_level"  # sections A1111 lacks come after A1111's
    # an extension re-declaring an A1111 key takes it over (it acts on it)
    opts.add_option("sd_hypernetwork", shared.OptionInfo("None", "Hypernetwork", section=("sd", "Stable Diffusion")))
    assert opts.registry["sd_hypernetwork"].used


def test_no_stored_only_setting_is_read_by_our_code(opts: Options) -> None:
    """A setting our code reads is implemented: declare it in builtin_options() or list it in
    a1111_settings.IMPLEMENTED, so it is validated strictly and not shown as stored only."""
    import re

    root = Path(__file__).resolve().parents[1]
    stored = [k for k, info in opts.registry.items() if not info.used]
    pattern = re.compile(r"(?:settings|opts|options)\.get\(\s*['\"](%s)['\"]|\bopts\.(%s)\b|settings\[['\"](%s)['\"]\]"
                         % (("|".join(map(re.escape, stored)),) * 3))
    mine = {root / "modules" / "options.py", root / "modules" / "a1111_settings.py"}
    read = {}
    for path in [*(root / "modules").rglob("*.py"), *(root / "scripts").rglob("*.py")]:
        if path not in mine:
            for m in pattern.finditer(path.read_text(encoding="utf-8", errors="replace")):
                read[next(g for g in m.groups() if g)] = str(path.relative_to(root))
    assert not read, f"stored-only settings read by code (mark them implemented): {read}"


# -- the Settings tab --------------------------------------------------------------------------------------------
def test_settings_tab_order_and_stored_only_markers(opts: Options) -> None:
    keys = st.visible_keys(opts)
    grouped = st.sections(opts, keys)
    titles = [title for (_sid, title), _ in grouped]
    assert titles[:4] == ["Saving images/grids", "Paths for saving", "Saving to a directory", "Stable Diffusion"]
    assert titles.index("Live previews") < titles.index("System") < titles.index("Training") < titles.index(
        "Interrogate") == len(titles) - 2  # A1111's categories, uncategorised last
    assert titles[-1] == "ControlNet"  # then the built-in ControlNet's, where A1111 lists the extension's
    assert "Hidden options" not in titles and "Extensions" not in titles
    assert not {"restore_config_state_file", "sd_checkpoint_hash", "disabled_extensions"} & set(keys)
    shown = set(keys) | set(st.QUICKSETTINGS) | {"restore_config_state_file", "sd_checkpoint_hash",
                                                 "disabled_extensions", "disable_all_extensions"}
    assert set(A1111_KEYS) <= shown
    ids = st.section_ids(grouped)
    assert len(ids) == len(set(ids)) and "ui_live_previews" in ids and "ui_user_interface" in ids
    assert st.section_stored_only(opts, [k for k in keys if opts.registry[k].section[0] == "training"])
    assert not st.section_stored_only(opts, [k for k in keys if opts.registry[k].section[0] == "vae"])
    stored = st.component_spec("token_merging_ratio_hr", opts.registry["token_merging_ratio_hr"])
    assert stored["type"] == "slider" and stored["kwargs"]["elem_classes"] == [st.STORED_ONLY_CLASS]
    # A1111's own comment, so A1111 localizations translate it; the badge is the class
    assert st.component_spec("img_max_size_mp", opts.registry["img_max_size_mp"])["kwargs"]["info"] == "in megapixels"
    bare = st.component_spec("training_enable_tensorboard", opts.registry["training_enable_tensorboard"])
    assert bare["kwargs"]["info"] == st.STORED_ONLY_INFO  # one without a comment says it in its info line
    used = st.component_spec("jpeg_quality", opts.registry["jpeg_quality"])
    assert "elem_classes" not in used["kwargs"] and "stored only" not in used["kwargs"].get("info", "")
    face = st.component_spec("face_restoration", opts.registry["face_restoration"])
    assert "elem_classes" not in face["kwargs"]  # an A1111 key we act on is not marked
    # a stored value of another type (A1111 keeps what it is given) is shown as text and stays unchanged
    opts.apply({"token_merging_ratio_hr": "0", "sd_checkpoints_keep_in_cpu": "yes"})
    spec = st.component_spec("token_merging_ratio_hr", opts.registry["token_merging_ratio_hr"], opts.get("token_merging_ratio_hr"))
    assert spec["type"] == "textbox" and spec["kwargs"]["value"] == "0"
    values = [st.component_spec(k, opts.registry[k], opts.get(k))["kwargs"]["value"] for k in keys]
    assert st.changed_values(opts, keys, values) == {}


def test_build_settings_tab_with_every_setting(tmp_path: Path) -> None:
    import gradio as gr

    from modules import cmd_args, runtime

    rt = runtime.build_runtime(cmd_args.parse_args(["--data-dir", str(tmp_path)], environ={}))
    with gr.Blocks() as demo:
        controls = st.build_settings_tab(rt)
    keys = st.visible_keys(rt.options)
    assert list(controls.components) == keys and len(keys) == len(A1111_KEYS) + len(OURS) - 7
    marked = {k for k, c in controls.components.items() if st.STORED_ONLY_CLASS in (c.elem_classes or [])}
    stored = {k for k in A1111_KEYS if not rt.options.registry[k].used}
    assert marked == stored - {"restore_config_state_file", "sd_checkpoint_hash"}  # (those two are hidden)
    labels = {sid: acc.label for sid, acc in controls.sections.items()}
    assert labels["training"] == "Training" and labels["saving-images"] == "Saving images/grids"
    assert st.STORED_ONLY_CLASS in (controls.sections["training"].elem_classes or [])
    assert st.STORED_ONLY_CLASS not in (controls.sections["saving-images"].elem_classes or [])
    config = demo.get_config_file()
    elem_ids = [c["props"].get("elem_id") for c in config["components"] if c["props"].get("elem_id")]
    assert len(elem_ids) == len(set(elem_ids)) and "settings_legend" in elem_ids
    search = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_search")
    updates = search("stored only")
    assert sum(1 for u in updates[:len(keys)] if u.get("visible") is True) == len(marked)


# -- over the API ------------------------------------------------------------------------------------------------
def test_get_options_returns_every_a1111_key(tiny_api_client) -> None:
    got = tiny_api_client.get("/sdapi/v1/options").json()
    missing = [k for k in A1111_KEYS if k not in got]
    assert not missing
    assert set(OURS) <= set(got)
    data_dir = tiny_api_client.app.state.runtime.paths.data_dir
    for key, fact in a1111_settings.A1111_SETTINGS.items():
        if key == "sd_model_checkpoint":  # filled in with the loaded model
            continue
        if key.startswith("outdir_") and fact.default:  # a data folder outside the install: absolute, as A1111's
            assert got[key] == str(data_dir / fact.default), key
        else:
            assert got[key] == fact.default, key


def test_post_options_round_trips_every_key(tiny_api_client) -> None:
    client = tiny_api_client
    rt = client.app.state.runtime
    before = settings_of(client)
    registry = rt.options.registry
    writable = [k for k in [*A1111_KEYS, *OURS] if not registry[k].restricted and k != "sd_model_checkpoint"]
    wanted = {k: changed(k, registry[k], before[k]) for k in writable}
    try:
        r = client.post("/sdapi/v1/options", json=wanted)
        assert r.status_code == 200, r.text
        after = settings_of(client)
        assert {k: after[k] for k in writable} == wanted
        saved = json.loads(rt.options.path.read_text(encoding="utf-8"))
        assert set(A1111_KEYS) | set(OURS) <= set(saved)  # config.json after a save: every key
        assert {k: saved[k] for k in writable} == wanted
        for key in (k for k in [*A1111_KEYS, *OURS] if registry[k].restricted):  # paths, patterns: refused
            r = client.post("/sdapi/v1/options", json={key: changed(key, registry[key], before[key])})
            assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == key, key
        assert client.post("/sdapi/v1/options", json=after).status_code == 200  # posting back GET: a no-op
    finally:
        assert client.post("/sdapi/v1/options", json={k: before[k] for k in writable}).status_code == 200
    assert settings_of(client) == before


@pytest.mark.parametrize("payload", [{"jpeg_quality": "high"}, {"samples_save": 1}, {"randn_source": "TPU"},
                                     {"face_restoration": "yes"}, {"code_former_weight": 2}])
def test_bad_values_for_implemented_keys_are_422_naming_the_key(tiny_api_client, payload) -> None:
    r = tiny_api_client.post("/sdapi/v1/options", json=payload)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == next(iter(payload))


def test_override_settings_take_every_key(tiny_api_client) -> None:
    client = tiny_api_client
    rt = client.app.state.runtime
    registry = rt.options.registry
    before = settings_of(client)
    # every stored-only key, plus implemented ones that leave a 64x64 one-step image alone
    overrides = {k: changed(k, registry[k], before[k]) for k in A1111_KEYS
                 if not registry[k].used and not registry[k].restricted}
    overrides.update({"jpeg_quality": 81, "eta_noise_seed_delta": 3, "samples_save": False, "grid_save": False})
    seen: list[dict[str, Any]] = []
    plain = rt.job_settings
    rt.job_settings = lambda o: seen.append(plain(o)) or seen[-1]  # the snapshot the job runs with
    try:
        body = {"prompt": "x", "width": 64, "height": 64, "steps": 1, "override_settings": overrides}
        r = client.post("/sdapi/v1/txt2img", json=body)
        assert r.status_code == 200, r.text
        assert {k: seen[-1][k] for k in overrides} == overrides
        assert settings_of(client) == before  # restored afterwards (A1111's default)
        bad = client.post("/sdapi/v1/txt2img", json={**body, "override_settings": {"samples_save": "no"}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "samples_save"
        refused = client.post("/sdapi/v1/txt2img", json={**body, "override_settings": {"temp_dir": "/tmp/x"}})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "temp_dir"
    finally:
        del rt.job_settings
