"""``EnvSpec``: everything needed to build an env, with a JSON round-trip."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rock_env.errors import DependencyMissing, EntryPointError, InvalidArgument, RockEnvError
from rock_env.registry.ids import ParsedId, parse_id

Source = Literal["builtin", "plugin", "gem", "user"]
SOURCES: tuple[str, ...] = ("builtin", "plugin", "gem", "user")

#: Known requirement tags; a server places envs by them.
REQUIREMENTS: tuple[str, ...] = ("sandbox", "network", "gpu")

#: Import names whose pip package is called differently.
_PIP_NAMES = {
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "attr": "attrs",
    "OpenSSL": "pyopenssl",
    "Crypto": "pycryptodome",
    "google": "protobuf",
}


def dependency_missing(env_id: str, exc: ImportError) -> DependencyMissing:
    """The :class:`DependencyMissing` for an env whose code failed to import ``exc.name``.

    The message names the missing package and the ``pip install`` that provides it.
    """
    missing = exc.name or ""
    top = missing.split(".", 1)[0]
    if not top:
        return DependencyMissing(
            f"env {env_id!r} cannot be built on this host: an optional dependency failed to import ({exc}). "
            "Install the packages it needs (see the env's documentation) and retry."
        )
    package = _PIP_NAMES.get(top, top.replace("_", "-"))
    return DependencyMissing(
        f"env {env_id!r} needs the Python package {package!r} (module {missing!r}), which is not installed on this "
        f"host ({exc}). Install it: pip install {package}"
    )


@dataclass
class EnvSpec:
    """A registered env.

    Attributes:
        id: the env id, e.g. ``game:Sokoban-v0-easy`` (see :mod:`rock_env.registry.ids`).
        entry_point: ``"package.module:attr"`` naming a class or factory, or the callable itself.
        kwargs: default keyword arguments; ``make(id, **kw)`` overrides them.
        max_episode_steps: episodes are truncated after this many steps (``None``: the env decides).
        requirements: what the env needs from its host, e.g. ``("sandbox",)``.
        description: one line for listings.
        source: ``builtin``, ``plugin`` (an entry point of another package), ``gem`` or ``user``.
        plugin: the entry-point name of the plugin that registered it, if any.
        nondeterministic: the same seed may not give the same episode (Gymnasium's flag).
    """

    id: str
    entry_point: str | Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    requirements: tuple[str, ...] = ()
    description: str = ""
    source: Source = "user"
    plugin: str | None = None
    nondeterministic: bool = False

    def __post_init__(self) -> None:
        self._parsed = parse_id(self.id)
        if not (isinstance(self.entry_point, str) or callable(self.entry_point)):
            raise InvalidArgument(
                f"entry_point of {self.id!r} must be 'module:attr' or a callable, got {type(self.entry_point).__name__}."
            )
        if isinstance(self.entry_point, str) and self.entry_point.count(":") != 1:
            raise InvalidArgument(
                f"entry_point {self.entry_point!r} of {self.id!r} must look like 'package.module:ClassName'."
            )
        if not isinstance(self.kwargs, dict):
            raise InvalidArgument(f"kwargs of {self.id!r} must be a dict, got {type(self.kwargs).__name__}.")
        if self.max_episode_steps is not None and (
            isinstance(self.max_episode_steps, bool)
            or not isinstance(self.max_episode_steps, int)
            or self.max_episode_steps <= 0
        ):
            raise InvalidArgument(
                f"max_episode_steps of {self.id!r} must be a positive int or None, got {self.max_episode_steps!r}."
            )
        if isinstance(self.requirements, str):
            self.requirements = (self.requirements,)
        self.requirements = tuple(self.requirements)
        if self.source not in SOURCES:
            raise InvalidArgument(f"source must be one of {SOURCES}, got {self.source!r}.")

    # -- id parts ------------------------------------------------------------------------

    @property
    def parsed(self) -> ParsedId:
        """The parsed id."""
        return self._parsed

    @property
    def namespace(self) -> str | None:
        """``game`` for ``game:Sokoban-v0-easy``."""
        return self._parsed.namespace

    @property
    def name(self) -> str:
        """``Sokoban`` for ``game:Sokoban-v0-easy``."""
        return self._parsed.name

    @property
    def version(self) -> int | None:
        """``0`` for ``game:Sokoban-v0-easy``."""
        return self._parsed.version

    @property
    def variant(self) -> str | None:
        """``easy`` for ``game:Sokoban-v0-easy``."""
        return self._parsed.variant

    @property
    def needs_sandbox(self) -> bool:
        """Whether the env runs commands in a sandbox."""
        return "sandbox" in self.requirements

    # -- building ------------------------------------------------------------------------

    def load_entry_point(self) -> Callable[..., Any]:
        """Import and return the entry point's class or factory."""
        if callable(self.entry_point):
            return self.entry_point
        module_name, _, attr = self.entry_point.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if isinstance(exc, RockEnvError):
                raise
            missing = exc.name or ""
            if missing and missing != module_name and not module_name.startswith(missing + "."):
                # the env's module exists but imports a package that is not installed
                raise dependency_missing(self.id, exc) from exc
            raise EntryPointError(
                f"cannot import module {module_name!r} for env {self.id!r}: {exc}. "
                "Is the package that provides it installed?"
            ) from exc
        try:
            target = module
            for part in attr.split("."):
                target = getattr(target, part)
        except AttributeError as exc:
            raise EntryPointError(
                f"module {module_name!r} has no attribute {attr!r} (entry point of {self.id!r})."
            ) from exc
        if not callable(target):
            raise EntryPointError(f"entry point {self.entry_point!r} of {self.id!r} is not callable.")
        return target  # type: ignore[no-any-return]

    # -- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; a callable entry point becomes ``"module:qualname"``."""
        data = asdict(self)
        if callable(self.entry_point):
            data["entry_point"] = f"{self.entry_point.__module__}:{self.entry_point.__qualname__}"
        data["requirements"] = list(self.requirements)
        return data

    def to_json(self, **json_kwargs: Any) -> str:
        """Serialise to JSON (``from_json`` reads it back)."""
        try:
            return json.dumps(self.to_dict(), **json_kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"spec {self.id!r} has kwargs that are not JSON-serialisable: {exc}") from exc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        """Build a spec from :meth:`to_dict` output."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise InvalidArgument(f"unknown EnvSpec fields {sorted(unknown)}; valid fields: {sorted(known)}.")
        data = dict(data)
        if "requirements" in data:
            data["requirements"] = tuple(data["requirements"])
        if "kwargs" in data:
            data["kwargs"] = {k: tuple(v) if isinstance(v, list) else v for k, v in data["kwargs"].items()}
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> EnvSpec:
        """Parse a spec from JSON written by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"EnvSpec JSON is malformed: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidArgument("EnvSpec JSON must be an object.")
        return cls.from_dict(data)

    def pretty(self) -> str:
        """A multi-line human-readable description."""
        lines = [f"id:                {self.id}", f"source:            {self.source}"]
        if self.plugin:
            lines.append(f"plugin:            {self.plugin}")
        lines.append(f"entry_point:       {self.to_dict()['entry_point']}")
        lines.append(f"kwargs:            {self.kwargs}")
        lines.append(f"max_episode_steps: {self.max_episode_steps}")
        lines.append(f"requirements:      {list(self.requirements)}")
        if self.description:
            lines.append(f"description:       {self.description}")
        return "\n".join(lines)
