"""Worker settings for the worker-kill fault test: production settings plus one test hook."""

from registry_project.settings import *  # noqa: F403
from registry_project.settings import MODELYARD_VERSION_READY_HOOKS

MODELYARD_VERSION_READY_HOOKS = [
    "tests.registry_project.fault_hooks.slow_first_run",
    *MODELYARD_VERSION_READY_HOOKS,
]
