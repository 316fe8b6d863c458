"""Infotext: A1111's exact text format, its parser's behaviour, and a lossless round trip."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modules import infotext
from modules.infotext import (
    INFOTEXT_KEY_ORDER,
    RE_IMAGESIZE,
    RE_PARAM,
    build_infotext,
    ordered_params,
    parse_infotext,
    quote,
    split_legacy_sampler,
    version_string,
)

CONTRACT_LINE = (
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)


def contract_params() -> dict[str, object]:
    # Deliberately out of order: ordered_params must restore A1111's order.
    return ordered_params(
        {
            "Version": "v1.10.1",
            "Model": "v1-5-pruned-emaonly",
            "Seed": 1234567890,
            "Steps": 20,
            "Size": "512x512",
            "Sampler": "DPM++ 2M",
            "CFG scale": 7,
            "Schedule type": "Karras",
            "Model hash": "6ce0161689",
            "Clip skip": None,  # conditional keys are passed as None and dropped
            "RNG": None,
            "User": None,
        },
        {},
    )


# -- building -------------------------------------------------------------------------------------------------------


def test_contract_example_line_exact() -> None:
    assert build_infotext("", "", contract_params()) == CONTRACT_LINE


def test_full_infotext_exact() -> None:
    text = build_infotext("a cat, sitting", "blurry, lowres", contract_params())
    assert text == f"a cat, sitting\nNegative prompt: blurry, lowres\n{CONTRACT_LINE}"


def test_negative_line_omitted_when_empty() -> None:
    assert build_infotext("a cat", "", contract_params()) == f"a cat\n{CONTRACT_LINE}"


def test_multiline_prompts_kept() -> None:
    text = build_infotext("line one\nline two", "neg one\nneg two", {"Steps": 20})
    assert text == "line one\nline two\nNegative prompt: neg one\nneg two\nSteps: 20"


def test_api_float_cfg_printed_with_str() -> None:
    # Contract 4.1: the UI prints 7, the API (float) prints 7.0 - values go through str().
    assert build_infotext("", "", {"Steps": 20, "CFG scale": 7.0}) == "Steps: 20, CFG scale: 7.0"


def test_key_equal_to_value_printed_bare_and_none_skipped() -> None:
    params = {"Steps": 20, "Tiling": "Tiling", "Seed": None, "Pad conds": True}
    assert build_infotext("", "", params) == "Steps: 20, Tiling, Pad conds: True"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Euler a", "Euler a"),
        (7, "7"),
        (7.5, "7.5"),
        (True, "True"),
        ("detail: 62c6ad1e4a01", '"detail: 62c6ad1e4a01"'),
        ("a, b", '"a, b"'),
        ("x\ny", '"x\\ny"'),
        ("猫: ねこ", '"猫: ねこ"'),  # ensure_ascii=False: unicode stays readable
        ('say "hi", ok', '"say \\"hi\\", ok"'),
        # Beyond A1111 (module doc): values A1111's own parser would mangle.
        ('"quoted"', '"\\"quoted\\""'),
        ("", '""'),
        (" padded ", '" padded "'),
        ('mid"quote', 'mid"quote'),
    ],
)
def test_quote(value: object, expected: str) -> None:
    assert quote(value) == expected


def test_lora_hashes_example_from_contract() -> None:
    line = build_infotext("", "", {"Steps": 20, "Sampler": "Euler", "Lora hashes": "detail: 62c6ad1e4a01"})
    assert line == 'Steps: 20, Sampler: Euler, Lora hashes: "detail: 62c6ad1e4a01"'
    assert parse_infotext(line)["Lora hashes"] == "detail: 62c6ad1e4a01"


def test_key_order_constant_matches_contract() -> None:
    assert INFOTEXT_KEY_ORDER[:4] == ("Steps", "Sampler", "Schedule type", "CFG scale")
    assert INFOTEXT_KEY_ORDER[-2:] == ("RNG", "Tiling")
    assert len(INFOTEXT_KEY_ORDER) == 26 and len(set(INFOTEXT_KEY_ORDER)) == 26


def test_ordered_params_extras_between_tiling_and_version() -> None:
    base = {"User": "me", "Version": "v1", "Tiling": "True", "Seed": 1, "Steps": 20, "Custom base": "x"}
    extra = {"Hires upscale": 2, "Denoising strength": 0.7, "Lora hashes": "a: 1"}
    assert list(ordered_params(base, extra)) == [
        "Steps", "Seed", "Tiling", "Custom base", "Hires upscale", "Denoising strength", "Lora hashes",
        "Version", "User",
    ]


def test_ordered_params_extra_overrides_keep_position() -> None:
    out = ordered_params({"Steps": 20, "Seed": 1}, {"Steps": 30, "Eta": 1.0})
    assert list(out.items()) == [("Steps", 30), ("Seed", 1), ("Eta", 1.0)]


# -- parsing --------------------------------------------------------------------------------------------------------


def test_parse_contract_example() -> None:
    res = parse_infotext(f"a cat, sitting\nNegative prompt: blurry\n{CONTRACT_LINE}")
    assert res["Prompt"] == "a cat, sitting"
    assert res["Negative prompt"] == "blurry"
    # Strings, exactly as A1111 returns them.
    assert res["Steps"] == "20" and res["CFG scale"] == "7" and res["Seed"] == "1234567890"
    assert res["Size-1"] == "512" and res["Size-2"] == "512" and "Size" not in res
    assert res["Sampler"] == "DPM++ 2M" and res["Schedule type"] == "Karras"
    assert res["Model hash"] == "6ce0161689" and res["Model"] == "v1-5-pruned-emaonly"
    assert res["Version"] == "v1.10.1"


def test_parse_defaults_have_a1111_values_and_types() -> None:
    res = parse_infotext("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7")
    expected = {
        "Clip skip": "1",
        "Hires resize-1": 0,
        "Hires resize-2": 0,
        "Hires sampler": "Use same sampler",
        "Hires schedule type": "Use same scheduler",
        "Hires checkpoint": "Use same checkpoint",
        "Hires prompt": "",
        "Hires negative prompt": "",
        "Mask mode": "Inpaint masked",
        "Masked content": "original",
        "Inpaint area": "Whole picture",
        "Masked area padding": 32,
        "RNG": "GPU",
        "Schedule type": "Automatic",
        "Schedule max sigma": 0,
        "Schedule min sigma": 0,
        "Schedule rho": 0,
        "VAE Encoder": "Full",
        "VAE Decoder": "Full",
        "FP8 weight": "Disable",
        "Refiner switch by sampling steps": False,
    }
    for key, value in expected.items():
        assert res[key] == value and type(res[key]) is type(value), key
    assert "Cache FP16 weight for LoRA" not in res
    assert "Emphasis" not in res


def test_parse_present_keys_override_defaults() -> None:
    res = parse_infotext("x\nSteps: 20, Clip skip: 2, RNG: CPU, FP8 weight: Enable for SDXL, Masked area padding: 0")
    assert res["Clip skip"] == "2" and res["RNG"] == "CPU" and res["Masked area padding"] == "0"
    assert res["Cache FP16 weight for LoRA"] is False


def test_parse_a1111_docstring_example() -> None:
    text = (
        "girl with an artist's beret, determined, blue eyes, ((eyeshadow)), (coquettish), detailed, intricate\n"
        "Negative prompt: ugly, fat, obese, (((deformed))), [blurry], bad anatomy\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
    )
    res = parse_infotext(text)
    assert res["Prompt"].startswith("girl with") and res["Prompt"].endswith("intricate")
    assert res["Negative prompt"] == "ugly, fat, obese, (((deformed))), [blurry], bad anatomy"
    assert res["Sampler"] == "Euler a" and res["Model hash"] == "45dee52b"


def test_last_line_needs_three_params() -> None:
    res = parse_infotext("a photo\nSteps: 20, Seed: 5")
    assert res["Prompt"] == "a photo\nSteps: 20, Seed: 5"
    assert "Steps" not in res and "Seed" not in res


def test_only_params_line() -> None:
    res = parse_infotext(CONTRACT_LINE)
    assert res["Prompt"] == "" and res["Negative prompt"] == "" and res["Steps"] == "20"


def test_multiline_prompt_and_negative() -> None:
    text = "line 1\n  line 2  \n\nline 4\nNegative prompt: n1\nn2\nSteps: 1, Seed: 2, CFG scale: 3"
    res = parse_infotext(text)
    assert res["Prompt"] == "line 1\nline 2\n\nline 4"  # lines are stripped, as in A1111
    assert res["Negative prompt"] == "n1\nn2"


def test_negative_prompt_containing_negative_prompt() -> None:
    neg = "Negative prompt: x\nNegative prompt: y"
    res = parse_infotext(build_infotext("p", neg, {"Steps": 1, "Seed": 2, "CFG scale": 3}))
    assert res["Negative prompt"] == neg


def test_windows_line_endings() -> None:
    res = parse_infotext("a cat\r\nNegative prompt: dog\r\nSteps: 20, Seed: 1, CFG scale: 7\r\n")
    assert res["Prompt"] == "a cat" and res["Negative prompt"] == "dog" and res["CFG scale"] == "7"


def test_wxh_values_split_for_any_key() -> None:
    res = parse_infotext("p\nSteps: 20, Size: 768x512, Hires resize: 1536x1024, Seed resize from: -1x-1")
    assert (res["Size-1"], res["Size-2"]) == ("768", "512")
    assert (res["Hires resize-1"], res["Hires resize-2"]) == ("1536", "1024")
    assert res["Seed resize from"] == "-1x-1"  # not digits-only: kept whole (A1111's regex)


def test_quoted_values_unquoted_including_escapes() -> None:
    line = 'Steps: 20, Hires prompt: "a, \\"b\\"\\nc", Lora hashes: "x: 1, y: 2", Seed: 3'
    res = parse_infotext("p\n" + line)
    assert res["Hires prompt"] == 'a, "b"\nc'
    assert res["Lora hashes"] == "x: 1, y: 2"
    assert res["Seed"] == "3"


def test_invalid_json_quote_kept_raw_and_empty_values_dropped() -> None:
    res = parse_infotext('p\nSteps: 20, Bad: "\\x", Empty: , Seed: 3')
    assert res["Bad"] == '"\\x"'
    assert "Empty" not in res


def test_prompt_key_in_params_does_not_override_prompt() -> None:
    res = parse_infotext("real\nSteps: 1, Prompt: fake, Seed: 2")
    assert res["Prompt"] == "real"


@pytest.mark.parametrize(
    ("sampler", "name", "scheduler"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
        ("DPM++ SDE Karras", "DPM++ SDE", "Karras"),
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "Exponential"),
        ("Euler SGM Uniform", "Euler", "SGM Uniform"),  # longest suffix (A1111 would cut " Uniform")
        ("Euler sgm_uniform", "Euler", "SGM Uniform"),
        ("DPM++ 2M Align Your Steps 32", "DPM++ 2M", "Align Your Steps 32"),
        ("Euler a", "Euler a", None),
        ("DDIM", "DDIM", None),
        ("DDIM CFG++", "DDIM CFG++", None),
        ("Karras", "Karras", None),
    ],
)
def test_split_legacy_sampler(sampler: str, name: str, scheduler: str | None) -> None:
    assert split_legacy_sampler(sampler) == (name, scheduler)


def test_legacy_sampler_name_split_on_parse() -> None:
    res = parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Hires sampler: Euler Exponential")
    assert res["Sampler"] == "DPM++ 2M" and res["Schedule type"] == "Karras"
    assert res["Hires sampler"] == "Euler" and res["Hires schedule type"] == "Exponential"


def test_old_first_pass_size_converted() -> None:
    res = parse_infotext("p\nSteps: 20, Size: 1024x1024, First pass size: 512x512, Seed: 1")
    assert (res["Size-1"], res["Size-2"]) == (512, 512)
    assert (res["Hires resize-1"], res["Hires resize-2"]) == (1024, 1024)
    res = parse_infotext("p\nSteps: 20, Size: 1024x768, First pass size: 0x0, Seed: 1")
    assert (res["Size-1"], res["Size-2"]) == (640, 448)  # A1111's old automatic first pass (~512x512, /64)


def test_hypernet_appended_to_prompt() -> None:
    res = parse_infotext("p\nSteps: 20, Hypernet: anime, Hypernet strength: 0.5, Seed: 1")
    assert res["Prompt"] == "p<hypernet:anime:0.5>"


def test_backcompat_flags_from_version() -> None:
    res = parse_infotext("a [b:c:5]\nSteps: 20, Sampler: DDIM, Refiner: x, Version: v1.5.2")
    assert res["Old prompt editing timelines"] is True and res["Pad conds v0"] is True
    assert res["Downcast alphas_cumprod"] is True and res["Refiner switch by sampling steps"] is True
    res = parse_infotext("a [b:c:5]\nSteps: 20, Sampler: DDIM, Version: v1.7.0-224-gabc")
    assert "Old prompt editing timelines" not in res and res["Downcast alphas_cumprod"] is True
    res = parse_infotext("p\nSteps: 20, Sampler: DDIM, Version: v1.10.1")
    assert "Downcast alphas_cumprod" not in res
    res = parse_infotext("p\nSteps: 20, Sampler: DDIM, Version: f2.0.1v1.10.1-previous-1-g")  # Forge: unknown
    assert "Downcast alphas_cumprod" not in res
    res = parse_infotext("p\nSteps: 20, Sampler: DDIM, Version: v1.5.0", backcompat=False)
    assert "Downcast alphas_cumprod" not in res


def test_skip_fields_and_emphasis_hook() -> None:
    res = parse_infotext("(cat:1.2)\nSteps: 20, Seed: 1, CFG scale: 7", skip_fields=["Seed", "RNG"])
    assert "Seed" not in res and "RNG" not in res
    assert res["Emphasis"] == "Original"  # the prompt parser's default hook
    res = parse_infotext("(cat:1.2)\nSteps: 20, Seed: 1, CFG scale: 7", prompt_uses_emphasis=lambda p: False)
    assert "Emphasis" not in res
    res = parse_infotext("x\nSteps: 20, Emphasis: No norm, CFG scale: 7", prompt_uses_emphasis=lambda p: True)
    assert res["Emphasis"] == "No norm"


def test_a1111_parser_reads_our_extra_quoting() -> None:
    """Values we quote beyond A1111 come back unchanged through A1111's own value handling."""

    def a1111_value(v: str) -> str:  # A1111's unquote step (contract 4.3)
        if v and v[0] == '"' and v[-1] == '"':
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v

    for value in ['"quoted"', "", " padded ", 'a "b" c']:
        line = build_infotext("", "", {"Steps": 1, "Xy": value, "Seed": 2})
        pairs = dict(RE_PARAM.findall(line))
        assert a1111_value(pairs["Xy"]) == value


