"""The artifact registry: artifacts in a folder, a row each in the store's database with its
lineage and status, the record of the autopilot's steps, and leases.

Status (``ArtifactStatus``): ``candidate`` (built, not promoted: the gate refused it, or it is
about to be promoted), ``live`` (at most one: what every replica serves), ``retired`` (was
live, replaced by a newer promotion), ``rolled_back`` (was live, taken back after its
guarantee broke). Every change is one transaction, so two replicas acting at once (two
rollbacks of the same artifact) change it once.

The read side (``artifacts``, ``steps``) is what ``GET /admin/autopilot`` and the console show.
All methods are blocking: call them off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from sdm_router.storage.database import make_engine, migrate
from sdm_router.storage.tables import artifacts, autopilot_steps, leases


class ArtifactStatus(StrEnum):
    """Where an artifact is in its life (see the module)."""

    CANDIDATE = "candidate"
    LIVE = "live"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """One registered artifact."""

    id: str
    parent_id: str | None
    path: str
    created: float
    routes: tuple[str, ...]
    status: ArtifactStatus
    status_changed: float
    figures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.id,
            "parent_id": self.parent_id,
            "path": self.path,
            "created": self.created,
            "routes": list(self.routes),
            "status": self.status.value,
            "status_changed": self.status_changed,
            "figures": self.figures,
        }


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One recorded step of the autopilot (or a rollback): when, what, figures, decision."""

    id: int
    at: float
    step: str  # build | update | gate | promote | rollback | skip | error
    route: str | None
    artifact_id: str | None
    decision: str
    detail: str
    figures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.id,
            "at": self.at,
            "step": self.step,
            "route": self.route,
            "artifact_id": self.artifact_id,
            "decision": self.decision,
            "detail": self.detail,
            "figures": self.figures,
        }


def _artifact(row: Any) -> ArtifactRecord:
    return ArtifactRecord(
        id=row.id,
        parent_id=row.parent_id,
        path=row.path,
        created=row.created,
        routes=tuple(json.loads(row.routes)),
        status=ArtifactStatus(row.status),
        status_changed=row.status_changed,
        figures=json.loads(row.figures),
    )


def _step(row: Any) -> StepRecord:
    return StepRecord(
        id=row.id, at=row.at, step=row.step, route=row.route, artifact_id=row.artifact_id,
        decision=row.decision, detail=row.detail, figures=json.loads(row.figures),
    )  # fmt: skip


