"""skcicm: scikit-learn compatible CLIP-ICM (invariant causal mechanisms for CLIP)."""

__version__ = "0.1.0"
