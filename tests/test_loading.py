"""pipelines.loading against real model folders: the tiny SANA-WM that conftest saves with ``save_pretrained``.

Folder checks run on copies that each test damages in one way; profiles are chosen for the real tiny folder and
for fabricated folders the size of the real models; torchao int8 and group offload load and render for real on
the CPU. bitsandbytes needs CUDA: its configs are checked here and its loads run only where a GPU is present
(tests marked ``cuda``). No test downloads: hub ids are looked up in an empty, offline Hugging Face cache.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.camera import parse_camera
from pipelines.diffusion import generator
from pipelines.loading import LoadSpec, PipelineCache, choose_profile, load_pipeline, quantization_config
from pipelines.model_folder import ComponentInfo, ModelError, ModelFolder, inspect_model_folder, resolve_source
from pipelines.sana_wm import intrinsics_for

GIB = 2**30
SIZE = 64
FRAMES = 9
STEPS = 2


# Fixtures and helpers.


@pytest.fixture
def sana_copy(sana_wm_folder: Path, tmp_path: Path) -> Path:
    """A copy of the tiny SANA-WM stage-1 folder (no refiner) that a test may damage."""
    return Path(shutil.copytree(sana_wm_folder, tmp_path / "sana-wm", ignore=shutil.ignore_patterns("refiner")))


@pytest.fixture(scope="module")
def tiny_model(sana_wm_folder: Path) -> ModelFolder:
    return inspect_model_folder(sana_wm_folder)


@pytest.fixture(scope="module")
def keyframe() -> Image.Image:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


def cpu_spec(folder: Path, **fields: Any) -> LoadSpec:
    return LoadSpec(source=str(folder), **({"dtype": "float32", "device": "cpu", "offload": "none"} | fields))


def render(pipe: Any, image: Image.Image, seed: int = 0) -> np.ndarray:
    """SANA-WM called the way pipelines/sana_wm.py calls it, at 64x64, 9 frames, 2 steps."""
    width, height = image.size
    out = pipe(
        image=image,
        prompt="a lighthouse on a cliff at dusk",
        negative_prompt="",
        action=parse_camera("static").to_action(FRAMES - 1),
        intrinsics=intrinsics_for(width, height),
        height=SIZE,
        width=SIZE,
        num_frames=FRAMES,
        fps=16,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        generator=generator(seed),
        output_type="np",
    )
    return np.asarray(out.frames)


def linear_weights(module: torch.nn.Module) -> dict[str, Any]:
    return {name: m.weight for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}


def big_model(**parameters: float) -> ModelFolder:
    """A model folder the size of a real release, built from its description (nothing on disk)."""
    libraries = {"transformer": "diffusers", "text_encoder": "transformers", "vae": "diffusers"}
    components = {
        # 40 blocks to a network, as the big DiTs and encoders have; a VAE streams whole.
        name: ComponentInfo(
            name, libraries.get(name, "diffusers"), name.title(), (), int(count), 0 if name == "vae" else count // 40
        )
        for name, count in ((n, int(c)) for n, c in parameters.items())
    }
    return ModelFolder(Path("/models/big"), "SanaWMPipeline", components)


@pytest.fixture
def sana_big() -> ModelFolder:
    """Roughly SANA-WM's proportions: 1.6B DiT, 2.6B Gemma-2 encoder, 0.3B VAE (18 GB in float32, 9 in bf16)."""
    return big_model(transformer=1.6e9, text_encoder=2.6e9, vae=0.3e9)


# inspect_model_folder


