"""Built-in demos and the procedural data they train on.

Generators: :mod:`~bioseg.demos.cells2d` (2D fluorescent cells), :mod:`~bioseg.demos.cells3d` (3D
membrane-stained tissue or nuclei) and :mod:`~bioseg.demos.wings` (insect wings with four masks), which
share the noise of :mod:`~bioseg.demos.noise`. Nothing outside ``bioseg.demos`` and ``bioseg.cli``
imports this package: the pipeline does not depend on its demos.
"""
