"""The prompt router: per tier of a route, a calibrated SDM verdict on whether the tier will
answer the prompt correctly, from the prompt alone (before anything is generated).

A router is a folder (``router build``): ``router.json`` (the encoder it reads, its tiers) and
one ``.sdmkitmodel`` per tier (class 1: the tier answers correctly), each an ordinary SDM
artifact, scored exactly as the answer verifier scores answers (``to_verdicts``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sdm_router.core.errors import ConfigurationError
from sdm_router.core.generation import Message
from sdm_router.core.verdict import Verdict
from sdm_router.verifier.encoder import HiddenStateEncoder, SharedModel
from sdm_router.verifier.recipe import layer_from_identity
from sdm_router.verifier.sdm import SDMModel
from sdm_router.verifier.sdm.errors import ArtifactError
from sdm_router.verifier.sdm_verifier import to_verdicts

F32Array = npt.NDArray[np.float32]
ROUTER_FILE = "router.json"
ROUTER_FORMAT = "sdm-router/prompt-router-v1"


def tier_artifact(tier: int) -> str:
    """The file name of tier ``tier``'s model inside a router folder."""
    return f"tier-{tier}.sdmkitmodel"


@dataclass(frozen=True, slots=True)
class PromptRouterModel:
    """A loaded router folder: its manifest and one SDM model per tier."""

    path: Path
    manifest: dict[str, Any]
    tiers: tuple[SDMModel, ...]

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> PromptRouterModel:
        """Load ``path``; a missing or malformed router is a ``ConfigurationError``."""
        try:
            manifest = json.loads((path / ROUTER_FILE).read_text(encoding="utf-8"))
            if manifest.get("format") != ROUTER_FORMAT:
                raise ValueError(f"format is {manifest.get('format')!r}, not {ROUTER_FORMAT!r}")
            tiers = tuple(
                SDMModel.load(path / str(tier["artifact"]), device=device)
                for tier in manifest["tiers"]
            )
        except (OSError, ValueError, KeyError, TypeError, ArtifactError) as error:
            raise ConfigurationError(f"cannot load the prompt router {path}: {error}") from error
        return cls(path, manifest, tiers)

    @property
    def identity(self) -> dict[str, str]:
        """The encoder identity the router was built with (pooling ``last+prompt``)."""
        return dict(self.manifest["encoder"])

    @property
    def router_id(self) -> str:
        """One id for the whole router: its tiers' artifact ids joined."""
        return "+".join(model.artifact_id for model in self.tiers)

    @property
    def calibrated_on(self) -> frozenset[str] | None:
        """The model identities the router learnt (None: every model)."""
        models = frozenset(str(entry["model"]) for entry in self.manifest.get("calibratedOn", []))
        return models or None

    def score(self, features: F32Array) -> list[tuple[Verdict, ...]]:
        """Per prompt row of ``features``, one verdict per tier."""
        per_tier = [to_verdicts(model.score(features), [0] * len(features)) for model in self.tiers]
        return [tuple(verdicts) for verdicts in zip(*per_tier, strict=True)]


class PromptRouter:
    """Scores prompts with a router folder. The encoder shares the verifier's model (and its
    thread) when ``shared`` is given; otherwise it loads ``encoder_model`` for itself."""

    def __init__(
        self,
        path: Path,
        shared: SharedModel | None,
        encoder_model: Path | None,
        device: str = "auto",
    ) -> None:
        self._path = path
        self._shared = shared
        self._encoder_model = encoder_model
        self._device = device
        self._model: PromptRouterModel | None = None
        self._encoder: HiddenStateEncoder | None = None
        self._lock = threading.Lock()  # one forward at a time on a model of its own
        try:
            manifest = json.loads((path / ROUTER_FILE).read_text(encoding="utf-8"))
            self._tiers = len(manifest["tiers"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigurationError(f"cannot read the prompt router {path}: {error}") from error

    @property
    def tiers(self) -> int:
        """How many tiers the router predicts for."""
        return self._tiers

    @property
    def router_id(self) -> str:
        """The loaded router's id ("" before ``start``)."""
        return "" if self._model is None else self._model.router_id

    @property
    def model(self) -> PromptRouterModel:
        """The loaded router (after ``start``)."""
        if self._model is None:
            raise ConfigurationError("the prompt router is not started")
        return self._model

    async def start(self) -> None:
        """Load the router and its encoder; refuse one built for another encoder."""
        model = await asyncio.to_thread(PromptRouterModel.load, self._path, self._device)
        layer = layer_from_identity(model.identity)
        if self._shared is not None:
            encoder = HiddenStateEncoder(self._shared.loaded, layer=layer, owner=self._shared)
        else:
            encoder = await asyncio.to_thread(
                HiddenStateEncoder.from_local, self._encoder_model, device=self._device, layer=layer
            )
        recorded = {key: value for key, value in model.identity.items() if key != "pooling"}
        actual = {key: value for key, value in encoder.identity.items() if key != "pooling"}
        if recorded != actual:
            raise ConfigurationError(
                f"prompt router {self._path} was built for encoder {recorded}, but the verifier's "
                f"encoder is {actual}; rebuild it (sdm-router router build)"
            )
        self._model, self._encoder = model, encoder

    def _predict(self, conversations: Sequence[Sequence[Message]]) -> list[tuple[Verdict, ...]]:
        assert self._encoder is not None
        with self._lock:
            features = self._encoder.encode_prompts(conversations)
        return self.model.score(features)

    async def predict(self, messages: Sequence[Message]) -> tuple[Verdict, ...]:
        """One verdict per tier for a conversation's prompt (one forward over the prompt)."""
        (verdicts,) = await asyncio.to_thread(self._predict, [messages])
        return verdicts
