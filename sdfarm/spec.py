"""RenderSpec: every parameter that determines one image's pixels, and its key.

Pure: imports only the standard library, so planning never touches torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

#: Bumped when the meaning of a parameter changes, so old keys stop matching new renders.
KEY_VERSION = 1


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """One image. Two specs with the same :attr:`key` render the same pixels."""

    model: str
    prompt: str
    seed: int
    negative_prompt: str = ""
    sampler: str = "Euler a"
    steps: int = 20
    cfg: float = 7.0
    width: int = 512
    height: int = 512
    clip_skip: int = 1
    #: A1111 short hash of the weights; ``None`` while the weights are not on this machine.
    model_hash: str | None = None

    @property
    def key(self) -> str:
        """Hash of exactly the pixel-determining parameters.

        The model enters by its hash when known (two paths to one file are one model), by its
        reference otherwise.
        """
        model_identity = f"hash:{self.model_hash}" if self.model_hash else f"ref:{self.model}"
        payload = [
            KEY_VERSION,
            model_identity,
            self.prompt,
            self.negative_prompt,
            self.seed,
            self.sampler,
            self.steps,
            float(self.cfg),
            self.width,
            self.height,
            self.clip_skip,
        ]
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    @property
    def batch_group(self) -> tuple:
        """What a forward pass shares: everything but prompt and seed."""
        return (
            self.model,
            self.model_hash,
            self.width,
            self.height,
            self.sampler,
            self.steps,
            float(self.cfg),
            self.clip_skip,
            self.negative_prompt,
        )

    def replace(self, **changes: object) -> RenderSpec:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


#: The fields a user may set on a spec (job file keys, ``rerun --set``), in display order.
SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RenderSpec))
