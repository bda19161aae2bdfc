"""``python -m replikv`` is the ``replikv`` command line."""

from replikv.cli import main

if __name__ == "__main__":
    main()
