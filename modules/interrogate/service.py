"""Interrogation as requests name it: ``model`` "clip" (A1111's Interrogate CLIP: a BLIP caption, then CLIP-ranked
phrases of each category list; ``blip`` and ``clip_rank``), "deepdanbooru" (A1111's DeepBooru, ``deepbooru``) and
"wd14" (ours: the tagger folder ``interrogate_wd14_model`` names, else the first). Models load on first use, on
the interrogate device (the torch models on the GPU when that device is one, WD14 through onnxruntime's GPU
provider when it has one), and are dropped after each caption unless ``interrogate_keep_models_in_memory``. One
caption at a time. A model without its files names each one, where it goes and where to get it; ``downloads`` plans
the files its Download offer would fetch (``sources``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from modules.errors import FieldError
from modules.interrogate import blip, clip_rank, deepbooru, sources, tags, wd14
from modules.models.types import ModelFileError

MODELS = ("clip", "deepdanbooru", "wd14")
LISTS = Path(__file__).with_name("lists")  # our category lists (mediums, movements); models/interrogate adds more
WD14_HINT = ("put a WD14 tagger folder (model.onnx and selected_tags.csv, e.g. SmilingWolf/wd-vit-tagger-v3 from "
             "Hugging Face) in {where}")
# A1111's folders, where an Interrogator built without folders names them
FALLBACK = {"blip": Path("models/BLIP"), "clip": Path("models/CLIP"),
            "deepbooru": Path("models/torch_deepdanbooru"), "wd14": Path("models/wd14")}


def check_model(model: str, field: str = "model") -> None:
    """A FieldError naming ``field`` unless ``model`` is one of ``MODELS``."""
    if model not in MODELS:
        raise FieldError(field, f"Model not found: {model}; expected one of {', '.join(MODELS)}")


class Interrogator:
    def __init__(self, wd14_dirs: Sequence[Path] = (), gpu: Callable[[], bool] = lambda: False,
                 deepbooru_dirs: Sequence[Path] = (), blip_dirs: Sequence[Path] = (), clip_dirs: Sequence[Path] = (),
                 list_dirs: Sequence[Path] = (LISTS,), table: Sequence[sources.Source] = sources.SOURCES) -> None:
        self.wd14_dirs = tuple(wd14_dirs)
        self.deepbooru_dirs = tuple(deepbooru_dirs)
        self.blip_dirs, self.clip_dirs, self.list_dirs = tuple(blip_dirs), tuple(clip_dirs), tuple(list_dirs)
        self.gpu = gpu  # asked when a model loads: whether the interrogate device is a CUDA GPU
        self.sources = tuple(table)  # where each missing file can be downloaded from (``sources``)
        self._lock = threading.Lock()
        self._kept: dict[str, Any] = {}  # loaded models kept between captions: key -> model

    def interrogate(self, image: Image.Image, model: str, settings: Mapping[str, Any], field: str = "model") -> str:
        """The caption of ``image``; a FieldError naming ``field`` when ``model`` is unknown or has no files."""
        check_model(model, field)
        with self._lock:
            try:
                if model == "clip":
                    return self._clip_caption(image, settings, field)
                if model == "deepdanbooru":
                    return self._deepbooru_caption(image, settings, field)
                return self._wd14_caption(self._wd14(settings, field), image, settings)
            finally:
                if not settings.get("interrogate_keep_models_in_memory", False):
                    self._kept.clear()

    def unload(self) -> None:
        with self._lock:
            self._kept.clear()

    def _device(self) -> str:
        """Where the torch interrogators run: the GPU when the interrogate device is one (they run on the job
        queue, so never beside a generation; kept there only with interrogate_keep_models_in_memory)."""
        return "cuda" if self.gpu() else "cpu"

    def _where(self) -> str:
        return str(self.wd14_dirs[0]) if self.wd14_dirs else "models/wd14"

    def _folder(self, kind: str) -> Path:
        """Where a downloaded file of that folder kind goes: the kind's first folder (A1111's)."""
        dirs = {"blip": self.blip_dirs, "clip": self.clip_dirs, "deepbooru": self.deepbooru_dirs,
                "wd14": self.wd14_dirs}[kind]
        return dirs[0] if dirs else FALLBACK[kind]

    def _wd14_hint(self, name: str) -> str:
        """Which files to put where for the tagger ``name`` when the table knows it, else the general hint."""
        files = [s for s in self.sources if s.folder == "wd14" and s.tagger == name]
        if not files:
            return WD14_HINT.format(where=self._where())
        return (f"put {' and '.join(s.file for s in files)} from {files[0].url.rsplit('/', 1)[0]}/ into "
                f"{self._folder('wd14') / name}")

    def _known(self, tagger: str) -> bool:
        return any(s.folder == "wd14" and s.tagger == tagger for s in self.sources)

    def downloads(self, model: str, settings: Mapping[str, Any]) -> list[sources.Planned]:
        """The files a download would add so that ``model`` finds its weights (those of ``self.sources``); empty when
        it has them or when the file it lacks has no source (e.g. a WD14 tagger the table does not know)."""
        wanted: list[tuple[str, str]] = []  # (folder kind, name)
        if model == "clip":
            if blip.find(self.blip_dirs) is None:
                wanted.append(("blip", blip.FILE))
            if clip_rank.find(self.clip_dirs) is None:
                wanted.append(("clip", "ViT-L-14.pt"))
        elif model == "deepdanbooru":
            if not any((d / deepbooru.FILE).is_file() for d in self.deepbooru_dirs):
                wanted.append(("deepbooru", deepbooru.FILE))
        elif model == "wd14":
            found, name = wd14.find(self.wd14_dirs), str(settings.get("interrogate_wd14_model", "") or "")
            if not name and not found:
                name = sources.DEFAULT_WD14
            if name and name not in found:
                folder = self._folder("wd14") / name
                wanted += [("wd14", f"{name}/{f}") for f in (wd14.MODEL_FILE, wd14.TAGS_FILE)
                           if not (folder / f).is_file()]
        plan = [(sources.source_of(self.sources, kind, name), kind, name) for kind, name in wanted]
        if not plan or any(src is None for src, _, _ in plan):
            return []  # a download that cannot make the model work is not offered
        return [sources.Planned(src, self._folder(kind) / name) for src, kind, name in plan if src is not None]

    def _clip_caption(self, image: Image.Image, settings: Mapping[str, Any], field: str) -> str:
        """A1111's Interrogate CLIP: BLIP's caption, then ", phrase" for each category's best matches
        (``(phrase:0.123)`` with ``interrogate_return_ranks``)."""
        if "blip" not in self._kept:
            blip_path = blip.find(self.blip_dirs)
            clip_path = clip_rank.find(self.clip_dirs)
            where_blip = self.blip_dirs[0] if self.blip_dirs else "models/BLIP"
            where_clip = self.clip_dirs[0] if self.clip_dirs else "models/CLIP"
            if blip_path is None:
                raise FieldError(field, f"Interrogate CLIP needs BLIP: put {blip.FILE} (Salesforce's"
                                        f"{sources.address(self.sources, 'blip', blip.FILE)}) or a "
                                        f"transformers BLIP folder in {where_blip}")
            if clip_path is None:
                raise FieldError(field, "Interrogate CLIP needs CLIP ViT-L/14: put OpenAI's ViT-L-14.pt"
                                        f"{sources.address(self.sources, 'clip', 'ViT-L-14.pt')}, or the "
                                        f"transformers folder openai/clip-vit-large-patch14 in {where_clip}")
            try:
                captioner, ranker = blip.load(blip_path, self.blip_dirs), clip_rank.load(clip_path)
            except (ValueError, OSError, ModelFileError) as err:
                raise FieldError(field, f"Interrogate CLIP cannot read its models: {err}") from None
            captioner.model.to(self._device())
            ranker.model.to(self._device())
            self._kept = {"blip": captioner, "clip": ranker}
        captioner, ranker = self._kept["blip"], self._kept["clip"]
        text = blip.caption(captioner, image, int(settings.get("interrogate_clip_num_beams", 1)),
                            int(settings.get("interrogate_clip_min_length", 24)),
                            int(settings.get("interrogate_clip_max_length", 48)))
        features = clip_rank.image_features(ranker, image)
        skip = settings.get("interrogate_clip_skip_categories") or []
        ranks = bool(settings.get("interrogate_return_ranks", False))
        for category in clip_rank.categories(self.list_dirs, int(settings.get("interrogate_clip_dict_limit", 1500)),
                                             list(skip)):
            for phrase, score in clip_rank.rank(ranker, features, category.items, category.topn):
                text += f", ({phrase}:{score / 100:.3f})" if ranks else f", {phrase}"
        return text

    def _deepbooru_caption(self, image: Image.Image, settings: Mapping[str, Any], field: str) -> str:
        """A1111's Interrogate DeepBooru: tags at or above ``interrogate_deepbooru_score_threshold``."""
        path = next((d / deepbooru.FILE for d in self.deepbooru_dirs if (d / deepbooru.FILE).is_file()), None)
        if path is None:
            where = self.deepbooru_dirs[0] if self.deepbooru_dirs else "models/torch_deepdanbooru"
            raise FieldError(field, f"Interrogate DeepBooru needs {deepbooru.FILE} (AUTOMATIC1111/"
                                    f"TorchDeepDanbooru's release"
                                    f"{sources.address(self.sources, 'deepbooru', deepbooru.FILE)}) in {where}")
        if "deepbooru" not in self._kept:
            try:
                self._kept = {"deepbooru": deepbooru.load(path)}
            except (ValueError, OSError, ModelFileError) as err:
                raise FieldError(field, f"{path.name} cannot be read: {err}") from None
        scores = deepbooru.predict(self._kept["deepbooru"], image, self._device())
        chosen = tags.selected(scores.items(), float(settings.get("interrogate_deepbooru_score_threshold", 0.5)))
        return tags.caption(chosen, tags.TagFormat.of(settings))

    def _wd14(self, settings: Mapping[str, Any], field: str) -> wd14.Tagger:
        found = wd14.find(self.wd14_dirs)
        if not found:
            hint = self._wd14_hint(str(settings.get("interrogate_wd14_model", "") or "") or sources.DEFAULT_WD14)
            raise FieldError(field, f"no WD14 tagger found in {self._where()}: {hint}")
        wanted = str(settings.get("interrogate_wd14_model", "") or "")
        if wanted and wanted not in found:
            raise FieldError(field, f"the WD14 tagger {wanted!r} (setting interrogate_wd14_model) is not in "
                                    f"{self._where()}; found: {', '.join(found)}"
                                    + (f"; {self._wd14_hint(wanted)}" if self._known(wanted) else ""))
        name = wanted or next(iter(found))
        key = f"wd14/{name}"
        if key not in self._kept:
            try:
                self._kept = {key: wd14.load(found[name], gpu=self.gpu())}
            except (ValueError, OSError) as err:
                raise FieldError(field, f"the WD14 tagger {name} cannot be read: {err}") from None
        return self._kept[key]

    @staticmethod
    def _wd14_caption(tagger: wd14.Tagger, image: Image.Image, settings: Mapping[str, Any]) -> str:
        prediction = wd14.predict(tagger, image)
        general = tags.selected(prediction.general.items(),
                                float(settings.get("interrogate_wd14_general_threshold", 0.35)))
        characters = tags.selected(prediction.characters.items(),
                                   float(settings.get("interrogate_wd14_character_threshold", 0.85)))
        return tags.caption({**characters, **general}, tags.TagFormat.of(settings))
