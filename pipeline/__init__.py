"""conceptswap: synthetic counterfactual image datasets for auditing and editing classifiers."""

__version__ = "0.1.0"
