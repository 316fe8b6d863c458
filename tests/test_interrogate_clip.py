"""Interrogate CLIP: BLIP from Salesforce's checkpoint layout and CLIP from a transformers folder or OpenAI's layout
(tiny models, ``tests/support/tiny_blip_clip.py``), checked against the transformers models they were written from;
the ranking against A1111's formula written out; the category lists as A1111 reads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules.errors import FieldError
from modules.interrogate import blip, clip_rank
from modules.interrogate.service import Interrogator
from tests.support import tiny_blip_clip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    source_blip, source_clip = tiny_blip_clip.blip(), tiny_blip_clip.clip()
    tiny_blip_clip.write_blip(root / "BLIP", source_blip)
    source_clip.save_pretrained(root / "CLIP" / "clip-vit-tiny")
    (root / "CLIP-openai").mkdir()
    save_file(tiny_blip_clip.clip_openai(source_clip), str(root / "CLIP-openai" / "ViT-tiny.safetensors"))
    lists = root / "interrogate"
    lists.mkdir()
    (lists / "mediums.txt").write_text("a photograph\nan oil painting\na sketch\n")
    (lists / "flavors.top3.txt").write_text("red\nblue\ngreen\nsoft light\n\n")
    return root, source_blip, source_clip


def _picture() -> Image.Image:
    return Image.fromarray(np.random.RandomState(1).randint(0, 255, (48, 40, 3)).astype(np.uint8))


def test_blip_from_salesforces_layout_is_the_model_it_was_written_from(models):
    root, source, _ = models
    captioner = blip.load(root / "BLIP" / blip.FILE, [root / "BLIP"])
    expected = source.state_dict()
    got = captioner.model.state_dict()
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)
    picture = _picture()
    text = blip.caption(captioner, picture, num_beams=2, min_length=5, max_length=12)
    # the reference: the source model's own generate from the same prompt ids and pixels
    ids = captioner.tokenizer(["a picture of"], return_tensors="pt").input_ids
    with torch.inference_mode():
        out = source.generate(pixel_values=blip.pixels(picture, 32), input_ids=ids, num_beams=2, min_length=5,
                              max_length=12, do_sample=False)
    decoded = captioner.tokenizer.decode(out[0], skip_special_tokens=True)
    assert decoded.startswith("a picture of") and text == decoded[len("a picture of "):]
    assert captioner.tokenizer.convert_ids_to_tokens(source.config.text_config.bos_token_id) == "[DEC]"


def test_clip_from_openais_layout_equals_the_transformers_folder(models):
    root, _, source = models
    folder = clip_rank.load(clip_rank.find([root / "CLIP"]))
    openai = clip_rank.load(clip_rank.find([root / "CLIP-openai"]))
    picture = _picture()
    a, b = clip_rank.image_features(folder, picture), clip_rank.image_features(openai, picture)
    assert torch.allclose(a, b, atol=1e-5)
    texts = ["a photograph", "an oil painting"]
    assert torch.allclose(clip_rank.text_features(folder, texts), clip_rank.text_features(openai, texts), atol=1e-5)
    # A1111's ranking written out: softmax(100 * image . text) over the normalised embeddings, with the source model
    with torch.inference_mode():
        image = source.get_image_features(pixel_values=clip_rank.pixels(picture, 32))
        image = getattr(image, "pooler_output", image)
        ids = folder.tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt").input_ids
        text = source.get_text_features(input_ids=ids)
        text = getattr(text, "pooler_output", text)
    image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    probabilities = torch.softmax(100 * (image @ text.T)[0], dim=0)
    best = int(probabilities.argmax())
    ranked = clip_rank.rank(openai, b, texts, 1)
    assert ranked[0][0] == texts[best] and abs(ranked[0][1] - 100 * float(probabilities[best])) < 1e-3


def test_category_lists_as_a1111_reads_them(models, tmp_path):
    root, _, _ = models
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mediums.txt").write_text("a fresco\n")
    found = {c.name: c for c in clip_rank.categories([root / "interrogate", mine], limit=2, skip=[])}
    assert found["flavors"].topn == 3 and found["flavors"].items == ["red", "blue"]  # limit 2, blank lines dropped
    assert found["mediums"].items == ["a fresco"]  # a later folder's file of the same name replaces it
    assert [c.name for c in clip_rank.categories([root / "interrogate"], skip=["flavors"])] == ["mediums"]


def test_interrogate_clip_is_the_caption_then_each_categorys_matches(models):
    root, _, _ = models
    service = Interrogator([], blip_dirs=[root / "BLIP"], clip_dirs=[root / "CLIP"],
                           list_dirs=[root / "interrogate"])
    settings = {"interrogate_clip_num_beams": 1, "interrogate_clip_min_length": 5, "interrogate_clip_max_length": 10,
                "interrogate_keep_models_in_memory": True}
    picture = _picture()
    text = service.interrogate(picture, "clip", settings)
    captioner, ranker = service._kept["blip"], service._kept["clip"]
    caption = blip.caption(captioner, picture, 1, 5, 10)
    features = clip_rank.image_features(ranker, picture)
    flavors = [p for p, _ in clip_rank.rank(ranker, features, ["red", "blue", "green", "soft light"], 3)]
    medium = clip_rank.rank(ranker, features, ["a photograph", "an oil painting", "a sketch"], 1)[0][0]
    assert text == ", ".join([caption, *flavors, medium])  # categories by name: flavors, then mediums
    ranked = service.interrogate(picture, "clip", {**settings, "interrogate_return_ranks": True,
                                                   "interrogate_clip_skip_categories": ["flavors"]})
    assert ranked.startswith(caption + ", (" + medium + ":") and ranked.endswith(")") and "(red:" not in ranked


def test_missing_or_foreign_files_are_named(models, tmp_path):
    root, _, _ = models
    picture = _picture()
    with pytest.raises(FieldError) as err:
        Interrogator([], blip_dirs=[tmp_path / "BLIP"], clip_dirs=[root / "CLIP"]).interrogate(picture, "clip", {})
    assert blip.FILE in str(err.value)
    with pytest.raises(FieldError) as err:
        Interrogator([], blip_dirs=[root / "BLIP"], clip_dirs=[tmp_path / "CLIP"]).interrogate(picture, "clip", {})
    assert "clip-vit-large-patch14" in str(err.value)
    no_vocab = tmp_path / "BLIP2"
    tiny_blip_clip.write_blip(no_vocab, tiny_blip_clip.blip())
    (no_vocab / "vocab.txt").unlink()
    with pytest.raises(FieldError) as err:
        Interrogator([], blip_dirs=[no_vocab], clip_dirs=[root / "CLIP"]).interrogate(picture, "clip", {})
    assert "vocab.txt" in str(err.value) or "bert" in str(err.value).lower()
    (tmp_path / "CLIP3").mkdir()
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(2, 2)}, str(tmp_path / "CLIP3" / "clip_l.safetensors"))
    assert clip_rank.find([tmp_path / "CLIP3"]) is None  # a text encoder beside it is not taken for CLIP


def _scripted_openai_archive(sd: dict[str, torch.Tensor], path) -> None:
    """A TorchScript archive whose module tree holds ``sd`` under its dotted names, as OpenAI's download does."""
    root = torch.nn.Module()
    for key, value in sd.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, torch.nn.Module())
            module = getattr(module, name)
        module.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))

    class Top(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = root

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    torch.jit.script(Top()).model.save(str(path))  # the tree without the wrapper, as OpenAI's archive is


def test_openais_torchscript_download_is_read_without_its_code(models, tmp_path):
    from modules.models import torchscript_archive

    root, _, source = models
    sd = tiny_blip_clip.clip_openai(source)
    folder = tmp_path / "CLIP"
    folder.mkdir()
    _scripted_openai_archive(sd, folder / "ViT-L-14.pt")
    assert torchscript_archive.is_torchscript(folder / "ViT-L-14.pt")
    read = torchscript_archive.state_dict(folder / "ViT-L-14.pt")
    assert set(sd) <= set(read) and all(torch.equal(read[k], sd[k]) for k in sd)
    ranker = clip_rank.load(clip_rank.find([folder]))
    reference = clip_rank.load(clip_rank.find([root / "CLIP"]))
    assert torch.allclose(clip_rank.image_features(ranker, _picture()),
                          clip_rank.image_features(reference, _picture()), atol=1e-5)
    # an archive whose pickle names anything but tensors and module objects is refused, named
    import pickle
    import zipfile

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("bad/data.pkl", pickle.dumps(Boom(), protocol=2))
        archive.writestr("bad/code/__torch__.py", "")
    from modules.models.types import UnsafeFileError

    with pytest.raises(UnsafeFileError, match="print"):
        torchscript_archive.state_dict(bad)
