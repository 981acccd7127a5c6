"""``python -m controller`` is the ``machinepool-controller`` command."""

from controller.cli import main

if __name__ == "__main__":
    main()
