"""A tiny, randomly initialised Qwen-Image-Edit-2509 model folder for tests.

The studio loads ``QwenImageEditPlusPipeline`` from a folder on disk; tests may never download anything, so this
module builds the same component classes at toy sizes, in code, and saves them with ``save_pretrained``
(safetensors only) in the layout of the released model::

    qwen-image-edit/
        model_index.json                           QwenImageEditPlusPipeline
        processor/{tokenizer.json,tokenizer_config.json,preprocessor_config.json}   Qwen2VLProcessor
        scheduler/scheduler_config.json            FlowMatchEulerDiscreteScheduler (Qwen-Image's dynamic shift)
        text_encoder/{config.json,model.safetensors}  Qwen2_5_VLForConditionalGeneration (2 text + 2 vision layers)
        tokenizer/{tokenizer.json,tokenizer_config.json}  Qwen2Tokenizer
        transformer/{config.json,diffusion_pytorch_model.safetensors}  QwenImageTransformer2DModel (2 layers)
        vae/{config.json,diffusion_pytorch_model.safetensors}  AutoencoderKLQwenImage (8x, 16 latent channels)

The real geometry is kept where the backend depends on it: the VAE compresses 8x into 16 channels and the
transformer packs 2x2 latent patches, so sizes go in steps of 16; the text encoder is a Qwen2.5-VL with a vision
tower whose image tokens are spliced into the prompt at ``<|image_pad|>``.

The tokenizer is a byte-level BPE trained here on the pipeline's own prompt template, so every word of the
template's system prompt is one token: the template then tokenizes to exactly the ``prompt_template_encode_start_idx``
tokens the pipeline drops from the encoder's output, as with the real Qwen tokenizer.

The image processor allows at most 56x56 pixels (4 image tokens a picture; the real one takes the pipeline's
384x384 condition pictures whole), which keeps the vision tower cheap. What no tiny model avoids: the pipeline
encodes every input picture through the VAE at about one megapixel (``VAE_IMAGE_SIZE``), so each input picture
costs about a second on one CPU thread; the VAE has no residual blocks on the way down to keep that low.

Linear layers are 64 wide so 8-bit and 4-bit weight quantization can be tried on these weights. The outputs are
noise: only sizes, determinism and the loading and calling paths mean anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPlusPipeline,
    QwenImageTransformer2DModel,
)
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

FOLDER_NAME = "qwen-image-edit"
WIDTH = 64  # hidden width of the text encoder, its vision tower and the transformer
Z_DIM = 16  # latent channels, as in the released VAE
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
IMAGE_MIN_PIXELS = 28 * 28  # Qwen2-VL resizes to multiples of 28 (14 px patches, merged 2x2)
IMAGE_MAX_PIXELS = 56 * 56

# Qwen-Image's scheduler: flow matching with an exponential shift that grows with the picture's token count.
SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "time_shift_type": "exponential",
    "use_dynamic_shifting": True,
}


def prompt_template() -> tuple[str, int]:
    """The pipeline's prompt template and how many of its leading tokens the pipeline drops (its system part)."""
    empty = QwenImageEditPlusPipeline(
        scheduler=None, vae=None, text_encoder=None, tokenizer=None, processor=None, transformer=None
    )
    return empty.prompt_template_encode, empty.prompt_template_encode_start_idx


def build_tokenizer() -> Qwen2Tokenizer:
    """A byte-level BPE Qwen2 tokenizer: the 256 byte symbols, Qwen's special tokens, and merges learnt from the
    pipeline's prompt template (with the ``Picture 1:`` label it puts before each input picture)."""
    template, _dropped = prompt_template()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=4096,  # more than the template needs: training stops when every word is one token
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([template.replace("{}", "Picture 1: ")], trainer)
    trained = json.loads(bpe.to_str())["model"]
    tokenizer = Qwen2Tokenizer(vocab=trained["vocab"], merges=[tuple(pair) for pair in trained["merges"]])
    tokenizer.add_tokens([AddedToken(token, special=True) for token in SPECIAL_TOKENS], special_tokens=True)
    return tokenizer


def build_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    """Qwen2.5-VL with 2 text layers and a 2-layer vision tower (the last one with full attention, as every
    eighth is in the released 32-layer tower), its special token ids taken from ``tokenizer``."""
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": WIDTH,
            "intermediate_size": 2 * WIDTH,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # Multimodal RoPE: the 8 rotary frequencies of a 16-wide head split over time, height and width.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": WIDTH,
            "intermediate_size": 2 * WIDTH,
            "num_heads": 4,
            "out_hidden_size": WIDTH,
            "fullatt_block_indexes": [1],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def build_transformer() -> QwenImageTransformer2DModel:
    """The MMDiT with 2 double-stream blocks, 2 heads of 32 (RoPE axes 8 + 12 + 12), reading 2x2-packed latents."""
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * Z_DIM,
        out_channels=Z_DIM,
        num_layers=2,
        attention_head_dim=32,
        num_attention_heads=2,
        joint_attention_dim=WIDTH,
        axes_dims_rope=(8, 12, 12),
    ).eval()


def build_vae() -> AutoencoderKLQwenImage:
    """Three 2x stages (8x spatial compression, as released) into 16 latent channels, 4 channels wide."""
    return AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=Z_DIM,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,
        temperal_downsample=[False, True, True],
    ).eval()


def save_processor(folder: Path, tokenizer: Qwen2Tokenizer) -> None:
    """The ``processor/`` folder as the release lays it out: the tokenizer's files and a Qwen2-VL
    ``preprocessor_config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    preprocessor = {
        "min_pixels": IMAGE_MIN_PIXELS,
        "max_pixels": IMAGE_MAX_PIXELS,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")


def build_qwen_edit_folder(root: Path) -> Path:
    """Build and save a tiny Qwen-Image-Edit folder under ``root``; return ``root / "qwen-image-edit"``.

    Deterministic: the weights come from ``torch.manual_seed(0)``, so the same call writes the same folder.
    The processor is written beside the pipeline's own components (``Qwen2VLProcessor`` itself cannot be built
    without torchvision, which it needs for videos only) and named in ``model_index.json`` as the release names it.
    """
    folder = Path(root) / FOLDER_NAME
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    pipe = QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=build_vae(),
        text_encoder=build_text_encoder(tokenizer),
        tokenizer=tokenizer,
        processor=None,
        transformer=build_transformer(),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    save_processor(folder / "processor", tokenizer)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
    return folder
