"""A run's output folder: its manifest, its lock, and the files Condor writes at its top.

The step stores inside it (``stages/<step>/``) are :mod:`condor.run.store`'s; :meth:`RunDirectory.stage`
hands one out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condor.run.files import RunStoreError, atomic_write_text
from condor.run.store import StageStore

if TYPE_CHECKING:
    from condor.run.lock import RunLock

__all__ = ["LOCK_FILE", "OUTPUT_NAMES", "OWN_NAMES", "RUN_FORMAT", "RunDirectory"]

RUN_FORMAT = "condor-run v1"
LOCK_FILE = ".lock"
#: The datasets Condor writes at the top of a run directory. One of these in a directory without a
#: manifest belongs to someone else (a dataset copied there, another tool's output): not written over.
OUTPUT_NAMES = frozenset({"output.jsonl", "sft.jsonl", "void.jsonl", "preference.jsonl", "rejected.jsonl"})
#: Everything Condor writes at the top of a run directory: never read as an input of the same run.
OWN_NAMES = OUTPUT_NAMES | {"manifest.json", "plan.jsonl", "stages", "inputs", "exports"}


def parse_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, checked: JSON, an object, this run format; ``stages`` always present."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunStoreError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise RunStoreError(f"{path}: cannot read ({exc}); use a new output directory") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise RunStoreError(f"{path}: run format {found!r}, expected {RUN_FORMAT!r}; use a new output directory")
    data.setdefault("stages", {})
    return data


class RunDirectory:
    """A run's output folder and its manifest.

    A directory without a manifest that already holds one of the files Condor writes (say an
    ``sft.jsonl`` copied there) is refused unless ``force``: it is someone else's data.
    """

    def __init__(self, root: str | Path, *, force: bool = False) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        if self.root.exists() and not self.root.is_dir():
            raise RunStoreError(f"{self.root} is a file, not a run directory; choose another --output")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunStoreError(f"cannot create the run directory {self.root} ({exc.strerror or exc})") from None
        self.manifest = self._load_manifest()
        if not force and not self.manifest_path.exists():
            self._refuse_foreign()

    def _refuse_foreign(self) -> None:
        found = sorted(path.name for path in self.root.iterdir() if path.name in OUTPUT_NAMES)
        if found:
            raise RunStoreError(
                f"{self.root} holds {', '.join(found)} but no manifest.json, so it is not a Condor run directory "
                "and Condor will not write over those files; choose another --output, or pass --force to replace them"
            )

    def owns(self, path: str | Path) -> bool:
        """Whether ``path`` is (or is inside) something Condor writes in this run directory."""
        try:
            relative = Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return bool(relative.parts) and (relative.parts[0] in OWN_NAMES or relative.parts[0].startswith("cache.sqlite"))

    def refuse_own(self, path: str | Path, what: str) -> None:
        """Refuse an input that this run writes: reading it while it is rewritten loses it."""
        if self.owns(path):
            raise RunStoreError(
                f"{path}: the {what} is a file this run writes in {self.root}; an input is never its own output. "
                "Copy it elsewhere, or choose another --output"
            )

    def _load_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"format": RUN_FORMAT, "stages": {}}
        return parse_manifest(self.manifest_path)

    def save_manifest(self) -> None:
        atomic_write_text(self.manifest_path, json.dumps(self.manifest, indent=2, ensure_ascii=False))

    def bind_inputs(self, kind: str, fingerprint: str) -> None:
        """Refuse to resume a run directory that was started on different inputs."""
        inputs = self.manifest.setdefault("inputs", {})
        previous = inputs.get(kind)
        if previous is not None and previous != fingerprint:
            raise RunStoreError(
                f"{self.root} holds a run over different {kind} (fingerprint {previous[:12]} != {fingerprint[:12]}); "
                "use a new output directory, or delete this one to start over"
            )
        inputs[kind] = fingerprint
        self.save_manifest()

    def stage(self, name: str, writer: str = StageStore.MAIN_WRITER) -> StageStore:
        return StageStore(self.root / "stages" / name, name, writer)

    def lock(self) -> "RunLock":
        """Hold the run directory for this process; a second process is refused at once."""
        from condor.run.lock import RunLock

        return RunLock(self.root / LOCK_FILE)
