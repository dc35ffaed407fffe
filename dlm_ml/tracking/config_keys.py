"""Which configuration keys change a run's results, and which only say where results go.

One list, used wherever runs are matched or compared: the config digest that ``resume``
matches runs on, the columns ``dlm-compare`` shows, the overrides ``dlm-reproduce`` replays.
"""

from __future__ import annotations

#: Top-level keys and dotted prefixes that place, name or continue a run without changing
#: what it computes: output folders, tracking settings, the task's name, resume/reproduce
#: switches and Hydra's own settings.
NON_RESULT_KEYS: tuple[str, ...] = ("paths", "logger", "hydra", "task_name", "resume", "reproduce_of")


def is_result_key(dotted_key: str) -> bool:
    """Whether a dotted config key (``data.n_folds``, ``+logger.run_name``) can change results."""
    key = dotted_key.lstrip("+~")
    head = key.split(".", 1)[0].split("=", 1)[0]
    return head not in NON_RESULT_KEYS


def result_config(resolved: dict) -> dict:
    """The resolved config without the keys of :data:`NON_RESULT_KEYS` (a copy)."""
    return {k: v for k, v in resolved.items() if k not in NON_RESULT_KEYS}
