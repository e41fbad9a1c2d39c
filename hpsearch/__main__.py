"""``python -m hpsearch ARGS``: the ``hpsearch`` command."""

from hpsearch.search.cli import main

if __name__ == "__main__":
    main()
