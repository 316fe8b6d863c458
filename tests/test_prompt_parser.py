"""A1111's prompt language (contract section 3): emphasis, prompt editing, alternation, AND, BREAK, extra networks.

Expected values come from A1111 v1.10.1's doctests (``modules/prompt_parser.py``), the contract text, and weights
derived here by hand (each bracket multiplies once, in A1111's order).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules import prompt_parser as pp
from modules.prompt_parser import (
    ExtraNetworkParams,
    SdConditioning,
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    parse_extra_networks,
    parse_extra_networks_prompts,
    parse_prompt_attention,
    prompt_schedule,
    split_and,
    token_count_max,
)

UP = 1.1
DOWN = 1 / 1.1


def g(prompt: str, steps: int = 10, hires_steps: int | None = None, old: bool = False) -> list:
    """The doctests' helper: the schedule of one prompt."""
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires_steps, old)[0]


# -- parse_prompt_attention: A1111's doctests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [["normal text", 1.0]]),
        ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
        ("(unbalanced", [["unbalanced", 1.1]]),
        ("\\(literal\\]", [["(literal]", 1.0]]),
        ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ["a ", 1.0],
                ["house", 1.5730000000000004],
                [" ", 1.1],
                ["on", 1.0],
                [" a ", 1.1],
                ["hill", 0.55],
                [", sun, ", 1.1],
                ["sky", 1.4641000000000006],
                [".", 1.1],
            ],
        ),
    ],
)
def test_attention_doctests(text: str, expected: list) -> None:
    assert parse_prompt_attention(text) == expected


def test_attention_contract_weights() -> None:
    # Contract 3.1: house 1.573, on 1.0, hill 0.55, sky 1.4641 (rounded there, exact above).
    runs = dict((t, w) for t, w in parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") if t)
    assert round(runs["house"], 3) == 1.573 and runs["on"] == 1.0
    assert round(runs["hill"], 2) == 0.55 and round(runs["sky"], 4) == 1.4641


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("(a)", 1.0 * UP),
        ("((a))", 1.0 * UP * UP),
        ("(((a)))", 1.0 * UP * UP * UP),
        ("[a]", 1.0 * DOWN),
        ("[[a]]", 1.0 * DOWN * DOWN),
        ("(a:1.5)", 1.5),
        ("(a: 1.5 )", 1.5),
        ("(a:-1)", -1.0),
        ("(a:.5)", 0.5),
        ("((a:2))", 1.0 * 2.0 * UP),
        ("[(a:2)]", 1.0 * 2.0 * DOWN),
        ("(a", 1.0 * UP),  # unclosed: applies to the end
        ("[a", 1.0 * DOWN),
    ],
)
def test_attention_single_weights(text: str, weight: float) -> None:
    assert parse_prompt_attention(text) == [["a", weight]]


def test_attention_square_brackets_take_no_weight() -> None:
    assert parse_prompt_attention("[a:1.5]") == [["a:1.5", DOWN]]


def test_attention_unclosed_round_then_square_order() -> None:
    # Unclosed brackets are applied after the scan: all "(" first, then all "[".
    assert parse_prompt_attention("(a [b") == [["a ", UP], ["b", 1.0 * UP * DOWN]]
    assert parse_prompt_attention("a (b") == [["a ", 1.0], ["b", UP]]


def test_attention_unmatched_closers_and_weights_are_literal() -> None:
    assert parse_prompt_attention("a)b]") == [["a)b]", 1.0]]
    assert parse_prompt_attention("a:1.5)") == [["a:1.5)", 1.0]]
    # Round and square brackets are tracked separately: "]" closes the "[" even across an open "(".
    assert parse_prompt_attention("(a] b)") == [["a] b", UP]]


def test_attention_escapes() -> None:
    assert parse_prompt_attention("\\(a\\) \\[b\\]") == [["(a) [b]", 1.0]]
    assert parse_prompt_attention("\\\\") == [["\\", 1.0]]
    assert parse_prompt_attention("a\\b") == [["ab", 1.0]]  # a lone backslash is dropped, as in A1111
    assert parse_prompt_attention("(a\\)b)") == [["a)b", UP]]