def test_inspect_reads_components_libraries_and_parameter_counts(sana_copy: Path) -> None:
    from diffusers import SanaWMTransformer3DModel

    model = inspect_model_folder(sana_copy)

    assert model.path == sana_copy
    assert model.pipeline_class == "SanaWMPipeline"
    assert set(model.components) == {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}
    libraries = {name: (c.library, c.class_name) for name, c in model.components.items()}
    assert libraries["transformer"] == ("diffusers", "SanaWMTransformer3DModel")
    assert libraries["text_encoder"] == ("transformers", "Gemma2Model")
    assert libraries["vae"] == ("diffusers", "AutoencoderKLLTX2Video")
    assert libraries["tokenizer"] == ("transformers", "GemmaTokenizer")
    for name in ("transformer", "text_encoder", "vae"):
        assert model.components[name].has_weights
        assert model.components[name].parameters > 0
        assert all(path.suffix == ".safetensors" for path in model.components[name].weight_files)
    for name in ("scheduler", "tokenizer"):
        assert not model.components[name].has_weights
        assert model.components[name].parameters == 0
    assert model.parameters == sum(c.parameters for c in model.components.values())

    transformer = SanaWMTransformer3DModel.from_pretrained(sana_copy / "transformer")
    assert model.components["transformer"].parameters == sum(t.numel() for t in transformer.state_dict().values())

    weights = sana_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    fingerprint = model.file_fingerprints()["transformer/diffusion_pytorch_model.safetensors"]
    assert fingerprint.startswith(f"size:{weights.stat().st_size} header:")
    # A file with the same size but another layout has another fingerprint.
    data = bytearray(weights.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    data[8:header_end] = bytes(data[8:header_end]).replace(b'"F32"', b'"I32"', 1)
    weights.write_bytes(bytes(data))
    assert inspect_model_folder(sana_copy).file_fingerprints()["transformer/diffusion_pytorch_model.safetensors"] != (
        fingerprint
    )
    assert model.bytes_at("float32") == 4 * model.parameters
    assert model.bytes_at("bfloat16") == 2 * model.parameters


def test_inspect_without_model_index(sana_copy: Path) -> None:
    (sana_copy / "model_index.json").unlink()
    with pytest.raises(ModelError, match=r"not a diffusers model folder: it has no model_index\.json"):
        inspect_model_folder(sana_copy)


@pytest.mark.parametrize("content", [b'{"_class_name": "SanaWMPipeline", ', b"\xff\xfe\x00", b"[1, 2]"])
def test_inspect_damaged_model_index(sana_copy: Path, content: bytes) -> None:
    (sana_copy / "model_index.json").write_bytes(content)
    with pytest.raises(ModelError, match=r"model_index\.json is damaged"):
        inspect_model_folder(sana_copy)


def test_inspect_refuses_pickled_weights(sana_copy: Path) -> None:
    transformer = sana_copy / "transformer"
    (transformer / "diffusion_pytorch_model.safetensors").unlink()
    torch.save({"proj.weight": torch.zeros(4, 4)}, transformer / "diffusion_pytorch_model.bin")

    with pytest.raises(ModelError) as caught:
        inspect_model_folder(sana_copy)

    message = str(caught.value)
    assert "pickled" in message
    assert "safetensors" in message
    assert "diffusion_pytorch_model.bin" in message


def test_inspect_truncated_safetensors(sana_copy: Path) -> None:
    weights = sana_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])

    with pytest.raises(ModelError) as caught:
        inspect_model_folder(sana_copy)

    message = str(caught.value)
    assert "damaged" in message
    assert "truncated" in message
    assert str(weights) in message
    assert "download it again" in message


def test_inspect_safetensors_header_claiming_more_than_the_file(sana_copy: Path) -> None:
    weights = sana_copy / "vae" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(struct.pack("<Q", 2**40) + data[8:])

    with pytest.raises(ModelError, match="damaged") as caught:
        inspect_model_folder(sana_copy)
    assert "header" in str(caught.value)


def test_inspect_file_shorter_than_a_header(sana_copy: Path) -> None:
    (sana_copy / "text_encoder" / "model.safetensors").write_bytes(b"abc")
    with pytest.raises(ModelError, match="damaged"):
        inspect_model_folder(sana_copy)


def test_inspect_safetensors_header_that_is_not_an_object(sana_copy: Path) -> None:
    header = b"[1, 2, 3]"
    (sana_copy / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header
    )
    with pytest.raises(ModelError, match="damaged"):
        inspect_model_folder(sana_copy)