# -- round trip -----------------------------------------------------------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
    max_size=40,
)
_LINE = _TEXT.filter(lambda s: s == s.strip())
_KEY_CHARS = "abcXYZ019_ -/éß猫"
_REAL_KEYS = [k for k in INFOTEXT_KEY_ORDER if k != "Sampler"] + ["Hires upscale", "Lora hashes", "Version", "Eta"]
_KEY = st.one_of(
    st.sampled_from(_REAL_KEYS),
    st.builds(str.__add__, st.sampled_from("aZé猫_0"), st.text(alphabet=_KEY_CHARS, min_size=1, max_size=15)),
).filter(
    lambda k: re.fullmatch(r"\w[\w \-/]+", k) is not None  # what A1111's key regex accepts
    and k == k.strip()
    and k not in ("Prompt", "Negative prompt", "Sampler", "Hires sampler", "Hypernet", "Hypernet strength")
    and not k.startswith("First pass size")
    and not (len(k) > 2 and k[-2] == "-" and k[-1].isdigit())
)
_VALUE = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(["512x512", "DPM++ 2M", "a, b", "x: y", 'say "hi"', "猫\n犬", "", " ", '"']),
)


def _multiline(line: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(line, max_size=4).map("\n".join).filter(lambda s: s == s.strip())


def _expected_fields(params: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in params.items():
        text = str(value)
        m = RE_IMAGESIZE.match(text)
        if m:
            out[f"{key}-1"], out[f"{key}-2"] = m.group(1), m.group(2)
        else:
            out[key] = text
    return out


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(
    prompt=_multiline(_LINE.filter(lambda s: not s.startswith("Negative prompt:"))),
    negative=_multiline(_LINE),
    params=st.dictionaries(_KEY, _VALUE, min_size=3, max_size=8),
)
def test_round_trip_property(prompt: str, negative: str, params: dict[str, object]) -> None:
    params = {k: v for k, v in params.items() if k != v}  # "k == v" prints only k: not recoverable (A1111 too)
    if len(params) < 3:
        return
    split_keys = {f"{k}-{i}" for k, v in params.items() if RE_IMAGESIZE.match(str(v)) for i in (1, 2)}
    if split_keys & set(params):
        return  # "Size: 1x2" and a literal "Size-1" key collide by design
    res = parse_infotext(build_infotext(prompt, negative, params), backcompat=False)
    assert res["Prompt"] == prompt
    assert res["Negative prompt"] == negative
    for key, value in _expected_fields(params).items():
        assert res[key] == value, key


@pytest.mark.parametrize(
    ("prompt", "negative"),
    [
        ("a, b: c", "d, e"),
        ('he said "hi"\nsecond line, with comma', "Negative prompt: tricky"),
        ("猫と犬 🐱, ünïcödé", "низкое качество"),
        ("", "only negative"),
        ("Steps: 1, Seed: 2, CFG scale: 3", ""),  # a prompt that looks like a parameter line
    ],
)
def test_round_trip_examples(prompt: str, negative: str) -> None:
    params = ordered_params(
        {"Steps": 20, "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": 7.0, "Seed": 1,
         "Size": "512x768", "Version": "v1.10.1"},
        {"Hires prompt": 'x, "y"\nz', "Lora hashes": "a: 1, b: 2", "Denoising strength": 0.7},
    )
    res = parse_infotext(build_infotext(prompt, negative, params))
    assert (res["Prompt"], res["Negative prompt"]) == (prompt, negative)
    assert res["Hires prompt"] == 'x, "y"\nz' and res["Lora hashes"] == "a: 1, b: 2"
    assert (res["Size-1"], res["Size-2"]) == ("512", "768") and res["CFG scale"] == "7.0"


# -- version --------------------------------------------------------------------------------------------------------


def test_version_from_changelog_when_not_a_git_checkout(tmp_path: Path) -> None:
    assert version_string(tmp_path) == "sdwebui-py"
    (tmp_path / "CHANGELOG.md").write_text("\n\n## v1.10.1\n\n### Fixes\n", encoding="utf-8")
    assert version_string(tmp_path) == "sdwebui-py-v1.10.1"


def _a1111_parse_version(text: str):
    """A1111's infotext_versions.parse_version, written out: cut at the second "-", then packaging's parse."""
    import re

    from packaging import version

    m = re.match(r"([^-]+-[^-]+)-.*", text)
    if m:
        text = m.group(1)
    try:
        return version.parse(text)
    except Exception:
        return None


@pytest.mark.parametrize("ours", ["sdwebui-py", "sdwebui-py-v1.2.0", "sdwebui-py-v0.3.1-12-gabcdef0", "sdwebui-py-6172397"])
def test_our_version_is_not_read_as_an_old_a1111_by_a1111_or_by_us(ours: str) -> None:
    assert _a1111_parse_version(ours) is None  # A1111 applies no back-compat flag to our images
    assert _a1111_parse_version("v1.5.2") is not None  # (the oracle does read A1111's own)
    text = f"a [b:c:5]\nSteps: 20, Sampler: DDIM, Seed: 1, Size: 512x512, Version: {ours}"
    res = parse_infotext(text)
    assert not any(k in res for k in ("Old prompt editing timelines", "Pad conds v0", "Downcast alphas_cumprod"))
    old = parse_infotext(text.replace(ours, "v1.5.2"))
    assert old["Old prompt editing timelines"] is True and old["Pad conds v0"] is True


def test_emphasis_original_is_assumed_for_a_weighted_prompt_without_emphasis() -> None:
    params = "Steps: 20, Sampler: Euler, Seed: 1, Size: 512x512"
    assert parse_infotext(f"a (cat:1.2)\n{params}")["Emphasis"] == "Original"
    assert parse_infotext(f"a cat\nNegative prompt: [ugly]\n{params}")["Emphasis"] == "Original"
    assert "Emphasis" not in parse_infotext(f"a cat BREAK a dog\n{params}")
    assert parse_infotext(f"a (cat:1.2)\n{params}, Emphasis: No norm")["Emphasis"] == "No norm"


def test_version_never_raises_on_git_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise subprocess.TimeoutExpired("git", 3)

    monkeypatch.setattr(infotext.subprocess, "run", boom)
    (tmp_path / "CHANGELOG.md").write_text("## 1.2.3\n", encoding="utf-8")
    assert version_string(tmp_path) == "sdwebui-py-1.2.3"


def test_version_from_git_tag(tmp_path: Path) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": __import__("os").environ.get("PATH", ""), "HOME": str(tmp_path)}
    try:
        for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"], ["tag", "v9.8.7"]):
            subprocess.run(["git", "-C", str(tmp_path), *cmd], check=True, env=env, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git not usable here")
    assert version_string(tmp_path) == "sdwebui-py-v9.8.7"


# -- purity ---------------------------------------------------------------------------------------------------------


def test_pure_modules_import_no_heavy_dependencies() -> None:
    code = (
        "import sys\n"
        "import modules.infotext, modules.fileio, modules.hashing, modules.filenames, modules.models.registry\n"
        "heavy = [m for m in ('torch', 'gradio', 'diffusers', 'numpy', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=30)
