"""``python -m replikv`` is the ``replikv`` command line; ``python -m replikv node``
starts a node without importing the rest of it (replikv/node_main.py)."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["node"]:
        from replikv.node_main import main as node_main
        sys.exit(node_main(sys.argv[2:]))
    from replikv.cli import main
    main()
