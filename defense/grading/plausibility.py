"""Warnings for data sets that load fine but would score silently wrong.

Each returns one line saying what to check; the scores are still computed.
"""

import numpy as np


def dataset_warnings(data, kind, known_targets=()):
    """Lines of warning for a Dataset used as kind ("clean" or "poisoned")."""
    name = data.path.name
    warnings = []
    if len(data) and float(data.x.max()) <= 1.0:
        warnings.append(f"warning: {name}: pixels span 0..{float(data.x.max()):g}, as if already "
                        f"scaled to 0..1; the competition's files hold 0..255 (multiply by 255)")
    labels = np.unique(data.y)
    if kind == "clean" and len(data) > 1 and len(labels) == 1:
        warnings.append(f"warning: {name}: every clean image is labelled {labels[0]}; is it a "
                        f"poisoned set given as the clean one?")
    if kind == "poisoned" and known_targets and not set(labels.tolist()) & set(known_targets):
        shown = ", ".join(map(str, labels[:5])) + (", ..." if len(labels) > 5 else "")
        warnings.append(f"warning: {name}: labelled {shown}, none of this net's known attack "
                        f"targets ({', '.join(map(str, sorted(known_targets)))}); its attack success "
                        f"rate counts images given those labels")
    return warnings
