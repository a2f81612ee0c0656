"""One writer per account across clouds (issue 9): the multi-cloud XDCR layout.

Every cluster writes only the Couchbase scope named after it (its engines run with
WOJAK_ENGINE_CLUSTER = that name); XDCR carries each scope one way, from its one writer to
the peers, where it is a read-only replica. Nothing is replicated both ways, so the store's
single-cluster guarantees (insert as the arbiter of a new order, CAS on positions and
accounts) hold across clouds.

Two kinds of checks:

- static, with python-hcl2, like the rest of tests/terraform: how the multi-cloud root, the
  stacks, the couchbase module and the release are wired;
- evaluated: modules/xdcr-topology (and the locals of modules/couchbase and
  modules/wojak-release) need no provider, so ``terraform console`` evaluates them offline;
  every fail-over state the topology accepts keeps one writer per scope, and the states
  that could create a second writer are refused.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    ENVIRONMENTS_ROOT,
    MODULES_ROOT,
    TERRAFORM_ROOT,
    all_resources,
    named_blocks,
    parse_dir,
    resources,
    terraform_binary,
)

MULTI_CLOUD = ENVIRONMENTS_ROOT / "multi-cloud"
TOPOLOGY = MODULES_ROOT / "xdcr-topology"
STACKS = {"aws": MODULES_ROOT / "aws-stack", "gcp": MODULES_ROOT / "gcp-stack"}


# ---------------------------------------------------------------- helpers ---

def _env() -> dict[str, str]:
    return dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1", TF_INPUT="0")


def _console(directory: Path, expression: str, tfvars: dict) -> subprocess.CompletedProcess:
    """Evaluate one expression in ``directory`` with ``terraform console`` (no provider, no
    network, no state)."""
    (directory / "test.auto.tfvars.json").write_text(json.dumps(tfvars))
    return subprocess.run(
        [terraform_binary(), "console"],
        input=expression + "\n",
        cwd=directory,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )


def _value(result: subprocess.CompletedProcess):
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr[-3000:]
    # console prints jsonencode()'s string as an HCL string literal: JSON twice.
    return json.loads(json.loads(result.stdout.strip().splitlines()[-1]))


def _no_ansi(text: str) -> str:
    """Terraform's diagnostics as plain words: no colours, no box drawing, one space."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m|[│╷╵]", " ", text).split())


def _state(clusters, engines_stopped=(), isolated=(), promoted=None) -> dict:
    # Every field given, so that a map of states has one element type.
    return {
        "clusters": list(clusters),
        "failover": {
            "engines_stopped": sorted(engines_stopped),
            "isolated": sorted(isolated),
            "promoted": dict(promoted or {}),
        },
    }


def _allowed(state: dict) -> bool:
    """The fail-over rules, as terraform/README.md states them."""
    clusters, f = state["clusters"], state["failover"]
    promoted, stopped, isolated = f["promoted"], set(f["engines_stopped"]), set(f["isolated"])
    return all(
        scope != survivor
        and scope in stopped  # fence the old home first
        and survivor not in promoted  # no chains
        and survivor not in stopped | isolated
        and scope in clusters and survivor in clusters
        for scope, survivor in promoted.items()
    )


def _all_states(clusters) -> list[dict]:
    subsets = [set(c) for n in range(len(clusters) + 1) for c in itertools.combinations(clusters, n)]
    pairs = [(s, t) for s in clusters for t in clusters if s != t]
    promotions = [dict(c) for n in range(3) for c in itertools.combinations(pairs, n)]
    return [
        _state(clusters, stopped, isolated, promoted)
        for stopped in subsets
        for isolated in subsets
        for promoted in promotions
    ]


@pytest.fixture(scope="module")
def topology_harness(tmp_path_factory) -> Path:
    """A root calling a copy of modules/xdcr-topology once per state (for_each)."""
    root = tmp_path_factory.mktemp("topology")
    shutil.copytree(TOPOLOGY, root / "topology", ignore=shutil.ignore_patterns(".terraform*"))
    (root / "main.tf").write_text(
        'variable "states" {\n  type = map(any)\n}\n\n'
        'module "t" {\n  source   = "./topology"\n  for_each = var.states\n  topology = each.value\n}\n'
    )
    init = subprocess.run(
        [terraform_binary(), "init", "-backend=false", "-input=false", "-no-color"],
        cwd=root, capture_output=True, text=True, env=_env(), timeout=120,
    )  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr  # local module only: no download
    return root


