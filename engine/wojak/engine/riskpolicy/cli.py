"""``wojak-operator``: run the RiskPolicy operator (kopf) in one or more namespaces."""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from wojak.engine.protocol.runtime import configure_logging, fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wojak-operator",
        description="Turn RiskPolicy resources into the risk ConfigMaps the wojak engines read (needs the operator extra).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeatable)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (needs cluster-wide RBAC)")
    parser.add_argument("--liveness", help="serve a liveness endpoint, e.g. http://0.0.0.0:8082/healthz")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        import kopf

        from wojak.engine.riskpolicy import _handlers  # noqa: F401  (registers the handlers)
    except ImportError as exc:
        return fail(f"the RiskPolicy operator needs the operator extra (pip install 'wojak[operator]'): {exc}")
    logging.getLogger("kopf").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    kopf.run(
        standalone=True,  # one operator per namespace set: no peering resources needed
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0