def test_inspect_component_folder_deleted(sana_copy: Path) -> None:
    shutil.rmtree(sana_copy / "vae")
    with pytest.raises(ModelError, match=r"lists component 'vae' but has no vae/ folder"):
        inspect_model_folder(sana_copy)


def test_inspect_config_without_weights(sana_copy: Path) -> None:
    (sana_copy / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="has a config but no weights; the download is incomplete"):
        inspect_model_folder(sana_copy)


def test_inspect_empty_component_folder(sana_copy: Path) -> None:
    shutil.rmtree(sana_copy / "transformer")
    (sana_copy / "transformer").mkdir()
    with pytest.raises(ModelError, match="transformer"):
        inspect_model_folder(sana_copy)


# resolve_source


def test_resolve_existing_folder(sana_wm_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_source(str(sana_wm_folder)) == sana_wm_folder.resolve()
    monkeypatch.chdir(sana_wm_folder.parent)
    assert resolve_source("./sana-wm") == sana_wm_folder.resolve()


@pytest.mark.parametrize("source", ["./nope", "/abs/nope", "models/sana/nope"])
@pytest.mark.usefixtures("hf_offline")
def test_resolve_missing_folder(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="model folder not found") as caught:
        resolve_source(source)
    assert "hf download" not in str(caught.value)


def test_resolve_hub_id_not_in_cache(hf_offline: Path) -> None:
    with pytest.raises(ModelError) as caught:
        resolve_source("some-org/some-model")
    message = str(caught.value)
    assert "not in the Hugging Face cache" in message
    assert "`hf download some-org/some-model`" in message
    assert list(hf_offline.iterdir()) == []  # nothing was downloaded


def test_resolve_hub_id_found_in_cache(hf_offline: Path, sana_wm_folder: Path) -> None:
    """A hub id laid out in the cache as ``hf download`` leaves it resolves to its snapshot folder, offline."""
    repo = hf_offline / "models--some-org--tiny-sana"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(sana_wm_folder, repo / "snapshots" / commit, ignore=shutil.ignore_patterns("refiner"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)

    found = resolve_source("some-org/tiny-sana")

    assert found == repo / "snapshots" / commit
    assert inspect_model_folder(found).pipeline_class == "SanaWMPipeline"


# LoadSpec


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"dtype": "float64"}, "dtype must be one of"),
        ({"dtype": "fp16"}, "dtype must be one of"),
        ({"offload": "disk"}, "offload must be one of"),
        ({"device": "mps"}, "device must be one of"),
        ({"device": "cuda:x"}, "device must be one of"),
        ({"device": "cuda1"}, "device must be one of"),
        ({"quantization": (("transformer", "fp8"),)}, "quantization for transformer must be one of"),
        ({"source": ""}, "needs a model source"),
        ({"source": "   "}, "needs a model source"),
    ],
)
def test_load_spec_validation(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ModelError, match=words) as caught:
        LoadSpec(**({"source": "/models/sana-wm"} | fields))
    bad = next(iter(fields.values()))
    if isinstance(bad, str) and bad.strip():
        assert repr(bad) in str(caught.value)


def test_load_spec_is_hashable_and_quantization_order_insensitive() -> None:
    one = LoadSpec.create("/models/sana-wm", quantization={"transformer": "nf4", "text_encoder": "int8"})
    two = LoadSpec.create("/models/sana-wm", quantization={"text_encoder": "int8", "transformer": "nf4"})
    three = LoadSpec(source="/models/sana-wm", quantization=(("transformer", "nf4"), ("text_encoder", "int8")))

    assert one == two == three
    assert hash(one) == hash(two) == hash(three)
    assert len({one, two, three}) == 1
    assert one != LoadSpec.create("/models/sana-wm", quantization={"transformer": "nf4", "text_encoder": "nf4"})
    assert one.quant_for("transformer") == "nf4"
    assert one.quant_for("vae") == "none"
    assert not one.settled
    assert LoadSpec("/m", dtype="float32", offload="none", device="cpu").settled
    assert one.to_json()["quantization"] == {"text_encoder": "int8", "transformer": "nf4"}
    with pytest.raises(AttributeError):
        one.dtype = "float32"  # type: ignore[misc]


