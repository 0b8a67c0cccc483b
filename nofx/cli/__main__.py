"""``python -m nofx.cli ...``: how tests, benchmarks and `nofx up` start the command line."""

from nofx.cli import main

main()
