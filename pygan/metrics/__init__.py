"""Shared evaluation: the Fréchet distance with bootstrap intervals, FID from local weights, the digits classifier
and its metrics."""

from pygan.metrics.digits import DigitsClassifier, digits_classifier, evaluate_digits
from pygan.metrics.fid import fid, load_inception
from pygan.metrics.frechet import bootstrap_frechet_distance, frechet_distance

__all__ = ["DigitsClassifier", "digits_classifier", "evaluate_digits", "fid", "load_inception",
           "bootstrap_frechet_distance", "frechet_distance"]
