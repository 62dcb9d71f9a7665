"""Compatibility only: the old home of the shared constants, which now live where their job is.

    edge_sca.contract   the model contract (sizes, classes, tensor names, int8 input, versions, model files)
    edge_sca.policy     the rules thresholds are chosen and judged by (target sensitivity, recalibration,
                        input-check fitting, drift warning)
    edge_sca.settings   the scanner's own settings (its TOML file; the quality gate's fixed limits, camera,
                        board, illumination, audit log)
    edge_sca.devpaths   this repository's paths (REPO_ROOT, MODELS_DIR, the ISIC folder candidates)

Nothing in this repository imports this module; it re-exports the contract, policy and development paths so
that code written against the old module (branches in flight, local scripts) keeps working. Import from the
modules above instead; this one will be removed.
"""

from __future__ import annotations

from edge_sca.contract import *  # noqa: F403
from edge_sca.contract import __all__ as _contract
from edge_sca.devpaths import *  # noqa: F403
from edge_sca.devpaths import __all__ as _devpaths
from edge_sca.policy import *  # noqa: F403
from edge_sca.policy import __all__ as _policy

__all__ = [*_contract, *_policy, *_devpaths]
