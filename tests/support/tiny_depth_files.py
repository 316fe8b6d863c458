"""Tiny random depth networks in sd-webui-controlnet's ORIGINAL file layouts, built from reference code (timm's
VisionTransformer / hybrid ResNetV2, controlnet_aux's MiDaS blocks) so that the same weights can be run by the
reference and, converted, by our transformers models.

Depth Anything V1 (``depth_anything_vitl14.pth``): the reference is LiheYoung/Depth-Anything's ``DPT_DINOv2`` written
out from its parts: a DINOv2-style timm ViT (patch 14, layer scale; its ``get_intermediate_layers`` with the final
norm, as DINOv2's) and the DPT head of controlnet_aux's MiDaS blocks (``_make_scratch``, ``FeatureFusionBlock_custom``,
the blocks Depth Anything's own ``dpt.py`` imports), glued as the original ``DPTHead.forward``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from tests.support.aux_reference import reference
from tests.support.timm_reference import absent_torchvision, timm


def _blocks():
    timm()
    with absent_torchvision():
        return reference("midas.midas.blocks")


def randomize(module: nn.Module, seed: int) -> None:
    """Every parameter random (biases, norms and layer scales too, so that a wrong mapping shows in the output)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif name.endswith("gamma") or "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


class DepthAnythingReference(nn.Module):
    """``DPT_DINOv2`` (V1): DINOv2 ViT + DPT head. ``pretrained`` and ``depth_head`` carry the original names."""

    def __init__(self, dim: int = 128, layers: int = 4, heads: int = 2, grid: int = 4,
                 out_channels: tuple[int, ...] = (16, 32, 64, 64), features: int = 32, head_hidden: int = 32) -> None:
        super().__init__()
        blocks = _blocks()
        from timm.models.vision_transformer import VisionTransformer
        self.pretrained = VisionTransformer(img_size=grid * 14, patch_size=14, embed_dim=dim, depth=layers,
                                            num_heads=heads, mlp_ratio=4.0, init_values=1.0, num_classes=0)
        self.pretrained.mask_token = nn.Parameter(torch.zeros(1, dim))  # DINOv2 keeps one (unused at inference)
        head = nn.Module()
        head.projects = nn.ModuleList([nn.Conv2d(dim, c, 1) for c in out_channels])
        head.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1)])
        head.scratch = blocks._make_scratch(list(out_channels), features, groups=1, expand=False)
        for i in range(1, 5):
            setattr(head.scratch, f"refinenet{i}", blocks.FeatureFusionBlock_custom(
                features, nn.ReLU(False), deconv=False, bn=False, expand=False, align_corners=True))
        head.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        head.scratch.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, head_hidden, 3, padding=1), nn.ReLU(True),
                                                  nn.Conv2d(head_hidden, 1, 1), nn.ReLU(True), nn.Identity())
        self.depth_head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = h // 14, w // 14
        tokens = self.pretrained.get_intermediate_layers(x, n=4, norm=True)  # the last four blocks, normed
        s = self.depth_head.scratch
        maps = []
        for i, t in enumerate(tokens):
            t = t.permute(0, 2, 1).reshape(t.shape[0], t.shape[-1], ph, pw)
            maps.append(self.depth_head.resize_layers[i](self.depth_head.projects[i](t)))
        rn = [getattr(s, f"layer{i + 1}_rn")(m) for i, m in enumerate(maps)]
        path = s.refinenet4(rn[3])  # (controlnet_aux's fusion blocks upsample x2: the tiny grid keeps sizes exact)
        path = s.refinenet3(path, rn[2])
        path = s.refinenet2(path, rn[1])
        path = s.refinenet1(path, rn[0])
        out = s.output_conv1(path)
        out = F.interpolate(out, (ph * 14, pw * 14), mode="bilinear", align_corners=True)
        out = s.output_conv2(out)
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
        return F.relu(out).squeeze(1)

    def original_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}


