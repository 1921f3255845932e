"""Tiny, randomly initialised Wan model folders for tests.

Tests may never download anything, yet the studio's video backends load real diffusers folders
(``WanImageToVideoPipeline.from_pretrained(folder)`` and friends). This helper builds the smallest components
that keep Wan's real geometry (VAE: 8x spatial and 4x temporal compression, 16 latent channels; transformer
patch 1x2x2, so sizes are multiples of 16 and frame counts 4k+1), initialises them from ``torch.manual_seed(0)``
and writes them with ``save_pretrained`` as safetensors, exactly like a downloaded model folder. Everything is
built in code (the tokenizer too), so a folder is made offline in about a second and runs on CPU.

Linear layers are 64 wide or wider where it is cheap, so 8-bit/int8 weight quantisation can be exercised later.
The outputs are noise: only shapes, dtypes, determinism and the loading/calling paths are meaningful.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
    WanVACEPipeline,
    WanVACETransformer3DModel,
)
from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

WIDTH = 64  # text encoder d_model == transformer text_dim == transformer inner dim
HEADS = 2
HEAD_DIM = WIDTH // HEADS  # 32: Wan's 3D RoPE splits it 12 (time) + 10 (height) + 10 (width)
Z_DIM = 16  # latent channels; AutoencoderKLWan's default latents_mean/std have 16 entries
I2V_IN_CHANNELS = Z_DIM + 4 + Z_DIM  # noise + frame mask (4 = temporal factor) + encoded condition video


def _tokenizer() -> T5TokenizerFast:
    """A small T5 (Unigram) tokenizer: special tokens, word-initial letters and single characters."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + c, -3.0) for c in string.ascii_lowercase]
    pieces += [(c, -4.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def _text_encoder(vocab_size: int) -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=WIDTH,
        d_kv=HEAD_DIM,
        d_ff=2 * WIDTH,
        num_layers=2,
        num_heads=HEADS,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config).eval()


def _vae() -> AutoencoderKLWan:
    # base_dim=3 keeps the VAE to a few thousand weights; its convolutions are not Linear layers anyway.
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=Z_DIM,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()


def _scheduler() -> UniPCMultistepScheduler:
    # The scheduler the Wan-AI diffusers repositories ship (flow-matching UniPC).
    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=3.0,
    )


def _transformer_kwargs() -> dict[str, object]:
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": HEADS,
        "attention_head_dim": HEAD_DIM,
        "out_channels": Z_DIM,
        "text_dim": WIDTH,
        "freq_dim": WIDTH,
        "ffn_dim": 2 * WIDTH,
        "num_layers": 2,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
    }


def _shared_components() -> dict[str, object]:
    tokenizer = _tokenizer()
    return {
        "tokenizer": tokenizer,
        "text_encoder": _text_encoder(len(tokenizer)),
        "vae": _vae(),
        "scheduler": _scheduler(),
    }


def build_wan_i2v_folder(root: Path) -> Path:
    """Save a tiny ``WanImageToVideoPipeline`` to ``root / "wan-i2v"`` and return that folder.

    Layout: one Wan 2.2 A14B-style I2V expert without ``transformer_2`` (``boundary_ratio=None``), i.e. the Wan 2.1
    I2V transformer (36 input channels: noise, frame mask, encoded first/last frames) with no CLIP image branch
    (``image_dim=None``, ``image_encoder=None``, ``expand_timesteps=False``). So first-frame and first+last-frame
    (``last_image=``) conditioning both work, with no image encoder.
    """
    folder = Path(root) / "wan-i2v"
    torch.manual_seed(0)
    components = _shared_components()
    transformer = WanTransformer3DModel(in_channels=I2V_IN_CHANNELS, image_dim=None, **_transformer_kwargs()).eval()
    pipe = WanImageToVideoPipeline(
        transformer=transformer,
        image_encoder=None,
        image_processor=None,
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=False,
        **components,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_wan_vace_folder(root: Path) -> Path:
    """Save a tiny ``WanVACEPipeline`` to ``root / "wan-vace"`` and return that folder.

    Layout: Wan 2.1 VACE (a 16-channel T2V transformer plus VACE blocks at layers 0 and 1), no ``transformer_2``.
    """
    folder = Path(root) / "wan-vace"
    torch.manual_seed(0)
    components = _shared_components()
    transformer = WanVACETransformer3DModel(
        in_channels=Z_DIM,
        vace_layers=[0, 1],
        vace_in_channels=2 * Z_DIM + 8 * 8,  # inactive + reactive latents + the 8x8-folded pixel mask
        **_transformer_kwargs(),
    ).eval()
    pipe = WanVACEPipeline(transformer=transformer, transformer_2=None, boundary_ratio=None, **components)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_wan_v2v_folder(root: Path) -> Path:
    """Save a tiny text-to-video ``WanPipeline`` (Wan 2.1 T2V layout) to ``root / "wan-t2v"``.

    This is the folder ``WanVideoToVideoPipeline.from_pretrained`` needs: a plain 16-channel transformer. The I2V
    transformer takes 36 channels and the VACE one needs control inputs, so neither folder serves video-to-video.
    """
    folder = Path(root) / "wan-t2v"
    torch.manual_seed(0)
    components = _shared_components()
    transformer = WanTransformer3DModel(in_channels=Z_DIM, **_transformer_kwargs()).eval()
    pipe = WanPipeline(transformer=transformer, transformer_2=None, boundary_ratio=None, **components)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
