"""EchoPanel's contract, read from its files without importing them (ast and text only).

What we need to know to configure and verify EchoPanel is in its source: the environment variables each ASR
provider reads and their defaults, the endpoints it calls, the model name it sends, whether it sends credentials,
its third-party imports, the backend's port in `server/main.py`, and the `.env` loader that reads its settings.
Known provider variants are recognised by content against the knowledge file (`[echopanel.variants.*]`), which says
whether each can work and why; an unknown variant is described as read and never guessed at. Importing EchoPanel
would run its code in our process (and needs its dependencies), so nothing here executes a line of it.
"""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
from pathlib import Path

from echopanel_setup import knowledge, proc
from echopanel_setup.echopanel.keys import SELECTOR, VOXTRAL_PROVIDERS
from echopanel_setup.facts.model import Contract, DotenvLoader, EnvRead, GitState, ProviderContract

PROVIDERS_DIR = "server/services"
MAIN = "server/main.py"
REGISTRY_FILE = "server/services/asr_providers.py"
PRELOADER = "server/services/model_preloader.py"
_GIT_TIMEOUT_S = 3.0


_REGISTER = re.compile(rb"""Registry\.register\(\s*["']([^"']+)["']""")


def read(checkout: Path, wanted: tuple[str, ...] | list[str] = VOXTRAL_PROVIDERS) -> Contract:
    """The contract of the checkout at `checkout` (a valid one: see discover.why_not).

    Every provider file is scanned for the names it registers; only those in `wanted` (the Voxtral ones and the one
    EchoPanel is set to) are parsed in full, which keeps doctor fast on a checkout with many providers.
    """
    contract = Contract()
    main = _parse(checkout / MAIN, contract)
    if main is not None:
        contract.backend_port = _backend_port(main)
        contract.dotenv = _dotenv_loader(main)
    registry = _parse(checkout / REGISTRY_FILE, contract)
    if registry is not None:
        contract.default_provider = _getenv_default(registry, SELECTOR)
    preloader_path = checkout / PRELOADER
    if preloader_path.is_file() and (preloader := _parse(preloader_path, contract)) is not None:
        contract.fallback_provider = _assigned_selector(preloader)
    for path in sorted((checkout / PROVIDERS_DIR).glob("provider_*.py")):
        try:
            names = [m.decode("utf-8", errors="replace") for m in _REGISTER.findall(path.read_bytes())]
        except OSError as exc:
            contract.errors.append(f"{path.name}: {exc.strerror or exc}")
            continue
        contract.registered.extend(names)
        if any(name in wanted for name in names) and (tree := _parse(path, contract)) is not None:
            contract.providers.extend(_providers(tree, path, checkout))
    return contract


def _parse(path: Path, contract: Contract) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        contract.errors.append(f"{path.name}: {type(exc).__name__}: {exc}")
        return None


def _call_name(node: ast.Call) -> str:
    """`os.environ.setdefault` for a call of that attribute chain, "" for anything else."""
    parts = []
    target: ast.expr = node.func
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name):
        parts.append(target.id)
        return ".".join(reversed(parts))
    return ""


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level `NAME = literal` assignments, to resolve defaults and model names given by name."""
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _literal(node: ast.expr | None, constants: dict[str, object]) -> str | None:
    """The string value of a literal, a module constant, or `str(...)` of either; None when computed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return str(node.value)
    if isinstance(node, ast.Name) and node.id in constants:
        return str(constants[node.id])
    if isinstance(node, ast.Call) and _call_name(node) == "str" and len(node.args) == 1:
        return _literal(node.args[0], constants)
    return None


_ENV_GETTERS = ("os.getenv", "os.environ.get", "getenv", "environ.get")


def _env_reads(tree: ast.AST, constants: dict[str, object]) -> list[EnvRead]:
    reads: dict[str, EnvRead] = {}
    for node in ast.walk(tree):
        key_node: ast.expr | None = None
        default: ast.expr | None = None
        if isinstance(node, ast.Call) and _call_name(node) in _ENV_GETTERS and node.args:
            key_node = node.args[0]
            default = node.args[1] if len(node.args) > 1 else None
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            value = node.value
            if isinstance(value, ast.Attribute) and value.attr == "environ":
                key_node = node.slice
        key = _literal(key_node, constants) if key_node is not None else None
        if key is None or key in reads:
            continue
        literal = _literal(default, constants)
        expr = ast.unparse(default) if default is not None and literal is None else None
        reads[key] = EnvRead(key, literal, expr)
    return list(reads.values())


def _strings(tree: ast.AST) -> list[str]:
    """Every string and bytes constant, f-string parts included (an f-string's literal parts are Constants)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            found.append(node.value.decode("utf-8", errors="replace"))
    return found


_PATH = re.compile(r"/(?:v1/[A-Za-z0-9_./-]*[A-Za-z0-9_]|health)")


def _endpoints(strings: list[str]) -> list[str]:
    """URL paths the code appends to its base URL: whole constants such as the tail of f"{url}/v1/models" (prose in
    docstrings and log messages does not count)."""
    found = []
    for text in strings:
        if _PATH.fullmatch(text) and text not in found:
            found.append(text)
    return found


def _model(tree: ast.Module, constants: dict[str, object]) -> str | None:
    """The value sent under "model" in a request body (a dict literal), resolved through module constants."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "model":
                    return _literal(value, constants)
    return None