def _evaluate(harness: Path, states: dict[str, dict]) -> dict[str, dict]:
    return _value(_console(harness, "jsonencode({for k, m in module.t : k => m})", {"states": states}))


def _refusal(harness: Path, state: dict) -> str:
    result = _console(harness, "jsonencode(module.t)", {"states": {"x": state}})
    text = _no_ansi(result.stdout + result.stderr)
    assert "Invalid value for" in text, f"accepted: {state}"
    return text


def _assert_one_writer_per_scope(state: dict, out: dict) -> None:
    clusters, f = state["clusters"], state["failover"]
    writers = out["writers"]
    assert sorted(writers) == sorted(clusters)
    for scope, writer in writers.items():
        assert writer == f["promoted"].get(scope, scope), (scope, writer)
        # Exactly one cluster writes each scope; every other one holds a replica of it.
        assert [c for c in clusters if scope in out["written_scopes"][c]] == [writer]
        assert sorted(c for c in clusters if scope in out["replica_scopes"][c]) == sorted(set(clusters) - {writer})
    for cluster in clusters:
        assert sorted(out["written_scopes"][cluster] + out["replica_scopes"][cluster]) == sorted(clusters)
        # The cluster's own release (WOJAK_ENGINE_CLUSTER = its name) runs only while it
        # writes its home scope and is not fenced.
        if out["engines_enabled"][cluster]:
            assert writers[cluster] == cluster and cluster not in f["engines_stopped"]
    for scope in f["promoted"]:
        assert out["engines_enabled"][scope] is False, f"{scope} promoted while its old home still runs engines"

    flows = set()
    for r in out["replications"]:
        source, target, scopes = r["source"], r["target"], r["scopes"]
        assert source != target
        # Never an empty mapping (XDCR would fall back to implicit mapping of everything) ...
        assert scopes, r
        # ... only scopes the source writes, never one the target writes.
        assert scopes == out["written_scopes"][source], r
        assert all(writers[s] == source for s in scopes), r
        assert not set(scopes) & set(out["written_scopes"][target]), r
        assert r["paused"] == (source in f["isolated"] or target in f["isolated"]), r
        flows |= {(source, target, s) for s in scopes}
    # No scope travels both ways between two clusters.
    assert not {(t, s, scope) for s, t, scope in flows} & flows, flows
    # One replication per writing source and peer (XDCR allows one per bucket pair).
    expected = {(s, t) for s in clusters for t in clusters if s != t and out["written_scopes"][s]}
    assert {(r["source"], r["target"]) for r in out["replications"]} == expected
    for target, admitted in out["xdcr_admitted"].items():
        assert sorted(admitted) == sorted(c for c in clusters if c != target and c not in f["isolated"])


# ------------------------------------------------ the topology, evaluated ---

def test_every_accepted_failover_state_keeps_one_writer_per_scope(topology_harness):
    candidates = _all_states(["aws", "gcp"]) + [
        _state(["aws", "gcp", "azure"]),
        _state(["aws", "gcp", "azure"], {"aws"}, {"aws"}, {"aws": "gcp"}),
        _state(["aws", "gcp", "azure"], {"aws", "azure"}, {"aws"}, {"aws": "gcp", "azure": "gcp"}),
        _state(["aws", "gcp", "azure"], {"aws"}, (), {"aws": "azure"}),
    ]
    states = {f"s{i}": s for i, s in enumerate(candidates) if _allowed(s)}
    assert len(states) >= 20
    results = _evaluate(topology_harness, states)
    assert sorted(results) == sorted(states)
    for key, state in states.items():
        _assert_one_writer_per_scope(state, results[key])


def test_the_normal_layout(topology_harness):
    out = _evaluate(topology_harness, {"n": _state(["aws", "gcp"])})["n"]
    assert out["writers"] == {"aws": "aws", "gcp": "gcp"}
    assert out["written_scopes"] == {"aws": ["aws"], "gcp": ["gcp"]}
    assert out["replica_scopes"] == {"aws": ["gcp"], "gcp": ["aws"]}
    assert out["engines_enabled"] == {"aws": True, "gcp": True}
    assert sorted(out["replications"], key=lambda r: r["source"]) == [
        {"source": "aws", "target": "gcp", "scopes": ["aws"], "paused": False},
        {"source": "gcp", "target": "aws", "scopes": ["gcp"], "paused": False},
    ]


