"""Shared evaluation of feature sets from any extractor — the Fréchet distance with bootstrap intervals, KID,
precision/recall and density/coverage —, FID from local weights, the digits classifier and its metrics."""

from pygan.metrics.bootstrap import bootstrap_means, mean_ci, percentile_ci
from pygan.metrics.digits import DigitsClassifier, digits_classifier, evaluate_digits
from pygan.metrics.fid import fid, image_features, load_inception
from pygan.metrics.frechet import bootstrap_frechet_distance, frechet_distance
from pygan.metrics.kid import kernel_distance
from pygan.metrics.manifold import manifold_metrics

__all__ = ["bootstrap_means", "mean_ci", "percentile_ci", "DigitsClassifier", "digits_classifier", "evaluate_digits", "fid", "image_features", "load_inception",
           "bootstrap_frechet_distance", "frechet_distance",
           "kernel_distance", "manifold_metrics"]
