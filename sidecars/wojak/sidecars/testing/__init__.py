"""The sidecar kit's test half: what every broker sidecar's tests are made of.

* :mod:`.memory`: ``MemoryBroker`` and ``MemorySource``, a broker in memory with a broker's
  semantics (redelivery of what a consumer held when it goes, a dead-letter queue, ``crash``
  for ``kill -9``);
* :mod:`.contract`: ``SidecarContract``, the behaviour every broker sidecar shows, and the
  hooks a broker implements; ``InProcessSidecar`` runs a whole sidecar (runner, health server)
  in the test's event loop;
* :mod:`.stream`: the stream scenario (N orders, duplicates, poison, ``kill -9`` mid-stream).

The contract runs in memory on every change (tests/sidecars/memory) and against each real
broker (tests/sidecars/<broker>). docs/sidecar-kit.md: adding a broker. Needs pytest
(``pip install 'wojak[test]'``).
"""
