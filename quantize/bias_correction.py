"""Bias correction of the int8 classifier: remove the systematic logit shift that int8 rounding adds.

Why: the rounding errors of ~40 int8 layers add up, and for these networks not to zero. Measured on the stage-1
CancerNet-SCa-B, int8 raised p(malignant) by +0.018 on the calibration images, +0.019 on val and +0.024 on test
(mean signed delta ~ mean |delta|: a shift, not noise), which pushes images across a threshold chosen where scores
are dense. Zero-mean noise cannot be removed after training; a shift can. This is the classic bias correction of
post-training quantisation (Nagel et al., 2019, "Data-free quantization", section 4.2) applied where it is exact
and cheap, at the last layer: the shift of the malignant-minus-benign logit is measured on the calibration images
(the data int8 is calibrated on, never the test split), the float model's classifier bias is moved by minus that
shift, and the int8 model is converted again. The float32 baseline is not touched.
"""

from __future__ import annotations

import numpy as np

from edge_sca.contract import OUTPUT_NAME

#: Shifts smaller than this (in logits) are left alone: under one int8 output step (1/256 in p, 0.016 logit at p=0.5).
MIN_SHIFT = 0.01
#: int8 probabilities come in steps of 1/256; clip there so p = 0 or 1 does not give an infinite logit.
P_CLIP = 1.0 / 256


def logit_margin(p_malignant: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)): the malignant-minus-benign logit of a two-class softmax."""
    p = np.clip(np.asarray(p_malignant, np.float64), P_CLIP, 1.0 - P_CLIP)
    return np.log(p / (1.0 - p))


def measure_shift(p_float: np.ndarray, p_int8: np.ndarray) -> float:
    """Mean logit shift int8 adds on the same images (positive: int8 leans towards malignant)."""
    if len(p_float) == 0 or len(p_float) != len(p_int8):
        raise ValueError(f"need the same images for both models, got {len(p_float)} and {len(p_int8)}")
    return float(np.mean(logit_margin(p_int8) - logit_margin(p_float)))


def with_logit_shift(model, shift: float):
    """A copy of a Keras model whose classifier bias lowers the malignant-minus-benign logit by `shift`.

    Softmax depends only on the difference of the two logits, so half goes to each class's bias.
    """
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    try:
        dense = copy.get_layer(OUTPUT_NAME)
    except ValueError as exc:
        raise ValueError(f"the model has no '{OUTPUT_NAME}' layer to correct") from exc
    kernel, bias = dense.get_weights()
    if bias.shape != (2,):
        raise ValueError(f"the '{OUTPUT_NAME}' layer has bias shape {bias.shape}; expected 2 classes")
    dense.set_weights([kernel, bias + np.array([shift / 2.0, -shift / 2.0], bias.dtype)])
    return copy
