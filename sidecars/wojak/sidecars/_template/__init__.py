"""The BROKER source sidecar (SDK-NAME; ``pip install 'wojak[BROKER]'``).

THE TEMPLATE A NEW BROKER COPIES (docs/sidecar-kit.md). Copy this folder to
``sidecars/wojak/sidecars/<broker>/``, keep the three file names, replace ``Template`` /
``TEMPLATE`` / ``template`` by the broker's name, ``BROKER`` / ``SDK-NAME`` in the text, and every
``TODO(broker)``; then follow the checklist in the docs.

One paragraph here says what the broker's messages are (a queue, a topic partition, a stream
shard), what settles them (ack, nack, offset commit, visibility timeout) and where dead letters
and results go.
"""

# The SDK is imported only inside this package (tests/test_architecture.py checks it), and only
# here at the top: a missing extra is one line naming it (`wojak sidecar <broker>` prints it).
# TODO(broker):
# try:
#     import sdk_module as _sdk  # noqa: F401
# except ImportError as exc:  # pragma: no cover
#     raise ImportError("the BROKER sidecar needs SDK-NAME: pip install 'wojak[BROKER]'") from exc

from wojak.sidecars._template.config import TemplateSidecarSettings
from wojak.sidecars._template.source import TemplateMessage, TemplateSource, serve

# What `wojak sidecar <broker>` runs: add "<broker>": "<help>" to BROKERS in wojak/sidecars/cli.py.
TITLE = "BROKER"
Settings = TemplateSidecarSettings

__all__ = ["TITLE", "Settings", "TemplateMessage", "TemplateSidecarSettings", "TemplateSource", "serve"]
