"""`terraform fmt -check -recursive terraform/` must be clean."""

import os
import subprocess

from .conftest import REPO_ROOT, TERRAFORM_ROOT, terraform_binary


def test_terraform_fmt_is_clean():
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    # fmt needs no providers and never reaches the network.
    result = subprocess.run(
        [terraform_binary(), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_ROOT)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, f"terraform fmt found unformatted files:\n{result.stdout}{result.stderr}"
