"""Generated input/output docs are current; READMEs cover what the brief asks."""

import re

import pytest
import tfdocs

from .conftest import ENVIRONMENTS, ENVIRONMENTS_ROOT, TERRAFORM_ROOT, terraform_dirs

DIRS = terraform_dirs()


@pytest.mark.parametrize("directory", DIRS, ids=[str(d.relative_to(TERRAFORM_ROOT)) for d in DIRS])
def test_generated_docs_are_up_to_date(directory):
    readme = directory / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert text.count(tfdocs.BEGIN) == 1 and text.count(tfdocs.END) == 1
    assert tfdocs.inject(text, tfdocs.render(directory)) == text, (
        f"{readme.relative_to(TERRAFORM_ROOT)} is stale: run python scripts/tools/tfdocs.py"
    )


@pytest.mark.parametrize("directory", DIRS, ids=[str(d.relative_to(TERRAFORM_ROOT)) for d in DIRS])
def test_readme_has_prose_before_the_generated_block(directory):
    text = (directory / "README.md").read_text(encoding="utf-8")
    prose = text.split(tfdocs.BEGIN)[0]
    assert prose.startswith("# "), "README needs a title"
    assert len(prose.split()) >= 40, "README needs a real description above the generated tables"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_readme_covers_cost_apply_and_destroy(env):
    text = (ENVIRONMENTS_ROOT / env / "README.md").read_text(encoding="utf-8").lower()
    assert "cost" in text and re.search(r"\$\s?\d", text), "rough monthly cost missing"
    assert "terraform apply" in text
    assert "terraform destroy" in text
    assert "-backend-config" in text


def test_terraform_readme_states_the_static_checks():
    text = (TERRAFORM_ROOT / "README.md").read_text(encoding="utf-8")
    assert "terraform validate" in text and "cannot" in text
    for tool in ("terraform fmt", "python-hcl2", "checkov", "tfdocs.py", "python -m pytest tests/terraform"):
        assert tool in text, tool


def test_tfdocs_check_mode_detects_staleness(tmp_path):
    module = tmp_path / "m"
    module.mkdir()
    (module / "variables.tf").write_text('variable "x" {\n  type        = string\n  description = "An x."\n}\n')
    (module / "README.md").write_text("# m\n")
    assert tfdocs.main(["--check", str(module)]) == 1
    assert tfdocs.main([str(module)]) == 0
    assert tfdocs.main(["--check", str(module)]) == 0
    assert "| x | An x. | `string` | n/a | yes |" in (module / "README.md").read_text()
