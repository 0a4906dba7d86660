"""The web GUI (``bioseg gui``, the ``bioseg[gui]`` extra): choose a run, upload images, get the segmentation.

Imports inference and reports, never the training engine; gradio is imported only when the page is built.
"""
