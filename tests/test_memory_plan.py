"""Memory plans from the weights' real sizes: meta-device builds of the published configs, plans for the cards
people rent, and the ``plan`` command.

The published sizes below are what the Hugging Face hub lists for each component's safetensors files (the sum of
their shards), divided by the bytes of the dtype they are stored in. Each is checked against the parameter count
of a meta-device build of the config in ``pipelines/published/`` (no weights, no memory).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from app.cli import main
from pipelines.memory_plan import GIB, RUNGS, ComponentSize, Geometry, WorkSize, plan_memory, weight_bytes
from pipelines.published import published, published_sizes
from pipelines.registry import any_backend_class, plan_backend
from projects.backends import memory_plan
from projects.errors import InvalidInput
from projects.studio import Studio

# (weights name, components summed, bytes listed on the hub, bytes per stored parameter, where)
PUBLISHED_SIZES = [
    (
        "sana-wm",
        ("text_encoder",),
        4.99e9 + 241e6,
        2,
        "huggingface.co/Efficient-Large-Model/Sana_1600M_512px_diffusers/tree/b840f59/text_encoder (the same "
        "Gemma-2-2B-it, bf16)",
    ),
    (
        "sana-wm-refiner",
        ("transformer", "connectors"),
        41e9,
        2,
        "the SANA-WM_bidirectional README: 'LTX-2 refiner (Stage 2) refiner/refiner.safetensors 41 GB', bf16",
    ),
    ("wan-i2v", ("transformer",), 57.2e9, 4, "huggingface.co/Wan-AI/Wan2.2-I2V-A14B/tree/main/high_noise_model"),
    ("wan-i2v", ("transformer_2",), 57.2e9, 4, "the same architecture as the high-noise expert"),
    ("wan-i2v", ("text_encoder",), 4.94e9 + 4.98e9 + 1.44e9, 2, "Wan2.2-I2V-A14B-Diffusers text_encoder shards"),
    ("wan-i2v", ("vae",), 508e6, 4, "Wan2.2-I2V-A14B-Diffusers vae (fp32)"),
    ("wan-vace", ("text_encoder",), 4.94e9 + 4.98e9 + 1.44e9, 2, "Wan2.1-VACE-1.3B-diffusers text_encoder shards"),
    ("wan-vace", ("vae",), 508e6, 4, "Wan2.1-VACE-1.3B-diffusers vae (fp32)"),
    ("wan-refiner", ("text_encoder",), 4.94e9 + 4.98e9 + 1.44e9, 2, "the UMT5-XXL every Wan 2.1 release carries"),
    ("wan-refiner", ("vae",), 508e6, 4, "the Wan 2.1 VAE every Wan 2.1 release carries (fp32)"),
    ("qwen-image-edit", ("transformer",), 40.9e9, 2, "Qwen-Image-Edit-2509 transformer shards (bf16)"),
    ("qwen-image-edit", ("text_encoder",), 4.97e9 + 4.99e9 + 4.93e9 + 1.69e9, 2, "Qwen2.5-VL-7B shards (bf16)"),
    ("qwen-image-edit", ("vae",), 254e6, 2, "Qwen-Image-Edit vae (bf16)"),
    ("flux2-klein", ("transformer",), 7.75e9, 2, "FLUX.2-klein-4B flux-2-klein-4b.safetensors (bf16)"),
    ("flux2-klein", ("text_encoder",), 4.97e9 + 3.08e9, 2, "FLUX.2-klein-4B text_encoder shards (Qwen3-4B, bf16)"),
    ("flux2-klein", ("vae",), 168e6, 2, "FLUX.2-klein-4B vae (bf16)"),
]
# Components whose published size is given only to one or two figures, checked to that precision rather than to
# 1%: SANA-WM's DiT ("2.6B"; "10 GB" in float32), its LTX-2 VAE, the refiner's Gemma-3-12B ("46 GB" in float32),
# VACE's DiT (7.15 GB stored in two dtypes, so no count follows from it; "1.3B" base plus VACE blocks) and the
# Wan 2.1 T2V 1.3B refiner ("1.3B").
ROUGHLY_PUBLISHED = {
    ("sana-wm", "transformer"): (2.6e9, 0.05),
    ("sana-wm", "vae"): (2.3e9 / 2, 0.07),  # "2.3 GB" in bf16 (a third party's listing; the README says "2 GB")
    ("sana-wm-refiner", "text_encoder"): (46e9 / 4, 0.07),
    ("wan-vace", "transformer"): (2.15e9, 0.01),  # 1.3B base and 0.73B of VACE blocks, per the conversion script
    ("wan-refiner", "transformer"): (1.3e9, 0.1),
}
CARDS = (12, 16, 24, 48, 80, 141)
PLANNED = [
    ("sana-wm", False),
    ("sana-wm", True),
    ("wan-i2v", False),
    ("wan-i2v", True),
    ("wan-vace", False),
    ("wan-vace", True),
    ("qwen-image-edit", False),
    ("flux2-klein", False),
]


def counts(name: str) -> dict[str, int]:
    return {size.name: size.parameters for size in published_sizes(name)}


@pytest.mark.parametrize(("name", "components", "listed", "per_parameter", "where"), PUBLISHED_SIZES)
def test_meta_builds_match_the_published_sizes(
    name: str, components: tuple[str, ...], listed: float, per_parameter: int, where: str
) -> None:
    built = sum(counts(name)[component] for component in components)
    published_parameters = listed / per_parameter
    assert abs(built - published_parameters) / published_parameters < 0.01, where


@pytest.mark.parametrize(("name", "component"), list(ROUGHLY_PUBLISHED))
def test_roughly_published_sizes_agree_to_their_precision(name: str, component: str) -> None:
    figure, tolerance = ROUGHLY_PUBLISHED[(name, component)]
    assert abs(counts(name)[component] - figure) / figure < tolerance


def test_every_published_network_is_checked() -> None:
    checked = {(name, c) for name, components, *_ in PUBLISHED_SIZES for c in components} | set(ROUGHLY_PUBLISHED)
    every = {(name, size.name) for name in _published_names() for size in published_sizes(name)}
    assert every == checked


def _published_names() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parents[1] / "pipelines" / "published").glob("*.json"))


def test_each_published_file_names_the_default_repository_and_its_sources() -> None:
    for name in _published_names():
        data = published(name)
        cls = any_backend_class(name) if name not in ("sana-wm-refiner", "wan-refiner") else None
        if cls is not None:
            assert data["repository"] == cls.default_source
        assert data["pipeline"] == data["model_index"]["_class_name"]
        for component, entry in data["components"].items():
            assert data["model_index"][component][1] == entry["class"]
            if "config" in entry:
                assert entry["sources"], f"{name}/{component} says where its config was read"


@pytest.mark.parametrize("name", ["sana-wm", "wan-i2v", "wan-vace", "qwen-image-edit", "flux2-klein"])
def test_each_backends_geometry_is_its_published_denoiser(name: str) -> None:
    config = published(name)["components"]["transformer"]["config"]
    hidden = config.get("hidden_size") or config["num_attention_heads"] * config["attention_head_dim"]
    geometry = any_backend_class(name).memory_geometry  # type: ignore[union-attr]
    assert geometry.hidden == hidden
    patch = config.get("patch_size")
    if isinstance(patch, list):
        assert tuple(patch) == geometry.patch


# Plans for the cards people rent.


def usable(card_gib: int) -> float:
    return (card_gib * GIB - 0.75 * GIB) * 0.94


@pytest.mark.parametrize(("name", "refiner"), PLANNED)
def test_plans_for_12_to_141_gb_cards_are_sensible(name: str, refiner: bool) -> None:
    plans = [plan_backend(name, vram=card * GIB, refiner=refiner) for card in CARDS]
    order = [rung.name for rung in RUNGS]
    for card, plan in zip(CARDS, plans, strict=True):
        assert plan.fits, f"{name} on {card} GB: {plan.reason}"
        # The first rung that fits is taken: every earlier one was tried and said why not.
        assert len(plan.rejected) == order.index(plan.rung)
        assert plan.card_peak - 0.75 * GIB <= usable(card)
        if plan.offload == "none":  # nothing resident that cannot fit
            resident = sum(p.weight_bytes for p in plan.placements) + max(p.work_bytes for p in plan.placements)
            assert resident <= usable(card)
        for placement in plan.placements:  # nothing quantized that fits in bf16
            if placement.quantization != "none":
                alone = weight_bytes(placement.component, "none") + placement.work_bytes
                assert alone > usable(card), f"{placement.component.label} fits in bf16 on {card} GB"
        assert (plan.refiner, plan.size) == (refiner, any_backend_class(name).plan_size)  # type: ignore[union-attr]
    # A bigger card never takes a later rung.
    ranks = [order.index(plan.rung) for plan in plans]
    assert ranks == sorted(ranks, reverse=True)
    # On the biggest card everything is resident in bf16.
    assert plans[-1].rung == "resident" and not plans[-1].quantization() and not plans[-1].quantization("refiner")


def test_what_the_big_models_need_is_named() -> None:
    wan = plan_backend("wan-i2v", vram=80 * GIB)
    assert wan.rung == "resident"
    assert 63 * GIB < sum(p.weight_bytes for p in wan.placements) < 65 * GIB  # two 14B experts and UMT5 in bf16
    assert plan_backend("wan-i2v", vram=48 * GIB).rung == "model offload"
    on_24 = plan_backend("wan-i2v", vram=24 * GIB)
    assert on_24.quantization() == {"transformer": "int8", "transformer_2": "int8"}
    assert "quantized because they do not fit alone in bf16: transformer int8, transformer_2 int8" in on_24.reason

    sana = plan_backend("sana-wm", vram=80 * GIB, refiner=True)
    assert {p.component.label for p in sana.placements} == {
        "transformer",
        "text_encoder",
        "vae",
        "refiner transformer",
        "refiner connectors",
        "refiner text_encoder",
    }
    # The refiner's Gemma-3-12B text encoder alone is over 20 GiB in bf16.
    gemma = next(p for p in sana.placements if p.component.label == "refiner text_encoder")
    assert gemma.weight_bytes > 20 * GIB
    assert plan_backend("sana-wm", vram=24 * GIB).rung == "resident"
    assert plan_backend("sana-wm", vram=24 * GIB, refiner=True).rung != "resident"


def test_the_vae_is_tiled_only_where_its_whole_decode_does_not_fit() -> None:
    big = plan_backend("sana-wm", vram=16 * GIB, size=WorkSize(1280, 704, 961))
    small = plan_backend("sana-wm", vram=80 * GIB, size=WorkSize(640, 384, 81))
    assert big.fits and big.vae_tiling and "the VAE decodes in tiles" in big.reason
    assert small.fits and not small.vae_tiling


def test_a_plan_that_cannot_fit_says_so_and_what_would() -> None:
    plan = plan_backend("sana-wm", vram=12 * GIB, ram=32 * GIB, refiner=True)
    assert not plan.fits and plan.rung is None and plan.offload is None
    assert plan.reason.startswith("no plan fits")
    assert len(plan.rejected) == len(RUNGS)
    assert any(s.startswith("the refiner off") for s in plan.suggestions)
    assert "does not fit" in plan.text() and "would fit:" in plan.text()

    tiny_card = plan_backend("wan-i2v", vram=4 * GIB)
    assert not tiny_card.fits
    assert any("GB card" in s for s in tiny_card.suggestions)


def test_host_ram_decides_between_offload_and_quantization() -> None:
    roomy = plan_backend("wan-i2v", vram=24 * GIB, ram=128 * GIB)
    short = plan_backend("wan-i2v", vram=24 * GIB, ram=32 * GIB)
    assert roomy.rung == "model offload, int8 where needed"
    assert short.rung == "model offload, NF4 on every large component"
    assert short.host_peak <= 32 * GIB < roomy.host_peak
    assert "host RAM cannot hold them in bf16" in short.reason


def test_the_planner_itself_on_made_up_components() -> None:
    geometry = Geometry(spatial=8, temporal=4, patch=(1, 2, 2), hidden=1024, guidance_batch=1)
    dit = ComponentSize("transformer", "backbone", "DiT", 10 * 10**9, 10**8, True, "config")
    encoder = ComponentSize("text_encoder", "backbone", "Encoder", 2 * 10**9, 5 * 10**7, True, "config")
    size = WorkSize(256, 256, 17)
    components = [dit, encoder]

    assert plan_memory("m", components, geometry, size, vram=40 * GIB).rung == "resident"
    assert plan_memory("m", components, geometry, size, vram=22 * GIB).rung == "model offload"
    assert plan_memory("m", components, geometry, size, vram=14 * GIB).quantization() == {"transformer": "int8"}
    assert plan_memory("m", components, geometry, size, vram=8 * GIB).quantization() == {"transformer": "nf4"}
    streamed = plan_memory("m", components, geometry, size, vram=3 * GIB)
    assert streamed.offload == "group-stream" and streamed.quantization() == {}
    # A quantization asked for by name is kept on every rung.
    fixed = plan_memory("m", components, geometry, size, vram=40 * GIB, fixed={"text_encoder": "nf4"})
    assert fixed.rung == "resident" and fixed.quantization() == {"text_encoder": "nf4"}
    with pytest.raises(ValueError, match="more than 0"):
        plan_memory("m", components, geometry, size, vram=0)


# Sizes from the weights on this machine, where they are here.


def test_weights_on_this_machine_are_measured_from_their_headers(
    studio: Studio, sana_wm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("CONTINUITY_MODELS", "CONTINUITY_MODEL_SANA_WM", "CONTINUITY_MODEL_SANA_WM_REFINER"):
        monkeypatch.delenv(variable, raising=False)
    before = memory_plan(studio, "sana-wm", vram_gib=24, refiner=True)
    assert {p.component.measured_from for p in before.placements} == {"config"}

    stage1 = studio.data_dir / "models" / "sana-wm"
    shutil.copytree(sana_wm_folder, stage1, ignore=shutil.ignore_patterns("refiner"))
    after = memory_plan(studio, "sana-wm", vram_gib=24, refiner=True)
    measured = {p.component.label: p.component for p in after.placements}
    assert measured["transformer"].measured_from == "weights"
    assert measured["transformer"].parameters < 10**8  # the tiny model, not the published one
    assert measured["refiner transformer"].measured_from == "config"  # not here: from its published config

    shutil.copytree(sana_wm_folder / "refiner", studio.data_dir / "models" / "sana-wm-refiner")
    both = memory_plan(studio, "sana-wm", vram_gib=24, refiner=True)
    assert {p.component.measured_from for p in both.placements} == {"weights"}
    assert "refiner vae" not in {p.component.label for p in both.placements}  # the refiner uses stage 1's VAE


# The command.


def run(capsys: pytest.CaptureFixture[str], data: Path, *argv: object) -> tuple[int, str, str]:
    code = main([*map(str, argv), "--data-dir", str(data)])
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_command_prints_the_plan_in_words_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTINUITY_MODELS", raising=False)
    code, out, _ = run(capsys, tmp_path, "plan", "wan-i2v", "--vram", 24, "--ram", 128)
    assert code == 0
    assert "wan-i2v on a 24.0 GiB card with 128.0 GiB of host RAM, 1280x720, 81 frame(s)" in out
    assert "plan: model offload, int8 where needed" in out
    assert "transformer_2" in out and "not chosen:" in out

    code, out, _ = run(capsys, tmp_path, "plan", "sana-wm", "--vram", 48, "--refiner", "--frames", 81, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["fits"] and shown["refiner"] and shown["size"] == {"width": 1280, "height": 704, "frames": 81}
    assert {c["stage"] for c in shown["components"]} == {"backbone", "refiner"}
    assert math.isclose(shown["card_gib"], 48.0)

    code, out, _ = run(capsys, tmp_path, "plan", "sana-wm", "--vram", 12, "--ram", 32, "--refiner", "--json")
    assert code == 1  # does not fit: said, with what would
    shown = json.loads(out)
    assert not shown["fits"] and shown["would_fit"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("plan", "animatic", "--vram", 24), "animatic has no weights"),
        (("plan", "nope", "--vram", 24), "must be one of"),
        (("plan", "sana-wm", "--vram", 0), "vram: must be a number of GiB above 0"),
        (("plan", "sana-wm", "--vram", "nan"), "vram: must be a number of GiB above 0"),
        (("plan", "sana-wm", "--vram", 24, "--ram", -1), "ram: must be a number of GiB above 0"),
        (("plan", "wan-vace", "--vram", 24, "--frames", 500), "renders 1 to 81 frame(s), not 500"),
        (("plan", "flux2-klein", "--vram", 24, "--frames", 2), "renders 1 to 1 frame(s), not 2"),
        (("plan", "wan-i2v", "--vram", 24, "--width", 9000), "renders sides of 16 to 1280 pixels"),
        (("plan", "wan-vace", "--vram", 24, "--refiner", "--width", 8), "renders sides of 16 to 1280 pixels"),
        (("plan", "flux2-klein", "--vram", 24, "--refiner"), "flux2-klein has no refiner"),
        (("plan", "sana-wm"), "this machine has no CUDA GPU: give the card's memory"),
    ],
)
def test_plan_command_refuses_bad_input_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[object, ...], message: str
) -> None:
    code, _out, err = run(capsys, tmp_path, *argv)
    assert code == 1
    assert message in err
    assert "Traceback" not in err


def test_memory_plan_names_the_field_of_bad_input(studio: Studio) -> None:
    with pytest.raises(InvalidInput) as refused:
        memory_plan(studio, "sana-wm", vram_gib=float("inf"))
    assert refused.value.field == "vram"


def test_auto_on_a_card_plans_the_backbone_with_the_refiner_beside_it(
    sana_wm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.loading import LoadSpec, PipelineCache
    from pipelines.sana_wm import SanaWMBackend

    monkeypatch.setattr("pipelines.diffusion.cuda_free_memory", lambda device: 24 * GIB)
    monkeypatch.setattr("pipelines.diffusion.host_free_memory", lambda: 64 * GIB)
    backend = SanaWMBackend(LoadSpec(source=str(sana_wm_folder)), cache=PipelineCache())
    settled = backend.settle()

    assert backend.plan is not None and backend.plan.fits
    assert {p.component.stage for p in backend.plan.placements} == {"backbone", "refiner"}
    assert (backend.plan.vram, backend.plan.ram, backend.plan.size) == (24 * GIB, 64 * GIB, SanaWMBackend.plan_size)
    assert (settled.device, settled.dtype, settled.offload) == ("cuda", "bfloat16", backend.plan.offload)
    assert backend.profile_reason == backend.plan.reason
    refiner = backend.refiner_spec()
    assert refiner.source == str(sana_wm_folder / "refiner")
    assert (refiner.device, refiner.dtype, refiner.offload) == (settled.device, settled.dtype, settled.offload)
    assert dict(refiner.quantization) == backend.plan.quantization("refiner")
