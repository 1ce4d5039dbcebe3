"""A bot app inside its worker: loading it (loader), running its handlers (runtime), and the
bridge to the worker's main loop (host). The app is imported here, after the fork, never in the
supervisor or the forkserver."""