class ArtifactRegistry:
    """Registry, step record and leases over one database (see the module)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def connect(cls, url: str) -> ArtifactRegistry:
        """A registry on the database at ``url``, its schema brought up to date."""
        engine = make_engine(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        """Disconnect."""
        self._engine.dispose()

    # ---- artifacts ---------------------------------------------------------------------

    def register(
        self,
        artifact_id: str,
        path: str,
        *,
        parent_id: str | None,
        routes: tuple[str, ...],
        figures: dict[str, Any],
    ) -> ArtifactRecord:
        """Record a new artifact as a candidate (its figures: the gate's)."""
        now = time.time()
        with self._engine.begin() as connection:
            connection.execute(
                insert(artifacts).values(
                    id=artifact_id, parent_id=parent_id, path=path, created=now,
                    routes=json.dumps(list(routes)), status=ArtifactStatus.CANDIDATE.value,
                    status_changed=now, figures=json.dumps(figures),
                )
            )  # fmt: skip
        found = self.get(artifact_id)
        assert found is not None
        return found

    def get(self, artifact_id: str) -> ArtifactRecord | None:
        """The artifact ``artifact_id`` (None when not registered)."""
        with self._engine.connect() as connection:
            row = connection.execute(select(artifacts).where(artifacts.c.id == artifact_id)).first()
        return None if row is None else _artifact(row)

    def live(self) -> ArtifactRecord | None:
        """The live artifact (None: none promoted, or the last one was rolled back)."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(artifacts).where(artifacts.c.status == ArtifactStatus.LIVE.value)
            ).first()
        return None if row is None else _artifact(row)

    def artifacts(self, limit: int = 100) -> list[ArtifactRecord]:
        """The newest ``limit`` registered artifacts, newest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(artifacts).order_by(artifacts.c.created.desc()).limit(limit)
            ).all()
        return [_artifact(row) for row in rows]

    def promote(self, artifact_id: str) -> str | None:
        """Make ``artifact_id`` the live artifact; the one live before is retired. Returns the
        retired one's id (None when none was live)."""
        now = time.time()
        with self._engine.begin() as connection:
            before = connection.execute(
                select(artifacts.c.id).where(artifacts.c.status == ArtifactStatus.LIVE.value)
            ).scalar()
            connection.execute(
                update(artifacts)
                .where(artifacts.c.status == ArtifactStatus.LIVE.value)
                .values(status=ArtifactStatus.RETIRED.value, status_changed=now)
            )
            changed = connection.execute(
                update(artifacts)
                .where(artifacts.c.id == artifact_id)
                .values(status=ArtifactStatus.LIVE.value, status_changed=now)
            ).rowcount
            if changed != 1:
                raise KeyError(f"artifact {artifact_id!r} is not registered")
        return None if before is None or before == artifact_id else str(before)

    def roll_back(self, artifact_id: str) -> tuple[bool, ArtifactRecord | None]:
        """Take the live artifact ``artifact_id`` back: it becomes ``rolled_back`` and the one
        retired most recently (the previous live one) is live again. Returns (whether this call
        did it, the artifact live now: None means observe mode). A second call for the same
        artifact (another replica) changes nothing."""
        now = time.time()
        with self._engine.begin() as connection:
            taken = connection.execute(
                update(artifacts)
                .where(
                    (artifacts.c.id == artifact_id)
                    & (artifacts.c.status == ArtifactStatus.LIVE.value)
                )
                .values(status=ArtifactStatus.ROLLED_BACK.value, status_changed=now)
            ).rowcount
            if taken == 1:
                previous = connection.execute(
                    select(artifacts.c.id)
                    .where(artifacts.c.status == ArtifactStatus.RETIRED.value)
                    .order_by(artifacts.c.status_changed.desc(), artifacts.c.created.desc())
                    .limit(1)
                ).scalar()
                if previous is not None:
                    connection.execute(
                        update(artifacts)
                        .where(artifacts.c.id == previous)
                        .values(status=ArtifactStatus.LIVE.value, status_changed=now)
                    )
        return taken == 1, self.live()

    # ---- the autopilot's record --------------------------------------------------------

    def record_step(
        self,
        step: str,
        decision: str,
        detail: str,
        *,
        route: str | None = None,
        artifact_id: str | None = None,
        figures: dict[str, Any] | None = None,
    ) -> StepRecord:
        """Record one step; returns it."""
        at = time.time()
        values = {
            "at": at, "step": step, "route": route, "artifact_id": artifact_id,
            "decision": decision, "detail": detail, "figures": json.dumps(figures or {}),
        }  # fmt: skip
        with self._engine.begin() as connection:
            key = connection.execute(insert(autopilot_steps).values(**values)).inserted_primary_key
        assert key is not None
        return StepRecord(
            int(key[0]), at, step, route, artifact_id, decision, detail,
            figures or {},
        )  # fmt: skip

    def steps(self, limit: int = 100, after: int | None = None) -> list[StepRecord]:
        """The newest ``limit`` steps (with ``after``: only those recorded after that id),
        oldest first."""
        query = select(autopilot_steps).order_by(autopilot_steps.c.id.desc()).limit(limit)
        if after is not None:
            query = query.where(autopilot_steps.c.id > after)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_step(row) for row in reversed(rows)]

    # ---- leases ------------------------------------------------------------------------

    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl`` seconds: granted when free, expired, or
        already ``holder``'s. Atomic on both databases (a conditional update, else an insert
        that the primary key lets only one replica win)."""
        now = time.time()
        with self._engine.begin() as connection:
            renewed = connection.execute(
                update(leases)
                .where(
                    (leases.c.name == name)
                    & ((leases.c.holder == holder) | (leases.c.expires < now))
                )
                .values(holder=holder, expires=now + ttl)
            ).rowcount
        if renewed == 1:
            return True
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    insert(leases).values(name=name, holder=holder, expires=now + ttl)
                )
        except IntegrityError:
            return False
        return True

    def release(self, name: str, holder: str) -> None:
        """Give the lease up (when ``holder`` holds it)."""
        with self._engine.begin() as connection:
            connection.execute(
                update(leases)
                .where((leases.c.name == name) & (leases.c.holder == holder))
                .values(expires=0.0)
            )

    def holder(self, name: str) -> tuple[str, float] | None:
        """Who holds lease ``name`` until when (None: never taken)."""
        with self._engine.connect() as connection:
            row = connection.execute(select(leases).where(leases.c.name == name)).first()
        return None if row is None else (str(row.holder), float(row.expires))
