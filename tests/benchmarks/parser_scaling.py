"""Time every parser that reads request data on hostile inputs of 10 KB, 100 KB and 1 MB (security item 2).

    venv/bin/python tests/benchmarks/parser_scaling.py [--root DIR] [--timeout 20] [--sizes 10000,100000,1000000]

Each measurement runs in its own process with a timeout, so a quadratic parser shows up as ``>20s`` instead of
hanging the script. ``--root`` puts another checkout's ``modules`` first on ``sys.path``, to time an older version:
``git archive HEAD modules | tar -x -C /tmp/before`` then ``--root /tmp/before``. Linear parsers take ~10x longer
per 10x input; quadratic ones ~100x.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _rep(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def _cases() -> dict[str, Callable[[int], None]]:
    """name -> run(n): parse one hostile input of about n characters."""
    from modules import filenames, infotext, prompt_parser, styles
    from modules.processing import prompts_from_file

    def attention(text: str) -> None:
        try:
            prompt_parser.parse_prompt_attention(text)
        except ValueError:
            pass  # PromptTooComplexError: refused within its bounded work

    def params(line: str) -> None:  # the parameter-line scanner (RE_PARAM.findall before the rewrite)
        getattr(infotext, "find_params", infotext.RE_PARAM.findall)(line)

    def parse(text: str) -> None:
        try:
            infotext.parse_infotext(text)
        except ValueError:
            pass  # InfotextTooLongError: refused before parsing

    db = styles.StyleDatabase.__new__(styles.StyleDatabase)
    db.styles = {f"s{i}": styles.PromptStyle(f"s{i}", f"style {i}", "", None) for i in range(200)}
    return {
        "parse_infotext: word run, no ':'": lambda n: parse("p\n" + _rep("Steps: 1, Seed: 2, Size: 1x1, ", 30)
                                                           + "a" * n),
        "param line: word run, no ':'": lambda n: params("a" * n),
        "param line: words with '-' '/'": lambda n: params(_rep("a-b/c d", n)),
        "param line: many params": lambda n: params(_rep("Key 1: v, ", n)),
        "param line: quoted values": lambda n: params(_rep('K: "a\\"b, c", ', n)),
        "prompt attention: (a x n unclosed": lambda n: attention(_rep("(a", n)),
        "prompt attention: ((((...x))))": lambda n: attention("(" * (n // 2) + "x" + ")" * (n // 2)),
        "prompt attention: ':' and spaces": lambda n: attention(_rep(": ", n)),
        "prompt schedule: [a:b: unbalanced": lambda n: prompt_parser.get_learned_conditioning_prompt_schedules(
            [_rep("[a:b:", n)], 20),
        "prompt schedule: [[[a:1]:1]...]": lambda n: prompt_parser.get_learned_conditioning_prompt_schedules(
            ["[" * (n // 4) + "a" + ":1]" * (n // 4)], 20),
        "prompt schedule: [a|b|...]": lambda n: prompt_parser.get_learned_conditioning_prompt_schedules(
            ["[" + _rep("a|", n) + "]"], 20),
        "prompt AND x many": lambda n: prompt_parser.get_multicond_prompt_list([_rep("a AND ", n)]),
        "extra networks: <a: with no '>'": lambda n: prompt_parser.parse_extra_networks(_rep("<a:", n)),
        "filename pattern: text before a newline": lambda n: filenames.apply_pattern("a" * n + "\nb", {}),
        "filename pattern: [<<<<...]": lambda n: filenames.apply_pattern("[" + "<" * n + "]", {}),
        "filename pattern: [x<>...<>]": lambda n: filenames.apply_pattern("[x" + _rep("<>", n) + "]", {}),
        "filename pattern: [seed] x many": lambda n: filenames.apply_pattern(_rep("[seed]", n), {"seed": 1}),
        "styles: extract, long whitespace": lambda n: db.extract_styles_from_prompt("a" + " " * n, ""),
        "styles: apply {prompt} style": lambda n: styles.apply_styles_to_prompt("p" * n, ["x, {prompt}, y"]),
        "prompts from file: one long quoted prompt": lambda n: prompts_from_file.parse_line(
            '--prompt "' + "a" * n + '"', 1),
        "prompts from file: many words": lambda n: prompts_from_file.parse_line("--styles " + _rep("a ", n), 1),
    }


def _worker(root: str, name: str, n: int, queue: mp.Queue) -> None:
    sys.path.insert(0, root)
    run = _cases()[name]
    start = time.perf_counter()
    run(n)
    queue.put(time.perf_counter() - start)


def measure(root: str, name: str, n: int, timeout: float) -> float | None:
    """Seconds for one run in a fresh process; None when it ran past ``timeout``."""
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=_worker, args=(root, name, n, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return None
    return queue.get() if not queue.empty() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO), help="checkout whose modules/ to time")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    sys.path.insert(0, args.root)
    names = [name for name in _cases() if args.only in name]
    print(f"root: {args.root}")
    print(f"{'case':48}" + "".join(f"{n:>12,}" for n in sizes))
    for name in names:
        cells = []
        slow = False
        for n in sizes:
            seconds = None if slow else measure(args.root, name, n, args.timeout)
            slow = seconds is None  # larger sizes would time out too
            cells.append(f">{args.timeout:.0f}s" if seconds is None else f"{seconds:.4f}s")
        print(f"{name:48}" + "".join(f"{c:>12}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
