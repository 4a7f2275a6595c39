"""Structured configs: pydantic models that validate the Hydra config tree.

The YAML files in ``rock_env/conf`` give the defaults; these models say which keys exist and
what type each has. :func:`validate_rollout_config` turns a composed OmegaConf node (or a plain
dict) into a :class:`RolloutConfig`, and a wrong type or an unknown key into a
:class:`~rock_env.errors.ConfigError` that names the key and the valid choices.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rock_env.errors import ConfigError

#: Default ``_target_`` of env configs (``hydra.utils.instantiate(cfg.env)`` calls it).
ENV_TARGET = "rock_env.config.make_env"

_Node = TypeVar("_Node", bound=BaseModel)


class _Strict(BaseModel):
    """Base: unknown keys are errors; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class EnvConfig(_Strict):
    """Which env to build (group ``env/``)."""

    target: str = Field(default=ENV_TARGET, alias="_target_")
    id: str = Field(min_length=1, description="registered env id, e.g. game:Sokoban-v0-easy")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="constructor keyword arguments")
    max_episode_steps: int | None = Field(default=None, gt=0)


class LocalBackendConfig(_Strict):
    """Build envs in this process (group ``backend/local``)."""

    name: Literal["local"] = "local"


class RemoteBackendConfig(_Strict):
    """Run envs on a rock-env admin server (group ``backend/remote``)."""

    name: Literal["remote"] = "remote"
    base_url: str | None = Field(default=None, min_length=1, description="null: $ROCK_ENV_URL, else 127.0.0.1:8080")
    token: str | None = Field(default=None, description="null: $ROCK_ENV_TOKEN, else no auth")
    timeout: float = Field(default=300.0, gt=0)


BackendConfig = Annotated[LocalBackendConfig | RemoteBackendConfig, Field(discriminator="name")]


class RuntimeConfig(_Strict):
    """Sandbox runtime for envs that own a sandbox (group ``runtime/``)."""

    name: Literal["auto", "local", "namespace", "docker"] = "auto"
    image: str | None = None
    cpus: float | None = Field(default=None, gt=0)
    memory: str | int | None = None
    pids: int | None = Field(default=None, gt=0)
    network: bool = False

    def sandbox_fields(self) -> dict[str, Any]:
        """The :class:`rock_env.sandbox.SandboxConfig` fields this runtime sets (defaults left out)."""
        out: dict[str, Any] = {"runtime": self.name}
        for key in ("image", "cpus", "memory", "pids"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.network:
            out["network"] = True
        return out

    def is_default(self) -> bool:
        """Whether this is ``runtime=auto`` with nothing else set."""
        return self.sandbox_fields() == {"runtime": "auto"}


class RandomPolicyConfig(_Strict):
    """``env.sample_random_action()`` (group ``policy/random``)."""

    name: Literal["random"] = "random"


class ScriptedPolicyConfig(_Strict):
    """A policy function named by import path (group ``policy/scripted``)."""

    name: Literal["scripted"] = "scripted"
    target: str = Field(min_length=3, description="'package.module:function'")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class OpenAIPolicyConfig(_Strict):
    """An OpenAI-compatible chat model (group ``policy/openai``)."""

    name: Literal["openai"] = "openai"
    model: str = Field(min_length=1)
    base_url: str = Field(default="http://127.0.0.1:8001/v1", min_length=1)
    api_key: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, gt=0)
    use_tools: bool = True
    system_prompt: str | None = None
    max_history: int | None = Field(default=None, ge=0)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)


PolicyConfig = Annotated[
    RandomPolicyConfig | ScriptedPolicyConfig | OpenAIPolicyConfig,
    Field(discriminator="name"),
]


class LocalClusterConfig(_Strict):
    """Everything on this host (group ``cluster/local``)."""

    name: Literal["local"] = "local"


class RayClusterConfig(_Strict):
    """Episodes run in Ray actors (group ``cluster/ray``; the admin reads ``name`` and ``address`` only)."""

    name: Literal["ray"] = "ray"
    address: str = Field(
        default="auto",
        min_length=1,
        description="auto: the running cluster ($RAY_ADDRESS); local: a private head on 127.0.0.1 for the run; "
        "else HOST:PORT of the GCS",
    )
    workers: int | None = Field(
        default=None, ge=1, description="episode actors (null: as many as the cluster's CPUs allow, at most episodes)"
    )
    cpus_per_worker: float | None = Field(default=None, gt=0, description="CPUs each actor reserves (null: 1)")
    max_retries: int | None = Field(
        default=None, ge=0, description="reruns of an episode whose actor or node died (null: 2)"
    )

    @property
    def cpus(self) -> float:
        """CPUs each actor reserves."""
        return 1.0 if self.cpus_per_worker is None else self.cpus_per_worker

    @property
    def retries(self) -> int:
        """Reruns of an episode after its actor died."""
        return 2 if self.max_retries is None else self.max_retries


#: Keys of ``cluster/ray`` that only rollouts use (the admin ignores them).
ROLLOUT_ONLY_CLUSTER_KEYS: frozenset[str] = frozenset({"workers", "cpus_per_worker", "max_retries"})


ClusterConfig = Annotated[LocalClusterConfig | RayClusterConfig, Field(discriminator="name")]


