"""checkov (scripts/tools/checkov, pinned) finds no failed check in the chart as rendered for each
source type (with the operator, the HPA and the tests pods); every skip carries its reason in the
manifest (checkov.io/skipN annotations) and is one of the reviewed ones."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests._kube import CHART, REPO, helm
from tests.charts._values import SOURCE_TYPES, values_for, write_values

# Reviewed: why each is skipped is in charts/wojak/templates/_helpers.tpl (wojak.checkovSkips)
ALLOWED_SKIPS = {"CKV_K8S_43", "CKV_K8S_11", "CKV_K8S_35", "CKV_K8S_38", "CKV_K8S_8", "CKV_K8S_9"}


@pytest.fixture(scope="module")
def checkov_report(kube_bin, tmp_path_factory):
    rendered = tmp_path_factory.mktemp("rendered")
    for source_type in SOURCE_TYPES:
        values = write_values(rendered, values_for(source_type, operator={"enabled": True}, autoscaling={"hpa": {"enabled": True}}),
                              f"values-{source_type}")  # fmt: skip
        manifest = helm(kube_bin, "template", "wojak", str(CHART), "--namespace", "trading", "-f", str(values)).stdout
        (rendered / f"{source_type}.yaml").write_text(manifest)
        values.unlink()
    result = subprocess.run(
        [str(REPO / "scripts" / "tools" / "checkov"), "--directory", str(rendered), "--framework", "kubernetes",
         "--output", "json", "--compact"],
        capture_output=True, text=True, timeout=1800, cwd=REPO,
    )  # fmt: skip
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["kubernetes"]
    return reports[0]


def test_checkov_reports_no_failed_check_on_the_rendered_chart(checkov_report):
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] >= 1000, summary  # seven renderings of every kind were scanned
    failed = [f"{c['check_id']} {c['check_name']} @ {c['resource']}" for c in checkov_report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)


def test_every_checkov_skip_is_reviewed_and_says_why(checkov_report):
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert check["check_id"] in ALLOWED_SKIPS, f"{check['check_id']} on {check['resource']} is not a reviewed skip"
        assert len(reason.strip()) >= 40, f"{check['check_id']} on {check['resource']} skipped without a reason"
