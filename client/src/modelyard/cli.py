"""The ``modelyard`` command line. Every failure is one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any, Callable

from modelyard import __version__, config, lineage
from modelyard.client import Client, Ref
from modelyard.errors import APIError, ModelyardError

Out = Callable[[str], None]


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def _emit(args: argparse.Namespace, data: Any, human: Callable[[], None]) -> None:
    if args.json:
        _print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


def _client(args: argparse.Namespace) -> Client:
    return Client(url=args.url, token=args.token, jobs=args.jobs, quiet=args.quiet or args.json)


def _table(rows: list[list[Any]], headers: list[str]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        _print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


# --- Commands --------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("MODELYARD_URL") or ""
    if not url:
        url = input("Registry URL: ").strip()
    if args.token_stdin:
        token = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        token = getpass.getpass("Access token (myd_…, input hidden): ").strip()
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise ModelyardError("No token given.")
    with Client(url=url, token=token, quiet=True) as client:
        client.whoami()  # 401 for a bad token: nothing is saved
        path = config.save(client.url, token)
    _print(f"Logged in to {client.url}; the token is stored in {path} (readable by you only).")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    params = lineage.read_json_object(args.params, "params")
    metrics = lineage.read_json_object(args.metrics, "metrics")
    with _client(args) as client:
        result = client.push(
            args.path,
            model=args.model,
            team=args.team,
            datasets=args.dataset or [],
            params=params,
            metrics=metrics,
            parents=args.parent or [],
            parent_relation=args.relation,
            alias=args.alias,
            description=args.description or "",
            entrypoint=args.entrypoint,
            code_dir=args.code,
            capture_lineage=not args.no_lineage,
        )

    def human() -> None:
        if not args.quiet:
            sent = f"{len(result.uploaded)} uploaded ({_size(result.bytes_sent)}), "
            sent += f"{len(result.attached)} already held"
            _print(f"{result.files} files: {sent}{' (resumed)' if result.resumed else ''}")
        alias = f" as {result.alias}" if result.alias else ""
        _print(f"{result.model} version {result.version}{alias}: {result.url}")

    _emit(args, result.as_dict(), human)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.pull(args.ref, args.output)

    def human() -> None:
        _print(
            f"{result.model} version {result.version}: {result.files} files verified in {result.directory} "
            f"({len(result.downloaded)} downloaded, {_size(result.bytes_received)})"
        )

    _emit(args, result.as_dict(), human)
    return 0


def _model_rows(models: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            m["name"],
            m.get("team"),
            m.get("latest_version"),
            ",".join(f"{k}={v}" for k, v in (m.get("aliases") or {}).items()),
            (m.get("description") or "")[:60],
        ]
        for m in models
    ]


def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models(team=args.team, limit=args.limit)
    _emit(
        args,
        models,
        lambda: _table(_model_rows(models), ["NAME", "TEAM", "LATEST", "ALIASES", "DESCRIPTION"]),
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models(query=args.query, limit=args.limit)
    _emit(
        args,
        models,
        lambda: _table(_model_rows(models), ["NAME", "TEAM", "LATEST", "ALIASES", "DESCRIPTION"]),
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ref = Ref.parse(args.ref)
    with _client(args) as client:
        if ref.version or ref.alias:
            name, number = client.resolve(ref)
            version = client.version(name, number)
            version["files"] = client.files(name, number)
            data: dict[str, Any] = version
        else:
            data = client.model(ref.model)
            data["versions"] = client.versions(ref.model, limit=args.limit)

    def human() -> None:
        if "files" in data:
            _print(f"{data['model']} version {data['version']}  {data['status']}  stage={data.get('stage')}")
            if data.get("aliases"):
                _print(f"aliases: {', '.join(data['aliases'])}")
            if data.get("description"):
                _print(data["description"])
            _table([[f["path"], f["size"], f["sha256"]] for f in data["files"]], ["PATH", "SIZE", "SHA256"])
        else:
            _print(f"{data['name']}  team={data.get('team')}  {data.get('visibility')}")
            if data.get("description"):
                _print(data["description"])
            rows = [
                [
                    v["version"],
                    v["status"],
                    v.get("stage"),
                    ",".join(v.get("aliases") or []),
                    v.get("created_at"),
                ]
                for v in data["versions"]
            ]
            _table(rows, ["VERSION", "STATUS", "STAGE", "ALIASES", "CREATED"])

    _emit(args, data, human)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    with _client(args) as client:
        promotion = client.promote(args.ref, to=args.to, comment=args.comment or "", alias=args.alias)
    human = lambda: _print(  # noqa: E731
        f"promotion {promotion['id']} of {args.ref} to {args.to}: {promotion.get('state')}"
    )
    _emit(args, promotion, human)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    with _client(args) as client:
        promotion = client.approve(args.id, comment=args.comment or "")
    _emit(args, promotion, lambda: _print(f"promotion {promotion['id']}: {promotion.get('state')}"))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    with _client(args) as client:
        document = client.lineage(args.ref)

    def human() -> None:
        code = document.get("code") or {}
        if code:
            dirty = " (dirty)" if code.get("dirty") else ""
            _print(
                f"code: {code.get('repo_url') or '?'} @ {code.get('commit')} "
                f"on {code.get('branch') or '?'}{dirty}"
            )
            _print(
                f"      {len(code.get('ancestors') or [])} ancestor commits, "
                f"entry point {code.get('entrypoint') or '?'}"
            )
        env = document.get("environment") or {}
        if env:
            accel = f", {env['accelerator']}" if env.get("accelerator") else ""
            packages = len(env.get("packages") or [])
            _print(
                f"environment: Python {env.get('python')} on {env.get('platform')}{accel}, "
                f"{packages} packages"
            )
        for ds in document.get("datasets") or []:
            _print(f"dataset {ds['role']}: {ds['name']} {ds.get('uri') or ''} {ds['digest']}")
        run = document.get("run") or {}
        if run.get("id") or run.get("pipeline"):
            _print(f"run: {run.get('id')} {run.get('pipeline') or ''} {run.get('step') or ''}".rstrip())
        for key in ("params", "metrics"):
            if run.get(key):
                _print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in sorted(run[key].items())))
        for parent in document.get("parents") or []:
            _print(f"parent: {parent['model']}:{parent['version']} ({parent['relation']})")

    _emit(args, document, human)
    return 0


def cmd_exposure(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.exposure(args.package, args.specifier, stage=args.stage)

    def human() -> None:
        _print(f"{data.get('count', 0)} versions built with {args.package}{args.specifier}")
        rows = [
            [
                v.get("model"),
                v.get("version"),
                v.get("stage"),
                v.get("package_version") or v.get("installed"),
                ",".join(v.get("aliases") or []),
            ]
            for v in data.get("versions", [])
        ]
        if rows:
            _table(rows, ["MODEL", "VERSION", "STAGE", "INSTALLED", "ALIASES"])

    _emit(args, data, human)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.compare(args.a, args.b)

    def human() -> None:
        for line in data.get("summary") or []:
            _print(f"- {line}")
        metrics = data.get("metrics")
        if isinstance(metrics, list) and metrics:
            _table(
                [[m.get("name"), m.get("a"), m.get("b"), m.get("delta")] for m in metrics],
                ["METRIC", "A", "B", "DELTA"],
            )

    _emit(args, data, human)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    with _client(args) as client:
        deployment = client.deploy(
            args.ref, target=args.target, name=args.name, wait=not args.no_wait, timeout=args.timeout
        )
    human = lambda: _print(  # noqa: E731
        f"deployment {deployment['id']} {deployment.get('name', '')}: {deployment.get('status')}"
        + (f" at {deployment['endpoint_url']}" if deployment.get("endpoint_url") else "")
    )
    _emit(args, deployment, human)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    payload = _read_json(args.json_file)
    with _client(args) as client:
        answer = client.predict(args.deployment, payload)
    _print(json.dumps(answer, indent=None if args.quiet else 2, default=str))
    return 0


def _read_json(path: str) -> Any:
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise ModelyardError(f"--json {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ModelyardError(f"--json {path}: not valid JSON ({exc})") from exc


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# --- Parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="registry URL (default: $MODELYARD_URL, then `modelyard login`)")
    common.add_argument(
        "--token", help=argparse.SUPPRESS
    )  # prefer $MODELYARD_TOKEN: argv is visible to others
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars (CI logs)")
    common.add_argument("-j", "--jobs", type=int, help="parallel transfers (default 4, $MODELYARD_JOBS)")

    parser = argparse.ArgumentParser(
        prog="modelyard",
        description="Push models with their lineage to a Modelyard registry; pull them back.",
    )
    parser.add_argument("--version", action="version", version=f"modelyard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("login", cmd_login, "store the registry URL and a token in your config file (0600)")
    p.add_argument("--token-stdin", action="store_true", help="read the token from stdin")

    p = add("push", cmd_push, "upload a file or directory as a new version, with its lineage")
    p.add_argument("path")
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--team", help="team owning a new model (needed when you are in several)")
    p.add_argument(
        "--dataset", action="append", metavar="ROLE=PATH_OR_URI", help="train, validation, test, evaluation"
    )
    p.add_argument("--metrics", metavar="FILE.json")
    p.add_argument("--params", metavar="FILE.json")
    p.add_argument("--parent", action="append", metavar="MODEL:VERSION")
    p.add_argument(
        "--relation",
        default="fine_tuned_from",
        choices=["fine_tuned_from", "distilled_from", "quantized_from", "derived_from"],
        help="how --parent relates (default fine_tuned_from)",
    )
    p.add_argument("--alias")
    p.add_argument("--description")
    p.add_argument("--entrypoint", help="the training script (default $MODELYARD_ENTRYPOINT)")
    p.add_argument("--code", metavar="DIR", help="the git checkout the model was trained from (default: cwd)")
    p.add_argument("--no-lineage", action="store_true", help="send no lineage document")

    p = add("pull", cmd_pull, "download a version and verify every SHA-256")
    p.add_argument("ref", metavar="NAME[@ALIAS|:VERSION]")
    p.add_argument("-o", "--output", required=True, metavar="DIR")

    p = add("ls", cmd_ls, "list models")
    p.add_argument("--team")
    p.add_argument("--limit", type=int, default=200)

    p = add("search", cmd_search, "search models by name, description and tags")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=50)

    p = add("show", cmd_show, "a model and its versions, or one version and its files")
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    p.add_argument("--limit", type=int, default=20)

    p = add(
        "promote", cmd_promote, "request a stage change (applied at once if the policy needs no approval)"
    )
    p.add_argument("ref", metavar="NAME:VERSION")
    p.add_argument("--to", required=True, choices=["none", "staging", "production", "archived"])
    p.add_argument("--comment")
    p.add_argument("--alias", help="alias to point at the version when applied")

    p = add("approve", cmd_approve, "approve a promotion request")
    p.add_argument("id", type=int)
    p.add_argument("--comment")

    p = add("lineage", cmd_lineage, "the provenance of a version")
    p.add_argument("ref", metavar="NAME:VERSION")

    p = add("exposure", cmd_exposure, "versions built with a package version, e.g. tensorflow '<2.11.1'")
    p.add_argument("package")
    p.add_argument("specifier")
    p.add_argument("--stage", choices=["none", "staging", "production", "archived"])

    p = add(
        "compare", cmd_compare, "what changed between two versions (data, code, params, metrics, packages)"
    )
    p.add_argument("a", metavar="NAME:A")
    p.add_argument("b", metavar="NAME:B")

    p = add("deploy", cmd_deploy, "deploy a version and wait until it serves")
    p.add_argument("ref", metavar="NAME[@ALIAS|:VERSION]")
    p.add_argument("--target", required=True, choices=["local", "docker"])
    p.add_argument("--name")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--timeout", type=float, default=600.0)

    p = add("predict", cmd_predict, "score an MLflow-scoring JSON body on a deployment")
    p.add_argument("deployment", metavar="DEPLOYMENT", help="id or name")
    p.add_argument("--json-file", "--input", dest="json_file", required=True, metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `predict DEPLOYMENT --json FILE`: --json takes a file there, elsewhere it is a flag.
    if argv[:1] == ["predict"] and "--json" in argv:
        i = argv.index("--json")
        if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            argv[i] = "--json-file"
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except APIError as exc:
        hint = " (check MODELYARD_TOKEN or run `modelyard login`)" if exc.status == 401 else ""
        _fail(f"{exc}{hint}")
        return 1
    except ModelyardError as exc:
        _fail(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _fail("interrupted (run the same command again to resume)")
        return 130
    except OSError as exc:
        _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
        return 1
    except Exception as exc:  # never a traceback for users; MODELYARD_DEBUG=1 shows it
        if os.environ.get("MODELYARD_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set MODELYARD_DEBUG=1 for details)")
        return 1


def _fail(message: str) -> None:
    sys.stderr.write("modelyard: error: " + " ".join(message.split()) + "\n")