class RolloutConfig(_Strict):
    """The whole config of ``rock-env rollout`` (primary config ``rollout.yaml``)."""

    env: EnvConfig
    backend: BackendConfig = Field(default_factory=LocalBackendConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    policy: PolicyConfig = Field(default_factory=RandomPolicyConfig)
    cluster: ClusterConfig = Field(default_factory=LocalClusterConfig)
    episodes: int = Field(default=10, ge=1)
    seed: int = Field(default=0, ge=0)
    num_envs: int = Field(default=1, ge=1)
    threads: bool | None = Field(
        default=None, description="step envs / query the policy in one thread per env (null: when they mostly wait)"
    )
    max_steps: int | None = Field(default=None, gt=0)
    output_dir: str | None = None
    save_steps: bool = True
    progress: bool = True


_MODELS_BY_TAG: dict[str, dict[str, type[BaseModel]]] = {
    "backend": {"local": LocalBackendConfig, "remote": RemoteBackendConfig},
    "policy": {"random": RandomPolicyConfig, "scripted": ScriptedPolicyConfig, "openai": OpenAIPolicyConfig},
    "cluster": {"local": LocalClusterConfig, "ray": RayClusterConfig},
}
_SECTION_MODELS: dict[str, type[BaseModel]] = {"env": EnvConfig, "runtime": RuntimeConfig}


def valid_keys(model: type[BaseModel]) -> list[str]:
    """The keys a config node of ``model`` may have (aliases such as ``_target_`` included)."""
    return sorted(field.alias or name for name, field in model.model_fields.items())


def option_models(section: str) -> dict[str, type[BaseModel]]:
    """The model of each option of a config group (``{}`` for a key that is not a group)."""
    if section in _MODELS_BY_TAG:
        return dict(_MODELS_BY_TAG[section])
    if section in _SECTION_MODELS:
        return {section: _SECTION_MODELS[section]}
    return {}


def _model_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel], list[str]]:
    """The model that owns the last key of ``loc``, and the path with union tags removed."""
    model: type[BaseModel] = RolloutConfig
    path: list[str] = []
    parts = list(loc)
    while len(parts) > 1:
        head = str(parts.pop(0))
        path.append(head)
        if head in _MODELS_BY_TAG and parts and str(parts[0]) in _MODELS_BY_TAG[head]:
            model = _MODELS_BY_TAG[head][str(parts.pop(0))]
        elif head in _SECTION_MODELS and model is RolloutConfig:
            model = _SECTION_MODELS[head]
        else:
            break
    path.extend(str(p) for p in parts)
    return model, path


def _describe(error: Mapping[str, Any]) -> str:
    model, path = _model_at(tuple(error["loc"]))
    key = ".".join(path) or "(root)"
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = valid_keys(model)
        close = difflib.get_close_matches(path[-1], valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r}; valid keys here: {', '.join(valid)}.{hint}"
    if kind == "missing":
        return f"missing required key {key!r}."
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        section = path[0] if path else ""
        choices = sorted(_MODELS_BY_TAG.get(section, {}))
        return f"{key}: name must be one of {', '.join(choices)} (got {error.get('input', {}).get('name')!r})."
    return f"{key}: {error['msg']} (got {error.get('input')!r})."


def config_error_from_validation(
    exc: ValidationError, what: str = "rollout config", prefix: tuple[str, ...] = ()
) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into a :class:`ConfigError` listing every bad key.

    ``prefix`` is the path of the validated node inside a rollout config (e.g. ``("policy",)``).
    """
    problems = [_describe({**err, "loc": (*prefix, *err["loc"])}) for err in exc.errors()]
    return ConfigError(f"invalid {what}: " + " ".join(problems))


def to_plain(cfg: Any) -> Any:
    """A plain (resolved) container from an OmegaConf node; other values pass through."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def _validate_node(
    model: type[_Node], cfg: Any, *, not_a_mapping: str, what: str, prefix: tuple[str, ...], drop: str | None = None
) -> _Node:
    """Validate ``cfg`` (an instance of ``model``, an OmegaConf node or a dict) as ``model``.

    ``not_a_mapping`` starts the error when ``cfg`` is no mapping; ``drop`` is a key removed
    before validation; ``what`` and ``prefix`` name the node in the error of a bad key.
    """
    if isinstance(cfg, model):
        return cfg
    data = to_plain(cfg)
    if not isinstance(data, dict):
        raise ConfigError(f"{not_a_mapping}, got {type(data).__name__}.")
    if drop is not None:
        data = {k: v for k, v in data.items() if k != drop}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error_from_validation(exc, what, prefix) from None


def validate_rollout_config(cfg: Any) -> RolloutConfig:
    """Validate a composed rollout config (OmegaConf node or dict); drops the ``hydra`` key."""
    return _validate_node(
        RolloutConfig,
        cfg,
        not_a_mapping="a rollout config must be a mapping",
        what="rollout config",
        prefix=(),
        drop="hydra",
    )


def validate_env_config(cfg: Any) -> EnvConfig:
    """Validate an env config node (``cfg.env``)."""
    return _validate_node(
        EnvConfig, cfg, not_a_mapping="an env config must be a mapping with an 'id'", what="env config", prefix=("env",)
    )
