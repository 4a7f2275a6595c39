"""Composing the packaged Hydra configs, with errors that name the valid choices.

The YAML tree ships inside the wheel as the package ``rock_env.conf``; Hydra finds it through
the config path ``pkg://rock_env.conf`` (:data:`CONFIG_PATH`), so configs work from an installed
wheel and from a source checkout alike. On the command line, Hydra's ``--config-dir DIR``
adds a directory of your own configs (e.g. ``DIR/env/my_env.yaml``) to the search path.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from rock_env.errors import ConfigError

#: Python package holding the YAML tree.
CONFIG_MODULE = "rock_env.conf"
#: The same as a Hydra config path.
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
#: Primary config of ``rock-env rollout``.
ROLLOUT_CONFIG = "rollout"


def config_groups() -> list[str]:
    """The config groups shipped in the package (sub-directories holding YAML files)."""
    root = resources.files(CONFIG_MODULE)
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and any(child.name.endswith(".yaml") for child in entry.iterdir())
    )


def group_options(group: str) -> list[str]:
    """The option names of a config group, e.g. ``group_options("env")`` -> ``["bash", ...]``."""
    node = resources.files(CONFIG_MODULE)
    for part in group.split("/"):
        node = node.joinpath(part)
    if not node.is_dir():
        raise ConfigError(f"unknown config group {group!r}; groups: {', '.join(config_groups())}.")
    return sorted(entry.name[: -len(".yaml")] for entry in node.iterdir() if entry.name.endswith(".yaml"))


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return list(OverridesParser.create().parse_overrides(overrides=list(overrides)))
    except HydraException as exc:
        raise ConfigError(
            f"malformed override: {exc}. Overrides look like key=value, group=option or a=1,2,3."
        ) from None


def _values(override: Any) -> list[str]:
    if override.is_delete():
        return []
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [str(override.get_value_element_as_str())]


def check_group_choices(overrides: Sequence[str], groups: Iterable[str] | None = None) -> None:
    """Raise :class:`ConfigError` when an override picks an option that a group does not have."""
    known = set(config_groups() if groups is None else groups)
    for override in _parse(overrides):
        key = override.key_or_group
        if key not in known or override.package is not None:
            continue
        options = group_options(key)
        for value in _values(override):
            if value not in options:
                close = difflib.get_close_matches(value, options, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"unknown {key} {value!r}; valid choices for {key}: {', '.join(options)}.{hint} "
                    f"(Or add a file {key}/{value}.yaml in a --config-dir.)"
                )


def first_combination(overrides: Sequence[str]) -> list[str]:
    """The overrides of the first job of a sweep (each sweep replaced by its first value)."""
    out = []
    for override, text in zip(_parse(overrides), overrides, strict=True):
        if override.is_sweep_override():
            values = _values(override)
            prefix = text.split("=", 1)[0]
            out.append(f"{prefix}={values[0]}" if values else text)
        else:
            out.append(text)
    return out


def sweep_combinations(overrides: Sequence[str]) -> list[list[str]]:
    """Every job's overrides of a sweep (the cartesian product, like Hydra's basic sweeper)."""
    choices: list[list[str]] = []
    for override, text in zip(_parse(overrides), overrides, strict=True):
        prefix = text.split("=", 1)[0]
        if override.is_sweep_override():
            choices.append([f"{prefix}={v}" for v in _values(override)])
        else:
            choices.append([text])
    return [list(combo) for combo in itertools.product(*choices)]


def compose_config(
    overrides: Sequence[str] = (),
    config_name: str = ROLLOUT_CONFIG,
) -> Any:
    """Compose ``config_name`` from the packaged tree with ``overrides`` (no sweeps).

    Raises :class:`ConfigError` for an unknown group option (listing the valid ones), an
    unknown key (``+key=value`` adds one) or a malformed override.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_group_choices(overrides)
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise _config_error(exc, config_name, overrides) from None


def _selected_option(section: str, overrides: Sequence[str]) -> str | None:
    """The option of ``section`` that ``overrides`` select (else the default of the rollout config)."""
    for text in overrides:
        key, sep, value = text.partition("=")
        if sep and key.lstrip("+~") == section and "," not in value:
            return value
    try:
        cfg = compose_config([t for t in overrides if t.partition("=")[0].lstrip("+~") == section])
    except ConfigError:
        return None
    node = cfg.get(section)
    name = node.get("name") if node is not None and hasattr(node, "get") else None
    return str(name) if name is not None else None


def _unknown_key_hint(key: str, overrides: Sequence[str]) -> str:
    """What to say about an override of a key that the rollout config does not have."""
    from rock_env.config.schema import option_models, valid_keys

    section, dot, rest = key.partition(".")
    if not dot:
        from rock_env.config.schema import RolloutConfig

        keys = valid_keys(RolloutConfig)
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r}. Valid top-level keys: {', '.join(keys)}.{hint}"
    models = option_models(section)
    if not models:
        return ""
    if section == "env" and rest.startswith("kwargs."):
        return f"env.kwargs has no key {rest[len('kwargs.') :]!r} yet: add it with +{key}=VALUE."
    option = _selected_option(section, overrides)
    model = models.get(option or "", next(iter(models.values())) if len(models) == 1 else None)
    head = rest.split(".")[0]
    if model is None:
        return f"unknown key {key!r}."
    keys = valid_keys(model)
    close = difflib.get_close_matches(head, keys, n=1)
    hint = f" Did you mean {section}.{close[0]}?" if close else ""
    owners = [name for name, m in models.items() if head in valid_keys(m) and name != option]
    elsewhere = f" ({section}.{head} is a key of {' / '.join(f'{section}={o}' for o in owners)}.)" if owners else ""
    chosen = f"{section}={option}" if option and len(models) > 1 else section
    return f"unknown key {key!r}: {chosen} has the keys {', '.join(keys)}.{hint}{elsewhere}"


def _config_error(exc: Exception, config_name: str, overrides: Sequence[str] = ()) -> ConfigError:
    import re

    text = str(exc).split("\nConfig search path:")[0].strip()
    match = re.search(r"Could not override '([^']+)'", text)
    if match and config_name == ROLLOUT_CONFIG:
        hint = _unknown_key_hint(match.group(1), overrides)
        if hint:
            return ConfigError(hint)
    return ConfigError(f"cannot compose config {config_name!r}: {text}")
