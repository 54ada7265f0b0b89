"""The layer rules of docs/ARCHITECTURE.md, checked on every run so the document stays true.

Imports are read with `ast` (also the lazy ones inside functions): a rule broken only at run time is still
broken. A new module goes in a layer below; a new top-level module that is in no layer fails the test, so the
author decides where it belongs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "echopanel_setup"

# Foundations: values, errors, paths, the knowledge file, output primitives. They import only each other.
FOUNDATIONS = {
    "__init__",
    "errors",
    "paths",
    "output",
    "url",
    "ports",
    "knowledge",
    "envconfig",
    "ui",
    "versions",
    "env",
    "vllm_client",
    "fileio",
    "proc",
}
# Readers: what is on this machine and in EchoPanel's checkout, collected once into a Facts snapshot.
READERS = {"facts", "echopanel", "metrics"}
# Checks: pure functions of Facts.
CHECKS = {"checks"}
# Commands: each a `run(opts) -> Result` and its renderer. They may use everything below, and other commands' run().
COMMANDS = {
    "doctor",
    "report",
    "explain",
    "explain_render",
    "install",
    "serve",
    "smoke",
    "provider",
    "configure",
    "setup_flow",
    "setup_render",
    "setup_voxtral_c",
    "watch",
    "tunnel",
}
ENTRY = {"cli", "__main__"}  # cli/ is a package: a module per command, shared options, the app, main()

ALLOWED = {
    "foundations": FOUNDATIONS,
    "readers": FOUNDATIONS | READERS,
    "checks": FOUNDATIONS | READERS | CHECKS,
    "commands": FOUNDATIONS | READERS | CHECKS | COMMANDS,
    "entry": FOUNDATIONS | READERS | CHECKS | COMMANDS | ENTRY,
}


def layer(unit: str) -> str:
    for name, members in (
        ("foundations", FOUNDATIONS),
        ("readers", READERS),
        ("checks", CHECKS),
        ("commands", COMMANDS),
        ("entry", ENTRY),
    ):
        if unit in members:
            return name
    raise AssertionError(
        f"echopanel_setup/{unit} is in no layer: add it to tests/test_architecture.py and docs/ARCHITECTURE.md"
    )


def unit_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_units(path: Path) -> set[str]:
    """Top-level units of echopanel_setup this file imports (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "echopanel_setup":
                names = [f"echopanel_setup.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {_unit(n.split(".")[1]) for n in names if n.startswith("echopanel_setup.")}
    return found


def _unit(name: str) -> str:
    """`from echopanel_setup import __version__` names an attribute of the package, not a module."""
    is_module = (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()
    return name if is_module else "__init__"


def sources() -> list[Path]:
    # provider/templates/ is code we install into EchoPanel's checkout: it never imports us.
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "templates" not in p.parts]


def test_every_module_imports_only_its_own_layer_and_below() -> None:
    broken = []
    for path in sources():
        unit = unit_of(path)
        allowed = ALLOWED[layer(unit)]
        for target in imported_units(path) - {unit}:
            if target not in allowed:
                broken.append(f"{path.relative_to(PACKAGE.parent)} ({layer(unit)}) imports {target} ({layer(target)})")
    assert not broken, "\n".join(broken)


def test_templates_we_install_into_echopanel_import_nothing_of_ours() -> None:
    for path in PACKAGE.rglob("templates/*.py"):
        assert not imported_units(path), f"{path} imports echopanel_setup: EchoPanel's Python does not have it"


def test_no_module_imports_the_cli() -> None:
    offenders = [str(p) for p in sources() if unit_of(p) not in ENTRY and "cli" in imported_units(p)]
    assert not offenders, offenders


def test_checks_helpers_stay_inside_doctor() -> None:
    """`checks/common.py` holds the checks' own helpers; other commands use facts' and knowledge's methods instead
    (serve reached into it for the visible GPUs and the alternatives, which are now `GpuFacts.visible()` and
    `Knowledge.alternatives()`)."""
    offenders = []
    for path in sources():
        if unit_of(path) in {"checks", "doctor"}:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if "echopanel_setup.checks.common" in modules:
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert not offenders, offenders


def _reads_environment_for(node: ast.AST, names: set[str]) -> bool:
    """`os.environ.get(X)`, `os.getenv(X)` or `os.environ[X]`, X one of `names` (a string, or a constant named so)."""

    def named(arg: ast.AST) -> bool:
        if isinstance(arg, ast.Constant):
            return arg.value in names
        return (isinstance(arg, ast.Attribute) and arg.attr in names) or (isinstance(arg, ast.Name) and arg.id in names)

    if isinstance(node, ast.Call) and node.args:
        chain = ast.unparse(node.func)
        return chain.endswith(("environ.get", "getenv")) and named(node.args[0])
    if isinstance(node, ast.Subscript):
        return ast.unparse(node.value).endswith("environ") and named(node.slice)
    return False


def test_our_own_environment_variables_are_read_only_at_the_edge() -> None:
    """Issue 14: the variables echopanel-setup itself acts on (env.py) are read in cli/ (through env.py) and passed in
    options; a module deep inside never reads them (watch read VLLM_API_KEY in its runner)."""
    ours = {"VLLM_API_KEY", "SSL_CERT_FILE"}
    offenders = []
    for path in sources():
        if unit_of(path) in ENTRY or path.name == "env.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [
            f"{path.relative_to(PACKAGE.parent)}:{n.lineno}" for n in ast.walk(tree) if _reads_environment_for(n, ours)
        ]
    assert not offenders, offenders


def test_the_layer_diagram_names_every_module() -> None:
    """docs/ARCHITECTURE.md's diagram is where a reader looks for a module's layer: every unit placed in a layer
    here is named in that layer's lines there (ui, versions, env and vllm_client were missing)."""
    doc = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    diagram = doc.split("## Layers", 1)[1].split("```", 2)[1]
    rows: dict[str, str] = {}
    current = ""
    for line in diagram.splitlines():
        head = line[:13].strip()
        current = head or current
        rows[current] = rows.get(current, "") + line[13:]
    missing = []
    for name, members in (
        ("foundations", FOUNDATIONS),
        ("readers", READERS),
        ("checks", CHECKS),
        ("commands", COMMANDS),
    ):
        named = set(re.findall(r"([\w]+)(?:\.py|/)", rows.get(name, "")))
        missing += [f"{name}: {unit}" for unit in sorted(members - named - {"__init__"})]
    assert not missing, missing


def test_a_command_uses_another_commands_renderer_only_where_the_document_says() -> None:
    """docs/ARCHITECTURE.md: a command may call another command's run(), never its renderer; the one exception is
    setup asking configure's questions through configure's own UI."""
    allowed = {("setup_flow", "configure")}
    found = set()
    for path in sources():
        unit = unit_of(path)
        if layer(unit) != "commands":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("echopanel_setup."):
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                for module in modules:
                    parts = module.split(".")
                    target = _unit(parts[1])
                    if target != unit and layer(target) == "commands" and parts[-1].endswith("render"):
                        found.add((unit, target))
    assert found <= allowed, sorted(found - allowed)


def test_exit_codes_beyond_pass_and_fail_are_named() -> None:
    """Issue 14: `EXIT_EXTERNAL` instead of a literal 3 (and 2, 4, 130: errors.py names them). Where a result works
    out its exit code (`def exit_code`, or an assignment to `.exit_code`), no such number is spelled out."""
    named = {2, 3, 4, 130}
    offenders = []
    for path in sources():
        if path.name == "echopanel_harness.py":  # runs in EchoPanel's Python: it cannot import errors.py
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            scopes: list[ast.AST] = []
            if isinstance(node, ast.FunctionDef) and node.name == "exit_code":
                scopes = node.body  # type: ignore[assignment]
            elif isinstance(node, ast.Assign) and any("exit_code" in ast.unparse(t) for t in node.targets):
                scopes = [node.value]
            for scope in scopes:
                for inner in ast.walk(scope):
                    if isinstance(inner, ast.Constant) and type(inner.value) is int and inner.value in named:
                        offenders.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno}")
    assert not offenders, offenders


def test_every_commands_options_are_keyword_only_and_frozen() -> None:
    """docs/ARCHITECTURE.md and issue 14: a command's options are a keyword-only frozen dataclass built by cli/ — a
    positional build silently swaps two flags of the same type (cli/provider.py built ProviderOptions positionally;
    ServeOptions could be changed after validation), and a key or token in them never shows in their repr."""
    import dataclasses
    import importlib

    loose = []
    for path in sources():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.ClassDef) and node.name.endswith("Options")):
                continue
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            cls = getattr(importlib.import_module(module), node.name)
            if not dataclasses.is_dataclass(cls):
                continue
            fields = dataclasses.fields(cls)
            if not cls.__dataclass_params__.frozen or not all(f.kw_only for f in fields):  # type: ignore[attr-defined]
                loose.append(f"{module}.{node.name}")
            loose += [
                f"{module}.{node.name}.{f.name} (in repr)"
                for f in fields
                if f.name.endswith(("key", "token")) and f.repr
            ]
    assert not loose, loose
