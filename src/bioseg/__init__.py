"""bioseg: train and apply deep-learning segmentation models to biological images."""

__version__ = "0.1.0"