def write_depth_anything(folder: Path, seed: int = 0, **sizes: int) -> tuple[Path, DepthAnythingReference]:
    """``<folder>/depth_anything_vitl14.pth`` (a flat state dict, as the download) and its reference network."""
    torch.manual_seed(seed)
    ref = DepthAnythingReference(**sizes).eval()
    randomize(ref, seed)
    with torch.no_grad():  # most of the map above the final ReLU, so that the comparison sees it
        ref.depth_head.scratch.output_conv2[2].bias.fill_(0.5)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "depth_anything_vitl14.pth"
    torch.save(ref.original_state_dict(), path)
    return path, ref


# ---------------------------------------------------------------------------------------------------------------------
# MiDaS v3 DPT-Hybrid (dpt_hybrid-midas-501f0c75.pt): controlnet_aux's DPTDepthModel, its parts built from its own
# helpers around a tiny timm hybrid ViT (a 1-1-1 block BiT ResNet stem instead of 3-4-9; fewer, narrower blocks)


def _midas_modules():
    timm()
    with absent_torchvision():
        return reference("midas.midas.vit"), reference("midas.midas.blocks"), reference("midas.midas.dpt_depth")


def midas_reference(dim: int = 128, layers: int = 4, heads: int = 2, features: int = 32, classes: int = 10
                    ) -> nn.Module:
    """The extension's ``DPTDepthModel(backbone="vitb_rn50_384", non_negative=True)`` at a tiny size: the same
    forward code (DPT.forward, forward_vit, forward_flex, the fusion blocks and head), hooks on ResNet stages 0, 1
    and on ViT blocks (2/3 of the way, last)."""
    from functools import partial

    vit, blocks, dpt_depth = _midas_modules()
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer
    from timm.models.vision_transformer_hybrid import _resnetv2

    backbone = _resnetv2(layers=(1, 1, 1))
    model = VisionTransformer(img_size=384, patch_size=1, embed_dim=dim, depth=layers, num_heads=heads,
                              num_classes=classes, embed_layer=partial(HybridEmbed, backbone=backbone))
    widths = [backbone.stages[0].blocks[0].conv3.out_channels, backbone.stages[1].blocks[0].conv3.out_channels]
    net = dpt_depth.DPTDepthModel.__new__(dpt_depth.DPTDepthModel)
    nn.Module.__init__(net)
    net.channels_last = False
    net.pretrained = vit._make_vit_b_rn50_backbone(model, features=[*widths, dim, dim], size=[384, 384],
                                                   hooks=[0, 1, layers * 2 // 3, layers - 1], vit_features=dim,
                                                   use_readout="project")
    net.scratch = blocks._make_scratch([*widths, dim, dim], features, groups=1, expand=False)
    for i in range(1, 5):
        setattr(net.scratch, f"refinenet{i}", dpt_depth._make_fusion_block(features, False))
    net.scratch.output_conv = nn.Sequential(
        nn.Conv2d(features, features // 2, kernel_size=3, stride=1, padding=1),
        blocks.Interpolate(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(features // 2, 32, kernel_size=3, stride=1, padding=1), nn.ReLU(True),
        nn.Conv2d(32, 1, kernel_size=1, stride=1, padding=0), nn.ReLU(True), nn.Identity())
    return net


def write_midas(folder: Path, seed: int = 0, **sizes: int) -> tuple[Path, nn.Module]:
    """``<folder>/dpt_hybrid-midas-501f0c75.pt`` (a flat state dict, as the download) and its reference network."""
    torch.manual_seed(seed)
    ref = midas_reference(**sizes).eval()
    randomize(ref, seed)
    with torch.no_grad():
        ref.scratch.output_conv[4].bias.fill_(0.5)  # most of the map above the final ReLU
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dpt_hybrid-midas-501f0c75.pt"
    torch.save({k: v.detach().clone() for k, v in ref.state_dict().items()}, path)
    return path, ref


# ---------------------------------------------------------------------------------------------------------------------
# ZoeDepth NYU (ZoeD_M12_N.pt): controlnet_aux's ZoeDepth (the extension's code) on a MiDaS v3.1 DPT-BEiT core, its
# parts built from its own helpers around a tiny timm BEiT. MidasCore is assembled without its PrepForMidas (which
# needs torchvision's Normalize): the reference is given the resized, normalised pixels, as the network sees them.


def _zoe_modules():
    timm()
    base = "zoe.zoedepth.models."
    midas = base + "base_models.midas_repo.midas."
    with absent_torchvision():
        return (reference(midas + "backbones.beit"), reference(midas + "blocks"), reference(midas + "dpt_depth"),
                reference(base + "base_models.midas"), reference(base + "zoedepth.zoedepth_v1"))


class _AsIs:
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


def zoe_reference(dim: int = 64, layers: int = 4, heads: int = 2, features: int = 16, n_bins: int = 16,
                  bin_embedding_dim: int = 128) -> nn.Module:
    """The extension's ZoeDepth (config_zoedepth.json's values: softplus bins, attractors 16/8/4/1 of the 'inv'
    kind, alpha 1000, gamma 2, 'mean', temperatures 0.0212..50, NYU's 1e-3..10 m) at a tiny size."""
    beit, blocks, dpt_depth, midas_base, zoe_v1 = _zoe_modules()
    from timm.models.beit import Beit

    model = Beit(img_size=384, patch_size=16, embed_dim=dim, depth=layers, num_heads=heads, use_abs_pos_emb=False,
                 use_rel_pos_bias=True, init_values=0.1, num_classes=0)
    widths = [features // 2, features, dim, dim]
    dpt = dpt_depth.DPTDepthModel.__new__(dpt_depth.DPTDepthModel)
    nn.Module.__init__(dpt)
    dpt.channels_last, dpt.number_layers, dpt.forward_transformer = False, 4, beit.forward_beit
    dpt.pretrained = beit._make_beit_backbone(model, features=widths, size=[384, 384],
                                              hooks=[i * layers // 4 + layers // 4 - 1 for i in range(4)],
                                              vit_features=dim, use_readout="project")
    dpt.scratch = blocks._make_scratch(widths, features, groups=1, expand=False)
    dpt.scratch.stem_transpose = None
    for i in range(1, 5):
        setattr(dpt.scratch, f"refinenet{i}", dpt_depth._make_fusion_block(features, False))
    dpt.scratch.output_conv = nn.Sequential(
        nn.Conv2d(features, features // 2, kernel_size=3, stride=1, padding=1),
        blocks.Interpolate(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(features // 2, 32, kernel_size=3, stride=1, padding=1), nn.ReLU(True),
        nn.Conv2d(32, 1, kernel_size=1, stride=1, padding=0), nn.ReLU(True), nn.Identity())
    core = midas_base.MidasCore.__new__(midas_base.MidasCore)
    nn.Module.__init__(core)
    core.core, core.core_out, core.handles = dpt, {}, []
    core.layer_names = ("out_conv", "l4_rn", "r4", "r3", "r2", "r1")
    core.trainable, core.fetch_features, core.prep = False, True, _AsIs()
    core.output_channels = [features] * 5
    core.attach_hooks(dpt)
    return zoe_v1.ZoeDepth(core, n_bins=n_bins, bin_centers_type="softplus", bin_embedding_dim=bin_embedding_dim,
                           min_depth=1e-3, max_depth=10.0, n_attractors=[16, 8, 4, 1], attractor_alpha=1000,
                           attractor_gamma=2, attractor_kind="mean", attractor_type="inv", min_temp=0.0212,
                           max_temp=50.0, train_midas=False)


def write_zoe(folder: Path, seed: int = 0, **sizes: int) -> tuple[Path, nn.Module]:
    """``<folder>/ZoeD_M12_N.pt`` (``{"model": state dict}``, as the download) and its reference network."""
    torch.manual_seed(seed)
    ref = zoe_reference(**sizes).eval()
    randomize(ref, seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ZoeD_M12_N.pt"
    state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    from timm.models.beit import gen_relative_position_index

    for block in range(len(ref.core.core.pretrained.model.blocks)):  # timm 0.6 saved it (the real file has it)
        state[f"core.core.pretrained.model.blocks.{block}.attn.relative_position_index"] = \
            gen_relative_position_index((24, 24))
    torch.save({"model": state}, path)
    return path, ref
