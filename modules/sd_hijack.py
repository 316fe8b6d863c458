"""A1111's ``modules.sd_hijack`` for extensions: ``model_hijack`` with ``get_prompt_lengths(text)`` (the token
counter tagcomplete and prompt-all-in-one call), ``embedding_db`` (the textual-inversion embeddings that fit the
loaded model: ``word_embeddings``, ``skipped_embeddings``), ``comments``/``clear_comments()`` and
``extra_generation_params``, ``optimization_method``.

Nothing is "hijacked" here: our text encoding is ``modules.processing.conditioning``, which this module reads.
A1111's ldm internals (``EmbeddingsWithFixes``, ``apply_optimizations``' optimizers, the CLIP wrappers, ...) do
not exist; reading those names raises AttributeError (and ``from modules.sd_hijack import ...`` an ImportError).
No torch, no gradio at import.
"""

from __future__ import annotations

from typing import Any

_LDM_ONLY = {"EmbeddingsWithFixes", "TextualInversionEmbeddings", "weighted_loss", "weighted_forward",
             "apply_weighted_forward", "undo_weighted_forward", "list_optimizers", "apply_optimizations",
             "undo_optimizations", "fix_checkpoint", "ldm", "sgm", "sd_hijack_clip", "sd_hijack_open_clip",
             "sd_hijack_unet", "sd_hijack_optimizations", "sd_hijack_checkpoint", "sd_hijack_inpainting",
             "xlmr", "xlmr_m18", "add_circular_option_to_conv_2d", "ConditionalModel"}


def __getattr__(name: str) -> Any:
    if name in _LDM_ONLY:
        raise AttributeError(f"modules.sd_hijack.{name} is one of A1111's ldm internals; this app encodes prompts "
                             "with diffusers' CLIP models (modules.processing.conditioning) and has no equivalent")
    raise AttributeError(f"module 'modules.sd_hijack' has no attribute {name!r}")


def _runtime() -> Any:
    from modules import shared

    return shared.runtime


class EmbeddingView:
    """One embedding as A1111's ``Embedding``: ``name``, ``filename``, ``shape`` (vector width), ``vectors``
    (count), ``step``, ``sd_checkpoint``, ``sd_checkpoint_name``, ``hash``/``shorthash``; ``vec`` is the tensor
    (SDXL: ``{"clip_l": ..., "clip_g": ...}``). Skipped files have ``vec`` None and ``reason``."""

    def __init__(self, item: Any) -> None:
        self._item = item
        self.name: str = item.name
        self.filename: str = str(getattr(item, "path", ""))
        self.shape: int | None = getattr(item, "shape", None)
        count = getattr(item, "vector_count", None)
        self.vectors: int = int(count) if count is not None else 0
        self.step = getattr(item, "step", None)
        self.sd_checkpoint = getattr(item, "sd_checkpoint", None)
        self.sd_checkpoint_name = getattr(item, "sd_checkpoint_name", None)
        self.hash: str | None = getattr(item, "sha256", None)
        self.shorthash: str | None = self.hash[:12] if self.hash else None
        self.reason: str | None = getattr(item, "reason", None)
        self.cached_checksum = None
        self.optimizer_state_dict = None

    @property
    def vec(self) -> Any:
        tensors = getattr(self._item, "vectors", None)
        if not isinstance(tensors, dict):
            return None
        return next(iter(tensors.values())) if len(tensors) == 1 else dict(tensors)

    def __repr__(self) -> str:
        return f"Embedding({self.name!r}, shape={self.shape}, vectors={self.vectors})"


