"""The generator bundle: DiT + prompt encoder + tokenizer + sampling defaults, saved as one folder.

A checkpoint folder holds `config.json` (model hyper-parameters, vocabulary, frame size, flow shift,
training record) and `model.safetensors`. `load_builtin()` loads the model shipped in
`streamrt.assets/gen`. Does not know caches or schedules (the engine in streamrt.gen applies them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import torch
from streamrt.models.gen.dit import AttentionContext, CausalVideoDiT, GenModelConfig
from streamrt.models.gen.text import PromptEncoder, Tokenizer
from torch import Tensor, nn


class GenCheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded (`code` E_GEN_CHECKPOINT)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"E_GEN_CHECKPOINT: {message}")
        self.code = "E_GEN_CHECKPOINT"


@dataclass(frozen=True, slots=True)
class GenSpec:
    """What a checkpoint says about itself besides its weights."""

    model: GenModelConfig
    vocab: tuple[str, ...]
    height: int = 64
    """Frame height the model was trained at."""
    width: int = 64
    shift: float = 3.0
    """Flow-matching timestep shift used in training and sampling."""
    train: dict[str, object] = field(default_factory=dict)
    """Training record (command, seed, steps, wall time, loss)."""
    guidance: float = 1.0
    """Classifier-free guidance scale the model samples with by default (1 = none; more needs a model
    trained with prompt dropout). Chosen by measurement after training, not by the training run."""
    prompt_switch: str = "recache"
    """How a prompt switch treats the cache by default for this model: "recache" (the kept frames are
    re-encoded under the new prompt) or "hard_cut" (for a model that keeps drawing what its cache shows
    instead of following the new prompt). Chosen by measurement, like `guidance`."""
    sampler: str = "euler"
    """The denoise step the model samples with by default ("euler" or "renoise", see
    `GenEngineConfig.sampler`). Chosen by measurement, like `guidance`."""


class GenModel(nn.Module):
    """Prompt ids -> token states; (frames, per-frame t, token states, context) -> predicted clean frames."""

    def __init__(self, spec: GenSpec) -> None:
        super().__init__()
        m = spec.model
        self.spec = spec
        self.tokenizer = Tokenizer(spec.vocab, m.text_len)
        self.text = PromptEncoder(len(spec.vocab), m.text_len, m.dim, m.heads, m.text_layers)
        self.dit = CausalVideoDiT(m)

    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """prompts -> [B, L, dim]."""
        dev = next(self.parameters()).device
        return self.text(self.tokenizer.encode(prompts).to(dev))

    def encode_null(self, batch: int = 1) -> Tensor:
        """The empty prompt (every token padding): [B, L, dim]. Trained as the unconditional input
        when training drops prompts (`GenTrainConfig.prompt_dropout`); guidance contrasts it."""
        dev = next(self.parameters()).device
        return self.text(torch.zeros(batch, self.spec.model.text_len, dtype=torch.long, device=dev))

    def forward(self, x: Tensor, t: Tensor, text: Tensor, ctx: AttentionContext) -> Tensor:
        return self.dit(x, t, text, ctx)

    def write_kv(self, x: Tensor, t: Tensor, text: Tensor, ctx: AttentionContext) -> None:
        """`forward` for its K/V writes only (a clean commit pass; see CausalVideoDiT.write_kv)."""
        self.dit.write_kv(x, t, text, ctx)

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        s = self.spec
        cfg = {"model": s.model.to_dict(), "vocab": list(s.vocab), "height": s.height, "width": s.width}
        cfg |= {"shift": s.shift, "guidance": s.guidance, "prompt_switch": s.prompt_switch}
        cfg |= {"sampler": s.sampler, "train": s.train}
        (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(
            {k: v.detach().contiguous() for k, v in self.state_dict().items()},
            str(folder / "model.safetensors"),
        )

    @staticmethod
    def load(folder: str | Path) -> GenModel:
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
        if not cfg_path.is_file() or not w_path.is_file():
            raise GenCheckpointError(f"{folder} needs config.json and model.safetensors")
        try:
            d = json.loads(cfg_path.read_text())
            known = {f.name for f in fields(GenModelConfig)}
            spec = GenSpec(
                model=GenModelConfig(**{k: v for k, v in d["model"].items() if k in known}),
                vocab=tuple(d["vocab"]),
                height=int(d["height"]),
                width=int(d["width"]),
                shift=float(d["shift"]),
                guidance=float(d.get("guidance", 1.0)),
                prompt_switch=str(d.get("prompt_switch", "recache")),
                sampler=str(d.get("sampler", "euler")),
                train=dict(d.get("train", {})),
            )
            if spec.prompt_switch not in ("recache", "hard_cut"):
                raise ValueError(f"prompt_switch {spec.prompt_switch!r} is not recache or hard_cut")
            if spec.sampler not in ("euler", "renoise"):
                raise ValueError(f"sampler {spec.sampler!r} is not euler or renoise")
        except (KeyError, TypeError, ValueError) as e:
            raise GenCheckpointError(f"{cfg_path}: {e}") from e
        model = GenModel(spec)
        missing, unexpected = model.load_state_dict(load_file(str(w_path)), strict=False)
        if missing or unexpected:
            raise GenCheckpointError(f"{w_path}: missing {missing[:4]}, unexpected {unexpected[:4]}")
        return model.eval()


def builtin_path() -> Path:
    return Path(str(resources.files("streamrt.assets") / "gen"))


def load_builtin() -> GenModel:
    """The model trained by `streamrt train gen` and shipped in streamrt.assets/gen."""
    return GenModel.load(builtin_path())
