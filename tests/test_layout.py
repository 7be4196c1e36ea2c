"""The house rules of the layout (docs/architecture.md, "The packages"): who may import whom, what a
serving process loads, one home for each shared table, and a package map that matches the tree."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from harness import start_server, wait_ready

import cnnserve
from cnnserve.datatypes import DATATYPES

ROOT = Path(__file__).resolve().parents[1]
# Each folder and the name it imports as (setup.py maps the folders into the one namespace);
# bench/ is the repository's benchmark scripts, run from a checkout and never installed.
PACKAGES = {
    "cnnserve": "cnnserve",
    "builders": "cnnserve.builders",
    "server": "cnnserve.server",
    "client": "cnnserve.client",
    "bench": "bench",
}
# What each package may not import: the audiences stay apart.
FORBIDDEN: dict[str, set[str]] = {
    "cnnserve": {"cnnserve.server", "cnnserve.client", "cnnserve.builders", "bench", "torch", "matplotlib",
                 "sklearn", "onnx"},
    "builders": {"cnnserve.server", "cnnserve.client", "bench", "matplotlib"},
    "server": {"cnnserve.client", "cnnserve.builders", "bench", "torch", "matplotlib", "sklearn", "onnx"},
    "client": {"cnnserve.server", "cnnserve.builders", "bench", "torch", "sklearn", "onnx"},
    "bench": {"cnnserve.server", "cnnserve.builders", "torch", "matplotlib"},
}  # fmt: skip
# Optional imports, made inside a function that does without them when they are missing.
OPTIONAL: dict[str, set[str]] = {"builders/go_training/chart.py": {"matplotlib"}}
# Heavy or foreign modules a started server process must never load.
NOT_ON_THE_SERVING_PATH = ("torch", "matplotlib", "sklearn", "onnx", "onnxscript", "cnnserve.builders",
                           "cnnserve.client", "server", "client", "builders")  # fmt: skip


def within(name: str, prefixes: Iterable[str]) -> bool:
    """Whether the dotted module ``name`` is one of ``prefixes`` or inside one of them."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "generated" not in path.parts:
                yield path


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside functions, by full dotted name
    (``from a import b`` counts as ``a`` and ``a.b``: ``b`` may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_its_audience_needs(package: str) -> None:
    found = [(path, name) for path in sources(package) for name in imported(path)]
    assert found, f"no imports read under {package}/"  # the check itself must see something
    wrong = sorted(
        f"{p.relative_to(ROOT)}: {n}"
        for p, n in found
        if within(n, FORBIDDEN[package]) and not within(n, OPTIONAL.get(str(p.relative_to(ROOT)), set()))
    )
    assert not wrong, f"{package}/ may not import {sorted(FORBIDDEN[package])}: {wrong}"


def test_every_import_uses_the_one_namespace() -> None:
    """No module imports the folders by their old top-level names (``server.app``, ``builders``):
    installed, those names do not exist."""
    old = ("server", "client", "builders")
    found = [(path, name) for path in [*sources(*PACKAGES), *sorted((ROOT / "tests").rglob("*.py"))]
             for name in imported(path)]  # fmt: skip
    assert len(found) > 500
    wrong = sorted(f"{p.relative_to(ROOT)}: {n}" for p, n in found if within(n, old))
    assert not wrong
    # Nor by a module path in a string (importlib, ``-m`` targets, the CLI's table, resources): a
    # checkout's folders still answer to the old names, which would hide the mistake until installed.
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for top in old for p in (ROOT / top).rglob("*.py")}  # fmt: skip
    assert len(modules) > 40  # the check sees every module of the three folders
    path_like = re.compile(r"((?:server|client|builders)(?:\.\w+)*)(\.|:\w+)?")
    named = []
    for path in [*sources(*PACKAGES), *sorted((ROOT / "tests").rglob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_arguments = {
            id(call.args[0])
            for call in ast.walk(tree)
            if isinstance(call, ast.Call)
            and call.args
            and getattr(call.func, "attr", getattr(call.func, "id", "")) in ("import_module", "files")
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = path_like.fullmatch(node.value)
                # A bare "server" is a word (a JSON key, a certificate's name) except as a module argument.
                if (
                    match
                    and match[1] in modules
                    and ("." in node.value or ":" in node.value or id(node) in module_arguments)
                ):
                    named.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not named


def test_a_started_server_loads_no_torch_matplotlib_builders_or_client(small_repo: Path) -> None:
    """The real server, started as `cnnserve serve` would be, with every RPC family exercised once
    (lazy imports count): PYTHONPROFILEIMPORTTIME makes Python name every module it imports."""
    server = start_server(small_repo, env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        wait_ready(server.grpc_address)
        with triton.InferenceServerClient(server.grpc_address) as client:
            assert client.get_model_metadata("lenet5").name == "lenet5"
    finally:
        assert server.terminate() == 0, server.output
    modules = {m["name"] for m in map(re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(?P<name>\S+)").match,
                                      server.lines) if m}  # fmt: skip
    # Positive controls: the profile was read, and it shows what serving does need.
    assert {"onnxruntime", "grpc", "numpy", "cnnserve.server.dataplane", "cnnserve.codec"} <= modules
    loaded = sorted(m for m in modules if within(m, NOT_ON_THE_SERVING_PATH))
    assert not loaded, f"the serving process imported {loaded}"


def _string_tables(path: Path) -> Iterator[set[str]]:
    """The string constants of every literal dict (its keys), tuple, list and set in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
        if isinstance(node, ast.Dict | ast.Tuple | ast.List | ast.Set) and items:
            yield {item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)}


def test_the_v2_datatype_table_exists_once() -> None:
    names = set(DATATYPES)
    homes = sorted(
        str(path.relative_to(ROOT))
        for path in sources(*PACKAGES)
        if any(len(table & names) >= len(names) - 2 for table in _string_tables(path))
    )
    assert homes == ["cnnserve/datatypes.py"]


def _literal_homes(*values: str) -> dict[str, list[str]]:
    homes: dict[str, list[str]] = {value: [] for value in values}
    for path in sources(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in homes:
                homes[node.value].append(str(path.relative_to(ROOT)))
    return {value: sorted(set(paths)) for value, paths in homes.items()}


def test_the_repository_format_is_spelled_in_one_module() -> None:
    # config.json's own field names, written and read in cnnserve/repository.py only; Triton's
    # rendering of an entry shares one of them, as Triton names it.
    homes = _literal_homes("config_version", "dynamic_batching", "preferred_batch_sizes", "model.onnx")
    allowed = {"dynamic_batching": ["cnnserve/repository.py", "cnnserve/triton_config.py"]}
    wrong = {field: paths for field, paths in homes.items()
             if paths != allowed.get(field, ["cnnserve/repository.py"])}  # fmt: skip
    assert not wrong


def test_the_client_channel_options_are_set_in_one_place() -> None:
    homes = _literal_homes("grpc.max_send_message_length", "grpc.max_receive_message_length")
    for paths in homes.values():
        # One for the clients, one for the server's own limit (a setting).
        assert paths == ["client/channel.py", "server/grpc/server.py"]


def test_one_version_string_from_the_package_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cnnserve.__version__ == project["version"]
    spelled = sorted(
        str(path.relative_to(ROOT)) for path in sources(*PACKAGES) if project["version"] in path.read_text()
    )
    assert spelled == []


def test_a_serving_install_needs_no_torch_or_matplotlib() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}

    serving = names(project["dependencies"])
    assert {"onnxruntime-gpu", "grpcio", "numpy", "pillow", "prometheus-client"} <= serving
    assert not serving & {"torch", "onnx", "onnxscript", "scikit-learn", "matplotlib"}
    extras = {extra: names(reqs) for extra, reqs in project["optional-dependencies"].items()}
    assert {"torch", "onnx", "onnxscript", "scikit-learn"} <= extras["export"]
    assert extras["compare"] == {"matplotlib"}
    assert "cnnserve[export,compare,docs]" in project["optional-dependencies"]["dev"]  # make test has everything


def _package_map() -> dict[str, str]:
    """The docs' package map: '- `path/`: what it does ...' lines of the architecture page's "The packages"."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    section = page.split("## The packages", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^- `([a-z_/.]+)`:? (.*)$", section, re.MULTILINE))


def test_the_docs_package_map_matches_the_tree() -> None:
    listed = _package_map()
    assert listed, "docs/architecture.md has no package map"
    missing = sorted(path for path in listed if not (ROOT / path).exists())
    assert not missing, f"the docs' package map names what is not in the tree: {missing}"
    packages = sorted(
        f"{init.parent.relative_to(ROOT)}/"
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
        if "generated" not in init.parent.relative_to(ROOT).parts[:-1]  # the stubs' own subpackages
    )
    unlisted = sorted(set(packages) - set(listed))
    assert not unlisted, f"packages missing from the docs' package map: {unlisted}"
