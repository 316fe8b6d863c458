"""Extra networks in prompts (``<lora:name:1>``, ``<lyco:...>``): strip them for CLIP, activate them for a batch.

A1111 rules kept: tags are parsed from the positive prompt only, the batch's networks come from its first prompt,
the infotext keeps the tags in the prompt and adds ``Lora hashes``; an unknown or unusable network is reported to
the user and the job goes on without it. Networks are applied when a batch starts and removed when it ends, so
the base weights are untouched between jobs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

LORA_TYPES = ("lora", "lyco")


@dataclass
class Activation:
    """What activating a batch's networks did: a key for conditioning caches, infotext values, user messages."""

    key: tuple[Any, ...] = ()
    infotext: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def strip_batch(prompts: Sequence[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Prompts without their extra-network tags, and the networks of the first prompt (A1111 ``parse_prompts``)."""
    from modules import prompt_parser

    stripped, networks = prompt_parser.parse_extra_networks_prompts(prompts)
    return stripped, dict(networks or {})


@dataclass(frozen=True)
class ExtensionNetworks:
    """Networks that extensions registered (A1111's ``extra_networks.register_extra_network``), as a job sees
    them: the tag kinds they handle, and ``batch(job, networks)``, a context manager that activates them around a
    batch. Handed in through ``ProcessingContext.extension_networks``; processing never imports the facade."""

    kinds: Callable[[], set[str]]
    batch: Callable[[Any, Mapping[str, list[Any]]], ContextManager[None]]


@contextlib.contextmanager
def activated(model: Any, networks: Mapping[str, list[Any]], loras: Any,
              handled_elsewhere: set[str] = frozenset()) -> Iterator[Activation]:
    """Apply the networks to ``model`` for the ``with`` block; always removed afterwards, errors included. Kinds in
    ``handled_elsewhere`` (extensions' networks) are not reported as unsupported."""
    messages = [f"Extra network type '{kind}' is not supported yet: <{kind}:...> was ignored."
                for kind in networks if kind not in LORA_TYPES and kind not in handled_elsewhere and networks[kind]]
    tags = [tag for kind in LORA_TYPES for tag in networks.get(kind, [])]
    if not tags:
        yield Activation(messages=messages)
        return
    from modules.models.lora import LoraRequest, applied_loras

    requests = [LoraRequest.from_args(list(tag.positional), dict(tag.named)) for tag in tags]
    if loras is None:
        yield Activation(messages=messages + ["Networks not found: " + ", ".join(r.name for r in requests)])
        return
    # An unknown name makes apply_loras re-list the folders once, so files added since the last job are found.
    with applied_loras(model, requests, registry=loras) as report:
        key = tuple((str(a.item.path), a.te_multiplier, a.unet_multiplier) for a in report.applied)
        yield Activation(key=key, infotext=report.extra_generation_params(), messages=messages + report.warnings)