def test_a_whole_cluster_fail_over_step_by_step(topology_harness):
    """The README's fail-over of aws to gcp and back, one apply per step."""
    steps = {
        "1-fence": _state(["aws", "gcp"], {"aws"}),
        "2-isolate": _state(["aws", "gcp"], {"aws"}, {"aws"}),
        "3-promote": _state(["aws", "gcp"], {"aws"}, {"aws"}, {"aws": "gcp"}),
        "4-rebuilt": _state(["aws", "gcp"], {"aws"}, (), {"aws": "gcp"}),
        "5-give-back": _state(["aws", "gcp"], {"aws"}),
        "6-normal": _state(["aws", "gcp"]),
    }
    out = _evaluate(topology_harness, steps)
    # Fenced: aws's engines are off, its scope still drains to gcp.
    assert out["1-fence"]["engines_enabled"] == {"aws": False, "gcp": True}
    assert {(r["source"], r["paused"]) for r in out["1-fence"]["replications"]} == {("aws", False), ("gcp", False)}
    # Isolated: nothing travels from or to aws; gcp's firewall drops aws.
    assert all(r["paused"] for r in out["2-isolate"]["replications"])
    assert out["2-isolate"]["xdcr_admitted"]["gcp"] == []
    # Promoted: gcp writes both scopes, aws writes and replicates nothing.
    assert out["3-promote"]["written_scopes"] == {"aws": [], "gcp": ["aws", "gcp"]}
    assert [(r["source"], r["scopes"]) for r in out["3-promote"]["replications"]] == [("gcp", ["aws", "gcp"])]
    # Rebuilt aws receives both scopes again, read-only, and still runs no engine.
    assert out["4-rebuilt"]["replications"] == [
        {"source": "gcp", "target": "aws", "scopes": ["aws", "gcp"], "paused": False}
    ]
    assert out["4-rebuilt"]["replica_scopes"]["aws"] == ["aws", "gcp"]
    assert out["4-rebuilt"]["engines_enabled"]["aws"] is False
    # Given back: aws writes its scope again (engines still off until the next step).
    assert out["5-give-back"]["writers"] == {"aws": "aws", "gcp": "gcp"}
    assert out["6-normal"]["engines_enabled"] == {"aws": True, "gcp": True}


@pytest.mark.parametrize(
    "state,message",
    [
        (_state(["aws", "gcp"], (), (), {"aws": "gcp"}), "fence the old home first"),
        (_state(["aws", "gcp"], {"aws"}, (), {"aws": "aws"}), "other than its home"),
        (_state(["aws", "gcp"], {"aws", "gcp"}, (), {"aws": "gcp", "gcp": "aws"}), "cannot be promoted elsewhere"),
        (_state(["aws", "gcp"], {"aws"}, {"gcp"}, {"aws": "gcp"}), "neither isolated nor fenced"),
        (_state(["aws", "gcp"], {"azure"}), "not in topology.clusters"),
        (_state(["aws", "aws"]), "distinct names"),
        (_state(["AWS", "gcp"]), "lower-case"),
        (_state(["aws"]), "two or more"),
    ],
    ids=["promote-unfenced", "promote-to-itself", "promote-both-ways", "promote-to-isolated",
         "unknown-cluster", "duplicate", "bad-name", "one-cluster"],  # fmt: skip
)
def test_states_that_could_make_two_writers_are_refused(topology_harness, state, message):
    assert message in _refusal(topology_harness, state)


# ------------------------------------------ the multi-cloud root, static ---

def _modules(directory: Path) -> dict[str, dict]:
    return dict(named_blocks(parse_dir(directory), "module"))


def _remote_names(expr: str) -> list[str]:
    return re.findall(r'\bname\s*=\s*"([a-z0-9-]+)"', expr)