def test_attention_empty_and_trivial() -> None:
    assert parse_prompt_attention("") == [["", 1.0]]
    assert parse_prompt_attention("()") == [["", 1.0]]
    assert parse_prompt_attention("((((") == [["", 1.0]]


def test_attention_break() -> None:
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("a\nBREAK\nb") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("BREAK a") == [["", 1.0], ["BREAK", -1], ["a", 1.0]]
    item = parse_prompt_attention("a BREAK b")[1]
    assert type(item[1]) is int  # -1 exactly as A1111 (an int)
    # Only the upper-case whole word.
    assert parse_prompt_attention("aBREAK b") == [["aBREAK b", 1.0]]
    assert parse_prompt_attention("a break b") == [["a break b", 1.0]]
    # Inside brackets the marker is scaled like any text (A1111: -1.1, so the CLIP layer reads it as a word).
    assert parse_prompt_attention("(a BREAK b)") == [["a", UP], ["BREAK", -1 * UP], ["b", UP]]


def test_attention_weight_that_is_not_a_number_does_not_raise() -> None:
    # A1111 raises ValueError here; we read the bracket as plain "(text)".
    assert parse_prompt_attention("(a:1.2.3)") == [["a:1.2.3", UP]]
    assert parse_prompt_attention("(a:.)") == [["a:.", UP]]


# -- prompt editing: A1111's doctests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("test", [[10, "test"]]),
        ("a [b:3]", [[3, "a "], [10, "a b"]]),
        ("a [b: 3]", [[3, "a "], [10, "a b"]]),
        ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
        ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
        ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
        ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
        ("a [unbalanced", [[10, "a [unbalanced"]]),
        ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
        ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
        ("[a|(b:1.1)]", [[i, "a" if i % 2 else "(b:1.1)"] for i in range(1, 11)]),
        ("[fe|]male", [[i, "female" if i % 2 else "male"] for i in range(1, 11)]),
        ("[fe|||]male", [[i, "female" if i % 4 == 1 else "male"] for i in range(1, 11)]),
    ],
)
def test_schedule_doctests(prompt: str, expected: list) -> None:
    assert g(prompt) == expected


def test_schedule_doctests_hires() -> None:
    assert g("a [b:.5] c", 10, 10) == [[10, "a b c"]]
    assert g("a [b:1.5] c", 10, 10) == [[5, "a  c"], [10, "a b c"]]


def test_schedule_stale_doctest_follows_the_real_grammar() -> None:
    # A1111's doctest says [[5, 'a  c'], [10, 'a {b|d{ c']] ("not handling this right now"); it predates "|"
    # becoming the alternation separator. v1.10.1's grammar rejects the prompt and uses it literally.
    assert g("a [{b|d{:.5] c") == [[10, "a [{b|d{:.5] c"]]


def test_schedule_source_comment_example() -> None:
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
    )
    assert g(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


# -- prompt editing: when, clamping, hires, old timelines ----------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "steps", "expected"),
    [
        ("[a:b:1]", 10, [[1, "a"], [10, "b"]]),  # no "." -> absolute step
        ("[a:b:1.0]", 10, [[10, "a"]]),  # "." -> fraction: 100%
        ("[a:b:0.25]", 20, [[5, "a"], [20, "b"]]),
        ("[a:b:.5]", 20, [[10, "a"], [20, "b"]]),
        ("[a:b:2.]", 10, [[10, "a"]]),  # 200% clamped to the steps
        ("[a:b:30]", 10, [[10, "a"]]),  # clamped to the steps
        ("[a:b:0]", 10, [[10, "b"]]),  # step 0 is never reached: "b" from the start
        ("[a:b:-1]", 10, [[10, "b"]]),
        ("[a:b:+3]", 10, [[3, "a"], [10, "b"]]),
        ("[a:b:1e1]", 20, [[10, "a"], [20, "b"]]),  # an exponent without "." is absolute
        ("[a:b:5e-1]", 20, [[20, "b"]]),  # ... so 0.5 here truncates to step 0
        ("[a:b:0.33]", 10, [[3, "a"], [10, "b"]]),  # 3.3 truncates
        ("[a: b :+3 ]", 10, [[3, "a"], [10, " b "]]),  # whitespace around the number
        ("[a:\n3]", 10, [[3, ""], [10, "a"]]),
    ],
)
def test_schedule_when(prompt: str, steps: int, expected: list) -> None:
    assert g(prompt, steps) == expected