class EmbeddingDatabaseView:
    """A1111's ``EmbeddingDatabase`` as the embeddings fit the loaded model, read when asked (a stat of each file
    when nothing changed); before any model loads: empty, as in A1111 until the first load."""

    def _set(self) -> Any:
        rt = _runtime()
        database = getattr(rt, "embeddings", None) if rt is not None else None
        if database is None:
            return None
        model = rt.manager.model
        return database.load_for(model) if model is not None else database.current

    @property
    def word_embeddings(self) -> dict[str, EmbeddingView]:
        current = self._set()
        return {name: EmbeddingView(e) for name, e in current.loaded.items()} if current is not None else {}

    @property
    def skipped_embeddings(self) -> dict[str, EmbeddingView]:
        current = self._set()
        return {name: EmbeddingView(s) for name, s in current.skipped.items()} if current is not None else {}

    @property
    def embedding_dirs(self) -> dict[str, Any]:
        rt = _runtime()
        dirs = getattr(getattr(rt, "embeddings", None), "dirs", []) if rt is not None else []
        return {str(d): d for d in dirs}

    @property
    def expected_shape(self) -> int:
        current = self._set()
        widths = list(current.widths.values()) if current is not None else []
        return int(widths[0]) if widths else -1

    def load_textual_inversion_embeddings(self, force_reload: bool = False, sync_with_sd_model: bool = True) -> None:
        """Re-read the embedding folders (only changed files unless ``force_reload``) for the loaded model."""
        rt = _runtime()
        if rt is None or rt.embeddings is None:
            return
        model = rt.manager.model
        if model is not None:
            rt.embeddings.load_for(model, force=force_reload)
        else:
            rt.embeddings.scan(force=force_reload)

    def find_embedding_at_position(self, tokens: Any, offset: int) -> tuple[Any, int]:
        raise AttributeError("modules.sd_hijack.model_hijack.embedding_db.find_embedding_at_position: our prompt "
                             "encoder finds embeddings itself (modules.processing.conditioning.EmbeddingLookup)")


def _tokenizer() -> Any:
    """The loaded model's CLIP tokenizer, or the bundled SD1 one before any model loads (as our UI counter)."""
    rt = _runtime()
    model = rt.manager.model if rt is not None else None
    if model is not None and (model.tokenizer or model.tokenizer_2) is not None:
        return model.tokenizer or model.tokenizer_2
    from modules.models import configs

    global _BUNDLED
    if _BUNDLED is None:
        _BUNDLED = configs.load_tokenizer()
    return _BUNDLED


_BUNDLED: Any = None


class StableDiffusionModelHijack:
    """A1111's ``model_hijack`` object: the token counter, the embeddings, and the notes a job adds."""

    fixes = None
    layers = None
    circular_enabled = False
    clip = None
    optimization_method: str | None = None  # attention is diffusers' (SDP); A1111 names its choice here

    def __init__(self) -> None:
        self.comments: list[str] = []
        self.extra_generation_params: dict[str, Any] = {}
        self.embedding_db = EmbeddingDatabaseView()

    def get_prompt_lengths(self, text: str, cond_stage_model: Any = None) -> tuple[int, int]:
        """(tokens, max) of one prompt as A1111 counts it: emphasis brackets are not tokens, ``BREAK`` starts a new
        75-token chunk, and max grows in steps of 75 (``"a cat"`` -> (2, 75)). Extra-network tags and AND are the
        caller's to split off (A1111's UI does that before calling this). ``cond_stage_model`` (Forge's second
        argument) is accepted and unused."""
        from modules.processing.conditioning import token_count

        rt = _runtime()
        options = rt.options if rt is not None else None
        emphasis = str(options.get("emphasis", "Original")) if options is not None else "Original"
        backtrack = int(options.get("comma_padding_backtrack", 20)) if options is not None else 20
        return token_count(_tokenizer(), text, emphasis=emphasis, comma_backtrack=backtrack)

    def clear_comments(self) -> None:
        self.comments = []
        self.extra_generation_params = {}

    def hijack(self, m: Any) -> None:
        """Nothing to patch: our models are used as they are."""

    def undo_hijack(self, m: Any) -> None:
        """Nothing was patched."""

    def apply_optimizations(self, option: Any = None) -> None:
        """Attention optimisation is diffusers' own choice (scaled-dot-product attention)."""

    def convert_sdxl_to_ssd(self, m: Any) -> None:
        raise AttributeError("modules.sd_hijack.model_hijack.convert_sdxl_to_ssd is an A1111 ldm operation")

    def redo_hijack(self, m: Any) -> None:
        """Nothing to redo."""


model_hijack = StableDiffusionModelHijack()
optimizers: list[Any] = []
current_optimizer: Any = None
