"""A1111's ``modules.extra_networks`` for extensions: ``ExtraNetwork`` (the base class with ``activate`` /
``deactivate``), ``ExtraNetworkParams``, ``register_extra_network``, ``extra_network_registry``,
``parse_prompt``/``parse_prompts`` (our prompt parser's, linear time), ``lookup_extra_networks``, ``activate``,
``deactivate``.

Our own LoRA handling (``<lora:...>``, ``<lyco:...>``) is ``modules.processing.extra_networks``; it is not an
entry of this registry. An extension's network registered here is recorded, and ``activate(p, data)`` /
``deactivate(p, data)`` call it as A1111 does (a failing one is reported and skipped). ``batch_networks(job,
networks)`` is the context manager a generation batch wraps itself in so these run at A1111's points (activate
before the batch is conditioned, deactivate after it); see its docstring. No torch, no gradio.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from typing import Any, Iterator

from modules.prompt_parser import ExtraNetworkParams, parse_extra_networks, parse_extra_networks_prompts

log = logging.getLogger(__name__)

extra_network_registry: dict[str, ExtraNetwork] = {}
extra_network_aliases: dict[str, ExtraNetwork] = {}
errors: list[str] = []  # activate/deactivate failures, for the log


class ExtraNetwork:
    """A1111's base class: ``<name:arg1:arg2>`` tags in a prompt reach ``activate(p, params_list)``; every registered
    network is activated on every batch (with an empty list when the prompt does not mention it) and deactivated
    at the end."""

    def __init__(self, name: str) -> None:
        self.name = name

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None:
        raise NotImplementedError

    def deactivate(self, p: Any) -> None:
        raise NotImplementedError


def initialize() -> None:
    extra_network_registry.clear()
    extra_network_aliases.clear()
    errors.clear()


def register_extra_network(extra_network: ExtraNetwork) -> None:
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network: ExtraNetwork, alias: str) -> None:
    extra_network_aliases[alias] = extra_network


def register_default_extra_networks() -> None:
    """A1111 registers its hypernetwork handler here; hypernetworks are not supported, and LoRA is built in."""


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """``("a cat <lora:x:0.8>")`` -> ``("a cat ", {"lora": [ExtraNetworkParams(["x", "0.8"])]})``."""
    return parse_extra_networks(prompt)


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]] | None]:
    """Every prompt without its tags, and the tags of the first one (a batch shares one set of networks)."""
    return parse_extra_networks_prompts(prompts)


def lookup_extra_networks(extra_network_data: dict[str, list[ExtraNetworkParams]]
                          ) -> dict[ExtraNetwork, list[ExtraNetworkParams]]:
    """The registered networks the tags name (aliases included), with their arguments; unknown names skipped."""
    found: dict[ExtraNetwork, list[ExtraNetworkParams]] = {}
    for name, params in list((extra_network_data or {}).items()):
        network = extra_network_registry.get(name) or extra_network_aliases.get(name)
        if network is None:
            continue
        found.setdefault(network, []).extend(params)
    return found


def _report(what: str) -> None:
    message = f"{what}:\n{traceback.format_exc(limit=4)}"
    errors.append(message)
    log.error(message)


def activate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    """Activate the named networks with their arguments, then every other registered one with none (A1111)."""
    done = []
    for network, params in lookup_extra_networks(extra_network_data).items():
        try:
            network.activate(p, params)
            done.append(network)
        except Exception:  # noqa: BLE001 - one extension's network must not fail the job
            _report(f"activating extra network {network.name} with arguments {params}")
    for name, network in extra_network_registry.items():
        if network in done:
            continue
        try:
            network.activate(p, [])
        except Exception:  # noqa: BLE001
            _report(f"activating extra network {name}")
    scripts = getattr(p, "scripts", None)
    hook = getattr(scripts, "after_extra_networks_activate", None)
    if callable(hook):
        hook(p, batch_number=getattr(p, "iteration", 0), prompts=getattr(p, "prompts", None),
             seeds=getattr(p, "seeds", None), subseeds=getattr(p, "subseeds", None),
             extra_network_data=extra_network_data)


def deactivate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    """Deactivate the named networks, then every other registered one (A1111)."""
    named = lookup_extra_networks(extra_network_data)
    for network in list(named) + [n for n in extra_network_registry.values() if n not in named]:
        try:
            network.deactivate(p)
        except Exception:  # noqa: BLE001
            _report(f"deactivating extra network {network.name}")


@contextlib.contextmanager
def batch_networks(job: Any, networks: dict[str, list[ExtraNetworkParams]]) -> Iterator[None]:
    """Call the extensions' registered networks around one batch of a generation job: ``activate`` on entry,
    ``deactivate`` on exit (errors included). ``job`` is ``modules.processing.generation.Job``; the ``p`` handed
    to the networks is the scripts' ``p`` when the job runs through the A1111 facade, else one built from the
    job's parameters. Nothing is done (no ``p`` is built) when no extension registered a network.

    The hook in ``generation.Job.networks``, around ``extra_networks.activated(...)``::

        with extra_networks.activated(...) as activation, modules.extra_networks.batch_networks(self, networks):
    """
    if not extra_network_registry:
        yield
        return
    p = getattr(getattr(job.ctx, "job_hooks", None), "p", None)
    if p is None:
        from modules.processing import compat

        cls = compat.StableDiffusionProcessingImg2Img if hasattr(job.p, "init_images") \
            else compat.StableDiffusionProcessingTxt2Img
        p = cls.from_params(job.p, sd_model=job.model)
    activate(p, networks)
    try:
        yield
    finally:
        deactivate(p, networks)
        job.extra.update(getattr(p, "extra_generation_params", None) or {})


__all__ = ["ExtraNetwork", "ExtraNetworkParams", "activate", "batch_networks", "deactivate", "extra_network_aliases",
           "extra_network_registry", "initialize", "lookup_extra_networks", "parse_prompt", "parse_prompts",
           "register_extra_network", "register_extra_network_alias"]