def test_multi_cloud_derives_everything_from_the_topology():
    parsed = parse_dir(MULTI_CLOUD)
    modules = _modules(MULTI_CLOUD)
    topology = modules["topology"]
    assert topology["source"] == "../../modules/xdcr-topology"
    assert topology["topology"] == {"clusters": "${local.clusters}", "failover": "${var.failover}"}
    assert parsed["locals"][0]["clusters"] == ["aws", "gcp"]
    for name, peer in (("aws", "gcp"), ("gcp", "aws")):
        call = modules[f"{name}_stack"]
        # The stack's engines are this cluster (WOJAK_ENGINE_CLUSTER) and write its scope.
        assert call["wojak_cluster"] == name
        assert call["written_scopes"] == f'${{module.topology.written_scopes["{name}"]}}'
        assert call["replica_scopes"] == f'${{module.topology.replica_scopes["{name}"]}}'
        assert call["wojak_replica_count"] == (
            f'${{module.topology.engines_enabled["{name}"] ? var.wojak_replica_count : 0}}'
        )
        remotes = call["xdcr_remote_clusters"]
        assert _remote_names(remotes) == [peer], remotes
        assert f'paused = module.topology.replication_paused["{name}"]["{peer}"]' in remotes
    # The peers' firewalls admit XDCR only from clusters that are not isolated.
    assert 'module.topology.xdcr_admitted["gcp"]' in modules["gcp_stack"]["xdcr_source_cidrs"]
    [(_, rule)] = resources(parsed, "aws_vpc_security_group_ingress_rule")
    assert 'module.topology.xdcr_admitted["aws"]' in rule["for_each"]


def test_multi_cloud_has_no_bidirectional_replication_of_any_scope(topology_harness):
    """The replication graph the root configures, in its normal state: each cluster sends
    only its own home scope, to its peer, and no scope comes back."""
    modules = _modules(MULTI_CLOUD)
    clusters = parse_dir(MULTI_CLOUD)["locals"][0]["clusters"]
    out = _evaluate(topology_harness, {"root": _state(clusters)})["root"]
    flows = set()
    for name in clusters:
        call = modules[f"{name}_stack"]
        home = call["wojak_cluster"]
        # What the stack's Couchbase replicates: its written scopes (modules/couchbase), which
        # the root takes from the topology for this very cluster.
        written = out["written_scopes"][re.search(r'written_scopes\["([a-z0-9-]+)"\]', call["written_scopes"]).group(1)]
        assert written == [home], (name, written)
        for peer in _remote_names(call["xdcr_remote_clusters"]):
            assert peer != name and peer in clusters
            flows |= {(name, peer, scope) for scope in written}
    assert flows == {("aws", "gcp", "aws"), ("gcp", "aws", "gcp")}
    assert not {(t, s, scope) for s, t, scope in flows} & flows
    # No replication targets a scope its target writes.
    for source, target, scope in flows:
        assert out["writers"][scope] == source != target


def test_failover_variable_names_only_the_two_clusters():
    variables = dict(named_blocks(parse_dir(MULTI_CLOUD), "variable"))
    failover = variables["failover"]
    assert failover["default"] == {}
    assert 'contains(["aws", "gcp"], c)' in failover["validation"][0]["condition"]


# ------------------------------------------------- the stacks and modules ---

@pytest.mark.parametrize("cloud", sorted(STACKS))
def test_every_stack_passes_its_cluster_name_and_own_scope_to_the_release(cloud):
    modules = _modules(STACKS[cloud])
    wojak, couchbase = modules["wojak"], modules["couchbase"]
    assert wojak["engine_cluster"] == "${var.wojak_cluster}"
    assert wojak["store_url"] == "${module.couchbase.connection_string}"
    assert wojak["store_scope"] == "${module.couchbase.home_scope}"
    assert wojak["store_collection"] == "${module.couchbase.collection_name}"
    assert wojak["replica_count"] == "${var.wojak_replica_count}"
    # The scope the release writes is the cluster's own: home = the cluster's name.
    scopes = couchbase["scopes"]
    assert scopes.startswith("${var.wojak_cluster == null ? null : {home = var.wojak_cluster, ")
    assert "written = var.written_scopes == null ? [var.wojak_cluster] : var.written_scopes" in scopes
    assert "replicas = var.replica_scopes" in scopes
    outputs = dict(named_blocks(parse_dir(MODULES_ROOT / "couchbase"), "output"))
    assert outputs["home_scope"]["value"] == "${local.scoped ? var.scopes.home : null}"