def test_schedule_from_and_to_forms() -> None:
    assert g("a [b::4] c") == [[4, "a b c"], [10, "a  c"]]  # [from::when]: gone after when
    assert g("a [b:4] c") == [[4, "a  c"], [10, "a b c"]]  # [to:when]: appears after when
    assert g("[:3]") == [[3, ""], [10, ""]]
    assert g("[a:b:3] [c:d:3]") == [[3, "a c"], [10, "b d"]]  # equal boundaries share one entry


def test_schedule_hires_offsets() -> None:
    # Hires pass of 10 after 20 base steps: integers count from the base end, fractions from 1.0.
    assert g("[a:b:25]", 20, 10) == [[5, "a"], [10, "b"]]
    assert g("[a:b:1.5]", 20, 10) == [[5, "a"], [10, "b"]]
    assert g("[a:b:0.5]", 20, 10) == [[10, "b"]]  # already past in the hires pass
    assert g("[a:b:5]", 20, 10) == [[10, "b"]]


def test_schedule_old_timelines() -> None:
    # "Use old prompt editing timelines": N < 1 is a fraction, N >= 1 a step, and hires uses the base steps.
    assert g("[a:b:0.5]", 10, old=True) == [[5, "a"], [10, "b"]]
    assert g("[a:b:1.0]", 10, old=True) == [[1, "a"], [10, "b"]]
    assert g("[a:b:3]", 20, 10, old=True) == [[3, "a"], [20, "b"]]


def test_schedule_alternation_and_nesting() -> None:
    assert g("[a|[b:c:2]]", 4) == [[1, "a"], [2, "b"], [3, "a"], [4, "c"]]
    assert g("[a|b|c]", 5) == [[1, "a"], [2, "b"], [3, "c"], [4, "a"], [5, "b"]]
    assert g("[|]", 2) == [[1, ""], [2, ""]]
    assert g("[[a:b:2]|c]", 4) == [[1, "a"], [2, "c"], [3, "b"], [4, "c"]]
    assert g("[(a:[b|c])]", 2) == [[1, "[(a:b)]"], [2, "[(a:c)]"]]
    assert g("[a [b:c:2]:3]") == [[2, ""], [3, ""], [10, "a c"]]  # inner steps are collected in every branch


def test_schedule_emphasis_is_kept_as_text() -> None:
    assert g("(a:1.2) [b] ((c))") == [[10, "(a:1.2) [b] ((c))"]]
    assert g("[(a:b):c:3]") == [[3, "(a:b)"], [10, "c"]]
    assert g("[[a:b:3]]") == [[3, "[a]"], [10, "[b]"]]


def test_schedule_escapes_stay_in_the_text() -> None:
    assert g("\\[a:3\\]") == [[10, "\\[a:3\\]"]]
    assert g("[\\[a\\]:3]") == [[3, ""], [10, "\\[a\\]"]]
    assert g("[a\\:b:3]") == [[3, ""], [10, "a\\:b"]]
    assert g("[a\\|b:3]") == [[3, ""], [10, "a\\|b"]]


@pytest.mark.parametrize(
    "prompt",
    [
        "a [b:c",  # unclosed
        "[a:b:c:3]",  # too many ":"
        "[a:b:x]",  # not a number
        "[a:3 4]",
        "[a:b]",
        "[a|b",  # "|" outside a closed alternation rejects the whole prompt
        "a|b [c:3]",
        "a [b:3] | c",
        "(a|b) [c:3]",
        "x\\",  # backslash at the end
        "a\\\nb [c:3]",  # backslash before a newline
        "[a:1e]",
        "]]]:::)))",
    ],
)
def test_schedule_malformed_is_literal(prompt: str) -> None:
    assert g(prompt) == [[10, prompt]]


def test_schedule_top_level_strays_keep_editing() -> None:
    # A bracket that closes nothing is a literal character; editing around it still works.
    assert g("a ] [b:3]") == [[3, "a ] "], [10, "a ] b"]]
    assert g("(a [b:3]") == [[3, "(a "], [10, "(a b"]]
    assert g("[a (b] [c:3]") == [[3, "[a (b] "], [10, "[a (b] c"]]
    assert g("[a:b:c:3] [d:3]") == [[3, "[a:b:c:3] "], [10, "[a:b:c:3] d"]]


