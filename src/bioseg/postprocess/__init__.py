"""From predicted maps to results: semantic cleanup, and instances from boundary or foreground maps."""

from bioseg.postprocess.instances import InstanceParams, boundaries_to_instances, foreground_to_instances
from bioseg.postprocess.semantic import clean_labels

__all__ = ["InstanceParams", "boundaries_to_instances", "clean_labels", "foreground_to_instances"]
