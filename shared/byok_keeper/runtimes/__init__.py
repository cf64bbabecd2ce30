"""The runtimes floor: where byok-keeper runs: the CLI (cli/), Function Compute's handlers
(fc*.py), the APScheduler daemon and the demo.
"""
