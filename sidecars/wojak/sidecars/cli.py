"""The sidecar image's command, ``wojak-sidecar``: run a source sidecar (``wojak-sidecar http``,
``wojak-sidecar rabbitmq``, ``wojak-sidecar kafka``) and make API keys (``wojak-sidecar keys new``).

The umbrella ``wojak`` command offers the same (``wojak sidecar http``, ``wojak keys new``).
Each sidecar's modules, and so its broker SDK, are imported only when it is the one asked for."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any, Sequence

from wojak.engine.protocol.runtime import configure_logging, fail, run_command
from wojak.errors import WojakError

log = logging.getLogger("wojak")


def cmd_sidecar_http(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from wojak.engine.protocol.runtime import run
    from wojak.sidecars.http import HttpSidecarSettings, serve

    configure_logging(args.verbose)
    try:
        config = HttpSidecarSettings().to_config()
    except (ValidationError, WojakError) as exc:
        return fail(f"HTTP sidecar settings: {exc}")
    from wojak.engine.protocol.client import check_engine_socket

    try:  # before uvicorn starts: one line, not a start-up traceback
        check_engine_socket(config.engine_socket)
    except WojakError as exc:
        return fail(str(exc))
    log.info("HTTP sidecar on http://%s:%d, engine at ipc://%s", config.host, config.port, config.engine_socket)
    run(serve(config))
    return 0


# The broker sidecars, `wojak sidecar <name>`: each is the package wojak.sidecars.<name> (the
# template's files, docs/sidecar-kit.md: TITLE, Settings, serve) installed by the extra <name>.
BROKERS = {
    "rabbitmq": "RabbitMQ consumer (settings from WOJAK_SIDECAR_RABBITMQ_*)",
    "kafka": "Kafka consumer group (settings from WOJAK_SIDECAR_KAFKA_*)",
    "sqs": "SQS consumer (settings from WOJAK_SIDECAR_SQS_*)",
    "sns": "SNS through an SQS queue subscribed to the topic (settings from WOJAK_SIDECAR_SNS_*)",
    "pubsub": "Google Pub/Sub subscriber (settings from WOJAK_SIDECAR_PUBSUB_*)",
    "kinesis": "Kinesis stream, shards leased in DynamoDB (settings from WOJAK_SIDECAR_KINESIS_*)",
}


def cmd_broker_sidecar(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from wojak.engine.protocol.runtime import run

    try:
        broker = importlib.import_module(f"wojak.sidecars.{args.source}")
    except ImportError as exc:  # its SDK is missing: the package says which extra installs it
        return fail(str(exc))
    configure_logging(args.verbose)
    try:
        config = broker.Settings().to_config()
    except (ValidationError, WojakError) as exc:
        return fail(f"{broker.TITLE} sidecar settings: {exc}")
    log.info("%s sidecar: %r, engine at ipc://%s", broker.TITLE, config, config.runner.engine_socket if config.runner else "")
    try:  # e.g. a socket directory that is not this user's: refused before anything is sent
        run(broker.serve(config))
    except WojakError as exc:
        return fail(str(exc))
    return 0


def _keys_file_entry(entry: dict[str, Any]) -> str:
    """The entry as YAML to paste under ``principals:`` (indented like the documented file; every
    value quoted, so a pattern such as ``*`` or an all-digit hash stays a string)."""
    lines = [f"{k}: {json.dumps(v)}" for k, v in entry.items()]
    return "\n".join(("  - " if i == 0 else "    ") + line for i, line in enumerate(lines))


def cmd_keys_new(args: argparse.Namespace) -> int:
    """A new API key, printed once, and the keys-file entry (only the key's hash) to paste."""
    import re

    from wojak.sidecars._core.keys import new_key

    try:
        key, entry = new_key(args.name, args.accounts, args.scopes)
    except WojakError as exc:  # unknown scope, bad account pattern, bad name: one line
        message = re.sub(r"^principals\[0\](?: \([^)]*\))?: ", "", str(exc).strip()).splitlines()
        return fail(f"keys new: {message[0] if message else 'invalid key'}")
    if args.json:
        print(json.dumps({"key": key, "entry": entry}, indent=2))
        return 0
    # The key goes to stderr, the entry to stdout: `wojak keys new ... >> keys.yaml` appends the
    # entry and still shows the key, which never lands in the keys file.
    print(f"API key for {args.name} (shown once: only its sha256 is kept, in the entry below):\n\n  {key}\n", file=sys.stderr)
    print(
        "Add this entry under `principals:` in the keys file (WOJAK_API_KEYS_FILE; a new file starts with the"
        " line `principals:`). The HTTP sidecar reloads the file without a restart.\n",
        file=sys.stderr,
        flush=True,
    )
    print(_keys_file_entry(entry), flush=True)
    return 0


def configure_sidecar(sub: Any) -> None:
    """One command per sidecar on ``sub`` (subparsers): ``http`` and each of ``BROKERS``."""
    http = sub.add_parser("http", help="HTTP intake (settings from WOJAK_SIDECAR_*, WOJAK_API_KEYS)")
    http.add_argument("-v", "--verbose", action="store_true")
    http.set_defaults(func=cmd_sidecar_http, extra="http")
    for name, title in BROKERS.items():
        broker = sub.add_parser(name, help=title)
        broker.add_argument("-v", "--verbose", action="store_true")
        broker.set_defaults(func=cmd_broker_sidecar, extra=name)


def add_keys_command(sub: Any) -> None:
    """``keys new`` on ``sub`` (subparsers)."""
    keys = sub.add_parser("keys", help="API keys for the sidecars")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="make a key: print it once, and the keys-file entry to paste")
    new.add_argument("--name", required=True, help="the principal's name (who the audit log says acted)")
    new.add_argument("--accounts", nargs="+", required=True, metavar="A", help="account names or patterns (desk-*)")
    new.add_argument("--scopes", nargs="+", required=True, metavar="S", help="what the key may do")
    new.add_argument("--json", action="store_true", help="print {key, entry} as JSON instead")
    new.set_defaults(func=cmd_keys_new, extra="http")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wojak-sidecar", description="A wojak source sidecar: one broker in, the engine's verdicts out."
    )
    # dest "source", as under `wojak sidecar`: cmd_broker_sidecar reads the broker's name from it
    sub = parser.add_subparsers(dest="source", required=True)
    configure_sidecar(sub)
    add_keys_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``wojak-sidecar``: the sidecar image's entry point. Without a command it runs the sidecar
    that ``WOJAK_SIDECAR_BROKER`` names (each image sets it to its own broker)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv and os.environ.get("WOJAK_SIDECAR_BROKER"):
        argv = [os.environ["WOJAK_SIDECAR_BROKER"]]
    args = build_parser().parse_args(argv)
    return run_command(args.func, args, args.extra)
