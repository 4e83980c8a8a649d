"""Fabrication: print jobs from a file to a finished part.

upload → create → prepare (slice) → queue → start → follow; the slicer is a port
(``ports``), implemented by ``kittylab.adapters.slicer``.

Modules:

- ``gcode_gate``: every print file's G-code checked: ``check_file``, ``check_archive``
- ``job_details``: a job's ``details``, typed: ``JobDetails``, ``read``, ``write``
- ``jobs``: ``create_job``, ``prepare``, ``claim_next``, ``apply_printer_state``
- ``print_requests``: ``request_print``: a person's ``print_start`` becomes a print job
- ``ports``: the slicer port: ``Slicer``, ``SliceProfile``, ``SliceResult``
- ``records``: ``create_fabrication_job``, ``advance_fabrication_job``
- ``tracker``: ``PrintTracker``: the single follower of active print jobs
- ``uploads``: uploaded print files: quotas (``room``, ``settle``), ``remove_unused``
"""
