"""Tiny, randomly initialised SANA-WM model folders for tests.

Why this exists: Continuity loads SANA-WM from a folder on disk with ``SanaWMPipeline.from_pretrained(folder)``
(and the stage-2 refiner with ``SanaWMLTX2Refiner.from_pretrained(folder / "refiner", vae=pipe.vae)``). Tests may
never download anything, so this module builds the same component classes at toy sizes and saves them with
``save_pretrained`` (safetensors only), exactly like a user's downloaded model folder. The result loads and runs a
64x64, 9-frame image-to-video on CPU in about half a second per stage once warm; the weights are random, so the
frames are noise.

Folder layout written by ``build_sana_wm_folder(root)``::

    root/sana-wm/                      SanaWMPipeline (stage 1)
        model_index.json
        scheduler/scheduler_config.json            FlowMatchEulerDiscreteScheduler
        text_encoder/{config.json,model.safetensors}  Gemma2Model (2 layers, 64 wide)
        tokenizer/{tokenizer.json,tokenizer_config.json}  GemmaTokenizer (characters, chi-prompt words, byte fallback)
        transformer/{config.json,diffusion_pytorch_model.safetensors}  SanaWMTransformer3DModel (2 layers, 64 wide)
        vae/{config.json,diffusion_pytorch_model.safetensors}  AutoencoderKLLTX2Video (8x spatial, 8x temporal)
        refiner/                       SanaWMLTX2Refiner (stage 2, optional; no vae of its own: pass vae=pipe.vae)
            model_index.json
            connectors/   LTX2TextConnectors
            scheduler/    FlowMatchEulerDiscreteScheduler (shift=1.0)
            text_encoder/ Gemma3ForConditionalGeneration (2 text layers, 1-layer SigLIP tower) + generation_config
            tokenizer/    same GemmaTokenizer as stage 1
            transformer/  SanaWMLTX2RefinerTransformer3DModel (2 layers, 64 wide)

Constraints honoured by the sizes below: ``linear_head_dim`` divides by 4, ``chunk_plucker_channels`` is 6 x the
VAE temporal stride, frame counts are ``8k + 1``, and every Linear is at least 64 wide so 8-bit quantisation can be
tried on these weights too (exceptions: the SANA-WM DiT's per-head ``beta_proj``/``gate_proj``, whose output width
is the head count, as in the real model). Keep everything in float32: SANA-WM's camera code does not run in half
precision on CPU.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    SanaWMPipeline,
    SanaWMTransformer3DModel,
)
from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMLTX2RefinerTransformer3DModel
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
from diffusers.pipelines.sana_wm import SanaWMLTX2Refiner
from diffusers.pipelines.sana_wm.pipeline_sana_wm import DEFAULT_CHI_PROMPT
from transformers import (
    Gemma2Config,
    Gemma2Model,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    GemmaTokenizer,
    SiglipVisionConfig,
)

WIDTH = 64  # hidden width of every tiny network
LATENT_CHANNELS = 64
VAE_STRIDE = 8  # spatial and temporal compression of the tiny VAE
REFINER_SUBFOLDER = "refiner"


def build_tokenizer() -> GemmaTokenizer:
    """A Gemma tokenizer over printable ASCII characters, with the 256 byte-fallback tokens for everything else.

    BPE merges turn each ``"▁word"`` of SANA's chi-prompt prefix into one token, so the prefix that
    ``SanaWMPipeline`` prepends to every prompt costs ~240 tokens instead of ~1060 characters.
    """
    vocab: dict[str, int] = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in "\u2581" + string.ascii_letters + string.digits + string.punctuation:
        vocab.setdefault(char, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(re.findall(r"[A-Za-z]+", "\n".join(DEFAULT_CHI_PROMPT)))):
        piece = "\u2581" + word
        for end in range(2, len(piece) + 1):
            if piece[:end] not in vocab:
                vocab[piece[:end]] = len(vocab)
                merges.append((piece[: end - 1], piece[end - 1]))
    return GemmaTokenizer(vocab=vocab, merges=merges)


def _gemma_text_kwargs(vocab_size: int) -> dict[str, int]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 16,
        "max_position_embeddings": 4096,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }


def build_vae() -> AutoencoderKLLTX2Video:
    """LTX-2 VAE with three spatiotemporal 2x stages: 8x spatial and 8x temporal compression."""
    return AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 16, 32),
        decoder_block_out_channels=(8, 16, 32),
        layers_per_block=(1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )


def build_transformer() -> SanaWMTransformer3DModel:
    """Two-block SANA-WM DiT: block 1 uses the GDN linear attention, block 2 softmax attention."""
    return SanaWMTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        num_layers=2,
        hidden_size=WIDTH,
        num_attention_heads=2,
        linear_head_dim=32,
        softmax_every_n=2,
        chunk_plucker_channels=6 * VAE_STRIDE,
        chunk_plucker_post_attn_blocks=2,
        image_size=64,
        caption_channels=WIDTH,
        mixed_precision="fp32",
    )


def build_stage1(tokenizer: GemmaTokenizer) -> SanaWMPipeline:
    """Stage-1 pipeline: Gemma-2 encoder, LTX-2 VAE, SANA-WM DiT, flow-matching scheduler."""
    text_encoder = Gemma2Model(Gemma2Config(**_gemma_text_kwargs(len(tokenizer))))
    return SanaWMPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=build_vae(),
        transformer=build_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def build_refiner(tokenizer: GemmaTokenizer) -> SanaWMLTX2Refiner:
    """Stage-2 refiner without a VAE of its own; it shares the stage-1 VAE at load time."""
    text_config = Gemma3TextConfig(**_gemma_text_kwargs(len(tokenizer)))
    vision_config = SiglipVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    text_encoder = Gemma3ForConditionalGeneration(
        Gemma3Config(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), mm_tokens_per_image=4)
    )
    connectors = LTX2TextConnectors(
        caption_channels=WIDTH,
        text_proj_in_factor=text_config.num_hidden_layers + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=16,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=16,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
    )
    transformer = SanaWMLTX2RefinerTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=4,
        attention_head_dim=16,
        cross_attention_dim=WIDTH,
        vae_scale_factors=(VAE_STRIDE, VAE_STRIDE, VAE_STRIDE),
        audio_in_channels=WIDTH,
        audio_out_channels=WIDTH,
        audio_num_attention_heads=4,
        audio_attention_head_dim=16,
        audio_cross_attention_dim=WIDTH,
        num_layers=2,
        caption_channels=WIDTH,
        rope_double_precision=False,
    )
    return SanaWMLTX2Refiner(
        transformer=transformer,
        connectors=connectors,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
    )


def build_sana_wm_folder(root: Path, *, with_refiner: bool = True) -> Path:
    """Build and save a tiny SANA-WM model folder under ``root``; return ``root / "sana-wm"``.

    Deterministic: everything is built under ``torch.manual_seed(0)``, so the same call writes the same weights.
    """
    folder = Path(root) / "sana-wm"
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    build_stage1(tokenizer).save_pretrained(folder, safe_serialization=True)
    if with_refiner:
        build_refiner(tokenizer).save_pretrained(folder / REFINER_SUBFOLDER, safe_serialization=True)
    return folder
