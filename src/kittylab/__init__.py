"""KittyLab: the control plane of a fabrication lab."""

__version__ = "0.1.0"