def test_couchbase_replicates_only_the_scopes_it_writes_with_an_explicit_mapping():
    parsed = parse_dir(MODULES_ROOT / "couchbase")
    replication = dict(resources(parsed, "kubernetes_manifest"))["replication"]
    # No replication at all from a cluster that writes nothing: an empty explicit mapping
    # would mean XDCR's implicit mapping of every keyspace, replicas included.
    assert replication["for_each"] == (
        "${{for r in var.xdcr_remote_clusters : r.name => r if length(local.written_scopes) > 0}}"
    )
    manifest = replication["manifest"]
    assert manifest["kind"] == "CouchbaseReplication"
    assert manifest["explicitMapping"] == {
        "allowRules": "${[for s in local.written_scopes : "
        "{sourceKeyspace = {scope = s}, targetKeyspace = {scope = s}}]}"
    }
    assert manifest["spec"]["paused"] == "${each.value.paused}"
    assert manifest["spec"]["compressionType"] in ("None", "Auto")  # the CRD's enum
    locals_ = parsed["locals"][0]
    assert locals_["written_scopes"] == "${local.scoped ? var.scopes.written : []}"
    # XDCR without the scoped layout (the whole bucket, both ways) is refused at plan.
    release = dict(resources(parsed, "helm_release"))["couchbase"]
    [precondition] = release["lifecycle"][0]["precondition"]
    assert precondition["condition"] == "${length(var.xdcr_remote_clusters) == 0 || local.scoped}"


def test_the_only_replications_are_the_couchbase_modules():
    for directory, rtype, name, body in all_resources():
        if rtype == "kubernetes_manifest":
            assert (directory.name, name) == ("couchbase", "replication"), (directory, name)
    for path in TERRAFORM_ROOT.rglob("*.tf"):
        if "CouchbaseReplication" in path.read_text(encoding="utf-8"):
            assert path == MODULES_ROOT / "couchbase" / "main.tf", path


# ------------------------------- module locals, evaluated with console ---

def _locals_harness(tmp_path: Path, module: str) -> Path:
    """A copy of a module's variables and locals, its resource references replaced by
    strings, so that ``terraform console`` can evaluate the locals without providers."""
    text = (MODULES_ROOT / module / "main.tf").read_text(encoding="utf-8")
    start = text.index("\nlocals {") + 1
    depth, end = 0, None
    for i, ch in enumerate(text[start:], start):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "}" and depth == 0:
            end = i + 1
            break
    block = re.sub(r"kubernetes_secret_v1\.(\w+)\.metadata\[0\]\.name", r'"secret-\1"', text[start:end])
    assert not re.search(r"\b(kubernetes|helm|random)_\w+\.\w+\.", block), "locals reference another resource"
    directory = tmp_path / module
    directory.mkdir()
    shutil.copy(MODULES_ROOT / module / "variables.tf", directory / "variables.tf")
    (directory / "main.tf").write_text(block + "\n")
    return directory


COUCHBASE_REQUIRED = {
    "storage_class_name": "standard",
    "data_node_selector": {"pool": "on-demand"},
    "data_tolerations": [],
    "spot_node_selector": {"pool": "spot"},
}