# choose_profile


def test_profile_without_gpu_small_model(tiny_model: ModelFolder) -> None:
    profile = choose_profile(LoadSpec(source=str(tiny_model.path)), tiny_model, free_vram=None)

    assert (profile.spec.device, profile.spec.dtype, profile.spec.offload) == ("cpu", "float32", "none")
    assert profile.spec.quantization == ()
    assert profile.spec.settled
    assert "no CUDA GPU" in profile.reason
    assert "torchao" not in profile.reason


def test_profile_without_gpu_big_model_uses_torchao(sana_big: ModelFolder) -> None:
    assert sana_big.bytes_at("float32") > 8 * GIB

    profile = choose_profile(LoadSpec(source="/models/big"), sana_big, free_vram=None)

    assert (profile.spec.device, profile.spec.dtype, profile.spec.offload) == ("cpu", "float32", "none")
    assert dict(profile.spec.quantization) == {"transformer": "torchao-int8", "text_encoder": "torchao-int8"}
    assert profile.spec.quant_for("vae") == "none"
    assert "no CUDA GPU" in profile.reason
    assert "torchao int8" in profile.reason


def test_profile_with_plenty_of_vram(sana_big: ModelFolder, tiny_model: ModelFolder) -> None:
    for model in (sana_big, tiny_model):
        profile = choose_profile(LoadSpec(source=str(model.path)), model, free_vram=80 * GIB)
        assert (profile.spec.device, profile.spec.dtype, profile.spec.offload) == ("cuda", "bfloat16", "none")
        assert profile.spec.quantization == ()
        assert "all resident" in profile.reason
        assert profile.plan is not None and profile.plan.rung == "resident"


def test_profile_with_8_gib_offloads_by_model_before_quantizing(sana_big: ModelFolder) -> None:
    assert sana_big.bytes_at("bfloat16") > 8 * GIB  # bf16 does not fit all at once

    profile = choose_profile(LoadSpec(source="/models/big"), sana_big, free_vram=8 * GIB)

    assert (profile.spec.device, profile.spec.dtype, profile.spec.offload) == ("cuda", "bfloat16", "model")
    assert profile.spec.quantization == ()  # each component fits alone in bf16: nothing is quantized
    assert "fits alone" in profile.reason


def test_profile_quantizes_only_what_does_not_fit_alone() -> None:
    # A 12B DiT beside a 2.6B encoder on 16 GiB: the DiT is int8, the encoder stays bf16.
    model = big_model(transformer=12e9, text_encoder=2.6e9, vae=0.3e9)

    profile = choose_profile(LoadSpec(source="/m"), model, free_vram=16 * GIB)

    assert profile.spec.offload == "model"
    assert dict(profile.spec.quantization) == {"transformer": "int8"}
    assert "quantized because they do not fit alone in bf16: transformer int8" in profile.reason

    # On 10 GiB int8 is too big too: NF4.
    profile = choose_profile(LoadSpec(source="/m"), model, free_vram=10 * GIB)
    assert dict(profile.spec.quantization) == {"transformer": "nf4"}


def test_profile_streams_blocks_when_even_nf4_does_not_fit_alone() -> None:
    huge = big_model(transformer=30e9, text_encoder=2.6e9, vae=0.3e9)

    profile = choose_profile(LoadSpec(source="/m"), huge, free_vram=12 * GIB)

    assert profile.spec.offload == "group-stream"
    assert profile.spec.quantization == ()
    assert "blocks are streamed" in profile.reason


