"""From predicted maps to results: semantic cleanup, and instances from boundary or foreground maps."""

from bioseg.postprocess.instances import boundaries_to_instances, foreground_to_instances
from bioseg.postprocess.semantic import clean_labels

__all__ = ["boundaries_to_instances", "clean_labels", "foreground_to_instances"]
