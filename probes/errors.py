"""The root of gonogo's exception tree.

It lives in ``probes`` because that is the lowest layer: ``gates`` and ``app`` may import
it without breaking the ``app → gates → probes`` direction.
"""

from __future__ import annotations


class GonogoError(Exception):
    """Base of every error gonogo raises on purpose (as opposed to a bug).

    Its message is safe to show a user: it never contains a secret.
    """


class ProbeError(GonogoError):
    """A probe cannot be built or configured (unknown type, missing secret variable, ...).

    Remote failures while measuring are never raised: they become inconclusive
    measurements (see ``probes.base.Probe``).
    """