def test_schedule_infinite_step_does_not_raise() -> None:
    # A1111 raises OverflowError; an infinite step clamps to the steps like any large one.
    assert g("[a:b:1e999]") == [[10, "a"]]
    assert g("[a:b:1.0e999]") == [[10, "a"]]
    assert g("[a:b:-1e999]") == [[10, "b"]]


def test_schedule_zero_steps() -> None:
    assert g("[a:b:3]", 0) == [[0, "a"]]
    assert g("[a|b]", 0) == [[0, "b"]]


def test_schedule_batch() -> None:
    prompts = ["a [b:3]", "plain", "a [b:3]"]
    result = get_learned_conditioning_prompt_schedules(prompts, 10)
    assert result == [[[3, "a "], [10, "a b"]], [[10, "plain"]], [[3, "a "], [10, "a b"]]]
    assert get_learned_conditioning_prompt_schedules([], 10) == []
    assert get_learned_conditioning_prompt_schedules(iter(["x"]), 5) == [[[5, "x"]]]


def test_prompt_schedule_typed_helper() -> None:
    assert prompt_schedule("a [b:3]", 10) == [(3, "a "), (10, "a b")]
    assert prompt_schedule("a [b:1.5]", 10, hires_steps=10) == [(5, "a "), (10, "a b")]
    assert prompt_schedule("[a:b:1.0]", 10, use_old_scheduling=True) == [(1, "a"), (10, "b")]
    assert prompt_schedule("a [b:c", 7) == [(7, "a [b:c")]


# -- properties ----------------------------------------------------------------------------------------------------

_SPECIAL = "\\()[]:|"
_schedule_text = st.text(alphabet=st.sampled_from("ab (:)[]|\\.1\n"), max_size=30)
_word = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


def _escape(text: str) -> str:
    return re.sub(r"([\\()\[\]:|])", r"\\\1", text)


@settings(max_examples=300, deadline=None)
@given(_schedule_text, st.integers(min_value=1, max_value=30))
def test_property_schedule_shape(prompt: str, steps: int) -> None:
    schedule = g(prompt, steps)
    ends = [end for end, _ in schedule]
    assert ends == sorted(set(ends)) and ends[-1] == steps and ends[0] >= 1
    assert all(isinstance(text, str) for _, text in schedule)
    if "[" not in prompt:  # only emphasis or literal text: one entry, the prompt itself
        assert schedule == [[steps, prompt]]


@settings(max_examples=200, deadline=None)
@given(_word, _word, st.integers(min_value=2, max_value=30), st.data())
def test_property_escaped_edit(a: str, b: str, steps: int, data: st.DataObject) -> None:
    when = data.draw(st.integers(min_value=1, max_value=steps - 1))
    ea, eb = _escape(a), _escape(b)
    assert g(f"x[{ea}:{eb}:{when}]y", steps) == [[when, f"x{ea}y"], [steps, f"x{eb}y"]]
    assert g(f"[{ea}|{eb}]", 2) == [[1, ea], [2, eb]]


@settings(max_examples=200, deadline=None)
@given(_word, st.floats(min_value=-10, max_value=10, allow_nan=False).map(lambda w: round(w, 3)))
def test_property_escaped_attention(text: str, weight: float) -> None:
    if "BREAK" in text:
        return
    e = re.sub(r"([\\()\[\]])", r"\\\1", text)
    assert parse_prompt_attention(e) == [[text, 1.0]]
    if text:
        assert parse_prompt_attention(f"({e})") == [[text, UP]]
        assert parse_prompt_attention(f"[{e}]") == [[text, DOWN]]
        assert parse_prompt_attention(f"({e}:{weight})") == [[text, weight]]


# -- AND -----------------------------------------------------------------------------------------------------------


def test_multicond_readme_example() -> None:
    res_indexes, flat, indexes = get_multicond_prompt_list(["a cat :1.2 AND a dog AND a penguin :2.2"])
    assert res_indexes == [[(0, 1.2), (1, 1.0), (2, 2.2)]]
    assert list(flat) == ["a cat", " a dog", " a penguin"]
    assert indexes == {"a cat": 0, " a dog": 1, " a penguin": 2}