def test_profile_refuses_a_card_nothing_fits_and_says_what_would(sana_big: ModelFolder) -> None:
    refused = r"does not fit this GPU \(no plan fits: needs .* on a 1.0 GiB card\)\. What would: .*a \d+ GB card"
    with pytest.raises(ModelError, match=refused):
        choose_profile(LoadSpec(source="/models/big"), sana_big, free_vram=1 * GIB)


def test_profile_counts_host_ram() -> None:
    model = big_model(transformer=14e9, text_encoder=5.7e9, vae=0.1e9)

    roomy = choose_profile(LoadSpec(source="/m"), model, free_vram=24 * GIB, free_ram=128 * GIB)
    short = choose_profile(LoadSpec(source="/m"), model, free_vram=24 * GIB, free_ram=24 * GIB)

    assert dict(roomy.spec.quantization) == {"transformer": "int8"}
    assert dict(short.spec.quantization) == {"transformer": "nf4", "text_encoder": "nf4"}
    assert "host RAM cannot hold them in bf16" in short.reason


def test_profile_keeps_explicit_settings(sana_big: ModelFolder) -> None:
    spec = LoadSpec.create(
        "/models/big", dtype="float16", offload="group", device="cuda", quantization={"transformer": "int8"}
    )
    for free in (1 * GIB, 80 * GIB):
        profile = choose_profile(spec, sana_big, free_vram=free)
        assert profile.spec == spec
        assert "offload group as asked" in profile.reason

    # An explicit quantization is not widened to the text encoder, and is used to decide what fits.
    only_dit = LoadSpec.create("/models/big", quantization={"transformer": "int8"})
    profile = choose_profile(only_dit, sana_big, free_vram=10 * GIB)
    assert dict(profile.spec.quantization) == {"transformer": "int8"}
    assert profile.spec.offload == "model"
    profile = choose_profile(only_dit, sana_big, free_vram=24 * GIB)
    assert (dict(profile.spec.quantization), profile.spec.offload) == ({"transformer": "int8"}, "none")

    # On the CPU an explicit dtype and quantization are kept too (no torchao added).
    cpu = LoadSpec.create("/models/big", dtype="bfloat16", quantization={"text_encoder": "torchao-int8"})
    profile = choose_profile(cpu, sana_big, free_vram=None)
    assert (profile.spec.device, profile.spec.dtype) == ("cpu", "bfloat16")
    assert dict(profile.spec.quantization) == {"text_encoder": "torchao-int8"}


def test_profile_cuda_asked_without_gpu(tiny_model: ModelFolder) -> None:
    with pytest.raises(ModelError, match="asks for CUDA but this machine has no CUDA GPU"):
        choose_profile(LoadSpec(source=str(tiny_model.path), device="cuda"), tiny_model, free_vram=None)


def test_profile_keeps_the_gpu_it_was_given(sana_big: ModelFolder) -> None:
    """A worker on the second GPU loads there: the settled spec names it, and it is still a CUDA profile."""
    profile = choose_profile(LoadSpec(source="/models/big", device="cuda:1"), sana_big, free_vram=80 * GIB)
    assert (profile.spec.device, profile.spec.dtype) == ("cuda:1", "bfloat16") and profile.spec.settled
    with pytest.raises(ModelError, match="asks for CUDA"):
        choose_profile(LoadSpec(source="/models/big", device="cuda:1"), sana_big, free_vram=None)


def test_profile_cpu_asked_on_a_gpu_machine(sana_big: ModelFolder) -> None:
    profile = choose_profile(LoadSpec(source="/models/big", device="cpu"), sana_big, free_vram=80 * GIB)
    assert (profile.spec.device, profile.spec.dtype) == ("cpu", "float32")


# quantization_config


