"""``digits-hier``: scikit-learn's bundled 8x8 digits, 5 superclasses of two digits.

Same groupings as ``mnist1d-hier`` (``grouping="pairs"``: ``y = digit // 2``; ``"halves"``:
``y = digit // 5``; ``sub = digit``). Images
``[1, 8, 8]`` with pixel values 0..16; a fixed stratified split (``test_fraction``
of each digit, ``seed``). Default normalisation: one scalar mean/std of the
training split. Default augmentation: random crop with 1-pixel padding (shift=1), no flip
(a mirrored digit is not that digit).
"""

from __future__ import annotations

import numpy as np

from clusterprior.data.base import Part, Raw
from clusterprior.data.mnist1d_hier import digits_to_hier, hier_meta
from clusterprior.data.registry import register
from clusterprior.errors import UserError


@register("digits-hier")
def digits_hier(test_fraction: float = 0.25, seed: int = 0, grouping: str = "pairs") -> Raw:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"digits-hier: test_fraction must be in (0, 1), got {test_fraction}")
    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]
    digits = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(digits)), test_size=test_fraction, stratify=digits, random_state=seed
    )
    y, sub = digits_to_hier(digits, grouping, "digits-hier")
    train, test = (Part(x[idx], y[idx], sub[idx]) for idx in (idx_train, idx_test))
    meta = hier_meta("digits-hier", "image", {"shift": 1, "hflip": False}, grouping)
    return Raw(train, test, meta, normalize="global")
