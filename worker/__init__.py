"""The worker process: one bot per process (see worker.main)."""