@pytest.mark.parametrize(("dtype", "compute"), [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_quantization_config_nf4(tiny_model: ModelFolder, dtype: str, compute: torch.dtype) -> None:
    import diffusers
    import transformers
    from diffusers import PipelineQuantizationConfig

    both = {"transformer": "nf4", "text_encoder": "nf4"}
    spec = LoadSpec.create(tiny_model.path, dtype=dtype, device="cuda", offload="none", quantization=both)
    config = quantization_config(spec, tiny_model)

    assert isinstance(config, PipelineQuantizationConfig)
    assert set(config.quant_mapping) == {"transformer", "text_encoder"}
    dit, encoder = config.quant_mapping["transformer"], config.quant_mapping["text_encoder"]
    assert isinstance(dit, diffusers.BitsAndBytesConfig)
    assert isinstance(encoder, transformers.BitsAndBytesConfig)  # Gemma-2 is a transformers model
    assert not isinstance(encoder, diffusers.BitsAndBytesConfig)
    for bnb in (dit, encoder):
        assert bnb.load_in_4bit
        assert not bnb.load_in_8bit
        assert bnb.bnb_4bit_quant_type == "nf4"
        assert bnb.bnb_4bit_compute_dtype == compute
        assert bnb.bnb_4bit_use_double_quant


def test_quantization_config_int8(tiny_model: ModelFolder) -> None:
    import diffusers
    import transformers

    spec = LoadSpec.create(tiny_model.path, quantization={"transformer": "int8", "text_encoder": "int8"})
    mapping = quantization_config(spec, tiny_model).quant_mapping

    assert isinstance(mapping["transformer"], diffusers.BitsAndBytesConfig)
    assert isinstance(mapping["text_encoder"], transformers.BitsAndBytesConfig)
    for bnb in mapping.values():
        assert bnb.load_in_8bit
        assert not bnb.load_in_4bit


def test_quantization_config_torchao(tiny_model: ModelFolder) -> None:
    import diffusers
    import transformers
    from torchao.quantization import Int8WeightOnlyConfig

    both = {"transformer": "torchao-int8", "text_encoder": "torchao-int8"}
    spec = LoadSpec.create(tiny_model.path, quantization=both)
    mapping = quantization_config(spec, tiny_model).quant_mapping

    assert isinstance(mapping["transformer"], diffusers.TorchAoConfig)
    assert isinstance(mapping["text_encoder"], transformers.TorchAoConfig)
    for config in mapping.values():
        assert isinstance(config.quant_type, Int8WeightOnlyConfig)


def test_quantization_config_none(tiny_model: ModelFolder) -> None:
    assert quantization_config(LoadSpec(source=str(tiny_model.path)), tiny_model) is None
    spec = LoadSpec.create(tiny_model.path, quantization={"transformer": "none"})
    assert quantization_config(spec, tiny_model) is None


def test_quantization_config_unknown_component(tiny_model: ModelFolder) -> None:
    spec = LoadSpec.create(tiny_model.path, quantization={"unet": "nf4", "transformer": "nf4"})
    with pytest.raises(ModelError, match="cannot quantize unet") as caught:
        quantization_config(spec, tiny_model)
    assert "transformer" in str(caught.value)  # it names what the model does have


@pytest.mark.parametrize("component", ["tokenizer", "scheduler"])
def test_quantization_config_component_without_weights(tiny_model: ModelFolder, component: str) -> None:
    spec = LoadSpec.create(tiny_model.path, quantization={component: "nf4"})
    with pytest.raises(ModelError, match=component):
        quantization_config(spec, tiny_model)


# load_pipeline on the CPU


@pytest.mark.parametrize("scheme", ["nf4", "int8"])
def test_load_bitsandbytes_on_cpu_refused_before_loading(sana_wm_folder: Path, scheme: str) -> None:
    from diffusers import SanaWMPipeline

    spec = cpu_spec(sana_wm_folder, quantization=(("transformer", scheme),))
    with pytest.raises(ModelError, match="needs a CUDA GPU") as caught:
        load_pipeline(SanaWMPipeline, spec)
    # Refused by the spec check, not by diffusers half-way through a load ("could not load ...").
    assert "could not load" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert "torchao-int8" in str(caught.value)


@pytest.mark.parametrize("offload", ["model", "group-stream", "sequential"])
def test_load_gpu_offloads_on_cpu_refused(sana_wm_folder: Path, offload: str) -> None:
    from diffusers import SanaWMPipeline

    with pytest.raises(ModelError, match=f"offload '{offload}' needs a CUDA GPU"):
        load_pipeline(SanaWMPipeline, cpu_spec(sana_wm_folder, offload=offload))


def test_load_unsettled_spec_refused(sana_wm_folder: Path) -> None:
    from diffusers import SanaWMPipeline

    with pytest.raises(ModelError, match="choose_profile"):
        load_pipeline(SanaWMPipeline, LoadSpec(source=str(sana_wm_folder)))


def test_load_damaged_folder_refused_by_inspection(sana_copy: Path) -> None:
    from diffusers import SanaWMPipeline

    weights = sana_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="damaged"):
        load_pipeline(SanaWMPipeline, cpu_spec(sana_copy))


@pytest.fixture(scope="module")
def fp32_pipe(sana_wm_folder: Path) -> Iterator[Any]:
    from diffusers import SanaWMPipeline

    yield load_pipeline(SanaWMPipeline, cpu_spec(sana_wm_folder))


@pytest.fixture(scope="module")
def fp32_frames(fp32_pipe: Any, keyframe: Image.Image) -> np.ndarray:
    return render(fp32_pipe, keyframe, seed=0)


def test_torchao_int8_weight_only_load_and_render(
    sana_wm_folder: Path, keyframe: Image.Image, fp32_frames: np.ndarray
) -> None:
    from diffusers import SanaWMPipeline

    spec = cpu_spec(sana_wm_folder, quantization=(("transformer", "torchao-int8"),))
    pipe = load_pipeline(SanaWMPipeline, spec)

    weights = linear_weights(pipe.transformer)
    assert len(weights) >= 20
    for name, weight in weights.items():
        assert "Int8" in type(weight).__name__, name
        assert weight.qdata.dtype == torch.int8, name
    # Only the transformer was named: the text encoder stays plain float32.
    encoder_weights = linear_weights(pipe.text_encoder)
    assert encoder_weights
    assert all(type(w) is torch.nn.Parameter and w.dtype == torch.float32 for w in encoder_weights.values())

    frames = render(pipe, keyframe, seed=0)
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert np.isfinite(frames).all()
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    # The same seed, with weights rounded to int8: close to the float32 render but not the same numbers.
    assert not np.array_equal(frames, fp32_frames)
    assert np.abs(frames - fp32_frames).mean() < 0.1


def test_group_offload_on_cpu_matches_resident(
    sana_wm_folder: Path, keyframe: Image.Image, fp32_pipe: Any, fp32_frames: np.ndarray
) -> None:
    from diffusers import SanaWMPipeline
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    grouped = load_pipeline(SanaWMPipeline, cpu_spec(sana_wm_folder, offload="group"))

    assert _is_group_offload_enabled(grouped.transformer)
    assert _is_group_offload_enabled(grouped.vae)
    assert not _is_group_offload_enabled(fp32_pipe.transformer)
    frames = render(grouped, keyframe, seed=0)
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    np.testing.assert_array_equal(frames, fp32_frames)


# PipelineCache


def test_cache_loads_once_per_spec() -> None:
    cache = PipelineCache(capacity=1)
    spec = LoadSpec.create("/models/a", quantization={"transformer": "nf4", "text_encoder": "nf4"})
    same = LoadSpec.create("/models/a", quantization={"text_encoder": "nf4", "transformer": "nf4"})

    first = cache.get("sana-wm", spec, lambda: object())
    second = cache.get("sana-wm", same, lambda: object())

    assert second is first
    assert cache.loads == 1
    assert ("sana-wm", spec) in cache
    other_kind = cache.get("wan-i2v", spec, lambda: object())
    assert other_kind is not first
    assert cache.loads == 2


def test_cache_evicts_least_recently_used_past_capacity() -> None:
    one, two, three = (LoadSpec(source=f"/models/{n}") for n in ("one", "two", "three"))
    single = PipelineCache(capacity=1)
    single.get("k", one, lambda: "pipe one")
    assert single.get("k", two, lambda: "pipe two") == "pipe two"
    assert ("k", one) not in single
    assert ("k", two) in single
    assert single.get("k", one, lambda: "pipe one again") == "pipe one again"
    assert single.loads == 3

    pair = PipelineCache(capacity=2)
    pair.get("k", one, lambda: 1)
    pair.get("k", two, lambda: 2)
    pair.get("k", one, lambda: -1)  # touch one: two is now the least recently used
    pair.get("k", three, lambda: 3)
    assert ("k", one) in pair and ("k", three) in pair
    assert ("k", two) not in pair
    assert pair.loads == 3


def test_cache_unload() -> None:
    cache = PipelineCache(capacity=3)
    a, b = LoadSpec(source="/models/a"), LoadSpec(source="/models/b")
    cache.get("sana-wm", a, lambda: "a")
    cache.get("wan-i2v", b, lambda: "b")

    assert cache.unload("sana-wm") == 1
    assert ("sana-wm", a) not in cache
    assert ("wan-i2v", b) in cache
    assert cache.unload() == 1
    assert ("wan-i2v", b) not in cache
    assert cache.unload() == 0
    assert cache.get("wan-i2v", b, lambda: "b again") == "b again"
    assert cache.loads == 3


def test_cache_loader_failure_does_not_poison() -> None:
    cache = PipelineCache(capacity=1)
    spec = LoadSpec(source="/models/a")

    def broken() -> Any:
        raise ModelError("the weights are damaged")

    with pytest.raises(ModelError, match="damaged"):
        cache.get("sana-wm", spec, broken)
    assert ("sana-wm", spec) not in cache
    assert cache.loads == 0
    assert cache.get("sana-wm", spec, lambda: "loaded") == "loaded"
    assert cache.loads == 1


# CUDA (skipped without a GPU; run on a GPU machine)


def _bnb_linear_count(module: torch.nn.Module, kind: str) -> int:
    import bitsandbytes as bnb

    cls = {"4bit": bnb.nn.Linear4bit, "8bit": bnb.nn.Linear8bitLt}[kind]
    return sum(isinstance(m, cls) for m in module.modules())


@pytest.mark.cuda
@pytest.mark.parametrize(("scheme", "kind"), [("nf4", "4bit"), ("int8", "8bit")])
def test_cuda_bitsandbytes_load_and_render(
    sana_wm_folder: Path, keyframe: Image.Image, scheme: str, kind: str
) -> None:
    from diffusers import SanaWMPipeline

    spec = LoadSpec.create(
        sana_wm_folder,
        dtype="bfloat16",
        device="cuda",
        offload="none",
        quantization={"transformer": scheme, "text_encoder": scheme},
    )
    pipe = load_pipeline(SanaWMPipeline, spec)
    try:
        assert _bnb_linear_count(pipe.transformer, kind) >= 10
        assert _bnb_linear_count(pipe.text_encoder, kind) >= 4
        assert next(pipe.transformer.parameters()).device.type == "cuda"
        frames = render(pipe, keyframe, seed=0)
        assert frames.shape == (FRAMES, SIZE, SIZE, 3)
        assert np.isfinite(frames).all()
    finally:
        del pipe
        torch.cuda.empty_cache()


@pytest.mark.cuda
def test_cuda_group_stream_offload_renders(sana_wm_folder: Path, keyframe: Image.Image) -> None:
    from diffusers import SanaWMPipeline

    spec = LoadSpec.create(sana_wm_folder, dtype="bfloat16", device="cuda", offload="group-stream")
    pipe = load_pipeline(SanaWMPipeline, spec)
    try:
        assert next(pipe.transformer.parameters()).device.type == "cpu"  # parked on the CPU between uses
        frames = render(pipe, keyframe, seed=0)
        assert frames.shape == (FRAMES, SIZE, SIZE, 3)
        assert np.isfinite(frames).all()
    finally:
        del pipe
        torch.cuda.empty_cache()