def _deps(tree: ast.AST) -> list[str]:
    """Third-party top-level modules imported anywhere in the file (a lazy import inside a method counts)."""
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("server", "__future__") and top not in found:
                found.append(top)
    return found


def _providers(tree: ast.Module, path: Path, checkout: Path) -> list[ProviderContract]:
    """One contract per `ASRProviderRegistry.register("name", Class)` in the file."""
    names = [
        _literal(node.args[0], {})
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _call_name(node).endswith("Registry.register") and node.args
    ]
    if not names:
        return []
    constants = _constants(tree)
    strings = _strings(tree)
    text = path.read_bytes()
    base = ProviderContract(
        name="",
        file=path.relative_to(checkout).as_posix(),
        sha256=hashlib.sha256(text).hexdigest(),
        env=_env_reads(tree, constants),
        endpoints=_endpoints(strings),
        model=_model(tree, constants),
        auth=any(s.lower() in ("authorization", "x-api-key") or s.startswith("Bearer ") for s in strings),
        deps=_deps(tree),
        audio_format=next((s.split(",")[0] for s in strings if s.startswith("data:audio/")), None),
    )
    contracts = []
    for name in names:
        if name is None:
            continue
        contract = ProviderContract(**{**base.__dict__, "name": name})
        contract.variant = recognise(contract, strings)
        contracts.append(contract)
    return contracts


def recognise(provider: ProviderContract, strings: list[str]) -> str | None:
    """The id of the known variant whose markers all appear in the file and whose reads match, else None."""
    keys = sorted(e.key for e in provider.env)
    for variant_id, variant in knowledge.load().echopanel.variants.items():
        if variant.provider != provider.name or sorted(variant.reads) != keys:
            continue
        if all(any(marker in s for s in strings) for marker in variant.markers):
            return variant_id
    return None


def variant_info(variant_id: str | None) -> knowledge.ProviderVariant | None:
    """The knowledge file's entry for a variant id (works, reason, fix, deps, source, ...)."""
    return knowledge.load().echopanel.variants.get(variant_id) if variant_id is not None else None


def _backend_port(tree: ast.Module) -> int | None:
    """The `port=` of the `uvicorn.run(...)` call in server/main.py (EchoPanel's hard-coded 8000)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node).endswith("run"):
            for kw in node.keywords:
                if kw.arg == "port" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, int):
                    return kw.value.value
    return None


def _dotenv_loader(tree: ast.Module) -> DotenvLoader | None:
    """The top-level function that names ".env" and sets the environment from it, with the rules it implements."""
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        strings = _strings(node)
        calls = {_call_name(n) for n in ast.walk(node) if isinstance(n, ast.Call)}
        if ".env" not in strings or not any(c.startswith("os.environ") for c in calls):
            continue
        environment_wins = "os.environ.setdefault" in calls
        strips_export = "export " in strings
        strips_quotes = any(_is_inner_slice(n) for n in ast.walk(node))
        skips_empty = any(isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not) for n in ast.walk(node))
        known = environment_wins and strips_export and strips_quotes and skips_empty
        return DotenvLoader(node.name, environment_wins, strips_export, strips_quotes, skips_empty, known)
    return None


def _is_inner_slice(node: ast.AST) -> bool:
    """`value[1:-1]`: one pair of wrapping quotes removed."""
    if not (isinstance(node, ast.Slice) and isinstance(node.lower, ast.Constant) and node.lower.value == 1):
        return False
    upper = node.upper
    return isinstance(upper, ast.UnaryOp) and isinstance(upper.operand, ast.Constant) and upper.operand.value == 1


def _getenv_default(tree: ast.Module, key: str) -> str | None:
    return next((e.default for e in _env_reads(tree, _constants(tree)) if e.key == key), None)


def _assigned_selector(tree: ast.Module) -> str | None:
    """`os.environ["ECHOPANEL_ASR_PROVIDER"] = "x"` in the preloader: the provider it silently falls back to."""
    found = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Attribute)
                    and target.value.attr == "environ"
                    and _literal(target.slice, {}) == SELECTOR
                ):
                    found = str(node.value.value)
    return found


def git_state(checkout: Path, timeout_s: float = _GIT_TIMEOUT_S) -> GitState:
    """Commit and dirty state when `checkout` is a git work tree and git exists; empty otherwise."""
    if not (checkout / ".git").exists():
        return GitState()
    try:
        head = proc.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], timeout=timeout_s)
        status = proc.run(["git", "-C", str(checkout), "status", "--porcelain"], timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return GitState()
    if head.returncode != 0:
        return GitState()
    changed = [line[3:] for line in status.stdout.splitlines() if len(line) > 3] if status.returncode == 0 else []
    return GitState(head.stdout.strip(), bool(changed) if status.returncode == 0 else None, changed[:20])
