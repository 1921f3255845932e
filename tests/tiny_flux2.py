"""A tiny, randomly initialised FLUX.2 [klein] model folder for tests.

The keyframe backend loads a real diffusers folder (``Flux2KleinPipeline.from_pretrained(folder)``). This helper
builds the smallest components that keep the released model's geometry and saves them with ``save_pretrained`` as
safetensors, exactly like a downloaded folder, so tests load it through the studio's real loader:

- VAE (``AutoencoderKLFlux2``): four levels, so 8x spatial compression; the pipeline packs latents in 2x2
  patches, so sizes are multiples of 16, as with the released weights.
- Text encoder (``Qwen3ForCausalLM``): narrow but 28 layers deep, because the pipeline stacks the hidden states
  of layers 9, 18 and 27 (``text_encoder_out_layers``) by default; so the transformer's ``joint_attention_dim``
  is three times the encoder's width, as 7680 is for Qwen3-4B's 2560.
- Tokenizer (``Qwen2Tokenizer``): byte-level BPE over the 256 byte symbols with no merges, plus the chat-template
  tokens the pipeline's prompt encoding uses (``<|im_start|>``, ``<|im_end|>``, ``<think>``, ``</think>``).
- Transformer (``Flux2Transformer2DModel``): one double-stream and one single-stream block, 64 wide (four
  16-wide heads; the rotary axes split 16 as 4+4+4+4).
- ``is_distilled=True``, as in the 4B release: no classifier-free guidance pass.

Everything is built in code from ``torch.manual_seed(0)``; nothing is downloaded. The outputs are noise: only
shapes, determinism and the loading and calling paths mean anything.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
from tokenizers import AddedToken, pre_tokenizers
from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3ForCausalLM

TEXT_WIDTH = 64  # every Linear at least 64 wide, so bitsandbytes can quantize it on a GPU
TEXT_LAYERS = 28  # the pipeline reads hidden states 9, 18 and 27
OUT_LAYERS = 3
LATENT_CHANNELS = 4  # patchified 2x2: the transformer sees 16 channels
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")

# Qwen3's chat template, cut to what a one-turn user prompt without thinking produces.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def _tokenizer() -> Qwen2Tokenizer:
    symbols = (*SPECIAL_TOKENS, *sorted(pre_tokenizers.ByteLevel.alphabet()))  # one token per byte: no merges
    vocab = {token: index for index, token in enumerate(symbols)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _text_encoder(vocab_size: int) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=TEXT_WIDTH // 4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(config).eval()


def _vae() -> AutoencoderKLFlux2:
    return AutoencoderKLFlux2(
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=64,
    ).eval()


def _transformer() -> Flux2Transformer2DModel:
    return Flux2Transformer2DModel(
        in_channels=LATENT_CHANNELS * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=OUT_LAYERS * TEXT_WIDTH,
        timestep_guidance_channels=64,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    ).eval()


def _scheduler() -> FlowMatchEulerDiscreteScheduler:
    # FLUX's flow-matching scheduler: the pipeline shifts the schedule by the image size (``mu``).
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)


def build_flux2_klein_folder(root: Path) -> Path:
    """Save a tiny ``Flux2KleinPipeline`` to ``root / "flux2-klein"`` and return that folder."""
    folder = Path(root) / "flux2-klein"
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    pipe = Flux2KleinPipeline(
        scheduler=_scheduler(),
        vae=_vae(),
        text_encoder=_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=_transformer(),
        is_distilled=True,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
