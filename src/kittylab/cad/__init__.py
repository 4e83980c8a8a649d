"""CAD: prompt → part specification → providers → scored artifacts → records.

Providers and the analyzer are ports (implemented in ``kittylab.adapters.cad``); no
database transaction is held while a provider works.

Modules:

- ``errors``: ``CadGenerationFailed``, ``CadBusy``, ``ProviderUnavailable``
- ``job_details``: a CAD job's ``details``, typed: ``CadJobDetails``, ``Attempt``,
  ``TargetPrinter``, ``read``, ``write``
- ``lineage``: ``lineage`` (a ``Lineage``), ``job_with_artifacts``: reads
- ``planning``: ``PolicyMode``, ``plan``, ``provider_status``, ``target_printer``
- ``ports``: ``CadProviderPort``, ``ArtifactAnalyzer``, ``BuildVolumes``, queues
- ``records``: ``create_cad_job``, ``advance_cad_job``, ``add_cad_artifact``
- ``recovery``: ``recover_stranded``: jobs a lost run left behind
- ``runs``: ``CadService``: ``generate``, ``iterate``, ``run_job``; ``GenerateRequest``
"""
