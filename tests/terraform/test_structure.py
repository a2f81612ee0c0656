"""Layout, typing, documentation and version pinning of every module and root."""

import re

import pytest

from .conftest import (
    ENVIRONMENTS,
    ENVIRONMENTS_ROOT,
    MODULES,
    MODULES_ROOT,
    TERRAFORM_ROOT,
    named_blocks,
    parse_dir,
    parse_file,
    terraform_dirs,
)

ALL_DIRS = [MODULES_ROOT / m for m in MODULES] + [ENVIRONMENTS_ROOT / e for e in ENVIRONMENTS]
IDS = [str(d.relative_to(TERRAFORM_ROOT)) for d in ALL_DIRS]
VERSION_CONSTRAINT = re.compile(r"^\s*(~>|>=|<=|=|>|<|!=)?\s*\d+\.\d+")


def test_expected_directories_are_the_whole_tree():
    assert sorted(terraform_dirs()) == sorted(ALL_DIRS)


@pytest.mark.parametrize("directory", ALL_DIRS, ids=IDS)
def test_every_file_parses(directory):
    files = sorted(directory.glob("*.tf"))
    assert files
    for path in files:
        parse_file(path)  # raises on a syntax error


@pytest.mark.parametrize("directory", ALL_DIRS, ids=IDS)
def test_standard_files_present(directory):
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (directory / name).is_file(), f"{directory.name} lacks {name}"


@pytest.mark.parametrize("directory", [ENVIRONMENTS_ROOT / e for e in ENVIRONMENTS], ids=ENVIRONMENTS)
def test_environment_root_files(directory):
    for name in ("backend.tf", "terraform.tfvars.example", "backend.hcl.example"):
        assert (directory / name).is_file(), f"{directory.name} lacks {name}"
    # The example tfvars is valid HCL.
    parse_file(directory / "terraform.tfvars.example")


@pytest.mark.parametrize("directory", ALL_DIRS, ids=IDS)
def test_every_variable_is_typed_and_described(directory):
    variables = named_blocks(parse_dir(directory), "variable")
    assert variables, f"{directory.name} declares no variables"
    for name, body in variables:
        assert "type" in body, f"{directory.name}: variable {name} has no type"
        description = body.get("description", "")
        assert isinstance(description, str) and len(description.strip()) >= 10, (
            f"{directory.name}: variable {name} has no real description"
        )


@pytest.mark.parametrize("directory", ALL_DIRS, ids=IDS)
def test_every_output_is_described(directory):
    outputs = named_blocks(parse_dir(directory), "output")
    assert outputs, f"{directory.name} declares no outputs"
    for name, body in outputs:
        description = body.get("description", "")
        assert isinstance(description, str) and description.strip(), (
            f"{directory.name}: output {name} has no description"
        )


@pytest.mark.parametrize("directory", ALL_DIRS, ids=IDS)
def test_versions_tf_pins_terraform_and_every_provider(directory):
    parsed = parse_file(directory / "versions.tf")
    [terraform] = parsed["terraform"]
    assert VERSION_CONSTRAINT.match(terraform["required_version"]), terraform["required_version"]
    [required] = terraform["required_providers"]
    providers = {k: v for k, v in required.items() if not k.startswith("__")}
    # Only a directory that uses no provider (pure computation) may pin none.
    assert providers or not _used_providers(directory), f"{directory.name} pins no provider"
    for name, spec in providers.items():
        assert spec["source"].startswith("hashicorp/"), f"{name}: {spec}"
        assert VERSION_CONSTRAINT.match(spec["version"]), f"{directory.name}: {name} has no version constraint"
        # An upper bound keeps a major provider release from arriving unreviewed.
        assert "<" in spec["version"] or "~>" in spec["version"], f"{directory.name}: {name} is unbounded"


def _used_providers(directory) -> set[str]:
    """Provider prefixes of the resource and data source types of one directory, plus its
    provider blocks and the modules it calls (which need providers passed in)."""
    parsed = parse_dir(directory)
    used = set()
    for kind in ("resource", "data"):
        for block in parsed.get(kind, []):
            used |= {t.split("_", 1)[0] for t in block if not t.startswith("__")}
    used.discard("terraform")  # terraform_data is built in
    for block in parsed.get("provider", []):
        used |= {k for k in block if not k.startswith("__")}
    return used


@pytest.mark.parametrize("directory", ALL_DIRS, ids=IDS)
def test_every_used_provider_is_pinned(directory):
    """A resource type's provider prefix must appear in required_providers."""
    [required] = parse_file(directory / "versions.tf")["terraform"][0]["required_providers"]
    pinned = {k for k in required if not k.startswith("__")}
    used = _used_providers(directory)
    assert used <= pinned, f"{directory.name}: unpinned providers {used - pinned}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_has_its_own_partial_backend(env):
    expected = {"aws": "s3", "gcp": "gcs", "azure": "azurerm", "multi-cloud": "s3"}[env]
    parsed = parse_file(ENVIRONMENTS_ROOT / env / "backend.tf")
    [terraform] = parsed["terraform"]
    [backend] = terraform["backend"]
    kinds = [k for k in backend if not k.startswith("__")]
    assert kinds == [expected]
    body = {k: v for k, v in backend[expected].items() if not k.startswith("__")}
    assert body == {}, "backend settings belong in backend.hcl (partial configuration), not in git"
    text = (ENVIRONMENTS_ROOT / env / "backend.tf").read_text()
    assert "-backend-config" in text, "backend.tf must document how to pass the partial configuration"


def test_modules_configure_no_providers():
    """Provider configuration lives only in the environment roots."""
    for module in MODULES:
        parsed = parse_dir(MODULES_ROOT / module)
        assert "provider" not in parsed, f"module {module} configures a provider"


def test_environment_module_sources_are_local_modules():
    for env in ENVIRONMENTS:
        for name, body in named_blocks(parse_dir(ENVIRONMENTS_ROOT / env), "module"):
            source = body["source"]
            assert source.startswith("../../modules/"), f"{env}.{name}: {source}"
            assert (ENVIRONMENTS_ROOT / env / source).resolve().is_dir(), f"{env}.{name}: {source} missing"
