"""Slicers: PrusaSlicer's command line, with the profiles KittyLab ships in ``profiles/``."""
