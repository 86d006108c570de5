"""Dawid–Skene on synthetic judges whose confusion matrices are known."""

from __future__ import annotations

import numpy as np
import pytest

from safetygrid.stats.dawid_skene import dawid_skene


def _judges(rng: np.random.Generator, truth: np.ndarray, sens: list[float], spec: list[float]) -> np.ndarray:
    columns = []
    for se, sp in zip(sens, spec):
        says_unsafe = np.where(truth, rng.random(len(truth)) < se, rng.random(len(truth)) >= sp)
        columns.append(says_unsafe.astype(float))
    return np.column_stack(columns)


def test_recovers_known_confusion_and_beats_the_majority() -> None:
    rng = np.random.default_rng(7)
    truth = rng.random(4000) < 0.3
    sens, spec = [0.95, 0.9, 0.6, 0.55, 0.9], [0.9, 0.95, 0.6, 0.5, 0.85]
    labels = _judges(rng, truth, sens, spec)
    labels[rng.random(labels.shape) < 0.1] = np.nan  # judges fail now and then
    fit = dawid_skene(labels)
    assert fit.converged
    assert fit.sensitivity == pytest.approx(sens, abs=0.04)
    assert fit.specificity == pytest.approx(spec, abs=0.04)
    assert fit.prevalence == pytest.approx(0.3, abs=0.02)
    given = ~np.isnan(labels)
    majority = np.where(given, labels, 0).sum(1) >= np.ceil(0.5 * given.sum(1))
    ds_accuracy = ((fit.posterior >= 0.5) == truth).mean()
    assert ds_accuracy > (majority == truth).mean()  # two weak judges cannot outvote the good ones


def test_unanimous_judges_and_unlabelled_items() -> None:
    labels = np.array([[1, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 0], [np.nan, np.nan, np.nan]])
    fit = dawid_skene(labels)
    assert (fit.posterior[:2] >= 0.5).tolist() == [True, False]
    assert fit.posterior[0] > 0.99 and fit.posterior[1] < 0.01
    assert fit.posterior[4] == pytest.approx(fit.prevalence)  # nobody labelled it: the prior


def test_rejects_a_flat_table() -> None:
    with pytest.raises(ValueError, match="items x judges"):
        dawid_skene(np.array([1.0, 0.0]))