def test_couchbase_values_create_every_scope_and_let_wojak_write_only_its_own(tmp_path):
    release = dict(resources(parse_dir(MODULES_ROOT / "couchbase"), "helm_release"))["couchbase"]
    assert release["values"] == ["${yamlencode(local.chart_values)}"]
    harness = _locals_harness(tmp_path, "couchbase")
    keys = '["buckets", "scopes", "collections", "groups", "rolebindings", "users"]'
    expr = f"jsonencode({{for k in {keys} : k => lookup(local.chart_values, k, null)}})"

    def values(scopes=None):
        tfvars = dict(COUCHBASE_REQUIRED, **({"scopes": scopes} if scopes else {}))
        return _value(_console(harness, expr, tfvars))

    scoped = values({"home": "aws", "written": ["aws"], "replicas": ["gcp"]})
    bucket = scoped["buckets"]["wojak"]
    assert bucket["scopes"] == {"managed": True, "resources": [
        {"kind": "CouchbaseScope", "name": "aws"}, {"kind": "CouchbaseScope", "name": "gcp"}]}  # fmt: skip
    assert sorted(scoped["scopes"]) == ["aws", "gcp"]
    for scope in scoped["scopes"].values():
        assert scope["collections"]["resources"] == [{"kind": "CouchbaseCollection", "name": "engine"}]
    assert scoped["collections"] == {"engine": {}}
    # The wojak user: no autobind group (it cannot carry scoped roles), its own group instead.
    assert scoped["users"]["wojak"]["autobind"] is False
    [(group, spec)] = scoped["groups"].items()
    roles = {r["name"]: r for r in spec["roles"]}
    assert set(roles) == {"data_reader", "data_writer"}
    assert [s["name"] for s in roles["data_writer"]["scopes"]["resources"]] == ["aws"]
    assert [s["name"] for s in roles["data_reader"]["scopes"]["resources"]] == ["aws", "gcp"]
    assert scoped["rolebindings"][group]["subjects"] == [{"kind": "CouchbaseUser", "name": "wojak"}]
    assert scoped["users"]["xdcr"]["roles"] == [{"name": "replication_target", "bucket": "wojak"}]

    # Its home failed over elsewhere: no writer role at all (never a bucket-wide one).
    emptied = values({"home": "aws", "written": [], "replicas": ["aws", "gcp"]})
    [(_, spec)] = emptied["groups"].items()
    assert [r["name"] for r in spec["roles"]] == ["data_reader"]

    # One cluster, unscoped: the chart values as before (bucket-wide autobind user, no scopes).
    single = values()
    assert "scopes" not in single["buckets"]["wojak"]
    assert single["scopes"] is None and single["collections"] is None
    assert single["groups"] is None and single["rolebindings"] is None
    assert single["users"]["wojak"]["autobind"] is True
    assert single["users"]["wojak"]["roles"] == [
        {"name": "data_reader", "bucket": "wojak"}, {"name": "data_writer", "bucket": "wojak"}]  # fmt: skip


@pytest.mark.parametrize(
    "scopes,message",
    [
        ({"home": "aws", "written": ["aws"], "replicas": ["aws", "gcp"]}, "never both"),
        ({"home": "aws", "written": ["gcp"], "replicas": []}, "never both"),
        ({"home": "Aws", "written": ["Aws"], "replicas": ["gcp"]}, "lower-case"),
    ],
    ids=["written-and-replica", "home-missing", "bad-name"],
)
def test_couchbase_refuses_a_scope_both_written_and_replicated(tmp_path, scopes, message):
    harness = _locals_harness(tmp_path, "couchbase")
    result = _console(harness, "local.scoped", dict(COUCHBASE_REQUIRED, scopes=scopes))
    assert message in _no_ansi(result.stdout + result.stderr)


def test_release_values_name_the_cluster_and_narrow_the_store_to_its_scope(tmp_path):
    harness = _locals_harness(tmp_path, "wojak-release")
    base = {"source_type": "sqs", "store_url": "couchbase://wojak-cb-srv.couchbase.svc?bucket=wojak",
            "store_username": "wojak", "store_password": "not-a-secret"}  # fmt: skip
    engine = _value(_console(harness, "jsonencode(local.values.engine)", dict(
        base, engine_cluster="aws", store_scope="aws", store_collection="engine")))  # fmt: skip
    assert engine["cluster"] == "aws"  # the chart sets WOJAK_ENGINE_CLUSTER from it
    assert engine["store"] == "couchbase://wojak-cb-srv.couchbase.svc?bucket=wojak&scope=aws&collection=engine"
    single = _value(_console(harness, "jsonencode(local.values.engine)", base))
    assert "cluster" not in single
    assert single["store"] == base["store_url"]


def test_release_refuses_a_named_cluster_without_its_own_scope():
    release = dict(resources(parse_dir(MODULES_ROOT / "wojak-release"), "helm_release"))["wojak"]
    conditions = [p["condition"] for p in release["lifecycle"][0]["precondition"]]
    assert "${var.engine_cluster == null || var.store_scope != null}" in conditions
    assert "${(var.store_scope == null) == (var.store_collection == null)}" in conditions
