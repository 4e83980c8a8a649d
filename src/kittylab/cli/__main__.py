"""``python -m kittylab.cli``: the same as the ``kittylab`` command."""

from kittylab.cli.main import main

main()