def test_multicond_batch_shares_subprompts() -> None:
    res_indexes, flat, indexes = get_multicond_prompt_list(["x AND y :2", "y :3 AND z"])
    assert list(flat) == ["x", " y", "y", " z"]
    assert res_indexes == [[(0, 1.0), (1, 2.0)], [(2, 3.0), (3, 1.0)]]
    res_indexes, flat, _ = get_multicond_prompt_list(["a AND b", "a AND b"])
    assert res_indexes == [[(0, 1.0), (1, 1.0)]] * 2 and list(flat) == ["a", " b"]


def test_multicond_keeps_sdconditioning_attributes() -> None:
    prompts = SdConditioning(["a AND b"], is_negative_prompt=True, width=1024, height=768)
    _, flat, _ = get_multicond_prompt_list(prompts)
    assert isinstance(flat, SdConditioning) and list(flat) == ["a", " b"]
    assert (flat.is_negative_prompt, flat.width, flat.height) == (True, 1024, 768)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a and b", [("a and b", 1.0)]),  # upper case only
        ("ANDROID AND x", [("ANDROID", 1.0), (" x", 1.0)]),  # whole word only
        ("a:b", [("a:b", 1.0)]),
        ("a :1.2.3", [("a :1.2.3", 1.0)]),
        ("a\nb :2", [("a\nb", 2.0)]),  # multi-line sub-prompts keep their weight
        ("x :1.", [("x", 1.0)]),
        ("x : .5", [("x", 0.5)]),
        ("x: -1", [("x", -1.0)]),
        ("x :+2 ", [("x", 2.0)]),
        ("a ::1", [("a :", 1.0)]),
        (" a : 1 : 2", [(" a : 1", 2.0)]),
        ("a   ", [("a", 1.0)]),
        ("AND", [("", 1.0), ("", 1.0)]),
        ("", [("", 1.0)]),
        ("(a:1.5) :0.5", [("(a:1.5)", 0.5)]),
    ],
)
def test_split_and(prompt: str, expected: list) -> None:
    assert split_and(prompt) == expected


# The contract's regex (A1111 v1.10.1 uses (?:\s|.) so that multi-line sub-prompts match): a test oracle.
_CONTRACT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("a :.1-+\n\t٣"), max_size=20))
def test_property_split_weight_matches_contract_regex(subprompt: str) -> None:
    text, weight = _CONTRACT_WEIGHT.search(subprompt).groups()
    assert split_and(subprompt) == [(text, 1.0 if weight is None else float(weight))]


# -- extra networks ------------------------------------------------------------------------------------------------


def test_extra_networks_parse() -> None:
    text, networks = parse_extra_networks("a cat <lora:detail:0.8>, <hypernet:agm> <lora:x:te=0.5:unet=0.3>")
    assert text == "a cat ,  "
    assert isinstance(networks, defaultdict) and list(networks) == ["lora", "hypernet"]
    first, second = networks["lora"]
    assert first.items == ["detail", "0.8"] and first.positional == ["detail", "0.8"] and first.named == {}
    assert second.positional == ["x"] and second.named == {"te": "0.5", "unet": "0.3"}
    assert networks["hypernet"] == [ExtraNetworkParams(["agm"])]


def test_extra_networks_edge_cases() -> None:
    assert parse_extra_networks("no tags") == ("no tags", {})
    assert parse_extra_networks("<lora:>")[0] == "<lora:>"  # arguments are required
    assert parse_extra_networks("<lo-ra:x>")[0] == "<lo-ra:x>"  # the name is \w+
    params = parse_extra_networks("<lora:a=b=c:k=v:=x>")[1]["lora"][0]
    assert params.positional == ["a=b=c"] and params.named == {"k": "v", "": "x"}
    text, networks = parse_extra_networks("<lora:a:1><lora:a:1>")
    assert text == "" and networks["lora"] == [ExtraNetworkParams(["a", "1"])] * 2


