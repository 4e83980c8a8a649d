"""CAD: prompt → part specification → providers → scored artifacts → records.

Providers and the analyzer are ports (implemented in ``kittylab.adapters.cad``); no
database transaction is held while a provider works.

Modules:

- ``records``: ``create_cad_job``, ``advance_cad_job``, ``add_cad_artifact``
- ``runs``: ``CadService``: ``generate``, ``iterate``, ``run_job``; ``GenerateRequest``
"""
