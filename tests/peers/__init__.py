"""Protocol-level local servers standing in for equipment and services that cannot run
here; each follows the documented protocol of the real thing."""