def test_extra_network_params_behaviour() -> None:
    assert ExtraNetworkParams(["a", "1"]) == ExtraNetworkParams(["a", "1"])
    assert ExtraNetworkParams(["a"]) != ExtraNetworkParams(["b"])
    assert ExtraNetworkParams().items == [] and ExtraNetworkParams(None).positional == []
    assert ExtraNetworkParams([1.5]).positional == [1.5]  # non-strings are positional
    with pytest.raises(TypeError):
        hash(ExtraNetworkParams())


def test_extra_networks_prompts_takes_networks_of_the_first() -> None:
    texts, networks = parse_extra_networks_prompts(["a <lora:x:1>", "b <lora:y:2>"])
    assert texts == ["a ", "b "] and networks["lora"] == [ExtraNetworkParams(["x", "1"])]
    assert parse_extra_networks_prompts([]) == ([], None)


# -- token counter -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "maximum"), [(0, 75), (-3, 75), (1, 75), (12, 75), (75, 75), (76, 150), (80, 150), (150, 150), (151, 225)]
)
def test_token_count_max(count: int, maximum: int) -> None:
    assert token_count_max(count) == maximum


# -- robustness ----------------------------------------------------------------------------------------------------

_HOSTILE = [
    "x" * 10_000,
    "(" * 10_000,
    "[" * 10_000,
    ")" * 5_000 + "]" * 5_000,
    "(a" * 5_000,
    "(a" * 3_333 + ")" * 3_333,
    "[a:b:" * 2_000,
    "[a|b]" * 2_000,
    "[" * 3_000 + "a" + ":1]" * 3_000,  # 3000 nested editing constructs
    "[" * 3_000 + "a" + "|b]" * 3_000,  # 3000 nested alternations
    "[" * 5_000 + "]" * 5_000,
    " " * 10_000 + "x",
    " \n" * 5_000 + ":1",
    "a BREAK " * 1_250,
    "a AND " * 1_600,
    "<lora:" * 1_600 + ">",
    "\\" * 10_001,
    "\x00a[b\x00:c:3]\x00" * 500,
    "🐱 [🐶|😺] (🐭:1.3) " * 500,
    "\ud800[a\udfff:b:3]\udc00" * 700,
    ":1.1)" * 2_000,
]


@pytest.mark.parametrize("prompt", _HOSTILE, ids=lambda p: f"{p[:12]!r}x{len(p)}")
def test_hostile_prompts_are_fast_and_never_raise(prompt: str) -> None:
    calls = [
        lambda: parse_prompt_attention(prompt),
        lambda: get_learned_conditioning_prompt_schedules([prompt], 20),
        lambda: get_learned_conditioning_prompt_schedules([prompt], 20, 10),
        lambda: get_multicond_prompt_list([prompt]),
        lambda: parse_extra_networks(prompt),
    ]
    for call in calls:
        pp._parse_schedule.cache_clear()
        start = time.thread_time()  # CPU time of this thread: other processes on a busy machine do not count
        call()
        assert time.thread_time() - start < 1.0


def test_deep_nesting_results() -> None:
    depth = 3_000
    nested = "[" * depth + "a" + ":1]" * depth  # [[[a:1]:1]:1]: "a" only after every level has switched
    assert g(nested, 3) == [[1, ""], [3, "a"]]
    assert parse_prompt_attention("(" * depth + "a" + ")" * depth)[0][0] == "a"
    assert g("(" * 10_000) == [[10, "(" * 10_000]]


def test_nul_emoji_and_surrogates_survive() -> None:
    prompt = "\x00🐱[\ud800:b:3]"
    assert g(prompt) == [[3, "\x00🐱\ud800"], [10, "\x00🐱b"]]
    assert parse_prompt_attention("(\ud800🐱)") == [["\ud800🐱", UP]]
    assert parse_extra_networks("<lora:🐱:1>")[1]["lora"][0].items == ["🐱", "1"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_property_arbitrary_text_never_raises(text: str) -> None:
    parse_prompt_attention(text)
    get_learned_conditioning_prompt_schedules([text], 20, 10)
    get_learned_conditioning_prompt_schedules([text], 7, None, True)
    get_multicond_prompt_list([text])
    parse_extra_networks(text)


def test_module_is_pure() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(pp))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "math", "re", "collections", "dataclasses", "functools", "typing"}
