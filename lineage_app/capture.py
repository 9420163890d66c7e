"""Provenance read from the files themselves: MLflow ``MLmodel``, requirements, python_env, conda.

Pure functions over file contents (no Django), so the client and the serving runtime can use
them too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

_PINNED = re.compile(r"^===?(.+)$")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on an MLmodel


def _mapping(text: str) -> dict:
    """The YAML mapping in ``text``; ``{}`` when it is not one (capture is best effort: a file
    that does not parse gives no facts rather than failing the registration)."""
    try:
        return _dict(yaml.load(text, Loader=_LOADER))  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return {}


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def strip_credentials(url: str) -> str:
    """``https://user:token@host/repo.git`` → ``https://host/repo.git`` (scp-style URLs kept)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts)


def parse_requirements(text: str) -> list[tuple[str, str]]:
    """Pinned requirements (``name==version``) as normalized ``(name, version)`` pairs.

    Unpinned lines, options (``-r``, ``--index-url``), URLs and comments are skipped: an
    environment records what was installed, and only a pin says that.
    """
    packages: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "==="):
            packages[canonicalize_name(requirement.name)] = specs[0].version
    return sorted(packages.items())


def parse_python_env(text: str) -> dict:
    """``python_env.yaml``: the Python version and inline dependencies."""
    data = _mapping(text)
    deps = [d for d in _list(data.get("dependencies")) if isinstance(d, str)]
    return {"python": str(data.get("python") or ""), "packages": parse_requirements("\n".join(deps))}


def parse_conda(text: str) -> dict:
    """``conda.yaml``: Python from ``python=X``, pins from conda ``name=version`` and the pip list."""
    data = _mapping(text)
    python, pins = "", []
    for dep in _list(data.get("dependencies")):
        if isinstance(dep, str):
            name, _, version = dep.partition("=")
            version = version.lstrip("=")
            if canonicalize_name(name) == "python":
                python = version
            elif version and "*" not in version:
                pins.append(f"{name}=={version.split('=')[0]}")
        elif isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            pins += [p for p in dep["pip"] if isinstance(p, str)]
    return {"python": python, "packages": parse_requirements("\n".join(pins))}


def parse_mlmodel(text: str) -> dict:
    """``MLmodel``: flavors, signature, input example, Python and MLflow versions, run id."""
    data = _mapping(text)
    flavors = _dict(data.get("flavors"))
    pyfunc = _dict(flavors.get("python_function"))
    return {
        "flavors": sorted(flavors),
        "python": str(pyfunc.get("python_version") or ""),
        "mlflow_version": str(data.get("mlflow_version") or ""),
        "run_id": str(data.get("run_id") or ""),
        "signature": data.get("signature"),
        "saved_input_example_info": data.get("saved_input_example_info"),
        "model_size_bytes": data.get("model_size_bytes"),
    }


def environment_from_files(files: dict[str, str]) -> dict | None:
    """Merge what ``MLmodel``, ``python_env.yaml``, ``conda.yaml`` and ``requirements.txt`` say.

    ``files`` maps paths (at any depth) to text. Returns ``None`` when none of them is there.
    """
    by_name: dict[str, str] = {}
    for path, text in files.items():
        by_name.setdefault(path.rsplit("/", 1)[-1], text)
    if not any(name in by_name for name in ("MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml")):
        return None
    env: dict = {"python": "", "packages": {}, "mlmodel": None}
    if "conda.yaml" in by_name:
        conda = parse_conda(by_name["conda.yaml"])
        env["python"] = conda["python"] or env["python"]
        env["packages"].update(dict(conda["packages"]))
    if "python_env.yaml" in by_name:
        pyenv = parse_python_env(by_name["python_env.yaml"])
        env["python"] = pyenv["python"] or env["python"]
        env["packages"].update(dict(pyenv["packages"]))
    if "requirements.txt" in by_name:
        env["packages"].update(dict(parse_requirements(by_name["requirements.txt"])))
    if "MLmodel" in by_name:
        env["mlmodel"] = parse_mlmodel(by_name["MLmodel"])
        env["python"] = env["python"] or env["mlmodel"]["python"]
    env["packages"] = sorted(env["packages"].items())
    return env
