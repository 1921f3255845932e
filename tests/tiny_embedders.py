"""Tiny, randomly initialised image-embedding models (CLIP, DINOv2, SigLIP) saved as model folders.

The studio's scoring loads a user's CLIP/DINOv2/SigLIP folder through transformers; tests load these folders
through the same code, built in code under a fixed seed so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

TINY = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY_VISION = TINY | {"image_size": 32, "patch_size": 8}
TINY_TEXT = TINY | {"vocab_size": 99, "max_position_embeddings": 16}
PROCESSOR_SIZE = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}


def _clip() -> tuple[torch.nn.Module, object]:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=24)
    return CLIPModel(config), CLIPImageProcessor(**PROCESSOR_SIZE)


def _clip_vision() -> tuple[torch.nn.Module, object]:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(**TINY_VISION, projection_dim=20)
    return CLIPVisionModelWithProjection(config), CLIPImageProcessor(**PROCESSOR_SIZE)


def _dinov2() -> tuple[torch.nn.Module, object]:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    return Dinov2Model(config), BitImageProcessor(**PROCESSOR_SIZE)


def _siglip() -> tuple[torch.nn.Module, object]:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    config = SiglipConfig(text_config=TINY_TEXT, vision_config=TINY_VISION)
    return SiglipModel(config), SiglipImageProcessor(size={"height": 32, "width": 32})


def _siglip_vision() -> tuple[torch.nn.Module, object]:
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    return SiglipVisionModel(SiglipVisionConfig(**TINY_VISION)), SiglipImageProcessor(size={"height": 32, "width": 32})


BUILDERS: dict[str, tuple[Callable[[], tuple[torch.nn.Module, object]], int]] = {
    "clip": (_clip, 24),  # the projection's width, not the tower's 32: CLIP's image features are projected
    "clip_vision_model": (_clip_vision, 20),
    "dinov2": (_dinov2, 32),
    "siglip": (_siglip, 32),
    "siglip_vision_model": (_siglip_vision, 32),
}


def save_tiny(root: Path, family: str) -> tuple[Path, torch.nn.Module]:
    build, _ = BUILDERS[family]
    torch.manual_seed(0)
    model, processor = build()
    folder = root / f"tiny-{family.replace('_', '-')}"
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model
